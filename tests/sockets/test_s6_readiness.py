"""Session-6 readiness fixes of ioth TCP sockets on a stack's loopback (the kernel-oracle
versions are in tests/review_s6/test_review_readiness.py): POLLERR after a reset and after a
refused non-blocking connect until the error is taken, the descriptor renewed in place for
the next connect, connect_ex's completion check."""

from __future__ import annotations

import errno
import select
import socket
import struct
import time

from ioth.sockets import socket as isocket
from tests.sockets.helpers import lone, loopback_pair

LINGER0 = struct.pack("ii", 1, 0)
SO_ERROR = (socket.SOL_SOCKET, socket.SO_ERROR)


def _mask(s: socket.socket, wait: float = 0.0) -> int:
    p = select.poll()
    p.register(s, select.POLLIN | select.POLLOUT | select.POLLRDHUP)
    got = p.poll(int(wait * 1000))
    return got[0][1] if got else 0


def test_reset_marks_the_descriptor_until_taken() -> None:
    """POLLERR after the peer's reset, until SO_ERROR takes it; a read then says b"" and
    a send EPIPE; or the first read takes it (ECONNRESET) and POLLERR goes."""
    with lone() as stack:
        for take in ("SO_ERROR", "recv"):
            srv, cli, conn = loopback_pair(stack)
            conn.fileno()  # (paired: the mask is the descriptor's)
            cli.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
            cli.close()
            time.sleep(0.1)
            m = _mask(conn)
            assert m & select.POLLERR and m & select.POLLHUP and m & select.POLLIN
            if take == "SO_ERROR":
                assert conn.getsockopt(*SO_ERROR) == errno.ECONNRESET
                assert conn.getsockopt(*SO_ERROR) == 0
                assert not _mask(conn) & select.POLLERR
                assert conn.recv(10) == b""
            else:
                try:
                    conn.recv(10)
                    raise AssertionError("recv after a reset did not fail")
                except ConnectionResetError:
                    pass
                assert not _mask(conn) & select.POLLERR
                assert conn.getsockopt(*SO_ERROR) == 0
            try:
                conn.send(b"x")
                raise AssertionError("send after a reset did not fail")
            except BrokenPipeError:
                pass
            conn.close()
            srv.close()


def test_refused_nonblocking_connect_then_connect_again() -> None:
    """A refused non-blocking connect: POLLERR|POLLHUP until SO_ERROR (ECONNREFUSED) takes
    the error; a new connect on the same socket (and descriptor number) works."""
    with lone() as stack:
        probe = isocket(stack, socket.AF_INET, socket.SOCK_STREAM)
        probe.bind(("127.0.0.1", 0))
        refused = probe.getsockname()
        probe.close()
        c = isocket(stack, socket.AF_INET, socket.SOCK_STREAM)
        c.setblocking(False)
        fd = c.fileno()
        assert c.connect_ex(refused) == errno.EINPROGRESS
        m = _mask(c, 2)
        assert m & select.POLLERR and m & select.POLLHUP and m & select.POLLOUT
        assert c.getsockopt(*SO_ERROR) == errno.ECONNREFUSED
        assert not _mask(c) & select.POLLERR
        srv = isocket(stack, socket.AF_INET, socket.SOCK_STREAM)
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        srv.settimeout(2)
        # (Linux: the connect after the error was taken says ECONNABORTED, the next one
        # starts afresh)
        assert c.connect_ex(srv.getsockname()) == errno.ECONNABORTED
        assert c.connect_ex(srv.getsockname()) == errno.EINPROGRESS
        assert c.fileno() == fd
        assert select.select([], [c], [], 2)[1]
        assert c.getsockopt(*SO_ERROR) == 0
        # the completion check: 0 once, then EISCONN (Linux)
        assert c.connect_ex(srv.getsockname()) == 0
        assert c.connect_ex(srv.getsockname()) == errno.EISCONN
        a, _ = srv.accept()
        a.settimeout(2)
        c.sendall(b"again")
        assert a.recv(10) == b"again"
        for s in (a, c, srv):
            s.close()
