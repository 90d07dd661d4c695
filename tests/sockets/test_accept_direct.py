"""A blocking accept that serves the plugs inline takes new connections straight from the
stack (StreamSocket._accept_direct, knob DIRECT_ACCEPT) with the kernel semantics of the path
through the listening descriptor: addresses, data that arrived before the accept (readable
through select), order behind connections already queued in the descriptor, the right socket
of a dual-stack pair, timeouts."""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ioth.sockets import socket as isocket
from ioth.sockets import stream
from tests.sockets.helpers import network


@pytest.fixture(params=[1, 0], ids=["direct", "descriptor"])
def direct(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    monkeypatch.setattr(stream, "DIRECT_ACCEPT", request.param)
    yield request.param


def _listener(stack: Any, port: int, family: int = socket.AF_INET, addr: str = "192.0.2.2",
              v6only: bool = False) -> Any:
    srv = isocket(stack, family, socket.SOCK_STREAM)
    if v6only:
        srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    srv.bind((addr, port))
    srv.listen(16)
    srv.settimeout(10)
    return srv


def _client(stack: Any, dst: tuple[str, int], family: int = socket.AF_INET,
            first: bytes = b"") -> Any:
    c = isocket(stack, family, socket.SOCK_STREAM)
    c.settimeout(10)
    c.connect(dst)
    if first:
        c.sendall(first)
    return c


def _direct_count(srv: Any) -> int:
    lh = srv._listen
    return int(lh.direct) if lh is not None else 0


def test_accept_waiting_for_a_connection_gets_it_with_its_early_data(
        tmp_path: Path, direct: int) -> None:
    with network(tmp_path, 2) as (a, b):
        srv = _listener(b, 7201)
        out: list[Any] = []
        t = threading.Thread(target=lambda: out.append(srv.accept()))
        t.start()
        c = _client(a, ("192.0.2.2", 7201), first=b"early bytes")
        t.join(10)
        (conn, peer), = out
        assert peer == c.getsockname()
        assert conn.getpeername() == c.getsockname()
        assert conn.getsockname() == ("192.0.2.2", 7201)
        # what arrived before accept returned is readable through the descriptor
        r, _, _ = select.select([conn], [], [], 10)
        assert r == [conn]
        assert conn.recv(100) == b"early bytes"
        conn.sendall(b"answer")
        assert c.recv(100) == b"answer"
        c.close()
        assert conn.recv(100) == b""
        conn.close()
        srv.close()


def test_many_connections_each_accepted_once_in_order(tmp_path: Path, direct: int) -> None:
    with network(tmp_path, 2) as (a, b):
        srv = _listener(b, 7202)
        n = 40
        got: list[tuple[Any, bytes]] = []

        def serve() -> None:
            for _ in range(n):
                conn, peer = srv.accept()
                with conn:
                    conn.settimeout(10)
                    data = conn.recv(100)
                    got.append((peer, data))
                    conn.sendall(data.upper())

        t = threading.Thread(target=serve)
        t.start()
        sent = []
        for i in range(n):
            with _client(a, ("192.0.2.2", 7202), first=b"req %d" % i) as c:
                sent.append((c.getsockname(), b"req %d" % i))
                assert c.recv(100) == (b"REQ %d" % i)
                assert c.recv(100) == b""
        t.join(20)
        assert got == sent
        if direct:
            assert _direct_count(srv) > 0
        else:
            assert _direct_count(srv) == 0
        srv.close()


def test_connections_queued_in_the_descriptor_come_first(tmp_path: Path, direct: int) -> None:
    with network(tmp_path, 2) as (a, b):
        srv = _listener(b, 7203)
        early = [_client(a, ("192.0.2.2", 7203), first=b"e%d" % i) for i in range(3)]
        # nobody was accepting: the three wait in the listening descriptor, in order
        r, _, _ = select.select([srv], [], [], 10)
        assert r == [srv]
        out: list[Any] = []

        def serve() -> None:
            for _ in range(4):
                out.append(srv.accept())

        t = threading.Thread(target=serve)
        t.start()
        late = None
        for _ in range(500):
            if len(out) == 3:
                late = _client(a, ("192.0.2.2", 7203), first=b"late")
                break
            threading.Event().wait(0.01)
        t.join(10)
        assert late is not None
        assert [p for _, p in out] == [c.getsockname() for c in early] + [late.getsockname()]
        for (conn, _), want in zip(out, [b"e0", b"e1", b"e2", b"late"], strict=True):
            conn.settimeout(10)
            assert conn.recv(100) == want
            conn.close()
        for c in [*early, late]:
            c.close()
        srv.close()


def test_accept_timeout_leaves_no_connection_behind(tmp_path: Path, direct: int) -> None:
    with network(tmp_path, 2) as (a, b):
        srv = _listener(b, 7204)
        srv.settimeout(0.1)
        with pytest.raises(TimeoutError):
            srv.accept()
        c = _client(a, ("192.0.2.2", 7204), first=b"after")
        r, _, _ = select.select([srv], [], [], 10)  # no accept waits: the descriptor has it
        assert r == [srv]
        srv.settimeout(10)
        conn, peer = srv.accept()
        assert peer == c.getsockname()
        conn.settimeout(10)
        assert conn.recv(100) == b"after"
        for x in (conn, c, srv):
            x.close()


def test_dual_stack_port_each_family_to_its_own_socket(tmp_path: Path, direct: int) -> None:
    with network(tmp_path, 2, v6=True) as (a, b):
        srv6 = _listener(b, 7205, socket.AF_INET6, "::", v6only=True)
        srv4 = _listener(b, 7205, socket.AF_INET, "0.0.0.0")
        out6: list[Any] = []
        t = threading.Thread(target=lambda: out6.append(srv6.accept()))
        t.start()  # a v6 accept waits (serving inline) while a v4 connection comes
        c4 = _client(a, ("192.0.2.2", 7205), first=b"four")
        conn4, peer4 = srv4.accept()
        assert peer4 == c4.getsockname()
        conn4.settimeout(10)
        assert conn4.recv(100) == b"four"
        c6 = _client(a, ("2001:db8::2", 7205), socket.AF_INET6, first=b"six")
        t.join(10)
        (conn6, peer6), = out6
        assert peer6[:2] == c6.getsockname()[:2]
        conn6.settimeout(10)
        assert conn6.recv(100) == b"six"
        for x in (conn4, conn6, c4, c6, srv4, srv6):
            x.close()
