"""Adversarial tests of the glue between plugs and applications (inline serving, its lease and
guard, timers fired by the lease holder, direct accepts, the fast notify path): several threads
of one process on one stack, a lease holder that sits idle while other connections need their
timers, holders that go away in every way, accepts racing connections, selectors on accepted
sockets, fork after inline serving and idle CPU.  Each test fails by hanging (timeout), by lost
or reordered data, or by state left behind."""

from __future__ import annotations

import functools
import os
import select
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import ioth
from ioth.sockets import socket as isocket
from ioth.sockets import stream
from ioth.stack import runtime as rt
from ioth.stack.tcp.connection import State
from tests.sockets.helpers import connected_pairs, network

pytestmark = pytest.mark.timeout(20)

KNOBS = [(1, 1, 1, 1), (1, 0, 1, 1), (1, 1, 1, 0), (0, 0, 0, 0)]


@pytest.fixture(params=KNOBS,
                ids=[f"guard{g}-hold{h}-direct{d}-lazy{z}" for g, h, d, z in KNOBS])
def knobs(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    guard, hold, direct, lazy = request.param
    monkeypatch.setattr(rt, "GUARD", guard)
    monkeypatch.setattr(rt, "HOLD_TIMERS", hold)
    monkeypatch.setattr(stream, "DIRECT_ACCEPT", direct)
    monkeypatch.setattr(stream, "LAZY_PAIR", lazy)
    yield


def _thread(target: Callable[[], Any]) -> tuple[threading.Thread, list[Any], list[BaseException]]:
    """A started daemon thread running ``target``: its result or its exception."""
    out: list[Any] = []
    err: list[BaseException] = []

    def run() -> None:
        try:
            out.append(target())
        except BaseException as exc:  # (reported by the test)
            err.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out, err


def _listener(stack: ioth.Stack, port: int, backlog: int = 64) -> Any:
    srv = isocket(stack, socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("192.0.2.2", port))
    srv.listen(backlog)
    return srv


def _wait_serving(stack: ioth.Stack, ident: int | None = None) -> None:
    """Until a thread (``ident`` if given) serves ``stack``'s plugs inline."""
    r = stack.runtime
    for _ in range(500):
        if r._serving and (ident is None or r._holder == ident):
            return
        time.sleep(0.005)
    raise AssertionError("no thread started serving inline")


def _close_all(*socks: Any) -> None:
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


def _recv_exact(s: Any, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        got = s.recv(n - len(buf))
        assert got, f"end of stream after {len(buf)} of {n} bytes"
        buf += got
    return buf


# -- two threads on one stack -----------------------------------------------------------------
def test_a_second_socket_is_served_while_another_thread_serves_inline(
        tmp_path: Path, knobs: None) -> None:
    """Thread 1 sits in recv on socket A (serving the plugs inline); thread 2 reads socket B
    round after round: each message reaches it promptly and whole."""
    with network(tmp_path, 2) as (a, b):
        srv, [(c1, s1), (c2, s2)] = connected_pairs(a, b, 7301, 2)
        s1.settimeout(None)
        t1, out1, err1 = _thread(lambda: s1.recv(100))
        _wait_serving(b, t1.ident)
        worst = 0.0
        for i in range(150):
            msg = b"%05d" % i
            t0 = time.monotonic()
            c2.sendall(msg)
            assert _recv_exact(s2, 5) == msg
            s2.sendall(msg)
            assert _recv_exact(c2, 5) == msg
            worst = max(worst, time.monotonic() - t0)
        # generous: a message waiting for a lease to end or a poll slice would still pass,
        # one waiting for the idle holder (no deadline) would time out above
        assert worst < 2.0, worst
        assert t1.is_alive()
        c1.sendall(b"bye")
        t1.join(10)
        assert out1 == [b"bye"] and not err1
        _close_all(c1, s1, c2, s2, srv)


def test_two_reader_threads_ping_pong_on_one_stack(tmp_path: Path, knobs: None) -> None:
    """Two server threads of stack b echo their own connection while two client threads on
    stack a drive them: the inline lease goes back and forth between the threads of both
    stacks; no message is lost, duplicated or late beyond the socket timeout."""
    with network(tmp_path, 2) as (a, b):
        srv, pairs = connected_pairs(a, b, 7302, 2)
        rounds = 300

        def echo(s: Any) -> int:
            n = 0
            while True:
                data = s.recv(4096)
                if not data:
                    return n
                s.sendall(data)
                n += len(data)

        def client(c: Any, tag: bytes) -> int:
            for i in range(rounds):
                msg = tag + struct.pack("!I", i) * 8
                c.sendall(msg)
                assert _recv_exact(c, len(msg)) == msg
            c.shutdown(socket.SHUT_WR)
            return rounds

        servers = [_thread(functools.partial(echo, s)) for _, s in pairs]
        clients = [_thread(functools.partial(client, c, t))
                   for (c, _), t in zip(pairs, (b"A", b"B"), strict=True)]
        for t, _, err in clients + servers:
            t.join(15)
            assert not t.is_alive(), "a thread hangs"
            assert not err, err
        assert [out[0] for _, out, _ in clients] == [rounds, rounds]
        assert [out[0] for _, out, _ in servers] == [rounds * 33] * 2
        for c, s in pairs:
            _close_all(c, s)
        srv.close()


def test_accept_on_another_thread_while_one_serves_inline(tmp_path: Path, knobs: None) -> None:
    """Thread 1 sits in recv (serving); the main thread accepts connection after connection:
    each is accepted, once, with its first bytes, in the order made."""
    with network(tmp_path, 2) as (a, b):
        srv, [(c1, s1)] = connected_pairs(a, b, 7303, 1)
        s1.settimeout(None)
        t1, out1, err1 = _thread(lambda: s1.recv(100))
        _wait_serving(b, t1.ident)
        clients = []
        for i in range(30):
            c = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
            c.settimeout(10)
            c.connect(("192.0.2.2", 7303))
            c.sendall(b"%04d" % i)
            clients.append(c)
            s, peer = srv.accept()
            assert peer == c.getsockname()
            s.settimeout(10)
            assert _recv_exact(s, 4) == b"%04d" % i
            s.close()
        c1.sendall(b"x")
        t1.join(10)
        assert out1 == [b"x"] and not err1
        _close_all(c1, s1, srv, *clients)


# -- timers while the lease holder sits idle ---------------------------------------------------
class _Dropper:
    """Drops frames a plug sends while ``armed`` frames are left to drop (counted)."""

    def __init__(self, plug: Any, match: Callable[[bytes], bool]) -> None:
        self.plug = plug
        self.send = plug.send
        self.match = match
        self.armed = 0
        self.dropped = 0
        self.sent = 0
        plug.send = self  # (an instance attribute: the runtime looks it up at each flush)

    def __call__(self, frame: Any) -> bool:
        f = bytes(frame)
        if self.match(f):
            self.sent += 1
            if self.armed > 0:
                self.armed -= 1
                self.dropped += 1
                return True
        return bool(self.send(frame))

    def remove(self) -> None:
        del self.plug.send


def _tcp_to(port: int) -> Callable[[bytes], bool]:
    """Frames carrying an IPv4 TCP segment to ``port``."""
    def match(f: bytes) -> bool:
        if len(f) < 38 or f[12:14] != b"\x08\x00" or f[23] != 6:
            return False
        ihl = (f[14] & 15) * 4
        return int.from_bytes(f[14 + ihl + 2:14 + ihl + 4], "big") == port
    return match


def _plug(stack: ioth.Stack) -> Any:
    (plug,) = [p for p in stack.runtime.plugs.values()]
    return plug


def _idle_holder(stack: ioth.Stack, s: Any) -> tuple[threading.Thread, list[Any],
                                                     list[BaseException]]:
    """A thread blocked in recv on silent socket ``s`` (no timeout): it serves inline."""
    s.settimeout(None)
    t = _thread(lambda: s.recv(100))
    _wait_serving(stack, t[0].ident)
    return t


@pytest.mark.parametrize("sender", ["other", "holder"])
def test_retransmission_while_the_holder_sits_idle(tmp_path: Path, knobs: None,
                                                   sender: str) -> None:
    """A segment of connection 2 is lost while a thread sits in recv on silent connection 1
    (serving inline, no deadline): the retransmission timer fires on time whether the segment
    was sent by another thread or by the holder itself just before it went idle."""
    with network(tmp_path, 2) as (a, b):
        srv, [(c1, s1), (c2, s2)] = connected_pairs(a, b, 7304, 2)
        drop = _Dropper(_plug(b), _tcp_to(c2.getsockname()[1]))
        drop.armed = 1
        if sender == "holder":
            def holder() -> bytes:
                s2.sendall(b"lost once")
                s1.settimeout(None)
                return bytes(s1.recv(100))
            t1, out1, err1 = _thread(holder)
        else:
            t1, out1, err1 = _idle_holder(b, s1)
            s2.sendall(b"lost once")
        t0 = time.monotonic()
        assert _recv_exact(c2, 9) == b"lost once"
        took = time.monotonic() - t0
        conn = s2._h.conn
        assert drop.dropped == 1 and conn.rto_expirations >= 1
        assert took < 3.0, f"retransmitted after {took:.2f} s (rto {conn.rto:.2f})"
        assert t1.is_alive()
        c1.sendall(b"end")
        t1.join(10)
        assert out1 == [b"end"] and not err1
        drop.remove()
        _close_all(c1, s1, c2, s2, srv)


def test_delayed_ack_and_keepalive_while_the_holder_sits_idle(tmp_path: Path,
                                                              knobs: None) -> None:
    """While a thread sits idle in recv (serving inline), another connection of its stack
    acknowledges data nobody reads (delayed ACK) and sends keepalive probes on time."""
    with network(tmp_path, 2) as (a, b):
        srv, [(c1, s1), (c2, s2)] = connected_pairs(a, b, 7305, 2)
        s2.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        s2.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
        s2.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
        t1, out1, err1 = _idle_holder(b, s1)
        count = _Dropper(_plug(b), _tcp_to(c2.getsockname()[1]))
        cconn = c2._h.conn
        c2.sendall(b"unread")
        t0 = time.monotonic()
        while cconn.snd_nxt != cconn.snd_una and time.monotonic() - t0 < 5:
            time.sleep(0.005)
        assert cconn.snd_nxt == cconn.snd_una, "no ACK for the data"
        assert time.monotonic() - t0 < 1.5
        acks = count.sent
        time.sleep(3.0)  # idle 1 s, then a probe each second
        assert count.sent - acks >= 2, f"{count.sent - acks} keepalive probes in 3 s"
        assert t1.is_alive()
        assert _recv_exact(s2, 6) == b"unread"
        c1.sendall(b"end")
        t1.join(10)
        assert out1 == [b"end"] and not err1
        count.remove()
        _close_all(c1, s1, c2, s2, srv)


def test_a_timer_set_by_another_thread_just_as_the_holder_starts_waiting(
        tmp_path: Path) -> None:
    """Many times: a thread starts an idle inline wait (no deadline) while another thread
    sends a segment that is lost; the retransmission must come by the RTO every time (a
    deadline set while the holder computes its wait must not be left to the holder)."""
    with network(tmp_path, 2) as (a, b):
        srv, [(c1, s1), (c2, s2)] = connected_pairs(a, b, 7306, 2)
        drop = _Dropper(_plug(b), _tcp_to(c2.getsockname()[1]))
        s1.settimeout(None)
        for i in range(6):
            go = threading.Event()

            def holder(go: threading.Event = go) -> bytes:
                go.set()
                return bytes(s1.recv(100))

            t1, out1, err1 = _thread(holder)
            go.wait(5)
            drop.armed = 1
            s2.sendall(b"%03d" % i)
            t0 = time.monotonic()
            assert _recv_exact(c2, 3) == b"%03d" % i
            assert time.monotonic() - t0 < 3.0
            c1.sendall(b"e")
            t1.join(10)
            assert out1 == [b"e"] and not err1
        drop.remove()
        _close_all(c1, s1, c2, s2, srv)


# -- holders that go away ---------------------------------------------------------------------
def test_holder_thread_times_out_then_others_are_served(tmp_path: Path, knobs: None) -> None:
    """The holder's recv times out (an exception in the serving thread): the plugs and timers
    go back to the engine; a select-based reader on another connection is served."""
    with network(tmp_path, 2) as (a, b):
        srv, [(c1, s1), (c2, s2)] = connected_pairs(a, b, 7307, 2)
        s1.settimeout(0.2)
        with pytest.raises(TimeoutError):
            s1.recv(100)
        r = b.runtime
        assert not r._serving
        time.sleep(0.05)  # past the lease
        for i in range(20):
            c2.sendall(b"%02d" % i)
            ready, _, _ = select.select([s2], [], [], 5)
            assert ready == [s2]
            assert _recv_exact(s2, 2) == b"%02d" % i
        assert not r._suspended and not (r._held and r._hold)
        _close_all(c1, s1, c2, s2, srv)


def test_socket_closed_by_the_peer_while_its_reader_serves(tmp_path: Path, knobs: None) -> None:
    """The peer closes the connection a thread waits on inline: recv returns b""; another
    connection keeps working before and after."""
    with network(tmp_path, 2) as (a, b):
        srv, [(c1, s1), (c2, s2)] = connected_pairs(a, b, 7308, 2)
        t1, out1, err1 = _idle_holder(b, s1)
        c2.sendall(b"before")
        assert _recv_exact(s2, 6) == b"before"
        c1.close()
        t1.join(10)
        assert out1 == [b""] and not err1
        c2.sendall(b"after")
        assert _recv_exact(s2, 5) == b"after"
        _close_all(s1, c2, s2, srv)


@pytest.mark.parametrize("waiter", ["recv", "accept"])
def test_stack_closed_while_a_thread_serves_inline(tmp_path: Path, knobs: None,
                                                   waiter: str) -> None:
    """Closing the stack ends a wait that serves it inline (a recv, a blocking accept that
    may take connections directly): it returns (end of stream or an error), it does not
    hang, and the stack's guard descriptor is gone."""
    with network(tmp_path, 2) as (a, b):
        srv, [(c1, s1)] = connected_pairs(a, b, 7310, 1)
        if waiter == "recv":
            t1, out1, err1 = _idle_holder(b, s1)
        else:
            srv.settimeout(None)
            t1, out1, err1 = _thread(srv.accept)
            _wait_serving(b, t1.ident)
        b.close()
        t1.join(5)
        assert not t1.is_alive(), f"{waiter} hangs after the stack was closed"
        assert out1 == [b""] or err1
        assert b.runtime._guard is None
        _close_all(c1, s1, srv)


# -- accepts --------------------------------------------------------------------------------
def _connector(a: ioth.Stack, port: int, count: int, pause: float
               ) -> tuple[threading.Thread, list[Any], list[BaseException]]:
    def run() -> list[Any]:
        cs = []
        for i in range(count):
            c = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
            c.settimeout(10)
            c.connect(("192.0.2.2", port))
            c.sendall(b"%04d" % i)
            cs.append(c)
            if pause and i % 3 == 0:
                time.sleep(pause)
        return cs
    return _thread(run)


def _check_accepted(got: list[Any], count: int) -> None:
    idx = []
    for s in got:
        s.settimeout(10)
        idx.append(int(_recv_exact(s, 4)))
    assert idx == list(range(count)), idx


@pytest.mark.parametrize("mode", ["timeout", "nonblocking"])
def test_accept_with_timeout_or_nonblocking_racing_connections(
        tmp_path: Path, knobs: None, mode: str) -> None:
    """Connections arrive while a thread accepts with a short timeout (retrying on timeout)
    or non-blocking (select then accept): each is accepted once, in the order made."""
    count = 40
    with network(tmp_path, 2) as (a, b):
        srv = _listener(b, 7311)
        if mode == "timeout":
            srv.settimeout(0.01)
        else:
            srv.setblocking(False)
        t, out, err = _connector(a, 7311, count, 0.015)
        got: list[Any] = []
        end = time.monotonic() + 15
        while len(got) < count and time.monotonic() < end:
            try:
                s, _ = srv.accept()
            except (TimeoutError, BlockingIOError):
                if mode == "nonblocking":
                    select.select([srv], [], [], 0.05)
                continue
            got.append(s)
        t.join(10)
        assert not err, err
        assert len(got) == count
        _check_accepted(got, count)
        _close_all(srv, *got, *out[0])


def test_accept_from_two_threads_at_once(tmp_path: Path, knobs: None) -> None:
    """Two threads accept from one listener (one may serve inline and accept directly, the
    other waits in the descriptor): every connection is accepted exactly once."""
    count = 40
    with network(tmp_path, 2) as (a, b):
        srv = _listener(b, 7312)
        srv.settimeout(0.3)
        got: list[Any] = []
        lock = threading.Lock()
        stop = threading.Event()

        def acceptor() -> int:
            n = 0
            while not stop.is_set():
                try:
                    s, _ = srv.accept()
                except TimeoutError:
                    continue
                with lock:
                    got.append(s)
                n += 1
            return n

        acc = [_thread(acceptor) for _ in range(2)]
        t, out, err = _connector(a, 7312, count, 0.005)
        t.join(10)
        assert not err, err
        end = time.monotonic() + 10
        while len(got) < count and time.monotonic() < end:
            time.sleep(0.01)
        stop.set()
        for th, _, e in acc:
            th.join(5)
            assert not th.is_alive() and not e, e
        assert len(got) == count
        idx = sorted(int(_recv_exact(s, 4)) for s in got)
        assert idx == list(range(count))
        assert sum(o[0] for _, o, _ in acc) == count
        lh = srv._listen
        assert lh.hold == 0 and lh.in_sink == 0 and not lh.listener.accept_queue
        _close_all(srv, *got, *out[0])


def test_queued_connections_and_new_ones_during_a_direct_accept_keep_order(
        tmp_path: Path, knobs: None) -> None:
    """Connections already in the descriptor, then more arriving while a blocking accept waits
    (one thread serving inline): none lost, order kept."""
    with network(tmp_path, 2) as (a, b):
        srv = _listener(b, 7313)
        srv.settimeout(10)
        t, out, err = _connector(a, 7313, 5, 0.0)
        t.join(10)
        assert not err
        time.sleep(0.05)
        first = out[0]
        t2, out2, err2 = _thread(lambda: [srv.accept()[0] for _ in range(12)])
        time.sleep(0.05)
        more = []
        for i in range(5, 12):
            c = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
            c.settimeout(10)
            c.connect(("192.0.2.2", 7313))
            c.sendall(b"%04d" % i)
            more.append(c)
            time.sleep(0.01)
        t2.join(10)
        assert not err2, err2
        _check_accepted(out2[0], 12)
        _close_all(srv, *out2[0], *first, *more)


def test_listener_closed_while_a_thread_accepts_with_timeout(tmp_path: Path,
                                                             knobs: None) -> None:
    """A listener closed while a thread waits in accept (timeout 0.5 s): the accept ends
    (timeout or an error), no state is left, the port can listen again and serve."""
    with network(tmp_path, 2) as (a, b):
        srv = _listener(b, 7314)
        srv.settimeout(0.5)
        lh = srv._listen
        t, out, err = _thread(srv.accept)
        time.sleep(0.1)
        srv.close()
        t.join(5)
        assert not t.is_alive()
        assert err and not out
        assert lh.hold == 0
        r = b.runtime
        time.sleep(0.05)
        assert not r._serving
        srv2 = _listener(b, 7314)
        srv2.settimeout(10)
        c = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
        c.settimeout(10)
        c.connect(("192.0.2.2", 7314))
        c.sendall(b"ok")
        s, _ = srv2.accept()
        s.settimeout(10)
        assert _recv_exact(s, 2) == b"ok"
        _close_all(c, s, srv2)


def test_selector_on_sockets_accepted_with_early_data(tmp_path: Path, knobs: None) -> None:
    """Connections that sent data before their accept returned (accepted directly or through
    the descriptor): a selector sees every one readable and reads everything."""
    count = 20
    with network(tmp_path, 2) as (a, b):
        srv = _listener(b, 7315)
        srv.settimeout(10)
        clients = []
        accepted = []
        for i in range(count):
            acc = _thread(srv.accept)
            c = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
            c.settimeout(10)
            c.connect(("192.0.2.2", 7315))
            c.sendall(b"early %04d;" % i)
            clients.append(c)
            acc[0].join(10)
            assert not acc[2], acc[2]
            accepted.append(acc[1][0][0])
        sel = selectors.DefaultSelector()
        for i, s in enumerate(accepted):
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, i)
        data = {i: b"" for i in range(count)}
        end = time.monotonic() + 10
        while any(len(v) < 11 for v in data.values()) and time.monotonic() < end:
            for key, _ in sel.select(1):
                data[key.data] += key.fileobj.recv(100)  # type: ignore[union-attr]
        sel.close()
        assert data == {i: b"early %04d;" % i for i in range(count)}
        _close_all(srv, *clients, *accepted)


# -- fork, idle CPU -------------------------------------------------------------------------------
def test_fork_while_a_thread_serves_inline(tmp_path: Path, knobs: None) -> None:
    """A process forks while one of its threads serves a stack inline (holding its locks at
    times): the child uses an inherited connection through its descriptor and exits; neither
    side hangs."""
    with network(tmp_path, 2) as (a, b):
        srv, [(c1, s1), (c2, s2)] = connected_pairs(a, b, 7316, 2)
        t1, out1, err1 = _idle_holder(b, s1)
        for i in range(3):
            pid = os.fork()
            if pid == 0:  # child: only the descriptor of s2 (the stack is the parent's)
                code = 1
                try:
                    s2.settimeout(5)
                    s2.sendall(b"child%d" % i)
                    if s2.recv(10) == b"ok%d" % i:
                        code = 0
                finally:
                    os._exit(code)
            assert _recv_exact(c2, 6) == b"child%d" % i
            c2.sendall(b"ok%d" % i)
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
        c1.sendall(b"end")
        t1.join(10)
        assert out1 == [b"end"] and not err1
        _close_all(c1, s1, c2, s2, srv)


def _cpu() -> float:
    return time.process_time()


@pytest.mark.parametrize("what", ["recv", "two-recv", "accept", "recv-with-timers"])
def test_idle_waits_do_not_burn_cpu(tmp_path: Path, knobs: None, what: str) -> None:
    """Threads blocked on a silent stack for 2 s (serving inline or waiting in the kernel
    behind one that does, with pending TCP timers or not) use almost no CPU: no busy loop."""
    with network(tmp_path, 2) as (a, b):
        srv, [(c1, s1), (c2, s2)] = connected_pairs(a, b, 7317, 2)
        threads = []
        if what == "accept":
            srv.settimeout(None)
            threads.append(_thread(srv.accept))
        else:
            threads.append(_idle_holder(b, s1))
        if what == "two-recv":
            s2.settimeout(None)
            threads.append(_thread(lambda: s2.recv(100)))
        if what == "recv-with-timers":
            # keepalive far ahead, and data that is never acknowledged (peer dropped): the
            # retransmission backs off (its timer stays armed)
            s2.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            drop = _Dropper(_plug(a), _tcp_to(7317))
            drop.armed = 1 << 30
            s2.sendall(b"never acknowledged")
        time.sleep(0.3)
        t0 = _cpu()
        w0 = time.monotonic()
        time.sleep(2.0)
        used = _cpu() - t0
        wall = time.monotonic() - w0
        assert used < 0.2 * wall, f"{used:.3f} s CPU in {wall:.2f} s idle"
        for t, _, _ in threads:
            assert t.is_alive()
        if what == "recv-with-timers":
            drop.remove()
        c1.sendall(b"x")
        c2.sendall(b"y")
        if what == "accept":
            c3 = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
            c3.settimeout(10)
            c3.connect(("192.0.2.2", 7317))
            threads[0][0].join(10)
            assert threads[0][1] and threads[0][1][0][0]
            _close_all(c3, threads[0][1][0][0])
        else:
            for t, _, err in threads:
                t.join(10)
                assert not t.is_alive() and not err
        _close_all(c1, s1, c2, s2, srv)


def test_a_deadline_set_while_the_holder_computes_its_wait_is_not_lost(tmp_path: Path) -> None:
    """The interleaving that loses a timer: the lease holder reads the stack's next deadline
    for its new wait (none), then another thread sends a segment (which is lost) and, seeing
    the holder's wake-up time of its previous wait, leaves the retransmission timer to the
    holder; the holder then waits without a deadline.  The retransmission must still come."""
    with network(tmp_path, 2) as (a, b):
        srv, [(c1, s1), (c2, s2)] = connected_pairs(a, b, 7318, 2)
        drop = _Dropper(_plug(b), _tcp_to(c2.getsockname()[1]))
        runtime = b.runtime
        trap: dict[str, Any] = {"armed": True, "sent": False}

        class Racy(rt.StackRuntime):
            @property
            def _due(self) -> float | None:
                value: float | None = self.__dict__["_due_value"]
                if trap["armed"] and self._serving and self._holder == threading.get_ident() \
                        and (value is None or value > self.clock() + 1.5) \
                        and self._holder_wake < self.clock() + 0.1:
                    # (the wake-up time of the previous wait is still there: the lease of
                    # that wait is held) another thread's send runs right now
                    trap["armed"] = False
                    drop.armed = 1
                    t = _thread(lambda: s2.sendall(b"raced"))
                    t[0].join(5)
                    trap["sent"] = not t[2]
                return value

            @_due.setter
            def _due(self, value: float | None) -> None:
                self.__dict__["_due_value"] = value

        runtime.__dict__["_due_value"] = runtime.__dict__.pop("_due")
        runtime.__class__ = Racy
        try:
            reads: list[bytes] = []

            def holder() -> int:
                s1.settimeout(None)
                while b"2" not in (reads[-1] if reads else b""):
                    reads.append(bytes(s1.recv(100)))
                return len(reads)

            t1, out1, err1 = _thread(holder)
            t0 = time.monotonic()
            while trap["armed"] and time.monotonic() - t0 < 5:
                n = len(reads)
                c1.sendall(b"1")  # (one at a time: no input after the trap's wait began)
                while len(reads) == n and time.monotonic() - t0 < 5:
                    time.sleep(0.001)
                time.sleep(0.05)  # (the trap springs, if it does, as the next wait begins)
            while not trap["sent"] and time.monotonic() - t0 < 5:
                time.sleep(0.001)
            assert trap["sent"] and drop.dropped == 1
            t0 = time.monotonic()
            assert _recv_exact(c2, 5) == b"raced"
            took = time.monotonic() - t0
            # (the holder's wait would end only at the next other deadline, >= 1.5 s away)
            assert took < 1.0, f"retransmitted after {took:.2f} s, rto {s2._h.conn.rto:.2f}"
            time.sleep(0.05)
            c1.sendall(b"2")
            t1.join(10)
            assert out1 and not err1
        finally:
            runtime.__class__ = rt.StackRuntime
            runtime.__dict__["_due"] = runtime.__dict__.pop("_due_value")
            drop.remove()
        _close_all(c1, s1, c2, s2, srv)


# -- bulk next to an inline reader, interrupted waits ------------------------------------------
def _drain(s: Any, n: int) -> int:
    got = 0
    while got < n:
        data = s.recv(65536)
        if not data:
            break
        got += len(data)
    return got


@pytest.mark.parametrize("where", ["same-socket", "other-socket"])
def test_bulk_send_next_to_a_thread_reading_inline(tmp_path: Path, knobs: None,
                                                   where: str) -> None:
    """A thread sits in recv (serving inline) while another thread sends 3 MB, on the same
    socket (a reader and a writer thread, full duplex) or on another connection of the stack:
    every byte arrives (the send space freed by ACKs the reader serves reaches the writer),
    then the reader gets its answer."""
    size = 3 << 20
    with network(tmp_path, 2) as (a, b):
        srv, [(c1, s1), (c2, s2)] = connected_pairs(a, b, 7319, 2)
        t1, out1, err1 = _idle_holder(b, s1)
        out_sock, peer = (s1, c1) if where == "same-socket" else (s2, c2)
        tr, outr, errr = _thread(lambda: _drain(peer, size))
        out_sock.sendall(b"\x5a" * size)
        tr.join(15)
        assert not errr and outr == [size]
        assert t1.is_alive()
        c1.sendall(b"answer")
        t1.join(10)
        assert out1 == [b"answer"] and not err1
        _close_all(c1, s1, c2, s2, srv)


def test_an_inline_recv_interrupted_by_a_signal_loses_nothing(tmp_path: Path,
                                                              knobs: None) -> None:
    """A signal handler raises in the main thread while it serves inline in recv (Ctrl-C):
    the exception comes out, no lease or hold is left, and the data sent meanwhile (to that
    socket and to another one read by a second thread) is all received afterwards."""
    import signal

    class Interrupted(Exception):
        pass

    def raiser(signum: int, frame: Any) -> None:
        raise Interrupted

    with network(tmp_path, 2) as (a, b):
        srv, [(c1, s1), (c2, s2)] = connected_pairs(a, b, 7320, 2)
        old = signal.signal(signal.SIGALRM, raiser)
        try:
            s1.settimeout(None)
            for i in range(5):
                t2, out2, err2 = _thread(lambda: _recv_exact(s2, 4))
                signal.setitimer(signal.ITIMER_REAL, 0.05)
                with pytest.raises(Interrupted):
                    s1.recv(100)
                r = b.runtime  # (the second thread may serve now, not this one)
                assert not (r._serving and r._holder == threading.get_ident())
                assert s1._h.hold == 0
                c1.sendall(b"m%03d" % i)
                c2.sendall(b"n%03d" % i)
                assert _recv_exact(s1, 4) == b"m%03d" % i
                t2.join(10)
                assert out2 == [b"n%03d" % i] and not err2
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
        _close_all(c1, s1, c2, s2, srv)


def test_connection_storm_from_several_threads(tmp_path: Path, knobs: None) -> None:
    """Three client threads on one stack each run 25 connect, send, receive, close cycles
    against two accepting threads on the other stack that answer and close (the cps
    benchmark's pattern, concurrently): every cycle completes with the right bytes and no
    connection state is left behind."""
    per, clients_n, servers_n = 25, 3, 2
    total = per * clients_n
    with network(tmp_path, 2) as (a, b):
        srv = _listener(b, 7321, backlog=128)
        srv.settimeout(0.3)
        served: list[int] = []
        lock = threading.Lock()

        def server() -> int:
            n = 0
            while True:
                with lock:
                    if len(served) >= total:
                        return n
                try:
                    s, _ = srv.accept()
                except TimeoutError:
                    continue
                s.settimeout(10)
                req = _recv_exact(s, 8)
                s.sendall(req[::-1])
                s.close()
                with lock:
                    served.append(int(req[1:]))
                n += 1

        def client(k: int) -> int:
            for i in range(per):
                c = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
                c.settimeout(10)
                c.connect(("192.0.2.2", 7321))
                req = b"%d%07d" % (k, k * per + i)
                c.sendall(req)
                assert _recv_exact(c, 8) == req[::-1]
                assert c.recv(10) == b""
                c.close()
            return per

        servers = [_thread(server) for _ in range(servers_n)]
        clients = [_thread(functools.partial(client, k)) for k in range(clients_n)]
        for t, _, err in clients + servers:
            t.join(30)
            assert not t.is_alive(), "a thread hangs"
            assert not err, err
        assert sorted(served) == list(range(total))
        srv.close()
        time.sleep(0.2)
        with b.lock:
            assert not srv._tcp.pending and not any(
                h.conn.state not in (State.CLOSED, State.TIME_WAIT)
                for h in srv._tcp.by_conn.values())


def test_no_descriptor_or_thread_left_by_stacks_that_served_inline(tmp_path: Path) -> None:
    """Stacks whose threads served inline (guard descriptor, direct accept, inline reads),
    closed one after another: no descriptor and no thread is left behind."""
    def cycle(i: int) -> None:
        with network(tmp_path / str(i), 2) as (a, b):
            srv, [(c1, s1)] = connected_pairs(a, b, 7322, 1)
            t1, out1, _ = _idle_holder(b, s1)
            c1.sendall(b"x")
            t1.join(10)
            assert out1 == [b"x"]
            assert b.runtime._guard is not None or not rt.GUARD
            _close_all(c1, s1, srv)

    for i in range(2):  # (shared engines, pumps, libc handles: made once)
        (tmp_path / str(i)).mkdir()
        cycle(i)
    time.sleep(0.2)
    fds = len(os.listdir("/proc/self/fd"))
    threads = threading.active_count()
    for i in range(2, 8):
        (tmp_path / str(i)).mkdir()
        cycle(i)
    time.sleep(0.2)
    assert len(os.listdir("/proc/self/fd")) <= fds
    assert threading.active_count() <= threads


def test_a_thread_that_served_inline_sends_megabytes_then_waits_again(tmp_path: Path,
                                                                      knobs: None) -> None:
    """An echo-like server thread: a wait served inline, then a 2 MB sendall that outruns
    the send buffer (it must hand the plugs back to the engine to get its ACKs), then the
    next wait, several rounds; a second connection of the stack keeps being answered."""
    size = 2 << 20
    with network(tmp_path, 2) as (a, b):
        srv, [(c1, s1), (c2, s2)] = connected_pairs(a, b, 7323, 2)

        def server() -> int:
            s1.settimeout(10)
            rounds = 0
            while True:
                req = s1.recv(16)
                if not req:
                    return rounds
                s1.sendall(req * (size // len(req)))
                rounds += 1

        ts, outs, errs = _thread(server)
        for i in range(3):
            req = b"%016d" % i
            c1.sendall(req)
            tr, outr, errr = _thread(lambda: _drain(c1, size))
            c2.sendall(b"ping")
            assert _recv_exact(s2, 4) == b"ping"
            tr.join(15)
            assert not errr and outr == [size]
        c1.shutdown(socket.SHUT_WR)
        ts.join(10)
        assert outs == [3] and not errs
        _close_all(c1, s1, c2, s2, srv)


def test_accept_served_inline_while_a_thread_of_the_same_stack_connects(
        tmp_path: Path, knobs: None) -> None:
    """A thread waits in accept (serving inline, may accept directly) while another thread of
    the same stack connects to it, over loopback or its own address: the connection is made
    on the connecting thread, reaches the acceptor through the descriptor, in both cases."""
    with network(tmp_path, 2) as (_, b):
        srv = isocket(b, socket.AF_INET, socket.SOCK_STREAM)
        srv.bind(("0.0.0.0", 7324))
        srv.listen(16)
        srv.settimeout(5)
        for i in range(20):
            t, out, err = _thread(srv.accept)
            time.sleep(0.005)
            c = isocket(b, socket.AF_INET, socket.SOCK_STREAM)
            c.settimeout(5)
            c.connect(("127.0.0.1" if i % 2 else "192.0.2.2", 7324))
            c.sendall(b"%04d" % i)
            t.join(5)
            assert out and not err, err
            s = out[0][0]
            s.settimeout(5)
            assert _recv_exact(s, 4) == b"%04d" % i
            s.sendall(b"ok")
            assert _recv_exact(c, 2) == b"ok"
            _close_all(s, c)
        srv.close()
