"""The engine: one thread, one epoll set, one timer heap.

An engine serves many plugs, switches and stacks.  Callbacks run on the engine thread; other
threads hand work over with :meth:`Engine.call_soon_threadsafe` (which wakes the loop through an
eventfd, or a pipe where there is none).  :meth:`Engine.add_reader`, :meth:`Engine.remove_reader`
and :meth:`Engine.call_at` may be called from any thread.

The loop sits on ``select.epoll`` directly (a descriptor -> callback dict, level-triggered): no
``selectors`` key objects or event-mask translation per wake-up, and a thread that schedules a
timer wakes the loop only when the timer is due before the loop's current wait ends.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)

Callback = Callable[[], object]

_INF = float("inf")
#: ``_sleep_until`` while the loop is awake (it looks at timers and calls before sleeping again)
_AWAKE = -_INF
#: events taken from epoll per wait
MAX_EVENTS = 256
_IN = select.EPOLLIN


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
        self._epoll = select.epoll()
        self._readers: dict[int, Callback] = {}
        self._timers: list[tuple[float, int, TimerHandle]] = []
        self._seq = itertools.count()
        self._pending: deque[Callback] = deque()
        # when the loop's current wait ends (_AWAKE: it is running callbacks and looks at the
        # timers and calls again before it waits): other threads wake it only for earlier work
        self._sleep_until = _AWAKE
        self._efd = -1
        if hasattr(os, "eventfd"):
            self._efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self._wake_r = self._wake_w = self._efd
        else:  # pragma: no cover - Linux has eventfd
            self._wake_r, self._wake_w = os.pipe()
            os.set_blocking(self._wake_r, False)
            os.set_blocking(self._wake_w, False)
        self._readers[self._wake_r] = self._drain_wakeup
        self._epoll.register(self._wake_r, _IN)
        self._thread: threading.Thread | None = None
        self._ident: int | None = None
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
        ident = self._ident
        if ident is None:
            thread = self._thread
            return thread is not None and threading.current_thread() is thread
        return threading.get_ident() == ident

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
        self._epoll.close()
        os.close(self._wake_r)
        if self._wake_w != self._wake_r:
            os.close(self._wake_w)

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- scheduling ------------------------------------------------------------------------
    def call_soon_threadsafe(self, callback: Callback) -> None:
        """Run ``callback`` on the engine thread as soon as possible."""
        self._pending.append(callback)
        if self._sleep_until != _AWAKE:  # (awake: the loop looks at the calls before it waits)
            self._wake()

    def call_at(self, when: float, callback: Callback) -> TimerHandle:
        """Run ``callback`` at monotonic time ``when``."""
        handle = TimerHandle(when, callback)
        heapq.heappush(self._timers, (when, next(self._seq), handle))
        # (pushed first, then the loop's wait end read: the loop publishes that end before it
        # reads the heap for its timeout, so one of the two sees the other)
        if when < self._sleep_until:  # (never on the engine thread: it is awake there)
            self._wake()
        return handle

    def call_later(self, delay: float, callback: Callback) -> TimerHandle:
        """Run ``callback`` after ``delay`` seconds."""
        return self.call_at(self.clock() + delay, callback)

    def add_reader(self, fd: int, callback: Callback) -> None:
        """Call ``callback`` whenever ``fd`` is readable (a second call for the same ``fd``
        replaces its callback)."""
        if self._closed:
            raise ValueError("engine is closed")
        known = fd in self._readers
        self._readers[fd] = callback
        if known:
            try:
                self._epoll.modify(fd, _IN)
            except FileNotFoundError:
                self._epoll.register(fd, _IN)
        else:
            try:
                self._epoll.register(fd, _IN)
            except BaseException:
                self._readers.pop(fd, None)
                raise

    def remove_reader(self, fd: int) -> None:
        """Stop watching ``fd`` (no error if it was not watched).  When another thread runs the
        loop, returns once the loop has let go of ``fd`` (its callback does not run after)."""
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
        registered yet): the loop keeps serving ``fd``."""
        if self._closed or fd not in self._readers:
            return False
        try:
            self._epoll.modify(fd, 0)
        except (OSError, ValueError):
            return False
        return True

    def resume_reader(self, fd: int) -> None:
        """Poll ``fd`` again after :meth:`suspend_reader` (input that arrived meanwhile is
        reported at once: readiness is level-triggered)."""
        if self._closed or fd not in self._readers:
            return
        try:
            self._epoll.modify(fd, _IN)
        except (OSError, ValueError):
            pass  # removed meanwhile

    def _unregister(self, fd: int) -> None:
        if self._readers.pop(fd, None) is None or self._closed:
            return
        try:
            self._epoll.unregister(fd)
        except (OSError, ValueError):
            pass  # closed already (the kernel dropped it from the set)

    # -- the loop --------------------------------------------------------------------------
    def _wake(self) -> None:
        try:
            if self._efd >= 0:
                os.eventfd_write(self._efd, 1)
            else:  # pragma: no cover
                os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # full: a wake-up is already pending (or closed)

    def _drain_wakeup(self) -> None:
        try:
            if self._efd >= 0:
                os.eventfd_read(self._efd)
            else:  # pragma: no cover
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
        if self._thread is threading.current_thread():
            self._ident = threading.get_ident()
        try:
            self._loop()
        finally:
            self._sleep_until = _AWAKE
            self._stopping = False  # a stop() before run() ends the next run at once

    def _loop(self) -> None:
        # Each turn: wait for input (not past the next timer), serve the input that is ready,
        # then cross-thread calls, then due timers.  Input goes first so that a timer (say a
        # TCP retransmission or tail-loss probe) never fires while the ACK that would cancel
        # it is already waiting in a socket.
        timers = self._timers
        poll = self._epoll.poll
        readers = self._readers
        pending = self._pending
        clock = self.clock
        run = self._run_callback
        while not self._stopping:
            # publish the end of the wait before looking at the calls and the heap: a thread
            # that adds a call or an earlier timer after this reads it and wakes the loop
            self._sleep_until = timers[0][0] if timers else _INF
            if pending:
                timeout = 0.0
            elif timers:
                first = timers[0][0]
                if first < self._sleep_until:
                    self._sleep_until = first
                timeout = first - clock()
                if timeout < 0.0:
                    timeout = 0.0
            else:
                timeout = -1.0
            try:
                ready = poll(timeout, MAX_EVENTS)
            finally:
                self._sleep_until = _AWAKE
            for fd, _ in ready:
                callback = readers.get(fd)
                if callback is not None:
                    try:
                        callback()
                    except Exception:
                        self.callback_errors += 1
                        log.exception("%s: callback %r failed", self.name, callback)
            while pending:
                run(pending.popleft())
            if timers:
                now = clock()
                while timers and timers[0][0] <= now:
                    _, _, handle = heapq.heappop(timers)
                    if not handle.cancelled:
                        run(handle.callback)
