"""``impair://OPTIONS{nested}``: link impairment (the wirefilter of ioth) as a wrapper plug.

Syntax: options as ``key=value`` separated by ``/``, either bare or in brackets::

    impair://loss=2/delay=20+5/dup=1/rate=10M/mtu=1400{vde:///tmp/sw}
    impair://[loss=5:0/burst=4/seed=7]{udp://5000->127.0.0.1:5001}

Directions: ``LR`` is what this side sends (``send`` -> nested plug), ``RL`` is what it receives
(nested plug -> ``recv_frames``).  Every per-direction value may be written ``LR:RL``
(``loss=2:0`` loses 2 % of sent frames and none of the received ones); a single value applies to
both directions.

=========  ========================================================================  =========
key        meaning                                                                   default
=========  ========================================================================  =========
loss       percentage of frames lost                                                 0
burst      mean length of loss bursts in frames (Gilbert-Elliott two-state model;    0
           0 or 1 = independent losses); the long-run loss rate stays ``loss``
delay      ``BASE[+JITTER[u|n]]``: delay and jitter, in ms unless suffixed ``us``,   0
           ``ms`` or ``s``; jitter uniform in [-J, +J] (``u``, default) or normal
           with standard deviation J (``n``); delays never go below 0
dup        percentage of frames duplicated                                           0
reorder    percentage of frames that skip the delay line (so they overtake)         0
nofifo     flag: jittered frames may overtake each other (otherwise FIFO is kept)   off
rate       bandwidth in bit/s, suffixes K, M, G (x1000); a trailing ``B`` means       unlimited
           bytes/s (``rate=1MB``); frames queue behind the serialisation of earlier
           ones
queue      frames the rate limiter may hold; beyond that frames are dropped         1000
mtu        largest Ethernet payload; bigger frames are dropped                       unlimited
noise      damaged bits per MiB of traffic (bits flipped at random positions)       0
seed       seed of the random generator (one per plug), for reproducible runs       random
=========  ========================================================================  =========

Every drop is counted (``ImpairDirection.stats``).  Values change at run time with
:meth:`ImpairPlug.set` (same keys, same value syntax, numbers are in the units above).

Frames held back (delay, rate) are released through the plug API's ``poll_at()``: the owner calls
``recv_frames`` at that time, which also hands due outgoing frames to the nested plug.  The
timing logic lives in :class:`ImpairCore`, a sans-IO object driven by ``now``.
"""

from __future__ import annotations

import heapq
import math
import random
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

from ioth.errors import IothUserError, VNLError
from ioth.net.plug import ETH_HLEN, MIN_FRAME, Plug, WrapperPlug
from ioth.net.vnl import VNL, Style, parse_options

BITS_PER_MIB = 8 * 1048576


class ImpairError(IothUserError):
    """An impairment parameter is invalid."""


@dataclass
class DirectionParams:
    """Impairment of one direction (units: percent, seconds, bit/s, frames, bytes)."""

    loss: float = 0.0
    burst: float = 0.0
    delay: float = 0.0
    jitter: float = 0.0
    normal: bool = False
    dup: float = 0.0
    reorder: float = 0.0
    nofifo: bool = False
    rate: float = 0.0
    queue: int = 1000
    mtu: int = 0
    noise: float = 0.0


@dataclass
class DirectionStats:
    """What one direction did to the frames it was given."""

    frames_in: int = 0
    frames_out: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    queue_dropped: int = 0
    mtu_dropped: int = 0
    damaged: int = 0


# -- parameter parsing ------------------------------------------------------------------------

_NUM = r"(\d+(?:\.\d*)?|\.\d+)"
_DELAY_RE = re.compile(rf"^{_NUM}(us|ms|s)?(?:\+{_NUM}(us|ms|s)?([unUN])?)?$")
_RATE_RE = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)([kKmMgG]?)(bit|bps|b|B)?$")
_UNITS = {None: 1e-3, "ms": 1e-3, "us": 1e-6, "s": 1.0}
_PER_DIRECTION = ("loss", "burst", "delay", "dup", "reorder", "nofifo", "rate", "queue", "mtu",
                  "noise")
