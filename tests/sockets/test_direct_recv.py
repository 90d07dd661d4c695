"""Copy-free receive: a thread blocked in recv/recv_into that serves the plugs inline takes
the bytes straight from the connection, and kernel semantics hold (order with bytes already in
the descriptor, readiness of what is left, end of stream, reset, peek, makefile)."""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ioth.sockets import socket as isocket
from tests.sockets.helpers import network


def _connected(a: object, b: object, port: int) -> tuple[socket.socket, socket.socket,
                                                          socket.socket]:
    srv = isocket(b, socket.AF_INET, socket.SOCK_STREAM)  # type: ignore[arg-type]
    srv.bind(("192.0.2.2", port))
    srv.listen()
    c = isocket(a, socket.AF_INET, socket.SOCK_STREAM)  # type: ignore[arg-type]
    c.settimeout(10)
    c.connect(("192.0.2.2", port))
    s, _ = srv.accept()
    s.settimeout(10)
    return srv, c, s


def _blocked(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run ``fn`` in a thread that is left time to block (in an inline wait) first."""
    box: list[Any] = []

    def run() -> None:
        try:
            box.append(fn())
        except Exception as exc:  # reported to the test
            box.append(exc)

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.2)
    return t, box



def _reads(stack: Any) -> int:
    from ioth.sockets.base import layer_for

    tcp = layer_for(stack).tcp
    assert tcp is not None
    return tcp.direct_reads  # type: ignore[no-any-return]


def test_request_response_reads_come_straight_from_the_connection(tmp_path: Path) -> None:
    with network(tmp_path, 2) as (a, b):
        srv, c, s = _connected(a, b, 7101)
        before = _reads(b)

        def echo() -> int:
            n = 0
            while True:
                d = s.recv(64)
                if not d:
                    return n
                s.sendall(d)
                n += 1

        t, box = _blocked(echo)
        for i in range(200):
            msg = i.to_bytes(2, "big") * 32
            c.sendall(msg)
            got = b""
            while len(got) < 64:
                got += c.recv(64 - len(got))
            assert got == msg
        c.shutdown(socket.SHUT_WR)
        t.join(10)
        assert box == [200]
        assert _reads(b) > before  # the copy-free path was taken
        for x in (c, s, srv):
            x.close()


def test_bytes_left_in_the_descriptor_come_first(tmp_path: Path) -> None:
    with network(tmp_path, 2) as (a, b):
        srv, c, s = _connected(a, b, 7102)
        c.sendall(b"first part")
        r, _, _ = select.select([s], [], [], 10)  # moved into the descriptor by the engine
        assert r == [s]
        assert s.recv(5) == b"first"
        t, box = _blocked(lambda: s.recv(100))  # " part" waits in the descriptor
        t.join(10)
        c.sendall(b" and more")
        got = box[0] + b""
        while len(got) < len(b" part and more"):
            got += s.recv(100)
        assert got == b" part and more"
        for x in (c, s, srv):
            x.close()


def test_what_a_direct_read_leaves_is_readable_in_the_descriptor(tmp_path: Path) -> None:
    with network(tmp_path, 2) as (a, b):
        srv, c, s = _connected(a, b, 7103)
        blob = os.urandom(3000)
        t, box = _blocked(lambda: s.recv(10))
        c.sendall(blob)
        t.join(10)
        first = box[0]
        assert isinstance(first, bytes) and 0 < len(first) <= 10
        got = first
        while len(got) < len(blob):
            r, _, _ = select.select([s], [], [], 10)  # never missing readiness
            assert r == [s]
            got += s.recv(100_000, socket.MSG_DONTWAIT)
        assert got == blob
        r, _, _ = select.select([s], [], [], 0)  # never readable with nothing to read
        assert r == []
        for x in (c, s, srv):
            x.close()


def test_recv_into_direct_then_end_of_stream(tmp_path: Path) -> None:
    with network(tmp_path, 2) as (a, b):
        srv, c, s = _connected(a, b, 7104)
        buf = bytearray(100)
        t, box = _blocked(lambda: s.recv_into(buf, 7))
        c.sendall(b"0123456789")
        c.shutdown(socket.SHUT_WR)
        t.join(10)
        n = box[0]
        assert isinstance(n, int) and 0 < n <= 7
        got = bytes(buf[:n])
        while True:
            d = s.recv(100)
            if not d:
                break
            got += d
        assert got == b"0123456789"
        assert s.recv(100) == b""
        for x in (c, s, srv):
            x.close()


def test_end_of_stream_right_after_directly_read_bytes(tmp_path: Path) -> None:
    with network(tmp_path, 2) as (a, b):
        srv, c, s = _connected(a, b, 7105)
        before = _reads(b)
        t, box = _blocked(lambda: s.recv(100))
        c.sendall(b"bye")
        c.close()
        t.join(10)
        assert box == [b"bye"]
        assert _reads(b) > before
        t, box = _blocked(lambda: s.recv(100))  # the FIN the taken bytes hid is served
        t.join(10)
        assert box == [b""]
        s.close()
        srv.close()


def test_reset_after_directly_read_bytes_is_reported(tmp_path: Path) -> None:
    with network(tmp_path, 2) as (a, b):
        srv, c, s = _connected(a, b, 7106)
        t, box = _blocked(lambda: s.recv(100))
        c.sendall(b"x")
        t.join(10)
        assert box == [b"x"]
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        c.close()  # RST
        try:
            got = s.recv(100)
        except ConnectionResetError:
            pass
        else:
            raise AssertionError(f"no reset reported (got {got!r})")
        s.close()
        srv.close()


def test_peek_and_makefile_with_direct_reads(tmp_path: Path) -> None:
    with network(tmp_path, 2) as (a, b):
        srv, c, s = _connected(a, b, 7107)
        t, box = _blocked(lambda: s.recv(4, socket.MSG_PEEK))
        c.sendall(b"line one\nline two\n")
        t.join(10)
        assert box == [b"line"]
        f = s.makefile("rb")
        assert f.readline() == b"line one\n"
        t, box = _blocked(f.readline)
        t.join(10)
        assert box == [b"line two\n"]
        t, box = _blocked(f.readline)
        c.sendall(b"line three\n")
        t.join(10)
        assert box == [b"line three\n"]
        f.close()
        for x in (c, s, srv):
            x.close()


def test_reset_right_behind_held_bytes_is_reported(tmp_path: Path) -> None:
    with network(tmp_path, 2) as (a, b):
        srv, c, s = _connected(a, b, 7108)

        def read_all() -> bytes | str:
            got = b""
            try:
                while True:
                    d = s.recv(100)
                    if not d:
                        return got
                    got += d
            except ConnectionResetError:
                return "reset after " + got.decode()

        t, box = _blocked(read_all)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        c.sendall(b"x")
        c.close()  # data then RST, back to back
        t.join(10)
        assert box in (["reset after x"], ["reset after "])
        s.close()
        srv.close()


def test_recv_into_argument_errors_are_the_kernels(tmp_path: Path) -> None:
    with network(tmp_path, 2) as (a, b):
        srv, c, s = _connected(a, b, 7109)
        c.sendall(b"abc")
        for buf, n, exc in ((bytearray(2), 5, ValueError), (b"read-only", 0, TypeError)):
            try:
                s.recv_into(buf, n)  # type: ignore[arg-type]
            except exc:
                pass
            else:
                raise AssertionError(f"no {exc.__name__}")
        buf = bytearray(10)
        n = s.recv_into(buf)
        got = bytes(buf[:n])
        while len(got) < 3:
            got += s.recv(10)
        assert got == b"abc"  # nothing was lost by the failed calls
        for x in (c, s, srv):
            x.close()
