"""The guard's hysteresis (StackRuntime GUARD_SLACK_US): however far the guard may lag behind
a renewed lease, input and timers come back to the engine once the holder stops waiting, and
a holder that keeps coming back keeps the plugs."""

from __future__ import annotations

import select
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ioth.stack import runtime as rt
from tests.sockets.helpers import connected_pairs, network

SLACKS = [0, 1000, 1900]


@pytest.fixture(params=SLACKS, ids=[f"slack{s}" for s in SLACKS])
def slack(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    monkeypatch.setattr(rt, "GUARD", 1)
    monkeypatch.setattr(rt, "HOLD_TIMERS", 1)
    monkeypatch.setattr(rt, "GUARD_SLACK_US", request.param)
    yield request.param


def test_input_comes_back_to_the_engine_after_many_renewed_leases(
        tmp_path: Path, slack: int) -> None:
    """Many short waits push the lease forward (the guard re-armed only now and then); then
    the holder stops: input for another socket (read through select: no inline serving)
    arrives all the same, and a timer set by the holder between its waits fires."""
    with network(tmp_path, 2) as (a, b):
        srv, [(c1, s1), (c2, s2)] = connected_pairs(a, b, 7201, 2)
        for i in range(50):
            c1.sendall(b"%02d" % i)
            assert s1.recv(10) == b"%02d" % i  # a wait: the lease is renewed
        assert b.runtime._held
        fired = threading.Event()
        with b.lock:
            b.core.schedule(b.now() + 0.01, lambda now: fired.set())
            b.runtime.flush()
        c2.sendall(b"other")
        r, _, _ = select.select([s2], [], [], 10)
        assert r == [s2], "input stayed with a lease holder that stopped waiting"
        assert s2.recv(10) == b"other"
        assert fired.wait(10), "a timer set between two waits never fired"
        for _ in range(200):
            if not b.runtime._held:
                break
            threading.Event().wait(0.01)
        assert not b.runtime._held, "the lease never ended"
        for x in (c1, s1, c2, s2, srv):
            x.close()


def test_a_timer_due_during_a_long_wait_fires_while_the_thread_waits(
        tmp_path: Path, slack: int) -> None:
    """A thread sits in one long inline wait (nothing arrives): a timer set meanwhile by
    another thread fires during that wait, not when it ends."""
    with network(tmp_path, 2) as (a, b):
        srv, [(c, s)] = connected_pairs(a, b, 7202, 1)
        c.sendall(b"x")
        assert s.recv(10) == b"x"
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(s.recv(10)))
        reader.start()
        for _ in range(500):
            if b.runtime._serving:
                break
            threading.Event().wait(0.01)
        assert b.runtime._serving
        fired = threading.Event()
        with b.lock:
            b.core.schedule(b.now() + 0.05, lambda now: fired.set())
            b.runtime.flush()
        assert fired.wait(5), "the timer waited for the end of the inline wait"
        assert not got  # the wait was still going on
        c.sendall(b"end")
        reader.join(10)
        assert got == [b"end"]
        for x in (c, s, srv):
            x.close()


def test_waits_in_a_row_keep_the_plugs_from_the_engine(tmp_path: Path, slack: int) -> None:
    """Round trips in a row: after the first one the engine leaves the plugs to the
    threads (no engine wake-up per frame) and every reply arrives."""
    with network(tmp_path, 2) as (a, b):
        srv, [(c, s)] = connected_pairs(a, b, 7203, 1)
        done = threading.Event()

        def echo() -> None:
            while not done.is_set():
                data = s.recv(64)
                if not data:
                    return
                s.sendall(data)

        t = threading.Thread(target=echo, daemon=True)
        t.start()
        for i in range(200):
            c.sendall(b"%04d" % i)
            assert c.recv(64) == b"%04d" % i
        assert a.runtime.inline_waits > 100 and b.runtime.inline_waits > 100
        done.set()
        c.close()
        t.join(10)
        for x in (s, srv):
            x.close()


def test_the_select_waiter_sees_input_with_a_guard_lagging_behind(
        tmp_path: Path, slack: int) -> None:
    with network(tmp_path, 2) as (a, b):
        srv, [(c1, s1), (c2, s2)] = connected_pairs(a, b, 7204, 2)
        c1.sendall(b"a")
        assert s1.recv(10) == b"a"
        c2.sendall(b"b")
        p = select.poll()
        p.register(s2.fileno(), select.POLLIN)
        assert p.poll(10_000), "no input within 10 s"
        assert s2.recv(10) == b"b"
        for x in (c1, s1, c2, s2, srv):
            x.close()

