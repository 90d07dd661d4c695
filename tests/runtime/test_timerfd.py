"""The lease guard's timerfd (runtime._TimerFd, through ctypes): it fires after the delay
armed, a later arm replaces an earlier one (shorter or longer, whole seconds included), and
clear() makes it unreadable again."""

from __future__ import annotations

import select
import time

import pytest

from ioth.stack.runtime import _TimerFd, _timerfd


@pytest.fixture
def guard() -> _TimerFd:
    t = _timerfd()
    assert t is not None, "no timerfd on Linux?"
    return t


def _ready(t: _TimerFd, ms: float) -> bool:
    p = select.poll()
    p.register(t.fd, select.POLLIN)
    return bool(p.poll(ms))


def test_fires_after_its_delay_and_clears(guard: _TimerFd) -> None:
    guard.arm(0.02)
    assert _ready(guard, 5000)
    guard.clear()
    assert not _ready(guard, 0)
    guard.close()


def test_a_later_arm_replaces_an_earlier_one(guard: _TimerFd) -> None:
    guard.arm(3.5)  # (whole seconds in tv_sec)
    assert not _ready(guard, 50)
    guard.arm(0.01)  # sooner: fires now
    assert _ready(guard, 5000)
    guard.clear()
    guard.arm(0.01)
    guard.arm(3.5)  # later: the short one is gone
    assert not _ready(guard, 100)
    guard.close()


def test_the_same_delay_armed_again_pushes_the_expiry(guard: _TimerFd) -> None:
    t0 = time.monotonic()
    guard.arm(0.2)
    time.sleep(0.12)
    guard.arm(0.2)  # (the cached spec: same delay, new start)
    assert _ready(guard, 5000)
    assert time.monotonic() - t0 >= 0.3
    guard.close()
