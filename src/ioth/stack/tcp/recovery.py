"""Loss recovery, RTT estimation and timers.

Loss recovery keeps three numbers besides SND.UNA/SND.NXT: a SACK scoreboard (RFC 6675),
``lost_edge`` (unSACKed bytes below it are presumed lost) and ``high_rxt`` (lost bytes below it
were retransmitted).  ``pipe`` (RFC 6675 section 2) follows from them, so NewReno (RFC 6582),
SACK recovery and go-back-N after an RTO (RFC 6298 5.4) share one retransmission path (in
:mod:`ioth.stack.tcp.output`).  Also here: the RTO (RFC 6298), duplicate ACKs with early
retransmit (RFC 5827), tail loss probes and lost-retransmission detection (RFC 8985), and the
timers ``dispatch`` fires (TIME-WAIT, RTO, TLP, delayed ACK, keepalive).
"""

from __future__ import annotations

import errno as _errno

from ioth.stack.tcp.segment import ACK
from ioth.stack.tcp.state import (
    _DUPTHRESH,
    _G,
    _HALF,
    _MAX_SACK_BLOCKS,
    MASK,
    State,
    _unwrap,
)
from ioth.stack.tcp.tcb import TcbBase

_MAX_PTO_STEPS = 8  # PTO = (2 + steps) * SRTT at most (and never past the RTO)


