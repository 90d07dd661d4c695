"""The send side: :meth:`poll_at` / :meth:`dispatch`, building segments (ACK, window, TS and
SACK options; SYN options), retransmissions and new data under cwnd and the peer window
(Nagle, sender SWS avoidance, FIN piggybacking, persist timer and zero-window probes),
the advertised window with receiver SWS avoidance and window updates, delayed ACKs.
"""

from __future__ import annotations

from ioth.stack.tcp.segment import ACK, FIN, PSH, RST, SYN, Segment
from ioth.stack.tcp.state import (
    _CLOSE_WAIT,
    _CLOSED,
    _ESTABLISHED,
    _FIN_WAIT_2,
    _LISTEN,
    _RECV_DATA_STATES,
    _SYN_RECEIVED,
    _SYN_SENT,
    _TIME_WAIT,
    MASK,
)
from ioth.stack.tcp.tcb import TcbBase

#: Knob (A/B, tests): one segment's worth of new data with nothing in flight takes a short
#: path of :meth:`OutputMixin._transmit` (same segments and state as the general path).
SMALL_SEND = True
#: Knob (A/B, tests): the FIN alone after all the data was sent, the window open beyond it and
#: nothing to retransmit, takes a short path of :meth:`OutputMixin._transmit` (same segment and
#: state).
SMALL_FIN = True
#: Knob: a read sends a pure window update only under Linux's rule too (tcp_cleanup_rbuf: the
#: new window at least twice the one advertised now, the new window bounded as by Linux's
#: rcv_ssthresh); off: whenever the window opens by min(buffer/2, 2 MSS) after it fell under
#: half the buffer.
LINUX_WINDOW_UPDATE = True


