"""Session 7: the descriptor used behind the socket object's back (os.write between two
sends, O_NONBLOCK set with fcntl), as review s6's test_review_fd scenarios found them."""

from __future__ import annotations

import os

import pytest

from tests.sockets.helpers import lone, loopback_pair


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
