"""A TCP socket dropped without close() is closed when collected, as CPython's finalizer
closes a kernel socket: the peer sees the end of stream, a listener's port is freed.  The
stack's references are weak (nothing keeps a dropped socket alive, gc finds no cycle through
the stack), in each descriptor mode (LAZY_FD, LAZY_PAIR, paired)."""

from __future__ import annotations

import errno
import gc
import socket
import threading
import warnings
import weakref

import pytest

import ioth.sockets.stream as stream
from ioth.sockets import socket as isocket
from tests.sockets.helpers import lone, loopback_pair


def _dropped(ref: weakref.ref[object], got: list[warnings.WarningMessage]) -> None:
    gc.collect()
    assert any(issubclass(w.category, ResourceWarning) for w in got)
    got.clear()  # (a warning's source is the socket)
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize("lazy", [1, 0])
@pytest.mark.parametrize("end", ["client", "accepted"])
def test_dropped_connection_ends(monkeypatch: pytest.MonkeyPatch, lazy: int, end: str) -> None:
    monkeypatch.setattr(stream, "LAZY_FD", lazy)
    monkeypatch.setattr(stream, "LAZY_PAIR", lazy)
    with lone() as st:
        srv, cli, conn = loopback_pair(st)
        drop, keep = (cli, conn) if end == "client" else (conn, cli)
        ref = weakref.ref(drop)
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always")
            del drop, cli, conn  # (the test's own names: keep holds the other end)
            _dropped(ref, got)
        keep.settimeout(5)
        assert keep.recv(10) == b""
        keep.close()
        srv.close()


def test_dropped_without_gc_by_refcount() -> None:
    """No cycle: the last reference going closes the socket at once (no gc pass)."""
    with lone() as st:
        srv, cli, conn = loopback_pair(st)
        gc.disable()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                del cli
            conn.settimeout(5)
            assert conn.recv(10) == b""
        finally:
            gc.enable()
        conn.close()
        srv.close()


def test_dropped_listener_frees_its_port() -> None:
    with lone() as st:
        lst = isocket(st, socket.AF_INET, socket.SOCK_STREAM)
        lst.bind(("127.0.0.1", 0))
        lst.listen()
        addr = lst.getsockname()
        ref = weakref.ref(lst)
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always")
            del lst
            _dropped(ref, got)
        c = isocket(st, socket.AF_INET, socket.SOCK_STREAM)
        c.settimeout(5)
        assert c.connect_ex(addr) == errno.ECONNREFUSED
        c.close()
        again = isocket(st, socket.AF_INET, socket.SOCK_STREAM)
        again.bind(addr)  # (the port is free again)
        again.close()


def test_dropped_in_another_thread_holding_the_lock() -> None:
    """Collected while this thread holds the stack lock: the engine closes it later."""
    with lone() as st:
        srv, cli, conn = loopback_pair(st)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            with st.lock:
                del cli
        conn.settimeout(5)
        assert conn.recv(10) == b""
        conn.close()
        srv.close()


def test_closed_socket_and_stack_close_unchanged() -> None:
    """A closed socket's collection does nothing more; the stack's close still closes
    every socket it holds weakly."""
    with lone() as st:
        srv, cli, conn = loopback_pair(st)
        cli.close()
        del cli
        gc.collect()
        st.close()
        with pytest.raises(OSError):
            conn.send(b"x")
        assert srv.fileno() == -1


def test_unclosed_socket_in_a_thread_keeps_working() -> None:
    """A socket only a thread holds is not collected under it."""
    with lone() as st:
        srv, cli, conn = loopback_pair(st)
        got: list[bytes] = []
        t = threading.Thread(target=lambda s=conn: got.append(s.recv(10)))
        del conn
        t.start()
        gc.collect()
        cli.sendall(b"hi")
        t.join(5)
        assert got == [b"hi"]
        cli.close()
        srv.close()
