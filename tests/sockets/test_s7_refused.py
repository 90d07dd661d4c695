"""Session 7: after a refused connect the socket binds and listens again (Linux frees the
automatic port: review s6 more after_a_refused_connect), also when its descriptor was paired
(fileno() taken before connect: the engine end kept for a next connect is let go)."""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import Any

import pytest

from ioth.sockets import socket as isocket
from tests.sockets.helpers import network


def _closed_port(b: Any) -> tuple[str, int]:
    """An address of stack ``b`` where nothing listens (connects are refused)."""
    s = isocket(b, socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("192.0.2.2", 0))
    addr = s.getsockname()
    s.close()
    return addr  # type: ignore[no-any-return]


@pytest.mark.parametrize("take_fd", [False, True])
def test_blocking_refused_then_listen_and_accept(tmp_path: Path, take_fd: bool) -> None:
    """A blocking connect refused: getsockname is the wildcard with the old port, listen
    works (a new automatic port), and the listener accepts a client."""
    with network(tmp_path) as (a, b):
        s = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
        if take_fd:
            s.fileno()
        with pytest.raises(ConnectionRefusedError):
            s.connect(_closed_port(b))
        host, port = s.getsockname()
        assert host == "0.0.0.0" and port > 0
        s.listen(2)
        mine = s.getsockname()
        assert mine[0] == "0.0.0.0" and mine[1] > 0
        c = isocket(b, socket.AF_INET, socket.SOCK_STREAM)
        c.settimeout(5)
        c.connect(("192.0.2.1", mine[1]))
        s.settimeout(5)
        got, peer = s.accept()
        assert peer == c.getsockname()
        c.sendall(b"hi")
        got.settimeout(5)
        assert got.recv(10) == b"hi"
        for x in (got, c, s):
            x.close()


def test_timeout_refused_then_bind(tmp_path: Path) -> None:
    """A connect with a timeout refused (the error came from SO_ERROR: Linux's socket is
    still 'connecting'): getsockname keeps the source address, bind works (the automatic
    port was freed), listen is EINVAL; getsockname then names the bound port."""
    with network(tmp_path) as (a, b):
        s = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(3)
        with pytest.raises(ConnectionRefusedError):
            s.connect(_closed_port(b))
        assert s.getsockname()[0] == "192.0.2.1"
        s.bind(("192.0.2.1", 0))
        bound = s.getsockname()
        with pytest.raises(OSError) as exc:
            s.listen(2)
        assert exc.value.errno == 22  # EINVAL
        assert s.getsockname() == bound
        with pytest.raises(OSError) as exc:
            s.bind(("192.0.2.1", 0))  # (bound now: EINVAL, as Linux)
        assert exc.value.errno == 22
        # Linux: the next connect reports the end of the failed attempt (ECONNABORTED: its
        # error was taken), the one after is a new attempt, from the bound port
        closed = _closed_port(b)
        assert s.connect_ex(closed) == errno.ECONNABORTED
        assert s.connect_ex(closed) == errno.ECONNREFUSED
        assert s.getsockname()[1] == bound[1]
        s.close()


@pytest.mark.parametrize("explicit", [False, True])
def test_port_bound_before_connect(tmp_path: Path, explicit: bool) -> None:
    """Bound before a refused (blocking) connect, as Linux (checked on a kernel): getsockname
    names the bound address and port; a port chosen by bind (port 0) was freed, so bind
    works again and listen takes a new port; a port given to bind stays (SOCK_BINDPORT_LOCK):
    bind again is EINVAL, listen uses it."""
    with network(tmp_path) as (a, b):
        s = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("192.0.2.1", 40123 if explicit else 0))
        name = s.getsockname()
        with pytest.raises(ConnectionRefusedError):
            s.connect(_closed_port(b))
        assert s.getsockname() == name
        s.listen(2)
        assert s.getsockname()[0] == "192.0.2.1"
        assert (s.getsockname() == name) is explicit
        s.close()
        s = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("192.0.2.1", 40123 if explicit else 0))
        with pytest.raises(ConnectionRefusedError):
            s.connect(_closed_port(b))
        if explicit:
            with pytest.raises(OSError) as exc:
                s.bind(("192.0.2.1", 0))
            assert exc.value.errno == 22
        else:
            s.bind(("192.0.2.1", 0))
            assert s.getsockname() != name
        s.close()
