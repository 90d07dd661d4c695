"""Congestion control behind a small registry: NewReno (RFC 5681/6582) and CUBIC (RFC 9438).

A controller owns ``cwnd`` and ``ssthresh`` (bytes).  The connection calls :meth:`on_ack` for
each ACK that advances SND.UNA outside loss recovery while the sender is cwnd-limited
(:meth:`on_app_limited` when it is not: RFC 7661), :meth:`on_congestion` when it enters fast
recovery, :meth:`on_recovery_end` when recovery completes and :meth:`on_rto` on a retransmission
timeout.  Controllers are pure: time is the ``now`` argument.

The registry maps names to classes (not to instances), so it holds no per-stack state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ioth.errors import ConfigError

INFINITE_SSTHRESH = 1 << 62


@dataclass(frozen=True, slots=True)
class CcSnapshot:
    """A controller's state before a loss reaction, kept to undo a spurious one."""

    cwnd: int
    ssthresh: int
    extra: tuple[float, ...] = ()


class CongestionControl:
    """Base class: slow start and the loss reactions shared by the Reno family."""

    name: ClassVar[str] = "base"
    # slots: one controller per connection (no instance dict: ~40 % of its memory); a
    # registered subclass without __slots__ still gets a dict for its own fields
    __slots__ = ("abc_limit", "cwnd", "mss", "ssthresh")

    def __init__(self, mss: int, initial_window: int) -> None:
        self.mss = mss
        self.cwnd = initial_window * mss
        self.ssthresh = INFINITE_SSTHRESH
        self.abc_limit = 0
        """RFC 3465 L in segments: slow-start growth per ACK at most L*SMSS (0: no limit)."""

    def set_mss(self, mss: int) -> None:
        """The effective MSS changed (negotiation, PMTU); keep the window in segments."""
        segments = max(1, self.cwnd // self.mss)
        self.mss = mss
        self.cwnd = segments * mss

    def on_ack(self, acked: int, now: float, srtt: float | None, in_flight: int) -> None:
        """``acked`` new bytes were cumulatively acknowledged outside recovery."""
        raise NotImplementedError

    def on_app_limited(self, now: float) -> None:
        """An ACK arrived while the sender was not cwnd-limited: cwnd is left alone (RFC 7661)."""

    def on_congestion(self, now: float, in_flight: int) -> None:
        """Loss detected by duplicate ACKs or SACK: multiplicative decrease (RFC 5681 eq. 4)."""
        self.ssthresh = max(in_flight // 2, 2 * self.mss)
        self.cwnd = self.ssthresh

    def on_recovery_end(self, now: float, in_flight: int) -> None:
        """Fast recovery finished (full ACK, RFC 6582 3.2 step 3)."""
        self.cwnd = max(min(self.ssthresh, in_flight + self.mss), 2 * self.mss)

    def on_rto(self, now: float, in_flight: int) -> None:
        """Retransmission timeout: RFC 5681 eq. 4 and a loss window of one segment."""
        self.ssthresh = max(in_flight // 2, 2 * self.mss)
        self.cwnd = self.mss

    def snapshot(self) -> CcSnapshot:
        """The state to restore if the coming reduction proves spurious (RFC 2883 5)."""
        return CcSnapshot(self.cwnd, self.ssthresh)

    def undo(self, prior: CcSnapshot) -> None:
        """Undo a reduction that D-SACKs proved spurious (RFC 2883 5, RFC 4015 style; Linux
        tcp_undo_cwnd_reduction): cwnd and ssthresh go back up to their earlier values."""
        if prior.cwnd > self.cwnd:
            self.cwnd = prior.cwnd
        if prior.ssthresh > self.ssthresh:
            self.ssthresh = prior.ssthresh

    def _slow_start(self, acked: int) -> int:
        """Grow cwnd by the bytes acked (RFC 5681 3.1, byte counting: a stretch ACK counts
        for every segment it covers), at most ``abc_limit`` segments per ACK (RFC 3465 L);
        return the part beyond ssthresh, for congestion avoidance."""
        room = self.ssthresh - self.cwnd
        if acked <= room:
            lim = self.abc_limit * self.mss
            self.cwnd += lim if 0 < lim < acked else acked
            return 0
        self.cwnd = self.ssthresh
        return acked - room


class NewReno(CongestionControl):
    """RFC 5681 slow start and congestion avoidance with byte counting (RFC 3465)."""

    name = "newreno"
    __slots__ = ("_acc",)

    def __init__(self, mss: int, initial_window: int) -> None:
        super().__init__(mss, initial_window)
        self._acc = 0

    def on_ack(self, acked: int, now: float, srtt: float | None, in_flight: int) -> None:
        """Slow start below ssthresh, then one MSS per cwnd of acknowledged bytes."""
        if self.cwnd < self.ssthresh:
            acked = self._slow_start(acked)
            if not acked:
                return
        self._acc += acked
        if self._acc >= self.cwnd:
            self._acc -= self.cwnd
            self.cwnd += self.mss

    def on_congestion(self, now: float, in_flight: int) -> None:
        """RFC 5681 eq. 4."""
        super().on_congestion(now, in_flight)
        self._acc = 0


class Cubic(CongestionControl):
    """CUBIC (RFC 9438) with fast convergence and the Reno-friendly region."""

    name = "cubic"
    __slots__ = ("_epoch", "_k", "_paused", "_w_est", "_w_max")
    C = 0.4
    BETA = 0.7
    ALPHA = 3.0 * (1.0 - 0.7) / (1.0 + 0.7)

    def __init__(self, mss: int, initial_window: int) -> None:
        super().__init__(mss, initial_window)
        self._w_max = 0.0
        self._k = 0.0
        self._epoch: float | None = None
        self._w_est = 0.0
        self._paused: float | None = None  # start of an application-limited period

    def _reduce(self) -> None:
        # RFC 9438 4.6 / 4.7: fast convergence, then beta_cubic decrease.
        w = self.cwnd / self.mss
        self._w_max = w * (1.0 + self.BETA) / 2.0 if w < self._w_max else w
        self.ssthresh = max(int(self.cwnd * self.BETA), 2 * self.mss)
        self._epoch = None
        self._paused = None

    def on_app_limited(self, now: float) -> None:
        """RFC 9438 5.8: the time the flow is not cwnd-limited does not count in ``t``."""
        if self._paused is None and self._epoch is not None:
            self._paused = now

    def on_ack(self, acked: int, now: float, srtt: float | None, in_flight: int) -> None:
        """RFC 9438 4.2-4.4: W_cubic(t + RTT) target, or the Reno-friendly estimate."""
        if self.cwnd < self.ssthresh:
            acked = self._slow_start(acked)
            if not acked:
                return
        mss = self.mss
        w = self.cwnd / mss
        if self._paused is not None:
            if self._epoch is not None:
                self._epoch += now - self._paused
            self._paused = None
        if self._epoch is None:
            self._epoch = now
            if w < self._w_max:
                self._k = ((self._w_max - w) / self.C) ** (1.0 / 3.0)
            else:
                self._k = 0.0
                self._w_max = w
            self._w_est = w
        t = now - self._epoch
        rtt = srtt if srtt is not None else 0.1
        segs = acked / mss
        self._w_est += self.ALPHA * segs / w
        w_cubic_t = self.C * (t - self._k) ** 3 + self._w_max
        if w_cubic_t < self._w_est:
            self.cwnd = max(self.cwnd, int(self._w_est * mss))
            return
        target = self.C * (t + rtt - self._k) ** 3 + self._w_max
        target = min(max(target, w), 1.5 * w)
        self.cwnd += int((target - w) / w * acked)

    def on_congestion(self, now: float, in_flight: int) -> None:
        """RFC 9438 4.6: cwnd = ssthresh = beta_cubic * cwnd."""
        self._reduce()
        self.cwnd = self.ssthresh

    def on_rto(self, now: float, in_flight: int) -> None:
        """RFC 9438 4.8: reduce like a loss, restart from one segment."""
        self._reduce()
        self.cwnd = self.mss

    def snapshot(self) -> CcSnapshot:
        """cwnd, ssthresh and the epoch variables (W_max, K, epoch start, W_est)."""
        epoch = -1.0 if self._epoch is None else self._epoch
        return CcSnapshot(self.cwnd, self.ssthresh, (self._w_max, self._k, epoch, self._w_est))

    def undo(self, prior: CcSnapshot) -> None:
        """RFC 9438 4.9 (spurious congestion events): restore cwnd, ssthresh, W_max, K,
        the epoch start and W_est saved before the reduction."""
        super().undo(prior)
        if len(prior.extra) == 4:
            self._w_max, self._k, epoch, self._w_est = prior.extra
            self._epoch = None if epoch < 0 else epoch
        self._paused = None


_CC_CLASSES: dict[str, type[CongestionControl]] = {"newreno": NewReno, "cubic": Cubic}


def register_cc(name: str, cls: type[CongestionControl]) -> None:
    """Make ``cls`` available as congestion control ``name`` (process-wide class registry)."""
    if not name or not name.isidentifier():
        raise ConfigError(f"congestion control name {name!r} must be an identifier")
    _CC_CLASSES[name] = cls


def cc_names() -> frozenset[str]:
    """Names of the registered congestion controllers."""
    return frozenset(_CC_CLASSES)


def make_cc(name: str, mss: int, initial_window: int) -> CongestionControl:
    """A new controller instance; ConfigError for an unknown name."""
    cls = _CC_CLASSES.get(name)
    if cls is None:
        raise ConfigError(
            f"unknown congestion control {name!r} (known: {', '.join(sorted(_CC_CLASSES))})"
        )
    return cls(mss, initial_window)