class RecoveryMixin(TcbBase):
    """SACK scoreboard, fast recovery, RTT/RTO and the timers."""

    __slots__ = ()

    def _timers(self, now: float) -> None:
        if self._close_at is not None and now >= self._close_at:
            # TIME-WAIT timeout (RFC 9293 3.10.8) or orphaned FIN-WAIT-2 (fin_timeout); an ACK
            # still owed (a zero TIME-WAIT) goes out first.
            if self._ack_now and self.state is State.TIME_WAIT:
                self._out.append(self._mkseg(self.snd_nxt, ACK, b"", now))
            self._set_closed()
            return
        if self._rto_at is not None and now >= self._rto_at:
            self._on_rto(now)
            if self.state is State.CLOSED:
                return
        if self._tlp_at is not None and now >= self._tlp_at:
            self._tlp_at = None
            una, nxt = self.snd_una, self.snd_nxt
            if nxt > una and not self._in_recovery and self._tlp_end < 0:
                # RFC 8985 7.3: probe by retransmitting the last segment (one probe per episode)
                start = max(una, nxt - self.mss)
                self._rerxt.append((start, nxt))
                self._rtx_force = True
                self._tlp_end = nxt
                self._tlp_probe = (start, nxt)
                self.tail_probes += 1
        if self._ack_at is not None and now >= self._ack_at:
            self._ack_now = True
        if self._keep_at is not None and now >= self._keep_at:
            if self.state not in (State.ESTABLISHED, State.CLOSE_WAIT, State.FIN_WAIT_2):
                self._keep_at = None
            elif self._keep_probes >= self.policy.keepcnt:
                self._set_closed(_errno.ETIMEDOUT)
                return
            else:
                # RFC 9293 3.8.4 (RFC 1122 4.2.3.6): probe with SEG.SEQ = SND.NXT - 1.
                self._keep_probes += 1
                self._out.append(self._mkseg(self.snd_una - 1, ACK, b"", now))
                self._keep_at = now + self.policy.keepintvl

    def _on_rto(self, now: float) -> None:
        """RFC 6298 5.4-5.7: retransmit the earliest unacked segment, back off, restart."""
        self.rto_expirations += 1
        self._retries += 1
        p = self.policy
        st = self.state
        if st is State.SYN_SENT or st is State.SYN_RECEIVED:
            limit = p.syn_retries if st is State.SYN_SENT else p.synack_retries
            if self._retries > limit:
                self._set_closed(_errno.ETIMEDOUT)
                return
            self._need_syn = True
        else:
            if self._retries > p.retries:
                self._set_closed(_errno.ETIMEDOUT)
                return
            flight = self._pipe()
            self.cc.on_rto(now, flight)
            # RFC 2018 8: forget SACKed bits; RFC 6582 3.2 step 4 / RFC 6675 5.1: recover.
            self._sacked = []
            self._sacked_bytes = 0
            self._rtx_log = []
            self._rerxt = []
            self._tlp_at = None
            self._tlp_end = -1
            self._pto_steps = 0
            self._lost_edge = self.snd_nxt
            self._high_rxt = self.snd_una
            self._recover = self.snd_nxt
            self._in_recovery = False
            self._inflate = 0
            self._dupacks = 0
            self._rtx_force = True
        self._rtt_seq = -1
        self.rto = min(self.rto * 2, p.max_rto)
        self._rto_at = now + self.rto
        self._dirty = True

    def _rtt_sample(self, r: float) -> None:
        """RFC 6298 section 2: update SRTT, RTTVAR and RTO from one measurement."""
        if self.srtt is None or self.rttvar is None:
            self.srtt = r
            self.rttvar = r / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - r)
            self.srtt = 0.875 * self.srtt + 0.125 * r
        rto = self.srtt + max(_G, 4 * self.rttvar)
        p = self.policy
        self.rto = p.min_rto if rto < p.min_rto else (p.max_rto if rto > p.max_rto else rto)

    def _ts_rtt(self, tsecr: int, now: float) -> None:
        delta = (self._ts_clock(now) - tsecr) & MASK
        if delta < _HALF:
            self._rtt_sample(delta / 1000.0)

    def _on_dupack(self, now: float) -> None:
        if self._in_recovery:
            if not self.sack_ok:
                self._inflate += self.mss  # RFC 6582 3.2 step 5 (RFC 5681 step 4)
            else:
                self._update_lost_edge()
            self._dirty = True
            return
        if self.sack_ok:
            self._update_lost_edge()
            lost = self._lost_edge > self.snd_una
        else:
            lost = False
        # RFC 5827 early retransmit: with fewer than 4 segments outstanding and nothing new
        # to send, oldseg - 1 duplicate ACKs are enough.
        thresh = _DUPTHRESH
        old_segs = -(-(self.snd_nxt - self.snd_una) // self.mss)  # byte-based (RFC 5827 3.2)
        if 2 <= old_segs <= _DUPTHRESH and self.snd_nxt >= self._sseq + len(
            self._sbuf
        ) - self._shead:
            thresh = old_segs - 1
        # RFC 6582 3.2 step 2 / RFC 6675 5 (IsLost(SND.UNA)): enter fast recovery.
        if (self._dupacks >= thresh or lost) and self.snd_una > self._recover:
            self._enter_recovery(now)

    def _enter_recovery(self, now: float) -> None:
        self._recover = self.snd_nxt
        self._in_recovery = True
        self.fast_recoveries += 1
        self._rtt_seq = -1
        self._tlp_at = None
        self._tlp_end = -1
        self.cc.on_congestion(now, self._pipe())
        first_end = min(self.snd_una + self.mss, self.snd_nxt)
        if self._sacked and self._sacked[0][0] < first_end:
            first_end = max(self._sacked[0][0], self.snd_una + 1)
        if self._lost_edge < first_end:
            self._lost_edge = first_end
        self._high_rxt = self.snd_una
        self._inflate = 0 if self.sack_ok else _DUPTHRESH * self.mss
        self._rtx_force = True
        self._dirty = True

    def _tlp_check(self, now: float) -> None:
        """After a tail loss probe (RFC 8985 7): when the probe is SACKed but data below it is
        still missing, that data was sent more than 2 RTTs ago: it is lost (RFC 8985 6.2)."""
        end = self._tlp_end
        if self.snd_una >= end:
            self._tlp_end = -1
            return
        sb = self._sacked
        if sb and sb[-1][0] < end <= sb[-1][1]:
            self._tlp_end = -1
            if not self._in_recovery and self.snd_una > self._recover:
                if self._pto_steps:
                    self._pto_steps -= 1  # the probe found a real loss: PTO may shrink again
                self._enter_recovery(now)
                top = sb[-1][0]
                if self._lost_edge < top:
                    self._lost_edge = top

    def _dsack(self, blocks: tuple[tuple[int, int], ...], ack: int) -> bool:
        """RFC 2883 4: is the first block a D-SACK (below the cumulative ACK or inside the
        second block)?  Counts it; a D-SACK for the last tail loss probe means the probe was
        spurious (RFC 8985 7.4): the ACKs were late, not lost, so later PTOs wait longer."""
        ref = max(ack, self.snd_una)
        a = _unwrap(blocks[0][0], ref)
        b = _unwrap(blocks[0][1], ref)
        if b <= a:
            return False
        if b > ref:
            if len(blocks) < 2:
                return False
            a2 = _unwrap(blocks[1][0], ref)
            b2 = _unwrap(blocks[1][1], ref)
            if not a2 <= a < b <= b2:
                return False
        self.dsacks += 1
        ps, pe = self._tlp_probe
        if ps < pe and a < pe and b > ps:
            self._tlp_probe = (0, 0)
            self.spurious_probes += 1
            if self._pto_steps < _MAX_PTO_STEPS:
                self._pto_steps += 1
        return True

    def _sack_update(self, blocks: tuple[tuple[int, int], ...], ack: int) -> int:
        """Merge SACK blocks into the scoreboard (RFC 2018 / RFC 6675); return new bytes."""
        una = max(ack, self.snd_una)
        nxt = self.snd_nxt
        sb = self._sacked
        before = self._sacked_bytes
        for a32, b32 in blocks:
            a = _unwrap(a32, una)
            b = _unwrap(b32, una)
            if b <= a or b <= una or b > nxt:
                continue  # stale, D-SACK or bogus
            if a < una:
                a = una
            # insert [a, b) merging overlaps (bounded: a hostile peer cannot fragment it forever)
            i = 0
            n = len(sb)
            while i < n and sb[i][1] < a:
                i += 1
            j = i
            while j < n and sb[j][0] <= b:
                a = min(a, sb[j][0])
                b = max(b, sb[j][1])
                j += 1
            if j == i and n >= _MAX_SACK_BLOCKS:
                continue
            sb[i:j] = [[a, b]]
        total = 0
        for a, b in sb:
            total += b - a
        self._sacked_bytes = total
        return total - before if total > before else 0

    def _rack_detect(self, now: float) -> None:
        """A retransmission is lost when data sent after it was SACKed and more than
        RTT + RTT/4 passed since it was sent (RFC 8985 6.2 applied to retransmissions)."""
        top = self._sacked[-1][1] if self._sacked else 0
        rtt = self.srtt if self.srtt is not None else self.rto
        wait = rtt * 1.25 + 0.002
        keep: list[tuple[int, int, float, int]] = []
        una = self.snd_una
        for rec in self._rtx_log:
            s, e, t, nxt_at = rec
            if e <= una or not self._unsacked(s, e):
                continue  # delivered
            if top > nxt_at and now - t >= wait:
                self._rerxt.append((s, e))
                self._rtx_force = True
                self._dirty = True
                continue
            keep.append(rec)
        self._rtx_log = keep

    def _sack_trim(self, una: int) -> None:
        sb = self._sacked
        while sb and sb[0][1] <= una:
            sb.pop(0)
        if sb and sb[0][0] < una:
            sb[0][0] = una
        total = 0
        for a, b in sb:
            total += b - a
        self._sacked_bytes = total

    def _update_lost_edge(self) -> None:
        """RFC 6675 IsLost(): unSACKed bytes below a point with DupThresh SACKed blocks or
        more than (DupThresh - 1) * SMSS SACKed bytes above it are lost."""
        cum = 0
        limit = (_DUPTHRESH - 1) * self.mss
        for cnt, (a, b) in enumerate(reversed(self._sacked), 1):
            cum += b - a
            if cnt >= _DUPTHRESH or cum > limit:
                if a > self._lost_edge:
                    self._lost_edge = a
                return

    def _unsacked(self, a: int, b: int) -> int:
        if b <= a:
            return 0
        n = b - a
        for s, e in self._sacked:
            if e <= a:
                continue
            if s >= b:
                break
            n -= min(e, b) - max(s, a)
        return n

    def _pipe(self) -> int:
        """RFC 6675 section 2 'pipe': bytes presumed in the network."""
        una = self.snd_una
        total = self.snd_nxt - una - self._sacked_bytes
        le = self._lost_edge
        if le > una:
            if le > self.snd_nxt:
                le = self.snd_nxt
            hr = self._high_rxt
            start = hr if hr > una else una
            if start < le:
                total -= self._unsacked(start, le)
        return total
