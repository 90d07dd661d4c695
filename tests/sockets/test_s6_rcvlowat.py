"""SO_RCVLOWAT as Linux's TCP: the socket polls readable, and a read returns, once that many
bytes are there (or the stream ends); set on a connected socket (unpaired or paired), before
connect, or on the listener (accepted sockets take it)."""

from __future__ import annotations

import select
import socket
import time

import pytest

import ioth.sockets.stream as stream
from ioth.sockets import socket as isocket
from tests.sockets.helpers import lone, loopback_pair

LOWAT = (socket.SOL_SOCKET, socket.SO_RCVLOWAT)


def _readable(s: socket.socket, wait: float = 0.3) -> bool:
    return bool(select.select([s], [], [], wait)[0])


def _check(rx: socket.socket, tx: socket.socket) -> None:
    tx.sendall(b"four")
    assert not _readable(rx)
    rx.settimeout(0.3)
    with pytest.raises(TimeoutError):
        rx.recv(100)
    tx.sendall(b"sixsix")
    assert _readable(rx, 3)
    assert rx.recv(100) == b"foursixsix"
    tx.sendall(b"ab")
    tx.shutdown(socket.SHUT_WR)  # (the end of the stream: what is there is readable)
    rx.settimeout(3)
    assert rx.recv(100) == b"ab"
    assert rx.recv(100) == b""


@pytest.mark.parametrize("lazy", [1, 0])
def test_rcvlowat_on_a_connected_socket(monkeypatch: pytest.MonkeyPatch, lazy: int) -> None:
    monkeypatch.setattr(stream, "LAZY_PAIR", lazy)
    with lone() as st:
        srv, cli, conn = loopback_pair(st)
        conn.settimeout(None)  # (a blocking socket: the direct paths would be used)
        conn.setsockopt(*LOWAT, 10)
        assert conn.getsockopt(*LOWAT) == 10
        _check(conn, cli)
        for s in (srv, cli, conn):
            s.close()


def test_rcvlowat_before_connect_and_on_the_listener() -> None:
    with lone() as st:
        srv = isocket(st, socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(*LOWAT, 10)
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        cli = isocket(st, socket.AF_INET, socket.SOCK_STREAM)
        cli.setsockopt(*LOWAT, 10)
        cli.connect(srv.getsockname())
        conn, _ = srv.accept()
        assert conn.getsockopt(*LOWAT) == 10
        _check(conn, cli)
        _check(cli, conn)
        for s in (srv, cli, conn):
            s.close()


def test_rcvlowat_back_to_one_delivers() -> None:
    with lone() as st:
        srv, cli, conn = loopback_pair(st)
        conn.setsockopt(*LOWAT, 10)
        cli.sendall(b"four")
        time.sleep(0.1)
        assert not _readable(conn)
        conn.setsockopt(*LOWAT, 1)
        assert _readable(conn, 3)
        assert conn.recv(100) == b"four"
        for s in (srv, cli, conn):
            s.close()
