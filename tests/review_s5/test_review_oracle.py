"""Adversarial review (session 5): TCP state-machine edges, the Linux kernel as the oracle.

Each scenario is a function of two socket factories, the *peer* (always a kernel socket, made
in a test namespace) and the *device under test*, and returns what the application sees
(return values, errno names).  It runs twice: DUT = an ioth stack (on a TAP whose other side
is the namespace's kernel, :func:`tests.support.peers.kernel_lan`), and DUT = the Linux kernel
itself (a second namespace joined by a veth pair; both set up by tests/support/referee.py,
which also lets a scenario wait for a TCP state of either end instead of sleeping).  The two
lists must be equal.  The edges are the ones session 5's connection-rate work touches: resets
in each synchronized state, FINs crossing with data in flight, simultaneous close, a server in
TIME-WAIT taking a new SYN of the same 4-tuple, the cps exchange from one client port again
and again.
"""

from __future__ import annotations

import contextlib
import errno
import select
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.referee import DUT_IP, PEER_IP, Side, kernel_retransmits, sides

pytestmark = pytest.mark.interop

LINGER0 = struct.pack("ii", 1, 0)
Scenario = Callable[[Side, Side], list[Any]]
"""(peer, DUT) -> what the application saw."""


def _setup(kind: str) -> contextlib.AbstractContextManager[tuple[Side, Side]]:
    """(peer, DUT): tests.support.referee.sides, IPv4 only."""
    return sides(kind, "rvo" if kind == "ioth" else "rv")


def _try(fn: Callable[[], Any]) -> Any:
    try:
        r = fn()
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc)) if exc.errno else type(exc).__name__
    return r


def _conn(peer: Side, dut: Side, family: int = socket.AF_INET, addr: str = DUT_IP,
          before: Callable[[Any], None] | None = None) -> tuple[Any, Any, Any]:
    """(listener, peer client, accepted DUT socket): the peer connects to the DUT's ``addr``
    (``family``); ``before``: called on the listener before the connection comes (options
    for the accepted socket to inherit)."""
    lst = dut(family)
    if before is not None:
        before(lst)
    lst.bind((addr, 0))
    lst.listen(8)
    k = peer(family)
    k.settimeout(5)
    k.connect((addr, lst.getsockname()[1]))
    lst.settimeout(5)
    d, _ = lst.accept()
    d.settimeout(5)
    return lst, k, d


def _ports(lst: Any, k: Any) -> tuple[int, int]:
    """(the DUT's port, the peer's port) of a connection from peer socket ``k`` to ``lst``."""
    return lst.getsockname()[1], k.getsockname()[1]


def _bound(side: Side, addr: str, port: int) -> tuple[Any, int]:
    """A socket of ``side`` with SO_REUSEADDR bound to ``addr``:``port`` (0: any), timeout
    5 s: (the socket, its port)."""
    s = side()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.settimeout(5)
    return s, s.getsockname()[1]


def _close_all(*socks: Any) -> None:
    for s in socks:
        with contextlib.suppress(OSError):
            s.close()


def rst_in_established(peer: Side, dut: Side) -> list[Any]:
    lst, k, d = _conn(peer, dut)
    k.sendall(b"abc")
    ports = _ports(lst, k)
    k.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
    k.close()
    dut.wait_gone(*ports)  # (the reset came)
    # bytes that came before the reset are read first (Linux), then ECONNRESET, then EPIPE
    out = [_try(lambda: d.recv(10)), _try(lambda: d.recv(10)), _try(lambda: d.send(b"x")),
           _try(lambda: d.send(b"x"))]
    _close_all(d, lst)
    return out


def rst_in_close_wait(peer: Side, dut: Side) -> list[Any]:
    lst, k, d = _conn(peer, dut)
    k.shutdown(socket.SHUT_WR)
    out: list[Any] = [_try(lambda: d.recv(10))]  # b'': CLOSE-WAIT
    ports = _ports(lst, k)
    k.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
    k.close()
    dut.wait_gone(*ports)  # (the reset came)
    out += [_try(lambda: d.send(b"x")), _try(lambda: d.send(b"x")), _try(lambda: d.recv(10))]
    _close_all(d, lst)
    return out


