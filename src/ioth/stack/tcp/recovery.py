"""Loss recovery, RTT estimation and timers.

Loss recovery keeps three numbers besides SND.UNA/SND.NXT: a SACK scoreboard (RFC 6675),
``lost_edge`` (unSACKed bytes below it are presumed lost) and ``high_rxt`` (lost bytes below it
were retransmitted).  ``pipe`` (RFC 6675 section 2) follows from them, so NewReno (RFC 6582),
SACK recovery and go-back-N after an RTO (RFC 6298 5.4) share one retransmission path (in
:mod:`ioth.stack.tcp.output`).  Also here: the RTO (RFC 6298), duplicate ACKs with early
retransmit (RFC 5827), tail loss probes and lost-retransmission detection (RFC 8985), and the
timers ``dispatch`` fires (TIME-WAIT, RTO, TLP, delayed ACK, keepalive).

Spurious retransmissions: D-SACKs (RFC 2883) name the retransmissions that were not needed;
when every retransmission of a fast recovery or RTO episode was, the cwnd/ssthresh reduction is
undone (RFC 2883 5, RFC 9438 4.9; Linux undo), as it is when the ACK that ends the episode
echoes a timestamp older than its first retransmission (Eifel, RFC 3522).  An undone fast
retransmit raises DupThresh to the reordering it revealed (Linux ``tp->reordering``), and
D-SACKs widen RACK's reordering window (RFC 8985 6.2 step 4).  A tail loss probe sends queued
new data when there is some (RFC 8985 7.3), so a sender whose ACKs were only late does not
retransmit.
"""

from __future__ import annotations

from ioth.stack.tcp.segment import ACK, RST
from ioth.stack.tcp.state import (
    _CLOSE_WAIT,
    _CLOSED,
    _DUPTHRESH,
    _ESTABLISHED,
    _FIN_WAIT_2,
    _G,
    _HALF,
    _MAX_SACK_BLOCKS,
    _SYN_RECEIVED,
    _SYN_SENT,
    _TIME_WAIT,
    MASK,
    _unwrap,
)
from ioth.stack.tcp.tcb import TcbBase

_MAX_PTO_STEPS = 8  # PTO = (2 + steps) * SRTT at most (and never past the RTO)
_WC_DEL_ACK = 0.2  # RFC 8985 7.2 WCDelAckT: worst-case delayed ACK for a one-segment flight
_PTO_MIN = 0.01  # never probe sooner than this after a send or an ACK
_RACK_SLACK = 0.002  # timestamp granularity (1 ms) in RACK's "sent RTT + reo_wnd ago"
_REO_PERSIST = 16  # RFC 8985 6.2 step 4: recoveries before reo_wnd_mult returns to 1
_MAX_REO_MULT = 64
_MAX_UNDO_RANGES = 64  # retransmissions tracked for undo per episode (more: no undo)
_MAX_REORDERING = 300  # Linux tcp_max_reordering: DupThresh never grows past this


