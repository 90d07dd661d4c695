"""The engine: one thread, one selector (epoll), one timer heap.

An engine serves many plugs, switches and stacks.  Callbacks run on the engine thread; other
threads hand work over with :meth:`Engine.call_soon_threadsafe` (which wakes the selector through a
pipe).  :meth:`Engine.add_reader`, :meth:`Engine.remove_reader` and :meth:`Engine.call_at` may be
called from any thread.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import select
import selectors
import threading
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)

Callback = Callable[[], object]


class TimerHandle:
    """A scheduled call; :meth:`cancel` prevents it from running."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callback) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        """Do not run this timer."""
        self.cancelled = True


class Engine:
    """An event loop for frames and timers.  Use :meth:`start` for a background thread or
    :meth:`run` to serve on the calling thread."""

    def __init__(self, name: str = "ioth-engine", clock: Callable[[], float] = time.monotonic):
        self.name = name
        self.clock = clock
        self._selector = selectors.DefaultSelector()
        # the selector's epoll object, for suspend_reader/resume_reader (None: not epoll)
        epoll = getattr(self._selector, "_selector", None)
        self._epoll: select.epoll | None = epoll if isinstance(epoll, select.epoll) else None
        self._timers: list[tuple[float, int, TimerHandle]] = []
        self._seq = itertools.count()
        self._pending: deque[Callback] = deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, self._drain_wakeup)
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._closed = False
        self.callback_errors = 0

    # -- thread handling -------------------------------------------------------------------
    def start(self) -> Engine:
        """Run the engine in a daemon thread; returns self."""
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def in_engine_thread(self) -> bool:
        """True when called from the thread that runs this engine."""
        return self._thread is not None and threading.current_thread() is self._thread

    def _is_serving_elsewhere(self) -> bool:
        """True when another thread is running this engine's loop right now."""
        thread = self._thread
        return (thread is not None and thread.is_alive() and not self._stopping
                and thread is not threading.current_thread())

    def stop(self, timeout: float | None = 5.0) -> None:
        """Ask the loop to end and wait for its thread (if started with :meth:`start`)."""
        self._stopping = True
        self._wake()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def close(self) -> None:
        """Stop the engine and release its descriptors."""
        self.stop()
        if self._closed:
            return
        self._closed = True
        self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- scheduling ------------------------------------------------------------------------
    def call_soon_threadsafe(self, callback: Callback) -> None:
        """Run ``callback`` on the engine thread as soon as possible."""
        self._pending.append(callback)
        self._wake()

    def call_at(self, when: float, callback: Callback) -> TimerHandle:
        """Run ``callback`` at monotonic time ``when``."""
        handle = TimerHandle(when, callback)
        heapq.heappush(self._timers, (when, next(self._seq), handle))
        if not self.in_engine_thread():
            self._wake()
        return handle

    def call_later(self, delay: float, callback: Callback) -> TimerHandle:
        """Run ``callback`` after ``delay`` seconds."""
        return self.call_at(self.clock() + delay, callback)

    def add_reader(self, fd: int, callback: Callback) -> None:
        """Call ``callback`` whenever ``fd`` is readable."""
        if not self._is_serving_elsewhere():
            self._selector.register(fd, selectors.EVENT_READ, callback)
        else:
            done = threading.Event()

            def register() -> None:
                try:
                    self._selector.register(fd, selectors.EVENT_READ, callback)
                finally:
                    done.set()

            self.call_soon_threadsafe(register)
            done.wait(5.0)

    def remove_reader(self, fd: int) -> None:
        """Stop watching ``fd`` (no error if it was not watched)."""
        if not self._is_serving_elsewhere():
            self._unregister(fd)
        else:
            done = threading.Event()

            def unregister() -> None:
                try:
                    self._unregister(fd)
                finally:
                    done.set()

            self.call_soon_threadsafe(unregister)
            done.wait(5.0)

    def suspend_reader(self, fd: int) -> bool:
        """Stop polling ``fd`` (registered with :meth:`add_reader`) until :meth:`resume_reader`,
        while another thread serves it; any thread may call it.  Its callback may still run
        once if the loop had already found it ready.  False when it is not possible (not
        registered yet, no epoll): the loop keeps serving ``fd``."""
        epoll = self._epoll
        if epoll is None or self._closed:
            return False
        try:
            epoll.modify(fd, 0)
        except (OSError, ValueError):
            return False
        return True

    def resume_reader(self, fd: int) -> None:
        """Poll ``fd`` again after :meth:`suspend_reader` (input that arrived meanwhile is
        reported at once: readiness is level-triggered)."""
        epoll = self._epoll
        if epoll is None or self._closed:
            return
        try:
            epoll.modify(fd, select.EPOLLIN)
        except (OSError, ValueError):
            pass  # removed meanwhile

    def _unregister(self, fd: int) -> None:
        try:
            self._selector.unregister(fd)
        except (KeyError, ValueError):
            pass

    # -- the loop --------------------------------------------------------------------------
    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # the pipe is full: a wake-up is already pending

    def _drain_wakeup(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _run_callback(self, callback: Callback) -> None:
        try:
            callback()
        except Exception:
            self.callback_errors += 1
            log.exception("%s: callback %r failed", self.name, callback)

    def run(self) -> None:
        """Serve until :meth:`stop` is called (at once if it was called before)."""
        if self._thread is None:
            self._thread = threading.current_thread()
        try:
            self._loop()
        finally:
            self._stopping = False  # a stop() before run() ends the next run at once

    def _loop(self) -> None:
        # Each turn: wait for input (not past the next timer), serve the input that is ready,
        # then cross-thread calls, then due timers.  Input goes first so that a timer (say a
        # TCP retransmission or tail-loss probe) never fires while the ACK that would cancel
        # it is already waiting in a socket.
        timers = self._timers
        select = self._selector.select
        pending = self._pending
        while not self._stopping:
            if pending:
                timeout: float | None = 0.0
            elif timers:
                timeout = max(0.0, timers[0][0] - self.clock())
            else:
                timeout = None
            for key, _ in select(timeout):
                self._run_callback(key.data)
            while pending:
                self._run_callback(pending.popleft())
            now = self.clock()
            while timers and timers[0][0] <= now:
                _, _, handle = heapq.heappop(timers)
                if not handle.cancelled:
                    self._run_callback(handle.callback)