def rst_in_fin_wait_2(peer: Side, dut: Side) -> list[Any]:
    lst, k, d = _conn(peer, dut)
    d.shutdown(socket.SHUT_WR)
    out: list[Any] = [_try(lambda: k.recv(10))]  # b'': the DUT's FIN arrived (and is acked)
    ports = _ports(lst, k)
    dut.wait_states(lambda st: st == ["FIN-WAIT-2"], *ports, what="FIN-WAIT-2")  # (the ACK)
    k.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
    k.close()
    dut.wait_gone(*ports)  # (the reset came)
    out += [_try(lambda: d.recv(10)), _try(lambda: d.recv(10)), _try(lambda: d.send(b"x"))]
    _close_all(d, lst)
    return out


def rst_after_data_in_fin_wait_1(peer: Side, dut: Side) -> list[Any]:
    """The DUT closes with its FIN acked but the peer resets: the DUT's close is final, a new
    connection to the same listener still works."""
    lst, k, d = _conn(peer, dut)
    d.sendall(b"hello")
    d.close()
    out: list[Any] = [_try(lambda: k.recv(10)), _try(lambda: k.recv(10))]
    ports = _ports(lst, k)
    k.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
    k.close()
    dut.wait_gone(*ports)  # (the reset came)
    k2 = peer()
    k2.settimeout(5)
    k2.connect((DUT_IP, lst.getsockname()[1]))
    d2, _ = lst.accept()
    d2.sendall(b"again")
    out.append(_try(lambda: k2.recv(10)))
    _close_all(k2, d2, lst)
    return out


