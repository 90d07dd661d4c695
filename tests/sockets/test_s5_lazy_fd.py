"""TCP sockets without a descriptor until one is needed (stream.LAZY_FD, session 5).

A blocking socket gets its AF_UNIX descriptor only when something needs it (fileno(),
settimeout/setblocking that change the mode, listen, pairing, detach, SO_RCVTIMEO); a blocking
connect or direct accept that stays unpaired never makes one.  Every test runs with the knob on
and off (and where it matters with LAZY_PAIR on and off): both must behave the same, and
fileno() must always give a real descriptor that select/poll accept (DESIGN rule 4).
"""

from __future__ import annotations

import _socket
import errno
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import ioth
from ioth.sockets import socket as isocket
from ioth.sockets import stream
from tests.sockets.helpers import network

_raw_fileno = _socket.socket.fileno


@pytest.fixture(params=[1, 0], ids=["lazyfd", "eagerfd"])
def lazy_fd(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    monkeypatch.setattr(stream, "LAZY_FD", request.param)
    yield request.param


@pytest.fixture(params=[1, 0], ids=["lazypair", "paired"])
def lazy_pair(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
              ) -> Iterator[int]:
    monkeypatch.setattr(stream, "LAZY_PAIR", request.param)
    yield request.param


@pytest.fixture
def net(tmp_path: Path) -> Iterator[tuple[ioth.Stack, ioth.Stack, Any]]:
    with network(tmp_path, 2) as (a, b):
        srv = isocket(b, socket.AF_INET, socket.SOCK_STREAM)
        srv.bind(("192.0.2.2", 7800))
        srv.listen()
        try:
            yield a, b, srv
        finally:
            srv.close()


def _echo_once(srv: Any, out: list[Any]) -> threading.Thread:
    def run() -> None:
        try:
            c, _ = srv.accept()
            out.append(c)
            data = c.recv(100)
            c.sendall(data.upper())
        except Exception as exc:  # (recorded for the assertion)
            out.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    lh = srv._listen
    deadline = time.monotonic() + 5
    while lh is not None and not lh.hold and time.monotonic() < deadline:
        time.sleep(0.002)  # (until accept serves inline: else the engine may take the SYN
    return t               # first and the connection is accepted paired, by design)


def test_a_blocking_connection_never_makes_a_descriptor(
        net: tuple[ioth.Stack, ioth.Stack, Any], lazy_fd: int, lazy_pair: int) -> None:
    """connect, sendall, recv, close: the same bytes either way; with both knobs on the
    socket never had a descriptor (and the accepted one neither, when the accepting thread
    served the SYN itself: if the machine is slow, the engine thread may take it between two
    inline waits and the connection is then accepted paired, by design)."""
    a, _b, srv = net
    got: list[Any] = []
    t = _echo_once(srv, got)
    c = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
    fresh = _raw_fileno(c)
    c.connect(("192.0.2.2", 7800))
    c.sendall(b"hello")
    assert c.recv(100) == b"HELLO"
    had = _raw_fileno(c)
    t.join(5)
    acc = got[0]
    assert isinstance(acc, stream.StreamSocket), repr(got)
    acc_fd = _raw_fileno(acc)
    if acc_fd >= 0:
        assert os.fstat(acc_fd)  # (accepted paired: a real descriptor)
    assert c.type == socket.SOCK_STREAM and c.family == socket.AF_INET and c.proto == 0
    assert c.gettimeout() is None and c.getblocking()
    assert "StreamSocket" in repr(c)
    c.close()
    acc.close()
    assert _raw_fileno(c) == -1
    if lazy_fd and lazy_pair:
        assert fresh == had == -1
    elif not lazy_fd:
        assert fresh >= 0 and had == fresh
        assert acc_fd >= 0


def test_fileno_gives_a_working_descriptor(net: tuple[ioth.Stack, ioth.Stack, Any],
                                           lazy_fd: int, lazy_pair: int) -> None:
    """fileno() after connect: a real descriptor that poll reports readable when the reply
    arrives, and the reply reads through the socket."""
    a, _b, srv = net
    got: list[Any] = []
    t = _echo_once(srv, got)
    c = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
    c.connect(("192.0.2.2", 7800))
    fd = c.fileno()
    assert fd >= 0 and os.fstat(fd)
    assert _socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, os.dup(fd)).close() is None
    c.sendall(b"abc")
    p = select.poll()
    p.register(fd, select.POLLIN)
    assert p.poll(5000)
    assert c.recv(100) == b"ABC"
    assert c.fileno() == fd
    t.join(5)
    c.close()
    got[0].close()
    assert c.fileno() == -1


