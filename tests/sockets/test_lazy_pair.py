"""Unpaired sockets (LAZY_PAIR): a blocking connect and a direct accept leave the application's
descriptor without its AF_UNIX engine end until the descriptor itself is needed.

Every test runs with the knob on and off (both paths must give the same results) and, with it
on, checks that the socket really was unpaired when the operation under test began, so a test
fails if the unpaired path is not taken or if the pair made late does not carry the state the
connection had: bytes received before select/poll/asyncio/ssl looked at the descriptor, the
peer's FIN, a reset, a thread blocked on the socket while another uses it, a fork."""

from __future__ import annotations

import asyncio
import errno
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import ioth
from ioth.sockets import socket as isocket
from ioth.sockets import stream
from tests.sockets.helpers import network, require_module


@pytest.fixture(params=[1, 0], ids=["lazy", "paired"])
def lazy(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    monkeypatch.setattr(stream, "LAZY_PAIR", request.param)
    yield request.param


def _conn(a: ioth.Stack, b: ioth.Stack, port: int,
          timeout: float | None = 10.0) -> tuple[Any, Any, Any]:
    """(listener on b, client on a, accepted on b): blocking connect, direct accept."""
    srv = isocket(b, socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("192.0.2.2", port))
    srv.listen()
    for _ in range(10):
        accepted: list[Any] = []
        t = threading.Thread(target=lambda out=accepted: out.append(srv.accept()[0]))
        t.start()  # (blocked in accept first: the connection is taken directly)
        _wait_for(lambda: srv._listen.hold != 0, "accept waiting")
        c = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
        c.settimeout(timeout)
        c.connect(("192.0.2.2", port))
        t.join(10)
        s = accepted[0]
        s.settimeout(timeout)
        if s._h.lazy or not stream.LAZY_PAIR:
            break
        # (the engine thread took the SYN before the accepting thread began serving: the
        # connection went through the listening descriptor, paired; try again)
        c.close()
        s.close()
    return srv, c, s


def _unpaired(lazy: int, *socks: Any) -> None:
    """With the knob on, each socket has no engine end yet (the path under test is the lazy
    one); with it off, each has one."""
    for x in socks:
        h = x._h
        assert h is not None
        assert h.lazy == bool(lazy)
        assert (h.eng is None) == bool(lazy)


def _wait_for(cond: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def _arrived(sock: Any, n: int) -> None:
    """Wait until ``n`` bytes reached ``sock``: queued in its connection (unpaired) or
    written into its descriptor (paired)."""
    h = sock._h
    _wait_for(lambda: h.conn.recv_available + h.wrote >= n, f"{n} bytes arrived")


def _recv_exact(sock: Any, n: int) -> bytes:
    got = b""
    while len(got) < n:
        d = sock.recv(n - len(got))
        if not d:
            break
        got += d
    return got


def _close(*socks: Any) -> None:
    for x in socks:
        x.close()


def test_plain_exchange_and_close(tmp_path: Path, lazy: int) -> None:
    """The cps pattern: request, reply, close both ends; the peer sees EOF after the reply;
    no handle stays registered."""
    with network(tmp_path, 2) as (a, b):
        srv, c, s = _conn(a, b, 7401)
        _unpaired(lazy, c, s)
        for i in range(3):
            c.sendall(b"q%d" % i)
            assert _recv_exact(s, 2) == b"q%d" % i
            s.sendall(b"r%d" % i)
            assert _recv_exact(c, 2) == b"r%d" % i
        _unpaired(lazy, c, s)  # (plain blocking use never pairs)
        s.close()
        assert c.recv(10) == b""  # the peer's FIN
        assert c.recv(10) == b""
        c.close()
        for st in (a, b):
            _wait_for(lambda st=st: not st._ioth_socket_layer.tcp.by_conn, "handles dropped")
            _wait_for(lambda st=st: not any(
                cn.state not in (stream.State.TIME_WAIT, stream.State.CLOSED)
                for cn in st.core.tcp.connections.values()), "connections closed")
        srv.close()


@pytest.mark.parametrize("how", ["select", "poll", "selectors"])
def test_readiness_of_bytes_that_arrived_before_fileno(tmp_path: Path, lazy: int,
                                                       how: str) -> None:
    """Bytes the connection received while the socket had no pair are readable through the
    descriptor the moment select/poll looks at it (fileno() pairs it), and the peer's FIN
    after them too."""
    import selectors

    with network(tmp_path, 2) as (a, b):
        srv, c, s = _conn(a, b, 7402)
        _unpaired(lazy, c, s)
        s.sendall(b"early bytes")
        s.shutdown(socket.SHUT_WR)
        _arrived(c, 11)
        _unpaired(lazy, c)  # (arrived and waiting in the connection)
        if how == "select":
            r, _, _ = select.select([c], [], [], 10)
            assert r == [c]
        elif how == "poll":
            p = select.poll()
            p.register(c, select.POLLIN)
            assert p.poll(10_000)[0][1] & select.POLLIN
        else:
            sel = selectors.DefaultSelector()
            sel.register(c, selectors.EVENT_READ)
            assert sel.select(10)
            sel.close()
        assert c._h.eng is not None and not c._h.lazy  # paired by fileno()
        c.setblocking(False)
        got = b""
        deadline = time.monotonic() + 10
        while True:
            try:
                d = c.recv(100)
            except BlockingIOError:
                assert time.monotonic() < deadline
                select.select([c], [], [], 1)
                continue
            if not d:
                break
            got += d
        assert got == b"early bytes"
        _close(c, s, srv)


def test_asyncio_streams_on_an_unpaired_socket(tmp_path: Path, lazy: int) -> None:
    """asyncio gets a connected socket whose pair does not exist yet, with bytes already
    received: its transport reads them, writes, and sees the end of the stream."""
    with network(tmp_path, 2) as (a, b):
        srv, c, s = _conn(a, b, 7403)
        _unpaired(lazy, c, s)
        s.sendall(b"hello\n")
        _arrived(c, 6)

        async def main() -> bytes:
            reader, writer = await asyncio.open_connection(sock=c)
            line = await reader.readline()
            writer.write(line.upper())
            await writer.drain()
            rest = await reader.read()  # until EOF
            writer.close()
            await writer.wait_closed()
            return line + rest

        t = threading.Thread(target=lambda: (time.sleep(0.2), s.sendall(b"bye"),
                                             s.shutdown(socket.SHUT_WR)))
        t.start()
        got = asyncio.run(asyncio.wait_for(main(), 20))
        t.join(10)
        assert got == b"hello\nbye"
        assert _recv_exact(s, 6) == b"HELLO\n"
        assert s.recv(10) == b""
        _close(s, srv)


def test_ssl_on_an_unpaired_socket(tmp_path: Path, lazy: int) -> None:
    """ssl wraps a connected socket that has no pair yet (the handshake runs through the
    descriptor), on both ends."""
    trustme = require_module("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("srv.example.test")
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(sctx)
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(cctx)
    with network(tmp_path, 2) as (a, b):
        srv, c, s = _conn(a, b, 7404)
        _unpaired(lazy, c, s)
        out: list[bytes] = []

        def serve() -> None:
            with sctx.wrap_socket(s, server_side=True) as ts:
                out.append(ts.recv(100))
                ts.sendall(b"pong")

        t = threading.Thread(target=serve)
        t.start()
        with cctx.wrap_socket(c, server_hostname="srv.example.test") as tc:
            tc.sendall(b"ping")
            assert _recv_exact(tc, 4) == b"pong"
        t.join(20)
        assert out == [b"ping"]
        srv.close()


def test_peer_reset_is_reported_once(tmp_path: Path, lazy: int) -> None:
    """A reset that arrives while nobody reads: the next recv raises ECONNRESET, later ones
    give b""; SO_ERROR of another socket sees its reset."""
    with network(tmp_path, 2) as (a, b):
        srv, c, s = _conn(a, b, 7405)
        _unpaired(lazy, c, s)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        s.close()  # RST
        conn = c._h.conn
        _wait_for(lambda: conn.state is stream.State.CLOSED, "reset received")
        with pytest.raises(ConnectionResetError):
            c.recv(10)
        assert c.recv(10) == b""
        with pytest.raises(OSError) as exc:
            c.sendall(b"x")
        assert exc.value.errno in (errno.EPIPE, errno.ECONNRESET)
        c.close()
        # SO_ERROR on an unpaired socket whose connection was reset
        srv2, c2, s2 = _conn(a, b, 7406)
        _unpaired(lazy, c2)
        s2.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        s2.close()
        conn2 = c2._h.conn
        _wait_for(lambda: conn2.state is stream.State.CLOSED, "reset received")
        assert c2.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNRESET
        _close(c2, srv2, srv)


def test_close_with_unread_bytes_resets(tmp_path: Path, lazy: int) -> None:
    """Closing with received bytes unread sends a reset (Linux), paired or not."""
    with network(tmp_path, 2) as (a, b):
        srv, c, s = _conn(a, b, 7407)
        _unpaired(lazy, c, s)
        c.sendall(b"unread")
        _arrived(s, 6)
        s.close()
        with pytest.raises(ConnectionResetError):
            while c.recv(10):
                pass
        _close(c, srv)


def test_two_threads_on_one_connection(tmp_path: Path, lazy: int) -> None:
    """One thread blocks in recv (serving the plugs inline, no pair) while another thread
    sends on the same socket and a third blocks in recv too (it cannot serve: it pairs the
    socket and waits in the kernel): every byte arrives once, in order per sender."""
    with network(tmp_path, 2) as (a, b):
        srv, c, s = _conn(a, b, 7408, timeout=None)
        _unpaired(lazy, c, s)
        got: list[bytes] = []
        lock = threading.Lock()

        def reader() -> None:
            while True:
                d = c.recv(1)
                if not d:
                    return
                with lock:
                    got.append(d)

        readers = [threading.Thread(target=reader) for _ in range(2)]
        for t in readers:
            t.start()
        time.sleep(0.2)
        sender = threading.Thread(target=lambda: c.sendall(b"from-c"))
        sender.start()
        assert _recv_exact(s, 6) == b"from-c"
        sender.join(10)
        payload = bytes(range(65, 65 + 40))
        for i in range(0, len(payload), 4):
            s.sendall(payload[i:i + 4])
            time.sleep(0.01)
        s.shutdown(socket.SHUT_WR)
        for t in readers:
            t.join(20)
            assert not t.is_alive()
        assert sorted(b"".join(got)) == sorted(payload)
        _close(c, s, srv)


def test_recv_timeout_and_late_pairing(tmp_path: Path, lazy: int) -> None:
    """A recv with a timeout on an unpaired socket times out; a big sendall that outgrows
    the connection's send buffer pairs the socket and still delivers every byte in order."""
    with network(tmp_path, 2) as (a, b):
        srv, c, s = _conn(a, b, 7409, timeout=0.2)
        _unpaired(lazy, c, s)
        with pytest.raises(TimeoutError):
            c.recv(10)
        c.settimeout(20)
        s.settimeout(20)
        blob = os.urandom(3_000_000)
        got: list[bytes] = []
        t = threading.Thread(target=lambda: got.append(_recv_exact(s, len(blob))))
        t.start()
        c.sendall(b"head")  # (straight into the connection)
        c.sendall(blob[4:])
        t.join(30)
        assert got == [b"head" + blob[4:]]
        _close(c, s, srv)


def test_shutdown_write_on_an_unpaired_socket(tmp_path: Path, lazy: int) -> None:
    """shutdown(SHUT_WR) after direct sends: the peer reads the bytes then EOF, and can
    still answer."""
    with network(tmp_path, 2) as (a, b):
        srv, c, s = _conn(a, b, 7410)
        _unpaired(lazy, c, s)
        c.sendall(b"request")
        c.shutdown(socket.SHUT_WR)
        _unpaired(lazy, c)  # (the FIN went straight into the connection)
        assert _recv_exact(s, 7) == b"request"
        assert s.recv(10) == b""
        s.sendall(b"answer")
        s.close()
        assert _recv_exact(c, 6) == b"answer"
        assert c.recv(10) == b""
        with pytest.raises(BrokenPipeError):  # writing after SHUT_WR, as on Linux
            c.sendall(b"late")
        assert c._h.eng is not None or not c._h.lazy
        _close(c, srv)


def test_fork_child_uses_an_unpaired_socket(tmp_path: Path, lazy: int) -> None:
    """A socket without a pair is paired before os.fork: the child talks through the
    inherited descriptor (bytes received before the fork included)."""
    with network(tmp_path, 2) as (a, b):
        srv, c, s = _conn(a, b, 7411)
        _unpaired(lazy, c, s)
        c.sendall(b"before")
        _arrived(s, 6)
        pid = os.fork()
        if pid == 0:  # child: the stack lives in the parent, only the descriptor works
            code = 1
            try:
                if _recv_exact(s, 6) == b"before":
                    s.sendall(b"child!")
                    code = 0
            finally:
                os._exit(code)
        assert s._h.eng is not None and not s._h.lazy
        assert _recv_exact(c, 6) == b"child!"
        deadline = time.monotonic() + 10
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                raise AssertionError("the child hangs")
            time.sleep(0.01)
        assert os.waitstatus_to_exitcode(status) == 0
        _close(c, s, srv)


def test_stack_close_wakes_a_reader(tmp_path: Path, lazy: int) -> None:
    """A thread blocked in recv on an unpaired socket returns when its stack closes, and
    the stack leaves no descriptor behind."""
    before = len(os.listdir("/proc/self/fd"))
    with network(tmp_path, 2) as (a, b):
        _srv, c, s = _conn(a, b, 7412, timeout=None)
        _unpaired(lazy, c, s)
        out: list[Any] = []

        def read() -> None:
            try:
                out.append(c.recv(10))
            except OSError as exc:
                out.append(exc)

        t = threading.Thread(target=read, daemon=True)
        t.start()
        time.sleep(0.2)
        a.close()
        t.join(10)
        assert not t.is_alive()
        assert out and (out[0] == b"" or isinstance(out[0], OSError))
    _wait_for(lambda: len(os.listdir("/proc/self/fd")) <= before, "descriptors released")


def test_detach_pairs_first(tmp_path: Path, lazy: int) -> None:
    """detach() hands over a working descriptor (paired first)."""
    with network(tmp_path, 2) as (a, b):
        srv, c, s = _conn(a, b, 7413)
        _unpaired(lazy, c, s)
        s.sendall(b"to-detached")
        _arrived(c, 11)
        fd = c.detach()
        try:
            got = b""
            while len(got) < 11:
                select.select([fd], [], [], 10)
                got += os.read(fd, 100)
            assert got == b"to-detached"
            os.write(fd, b"back")
            assert _recv_exact(s, 4) == b"back"
        finally:
            os.close(fd)
        assert s.recv(10) == b""
        _close(c, s, srv)


def test_fork_hook_leaves_a_parents_layers_alone_in_the_child(tmp_path: Path) -> None:
    """In a forked child the parent's socket layers are copies whose stack lock may be held
    by a thread that does not exist there: the before-fork hook must not touch them (a
    child that forks again would wait on that lock)."""
    with network(tmp_path, 2) as (a, b):
        srv, c, s = _conn(a, b, 7414)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                class Stuck:
                    def acquire(self, *args: Any, **kw: Any) -> bool:
                        raise AssertionError("the hook took a parent's stack lock")

                for st in (a, b):
                    st.lock = Stuck()  # type: ignore[assignment]
                stream._pair_before_fork()
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        _close(c, s, srv)


def test_child_closing_its_copy_of_the_socket_layer(tmp_path: Path, lazy: int) -> None:
    """A forked child that closes its copy of a stack's TCP socket layer closes only its own
    descriptors: the parent's quiet eventfd is not written (its unpaired readers would wake
    for nothing, forever) and the parent's paired socket stays watched by the pump."""
    with network(tmp_path, 2) as (a, b):
        srv, c, s = _conn(a, b, 7415)
        s.fileno()  # (one paired socket whatever the knob)
        layers = [st._ioth_socket_layer.tcp for st in (a, b)]
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for st, tcp in zip((a, b), layers, strict=True):
                    with st.lock:
                        tcp.close()
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        p = select.poll()
        for tcp in layers:
            p.register(tcp.quiet, select.POLLIN)
        assert p.poll(0) == []
        c.sendall(b"to-paired")
        assert _recv_exact(s, 9) == b"to-paired"
        s.sendall(b"back")
        assert _recv_exact(c, 4) == b"back"
        _close(c, s, srv)