class RecoveryMixin(TcbBase):
    """SACK scoreboard, fast recovery, RTT/RTO and the timers."""

    __slots__ = ()

    def _timers(self, now: float) -> None:
        if self._close_at is not None and now >= self._close_at:
            # TIME-WAIT timeout (RFC 9293 3.10.8) or orphaned FIN-WAIT-2 (fin_timeout); an ACK
            # still owed (a zero TIME-WAIT) goes out first.
            if self._ack_now and self.state is _TIME_WAIT:
                self._out.append(self._mkseg(self.snd_nxt, ACK, b"", now))
            self._set_closed()
            return
        if self._rto_at is not None and now >= self._rto_at:
            self._on_rto(now)
            if self.state is _CLOSED:
                return
        if self._tlp_at is not None and now >= self._tlp_at:
            self._tlp_at = None
            una, nxt = self.snd_una, self.snd_nxt
            if nxt > una and not self._in_recovery and self._tlp_end < 0:
                self.tail_probes += 1
                self._tlp_end = nxt
                # RFC 8985 7.3: after the probe the RTO restarts from now (Linux
                # tcp_send_loss_probe: tcp_rearm_rto "from now")
                self._rto_at = now + self.rto
                data_end = self._sseq + len(self._sbuf) - self._shead
                if data_end > nxt and una + self.snd_wnd >= min(nxt + self.mss, data_end):
                    # RFC 8985 7.3: unsent data the peer's window takes is the probe; it is
                    # sent now even if cwnd is full or Nagle would hold it (cwnd lent and
                    # Nagle lifted here, both restored after the send; Linux sends it with
                    # TCP_NAGLE_OFF).  New data is never a spurious retransmission.
                    self._tlp_quota = self.mss
                    self._inflate += self.mss
                    self._tlp_probe = (0, 0)
                    if not self.nodelay:
                        self.nodelay = True
                        self._tlp_nagle = True
                    self._dirty = True
                else:
                    self._probe_last(nxt)
        if self._ack_at is not None and now >= self._ack_at:
            self._ack_now = True
        if self._keep_at is not None and now >= self._keep_at:
            if self.state not in (_ESTABLISHED, _CLOSE_WAIT, _FIN_WAIT_2):
                self._keep_at = None
            elif self._keep_probes >= self.policy.keepcnt:
                # as Linux (tcp_keepalive_timer: tcp_send_active_reset): a peer still there
                # learns that the connection is gone (with the options of the connection)
                self._out.append(self._mkseg(self.snd_nxt, RST | ACK, b"", now))
                self._timed_out()
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
        if st is _SYN_SENT or st is _SYN_RECEIVED:
            limit = p.syn_retries if st is _SYN_SENT else p.synack_retries
            if self._retries > limit:
                self._timed_out()
                return
            self._need_syn = True
        else:
            if self._retries == 1:  # (the oldest unacknowledged data went out an RTO ago)
                self._rtx_stamp = now - self.rto
            if self._retries > p.retries or (
                    p.user_timeout and now - self._rtx_stamp >= p.user_timeout):
                self._timed_out()
                return
            flight = self._pipe()
            if not self._episode:
                self._start_episode()
            if self._sacked_bytes >= _DUPTHRESH * self.mss and self._reordering > _DUPTHRESH:
                # a timeout with plenty SACKed: the reordering degree was overestimated
                self._reordering = _DUPTHRESH  # (Linux tcp_enter_loss)
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
        if p.user_timeout and st is not _SYN_SENT and st is not _SYN_RECEIVED:
            end = self._rtx_stamp + p.user_timeout  # (Linux tcp_clamp_rto_to_user_timeout)
            if end < self._rto_at:
                self._rto_at = end if end > now else now + _G
        self._dirty = True

    def _rtt_sample(self, r: float) -> None:
        """RFC 6298 section 2: update SRTT, RTTVAR and RTO from one measurement."""
        mr = self._min_rtt
        if mr is None or r < mr:
            self._min_rtt = r  # RACK.min_RTT (RFC 8985 6.2)
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
        self._last_tsecr = tsecr
        # _ts_clock inlined (RFC 7323 5.4: TSval never goes backwards)
        ms = int(now * 1000)
        if ms < self._ts_last:
            ms = self._ts_last
        self._ts_last = ms
        delta = (((ms + self._ts_offset) & MASK) - tsecr) & MASK
        if delta < _HALF:
            # _rtt_sample(delta / 1000.0) inlined (one call less per ACK: keep them the same)
            r = delta / 1000.0
            mr = self._min_rtt
            if mr is None or r < mr:
                self._min_rtt = r  # RACK.min_RTT (RFC 8985 6.2)
            srtt = self.srtt
            rttvar = self.rttvar
            if srtt is None or rttvar is None:
                self.srtt = srtt = r
                self.rttvar = rttvar = r / 2
            else:
                self.rttvar = rttvar = 0.75 * rttvar + 0.25 * abs(srtt - r)
                self.srtt = srtt = 0.875 * srtt + 0.125 * r
            rto = srtt + max(_G, 4 * rttvar)
            p = self.policy
            self.rto = p.min_rto if rto < p.min_rto else (p.max_rto if rto > p.max_rto else rto)

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
        thresh = self._reordering
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
        if not self._episode:
            self._start_episode()
            # reordering degree if this proves spurious: how far above the hole SACKs reached
            if self._sacked:
                self._undo_reord = -(-(self._sacked[-1][1] - self.snd_una) // self.mss)
        self.cc.on_congestion(now, self._pipe())
        first_end = min(self.snd_una + self.mss, self.snd_nxt)
        if self._sacked and self._sacked[0][0] < first_end:
            first_end = max(self._sacked[0][0], self.snd_una + 1)
        if self._lost_edge < first_end:
            self._lost_edge = first_end
        self._high_rxt = self.snd_una
        self._inflate = 0 if self.sack_ok else self._reordering * self.mss
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
        ref = ack  # the cumulative ACK of this segment (a reordered old ACK is no D-SACK)
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
        # RFC 8985 6.2 step 4: at most one reo_wnd_mult step per round trip
        if self._dsack_round >= 0 and self.snd_una >= self._dsack_round:
            self._dsack_round = -1
        if self._dsack_round < 0:
            self._dsack_round = self.snd_nxt
            if self._reo_mult < _MAX_REO_MULT:
                self._reo_mult += 1
            self._reo_persist = _REO_PERSIST
        spurious = 0
        ps, pe = self._tlp_probe
        if ps < pe and a < pe and b > ps:
            self._tlp_probe = (0, 0)
            self.spurious_probes += 1
            spurious = 1
            if self._pto_steps < _MAX_PTO_STEPS:
                self._pto_steps += 1
        ranges = self._undo_ranges
        if self._undo_prior is not None and ranges:
            # RFC 2883 5 (Linux undo_retrans): each retransmission the D-SACK covers was
            # not needed; once none is left, the reduction was spurious: undo it.
            # Byte-wise: a super-segment retransmission may come back as several D-SACKs.
            keep: list[tuple[int, int]] = []
            done = 0
            for s, e in ranges:
                if e <= a or s >= b:
                    keep.append((s, e))
                    continue
                if s < a:
                    keep.append((s, a))
                if e > b:
                    keep.append((b, e))
                elif s >= a:
                    done += 1
            if done or len(keep) != len(ranges):
                spurious = max(spurious, done)
                self._undo_ranges = keep
                if not keep:
                    self._undo()
        self.spurious_retrans += spurious
        return True

    def _start_episode(self) -> None:
        """A fast recovery or RTO recovery begins: remember what to restore if every
        retransmission of it proves spurious (RFC 2883 5, RFC 3522; Linux tcp_init_undo)."""
        self._episode = True
        self._undo_prior = self.cc.snapshot()
        self._undo_ranges = []
        self._undo_tsval = -1
        self._undo_reord = 0

    def _undo(self) -> None:
        """The reduction was spurious: restore the controller, stop treating unSACKed data
        as lost and leave recovery (Linux tcp_undo_cwnd_reduction with loss unmarking)."""
        prior = self._undo_prior
        if prior is None:
            return
        self._undo_prior = None
        self._undo_ranges = []
        self._undo_tsval = -1
        self.cc.undo(prior)
        self.undos += 1
        # a fast retransmit was spurious: the path reorders by that many segments, so ask for
        # more evidence next time (Linux tp->reordering; RFC 4653's idea)
        reord = self._undo_reord + 1
        if reord > self._reordering:
            self._reordering = reord if reord < _MAX_REORDERING else _MAX_REORDERING
        una = self.snd_una
        hr = self._high_rxt if self._high_rxt > una else una
        if self._lost_edge > hr:
            self._lost_edge = hr
        self._rerxt = []
        self._rtx_log = []
        if self._in_recovery:
            self._in_recovery = False
            self._inflate = 0
        if self._episode:
            self._end_episode()
        self._dirty = True

    def _end_episode(self) -> None:
        """A recovery episode ended (or was undone): RFC 8985 6.2 step 4 counts it."""
        self._episode = False
        self._reo_persist -= 1
        if self._reo_persist <= 0:
            self._reo_mult = 1

    def _after_transmit(self, now: float, nxt0: int, rtx0: int) -> None:
        """After each transmit pass: account its retransmissions for undo, settle a new-data
        tail loss probe, notice the end of a recovery episode, and (re)arm the PTO."""
        n = self.retransmissions - rtx0
        if n and self._undo_prior is not None:
            if self._undo_tsval < 0 and self.ts_ok:
                self._undo_tsval = self._ts_clock(now)
            log = self._rtx_log
            ranges = self._undo_ranges
            if self.sack_ok and len(log) >= n and len(ranges) + n <= _MAX_UNDO_RANGES:
                for rec in log[-n:]:
                    ranges.append((rec[0], rec[1]))
            elif not self.ts_ok:
                self._undo_prior = None  # nothing left that could prove the episode spurious
            else:
                self._undo_ranges = [(-1, -1)]  # D-SACKs cannot undo; Eifel still can
        q = self._tlp_quota
        if q:
            # a new-data probe (RFC 8985 7.3): give back the cwnd lent for it; if nothing new
            # could go out (Nagle, FIN), probe with the last segment instead.
            self._tlp_quota = 0
            self._inflate -= q
            if self._tlp_nagle:
                self._tlp_nagle = False
                self.nodelay = False
            if self._inflate < 0:
                self._inflate = 0
            if self.snd_nxt > nxt0:
                self._tlp_end = self.snd_nxt
            elif self.snd_nxt > self.snd_una:
                self._probe_last(self.snd_nxt)
        if self._episode and not self._in_recovery and self.snd_una >= self._recover:
            self._end_episode()
            tsv = self._undo_tsval
            if (tsv >= 0 and self._undo_prior is not None and self.ts_ok
                    and (self._last_tsecr - tsv) & MASK >= _HALF):
                # RFC 3522 (Eifel detection; Linux tcp_packet_delayed): the ACK that ended
                # the episode echoes a timestamp older than its first retransmission, so
                # the originals arrived: the retransmissions were not needed.
                self.spurious_retrans += 1
                self._undo()
        # RFC 8985 7.2: (re)start the PTO after new data is sent or an ACK arrived
        if (
            self.sack_ok
            and self._tlp_end < 0
            and (self._tlp_at is None or self.snd_nxt > nxt0)
            and self.srtt is not None
            and not self._in_recovery
            and self.snd_nxt > self.snd_una
            and self._rto_at is not None
            and self.policy.tail_loss_probe
        ):
            # PTO = 2*SRTT, plus WCDelAckT for a one-segment flight; one more SRTT per probe
            # a D-SACK showed spurious (the ACKs were late, e.g. a busy host)
            pto = (2 + self._pto_steps) * self.srtt
            if self.snd_nxt - self.snd_una <= self.mss:
                pto += _WC_DEL_ACK
            if pto < _PTO_MIN:
                pto = _PTO_MIN
            at = now + pto
            self._tlp_at = at if at < self._rto_at else None

    def _probe_last(self, nxt: int) -> None:
        """RFC 8985 7.3: probe by retransmitting the last segment sent."""
        start = max(self.snd_una, nxt - self.mss)
        self._rerxt.append((start, nxt))
        self._rtx_force = True
        self._dirty = True
        self._tlp_end = nxt
        self._tlp_probe = (start, nxt)

    def _reo_wnd(self) -> float:
        """RACK.reo_wnd (RFC 8985 6.2): min(reo_wnd_mult * min_RTT / 4, SRTT)."""
        srtt = self.srtt if self.srtt is not None else self.rto
        base = self._min_rtt if self._min_rtt is not None else srtt
        w = self._reo_mult * base / 4
        return w if w < srtt else srtt

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
        RTT + reo_wnd passed since it was sent (RFC 8985 6.2 applied to retransmissions)."""
        top = self._sacked[-1][1] if self._sacked else 0
        rtt = self.srtt if self.srtt is not None else self.rto
        wait = rtt + self._reo_wnd() + _RACK_SLACK
        keep: list[tuple[int, int, float, int]] = []
        una = self.snd_una
        for rec in self._rtx_log:
            s, e, t, nxt_at = rec
            if e <= una or not self._unsacked(s, e):
                continue  # delivered
            if top > nxt_at and now - t >= wait:
                # only its unSACKed parts (a super-segment may be partly SACKed)
                self._rerxt.extend(self._holes(s, e))
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
        more than (DupThresh - 1) * SMSS SACKed bytes above it are lost.  DupThresh is the
        reordering degree: 3, raised when a fast retransmit proves spurious (Linux)."""
        cum = 0
        thresh = self._reordering
        limit = (thresh - 1) * self.mss
        for cnt, (a, b) in enumerate(reversed(self._sacked), 1):
            cum += b - a
            if cnt >= thresh or cum > limit:
                if a > self._lost_edge:
                    self._lost_edge = a
                return

    def _holes(self, a: int, b: int) -> list[tuple[int, int]]:
        """The unSACKed sub-ranges of [a, b)."""
        out: list[tuple[int, int]] = []
        for s, e in self._sacked:
            if e <= a:
                continue
            if s >= b:
                break
            if s > a:
                out.append((a, s))
            a = e
            if a >= b:
                return out
        if a < b:
            out.append((a, b))
        return out

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
