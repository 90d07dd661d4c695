"""The socket layer's shortcuts give what the general path gives: TcpSockets.notify's own
interest update (NOTIFY_FAST) against StreamHandle.on_event/_update, checked on transfers that
move the interest in the engine end back and forth (a full send buffer written through the
descriptor, inline readers that take bytes straight from the connection, select readers)."""

from __future__ import annotations

import hashlib
import os
import select
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ioth.sockets import socket as isocket
from ioth.sockets import stream_engine
from tests.sockets.helpers import network


@pytest.fixture(params=[1, 0], ids=["fast", "general"])
def notify_fast(request: pytest.FixtureRequest,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    monkeypatch.setattr(stream_engine, "NOTIFY_FAST", request.param)
    yield request.param


def _pair(a: Any, b: Any, port: int) -> tuple[Any, Any, Any]:
    srv = isocket(b, socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("192.0.2.2", port))
    srv.listen()
    c = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
    c.settimeout(20)
    c.connect(("192.0.2.2", port))
    s, _ = srv.accept()
    s.settimeout(20)
    return srv, c, s


def _drain(sock: Any, use_select: bool) -> bytes:
    h = hashlib.sha256()
    total = 0
    while True:
        if use_select:
            r, _, _ = select.select([sock], [], [], 20)
            assert r, "stalled"
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        total += len(chunk)
        h.update(chunk)
    return h.digest() + total.to_bytes(8, "big")


@pytest.mark.parametrize("reader", ["inline", "select"])
def test_bulk_through_the_descriptor_to_a_reader(tmp_path: Path, notify_fast: int,
                                                 reader: str) -> None:
    with network(tmp_path, 2) as (a, b):
        srv, c, s = _pair(a, b, 7301)
        # a bystander thread of the sender's stack waits in recv on another connection: it
        # serves that stack's plugs inline, so the ACKs that free the send buffer are handled
        # on an application thread (TcpSockets.notify's own path), not by the engine
        srv2, c2, s2 = _pair(a, b, 7303)
        idle: list[bytes] = []
        bystander = threading.Thread(target=lambda: idle.append(c2.recv(10)))
        bystander.start()
        blob = os.urandom(2_500_000)
        got: list[bytes] = []
        t = threading.Thread(target=lambda: got.append(_drain(s, reader == "select")))
        t.start()
        view = memoryview(blob)
        for i in range(0, len(blob), 300_000):
            c.sendmsg([view[i:i + 300_000]])  # through the descriptor: the pump moves it
        c.shutdown(socket.SHUT_WR)
        t.join(30)
        want = hashlib.sha256(blob).digest() + len(blob).to_bytes(8, "big")
        assert got == [want]
        s2.sendall(b"end")
        bystander.join(10)
        assert idle == [b"end"]
        for x in (c, s, srv, c2, s2, srv2):
            x.close()


def test_request_response_with_direct_sends_and_inline_reads(tmp_path: Path,
                                                             notify_fast: int) -> None:
    with network(tmp_path, 2) as (a, b):
        srv, c, s = _pair(a, b, 7302)
        sizes = [1, 100, 1448, 5000, 70_000, 3, 200_000, 64]
        errors: list[BaseException] = []

        def echo() -> None:
            try:
                for n in sizes:
                    data = b""
                    while len(data) < n:
                        chunk = s.recv(n - len(data))
                        assert chunk
                        data += chunk
                    s.sendall(data[::-1])
                s.close()
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        t = threading.Thread(target=echo)
        t.start()
        for n in sizes:
            msg = os.urandom(n)
            c.sendall(msg)
            back = b""
            while len(back) < n:
                chunk = c.recv(n - len(back))
                assert chunk
                back += chunk
            assert back == msg[::-1]
        assert c.recv(10) == b""  # the peer's close, after everything
        t.join(20)
        assert not errors
        c.close()
        srv.close()


@pytest.mark.parametrize("default_timeout", [None, 30.0])
def test_engine_ends_never_wait_whatever_the_default_timeout(
        tmp_path: Path, default_timeout: float | None) -> None:
    """Engine ends are used with MSG_DONTWAIT (no O_NONBLOCK ioctl); one made while
    socket.setdefaulttimeout is in force would wait in Python before each call: it is made
    non-blocking instead (a wait there would stall the engine or the inline server)."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(default_timeout)
    try:
        with network(tmp_path, 2) as (a, b):
            srv, c, s = _pair(a, b, 7304)
            for x in (c, s):
                x.fileno()  # (pairs a socket left unpaired, see LAZY_PAIR)
            for h in (c._h, s._h):
                assert h is not None and h.eng is not None
                assert h.eng.gettimeout() in (None, 0.0)
            blob = os.urandom(600_000)
            got: list[bytes] = []
            t = threading.Thread(target=lambda: got.append(_drain(s, False)))
            t.start()
            c.sendmsg([blob])  # through the descriptor: the pump reads the engine end
            c.shutdown(socket.SHUT_WR)
            t.join(30)
            assert got == [hashlib.sha256(blob).digest() + len(blob).to_bytes(8, "big")]
            for x in (c, s, srv):
                x.close()
    finally:
        socket.setdefaulttimeout(old)


def test_notify_fast_is_the_knob_notify_reads(tmp_path: Path, notify_fast: int,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The knob takes effect where it is set (ioth.sockets.stream_engine): a change of a
    paired connection with no bytes to move, notified on an application thread, runs
    StreamHandle.on_event only when NOTIFY_FAST is 0 (1: notify updates the interest itself)."""
    calls: list[int] = []
    on_event = stream_engine.StreamHandle.on_event

    def counting(h: stream_engine.StreamHandle) -> None:
        calls.append(threading.get_ident())
        on_event(h)

    with network(tmp_path, 2) as (a, b):
        srv, c, s = _pair(a, b, 7305)
        c.fileno()  # (paired: an engine end whose interest notify can update)
        h = c._h
        assert h is not None and h.eng is not None
        me = threading.get_ident()
        with a.lock:
            assert not (h.out or h.busy or h.connecting or h.conn.recv_available)
            monkeypatch.setattr(stream_engine.StreamHandle, "on_event", counting)
            c._tcp.notify(h.conn)
            monkeypatch.setattr(stream_engine.StreamHandle, "on_event", on_event)
        assert calls.count(me) == (0 if notify_fast else 1)
        for x in (c, s, srv):
            x.close()