def fins_cross_with_data(peer: Side, dut: Side) -> list[Any]:
    """Both ends send 200 kB and shut down their side at once (data in flight both ways when
    the FINs cross); each reads everything, then EOF; both can then close cleanly."""
    lst, k, d = _conn(peer, dut)
    size = 200_000
    blob_k = bytes(i * 7 % 251 for i in range(size))
    blob_d = bytes(i * 13 % 251 for i in range(size))
    got: dict[str, bytes] = {}
    errors: list[BaseException] = []
    go = threading.Barrier(2)

    def side(name: str, s: Any, blob: bytes) -> None:
        try:
            go.wait(5)
            s.sendall(blob)
            s.shutdown(socket.SHUT_WR)
            buf = bytearray()
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
            got[name] = bytes(buf)
        except BaseException as exc:  # reported below
            errors.append(exc)

    def reader_first(name: str, s: Any, blob: bytes) -> None:
        # (sendall of 200 kB needs the other side reading: a helper thread reads meanwhile)
        side(name, s, blob)

    ts = [threading.Thread(target=reader_first, args=("k", k, blob_k)),
          threading.Thread(target=reader_first, args=("d", d, blob_d))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(20)
    assert not errors, errors
    out = [got.get("k") == blob_d, got.get("d") == blob_k, _try(lambda: d.send(b"x"))]
    _close_all(k, d, lst)
    return out


def simultaneous_shutdown(peer: Side, dut: Side) -> list[Any]:
    lst, k, d = _conn(peer, dut)
    go = threading.Barrier(2)

    def shut(s: Any) -> None:
        go.wait(5)
        s.shutdown(socket.SHUT_WR)

    ts = [threading.Thread(target=shut, args=(s,)) for s in (k, d)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(5)
    out = [_try(lambda: k.recv(10)), _try(lambda: d.recv(10)), _try(lambda: d.send(b"x")),
           _try(lambda: d.recv(10))]
    _close_all(k, d, lst)
    return out


def server_time_wait_takes_a_new_syn(peer: Side, dut: Side) -> list[Any]:
    """The DUT (server) closes first and sits in TIME-WAIT; the peer connects again from the
    same port at once: the SYN (newer timestamp) reopens the 4-tuple without waiting for a
    retransmission (each round well under the 1 s SYN retransmission timeout)."""
    lst = dut()
    lst.bind((DUT_IP, 0))
    lst.listen(8)
    lst.settimeout(5)
    port = lst.getsockname()[1]
    out: list[Any] = []
    cport = 0
    for i in range(4):
        k, cport = _bound(peer, PEER_IP, cport)
        r = _try(lambda k=k: k.connect((DUT_IP, port)))
        fast = kernel_retransmits(k) == 0  # (the SYN was not sent again)
        d, _ = lst.accept()
        d.sendall(b"%d" % i)
        d.close()  # server first: the DUT goes to TIME-WAIT
        out += [r, fast, _try(lambda k=k: k.recv(10)), _try(lambda k=k: k.recv(10))]
        k.close()
        peer.wait_gone(cport, port)  # (the DUT's ACK of its FIN: the peer's LAST-ACK over)
    lst.close()
    return out


def cps_from_the_dut(peer: Side, dut: Side) -> list[Any]:
    """The DUT is the client of the cps exchange (request, reply, the client closes on the
    reply while the server closes after replying) 50 times; every reply arrives whole."""
    lst = peer()
    lst.bind((PEER_IP, 0))
    lst.listen(64)
    port = lst.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        lst.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = lst.accept()
            except OSError:
                continue
            c.settimeout(5)
            with contextlib.suppress(OSError):
                c.sendall(c.recv(64))
            c.close()

    t = threading.Thread(target=serve)
    t.start()
    out = []
    try:
        for i in range(50):
            c = dut()
            c.settimeout(5)
            c.connect((PEER_IP, port))
            msg = bytes([i]) * 64
            c.sendall(msg)
            got = b""
            while len(got) < 64:
                chunk = c.recv(64)
                if not chunk:
                    break
                got += chunk
            out.append(got == msg)
            c.close()
    finally:
        stop.set()
        t.join(5)
        lst.close()
    return [all(out), len(out)]


#: how long listen_backlog_bounds_the_handshakes gives each connect (was 0.15 s: a loaded
#: machine may take longer for a handshake); under the SYN's 1 s retransmission timeout, and a
#: dropped SYN's retransmission is dropped too while nobody accepts
PACE = 0.9


def listen_backlog_bounds_the_handshakes(peer: Side, dut: Side) -> list[Any]:
    """listen(1) and nobody accepting: 4 peers connect one after the other, each given
    :data:`PACE` to complete; Linux completes backlog + 1 handshakes (the accept queue's
    bound) and drops the others' SYNs (they wait for the SYN's retransmission, 1 s);
    accepting then lets every one of them through.  (A burst of SYNs that all arrive before
    the first handshake ends gets SYN-ACKs on Linux too: the bound applies when a SYN comes,
    so the peers are paced.)  A first connection to another listener resolves the two ends'
    link-layer addresses, so that the first paced handshake is not the one that waits for
    them (on a loaded machine that once took longer than PACE)."""
    warm = dut()
    warm.bind((DUT_IP, 0))
    warm.listen(1)
    w = peer()
    w.settimeout(5)
    w.connect(warm.getsockname())
    warm.settimeout(5)
    warm.accept()[0].close()
    _close_all(w, warm)
    lst = dut()
    lst.bind((DUT_IP, 0))
    lst.listen(1)
    port = lst.getsockname()[1]
    ks = []
    done = []
    for _ in range(4):
        k = peer()
        k.setblocking(False)
        k.connect_ex((DUT_IP, port))
        ks.append(k)
        _, writable, _ = select.select([], [k], [], PACE)
        done.append(bool(writable) and k.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0)
    lst.settimeout(5)
    accepted = [_try(lambda: lst.accept()[0].close()) for _ in range(4)]
    _close_all(lst, *ks)
    return [done, accepted]


def client_time_wait_and_its_port(peer: Side, dut: Side) -> list[Any]:
    """The DUT (client, bound port, SO_REUSEADDR) closes first and sits in TIME-WAIT.  Linux:
    another socket with SO_REUSEADDR binds the port and connects the same 4-tuple at once
    (the TIME-WAIT had timestamps: tcp_twsk_unique reuses it for an explicitly bound port); a
    socket without SO_REUSEADDR cannot bind the port (EADDRINUSE) while the TIME-WAIT lasts."""
    lst = peer()
    lst.bind((PEER_IP, 0))
    lst.listen(8)
    lst.settimeout(5)
    port = lst.getsockname()[1]
    c = dut()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    c.bind((DUT_IP, 0))
    cport = c.getsockname()[1]
    c.settimeout(5)
    c.connect((PEER_IP, port))
    a, _ = lst.accept()
    c.close()  # the client first: TIME-WAIT at the DUT
    out = [_try(lambda: a.recv(1))]
    a.close()
    dut.wait_time_wait(cport, port)
    peer.wait_gone(port, cport)  # (the DUT's last ACK came)
    c2 = dut()
    c2.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    out.append(_try(lambda: c2.bind((DUT_IP, cport))))
    c2.settimeout(5)
    out.append(_try(lambda: c2.connect((PEER_IP, port))))
    c2.close()
    c3 = dut()
    out.append(_try(lambda: c3.bind((DUT_IP, cport))))
    _close_all(c3, lst)
    return out


SCENARIOS = [rst_in_established, rst_in_close_wait, rst_in_fin_wait_2,
             rst_after_data_in_fin_wait_1, fins_cross_with_data, simultaneous_shutdown,
             server_time_wait_takes_a_new_syn, cps_from_the_dut,
             listen_backlog_bounds_the_handshakes, client_time_wait_and_its_port]
_ORACLE: dict[str, list[Any]] = {}


def _oracle(scenario: Scenario) -> list[Any]:
    """What ``scenario`` gives with the kernel as the DUT (once per run)."""
    if scenario.__name__ not in _ORACLE:
        with _setup("kernel") as (peer, dut):
            _ORACLE[scenario.__name__] = scenario(peer, dut)
    return _ORACLE[scenario.__name__]


def ioth_matches_the_kernel(scenario: Scenario) -> None:
    """``scenario`` with an ioth stack as the DUT gives what it gives with the kernel."""
    expected = _oracle(scenario)
    with _setup("ioth") as (peer, dut):
        got = scenario(peer, dut)
    assert got == expected


BUGS: dict[Scenario, str] = {
    # (fixed: rst_in_close_wait was a strict xfail: "after a reset in CLOSE-WAIT the first
    # send() returns 1 (the byte is lost silently); Linux: EPIPE")
    # (fixed in a184747: listen_backlog_bounds_the_handshakes was a strict xfail: "listen(1)
    # with nobody accepting completes every handshake (4 of 4 within 0.5 s); Linux: backlog
    # + 1 (2), the others wait"; the scenario now paces its peers, see there)
    # (fixed: client_time_wait_and_its_port was a strict xfail: "a client's TIME-WAIT (with
    # timestamps) blocks a new connect from the same bound port (EADDRINUSE; Linux reuses
    # it) but not a bind without SO_REUSEADDR (Linux: EADDRINUSE)"; 750bebd the connect,
    # then the socket layer's bind conflicts count connections and TIME-WAIT entries)
}


@pytest.mark.parametrize("scenario", [
    pytest.param(s, marks=pytest.mark.xfail(strict=True, reason=BUGS[s])) if s in BUGS else s
    for s in SCENARIOS], ids=[s.__name__ for s in SCENARIOS])
def test_ioth_sees_what_the_kernel_sees(scenario: Scenario) -> None:
    ioth_matches_the_kernel(scenario)