class OutputMixin(TcbBase):
    """Output: when to run, what to send, and how each segment is built."""

    __slots__ = ()

    def poll_at(self) -> float | None:
        """When :meth:`dispatch` must run next: ``0.0`` for now, ``None`` for never."""
        if self._dirty or self._out or self._ack_now:
            return 0.0
        # the earliest of six optional deadlines, unrolled (runs several times per segment;
        # TcpLayer._service has an inlined copy: keep them the same)
        t = self._rto_at
        d = self._ack_at
        if d is not None and (t is None or d < t):
            t = d
        d = self._persist_at
        if d is not None and (t is None or d < t):
            t = d
        d = self._keep_at
        if d is not None and (t is None or d < t):
            t = d
        d = self._close_at
        if d is not None and (t is None or d < t):
            t = d
        d = self._tlp_at
        if d is not None and (t is None or d < t):
            t = d
        return t

    def dispatch(self, now: float) -> list[Segment]:
        """EMIT: fire due timers and return the segments to send now (RFC 9293 3.8)."""
        t = self.poll_at()
        if t is None or t > now:
            return []  # nothing to send and no timer due
        out = self._dispatch(now)
        self._dirty = False
        return out

    def _dispatch(self, now: float) -> list[Segment]:
        st = self.state
        if st is not _CLOSED and st is not _LISTEN and (
            # only when a timer is due (what _timers checks, in its order)
            (self._close_at is not None and now >= self._close_at)
            or (self._rto_at is not None and now >= self._rto_at)
            or (self._tlp_at is not None and now >= self._tlp_at)
            or (self._ack_at is not None and now >= self._ack_at)
            or (self._keep_at is not None and now >= self._keep_at)
        ):
            self._timers(now)
            st = self.state
        out = self._out
        self._out = []
        if st is _CLOSED or st is _LISTEN:
            return out
        if self._need_syn:
            self._need_syn = False
            seg = self._syn_segment(now)
            if self.snd_nxt == self.iss:
                self.snd_nxt = self.iss + 1
                self._rtt_seq = self.iss + 1
                self._rtt_time = now
            else:
                self.retransmissions += 1
            out.append(seg)
            if self._rto_at is None:
                self._rto_at = now + self.rto
            return out
        if st is _SYN_SENT:
            return out
        if self._keepalive and self._keep_at is None and (
            st is _ESTABLISHED or st is _CLOSE_WAIT
        ):
            self._reset_keepalive(now)
        if st is _FIN_WAIT_2 and self._user_closed and self._close_at is None:
            self._close_at = now + self.policy.fin_timeout
        if st is not _TIME_WAIT and st is not _SYN_RECEIVED:
            nxt0 = self.snd_nxt
            rtx0 = self.retransmissions
            self._transmit(now, out)
            self._after_transmit(now, nxt0, rtx0)  # undo accounting, TLP (recovery.py)
        if self._ack_now or (self._ack_at is not None and now >= self._ack_at):
            out.append(self._mkseg(self.snd_nxt, ACK, b"", now))
        return out

    def _quiet_dispatch(self, now: float) -> list[Segment] | None:
        """:meth:`_dispatch` for a TCB with nothing to send but perhaps an ACK, without its
        passes: None (nothing changed) when the full dispatch must run.

        Exactly :meth:`_dispatch` for an ESTABLISHED or CLOSE-WAIT TCB with nothing queued,
        in flight or due but the delayed-ACK timer, no recovery episode and no TLP quota
        (typically right after an ACK of everything sent, which marks the TCB dirty: a
        round trip's reply, or a handshake or FIN that is owed an ACK): ``_transmit``'s
        nothing-to-send exit with an empty flight, ``_after_transmit``'s no-ops, then the
        ACK if one is owed."""
        st = self.state
        una = self.snd_una
        if (
            (st is not _ESTABLISHED and st is not _CLOSE_WAIT)
            or self._out
            or self._need_syn
            or self.snd_nxt != una
            or self._sseq + len(self._sbuf) - self._shead != una
            or self._fin_queued
            or self._rerxt
            or self._ooo
            or self._sacked_bytes
            or self._high_rxt < self._lost_edge
            or self._lost_edge > una
            or self._tlp_quota
            or self._episode
            or (self._keepalive and self._keep_at is None)
            or (self._close_at is not None and now >= self._close_at)
            or (self._rto_at is not None and now >= self._rto_at)
            or (self._tlp_at is not None and now >= self._tlp_at)
            or (self._keep_at is not None and now >= self._keep_at)
        ):
            return None
        # (a due delayed ACK is all _timers would do: owe the ACK)
        self._rtx_force = False
        if self.tso_max > self.mss << 1:
            self.tso_cut = self.mss
        self._persist_at = None
        if self._ack_now or (self._ack_at is not None and now >= self._ack_at):
            return [self._mkseg(una, ACK, b"", now)]
        return []

    def _transmit(self, now: float, out: list[Segment]) -> None:
        """Retransmissions (RFC 6675 NextSeg / RFC 6582), then new data, then FIN."""
        una = self.snd_una
        nxt = self.snd_nxt
        data_end = self._sseq + len(self._sbuf) - self._shead
        fin_seq = self._fin_seq if self._fin_queued else -1
        cwnd = self.cc.cwnd + self._inflate
        if cwnd < self.mss:
            cwnd = self.mss
        mss = self.mss
        if (
            nxt >= (data_end if fin_seq < 0 else fin_seq) and nxt != fin_seq
            and not self._rerxt and not self._ooo and not self._sacked_bytes
            and self._high_rxt >= self._lost_edge and self._lost_edge <= una
        ):
            # Nothing to send (pure ACKs, handshake and closing segments): the side effects
            # of the general path below with every loop empty, without its work.  pipe is
            # snd_nxt - snd_una (nothing SACKed, nothing presumed lost), nothing new went out
            # (only a cwnd-limited flight updates the validation state) and nothing is
            # blocked (no persist timer).
            self._rtx_force = False
            if self.tso_max > mss << 1:
                self.tso_cut = mss
            pipe = nxt - una
            if pipe + mss > cwnd:
                self._max_flight = pipe
                self._max_flight_seq = nxt
                self._cwnd_limited = True
            self._persist_at = None
            return
        n = data_end - nxt
        if (
            SMALL_SEND and nxt == una and fin_seq < 0 and 0 < n <= mss and n <= self.snd_wnd
            and not self._rerxt and not self._ooo and not self._sacked_bytes
            and self._high_rxt >= self._lost_edge and self._lost_edge <= una
        ):
            # One segment's worth of new data with nothing in flight (a request, a reply):
            # the general path below with pipe 0, its retransmission loops empty and one
            # pass of the new-data loop.
            restart = 0
            if now - self._last_data_tx > self.rto:
                # RFC 5681 4.1 restart window (as below)
                restart = self.policy.initial_window * self.mss
                if self.cc.cwnd > restart:
                    cwnd = restart + self._inflate
                else:
                    restart = 0
            if n <= cwnd:  # (else the general path, which decides the same restart)
                self._rtx_force = False
                if self.tso_max > mss << 1:
                    self.tso_cut = mss
                if restart:
                    self.cc.cwnd = restart
                end = nxt + n
                # _data_segment(nxt, end, data_end, -1, now) inlined: all the data, no FIN
                off = self._shead + (nxt - self._sseq)
                out.append(self._mkseg(nxt, ACK | PSH, self._sbuf[off:off + n], now))
                self._last_data_tx = now
                if self._rtt_seq < 0 and not self.ts_ok:
                    self._rtt_seq = end
                    self._rtt_time = now
                self.snd_nxt = end
                if self._rto_at is None:
                    self._rto_at = now + self.rto
                limited = n + mss > cwnd
                if limited or n > self._max_flight or una >= self._max_flight_seq:
                    self._max_flight = n
                    self._max_flight_seq = end
                    self._cwnd_limited = limited
                self._persist_at = None
                return
        if (
            SMALL_FIN and nxt == fin_seq and data_end == nxt and una + self.snd_wnd > nxt
            and not self._rerxt and not self._ooo and not self._sacked_bytes
            and self._high_rxt >= self._lost_edge and self._lost_edge <= una
        ):
            # The FIN alone after all the data was sent, the window open beyond it (a close
            # after the last reply, which may be in flight): the general path below with
            # every loop empty, pipe what is in flight (nothing SACKed or presumed lost) and
            # its FIN-alone step.
            self._rtx_force = False
            if self.tso_max > mss << 1:
                self.tso_cut = mss
            pipe = nxt - una
            if pipe + mss > cwnd:
                self._max_flight = pipe
                self._max_flight_seq = nxt
                self._cwnd_limited = True
            out.append(self._mkseg(nxt, FIN | ACK, b"", now))
            self.snd_nxt = nxt + 1
            if self._rto_at is None:
                self._rto_at = now + self.rto
            self._persist_at = None
            return
        if self._ooo and self.sack_ok:
            mss -= 2 + 8 * min(len(self._ooo), 3 if self.ts_ok else 4) + 2
        # TSO: super-segments of whole MSS-sized pieces (the interface's plug cuts them at
        # ``tso_cut``), as big as the interface takes; cwnd and the peer's window bound them
        # below (like Linux's tcp_mss_split_point).
        seg_max = mss
        tso = self.tso_max
        if tso > mss << 1:
            seg_max = tso - tso % mss
            self.tso_cut = mss
        pipe = self._pipe()
        # -- retransmissions that were lost again (RACK-style detection)
        rerxt = self._rerxt
        while rerxt and (self._rtx_force or pipe < cwnd):
            s, e = rerxt.pop(0)
            if s < una:
                s = una
            if s >= e or not self._unsacked(s, e):
                continue
            end = min(e, s + mss)
            out.append(self._data_segment(s, end, data_end, fin_seq, now))
            self.retransmissions += 1
            pipe += end - s
            self._rtx_force = False
            self._rtx_log.append((s, end, now, nxt))
            if end < e:
                rerxt.insert(0, (end, e))
        # -- retransmissions of presumed-lost bytes
        le = self._lost_edge if self._lost_edge < nxt else nxt
        while self._high_rxt < le and (self._rtx_force or pipe < cwnd):
            s = self._high_rxt if self._high_rxt > una else una
            hole_end = le
            for a, b in self._sacked:
                if b <= s:
                    continue
                if a <= s:
                    s = b
                    continue
                hole_end = a if a < le else le
                break
            if s >= le:
                self._high_rxt = le
                break
            end = min(s + mss, hole_end)
            if seg_max > mss and end < hole_end and cwnd - pipe > mss << 1:
                # a hole of several segments goes out as one super-segment (RFC 6675 NextSeg
                # repeated while pipe stays below cwnd)
                n = min(hole_end - s, seg_max, cwnd - pipe)
                end = s + n - n % mss
                if end - s > mss:
                    self.tso_segments += 1
            seg = self._data_segment(s, end, data_end, fin_seq, now)
            out.append(seg)
            self.retransmissions += 1
            if self.sack_ok:
                self._rtx_log.append((s, end, now, nxt))
            sent = end - s
            self._high_rxt = end
            pipe += sent
            self._rtx_force = False
            if self._rto_at is None:
                self._rto_at = now + self.rto
        self._rtx_force = False
        # -- new data (RFC 9293 3.8.6.2.1 sender SWS avoidance, 3.7.4 Nagle)
        wnd_end = una + self.snd_wnd
        limit_end = data_end if fin_seq < 0 else fin_seq
        if nxt == una and nxt < limit_end and now - self._last_data_tx > self.rto:
            # RFC 5681 4.1: after an idle period longer than the RTO, restart from
            # RW = min(IW, cwnd) instead of bursting a stale window.
            restart = self.policy.initial_window * self.mss
            if self.cc.cwnd > restart:
                self.cc.cwnd = restart
                cwnd = restart + self._inflate
        sent_from = nxt
        while nxt < limit_end:
            avail = limit_end - nxt
            room = wnd_end - nxt
            croom = cwnd - pipe
            n = avail
            if n > seg_max:
                n = seg_max
            if n > room:
                n = room
            if n > croom:
                n = croom
            if n <= 0:
                break
            # a super-segment has whole segments only, except a last partial one that ends
            # the data and that Nagle lets go (FIN queued, TCP_NODELAY)
            if n > mss and (n < avail or (not self.nodelay and fin_seq < 0)):
                n -= n % mss
            if n < mss and n < avail:
                # window or cwnd limited: only send if at least half the max window fits
                if room < croom and n >= self.max_snd_wnd >> 1:
                    pass
                elif not self._persist_force(now):
                    break
            elif n < mss and not self.nodelay and nxt > una and fin_seq < 0:
                break  # Nagle: a small segment waits while data is unacknowledged
            end = nxt + n
            if end == fin_seq and wnd_end > end:
                end += 1  # piggyback the FIN on the last data segment
            out.append(self._data_segment(nxt, end, data_end, fin_seq, now))
            if n > mss:
                self.tso_segments += 1
            self._last_data_tx = now
            if self._rtt_seq < 0 and not self.ts_ok:
                self._rtt_seq = end
                self._rtt_time = now
            nxt = end
            pipe += n
            self.snd_nxt = nxt
            if self._rto_at is None:
                self._rto_at = now + self.rto
        # -- congestion window validation (RFC 7661 / Linux tcp_cwnd_validate): remember the
        # largest flight of this window of data and whether cwnd (not the application or the
        # peer's window) was what limited it.
        limited = pipe + mss > cwnd
        if limited or (nxt > sent_from and (pipe > self._max_flight
                                            or una >= self._max_flight_seq)):
            self._max_flight = pipe
            self._max_flight_seq = nxt
            self._cwnd_limited = limited
        # -- FIN alone (data all sent)
        if fin_seq >= 0 and nxt == fin_seq and (wnd_end > nxt or (self.snd_wnd == 0 and
                                                 self._persist_force(now))):
            out.append(self._mkseg(nxt, FIN | ACK, b"", now))
            nxt += 1
            self.snd_nxt = nxt
            if self._rto_at is None:
                self._rto_at = now + self.rto
        # -- zero window / blocked sender with nothing in flight: persist timer (RFC 9293 3.8.6.1)
        blocked = nxt < limit_end or (fin_seq >= 0 and nxt == fin_seq)
        if blocked and nxt == una:
            if self._persist_at is None:
                t = self.rto * (1 << min(self._persist_backoff, 16))
                self._persist_at = now + min(t, self.policy.max_rto)
            elif now >= self._persist_at:
                # zero-window probe (RFC 9293 3.8.6.1): an out-of-window ACK elicits the window.
                # The connection stays up while the peer answers; a silent peer times out.
                self._probes += 1
                if self._probes > self.policy.retries:
                    self._timed_out()
                    return
                self._persist_backoff += 1
                t = self.rto * (1 << min(self._persist_backoff, 16))
                self._persist_at = now + min(t, self.policy.max_rto)
                out.append(self._mkseg(una - 1, ACK, b"", now))
        else:
            self._persist_at = None

    def _persist_force(self, now: float) -> bool:
        # RFC 9293 3.8.6.2.1 (d): after the override timeout, send what the window allows.
        return self._persist_at is not None and now >= self._persist_at and \
            self.snd_nxt == self.snd_una

    def _data_segment(self, s: int, end: int, data_end: int, fin_seq: int,
                      now: float) -> Segment:
        flags = ACK
        dend = end if end < data_end else data_end
        if fin_seq >= 0 and s <= fin_seq < end:
            flags |= FIN
            dend = fin_seq
        payload: bytes | bytearray
        if dend > s:
            payload = self._payload(s, dend - s)
            if dend >= data_end:
                flags |= PSH
        else:
            # a FIN alone (retransmitted): no PSH, as the first one and as Linux (PSH only
            # on segments with data)
            payload = b""
        return self._mkseg(s, flags, payload, now)

    def _payload(self, seq: int, n: int) -> bytearray:
        off = self._shead + (seq - self._sseq)
        return self._sbuf[off : off + n]

    def _mkseg(self, seq: int, flags: int, payload: bytes | bytearray, now: float) -> Segment:
        """A segment from the current TCB state; carries ACK, window, TS and SACK."""
        rcv_nxt = self.rcv_nxt
        sack = None
        ack = 0
        if flags & ACK:
            ack = rcv_nxt & MASK
            self._last_ack_sent = rcv_nxt
            self._ack_now = False
            self._ack_at = None
            self._unacked_rx = 0
            if self.sack_ok and (self._ooo or (self._dsack_pending is not None
                                                and not payload)):
                sack = self._sack_blocks(not payload)
        if flags & SYN:
            window = min(self.policy.recv_buffer, 0xFFFF)
            self._rcv_adv = rcv_nxt + window
        else:
            # _advertise inlined (one call less per segment)
            cap = self.policy.recv_buffer
            free = cap - self._rlen
            ws = self.rcv_wscale
            adv = self._rcv_adv
            if free > 0:
                edge = rcv_nxt + ((free >> ws) << ws)
                if edge > adv:
                    step = cap >> 1
                    if self.mss_local < step:
                        step = self.mss_local
                    if edge - adv >= step or (adv <= rcv_nxt and edge - rcv_nxt >= step):
                        self._rcv_adv = adv = edge
            window = adv - rcv_nxt
            if window <= 0:
                window = 0
            else:
                window >>= ws
                if window > 0xFFFF:
                    window = 0xFFFF
        self.segments_out += 1
        if self.ts_ok:
            # _ts_clock inlined: RFC 7323 5.4, TSval never goes backwards
            ms = int(now * 1000)
            if ms < self._ts_last:
                ms = self._ts_last
            self._ts_last = ms
            return Segment(seq & MASK, ack, flags, window, payload, None, None, False,
                           (ms + self._ts_offset) & MASK, self.ts_recent, sack)
        return Segment(seq & MASK, ack, flags, window, payload, None, None, False, None, 0,
                       sack)

    def _mkrst(self, seq: int) -> Segment:
        return Segment(seq & MASK, self.rcv_nxt & MASK, RST | ACK, 0)

    def _syn_segment(self, now: float) -> Segment:
        """SYN or SYN-ACK with our options (RFC 9293 3.7.1, RFC 7323, RFC 2018)."""
        p = self.policy
        passive = self.state is _SYN_RECEIVED
        peer = self._peer_syn_opts
        flags = SYN | ACK if passive else SYN
        seg = self._mkseg(self.iss, flags, b"", now)
        seg.mss = self.mss_local
        if p.window_scaling and (peer is None or peer.wscale is not None):
            seg.wscale = self.rcv_wscale
        if p.sack and (peer is None or peer.sack_perm):
            seg.sack_perm = True
        if p.timestamps and (peer is None or peer.tsval is not None):
            seg.tsval = self._ts_clock(now)
            seg.tsecr = self.ts_recent if passive else 0
        return seg

    def _advertise(self) -> int:
        """Window field for the next segment; moves the advertised right edge (RFC 9293 3.8.6)."""
        cap = self.policy.recv_buffer
        free = cap - self._rlen
        ws = self.rcv_wscale
        nxt = self.rcv_nxt
        if free > 0:
            edge = nxt + ((free >> ws) << ws)
            adv = self._rcv_adv
            # Receiver SWS avoidance (RFC 9293 3.8.6.2.2): move the edge by min(cap/2, MSS).
            if edge > adv and (edge - adv >= min(cap >> 1, self.mss_local) or (adv <= nxt and
                               edge - nxt >= min(cap >> 1, self.mss_local))):
                self._rcv_adv = edge
        wnd = self._rcv_adv - nxt
        if wnd <= 0:
            return 0
        wnd >>= ws
        return wnd if wnd < 0xFFFF else 0xFFFF

    def _sack_blocks(self, dsack: bool = False) -> tuple[tuple[int, int], ...]:
        """RFC 2018 section 4: the block with the latest segment first, then the others.

        With ``dsack`` (segments without payload: no option space was reserved for it), a
        pending D-SACK goes first, followed by the block containing it (RFC 2883 4).
        """
        blocks: list[tuple[int, int]] = []
        start = end = -1
        for s, d in self._ooo:
            if s == end:
                end += len(d)
                continue
            if end >= 0:
                blocks.append((start, end))
            start, end = s, s + len(d)
        if end >= 0:
            blocks.append((start, end))
        fin = self._ooo_fin
        if fin >= 0:
            # the FIN held out of order counts in its block (as Linux: the segment's
            # end_seq), or is a block of its own
            if blocks and blocks[-1][1] == fin:
                blocks[-1] = (blocks[-1][0], fin + 1)
            else:
                blocks.append((fin, fin + 1))
        last = self._sack_last
        first = [b for b in blocks if b[0] <= last < b[1]]
        rest = [b for b in reversed(blocks) if not b[0] <= last < b[1]]
        ordered = first + rest
        dup = self._dsack_pending
        if dsack and dup is not None:
            self._dsack_pending = None
            self.dsacks_sent += 1
            inside = [b for b in ordered if b[0] <= dup[0] and dup[1] <= b[1]]
            ordered = [dup, *inside, *(b for b in ordered if b not in inside)]
        limit = 3 if self.ts_ok else 4
        return tuple((a & MASK, b & MASK) for a, b in ordered[:limit])

    def _window_update_check(self) -> None:
        # RFC 9293 3.8.6.2.2 (receiver SWS avoidance) and 3.8.6.3: tell the sender when the
        # window opens by a useful amount after it had become small.
        if self.state not in _RECV_DATA_STATES:
            return
        cap = self.policy.recv_buffer
        adv = self._rcv_adv - self.rcv_nxt
        if adv > cap // 2:
            return
        free = cap - self._rlen
        if self.rcv_nxt + free - self._rcv_adv >= min(cap // 2, 2 * self.mss_local):
            if LINUX_WINDOW_UPDATE:
                # Linux tcp_cleanup_rbuf: only if the window we would advertise now is at
                # least twice the one the peer has.  Linux bounds that new window by
                # rcv_ssthresh, which starts at the handshake's window and grows by at most
                # 2 MSS per segment received: bounded here by the handshake window plus twice
                # the bytes received (no per-segment state).  So the first small read of a
                # connection (64-byte request, 64 KiB advertised against a 1 MiB buffer)
                # sends no window update; a window the sender filled still reopens at once.
                new = 0xFFFF + 2 * (self.rcv_nxt - self.irs)
                if new > free:
                    new = free
                if new < 2 * adv:
                    return
            self._ack_now = True
            self._dirty = True