KEYS = (*_PER_DIRECTION, "seed")


def _percent(key: str, text: str) -> float:
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        raise ImpairError(f"impair: {key}={text!r} is not a percentage") from None
    if not 0.0 <= value <= 100.0:
        raise ImpairError(f"impair: {key}={text!r} is not within 0..100")
    return value


def _apply(params: DirectionParams, key: str, text: str) -> DirectionParams:
    """``params`` with ``key`` set from the text of one direction's value."""
    text = text.strip()
    if key in ("loss", "dup", "reorder"):
        new = replace(params)
        setattr(new, key, _percent(key, text))
        return new
    if key in ("burst", "noise"):
        try:
            value = float(text)
        except ValueError:
            raise ImpairError(f"impair: {key}={text!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise ImpairError(f"impair: {key}={text!r} is not a finite number >= 0")
        new = replace(params)
        setattr(new, key, value)
        return new
    if key == "delay":
        m = _DELAY_RE.match(text)
        if not m:
            raise ImpairError(f"impair: delay={text!r} is not BASE[+JITTER[u|n]] (ms, us, s)")
        base = float(m.group(1)) * _UNITS[m.group(2)]
        jitter = float(m.group(3)) * _UNITS[m.group(4)] if m.group(3) else 0.0
        normal = (m.group(5) or "u").lower() == "n"
        return replace(params, delay=base, jitter=jitter, normal=normal)
    if key == "rate":
        m = _RATE_RE.match(text)
        if not m:
            raise ImpairError(f"impair: rate={text!r} is not a bandwidth like 10M or 1MB")
        value = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2).lower()]
        if m.group(3) == "B":
            value *= 8
        return replace(params, rate=value)
    if key in ("queue", "mtu"):
        try:
            number = int(text, 0)
        except ValueError:
            raise ImpairError(f"impair: {key}={text!r} is not an integer") from None
        if number < 0 or (key == "queue" and number == 0):
            raise ImpairError(f"impair: {key}={text!r} is out of range")
        new = replace(params)
        setattr(new, key, number)
        return new
    if key == "nofifo":
        on = text.lower() in ("", "1", "yes", "on", "true")
        if not on and text.lower() not in ("0", "no", "off", "false"):
            raise ImpairError(f"impair: nofifo={text!r} is not a boolean")
        return replace(params, nofifo=on)
    raise ImpairError(f"impair: unknown parameter {key!r}")


