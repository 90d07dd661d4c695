"""Glue between a :class:`~ioth.stack.stack.Stack` and an :class:`~ioth.runtime.engine.Engine`.

The engine thread reads plugs and fires the stack's single timer; application threads run
protocol code directly under the stack's lock (core locking) and flush queued frames to the plugs
themselves.  One engine can serve many stacks (the default: a process-wide shared engine started
on first use), or a stack can own an engine thread ("one thread, one node").
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ioth.errors import PlugClosedError
from ioth.net.plug import Plug
from ioth.runtime.engine import Engine, TimerHandle

if TYPE_CHECKING:
    from ioth.stack.stack import Stack

log = logging.getLogger(__name__)

RECV_BATCH = 64
MAX_BATCHES = 16


class _SharedEngine:
    """Holder of the process-wide engine shared by stacks that do not ask for their own."""

    lock = threading.Lock()
    engine: Engine | None = None


def shared_engine() -> Engine:
    """The process-wide engine for stacks (started on first use)."""
    with _SharedEngine.lock:
        if _SharedEngine.engine is None:
            _SharedEngine.engine = Engine("ioth-stacks").start()
        return _SharedEngine.engine


class StackRuntime:
    """Moves frames between a stack's interfaces and their plugs and runs its timers."""

    def __init__(self, stack: Stack, engine: Engine | None, own_thread: bool) -> None:
        self.stack = stack
        self.own_engine = engine is None and own_thread
        if engine is None:
            engine = Engine(f"ioth-stack-{id(stack):x}").start() if own_thread \
                else shared_engine()
        self.engine = engine
        self.clock: Callable[[], float] = engine.clock
        self.plugs: dict[int, Plug] = {}
        self._fds: dict[int, list[int]] = {}
        self._timer: TimerHandle | None = None
        self._timer_when: float | None = None
        self.plug_errors = 0
        #: called on the engine thread, stack lock held, after the frames of an input batch or a
        #: timer were handled and flushed (the socket layer wakes application threads there,
        #: once the stack's own output is out)
        self.after_batch: list[Callable[[], None]] = []

    # -- plugs ----------------------------------------------------------------------------
    def attach(self, index: int, plug: Plug) -> None:
        """Start serving ``plug`` as the medium of interface ``index``."""
        self.plugs[index] = plug
        fds = plug.filenos()
        self._fds[index] = fds

        def register() -> None:
            if self.plugs.get(index) is plug:
                for fd in fds:
                    self.engine.add_reader(fd, functools.partial(self._readable, index))

        # registration runs on the engine thread without making the caller wait for it (the
        # engine may be busy with other stacks' frames); frames that arrive meanwhile wait in
        # the plug's socket buffer (level-triggered readiness)
        if self.engine.in_engine_thread():
            register()
        else:
            self.engine.call_soon_threadsafe(register)

    def detach(self, index: int) -> Plug | None:
        """Stop serving interface ``index``; returns its plug (not closed)."""
        plug = self.plugs.pop(index, None)
        for fd in self._fds.pop(index, []):
            self.engine.remove_reader(fd)
        return plug

    def _readable(self, index: int) -> None:
        stack = self.stack
        with stack.lock:
            plug = self.plugs.get(index)
            if plug is None:
                return
            core = stack.core
            now = self.clock()
            core.begin_batch()
            try:
                for _ in range(MAX_BATCHES):
                    frames = plug.recv_frames(RECV_BATCH)
                    if not frames:
                        break
                    now = self.clock()
                    for frame in frames:
                        core.input_frame(index, frame, now)
                    if len(frames) < RECV_BATCH:
                        break
            except PlugClosedError:
                log.warning("stack: plug of interface %d closed by its peer", index)
                self.detach(index)
                self.plug_errors += 1
            except OSError as exc:
                log.warning("stack: plug of interface %d failed: %s", index, exc)
                self.detach(index)
                self.plug_errors += 1
            finally:
                core.end_batch(now)
            at = plug.poll_at()
            if at is not None and index in self.plugs:
                self.engine.call_at(at, lambda: self._readable(index))
            self.flush()
            for hook in self.after_batch:
                hook()

    # -- output and timers (stack lock held) ------------------------------------------------
    def flush(self) -> None:
        """Hand queued frames to the plugs and re-arm the timer.  Call with the lock held."""
        core = self.stack.core
        for index, iface in core.ifaces.items():
            q = iface.txq
            if not q:
                continue
            plug = self.plugs.get(index)
            if plug is None:
                iface.tx_dropped += len(q)
                q.clear()
                continue
            send = plug.send
            while q:
                send(q.popleft())
        when = core.next_deadline()
        if when is not None and (self._timer_when is None or when < self._timer_when):
            if self._timer is not None:
                self._timer.cancel()
            self._timer_when = when
            self._timer = self.engine.call_at(when, self._fire)

    def _fire(self) -> None:
        stack = self.stack
        with stack.lock:
            self._timer = None
            self._timer_when = None
            if stack.closed:
                return
            stack.core.poll(self.clock())
            self.flush()
            for hook in self.after_batch:
                hook()

    def close(self) -> None:
        """Detach every plug (closing them) and stop an owned engine."""
        for index in list(self.plugs):
            plug = self.detach(index)
            if plug is not None:
                plug.close()
        if self._timer is not None:
            self._timer.cancel()
        if self.own_engine:
            self.engine.close()
