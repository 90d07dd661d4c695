"""Inline serving and its lease (StackRuntime.serve_until): timers keep firing while a thread
holds the plugs, and the plugs and timers come back to the engine when the holder goes away,
with the guard timer descriptor (GUARD=1) and with engine lease checks (GUARD=0), with the
holder firing timers (HOLD_TIMERS=1) or the engine only (0)."""

from __future__ import annotations

import select
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import ioth
from ioth.stack import runtime as rt
from tests.sockets.helpers import connected_pairs, network

KNOBS = [(1, 1), (1, 0), (0, 0)]


@pytest.fixture(params=KNOBS, ids=[f"guard{g}-hold{h}" for g, h in KNOBS])
def knobs(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    guard, hold = request.param
    monkeypatch.setattr(rt, "GUARD", guard)
    monkeypatch.setattr(rt, "HOLD_TIMERS", hold)
    yield


def _schedule(stack: ioth.Stack, delay: float, fired: threading.Event,
              where: list[int]) -> None:
    """A stack timer ``delay`` seconds ahead that sets ``fired`` (and notes its thread)."""
    def cb(now: float) -> None:
        where.append(threading.get_ident())
        fired.set()

    with stack.lock:
        stack.core.schedule(stack.now() + delay, cb)
        stack.runtime.flush()


def test_a_timer_set_by_another_thread_fires_while_a_thread_serves_inline(
        tmp_path: Path, knobs: None) -> None:
    with network(tmp_path, 2) as (a, b):
        srv, [(c, s)] = connected_pairs(a, b, 7101, 1)
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(s.recv(100)))
        reader.start()
        # the reader blocks in an inline wait without a deadline (no traffic)
        for _ in range(200):
            if b.runtime._serving:
                break
            threading.Event().wait(0.01)
        fired = threading.Event()
        where: list[int] = []
        _schedule(b, 0.05, fired, where)
        assert fired.wait(5), "the timer did not fire while a thread served inline"
        c.sendall(b"done")
        reader.join(10)
        assert got == [b"done"]
        for x in (c, s, srv):
            x.close()


def test_a_timer_set_between_two_waits_fires_after_the_holder_left(
        tmp_path: Path, knobs: None) -> None:
    with network(tmp_path, 2) as (a, b):
        srv, [(c, s)] = connected_pairs(a, b, 7102, 1)
        fired = threading.Event()
        where: list[int] = []
        out: list[bytes] = []

        def holder() -> None:
            out.append(s.recv(100))  # an inline wait: this thread holds the lease after it
            _schedule(b, 0.01, fired, where)  # set by the holder between two waits
            fired.wait(10)  # ... and it never serves again: the engine must fire it

        t = threading.Thread(target=holder)
        t.start()
        c.sendall(b"hello")
        t.join(15)
        assert out == [b"hello"]
        assert fired.is_set(), "the timer set by the lease holder never fired"
        for x in (c, s, srv):
            x.close()


def test_a_select_waiter_is_served_once_the_lease_holder_went_away(
        tmp_path: Path, knobs: None) -> None:
    with network(tmp_path, 2) as (a, b):
        srv, [(c1, s1), (c2, s2)] = connected_pairs(a, b, 7103, 2)
        out: list[bytes] = []
        release = threading.Event()

        def holder() -> None:
            out.append(s1.recv(100))  # served inline: the lease is this thread's
            release.wait(10)  # not serving any more (nor waiting in the kernel for ioth)

        t = threading.Thread(target=holder)
        t.start()
        c1.sendall(b"first")
        for _ in range(500):
            if out:
                break
            threading.Event().wait(0.01)
        assert out == [b"first"]
        # more input while the lease is held: the engine leaves it to the holder, then has
        # to take it back when the lease ends (s2's reader uses select: no inline serving)
        c1.sendall(b"x")
        c2.sendall(b"second")
        r, _, _ = select.select([s2], [], [], 10)
        assert r == [s2], "input for another socket stayed with a lease holder that left"
        assert s2.recv(100) == b"second"
        assert s1.recv(100) == b"x"
        release.set()
        t.join(10)
        for x in (c1, s1, c2, s2, srv):
            x.close()


def test_request_response_cycles_keep_working_with_timers_held(
        tmp_path: Path, knobs: None) -> None:
    """Both ends serve inline (each recv a wait): retransmission/delayed-ACK timers and the
    lease change hands thousands of times without a stall."""
    with network(tmp_path, 2) as (a, b):
        srv, [(c, s)] = connected_pairs(a, b, 7104, 1)
        n = 300
        errors: list[BaseException] = []

        def echo() -> None:
            try:
                for _ in range(n):
                    s.sendall(s.recv(64))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        t = threading.Thread(target=echo)
        t.start()
        for i in range(n):
            msg = b"%08d" % i
            c.sendall(msg)
            got = b""
            while len(got) < len(msg):
                chunk = c.recv(64)
                assert chunk
                got += chunk
            assert got == msg
        t.join(10)
        assert not errors
        assert a.runtime.inline_waits > 0 and b.runtime.inline_waits > 0
        for x in (c, s, srv):
            x.close()


def test_select_poll_with_no_guard_descriptor_uses_engine_lease_checks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where no timerfd can be made the lease falls back to engine timers."""
    monkeypatch.setattr(rt, "_timerfd", lambda: None)
    with network(tmp_path, 2) as (a, b):
        srv, [(c, s)] = connected_pairs(a, b, 7105, 1)
        c.sendall(b"ping")
        assert s.recv(10) == b"ping"
        assert b.runtime._guard is None
        c.sendall(b"pong")
        r, _, _ = select.select([s], [], [], 10)  # the lease ends through an engine timer
        assert r == [s]
        assert s.recv(10) == b"pong"
        for x in (c, s, srv):
            x.close()


def test_the_guard_is_polled_by_its_engine_and_closed_with_the_stack(tmp_path: Path) -> None:
    with network(tmp_path, 2) as (a, b):
        srv, [(c, s)] = connected_pairs(a, b, 7106, 1)
        c.sendall(b"ping")
        assert s.recv(10) == b"ping"
        guard = b.runtime._guard
        assert guard is not None
        fd = guard.fd
        assert fd in b.runtime.engine._readers
        for x in (c, s, srv):
            x.close()
    assert fd not in b.runtime.engine._readers
    assert b.runtime._guard is None


def test_no_poll_is_left_behind_by_a_wait_that_timed_out(tmp_path: Path, knobs: None) -> None:
    with network(tmp_path, 2) as (a, b):
        srv, [(c, s)] = connected_pairs(a, b, 7107, 1)
        s.settimeout(0.05)
        with pytest.raises(TimeoutError):
            s.recv(10)
        assert not b.runtime._serving
        s.settimeout(10)
        c.sendall(b"later")
        assert s.recv(10) == b"later"
        for x in (c, s, srv):
            x.close()

