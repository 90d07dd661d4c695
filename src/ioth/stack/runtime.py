"""Glue between a :class:`~ioth.stack.stack.Stack` and an :class:`~ioth.runtime.engine.Engine`.

The engine thread reads plugs and fires the stack's single timer; application threads run
protocol code directly under the stack's lock (core locking) and flush queued frames to the plugs
themselves.  One engine can serve many stacks (the default: a process-wide shared engine started
on first use), or a stack can own an engine thread ("one thread, one node").

An application thread about to block on an ioth socket serves its stack's plugs and timers
itself meanwhile (:meth:`StackRuntime.serve_until`) and keeps them for a short lease after;
a timerfd that the end of each such wait pushes forward gives them back to the engine when the
lease ends, so the engine does not wake while the thread keeps coming back.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import select
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ioth.errors import PlugClosedError
from ioth.net.plug import Plug
from ioth.runtime.engine import Engine, TimerHandle

if TYPE_CHECKING:
    from ioth.stack.stack import Stack

log = logging.getLogger(__name__)
_get_ident = threading.get_ident

RECV_BATCH = 64
MAX_BATCHES = 16
#: 1: an application thread about to block on an ioth socket serves its stack's plugs itself
#: (StackRuntime.serve_until); 0: it always waits for the engine thread
INLINE = 1
#: seconds the plugs stay with the application thread after an inline wait (see serve_until)
LEASE = 0.002
#: seconds a thread may sit in one inline wait before the engine polls the plugs again (used
#: only without a guard timer descriptor, see GUARD)
IDLE = 0.05
#: 1: the lease is watched by a timerfd that each inline wait's end pushes forward (the engine
#: wakes only when a lease really ends); 0: by an engine timer that re-checks every LEASE
GUARD = 1
#: the guard is pushed forward only when a lease's end moved more than this many microseconds
#: past the guard's expiry (hysteresis: one settime per this much of a holder's activity; the
#: guard then expires at least LEASE minus this after the end of a wait: a holder that comes
#: back sooner never lets it fire).  Less than LEASE.  1500 measured 0.15-0.19 instead of
#: 0.21-0.23 settime per round trip (rr-i2i), but in cps-i2i the guard then fired during or
#: between the waits of a connection: more engine wake-ups and GIL futexes, no gain
GUARD_SLACK_US = 1000
#: 1: the descriptor an inline wait waited for stays registered in the waits' poll object
#: until a wait for another one (no register/unregister per wait); 0: unregistered at the end
#: of each wait
KEEP_WAITED = 1
#: 1: while a thread serves the plugs inline (or holds the lease) it also fires the stack's
#: timers, and the engine arms no timer the holder or the guard fires first; 0: the engine
#: always does
HOLD_TIMERS = 1
#: 1: a plug that declares ``rx_quiet`` (one frame per datagram, nothing held back: a frame
#: left unread keeps its descriptor readable) and whose last full read found a single frame is
#: read one frame per wake-up, without probing for a second one (a datagram plug's FIONREAD);
#: readiness is level-triggered, so whatever is left wakes the next poll of the plug (the
#: serving thread's next turn or next wait, or the engine when the lease ends); 0: every
#: wake-up reads until the plug says there is no more
QUIET_READ = 1
#: in quiet mode, every this many reads is a full read again (to notice a backlog, which ends
#: quiet mode) ...
QUIET_PROBE = 8
#: ... and each full read that finds a single frame again doubles the stretch of quiet reads
#: that follows, up to this many reads (a full read that finds more starts again from
#: QUIET_PROBE)
QUIET_PROBE_MAX = 64
_INF = float("inf")


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


class _TimeSpec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _ITimerSpec(ctypes.Structure):
    _fields_ = [("it_interval", _TimeSpec), ("it_value", _TimeSpec)]


class _TimerFd:
    """A one-shot CLOCK_MONOTONIC timerfd (through libc: ``os`` has none before Python 3.13);
    :meth:`arm` (re)sets it ``delay`` seconds ahead, the descriptor turns readable when it
    expires and :meth:`clear` reads the expiration count."""

    _libc: Any = None
    # timerfd_settime without argtypes: the arguments (int, int, a byref, None) go through
    # ctypes' default conversions, 0.7 us less per call than with four declared argtypes
    _settime_fn: Any = None

    def __init__(self) -> None:
        libc = _TimerFd._libc
        if libc is None:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.timerfd_create.argtypes = [ctypes.c_int, ctypes.c_int]
            libc.timerfd_create.restype = ctypes.c_int
            _TimerFd._settime_fn = ctypes.CFUNCTYPE(ctypes.c_int, use_errno=True)(
                ("timerfd_settime", libc))
            _TimerFd._libc = libc
        fd = libc.timerfd_create(1, os.O_NONBLOCK | os.O_CLOEXEC)  # CLOCK_MONOTONIC
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        self.fd: int = fd
        self._settime = _TimerFd._settime_fn
        self._spec = _ITimerSpec()
        self._ref = ctypes.byref(self._spec)

        self._delay = -1.0

    def arm(self, delay: float) -> None:
        """Expire ``delay`` seconds from now (replacing any earlier setting)."""
        if delay != self._delay:
            self._delay = delay
            ns = max(1000, int(delay * 1e9))  # (0 would disarm it)
            value = self._spec.it_value
            value.tv_sec, value.tv_nsec = divmod(ns, 1_000_000_000)
        self._settime(self.fd, 0, self._ref, None)

    def clear(self) -> None:
        """Consume an expiration (the descriptor stops being readable)."""
        try:
            os.read(self.fd, 8)
        except OSError:
            pass

    def close(self) -> None:
        """Release the descriptor."""
        os.close(self.fd)


def _timerfd() -> _TimerFd | None:
    """A timerfd, or None where there is none (then the lease uses engine timers)."""
    try:
        return _TimerFd()
    except (OSError, AttributeError):
        return None


class _PollSet:
    """The inline waits' poll object: the plug descriptors (-> interface) and, with
    ``KEEP_WAITED``, the descriptor the last wait waited for (still registered)."""

    __slots__ = ("by_fd", "events", "fd", "ifaces", "poller", "wake")

    def __init__(self, by_fd: dict[int, int], wake: int) -> None:
        self.poller = select.poll()
        for pfd in by_fd:
            self.poller.register(pfd, select.POLLIN)
        self.poller.register(wake, select.POLLIN)
        self.wake = wake  # (the runtime's wake pipe: see StackRuntime.stop_serving)
        self.by_fd = by_fd
        self.ifaces = frozenset(by_fd.values())
        self.fd = -1  # the waited descriptor registered (-1: none)
        self.events = 0


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
        self._timed: set[int] = set()  # interfaces whose plug has its own poll_at
        # interfaces whose plug may be read in quiet mode (QUIET_READ) -> quiet reads left
        # before the next full read (0: the next read is a full one), and the length of the
        # next stretch of quiet reads
        self._quiet: dict[int, int] = {}
        self._quiet_run: dict[int, int] = {}
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
        self._lease_timer: TimerHandle | None = None  # (without a guard descriptor)
        self._held = False  # a lease is held: a thread serves, or served and may come back
        self._holder = 0  # the serving thread's ident (while _serving)
        # by when the lease holder looks at the timers again (its wait's end while it serves,
        # the guard's expiry between waits): the engine arms no timer due at or after it
        self._holder_wake = _INF
        self._due: float | None = None  # the stack's next deadline, as of the last flush
        self._guard: _TimerFd | None = None  # expires when a lease ends (see serve_until)
        self._guard_at = 0.0  # when it expires (0: disarmed)
        self._guard_tried = False
        self._hold = False  # HOLD_TIMERS in force (needs the guard)
        self.inline_waits = 0
        # stop_serving: no inline wait starts any more, one in progress ends; the pipe that
        # wakes it (in every wait's poll set, made with the first) and whether the thread
        # still inside closes it when it leaves (see _close_wake)
        self._closing = False
        self._wake: tuple[int, int] | None = None
        self._wake_close = False
        self._pid = os.getpid()  # (a forked child's copy neither waits nor wakes anyone)
        # the inline waits' poll set of the plug descriptors (-> interface), rebuilt after
        # attach/detach; used by the one thread holding _inline
        self._poller: _PollSet | None = None

    # -- plugs ----------------------------------------------------------------------------
    def attach(self, index: int, plug: Plug) -> None:
        """Start serving ``plug`` as the medium of interface ``index``."""
        self.plugs[index] = plug
        if type(plug).poll_at is Plug.poll_at:
            self._timed.discard(index)
        else:
            self._timed.add(index)
        self._quiet_run.pop(index, None)
        if QUIET_READ and getattr(plug, "rx_quiet", False):
            self._quiet[index] = 0
        else:
            self._quiet.pop(index, None)
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
        self._quiet.pop(index, None)
        self._quiet_run.pop(index, None)
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
                quiet = self._quiet.get(index)  # (None: the plug has no quiet mode)
                if quiet:
                    # quiet mode: one frame, no probe for another (see QUIET_READ)
                    self._quiet[index] = quiet - 1
                    frames = plug.recv_frames(1)
                    if frames:
                        core.input_frames(index, frames, now)
                else:
                    count = 0
                    for _ in range(MAX_BATCHES):
                        frames = plug.recv_frames(RECV_BATCH)
                        if not frames:
                            break
                        count += len(frames)
                        now = self.clock()
                        # (input_frames: what input_frame does frame by frame inside a batch,
                        # the checksums of the list summed together)
                        core.input_frames(index, frames, now)
                        if len(frames) < RECV_BATCH:
                            break
                    if quiet is not None and count:
                        if count == 1:  # (quiet mode, for longer each time)
                            run = self._quiet_run.get(index, QUIET_PROBE)
                            self._quiet[index] = run - 1
                            self._quiet_run[index] = min(run * 2, QUIET_PROBE_MAX)
                        else:
                            self._quiet_run[index] = QUIET_PROBE
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
            if index in self._timed:
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
        """Engine thread: stop polling the plug of ``index``; the lease's end gives it back
        (the guard timer descriptor, armed at the end of every inline wait, or without one a
        lease-check timer)."""
        with self._lease_lock:
            for pfd in self._fds.get(index, ()):
                if pfd not in self._suspended and self.engine.suspend_reader(pfd):
                    self._suspended.append(pfd)
            if self._guard is None and self._lease_timer is None:
                self._lease_timer = self.engine.call_at(self.clock() + LEASE, self._lease_check)

    def _lease_check(self) -> None:
        """Engine thread, without a guard descriptor: poll the plugs again once no thread
        served them for ``LEASE`` seconds, or once a thread has sat in one wait for ``IDLE``
        seconds (the next input then wakes the engine once, which leaves it to that thread
        again: no periodic wake-ups while a thread sits idle)."""
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
            self._give_back()
        self._arm_engine_timer()

    def _guard_fired(self) -> None:
        """Engine thread: the guard descriptor expired, ``LEASE`` seconds after the end of an
        inline wait that no later wait pushed forward.  A thread serving now re-arms it when
        its wait ends; a lease renewed meanwhile gets the rest of its time; otherwise the
        plugs and timers come back to the engine."""
        guard = self._guard
        if guard is None:
            return
        guard.clear()
        with self._lease_lock:
            self._guard_at = 0.0  # (written before _serving is read: see _lease_ends)
            if self._serving:
                return
            now = self.clock()
            if now < self._lease_until:
                guard.arm(self._lease_until - now)
                self._guard_at = self._holder_wake = self._lease_until
                return
            self._give_back()
        self._arm_engine_timer()

    def _give_back(self) -> None:
        """_lease_lock held: the lease is over: the engine polls the plugs (and, after
        :meth:`_arm_engine_timer`, runs the timers) again."""
        self._held = False
        self._lease_until = 0.0
        self._holder_wake = _INF
        for pfd in self._suspended:
            self.engine.resume_reader(pfd)
        self._suspended.clear()

    def _arm_engine_timer(self) -> None:
        """After a lease ended: the engine fires the stack's timers again."""
        stack = self.stack
        with stack.lock:
            if not stack.closed:
                self._arm(stack.core.next_deadline())

    def end_lease(self) -> None:
        """An application thread is about to wait for something only the engine can bring
        (a blocking connect, a full socket buffer): give the plugs and timers back to the
        engine now instead of at the end of the lease."""
        self._lease_until = 0.0
        if self._suspended or self._held:
            with self._lease_lock:
                self._give_back()
            self._arm_engine_timer()

    def _lease_ends(self, now: float) -> None:
        """The serving thread, at the end of an uncontended inline wait: the lease runs for
        ``LEASE`` more seconds; make sure the guard expires by then (re-armed only when the
        lease's end moved more than ``GUARD_SLACK_US`` past its expiry: one settime per slack
        at most; a guard that expires before a renewed lease ends is re-armed by the engine
        for the rest, see :meth:`_guard_fired`)."""
        self._lease_until = now + LEASE
        self._held = True
        self._serving = False  # (written before _guard_at is read: see _guard_fired)
        guard = self._guard
        if guard is not None:
            if self._guard_at < now + LEASE - GUARD_SLACK_US * 1e-6:
                guard.arm(LEASE)
                self._guard_at = now + LEASE
            self._holder_wake = self._guard_at
        elif self._suspended and self._lease_timer is None:
            with self._lease_lock:
                if self._lease_timer is None:
                    self._lease_timer = self.engine.call_at(now + LEASE, self._lease_check)

    def _start_guard(self) -> None:
        """First inline wait: create the guard descriptor (GUARD=1 and a timerfd exists)."""
        self._guard_tried = True
        if not GUARD:
            return
        guard = _timerfd()
        if guard is None:
            return
        try:
            self.engine.add_reader(guard.fd, self._guard_fired)
        except (OSError, ValueError):
            guard.close()
            return
        self._guard = guard
        self._hold = bool(HOLD_TIMERS)

    def can_serve(self) -> bool:
        """Could the calling thread serve the plugs inline (see :meth:`serve_until`)?"""
        if not (INLINE and self._fds) or self._serving or self._closing:
            return False
        ident = self.engine._ident
        return _get_ident() != ident if ident is not None \
            else not self.engine.in_engine_thread()

    def serve_until(self, fd: int, events: int, deadline: float | None,
                    ready: Callable[[], bool] | None = None) -> bool | None:
        """Run to completion: an application thread about to block until ``fd`` has
        ``events`` (``select.POLL*``) serves this stack's plugs itself meanwhile, so the input
        it waits for is handled on its own thread (no thread hand-off, no lock contention).

        The engine leaves plug input to that thread while it serves and for a short lease
        (``LEASE``) afterwards: the first such input makes the engine stop polling the plugs
        until the lease ends without a new wait; input is then at most about ``LEASE`` late,
        never lost (readiness is level-triggered).  A quiet read (``QUIET_READ``) takes one
        frame of a plug and leaves any other to the next poll of the plug under the same rule:
        this wait's next turn if it goes on, the next wait, or the engine when the lease ends.
        The lease's end is watched by a timerfd (the guard) that the end of each wait pushes
        forward, so the engine wakes only when a lease really ends. With ``HOLD_TIMERS`` the
        thread also fires the stack's timers while it serves (its poll ends at the next
        deadline) and the engine arms no timer that the holder reaches first; a timer that falls
        due between two waits fires at the next wait or when the lease ends (at most about
        ``LEASE`` late).

        ``ready``, if given, is asked after each input batch or timer this thread served:
        True means ``fd`` is ready now (no poll needed to learn it).  Returns True when ``fd``
        is ready, False at ``deadline`` (engine clock), None when this thread cannot serve
        inline (the engine thread, another thread already does, no plug): then block as
        usual."""
        me = _get_ident()
        engine = self.engine
        if not (INLINE and self._fds) or self._closing or (
                me == engine._ident if engine._ident is not None
                else engine.in_engine_thread()):
            return None
        if not self._inline.acquire(False):
            # another thread serves: this one waits in the kernel, for input the serving
            # thread (or, once it is done, the engine without a lease) brings
            self._contended = True
            return None
        if self._closing:  # (stop_serving ran meanwhile)
            self._inline.release()
            return None
        ps = None
        try:
            if not self._guard_tried:
                self._start_guard()
            ps = self._poller
            if ps is None:
                by_fd: dict[int, int] = {}
                for index, fds in list(self._fds.items()):
                    for pfd in fds:
                        by_fd[pfd] = index
                if self._wake is None:
                    self._wake = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
                ps = self._poller = _PollSet(by_fd, self._wake[0])
            poller = ps.poller
            by_fd = ps.by_fd
            self._served = ps.ifaces
            clock = self.clock
            if self._guard is None:
                self._serve_since = clock()  # (for _lease_check)
            self._holder = me
            self._serving = True
            self._held = True
            hold = self._hold
            self.inline_waits += 1
            if ps.fd != fd or ps.events != events:
                # (a descriptor left registered by an earlier wait goes first: a closed one
                # would make every poll return at once)
                if ps.fd >= 0:
                    try:
                        poller.unregister(ps.fd)
                    except KeyError:
                        pass
                poller.register(fd, events)
                ps.fd = fd
                ps.events = events
            due = None
            polled = False
            while True:
                end = deadline
                if hold:
                    due = self._due
                    if due is not None and (end is None or due < end):
                        end = due
                self._holder_wake = _INF if end is None else end
                if hold and self._due != due:
                    # another thread's flush set a deadline after this thread read it, and may
                    # have seen the previous wake-up time (then it left the timer to this
                    # thread): read it again (_holder_wake is written before _due is re-read)
                    continue
                if end is None:
                    got = poller.poll()
                else:
                    left = end - clock()
                    if left <= 0:
                        if deadline is not None and end >= deadline:
                            if polled:
                                return False
                            # a wait already over still polls once (without waiting) before
                            # it gives up: the input the caller may be waiting for is served
                            # (as a kernel socket returns what it holds at a tiny timeout),
                            # and a thread looping on such waits, which renew the lease,
                            # cannot keep the plugs from everyone
                            left = 0.0
                        else:
                            self._fire_inline()  # a timer fell due
                            if ready is not None and ready():
                                return True
                            continue
                    got = poller.poll(left * 1000.0)
                    polled = True
                    if not got:
                        if deadline is not None and end >= deadline:
                            return False
                        continue  # (a timer: fired at the next turn)
                mine = False
                served = False
                for rfd, _ in got:
                    if rfd == fd:
                        mine = True
                        continue
                    which = by_fd.get(rfd)
                    if which is None:
                        if rfd == ps.wake:
                            if self._closing:
                                return None  # the stack closes (see stop_serving)
                            try:
                                os.read(rfd, 64)  # (written by a forked child's close)
                            except OSError:
                                pass
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
            if ps is not None and not KEEP_WAITED and ps.fd >= 0:
                try:
                    ps.poller.unregister(ps.fd)
                except KeyError:
                    pass
                ps.fd = -1
            if self._contended:  # threads wait in the kernel: no lease, the engine serves
                self._contended = False
                self._serving = False
                self.end_lease()
            else:
                guard = self._guard
                if guard is not None:  # (_lease_ends, inline: one call less per wait)
                    now = self.clock()
                    self._lease_until = now + LEASE
                    self._held = True
                    self._serving = False  # (written before _guard_at is read: _guard_fired)
                    if self._guard_at < now + LEASE - GUARD_SLACK_US * 1e-6:
                        guard.arm(LEASE)
                        self._guard_at = now + LEASE
                    self._holder_wake = self._guard_at
                else:
                    self._lease_ends(self.clock())
            self._inline.release()
            if self._wake_close:
                self._close_wake()

    def _fire_inline(self) -> None:
        """The serving thread: run the stack's due timers (as the engine's timer would)."""
        stack = self.stack
        with stack.lock:
            if stack.closed:
                self._due = None
                return
            stack.core.poll(self.clock())
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
        self._due = when
        if when is not None and (self._timer_when is None or when < self._timer_when):
            if self._held and self._hold and (
                    not self._serving or when >= self._holder_wake
                    or self._holder == _get_ident()):
                # the lease holder fires it: the serving thread ends its wait by then (or
                # recomputes its wait after this flush); between two waits, the next wait
                # or the guard, at most about LEASE late
                return
            self._arm(when)

    def _arm(self, when: float | None) -> None:
        """Stack lock held: the engine fires the stack's timers at ``when``."""
        self._due = when
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

    def stop_serving(self, timeout: float = 5.0) -> None:
        """The stack closes (:meth:`close` calls this first, after the stack closed its
        sockets): no inline wait starts from now on, and a wait in progress ends (its
        ``serve_until`` returns None: the caller blocks as usual), before the plugs it polls
        are closed (other files could take their numbers, and a thread descheduled before its
        poll would poll those forever).  Waits up to ``timeout`` seconds for the serving
        thread to leave; if it has not (or is the calling thread), the wake pipe stays open
        and readable until it does."""
        self._closing = True
        if os.getpid() != self._pid:
            return  # (a forked child: the pipe and the lock state are the parent's)
        wake = self._wake
        if wake is not None:
            try:
                os.write(wake[1], b"x")
            except OSError:
                pass
        if self._serving and self._holder == _get_ident():
            return
        if self._inline.acquire(True, timeout):
            self._inline.release()

    def _close_wake(self) -> None:
        """Close the wake pipe unless a thread is inside an inline wait (then that thread
        does, as it leaves)."""
        self._wake_close = True
        if os.getpid() != self._pid:  # (a forked child: no thread of it is inside a wait)
            wake, self._wake = self._wake, None
            for wfd in wake or ():
                os.close(wfd)
            return
        if not self._inline.acquire(False):
            return
        try:
            wake, self._wake = self._wake, None
            self._wake_close = False
            if wake is not None:
                for wfd in wake:
                    os.close(wfd)
        finally:
            self._inline.release()

    def close(self) -> None:
        """Detach every plug (closing them) and stop an owned engine."""
        if not self._closing:
            self.stop_serving()
        for index in list(self.plugs):
            plug = self.detach(index)
            if plug is not None:
                plug.close()
        if self._timer is not None:
            self._timer.cancel()
        guard = self._guard
        if guard is not None:
            self._guard = None
            self.engine.remove_reader(guard.fd)
            guard.close()
        self._close_wake()
        if self.own_engine:
            self.engine.close()
