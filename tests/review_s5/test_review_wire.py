"""Adversarial review (session 5): the frames of a cps connection on the wire, against Linux.

The context of session 5: "behaviour on the wire must stay Linux-like (frame sequence of a
connection as now; no deferred handshake ACK, no holding data back)".  An ioth stack on a TAP
whose other side is the kernel of a test namespace runs the cps exchange (a new connection
each time, 64-byte request and reply, the server closes after replying, the client closes on
the reply) five times as the client of a kernel server and five times as the server of a
kernel client; an AF_PACKET socket in the namespace captures every frame.  The ioth side's
frames of each connection must be, in order:

* client: SYN (Linux's option layout: MSS, SACK-permitted, Timestamps, NOP, window scale),
  the handshake's ACK on its own (not deferred onto the request), the request, its FIN (which
  acknowledges the reply), and one more ACK exactly when its FIN did not acknowledge the
  server's FIN (the FINs crossed);
* server: SYN-ACK (same layout), the reply (carrying the ACK of the request), its FIN, and the
  ACK of the client's FIN when that came after the server's FIN was sent;

with no reset and no segment sent twice (the kernel peer answers at once: nothing is lost).
Linux itself sends one more ACK per connection at most (quickack of the request or the reply);
the reference kernel<->kernel sequences are 10-11 frames, these are 9.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ioth.sockets import socket as isocket
from tests.net.nsutil import inside
from tests.sockets.helpers import _tcp_ready
from tests.support.peers import kernel_lan

pytestmark = pytest.mark.interop

PORT = 9000
KERNEL, IOTH = "192.0.2.1", "192.0.2.2"
SYN, FIN, RST, PSH, ACK = 0x02, 0x01, 0x04, 0x08, 0x10
N = 5


class Seg:
    """One captured TCP segment."""

    def __init__(self, frame: bytes) -> None:
        ihl = (frame[14] & 15) * 4
        t = 14 + ihl
        self.src = socket.inet_ntoa(frame[26:30])
        (self.sport, self.dport, self.seq, self.ack, off, self.flags,
         self.window) = struct.unpack_from("!HHIIBBH", frame, t)
        doff = (off >> 4) * 4
        self.opts = bytes(frame[t + 20:t + doff])
        self.len = struct.unpack_from("!H", frame, 16)[0] - ihl - doff

    def shape(self) -> str:
        flags = "".join(c for b, c in ((SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P"),
                                       (ACK, "A")) if self.flags & b)
        return flags + (str(self.len) if self.len else "")

    def __repr__(self) -> str:
        return f"{self.src}:{self.shape()}"


@pytest.fixture
def lan() -> Iterator[tuple[Any, Any, socket.socket]]:
    with kernel_lan("rvw") as (ns, stack, tap):
        _tcp_ready(stack)
        with inside(ns.name):
            cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
        try:
            cap.bind((tap, 0))
            cap.settimeout(0.3)
            yield ns, stack, cap
        finally:
            cap.close()


def _fins_acked(segs: list[Seg]) -> bool:
    """Both ends sent a FIN and the other end acknowledged it."""
    fins = [s for s in segs if s.flags & FIN]
    return len({s.src for s in fins}) == 2 and all(
        any(o.src != s.src and o.flags & ACK and o.ack == (s.seq + s.len + 1) & 0xFFFFFFFF
            for o in segs) for s in fins)


def _captured(cap: socket.socket, wait: float = 10.0) -> dict[int, list[Seg]]:
    """TCP segments of port PORT by connection (the client's port), in capture order: read
    until N connections ended (both FINs acknowledged; for ``wait`` s at most), then until
    the capture is quiet for 0.3 s (any frame sent after the end is captured too)."""
    conns: dict[int, list[Seg]] = {}
    deadline = time.monotonic() + wait
    while True:
        try:
            frame = cap.recv(65536)
        except TimeoutError:
            ended = len(conns) >= N and all(_fins_acked(v) for v in conns.values())
            if ended or time.monotonic() > deadline:
                return conns
            continue
        if frame[12:14] != b"\x08\x00" or frame[23] != 6:
            continue
        seg = Seg(frame)
        if PORT in (seg.sport, seg.dport):
            conns.setdefault(seg.dport if seg.sport == PORT else seg.sport, []).append(seg)


def _serve(lst: Any, errors: list[BaseException]) -> None:
    try:
        for _ in range(N):
            c, _ = lst.accept()
            c.settimeout(5)
            c.sendall(c.recv(64))
            c.close()
    except BaseException as exc:  # reported by the test
        errors.append(exc)


def _client(mk: Any, addr: str) -> None:
    for i in range(N):
        s = mk()
        s.settimeout(5)
        s.connect((addr, PORT))
        s.sendall(bytes([i]) * 64)
        got = b""
        while len(got) < 64:
            chunk = s.recv(64)
            assert chunk
            got += chunk
        assert got == bytes([i]) * 64
        s.close()


def _exchange(lst: Any, mk: Any, addr: str, cap: socket.socket) -> dict[int, list[Seg]]:
    """N cps exchanges: ``lst`` serves them in a thread, sockets made by ``mk`` connect to
    ``addr``; the captured segments of the N connections."""
    errors: list[BaseException] = []
    t = threading.Thread(target=_serve, args=(lst, errors))
    t.start()
    try:
        _client(mk, addr)
    finally:
        t.join(10)
        lst.close()
    assert not errors, errors
    conns = _captured(cap)
    assert len(conns) == N
    return conns


def _check_common(segs: list[Seg]) -> None:
    assert not [s for s in segs if s.flags & RST], segs
    seen = set()
    for s in segs:
        key = (s.src, s.seq, s.flags & (SYN | FIN), s.len)
        if s.len or s.flags & (SYN | FIN):
            assert key not in seen, f"sent twice: {s} in {segs}"
            seen.add(key)
    # every FIN is acknowledged by the other side
    for s in segs:
        if s.flags & FIN:
            fin_end = (s.seq + s.len + 1) & 0xFFFFFFFF
            assert any(o.src != s.src and o.flags & ACK and o.ack == fin_end for o in segs), \
                f"FIN of {s.src} never acknowledged: {segs}"


def _syn_layout(opts: bytes) -> bool:
    return (len(opts) == 20 and opts[0:2] == b"\x02\x04" and opts[4:8] == b"\x04\x02\x08\x0a"
            and opts[16:19] == b"\x01\x03\x03")


def test_ioth_client_frames(lan: tuple[Any, Any, socket.socket]) -> None:
    ns, stack, cap = lan
    with inside(ns.name):
        lst = socket.socket()
    lst.bind((KERNEL, PORT))
    lst.listen(16)
    conns = _exchange(lst, lambda: isocket(stack, socket.AF_INET, socket.SOCK_STREAM), KERNEL,
                      cap)
    for segs in conns.values():
        _check_common(segs)
        mine = [s for s in segs if s.src == IOTH]
        theirs = [s for s in segs if s.src == KERNEL]
        shapes = [s.shape() for s in mine]
        server_fin = next(s for s in theirs if s.flags & FIN)
        fin_end = (server_fin.seq + server_fin.len + 1) & 0xFFFFFFFF
        my_fin = mine[3]
        crossed = my_fin.ack != fin_end
        assert shapes == ["S", "A", "PA64", "FA"] + (["A"] if crossed else []), segs
        assert _syn_layout(mine[0].opts), mine[0].opts.hex()
        synack = next(s for s in theirs if s.flags & SYN)
        assert mine[1].ack == (synack.seq + 1) & 0xFFFFFFFF
        reply = next(s for s in theirs if s.len == 64)
        assert my_fin.ack in ((reply.seq + 64) & 0xFFFFFFFF, fin_end), segs


def test_ioth_server_frames(lan: tuple[Any, Any, socket.socket]) -> None:
    ns, stack, cap = lan
    lst = isocket(stack, socket.AF_INET, socket.SOCK_STREAM)
    lst.bind((IOTH, PORT))
    lst.listen(16)

    def kernel_socket() -> socket.socket:
        with inside(ns.name):
            return socket.socket()
    conns = _exchange(lst, kernel_socket, IOTH, cap)
    for segs in conns.values():
        _check_common(segs)
        mine = [s for s in segs if s.src == IOTH]
        theirs = [s for s in segs if s.src == KERNEL]
        shapes = [s.shape() for s in mine]
        client_fin = next(s for s in theirs if s.flags & FIN)
        # the ACK of the client's FIN goes alone when the client's FIN came after ours
        fin_acked_by_our_fin = mine[2].ack == (client_fin.seq + 1) & 0xFFFFFFFF
        assert shapes == ["SA", "PA64", "FA"] + ([] if fin_acked_by_our_fin else ["A"]), segs
        assert _syn_layout(mine[0].opts), mine[0].opts.hex()
        request = next(s for s in theirs if s.len == 64)
        assert mine[1].ack == (request.seq + 64) & 0xFFFFFFFF
