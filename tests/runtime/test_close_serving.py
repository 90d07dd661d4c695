"""Closing a stack while a thread serves its plugs inline (StackRuntime.stop_serving, called by
StackRuntime.close before it closes the plugs): the wait in progress ends (serve_until returns
None, the caller blocks as usual), no wait starts afterwards, and the wake pipe is closed once
no thread is inside."""

from __future__ import annotations

import os
import select
import threading
from pathlib import Path
from typing import Any

import ioth


def _stack(tmp_path: Path) -> ioth.Stack:
    return ioth.Stack(f"ptp://{tmp_path / 'p'}", "eth,ip=192.0.2.1/24")


def _wait_serving(s: ioth.Stack) -> None:
    for _ in range(1000):
        if s.runtime._serving:
            return
        threading.Event().wait(0.005)
    raise AssertionError("no thread started serving inline")


def test_close_ends_a_wait_without_deadline(tmp_path: Path) -> None:
    s = _stack(tmp_path)
    r, w = os.pipe()
    out: list[Any] = []
    t = threading.Thread(
        target=lambda: out.append(s.runtime.serve_until(r, select.POLLIN, None)), daemon=True)
    try:
        t.start()
        _wait_serving(s)
        s.close()
        t.join(5)
        assert not t.is_alive(), "the inline wait outlived the stack's close"
        assert out == [None]
        assert s.runtime._wake is None  # (closed: nobody is inside any more)
    finally:
        os.close(r)
        os.close(w)


def test_no_wait_starts_once_the_stack_closes(tmp_path: Path) -> None:
    s = _stack(tmp_path)
    r, w = os.pipe()
    try:
        os.write(w, b"x")
        assert s.runtime.serve_until(r, select.POLLIN, s.runtime.clock() + 5) is True
        s.runtime.stop_serving()
        assert not s.runtime.can_serve()
        assert s.runtime.serve_until(r, select.POLLIN, s.runtime.clock() + 5) is None
        s.close()
        assert s.runtime._wake is None
    finally:
        os.close(r)
        os.close(w)


def test_a_holder_that_has_not_polled_yet_finds_the_wake_pipe_open(tmp_path: Path) -> None:
    """The serving thread is held back before its poll longer than close waits for it: the
    plugs are closed and their numbers may be reused, but the wake pipe stays open (and
    readable) until that thread leaves, so its poll returns at once."""
    s = _stack(tmp_path)
    rt_ = s.runtime
    r, w = os.pipe()
    try:
        rt_.serve_until(r, select.POLLIN, rt_.clock() + 0.01)  # (the poll set is made)
        ps = rt_._poller
        assert ps is not None
        gate = threading.Event()
        entered = threading.Event()
        real = ps.poller

        class Gated:
            def poll(self, *args: Any) -> Any:
                entered.set()
                gate.wait(10)
                return real.poll(*args)

            def register(self, *args: Any) -> None:
                real.register(*args)

            def unregister(self, fd: int) -> None:
                real.unregister(fd)

        ps.poller = Gated()  # type: ignore[assignment]
        out: list[Any] = []
        t = threading.Thread(
            target=lambda: out.append(rt_.serve_until(r, select.POLLIN, None)), daemon=True)
        t.start()
        assert entered.wait(5)
        wake = rt_._wake
        assert wake is not None
        rt_.stop_serving(timeout=0.05)  # (gives up waiting: the thread is held back)
        rt_.close()  # (the plugs' descriptors closed)
        assert rt_._wake == wake  # still open: the thread inside closes it
        os.fstat(wake[0])
        fillers = [os.pipe() for _ in range(8)]  # (take freed numbers, as other files would)
        gate.set()
        t.join(5)
        assert not t.is_alive() and out == [None]
        assert rt_._wake is None
        for a, b in fillers:
            os.close(a)
            os.close(b)
    finally:
        os.close(r)
        os.close(w)
        s.close()


def test_a_wake_without_closing_is_drained(tmp_path: Path) -> None:
    """A byte in the wake pipe that is not a close (a forked child's copy closing writes
    none, but a stray one must not spin the wait): drained, the wait goes on."""
    s = _stack(tmp_path)
    r, w = os.pipe()
    try:
        rt_ = s.runtime
        rt_.serve_until(r, select.POLLIN, rt_.clock() + 0.01)
        wake = rt_._wake
        assert wake is not None
        os.write(wake[1], b"x")
        assert rt_.serve_until(r, select.POLLIN, rt_.clock() + 0.1) is False
        try:
            leftover = os.read(wake[0], 10)
        except BlockingIOError:
            leftover = b""
        assert leftover == b""
    finally:
        os.close(r)
        os.close(w)
        s.close()
