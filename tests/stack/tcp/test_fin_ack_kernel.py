"""The ACK of a FIN that ends an ESTABLISHED connection rides on our own FIN, as Linux does
(input.DELAYED_FIN_ACK; Linux ``tcp_fin``: CLOSE-WAIT in pingpong mode, delayed ACK).

Real peer: the Linux kernel through a TUN device in a test namespace (the shim of
``test_kernel_interop``).  Request/response connections that the server closes first:

* kernel client, ioth server: the kernel answers the server's FIN with one FIN+ACK when its
  application closes at once (no separate ACK of the FIN): the behaviour copied;
* ioth client, kernel server: ioth does the same, for every connection (and, with the knob
  off, sends the separate ACK first, as before).
"""

from __future__ import annotations

import struct
import sys

import pytest

from ioth.stack.tcp import input as input_mod
from ioth.stack.tcp.connection import State, TcpConnection
from ioth.stack.tcp.policy import TcpPolicy
from ioth.stack.tcp.segment import ACK, FIN, RST, SYN
from tests.stack.tcp.test_kernel_interop import I4, K4, K4B, TunShim, tun_ns  # noqa: F401
from tests.support.peers import Netns, stop_process

pytestmark = pytest.mark.interop

ROUNDS = 3

CLIENT = """
import socket, sys
for i in range(int(sys.argv[2])):
    s = socket.create_connection((sys.argv[1], 5011), timeout=10)
    s.sendall(b'q' * 64)
    data = b''
    while True:
        d = s.recv(100)
        if not d:
            break
        data += d
    assert data == b'q' * 64
    s.close()  # at once after the end of stream (the server's FIN)
print('ok', flush=True)
"""

SERVER = """
import socket, sys
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], 5012))
srv.listen(8)
print('ready', flush=True)
for i in range(int(sys.argv[2])):
    c, _ = srv.accept()
    data = b''
    while len(data) < 64:
        data += c.recv(64 - len(data))
    c.sendall(data)
    c.close()  # the server closes first
print('ok', flush=True)
"""


def _hdr(seg: bytes | memoryview, at: int = 0) -> tuple[int, int, int, int, int]:
    """(source port, destination port, seq, ack, flags) of the TCP header at ``at``."""
    sport, dport, seq, ack, off_flags = struct.unpack_from("!HHIIH", seg, at)
    return sport, dport, seq, ack, off_flags & 0x3F


def _tcp(pkt: bytes) -> tuple[int, int, int, int, int]:
    """:func:`_hdr` of an IPv4 TCP packet."""
    return _hdr(pkt, (pkt[0] & 15) * 4)


def _acks_of_fin(log: list[tuple[bool, tuple[int, int, int, int, int]]],
                 server_port: int) -> list[list[int]]:
    """Per connection: the flags of the client's segments that acknowledge the server's FIN,
    in wire order (``log``: (sent by the server?, header) in wire order)."""
    fin_ack: dict[int, int] = {}
    out: dict[int, list[int]] = {}
    for from_server, (sport, dport, seq, ack, flags) in log:
        if from_server and sport == server_port and flags & FIN:
            fin_ack.setdefault(dport, (seq + 1) & 0xFFFFFFFF)
            out.setdefault(dport, [])
        elif not from_server and dport == server_port and fin_ack.get(sport) == ack:
            out[sport].append(flags)
    return list(out.values())