def test_fileno_before_connect_is_the_connected_descriptor(
        net: tuple[ioth.Stack, ioth.Stack, Any], lazy_fd: int) -> None:
    """A descriptor registered before connect stays the socket's (select sees the reply)."""
    a, _b, srv = net
    got: list[Any] = []
    t = _echo_once(srv, got)
    c = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
    fd = c.fileno()
    assert fd >= 0
    c.connect(("192.0.2.2", 7800))
    assert c.fileno() == fd
    c.sendall(b"xy")
    r, _, _ = select.select([c], [], [], 5)
    assert r == [c]
    assert c.recv(10) == b"XY"
    t.join(5)
    c.close()
    got[0].close()


def test_timeouts_and_modes(net: tuple[ioth.Stack, ioth.Stack, Any], lazy_fd: int) -> None:
    """settimeout(None) and setblocking(True) change nothing (no descriptor needed);
    settimeout(x) and setblocking(False) work as on a socket made with its descriptor."""
    a, _b, srv = net
    c = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
    c.settimeout(None)
    c.setblocking(True)
    assert (_raw_fileno(c) < 0) == bool(lazy_fd)
    with pytest.raises(ValueError):
        c.settimeout(-1)
    c.settimeout(2.5)
    assert c.gettimeout() == 2.5 and _raw_fileno(c) >= 0
    assert not os.get_blocking(_raw_fileno(c))
    c.settimeout(None)
    assert os.get_blocking(_raw_fileno(c))
    c.close()
    d = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
    d.setblocking(False)
    assert d.gettimeout() == 0.0
    assert d.connect_ex(("192.0.2.2", 7800)) == errno.EINPROGRESS
    _, w, _ = select.select([], [d], [], 5)
    assert w == [d] and d.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
    acc, _ = srv.accept()
    d.close()
    acc.close()
    e = isocket(a, socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    assert e.gettimeout() == 0.0 and _raw_fileno(e) >= 0
    e.close()


def test_default_timeout_set_after_the_socket_was_made(
        net: tuple[ioth.Stack, ioth.Stack, Any], lazy_fd: int) -> None:
    """socket.setdefaulttimeout after the socket was made does not change it (as a kernel
    socket); one made after it has the default timeout and a descriptor."""
    a, _b, _srv = net
    c = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(3.0)
    try:
        fd = c.fileno()
        assert c.gettimeout() is None and os.get_blocking(fd)
        d = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
        assert d.gettimeout() == 3.0 and _raw_fileno(d) >= 0
        d.close()
    finally:
        socket.setdefaulttimeout(old)
    c.close()


def test_closed_socket_calls(net: tuple[ioth.Stack, ioth.Stack, Any], lazy_fd: int) -> None:
    """Calls on a closed socket fail as on a socket that had a descriptor."""
    a, _b, _srv = net
    c = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
    c.close()
    c.close()
    assert c.fileno() == -1
    with pytest.raises(OSError) as exc:
        c.settimeout(1.0)
    assert exc.value.errno == errno.EBADF
    with pytest.raises(OSError):
        c.setblocking(False)
    with pytest.raises(OSError):
        c.recv(1)
    assert "StreamSocket" in repr(c)


def test_detach_and_rcvtimeo(net: tuple[ioth.Stack, ioth.Stack, Any], lazy_fd: int) -> None:
    """detach() of a socket without a descriptor returns a real one; SO_RCVTIMEO needs the
    descriptor and works (EAGAIN at expiry)."""
    a, _b, srv = net
    c = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("@ll", 0, 100_000))
    c.connect(("192.0.2.2", 7800))
    acc, _ = srv.accept()
    with pytest.raises(BlockingIOError):
        c.recv(10)
    c.close()
    acc.close()
    d = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
    fd = d.detach()
    assert fd >= 0
    os.fstat(fd)
    os.close(fd)


def test_fork_gives_the_child_a_working_descriptor(
        net: tuple[ioth.Stack, ioth.Stack, Any], lazy_fd: int) -> None:
    """A connected socket without a descriptor is paired before a fork: the child writes
    through its descriptor and the peer gets the bytes."""
    a, _b, srv = net
    c = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
    c.connect(("192.0.2.2", 7800))
    acc, _ = srv.accept()
    acc.settimeout(5)
    pid = os.fork()
    if pid == 0:  # the child: only the descriptor (the stack is the parent's)
        code = 1
        try:
            fd = _raw_fileno(c)
            if fd >= 0:
                os.write(fd, b"child")
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert acc.recv(10) == b"child"
    c.close()
    acc.close()
