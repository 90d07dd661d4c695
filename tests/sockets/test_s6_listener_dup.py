"""Session-6 fixes of ioth TCP sockets beyond the review's kernel oracle (tests/review_s6): the
listener's shutdown, a connection reset before accept, dup (on a stack's loopback)."""

from __future__ import annotations

import errno
import socket
import struct
import time

import pytest

from ioth.sockets import socket as isocket
from tests.sockets.helpers import lone

LINGER0 = struct.pack("ii", 1, 0)


def _listener(stack: object) -> socket.socket:
    srv = isocket(stack, socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(2)
    return srv


def _client(stack: object) -> socket.socket:
    c = isocket(stack, socket.AF_INET, socket.SOCK_STREAM)
    c.settimeout(2)
    return c


def test_listener_shutdown() -> None:
    """SHUT_WR does nothing to a listener; SHUT_RDWR stops it: accept EINVAL, connects
    refused, the port stays the socket's; a bad ``how`` is EINVAL."""
    with lone() as stack:
        srv = _listener(stack)
        addr = srv.getsockname()
        with pytest.raises(OSError) as exc:
            srv.shutdown(7)
        assert exc.value.errno == errno.EINVAL
        assert srv.shutdown(socket.SHUT_WR) is None
        c = _client(stack)
        c.connect(addr)
        a, _ = srv.accept()
        a.close()
        c.close()
        assert srv.shutdown(socket.SHUT_RDWR) is None
        with pytest.raises(OSError) as exc:
            srv.accept()
        assert exc.value.errno == errno.EINVAL
        c = _client(stack)
        assert c.connect_ex(addr) == errno.ECONNREFUSED
        c.close()
        assert srv.getsockname() == addr
        srv.close()


def test_reset_before_accept() -> None:
    """A connection reset while it waits for accept is accepted, its recv says ECONNRESET
    then b""; one never accepted is forgotten when the listener closes."""
    with lone() as stack:
        srv = _listener(stack)
        addr = srv.getsockname()
        for accept in (True, False):
            c = _client(stack)
            c.connect(addr)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
            c.close()
            time.sleep(0.2)
            if accept:
                a, _ = srv.accept()
                a.settimeout(2)
                with pytest.raises(ConnectionResetError):
                    a.recv(10)
                assert a.recv(10) == b""
                a.close()
        lh = srv._listen  # type: ignore[attr-defined]
        layer = srv._tcp  # type: ignore[attr-defined]
        assert len(lh.dead) == 1 and len(layer.pending) == 1
        srv.close()
        assert not lh.dead and not layer.pending


def test_dup() -> None:
    """dup of a connected socket: a second object on the connection, which closes with the
    last of them; dup of a listener or an unconnected socket: EOPNOTSUPP."""
    with lone() as stack:
        srv = _listener(stack)
        with pytest.raises(OSError) as exc:
            srv.dup()
        assert exc.value.errno == errno.EOPNOTSUPP
        c = _client(stack)
        with pytest.raises(OSError) as exc:
            c.dup()
        assert exc.value.errno == errno.EOPNOTSUPP
        c.connect(srv.getsockname())
        a, _ = srv.accept()
        a.settimeout(2)
        d = c.dup()
        assert (d.family, d.type, d.getpeername(), d.gettimeout()) == (
            socket.AF_INET, socket.SOCK_STREAM, c.getpeername(), 2.0)
        c.close()
        d.sendall(b"via dup")
        assert a.recv(20) == b"via dup"
        a.sendall(b"to dup")
        assert d.recv(20) == b"to dup"
        d.close()
        assert a.recv(20) == b""
        a.close()
        srv.close()


def test_repr_layout() -> None:
    """repr() as socket.socket's: a descriptor number also before the socket needed one
    (LAZY_FD), family and type as numbers, "[closed]" once closed."""
    with lone() as stack:
        c = isocket(stack, socket.AF_INET, socket.SOCK_STREAM)  # (blocking: no descriptor)
        assert socket.socket.fileno(c) == -1
        text = repr(c)
        assert " fd=-1" not in text and ", family=2, type=1, proto=0" in text, text
        c.close()
        assert repr(c).startswith("<ioth.StreamSocket [closed] fd=-1, family=2, type=1"), \
            repr(c)