def _as_text(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def parse_params(options: Mapping[str, Any], lr: DirectionParams | None = None,
                 rl: DirectionParams | None = None
                 ) -> tuple[DirectionParams, DirectionParams, int | None]:
    """Apply ``options`` (key -> value text, ``LR:RL`` allowed) to copies of ``lr``/``rl``.

    Returns the new (LR, RL) parameters and the seed (None if not given).
    """
    lr = replace(lr) if lr is not None else DirectionParams()
    rl = replace(rl) if rl is not None else DirectionParams()
    seed: int | None = None
    for key, raw in options.items():
        text = _as_text(key, raw)
        if key == "seed":
            try:
                seed = int(text, 0)
            except ValueError:
                raise ImpairError(f"impair: seed={text!r} is not an integer") from None
            continue
        if key not in _PER_DIRECTION:
            raise ImpairError(f"impair: unknown parameter {key!r} (known: {', '.join(KEYS)})")
        if ":" in text:
            left, _, right = text.partition(":")
            lr = _apply(lr, key, left)
            rl = _apply(rl, key, right)
        else:
            lr = _apply(lr, key, text)
            rl = _apply(rl, key, text)
    return lr, rl, seed


# -- the sans-IO core -------------------------------------------------------------------------

class ImpairDirection:
    """One direction of an impaired link.  Sans-IO: every call takes ``now`` (seconds)."""

    def __init__(self, params: DirectionParams, rng: random.Random) -> None:
        self.params = params
        self.rng = rng
        self.stats = DirectionStats()
        self._bad = False  # Gilbert-Elliott state
        self._tx_free_at = -math.inf
        self._backlog: deque[float] = deque()  # end times of frames in the rate limiter
        self._last_release = -math.inf
        self._heap: list[tuple[float, int, bytes]] = []
        self._seq = 0

    def _lose(self) -> bool:
        p = self.params
        if p.loss <= 0:
            return False
        rnd = self.rng.random
        if p.burst <= 1.0:
            return rnd() * 100.0 < p.loss
        if p.loss >= 100.0:
            return True
        r = 1.0 / p.burst  # bad -> good
        q = p.loss / 100.0
        g2b = min(1.0, q * r / (1.0 - q))  # stationary P(bad) = g2b / (g2b + r) = loss
        if self._bad:
            if rnd() < r:
                self._bad = False
        elif rnd() < g2b:
            self._bad = True
        return self._bad

    def _damage(self, frame: bytes) -> bytes:
        lam = self.params.noise * len(frame) * 8 / BITS_PER_MIB
        # Poisson(lam) by inversion; lam is small (a few bits per frame at most)
        rnd = self.rng.random
        flips, p = 0, math.exp(-lam)
        cumulative, u = p, rnd()
        while u > cumulative and flips < 64:
            flips += 1
            p *= lam / flips
            cumulative += p
        if not flips:
            return frame
        buf = bytearray(frame)
        nbits = len(buf) * 8
        for _ in range(flips):
            bit = self.rng.randrange(nbits)
            buf[bit >> 3] ^= 0x80 >> (bit & 7)
        self.stats.damaged += 1
        return bytes(buf)

    def _schedule(self, frame: bytes, now: float) -> None:
        p = self.params
        stats = self.stats
        t = now
        if p.rate > 0:
            backlog = self._backlog
            while backlog and backlog[0] <= now:
                backlog.popleft()
            if len(backlog) >= p.queue:
                stats.queue_dropped += 1
                return
            start = self._tx_free_at if self._tx_free_at > now else now
            t = self._tx_free_at = start + len(frame) * 8 / p.rate
            backlog.append(t)
        if p.reorder > 0 and self.rng.random() * 100.0 < p.reorder:
            release = t
            stats.reordered += 1
        else:
            delay = p.delay
            if p.jitter > 0:
                if p.normal:
                    delay = self.rng.gauss(delay, p.jitter)
                else:
                    delay += self.rng.uniform(-p.jitter, p.jitter)
                delay = max(delay, 0.0)
            release = t + delay
            if not p.nofifo:
                if release < self._last_release:
                    release = self._last_release
                self._last_release = release
        self._seq += 1
        heapq.heappush(self._heap, (release, self._seq, frame))

    def submit(self, frame: bytes, now: float) -> None:
        """Give one frame to this direction at time ``now``."""
        p = self.params
        stats = self.stats
        stats.frames_in += 1
        if p.mtu and len(frame) - ETH_HLEN > p.mtu:
            stats.mtu_dropped += 1
            return
        if self._lose():
            stats.lost += 1
            return
        copies = 1
        if p.dup > 0 and self.rng.random() * 100.0 < p.dup:
            copies = 2
            stats.duplicated += 1
        for _ in range(copies):
            self._schedule(self._damage(frame) if p.noise > 0 else frame, now)

    def release(self, now: float) -> list[bytes]:
        """Frames whose time has come, in release order."""
        heap = self._heap
        out: list[bytes] = []
        while heap and heap[0][0] <= now:
            out.append(heapq.heappop(heap)[2])
        self.stats.frames_out += len(out)
        return out

    def next_deadline(self) -> float | None:
        """When the next held frame is due (None if none is held)."""
        return self._heap[0][0] if self._heap else None

    def held(self) -> int:
        """Frames held back right now."""
        return len(self._heap)


class ImpairCore:
    """Both directions of an impaired link and their shared random generator."""

    def __init__(self, lr: DirectionParams | None = None, rl: DirectionParams | None = None,
                 seed: int | None = None) -> None:
        self.rng = random.Random(seed)
        self.lr = ImpairDirection(lr or DirectionParams(), self.rng)
        self.rl = ImpairDirection(rl or DirectionParams(), self.rng)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> ImpairCore:
        """Build from option texts (see the module docstring)."""
        lr, rl, seed = parse_params(options)
        return cls(lr, rl, seed)

    def set(self, **params: Any) -> None:
        """Change parameters at run time (``set(loss="5:0", delay=20)``); validated first."""
        lr, rl, seed = parse_params(params, self.lr.params, self.rl.params)
        self.lr.params, self.rl.params = lr, rl
        if seed is not None:
            self.rng.seed(seed)

    def next_deadline(self) -> float | None:
        """The earliest deadline of both directions."""
        a, b = self.lr.next_deadline(), self.rl.next_deadline()
        if a is None:
            return b
        return a if b is None or a <= b else b


def describe_params(p: DirectionParams) -> str:
    """A short text of the non-default values of ``p``."""
    default = DirectionParams()
    parts = [f"{f.name}={getattr(p, f.name)}" for f in fields(p)
             if getattr(p, f.name) != getattr(default, f.name)]
    return " ".join(parts) or "none"


# -- the plug ---------------------------------------------------------------------------------

class ImpairPlug(WrapperPlug):
    """A wrapper that loses, delays, duplicates, reorders, rate-limits and damages frames."""

    STYLE: ClassVar[Style] = "wrapper"
    KEYS: ClassVar[tuple[str, ...]] = KEYS

    def __init__(self, inner: Plug, core: ImpairCore, vnl: str = "",
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(inner, vnl, inner.mtu)
        self.core = core
        self.clock = clock
        self._ready: deque[bytes] = deque()

    @classmethod
    def from_vnl(cls, vnl: VNL, **kwargs: Any) -> ImpairPlug:
        """Open ``impair://key=val/...{nested}`` (or ``impair://[key=val/...]{nested}``)."""
        from ioth.net.registry import open_plug

        options = dict(vnl.options)
        if vnl.address:
            more, _ = parse_options(vnl.address, KEYS, vnl.text)
            options.update(more)
        try:
            core = ImpairCore.from_options(options)
        except ImpairError as exc:
            raise VNLError(f"VNL {vnl.text!r}: {exc}") from None
        assert vnl.nested is not None
        inner = open_plug(vnl.nested, **kwargs)
        return cls(inner, core, vnl.text)

    def set(self, **params: Any) -> None:
        """Change impairment parameters at run time (see :meth:`ImpairCore.set`)."""
        self.core.set(**params)

    def _flush_lr(self, now: float) -> None:
        send = self.inner.send
        for frame in self.core.lr.release(now):
            if not send(frame):
                self.counters.tx_dropped += 1

    def send(self, frame: bytes | bytearray | memoryview) -> bool:
        """Hand one frame to the impaired link (it may be lost or held back)."""
        n = len(frame)
        if n < MIN_FRAME or n > self.max_frame or self.closed:
            self.counters.tx_dropped += 1
            return False
        now = self.clock()
        self.core.lr.submit(bytes(frame), now)
        self.counters.tx_frames += 1
        self.counters.tx_bytes += n
        self._flush_lr(now)
        return True

    def recv_frames(self, limit: int = 64) -> list[bytes]:
        """Release due frames both ways; return received frames that are due."""
        now = self.clock()
        self._flush_lr(now)
        rl = self.core.rl
        for frame in self.inner.recv_frames(limit):
            rl.submit(frame, now)
        ready = self._ready
        ready.extend(rl.release(now))
        out: list[bytes] = []
        while ready and len(out) < limit:
            out.append(ready.popleft())
        self.counters.rx_frames += len(out)
        self.counters.rx_bytes += sum(map(len, out))
        return out

    def poll_at(self) -> float | None:
        """The next time a held frame is due (or now, if released frames wait)."""
        if self._ready:
            return self.clock()
        times = [t for t in (self.inner.poll_at(), self.core.next_deadline()) if t is not None]
        return min(times) if times else None

    def describe(self) -> str:
        return (f"impair LR[{describe_params(self.core.lr.params)}] "
                f"RL[{describe_params(self.core.rl.params)}] over {self.inner.describe()}")
