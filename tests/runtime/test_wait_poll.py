"""The inline waits' poll set (StackRuntime KEEP_WAITED): the descriptor a wait waited for
stays registered until a wait for another one.  A descriptor closed after its wait, or its
number reused, must not disturb later waits (a closed descriptor left registered would make
every poll return at once: a busy loop)."""

from __future__ import annotations

import os
import select
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import ioth
from ioth.stack import runtime as rt


@pytest.fixture(params=[1, 0], ids=["keep", "churn"])
def stack(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
          tmp_path: Path) -> Iterator[ioth.Stack]:
    monkeypatch.setattr(rt, "KEEP_WAITED", request.param)
    with ioth.Stack(f"ptp://{tmp_path / 'p'}", "eth,ip=192.0.2.1/24") as s:
        yield s


class _CountingPoll:
    """A poll object that counts its polls (wraps the runtime's)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.polls = 0

    def poll(self, *args: Any) -> Any:
        self.polls += 1
        return self.inner.poll(*args)

    def register(self, *args: Any) -> None:
        self.inner.register(*args)

    def unregister(self, fd: int) -> None:
        self.inner.unregister(fd)


def _counting(s: ioth.Stack) -> _CountingPoll:
    ps = s.runtime._poller
    assert ps is not None
    if not isinstance(ps.poller, _CountingPoll):
        ps.poller = _CountingPoll(ps.poller)  # type: ignore[assignment]
    return ps.poller  # type: ignore[return-value]


def test_a_ready_descriptor_ends_the_wait(stack: ioth.Stack) -> None:
    r, w = os.pipe()
    try:
        os.write(w, b"x")
        assert stack.runtime.serve_until(r, select.POLLIN, stack.runtime.clock() + 5) is True
        os.read(r, 1)
        # the same descriptor again: not ready now, the wait times out
        assert stack.runtime.serve_until(r, select.POLLIN, stack.runtime.clock() + 0.05) \
            is False
    finally:
        os.close(r)
        os.close(w)


def test_a_descriptor_closed_after_its_wait_does_not_wake_later_waits(
        stack: ioth.Stack) -> None:
    r1, w1 = os.pipe()
    os.write(w1, b"x")
    assert stack.runtime.serve_until(r1, select.POLLIN, stack.runtime.clock() + 5) is True
    os.close(r1)
    os.close(w1)
    other = os.open(os.devnull, os.O_RDONLY)  # (not a pollable pipe: keep numbers apart)
    r2, w2 = os.pipe()
    try:
        counting = _counting(stack)
        assert stack.runtime.serve_until(r2, select.POLLIN, stack.runtime.clock() + 0.2) \
            is False
        assert counting.polls <= 3, "the wait was woken again and again (busy loop)"
        os.write(w2, b"y")
        assert stack.runtime.serve_until(r2, select.POLLIN, stack.runtime.clock() + 5) is True
    finally:
        for fd in (other, r2, w2):
            os.close(fd)


def test_a_reused_descriptor_number_is_waited_for_as_the_new_descriptor(
        stack: ioth.Stack) -> None:
    r1, w1 = os.pipe()
    os.write(w1, b"x")
    assert stack.runtime.serve_until(r1, select.POLLIN, stack.runtime.clock() + 5) is True
    os.close(r1)
    os.close(w1)
    r2, w2 = os.pipe()  # (likely the same numbers)
    try:
        counting = _counting(stack)
        assert stack.runtime.serve_until(r2, select.POLLIN, stack.runtime.clock() + 0.2) \
            is False
        assert counting.polls <= 3
        os.write(w2, b"y")
        assert stack.runtime.serve_until(r2, select.POLLIN, stack.runtime.clock() + 5) is True
    finally:
        os.close(r2)
        os.close(w2)


def test_other_events_of_the_same_descriptor_are_waited_for(stack: ioth.Stack) -> None:
    """POLLIN then POLLOUT (then no events at all) on one descriptor: the registration
    follows the events asked for."""
    r, w = os.pipe()
    try:
        assert stack.runtime.serve_until(w, select.POLLIN, stack.runtime.clock() + 0.05) \
            is False  # a pipe's write end never reads
        assert stack.runtime.serve_until(w, select.POLLOUT, stack.runtime.clock() + 5) is True
        assert stack.runtime.serve_until(w, 0, stack.runtime.clock() + 0.05) is False
    finally:
        os.close(r)
        os.close(w)


def test_the_poll_set_follows_plugs_attached_later(stack: ioth.Stack, tmp_path: Path) -> None:
    """A plug attached after the first wait is polled by the next one (the set is rebuilt,
    and the waited descriptor registered in the new one)."""
    r, w = os.pipe()
    try:
        assert stack.runtime.serve_until(r, select.POLLIN, stack.runtime.clock() + 0.02) \
            is False
        before = stack.runtime._poller
        idx = stack.iplink_add_vde(-1, "extra:null://")
        assert stack.runtime._poller is None or stack.runtime._poller is not before
        os.write(w, b"z")
        assert stack.runtime.serve_until(r, select.POLLIN, stack.runtime.clock() + 5) is True
        ps = stack.runtime._poller
        assert ps is not None
        assert set(ps.by_fd.values()) == set(stack.runtime.plugs)
        stack.iplink_del(stack.if_indextoname(idx))
    finally:
        os.close(r)
        os.close(w)
