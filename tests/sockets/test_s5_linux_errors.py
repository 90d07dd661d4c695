"""Error codes after a reset and after a refused connect, ioth against the kernel (session 5).

Each scenario runs the same calls on a kernel TCP socket over the loopback (the referee) and on
an ioth socket (unpaired and paired, LAZY_PAIR 1 and 0) and compares what every call returned
or raised.  Linux (checked in a namespace before writing these): after the peer's RST the
socket is in TCP_CLOSE, so shutdown (any ``how``) and getpeername fail with ENOTCONN and the
first send reports ECONNRESET; a second connect after a refused one reports the pending error
or ECONNABORTED when the first left the socket connecting (a timeout or a non-blocking socket:
Python's connect read SO_ERROR), and a third (or the second of a plain blocking socket) starts
afresh.
"""

from __future__ import annotations

import errno
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import ioth
from ioth.sockets import socket as isocket
from ioth.sockets import stream
from tests.sockets.helpers import network

Op = Callable[[socket.socket], Any]


@pytest.fixture(params=[1, 0], ids=["lazy", "paired"])
def knob(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    monkeypatch.setattr(stream, "LAZY_PAIR", request.param)
    yield request.param


def _run(s: socket.socket, ops: list[tuple[str, Op]]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for name, op in ops:
        try:
            got = op(s)
            out.append((name, "ok" if got is None or isinstance(got, tuple) else got))
        except OSError as exc:
            out.append((name, errno.errorcode.get(exc.errno or 0, exc.errno)))
    return out


class _Side:
    """One end to test: make client sockets, a listener's address, a refused address."""

    def __init__(self, mk: Callable[[], socket.socket], listener: socket.socket,
                 refused: tuple[str, int]) -> None:
        self.mk = mk
        self.listener = listener
        self.addr = listener.getsockname()
        self.refused = refused

    def reset_pair(self) -> socket.socket:
        """A connected client socket whose peer reset the connection (RST received)."""
        c = self.mk()
        c.settimeout(5)
        c.connect(self.addr)
        a, _ = self.listener.accept()
        a.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        a.close()
        h = getattr(c, "_h", None)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if h is not None:  # (ioth: no fileno(), which would pair an unpaired socket)
                if h.conn.state is stream._CLOSED:
                    break
                time.sleep(0.005)
            else:
                select.select([c], [], [], 5)
                break
        return c


@pytest.fixture
def kernel_side() -> Iterator[_Side]:
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen()
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    refused = probe.getsockname()
    probe.close()
    try:
        yield _Side(socket.socket, lst, refused)
    finally:
        lst.close()


@pytest.fixture
def ioth_side(tmp_path: Path, knob: int) -> Iterator[_Side]:
    with network(tmp_path, 2) as (a, b):
        lst = isocket(b, socket.AF_INET, socket.SOCK_STREAM)
        lst.bind(("192.0.2.2", 7700))
        lst.listen()
        lst.settimeout(5)

        def mk(st: ioth.Stack = a) -> socket.socket:
            s: socket.socket = isocket(st, socket.AF_INET, socket.SOCK_STREAM)
            return s
        try:
            yield _Side(mk, lst, ("192.0.2.2", 7701))
        finally:
            lst.close()


def _shut(how: int) -> Op:
    return lambda s: s.shutdown(how)


_RESET_SEQUENCES: dict[str, list[tuple[str, Op]]] = {
    "shutdown-first": [
        ("shutdown WR", _shut(socket.SHUT_WR)),
        ("recv", lambda s: s.recv(1)),
        ("shutdown WR again", _shut(socket.SHUT_WR)),
        ("shutdown RD", _shut(socket.SHUT_RD)),
        ("shutdown RDWR", _shut(socket.SHUT_RDWR)),
        ("getpeername", lambda s: s.getpeername()),
    ],
    "recv-first": [
        ("recv", lambda s: s.recv(1)),
        ("shutdown WR", _shut(socket.SHUT_WR)),
        ("recv again", lambda s: s.recv(1)),
    ],
    "send-first": [
        ("send", lambda s: s.send(b"x")),
        ("send again", lambda s: s.send(b"x")),
        ("shutdown WR", _shut(socket.SHUT_WR)),
    ],
    "so-error-first": [
        ("SO_ERROR", lambda s: s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)),
        ("shutdown WR", _shut(socket.SHUT_WR)),
        ("getpeername", lambda s: s.getpeername()),
        ("recv", lambda s: s.recv(1)),
    ],
}


@pytest.mark.parametrize("seq", sorted(_RESET_SEQUENCES))
def test_calls_after_the_peers_reset_as_linux(kernel_side: _Side, ioth_side: _Side,
                                              seq: str) -> None:
    """After an RST: shutdown and getpeername ENOTCONN, send ECONNRESET then EPIPE..."""
    ops = _RESET_SEQUENCES[seq]
    results = []
    for side in (kernel_side, ioth_side):
        c = side.reset_pair()
        try:
            results.append(_run(c, ops))
        finally:
            c.close()
    assert results[1] == results[0]
    assert results[0][0][1] != "ok" or seq == "so-error-first"  # (the referee saw the reset)


def _connects(side: _Side, timeout: float | None) -> list[tuple[str, Any]]:
    c = side.mk()
    c.settimeout(timeout)
    ops: list[tuple[str, Op]] = [
        ("refused", lambda s: s.connect(side.refused)),
        ("again", lambda s: s.connect(side.refused)),
        ("to the listener", lambda s: s.connect(side.addr)),
        ("getpeername", lambda s: s.getpeername() == side.addr),
        ("SO_ERROR", lambda s: s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)),
    ]
    try:
        out = _run(c, ops)
        if out[2][1] == "ok":
            a, _ = side.listener.accept()
            c.sendall(b"hello")
            assert a.recv(5) == b"hello"
            a.sendall(b"back")
            assert c.recv(4) == b"back"
            a.close()
        return out
    finally:
        c.close()


