"""``ioth wire VNL1 VNL2 [impairments]``: join two networks through an impaired link.

The equivalent of vde-2's ``wirefilter``: frames read from VNL1 go to VNL2 (direction LR) and
frames read from VNL2 go to VNL1 (direction RL), each through the impairment core of
:mod:`ioth.net.plugs.impair`.  Every value may be ``LR:RL`` (``--loss 5:0``).  Runs until
interrupted (or ``--duration``) and prints what each direction did.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import Any

from ioth.errors import PlugClosedError
from ioth.net.plug import Plug
from ioth.net.plugs.impair import ImpairCore, ImpairDirection, ImpairError
from ioth.net.registry import open_plug
from ioth.runtime.engine import Engine, TimerHandle

_OPTIONS = ("loss", "burst", "delay", "dup", "reorder", "rate", "queue", "mtu", "noise", "seed")


def register(subparsers: Any) -> None:
    """Add the ``wire`` sub-command."""
    p = subparsers.add_parser("wire", help="join two VNLs through an impaired link (wirefilter)",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("vnl1", metavar="VNL1")
    p.add_argument("vnl2", metavar="VNL2")
    p.add_argument("--loss", help="percent of frames lost (LR:RL allowed)")
    p.add_argument("--burst", help="mean loss burst length in frames (Gilbert-Elliott)")
    p.add_argument("--delay", help="BASE[+JITTER[u|n]] in ms (us/ms/s suffixes)")
    p.add_argument("--dup", help="percent of frames duplicated")
    p.add_argument("--reorder", help="percent of frames that skip the delay line")
    p.add_argument("--nofifo", action="store_true", help="let jittered frames overtake")
    p.add_argument("--rate", help="bandwidth in bit/s (K/M/G suffixes; trailing B = bytes/s)")
    p.add_argument("--queue", help="frames the rate limiter may hold (default 1000)")
    p.add_argument("--mtu", help="largest Ethernet payload passed")
    p.add_argument("--noise", help="damaged bits per MiB")
    p.add_argument("--seed", help="random seed, for reproducible runs")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.set_defaults(func=run)


class Wire:
    """Two plugs joined through an :class:`ImpairCore`, served by an engine."""

    def __init__(self, a: Plug, b: Plug, core: ImpairCore, engine: Engine) -> None:
        self.a, self.b, self.core, self.engine = a, b, core, engine
        self._timer: TimerHandle | None = None
        self._timer_at: float | None = None
        self.error: str | None = None

    def start(self) -> None:
        """Watch both plugs."""
        for fd in self.a.filenos():
            self.engine.add_reader(fd, lambda: self._pump(self.a, self.core.lr))
        for fd in self.b.filenos():
            self.engine.add_reader(fd, lambda: self._pump(self.b, self.core.rl))
        self._rearm()

    def _pump(self, src: Plug, direction: ImpairDirection) -> None:
        now = self.engine.clock()
        try:
            for _ in range(16):
                frames = src.recv_frames(256)
                for frame in frames:
                    direction.submit(frame, now)
                if len(frames) < 256:
                    break
        except PlugClosedError as exc:
            self.error = f"{src.describe()}: {exc}"
            self.engine.stop(timeout=None)
            return
        self._release(now)

    def _release(self, now: float) -> None:
        for frame in self.core.lr.release(now):
            self.b.send(frame)
        for frame in self.core.rl.release(now):
            self.a.send(frame)
        self._rearm()

    def _tick(self) -> None:
        self._timer = None
        self._timer_at = None
        now = self.engine.clock()
        for plug, direction in ((self.a, self.core.lr), (self.b, self.core.rl)):
            at = plug.poll_at()
            if at is not None and at <= now:
                for frame in plug.recv_frames(256):
                    direction.submit(frame, now)
        self._release(now)

    def _rearm(self) -> None:
        times = [t for t in (self.core.next_deadline(), self.a.poll_at(), self.b.poll_at())
                 if t is not None]
        if not times:
            return
        when = min(times)
        if self._timer is not None and self._timer_at is not None and self._timer_at <= when:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.engine.call_at(when, self._tick)
        self._timer_at = when


def _stats_line(name: str, d: ImpairDirection) -> str:
    s = d.stats
    return (f"{name}: in {s.frames_in} out {s.frames_out} lost {s.lost} dup {s.duplicated} "
            f"reordered {s.reordered} queue-dropped {s.queue_dropped} "
            f"mtu-dropped {s.mtu_dropped} damaged {s.damaged}")


def run(args: argparse.Namespace) -> int:
    """Serve the wire until interrupted."""
    options: dict[str, Any] = {k: getattr(args, k) for k in _OPTIONS
                               if getattr(args, k) is not None}
    if args.nofifo:
        options["nofifo"] = "1"
    try:
        core = ImpairCore.from_options(options)
    except ImpairError as exc:
        raise ImpairError(str(exc).replace("impair: ", "--").replace("=", " ", 1)) from None
    a = open_plug(args.vnl1)
    try:
        b = open_plug(args.vnl2)
    except BaseException:
        a.close()
        raise
    engine = Engine(name="ioth-wire")
    wire = Wire(a, b, core, engine)
    wire.start()

    def stop(signum: int, frame: object) -> None:
        engine.stop(timeout=None)

    old = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    if args.duration is not None:
        engine.call_later(args.duration, lambda: engine.stop(timeout=None))
    print(f"ioth wire: {a.describe()} <-> {b.describe()}", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        engine.run()
    finally:
        engine.close()
        a.close()
        b.close()
        # the statistics are printed before the default handlers come back, so that a second
        # SIGTERM (kill of the process group and of the process) does not lose them
        print(f"ioth wire: {time.monotonic() - started:.1f} s", file=sys.stderr)
        print(_stats_line("LR", core.lr), file=sys.stderr)
        print(_stats_line("RL", core.rl), file=sys.stderr, flush=True)
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if wire.error:
        print(f"ioth wire: {wire.error}", file=sys.stderr)
        return 1
    return 0