def test_kernel_client_answers_a_fin_with_its_fin(tun_ns: tuple[Netns, int]) -> None:  # noqa: F811
    """Linux itself: no separate ACK of the server's FIN when the application closes at once."""
    ns, fd = tun_ns
    shim = TunShim(fd, TcpPolicy(time_wait=1.0))
    log: list[tuple[bool, tuple[int, int, int, int, int]]] = []
    shim_input, shim_output = shim._input, shim._output

    def rx(pkt: bytes, now: float) -> None:
        if pkt[0] >> 4 == 4 and pkt[9] == 6:
            log.append((False, _tcp(pkt)))
        shim_input(pkt, now)

    def tx(src: bytes, dst: bytes, seg: bytes) -> None:
        log.append((True, _hdr(seg)))
        shim_output(src, dst, seg)

    shim._input = rx  # type: ignore[method-assign]
    shim.layer.output = tx
    listener = shim.layer.listen(5011)
    proc = ns.popen([sys.executable, "-c", CLIENT, "198.18.5.2", str(ROUNDS)], stdout=-1)
    served: list[TcpConnection] = []
    done: set[int] = set()

    def app(now: float) -> None:
        while (conn := listener.accept()) is not None:
            served.append(conn)
        for i, conn in enumerate(served):
            if i in done:
                continue
            try:
                got = conn.recv(100)
            except BlockingIOError:
                continue
            conn.send(got)
            shim.layer.flush(conn, now)  # the reply, then the FIN: two segments
            conn.close()
            shim.layer.flush(conn, now)
            done.add(i)

    try:
        shim.run_until(lambda: proc.poll() is not None and not shim.layer.connections, app,
                       timeout=30)
        assert proc.communicate(timeout=10)[0].decode().split() == ["ok"]
    finally:
        stop_process(proc)
    answers = _acks_of_fin(log, 5011)
    assert len(answers) == ROUNDS and all(answers), answers
    # the first segment acknowledging our FIN is the kernel's own FIN (its ACK of our reply
    # may come before, alone: Linux acknowledges a connection's first data at once)
    combined = [a for a in answers if a[0] == FIN | ACK]
    # (a kernel application that took longer than the delayed-ACK time to close would get
    # a separate ACK out first: allow one such connection on a loaded machine)
    assert len(combined) >= ROUNDS - 1, answers
    for a in answers:
        assert not any(f & (RST | SYN) for f in a), answers


@pytest.mark.parametrize("delayed", [True, False])
def test_ioth_client_answers_a_fin_with_its_fin(tun_ns: tuple[Netns, int],  # noqa: F811
                                                monkeypatch: pytest.MonkeyPatch,
                                                delayed: bool) -> None:
    monkeypatch.setattr(input_mod, "DELAYED_FIN_ACK", delayed)
    ns, fd = tun_ns
    # a long delayed-ACK time: the test's loop (not the ACK timer) decides when we close
    shim = TunShim(fd, TcpPolicy(time_wait=1.0, delayed_ack=0.4, nodelay=True))
    layer = shim.layer
    events: list[tuple[bool, tuple[int, int, int, int, int]]] = []  # (sent by us?, header)
    shim_output, shim_input = layer.output, shim._input

    def tx(src: bytes, dst: bytes, seg: bytes) -> None:
        events.append((True, _hdr(seg)))
        assert shim_output is not None
        shim_output(src, dst, seg)

    def rx(pkt: bytes, now: float) -> None:
        if pkt[0] >> 4 == 4 and pkt[9] == 6:
            events.append((False, _tcp(pkt)))
        shim_input(pkt, now)

    layer.output = tx
    shim._input = rx  # type: ignore[method-assign]
    proc = ns.popen([sys.executable, "-c", SERVER, K4, str(ROUNDS)], stdout=-1)
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == b"ready"
        for _ in range(ROUNDS):
            conn = layer.connect(I4, K4B, 5012, shim_clock())
            got = bytearray()
            state = {"sent": False, "closed": False}

            def app(now: float, conn: TcpConnection = conn, got: bytearray = got,
                    state: dict[str, bool] = state) -> None:
                if conn.state is State.ESTABLISHED and not state["sent"]:
                    conn.send(b"q" * 64)
                    layer.flush(conn, now)
                    state["sent"] = True
                try:
                    got.extend(conn.recv(100))
                except BlockingIOError:
                    pass
                if len(got) == 64 and conn.eof and not state["closed"]:
                    conn.close()
                    layer.flush(conn, now)
                    state["closed"] = True

            shim.run_until(lambda conn=conn: conn.state is State.CLOSED, app, timeout=20)
            assert bytes(got) == b"q" * 64
        assert proc.communicate(timeout=10)[0].decode().split() == ["ok"]
    finally:
        stop_process(proc)
    # per connection (our port): the first segment we send that acknowledges their FIN
    clean = 0
    for port in {h[0] for mine, h in events if mine}:
        fin_ack = None
        fins_in = 0
        for mine, (sport, dport, seq, ack, flags) in events:
            if not mine and dport == port and flags & FIN:
                fins_in += 1
                fin_ack = (seq + 1) & 0xFFFFFFFF
            elif mine and sport == port and fin_ack is not None and ack == fin_ack:
                if not delayed:
                    assert flags == ACK  # the FIN's ACK alone first, as before
                elif fins_in == 1:
                    assert flags == FIN | ACK  # no ACK of their FIN before our FIN
                    clean += 1
                # (a repeated FIN of theirs is answered at once: RFC 9293 3.10.7.4)
                break
        else:
            raise AssertionError(f"no FIN acknowledged on port {port}: {events}")
    assert not delayed or clean >= ROUNDS - 1


def shim_clock() -> float:
    import time

    return time.monotonic()