@pytest.mark.parametrize("timeout", [5.0, None], ids=["timeout", "blocking"])
def test_connect_after_a_refused_connect_as_linux(kernel_side: _Side, ioth_side: _Side,
                                                  timeout: float | None) -> None:
    """With a timeout: ECONNREFUSED, ECONNABORTED, then a new connect works; plain blocking:
    ECONNREFUSED twice (each a new attempt), then a new connect works."""
    ref = _connects(kernel_side, timeout)
    assert ref[0][1] == "ECONNREFUSED" and ref[2][1] == "ok"
    assert _connects(ioth_side, timeout) == ref


def _nonblocking(side: _Side, read_so_error: bool) -> list[Any]:
    c = side.mk()
    c.setblocking(False)
    out: list[Any] = []
    try:
        out.append(errno.errorcode.get(c.connect_ex(side.refused)))
        select.select([], [c], [], 5)
        if read_so_error:
            out.append(errno.errorcode.get(c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)))
        out.append(errno.errorcode.get(c.connect_ex(side.refused)))
        out.append(errno.errorcode.get(c.connect_ex(side.refused)))  # (a new attempt)
        select.select([], [c], [], 5)
        out.append(errno.errorcode.get(c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)))
        return out
    finally:
        c.close()


@pytest.mark.parametrize("read_so_error", [False, True], ids=["connect", "so-error"])
def test_nonblocking_connect_after_a_refusal_as_linux(kernel_side: _Side, ioth_side: _Side,
                                                      read_so_error: bool) -> None:
    """EINPROGRESS; the refusal (from connect or SO_ERROR; then ECONNABORTED); then a new
    attempt, EINPROGRESS, refused again."""
    ref = _nonblocking(kernel_side, read_so_error)
    assert ref[0] == "EINPROGRESS" and ref[-2] == "EINPROGRESS"
    assert _nonblocking(ioth_side, read_so_error) == ref


def _refused_then_io(side: _Side, timeout: float | None, register: bool) -> list[Any]:
    c = side.mk()
    c.settimeout(timeout)
    ep = select.epoll()
    out: list[Any] = []
    try:
        if register:
            ep.register(c.fileno(), select.EPOLLIN)
        out += _run(c, [("refused", lambda s: s.connect(side.refused))])
        out.append(("readable", bool(select.select([c], [], [], 2)[0])))
        out += _run(c, [("recv", lambda s: s.recv(1)),
                        ("recv_into", lambda s: s.recv_into(bytearray(4))),
                        ("send", lambda s: s.send(b"x")),
                        ("sendall", lambda s: s.sendall(b"x")),
                        ("SO_ERROR", lambda s: s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)),
                        ("again", lambda s: s.connect(side.refused))])
        for _ in range(2):
            got = _run(c, [("to the listener", lambda s: s.connect(side.addr))])
            out += got
            if got[0][1] == "ok":
                break
        a, _ = side.listener.accept()
        if register:
            out.append(("registered: nothing yet", ep.poll(0.1)))
        a.sendall(b"ping")
        if register:
            out.append(("registered: readable", bool(ep.poll(3))))
        out.append(("reply", c.recv(4)))
        a.close()
        return out
    finally:
        ep.close()
        c.close()


@pytest.mark.parametrize("register", [False, True], ids=["plain", "registered"])
@pytest.mark.parametrize("timeout", [5.0, None], ids=["timeout", "blocking"])
def test_io_after_a_refused_connect_then_a_new_one(kernel_side: _Side, ioth_side: _Side,
                                                   timeout: float | None,
                                                   register: bool) -> None:
    """After a refused connect the socket is readable, recv gives end of stream and send
    EPIPE; a registration made before the refused connect reports the new connection's bytes
    (same descriptor: the failed connect's engine end serves the next one)."""
    ref = _refused_then_io(kernel_side, timeout, register)
    assert ("reply", b"ping") in ref
    assert _refused_then_io(ioth_side, timeout, register) == ref


@pytest.fixture(params=[1, 0], ids=["lazyfd", "eagerfd"])
def lazy_fd(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    monkeypatch.setattr(stream, "LAZY_FD", request.param)
    yield request.param


def test_message_calls_on_an_unconnected_socket_as_linux(kernel_side: _Side, ioth_side: _Side,
                                                         lazy_fd: int) -> None:
    """recvmsg, recvmsg_into and sendmsg (with and without an address) on a socket never
    connected: ENOTCONN for the reads and EPIPE for the writes, as recv and send (review s5's
    test_msg_calls_on_an_unconnected_socket covers recvmsg and sendmsg)."""
    ops: list[tuple[str, Op]] = [
        ("recvmsg", lambda s: s.recvmsg(10)),
        ("recvmsg_into", lambda s: s.recvmsg_into([bytearray(10)])),
        ("sendmsg", lambda s: s.sendmsg([b"x"])),
        ("sendmsg_addr", lambda s: s.sendmsg([b"x"], [], 0, ("192.0.2.9", 9))),
    ]

    def run(side: _Side) -> list[tuple[str, Any]]:
        out = []
        for op in ops:
            s = side.mk()
            try:
                out += _run(s, [op])
            finally:
                s.close()
        return out

    ref = run(kernel_side)
    assert ref == [("recvmsg", "ENOTCONN"), ("recvmsg_into", "ENOTCONN"),
                   ("sendmsg", "EPIPE"), ("sendmsg_addr", "EPIPE")]
    assert run(ioth_side) == ref
