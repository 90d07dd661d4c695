"""The socket layer's cheap paths keep kernel semantics: a close served on the closing thread,
accepts whose engine ends have chosen names, lazily grown AF_UNIX buffers."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

from ioth.sockets import socket as isocket
from tests.sockets.helpers import lone, network


def _pair(s: object, port: int) -> tuple[socket.socket, socket.socket, socket.socket]:
    srv = isocket(s, socket.AF_INET, socket.SOCK_STREAM)  # type: ignore[arg-type]
    srv.bind(("127.0.0.1", port))
    srv.listen()
    cli = isocket(s, socket.AF_INET, socket.SOCK_STREAM)  # type: ignore[arg-type]
    cli.settimeout(5)
    cli.connect(("127.0.0.1", port))
    conn, addr = srv.accept()
    assert addr == cli.getsockname()  # the handle was found by the engine end's name
    conn.settimeout(5)
    return srv, cli, conn


def test_close_of_the_last_descriptor_ends_the_connection() -> None:
    with lone() as s:
        srv, cli, conn = _pair(s, 7001)
        cli.sendall(b"unread is fine once read")
        assert conn.recv(100) == b"unread is fine once read"
        conn.sendall(b"last words")
        conn.close()
        assert cli.recv(100) == b"last words"
        assert cli.recv(100) == b""  # our FIN, sent by the closing thread
        cli.close()
        srv.close()


def test_close_while_a_duplicate_is_open_keeps_the_connection() -> None:
    with lone() as s:
        srv, cli, conn = _pair(s, 7002)
        dup = os.dup(conn.fileno())
        conn.close()  # not the last copy: like the kernel, nothing happens
        cli.sendall(b"still there?")
        assert os.read(dup, 100) == b"still there?"
        os.write(dup, b"yes")
        assert cli.recv(100) == b"yes"
        os.close(dup)  # the last copy: FIN (served by the engine's pump)
        assert cli.recv(100) == b""
        cli.close()
        srv.close()


def test_close_with_data_written_through_the_descriptor_sends_it_first() -> None:
    with lone() as s:
        srv, cli, conn = _pair(s, 7003)
        blob = os.urandom(200_000)
        conn.sendmsg([blob])  # through the descriptor (the engine end holds it)
        conn.close()
        got = bytearray()
        while True:
            chunk = cli.recv(65536)
            if not chunk:
                break
            got += chunk
        assert got == blob
        cli.close()
        srv.close()


def test_bulk_through_lazily_grown_buffers_and_many_accepts(tmp_path: Path) -> None:
    with network(tmp_path, 2) as (a, b):
        srv = isocket(b, socket.AF_INET, socket.SOCK_STREAM)
        srv.bind(("192.0.2.2", 7004))
        srv.listen(64)
        blob = os.urandom(3_000_000)

        def serve() -> None:
            for _ in range(20):
                conn, _ = srv.accept()
                with conn:
                    conn.settimeout(10)
                    if conn.recv(1) == b"B":
                        conn.sendall(blob)
                    else:
                        conn.sendall(b"ok")

        t = threading.Thread(target=serve)
        t.start()
        for i in range(20):
            with isocket(a, socket.AF_INET, socket.SOCK_STREAM) as c:
                c.settimeout(10)
                c.connect(("192.0.2.2", 7004))
                c.sendall(b"B" if i == 10 else b"x")
                got = bytearray()
                while True:
                    chunk = c.recv(1 << 16)
                    if not chunk:
                        break
                    got += chunk
                assert got == (blob if i == 10 else b"ok")
        t.join(20)
        assert not t.is_alive()
        srv.close()
