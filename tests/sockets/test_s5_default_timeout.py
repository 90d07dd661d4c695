"""socket.setdefaulttimeout() and the application's descriptor (kernel oracle).

A kernel socket made blocking stays blocking when the process sets a default timeout later:
the default applies to sockets made afterwards.  The socket layer makes short-lived Python
socket objects on the application's own descriptor (to connect it to its engine end, to make
it listen); Python's socket constructor, under a default timeout, sets O_NONBLOCK on the
descriptor it is given, and O_NONBLOCK lives on the open file description that the
application's socket shares: its blocking socket would turn non-blocking under it (a read
through the descriptor, by a C library, a child process or asyncio's checks, fails with
EAGAIN instead of waiting)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ioth.sockets import socket as isocket
from ioth.sockets import stream
from tests.sockets.helpers import network


@pytest.fixture
def default_timeout() -> Iterator[None]:
    old = socket.getdefaulttimeout()
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


@pytest.fixture(params=[(1, 1), (0, 1), (1, 0)], ids=["lazy", "eagerfd", "paired"])
def knobs(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    lazy_fd, lazy_pair = request.param
    monkeypatch.setattr(stream, "LAZY_FD", lazy_fd)
    monkeypatch.setattr(stream, "LAZY_PAIR", lazy_pair)


def _read_later(fd: int, n: int, out: list[Any]) -> threading.Thread:
    """os.read on the descriptor from another thread (what a C library would do)."""
    def run() -> None:
        try:
            out.append(os.read(fd, n))
        except OSError as exc:
            out.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _observe(make: Any, peer_send: Any) -> tuple[bool, bool, Any]:
    """(listener blocking, connected socket blocking, what a blocking read of the connected
    descriptor returned) for sockets made blocking before the default timeout was set."""
    socket.setdefaulttimeout(None)
    srv, cli = make()
    socket.setdefaulttimeout(5.0)
    srv.listen()
    accepted: list[Any] = []
    t = threading.Thread(target=lambda: accepted.append(srv.accept()[0]), daemon=True)
    t.start()
    cli.connect(srv.getsockname())
    t.join(10)
    assert accepted
    conn = accepted[0]
    listener_blocking = os.get_blocking(srv.fileno())
    fd = cli.fileno()
    blocking = os.get_blocking(fd)
    assert cli.gettimeout() is None
    out: list[Any] = []
    if blocking:  # (a non-blocking descriptor fails at once: no thread left waiting)
        reader = _read_later(fd, 3, out)
        time.sleep(0.05)  # (most likely in the kernel's read by now; either way it waits)
        peer_send(conn, b"abc")
        reader.join(10)
        assert not reader.is_alive()
    else:
        try:
            out.append(os.read(fd, 3))
        except OSError as exc:
            out.append(exc)
    for x in (cli, conn, srv):
        x.close()
    return listener_blocking, blocking, out[0]


def test_kernel_oracle_a_blocking_socket_stays_blocking(default_timeout: None) -> None:
    """The kernel's answer, through 127.0.0.1 sockets of this process."""
    def make() -> tuple[Any, Any]:
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.bind(("127.0.0.1", 0))
        return srv, socket.socket(socket.AF_INET, socket.SOCK_STREAM)

    assert _observe(make, lambda c, d: c.sendall(d)) == (True, True, b"abc")


def test_an_ioth_blocking_socket_stays_blocking(tmp_path: Path, default_timeout: None,
                                                knobs: None) -> None:
    """The same with ioth sockets: listener and connected descriptor stay blocking, and a
    read of the descriptor waits for the peer's bytes."""
    with network(tmp_path, 2) as (a, b):
        def make() -> tuple[Any, Any]:
            srv = isocket(b, socket.AF_INET, socket.SOCK_STREAM)
            srv.bind(("192.0.2.2", 7340))
            return srv, isocket(a, socket.AF_INET, socket.SOCK_STREAM)

        assert _observe(make, lambda c, d: c.sendall(d)) == (True, True, b"abc")


def test_settimeout_none_under_a_default_timeout(tmp_path: Path, default_timeout: None,
                                                 knobs: None) -> None:
    """A socket made under a default timeout and set blocking (settimeout(None)), then
    connected and its descriptor used: blocking, as the kernel's."""
    def run(make: Any) -> tuple[bool, Any]:
        socket.setdefaulttimeout(5.0)
        srv, cli = make()
        srv.listen()
        cli.settimeout(None)
        accepted: list[Any] = []
        t = threading.Thread(target=lambda: accepted.append(srv.accept()[0]), daemon=True)
        t.start()
        cli.connect(srv.getsockname())
        t.join(10)
        conn = accepted[0]
        fd = cli.fileno()
        blocking = os.get_blocking(fd)
        conn.sendall(b"xyz")
        got = os.read(fd, 3) if blocking else None
        for x in (cli, conn, srv):
            x.close()
        return blocking, got

    def kernel() -> tuple[Any, Any]:
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.bind(("127.0.0.1", 0))
        return srv, socket.socket(socket.AF_INET, socket.SOCK_STREAM)

    assert run(kernel) == (True, b"xyz")
    with network(tmp_path, 2) as (a, b):
        def ioth_make() -> tuple[Any, Any]:
            srv = isocket(b, socket.AF_INET, socket.SOCK_STREAM)
            srv.bind(("192.0.2.2", 7341))
            return srv, isocket(a, socket.AF_INET, socket.SOCK_STREAM)

        assert run(ioth_make) == (True, b"xyz")
