"""Session 7: the descriptor used behind the socket object's back (os.write between two
sends, O_NONBLOCK set with fcntl), as review s6's test_review_fd scenarios found them."""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.sockets.helpers import lone, loopback_pair, network


def _read_exactly(conn: object, n: int) -> bytes:
    got = bytearray()
    while len(got) < n:
        chunk = conn.recv(n - len(got))  # type: ignore[attr-defined]
        if not chunk:
            break
        got += chunk
    return bytes(got)


@pytest.mark.parametrize("timeout", [None, 5.0])
def test_os_write_between_sends_keeps_the_order(timeout: float | None) -> None:
    """os.write on fileno() between two sendall calls, with the engine thread unable to pump
    the descriptor meanwhile (the stack lock held by this thread): the second sendall's
    direct send must take the descriptor's bytes first (Linux: the bytes in call order)."""
    with lone() as s:
        srv, cli, conn = loopback_pair(s)
        cli.settimeout(timeout)
        fd = cli.fileno()
        for i in range(20):
            with s.lock:  # (the pump cannot move the os.write bytes before the next send)
                cli.sendall(b"one%d," % i)
                os.write(fd, b"two%d," % i)
                cli.sendall(b"three%d;" % i)
            want = b"one%d,two%d,three%d;" % (i, i, i)
            assert _read_exactly(conn, len(want)) == want
        for x in (cli, conn, srv):
            x.close()


def test_fileno_before_connect_also_orders_os_write() -> None:
    """fileno() taken before connect (a descriptor registered early): the same order."""
    import socket

    from ioth.sockets import socket as isocket
    with lone() as s:
        srv = isocket(s, socket.AF_INET, socket.SOCK_STREAM)
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        cli = isocket(s, socket.AF_INET, socket.SOCK_STREAM)
        fd = cli.fileno()
        cli.settimeout(5)
        cli.connect(srv.getsockname())
        conn, _ = srv.accept()
        conn.settimeout(5)
        with s.lock:
            cli.sendall(b"a")
            os.write(fd, b"b")
            cli.send(b"c")
        assert _read_exactly(conn, 3) == b"abc"
        for x in (cli, conn, srv):
            x.close()


def test_unexposed_socket_keeps_direct_sends_clean() -> None:
    """A socket whose descriptor was never taken does not look at it before each direct send
    (the common path: no poll per send)."""
    with lone() as s:
        srv, cli, conn = loopback_pair(s)
        cli.sendall(b"x")
        h = cli._h  # type: ignore[attr-defined]
        assert h is not None and h.peek is None and not h.dirty
        cli.fileno()
        assert h.peek is not None and h.dirty
        for x in (cli, conn, srv):
            x.close()


def _set_nonblocking(fd: int, on: bool) -> None:
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK if on else flags & ~os.O_NONBLOCK)


def _across(a: Any, b: Any) -> tuple[Any, Any, Any]:
    """(listener on b, client on a, accepted): a connection across the switch (plugs to
    serve: a blocking read may wait serving them inline, the path that must notice)."""
    import socket

    from ioth.sockets import socket as isocket
    srv = isocket(b, socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("192.0.2.2", 0))
    srv.listen()
    cli = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
    cli.settimeout(5)
    cli.connect(srv.getsockname())
    conn, _ = srv.accept()
    return srv, cli, conn


def test_fcntl_nonblocking_recv_fails_at_once(tmp_path: Path) -> None:
    """O_NONBLOCK set with fcntl on fileno() of a blocking socket: recv and recv_into with
    nothing there raise BlockingIOError at once (CPython on a kernel socket), with data they
    return it; O_NONBLOCK cleared: recv waits again (here for bytes sent a little later)."""
    with network(tmp_path) as (a, b):
        srv, cli, conn = _across(a, b)
        conn.settimeout(None)
        fd = conn.fileno()
        _set_nonblocking(fd, True)
        assert conn.gettimeout() is None  # (the object still thinks it is blocking)
        with pytest.raises(BlockingIOError):
            conn.recv(10)
        with pytest.raises(BlockingIOError):
            conn.recv_into(bytearray(10))
        cli.sendall(b"data")
        got = b""
        for _ in range(200):  # (the bytes cross the loopback on the engine thread)
            try:
                got += conn.recv(10)
                break
            except BlockingIOError:
                threading.Event().wait(0.01)
        assert got == b"data"
        _set_nonblocking(fd, False)
        later = threading.Timer(0.2, lambda: cli.sendall(b"late"))
        later.start()
        assert conn.recv(10) == b"late"  # (blocking again: it waited)
        later.join()
        for x in (cli, conn, srv):
            x.close()


def test_fcntl_nonblocking_accept_fails_at_once(tmp_path: Path) -> None:
    """The same on a listener: accept with nothing queued raises BlockingIOError at once;
    once a client connected, accept returns it."""
    import socket

    from ioth.sockets import socket as isocket
    with network(tmp_path) as (a, b):
        srv = isocket(b, socket.AF_INET, socket.SOCK_STREAM)
        srv.bind(("192.0.2.2", 0))
        srv.listen()
        _set_nonblocking(srv.fileno(), True)
        with pytest.raises(BlockingIOError):
            srv.accept()
        cli = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
        cli.settimeout(5)
        cli.connect(srv.getsockname())
        got = None
        for _ in range(200):
            try:
                got = srv.accept()
                break
            except BlockingIOError:
                threading.Event().wait(0.01)
        assert got is not None and got[1] == cli.getsockname()
        for x in (got[0], cli, srv):
            x.close()
