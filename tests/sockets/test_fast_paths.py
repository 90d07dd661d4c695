"""The socket layer's cheap paths keep kernel semantics: a close served on the closing thread,
accepts whose engine ends have chosen names, lazily grown AF_UNIX buffers."""

from __future__ import annotations

import os
import socket
import threading
import time
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


def _connected(a: object, b: object, port: int, count: int
               ) -> tuple[socket.socket, list[tuple[socket.socket, socket.socket]]]:
    """``count`` connections from stack ``a`` to a listener on stack ``b``."""
    srv = isocket(b, socket.AF_INET, socket.SOCK_STREAM)  # type: ignore[arg-type]
    srv.bind(("192.0.2.2", port))
    srv.listen(count)
    pairs = []
    for _ in range(count):
        c = isocket(a, socket.AF_INET, socket.SOCK_STREAM)  # type: ignore[arg-type]
        c.settimeout(10)
        c.connect(("192.0.2.2", port))
        s, _ = srv.accept()
        s.settimeout(10)
        pairs.append((c, s))
    return srv, pairs


def test_threads_blocked_in_recv_serve_the_stack_inline(tmp_path: Path) -> None:
    with network(tmp_path, 2) as (a, b):
        srv, pairs = _connected(a, b, 7005, 4)
        waits0 = b.runtime.inline_waits
        got: dict[int, bytes] = {}

        def reader(i: int, s: socket.socket) -> None:
            data = bytearray()
            while len(data) < 50_000:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            got[i] = bytes(data)

        threads = [threading.Thread(target=reader, args=(i, s)) for i, (_, s) in
                   enumerate(pairs)]
        for t in threads:
            t.start()
        time.sleep(0.3)  # let them block (if not, no inline wait is counted: the test fails)
        blobs = [os.urandom(50_000) for _ in pairs]
        for (c, _), blob in zip(pairs, blobs, strict=True):
            c.sendall(blob)
        for t in threads:
            t.join(20)
        assert got == dict(enumerate(blobs))
        assert b.runtime.inline_waits > waits0  # some reader served the plug itself
        for c, s in pairs:
            c.close()
            s.close()
        srv.close()


def test_inline_waits_keep_timeouts(tmp_path: Path) -> None:
    with network(tmp_path, 2) as (a, b):
        srv, [(c, s)] = _connected(a, b, 7006, 1)
        s.settimeout(0.2)
        try:
            s.recv(10)
        except TimeoutError:
            pass
        else:
            raise AssertionError("recv did not time out")
        srv.settimeout(0.2)
        try:
            srv.accept()
        except TimeoutError:
            pass
        else:
            raise AssertionError("accept did not time out")
        c.sendall(b"after the timeouts")
        assert s.recv(100) == b"after the timeouts"
        c.close()
        s.close()
        srv.close()


def test_the_engine_serves_again_when_the_inline_thread_goes_idle(tmp_path: Path) -> None:
    with network(tmp_path, 2) as (a, b):
        srv, [(c1, s1), (c2, s2)] = _connected(a, b, 7007, 2)
        c1.sendall(b"x")
        assert s1.recv(1) == b"x"  # served inline: the plugs stay with this thread a moment
        # this thread now waits elsewhere (select, not an ioth call): the engine must take
        # the plugs back and deliver s2's data
        c2.sendall(b"for the engine")
        import select

        r, _, _ = select.select([s2], [], [], 10)
        assert r == [s2]
        assert s2.recv(100) == b"for the engine"
        for s in (c1, s1, c2, s2, srv):
            s.close()


def test_two_stacks_on_one_engine_served_inline_by_two_threads(tmp_path: Path) -> None:
    with network(tmp_path, 2) as (a, b):
        srv, [(c, s)] = _connected(a, b, 7008, 1)
        assert a.runtime.engine is b.runtime.engine  # the shared engine
        n = 300
        errors: list[BaseException] = []

        def echo() -> None:
            try:
                for _ in range(n):
                    s.sendall(s.recv(64))
            except BaseException as exc:
                errors.append(exc)

        t = threading.Thread(target=echo)
        t.start()
        for i in range(n):
            msg = b"%063d" % i
            c.sendall(msg + b"\n")
            got = b""
            while len(got) < 64:
                got += c.recv(64 - len(got))
            assert got == msg + b"\n"
        t.join(10)
        assert not errors
        assert a.runtime.inline_waits > 0 and b.runtime.inline_waits > 0
        for x in (c, s, srv):
            x.close()


def test_many_short_connections_with_inline_waits_never_stall(tmp_path: Path) -> None:
    """Connect/request/answer/close cycles: accepts and receives served inline, connects
    through the engine (the lease is handed back at once): a lost hand-back would stall."""
    with network(tmp_path, 2) as (a, b):
        srv = isocket(b, socket.AF_INET, socket.SOCK_STREAM)
        srv.bind(("192.0.2.2", 7009))
        srv.listen(16)
        srv.settimeout(5)
        n = 150

        def serve() -> None:
            for _ in range(n):
                conn, _ = srv.accept()
                with conn:
                    conn.settimeout(5)
                    conn.sendall(conn.recv(64))

        t = threading.Thread(target=serve)
        t.start()
        for i in range(n):
            with isocket(a, socket.AF_INET, socket.SOCK_STREAM) as c:
                c.settimeout(5)
                c.connect(("192.0.2.2", 7009))
                c.sendall(b"%d" % i)
                assert c.recv(64) == b"%d" % i
        t.join(10)
        assert not t.is_alive()
        srv.close()
