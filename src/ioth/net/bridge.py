"""A bridge joins two plugs on an :class:`~ioth.runtime.engine.Engine`: every frame received on
one is sent to the other (a two-port cable, like ``vde_plug VNL1 VNL2``).

When either plug raises :class:`~ioth.errors.PlugClosedError` the bridge stops (readers removed,
timers cancelled), records which side closed, and calls ``on_close``.  ``poll_at()`` of both plugs
is honoured after every call into them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass

from ioth.errors import PlugClosedError
from ioth.net.plug import Plug
from ioth.runtime.engine import Engine, TimerHandle


@dataclass
class DirectionCounters:
    """What crossed the bridge one way."""

    frames: int = 0
    bytes: int = 0
    dropped: int = 0  # frames the receiving side's send() refused

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dictionary."""
        return asdict(self)


class Bridge:
    """Forward frames both ways between plugs ``a`` and ``b``.

    Call :meth:`start` to register with the engine (from any thread), :meth:`stop` to detach.
    ``close_plugs`` closes both plugs when the bridge stops.
    """

    def __init__(self, engine: Engine, a: Plug, b: Plug,
                 on_close: Callable[[Bridge], object] | None = None,
                 batch: int = 64, close_plugs: bool = False) -> None:
        self.engine = engine
        self.a = a
        self.b = b
        self.on_close = on_close
        self.batch = batch
        self.close_plugs = close_plugs
        self.a_to_b = DirectionCounters()
        self.b_to_a = DirectionCounters()
        #: the plug that closed (None while running or when stopped by :meth:`stop`)
        self.closed_by: Plug | None = None
        self.error: PlugClosedError | None = None
        self.running = False
        self._done = threading.Event()
        self._timers: dict[int, TimerHandle] = {}
        self._fds: list[int] = []

    def start(self) -> Bridge:
        """Register both plugs' descriptors with the engine; returns self."""
        if self.running:
            return self
        self.running = True
        self._done.clear()
        for src in (self.a, self.b):
            pump = self._pump_a if src is self.a else self._pump_b
            for fd in src.filenos():
                self.engine.add_reader(fd, pump)
                self._fds.append(fd)
        # frames may already wait (a stream plug that decoded ahead, an impairment queue)
        self.engine.call_soon_threadsafe(self._poll_both)
        return self

    def _poll_both(self) -> None:
        self._schedule(self.a, 0)
        self._schedule(self.b, 1)

    def _pump_a(self) -> None:
        self._pump(self.a, self.b, self.a_to_b)

    def _pump_b(self) -> None:
        self._pump(self.b, self.a, self.b_to_a)

    def _pump(self, src: Plug, dst: Plug, counters: DirectionCounters) -> None:
        if not self.running:
            return
        try:
            frames = src.recv_frames(self.batch)
        except PlugClosedError as exc:
            self._finish(src, exc)
            return
        if frames:
            send = dst.send
            sent = 0
            nbytes = 0
            for frame in frames:
                if send(frame):
                    sent += 1
                    nbytes += len(frame)
            counters.frames += sent
            counters.bytes += nbytes
            counters.dropped += len(frames) - sent
        self._schedule(src, 0 if src is self.a else 1)
        if frames:
            self._schedule(dst, 0 if dst is self.a else 1)

    def _schedule(self, plug: Plug, index: int) -> None:
        """Arm (or move earlier) the timer for ``plug.poll_at()``."""
        if not self.running:
            return
        when = plug.poll_at()
        if when is None:
            return
        old = self._timers.get(index)
        if old is not None and not old.cancelled:
            if old.when <= when:
                return
            old.cancel()
        pump = self._pump_a if index == 0 else self._pump_b

        def due() -> None:
            if self._timers.get(index) is handle:
                del self._timers[index]
            pump()

        handle = self.engine.call_at(when, due)
        self._timers[index] = handle

    def _finish(self, plug: Plug, exc: PlugClosedError) -> None:
        self.closed_by = plug
        self.error = exc
        self.stop()
        if self.on_close is not None:
            self.on_close(self)

    def stop(self) -> None:
        """Detach from the engine (and close the plugs if ``close_plugs``)."""
        if not self.running:
            return
        self.running = False
        for fd in self._fds:
            self.engine.remove_reader(fd)
        self._fds.clear()
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        if self.close_plugs:
            self.a.close()
            self.b.close()
        self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the bridge stops; True if it did."""
        return self._done.wait(timeout)

    def counters(self) -> dict[str, dict[str, int]]:
        """Per-direction counters plus each plug's own counters."""
        return {
            "a_to_b": self.a_to_b.as_dict(),
            "b_to_a": self.b_to_a.as_dict(),
            "a": self.a.counters.as_dict(),
            "b": self.b.counters.as_dict(),
        }

    def summary(self) -> str:
        """One-line summary of the counters."""
        ab, ba = self.a_to_b, self.b_to_a
        return (f"{self.a.vnl} -> {self.b.vnl}: {ab.frames} frames {ab.bytes} bytes "
                f"{ab.dropped} dropped; {self.b.vnl} -> {self.a.vnl}: {ba.frames} frames "
                f"{ba.bytes} bytes {ba.dropped} dropped")
