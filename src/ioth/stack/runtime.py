"""Glue between a :class:`~ioth.stack.stack.Stack` and an :class:`~ioth.runtime.engine.Engine`.

The engine thread reads plugs and fires the stack's single timer; application threads run
protocol code directly under the stack's lock (core locking) and flush queued frames to the plugs
themselves.  One engine can serve many stacks (the default: a process-wide shared engine started
on first use), or a stack can own an engine thread ("one thread, one node").
"""

from __future__ import annotations

import functools
import logging
import select
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
#: 1: an application thread about to block on an ioth socket serves its stack's plugs itself
#: (StackRuntime.serve_until); 0: it always waits for the engine thread
INLINE = 1
#: seconds the plugs stay with the application thread after an inline wait (see serve_until)
LEASE = 0.002
#: seconds a thread may sit in one inline wait before the engine polls the plugs again
IDLE = 0.05


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
        self._inline = threading.Lock()  # held by the thread serving the plugs inline
        # is a thread serving the plugs inline, when its lease ends; the plug descriptors the
        # engine does not poll meanwhile and the engine timer that checks the lease (these two
        # guarded by _lease_lock, held briefly)
        self._lease_lock = threading.Lock()
        self._served: frozenset[int] = frozenset()  # interfaces the serving thread polls
        self._serve_since = 0.0  # when the serving thread began its wait
        self._contended = False  # did a thread wait in the kernel while another served?
        self._serving = False
        self._suspended: list[int] = []
        self._lease_until = 0.0
        self._lease_timer: TimerHandle | None = None
        self.inline_waits = 0
        # the inline waits' poll set of the plug descriptors (-> interface), rebuilt after
        # attach/detach; used by the one thread holding _inline
        self._poller: tuple[select.poll, dict[int, int], frozenset[int]] | None = None

    # -- plugs ----------------------------------------------------------------------------
    def attach(self, index: int, plug: Plug) -> None:
        """Start serving ``plug`` as the medium of interface ``index``."""
        self.plugs[index] = plug
        fds = plug.filenos()
        self._fds[index] = fds
        self._poller = None

        def register() -> None:
            if self.plugs.get(index) is plug:
                for fd in fds:
                    self.engine.add_reader(fd, functools.partial(self._on_input, index))

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
        self._poller = None
        for fd in self._fds.pop(index, []):
            self.engine.remove_reader(fd)
        return plug

    def _readable(self, index: int) -> bool:
        """Serve the input of interface ``index`` (engine thread, or the thread serving the
        plugs inline); False when its plug is gone or failed."""
        stack = self.stack
        failed = False
        with stack.lock:
            plug = self.plugs.get(index)
            if plug is None:
                return False
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
                failed = True
            except OSError as exc:
                log.warning("stack: plug of interface %d failed: %s", index, exc)
                failed = True
            finally:
                core.end_batch(now)
            if failed:
                self.plug_errors += 1
                if self.engine.in_engine_thread():
                    self.detach(index)
                else:  # serving inline: the engine removes it (detach waits for the engine)
                    self.engine.call_soon_threadsafe(functools.partial(self._drop, index, plug))
            at = plug.poll_at()
            if at is not None and not failed and index in self.plugs:
                self.engine.call_at(at, lambda: self._readable(index))
            self.flush()
            for hook in self.after_batch:
                hook()
        return not failed

    def _drop(self, index: int, plug: Plug) -> None:
        """Engine thread: detach a plug that failed while served inline (if still attached)."""
        with self.stack.lock:
            if self.plugs.get(index) is plug:
                self.detach(index)

    def _on_input(self, index: int) -> None:
        """Engine thread: a plug of interface ``index`` is readable."""
        if (index in self._served) if self._serving else self.clock() < self._lease_until:
            # an application thread serves this plug (or did a moment ago and will again):
            # leave the input to it, stop polling the plug until the lease ends
            self._suspend(index)
            return
        self._readable(index)

    def _suspend(self, index: int) -> None:
        """Engine thread: stop polling the plug of ``index``; the lease check gives it back."""
        with self._lease_lock:
            for pfd in self._fds.get(index, ()):
                if pfd not in self._suspended and self.engine.suspend_reader(pfd):
                    self._suspended.append(pfd)
            if self._lease_timer is None:
                self._lease_timer = self.engine.call_at(self.clock() + LEASE, self._lease_check)

    def _lease_check(self) -> None:
        """Engine thread: poll the plugs again once no thread served them for ``LEASE``
        seconds, or once a thread has sat in one wait for ``IDLE`` seconds (the next input
        then wakes the engine once, which leaves it to that thread again: no periodic
        wake-ups while a thread sits idle)."""
        with self._lease_lock:
            self._lease_timer = None
            now = self.clock()
            if self._serving:
                if now - self._serve_since < IDLE:
                    self._lease_timer = self.engine.call_at(now + LEASE, self._lease_check)
                    return
            elif now < self._lease_until:  # renewed by a later wait
                self._lease_timer = self.engine.call_at(self._lease_until, self._lease_check)
                return
            self._resume()

    def end_lease(self) -> None:
        """An application thread is about to wait for something only the engine can bring
        (a blocking connect, a full socket buffer): give the plugs back to the engine now
        instead of at the end of the lease."""
        self._lease_until = 0.0
        if self._suspended:
            with self._lease_lock:
                self._resume()

    def _resume(self) -> None:
        for pfd in self._suspended:
            self.engine.resume_reader(pfd)
        self._suspended.clear()

    def can_serve(self) -> bool:
        """Could the calling thread serve the plugs inline (see :meth:`serve_until`)?"""
        return bool(INLINE and self._fds) and not self._serving \
            and not self.engine.in_engine_thread()

    def serve_until(self, fd: int, events: int, deadline: float | None,
                    ready: Callable[[], bool] | None = None) -> bool | None:
        """Run to completion: an application thread about to block until ``fd`` has
        ``events`` (``select.POLL*``) serves this stack's plugs itself meanwhile, so the input
        it waits for is handled on its own thread (no thread hand-off, no lock contention).

        The engine leaves plug input to that thread while it serves and for a short lease
        (``LEASE``) afterwards: the first such input makes the engine stop polling the plugs
        (it keeps running timers and everything else) until the lease ends without a new
        wait; input is then at most about ``LEASE`` late, never lost (readiness is
        level-triggered).  ``ready``, if given, is asked after each input batch this thread
        served: True means ``fd`` is ready now (no poll needed to learn it).  Returns True
        when ``fd`` is ready, False at ``deadline`` (engine clock), None when this thread
        cannot serve inline (the engine thread, another thread already does, no plug): then
        block as usual."""
        if not (INLINE and self._fds) or self.engine.in_engine_thread():
            return None
        if not self._inline.acquire(False):
            # another thread serves: this one waits in the kernel, for input the serving
            # thread (or, once it is done, the engine without a lease) brings
            self._contended = True
            return None
        poller = None
        try:
            cached = self._poller
            if cached is None:
                by_fd: dict[int, int] = {}
                for index, fds in list(self._fds.items()):
                    for pfd in fds:
                        by_fd[pfd] = index
                poller = select.poll()
                for pfd in by_fd:
                    poller.register(pfd, select.POLLIN)
                cached = self._poller = (poller, by_fd, frozenset(by_fd.values()))
            poller, by_fd, self._served = cached
            clock = self.clock
            self._serve_since = clock()
            self._serving = True
            self.inline_waits += 1
            poller.register(fd, events)
            while True:
                if deadline is None:
                    got = poller.poll()
                else:
                    left = deadline - clock()
                    if left <= 0:
                        return False
                    got = poller.poll(left * 1000.0)
                mine = False
                served = False
                for rfd, _ in got:
                    if rfd == fd:
                        mine = True
                        continue
                    which = by_fd.get(rfd)
                    if which is None:
                        continue
                    served = True
                    if not self._readable(which):  # the plug went away or failed
                        poller.unregister(rfd)
                        del by_fd[rfd]
                        self._poller = None
                if mine or (served and ready is not None and ready()):
                    return True
                if not by_fd:
                    return None
        finally:
            if poller is not None:
                try:
                    poller.unregister(fd)
                except KeyError:
                    pass
            self._serving = False
            if self._contended:  # threads wait in the kernel: no lease, the engine serves
                self._contended = False
                self.end_lease()
            else:
                self._lease_until = self.clock() + LEASE
            self._inline.release()

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
