"""Segment arrival (RFC 9293 3.10.7): the (state, flags) dispatch, header prediction, the
eight checks for synchronized states (with PAWS, RFC 7323 5.3, and the RFC 5961 RST/SYN/ACK
checks), ACK processing (window update, SND.UNA advance, duplicate ACKs) and FIN handling.
"""

from __future__ import annotations

import errno as _errno

from ioth.stack.tcp.segment import ACK, FIN, RST, SYN, URG, Segment
from ioth.stack.tcp.state import (
    _CLOSE_WAIT,
    _CLOSED,
    _CLOSING,
    _ESTABLISHED,
    _FIN_WAIT_1,
    _FIN_WAIT_2,
    _HALF,
    _LAST_ACK,
    _LISTEN,
    _MAX_WSCALE,
    _RECV_DATA_STATES,
    _SYN_RECEIVED,
    _SYN_SENT,
    _SYNCHRONIZED,
    _TIME_WAIT,
    MASK,
    _reset_for,
    _unwrap,
)
from ioth.stack.tcp.tcb import TcbBase

#: Knob: the ACK of a FIN that takes an ESTABLISHED connection to CLOSE-WAIT is delayed (as
#: Linux, which enters pingpong mode there) and so usually rides on the application's FIN:
#: a connection the server closes first ends with FIN, FIN+ACK, ACK (one frame less).  Off:
#: the FIN is acknowledged at once (FIN, ACK, FIN, ACK).  This changes frames, like Linux.
DELAYED_FIN_ACK = True


class InputMixin(TcbBase):
    """Segment arrival: :meth:`process` and everything it does to the TCB."""

    __slots__ = ()

    def process(self, seg: Segment, now: float, predict: bool = True) -> None:
        """SEGMENT ARRIVES (RFC 9293 3.10.7).  Never raises on remote input.

        ``predict=False``: the caller knows :meth:`rx_predicted` declines this segment (it
        asked already, or the state or flags exclude it), so it is not asked again."""
        f = seg.flags
        if (
            predict
            and f & (SYN | FIN | RST | ACK | URG) == ACK
            and not seg.sack
            and self.rx_predicted(seg.seq, seg.ack, seg.window, seg.tsval, seg.tsecr,
                                  seg.payload, now)
        ):
            return
        self.segments_in += 1
        st = self.state
        # (an if-chain: a match statement on (state, flags) with _X value patterns
        # cost an enum attribute lookup per case tried)
        c = f & (SYN | ACK | RST)
        if st in _SYNCHRONIZED:
            # RFC 9293 3.10.7.4: the eight checks for synchronized states.
            self._process_synchronized(seg, now)
        elif st is _CLOSED:
            # RFC 9293 3.10.7.1: CLOSED answers anything but a RST with a RST.
            if not f & RST:
                self._out.append(_reset_for(seg))
                self._dirty = True
            self.dropped += 1
        elif st is _LISTEN:
            if c & RST:
                # RFC 9293 3.10.7.2 first: an incoming RST is ignored.
                self.dropped += 1
            elif c & ACK:
                # RFC 9293 3.10.7.2 second: any ACK is bad here: <SEQ=SEG.ACK><CTL=RST>.
                self._out.append(Segment(seg.ack, 0, RST, 0))
                self._dirty = True
                self.dropped += 1
            elif c & SYN:
                self._listen_syn(seg, now)
            else:
                # RFC 9293 3.10.7.2 fourth: other control or text: drop.
                self.dropped += 1
        elif st is _SYN_SENT and c & ACK and not (
            self.iss < _unwrap(seg.ack, self.snd_una) <= self.snd_nxt
        ):
            # RFC 9293 3.10.7.3 first: unacceptable ACK: <SEQ=SEG.ACK><CTL=RST> unless RST.
            if not c & RST:
                self._out.append(Segment(seg.ack, 0, RST, 0))
                self._dirty = True
            self.dropped += 1
        elif st is _SYN_SENT and c & RST:
            # RFC 9293 3.10.7.3 second (RFC 5961 3.2): RST with an acceptable ACK refuses.
            if c & ACK:
                self._set_closed(_errno.ECONNREFUSED)
            else:
                self.dropped += 1
        elif st is _SYN_SENT and c & SYN:
            # RFC 9293 3.10.7.3 fourth: SYN (with ACK: established; without: simultaneous
            # open, RFC 9293 3.5 figure 8, go to SYN-RECEIVED and resend our SYN as SYN-ACK).
            self._syn_sent_syn(seg, now)
        else:
            # RFC 9293 3.10.7.3 fifth: neither SYN nor RST: drop.
            self.dropped += 1

    def _listen_syn(self, seg: Segment, now: float) -> None:
        """RFC 9293 3.10.7.2 third: SYN in LISTEN: select ISS, send SYN-ACK (at the next
        dispatch), enter SYN-RECEIVED."""
        self._init_send(now)
        self._take_syn(seg)
        self.snd_wnd = seg.window  # RFC 7323 2.2: the SYN window is never scaled
        self.max_snd_wnd = self.snd_wnd
        self.snd_wl1 = self.irs
        self.snd_wl2 = self.iss
        self.state = _SYN_RECEIVED
        self._had_connection = True
        self._need_syn = True
        self._dirty = True

    def passive_open(self, syn: Segment, now: float) -> None:
        """:meth:`listen` then :meth:`process` of ``syn``, for a demultiplexer that knows
        ``syn`` is a SYN without ACK, RST or FIN, on a new TCB: straight to SYN-RECEIVED."""
        self.state = _LISTEN  # listen()
        self.passive = True
        self.segments_in += 1
        self._listen_syn(syn, now)

    def rx_predicted(self, seq: int, ack: int, window: int, tsval: int | None, tsecr: int,
                     payload: bytes | bytearray | memoryview, now: float) -> bool:
        """Header prediction entry for a segment parsed by the caller (the stack's fused
        receive path): True if it was consumed, False (nothing changed) if it must go through
        :meth:`process` instead.

        The caller guarantees the flags are ACK, optionally with PSH/ECE/CWR (no SYN, FIN, RST
        or URG) and that the segment carries no SACK blocks; ``seq``/``ack`` are the 32-bit
        wire values, ``window`` the raw 16-bit field, ``tsval`` None without a Timestamps
        option.  The result is exactly what :meth:`process` does with the same segment.

        Header prediction covers the two bulk cases: (1) a pure ACK of new data, (2) in-order
        data that fits the window and needs no reassembly (possibly acking new data too), in
        ESTABLISHED outside loss recovery.  Both are exactly what the RFC 9293 3.10.7.4 steps
        would do for such segments.  :meth:`process` tries it first too.
        """
        rcv_nxt = self.rcv_nxt
        if (
            self.state is not _ESTABLISHED
            or seq != rcv_nxt & MASK
            or self._in_recovery
        ):
            return False
        if self.ts_ok:
            if tsval is None or (tsval - self.ts_recent) & MASK >= _HALF:
                return False
        else:
            tsval = None
        una = self.snd_una
        ack = una + ((ack - una + _HALF) & MASK) - _HALF
        plen = len(payload)
        if plen == 0:
            if not una < ack <= self.snd_nxt:
                return False
        elif (
            not una <= ack <= self.snd_nxt
            or self._ooo
            or self._ooo_fin >= 0
            or self._rd_closed
            or plen > self._rcv_adv - rcv_nxt
        ):
            return False
        if tsval is not None and self._last_ack_sent == rcv_nxt:
            self.ts_recent = tsval  # RFC 7323 4.3
        # window update: SND.WL1 <= SEG.SEQ and SND.WL2 <= SEG.ACK hold here
        self.snd_wl1 = rcv_nxt
        self.snd_wl2 = ack
        wnd = window << self.snd_wscale
        if wnd != self.snd_wnd:
            self.snd_wnd = wnd
            if wnd > self.max_snd_wnd:
                self.max_snd_wnd = wnd
            if wnd:
                self._persist_at = None
                self._persist_backoff = 0
            self._dirty = True
        self._last_rx = now
        self._probes = 0
        if self._keep_at is not None:
            self._reset_keepalive(now)
        if ack > una:
            self._ack_advance(tsecr, ack, now)
            if self._tlp_end >= 0:
                self._tlp_check(now)  # as _process_ack does: an ACKed probe ends the episode
        if plen:
            self._receive(rcv_nxt, payload, plen, now)
        self.segments_in += 1
        return True

    def rx_plain(self, seq: int, ack: int, flags: int, window: int, tsval: int | None,
                 tsecr: int, now: float) -> bool:
        """A segment without payload and without SACK blocks, parsed by the caller (the
        stack's fused receive path), for a TCB in SYN-RECEIVED (whose listener has room in
        its accept queue: the caller checks), ESTABLISHED, FIN-WAIT-1, FIN-WAIT-2, CLOSING,
        LAST-ACK or CLOSE-WAIT: True if it was consumed exactly as
        :meth:`process` would have (in order, acceptable ACK, FIN or not), False (nothing
        changed) if it must go through :meth:`process` instead (PAWS, out of order, a zero
        window, an ACK of unsent or very old data, a possible duplicate ACK...).

        The caller guarantees the flags are ACK, optionally with FIN, PSH, ECE or CWR (no SYN,
        RST or URG); ``seq``/``ack`` are the 32-bit wire values, ``window`` the raw field,
        ``tsval`` None without a Timestamps option.  These are the closing segments of a
        connection (a FIN, the ACK of ours) once header prediction declined them: the steps
        of RFC 9293 3.10.7.4 that :meth:`_process_synchronized` and :meth:`_process_ack` run
        for such a segment, without building a :class:`Segment`."""
        rcv_nxt = self.rcv_nxt
        if seq != rcv_nxt & MASK or self._rcv_adv <= rcv_nxt:
            return False  # (a zero window takes the general path)
        ts_ok = self.ts_ok
        if ts_ok and tsval is not None and (tsval - self.ts_recent) & MASK >= _HALF:
            return False  # PAWS
        una = self.snd_una
        nxt = self.snd_nxt
        ack = una + ((ack - una + _HALF) & MASK) - _HALF  # _unwrap inlined
        fin = flags & FIN
        if ack > nxt or ack < una - self.max_snd_wnd or (ack == una and nxt > una and not fin):
            return False  # unsent or too old data acknowledged, or maybe a duplicate ACK
        syn_received = self.state is _SYN_RECEIVED
        if syn_received and ack <= una:
            return False  # (not acceptable: answered with a RST)
        self.segments_in += 1
        # _process_synchronized from its acceptability test on (seq == RCV.NXT, no payload)
        self._last_rx = now
        self._probes = 0
        if self._keep_at is not None or self._keep_probes:
            self._reset_keepalive(now)
        if ts_ok and tsval is not None and rcv_nxt <= self._last_ack_sent:
            self.ts_recent = tsval
        if syn_received:
            # RFC 9293 3.10.7.4 fifth, SYN-RECEIVED: acceptable ACK -> ESTABLISHED
            self.state = _ESTABLISHED
            self._need_syn = False
            self._peer_syn_opts = None
            wnd = window << self.snd_wscale
            self.snd_wnd = wnd
            if wnd > self.max_snd_wnd:
                self.max_snd_wnd = wnd
            self.snd_wl1 = rcv_nxt
            self.snd_wl2 = ack
            self._reset_keepalive(now)
            if self._fin_queued:
                self.state = _FIN_WAIT_1
        # _process_ack without SACK blocks (no duplicate ACK: see above)
        old_wnd = self.snd_wnd
        wl1 = self.snd_wl1
        if wl1 < rcv_nxt or (wl1 == rcv_nxt and self.snd_wl2 <= ack):
            wnd = window << self.snd_wscale
            self.snd_wnd = wnd
            self.snd_wl1 = rcv_nxt
            self.snd_wl2 = ack
            if wnd > self.max_snd_wnd:
                self.max_snd_wnd = wnd
            if wnd != old_wnd:
                self._dirty = True
                if wnd:
                    self._persist_at = None
                    self._persist_backoff = 0
        if ack > una:
            self._ack_advance(tsecr, ack, now)
        if self._tlp_end >= 0:
            self._tlp_check(now)
        if self._fin_queued and self.snd_una > self._fin_seq and self._fin_acked(now):
            return True
        if fin:
            self._on_fin(now)  # (FIN at SEQ = RCV.NXT: in order)
        return True

    def _syn_sent_syn(self, seg: Segment, now: float) -> None:
        # a SYN-ACK establishes at once: no SYN-ACK of ours will need the peer's options
        self._take_syn(seg, not seg.flags & ACK)
        self.snd_wl1 = self.irs
        if seg.flags & ACK:
            ack = _unwrap(seg.ack, self.snd_una)
            self.snd_wnd = seg.window
            self.max_snd_wnd = self.snd_wnd
            self.snd_wl2 = ack
            if self.ts_ok and seg.tsecr:
                self._ts_rtt(seg.tsecr, now)
            elif self._rtt_seq >= 0:
                self._rtt_sample(now - self._rtt_time)
            self._rtt_seq = -1
            self._peer_syn_opts = None
            self.snd_una = ack
            self._high_rxt = self._lost_edge = ack
            self._rto_at = None
            self._retries = 0
            self._need_syn = False
            self.state = _ESTABLISHED
            self._ack_now = True
            self._reset_keepalive(now)
        else:
            self.snd_wnd = seg.window
            self.max_snd_wnd = self.snd_wnd
            self.state = _SYN_RECEIVED
            self._need_syn = True
        self._dirty = True

    def _process_synchronized(self, seg: Segment, now: float) -> None:
        f = seg.flags
        tsval = seg.tsval
        payload = seg.payload
        plen = len(payload)
        rcv_nxt = self.rcv_nxt
        seq = rcv_nxt + ((seg.seq - rcv_nxt + _HALF) & MASK) - _HALF  # _unwrap inlined
        seglen = plen + (1 if f & SYN else 0) + (f & FIN)  # (FIN is bit 0: 0 or 1)
        st = self.state
        # RFC 7323 5.3 (PAWS): a timestamp older than TS.Recent makes the segment unacceptable.
        if (
            self.ts_ok
            and tsval is not None
            and not f & RST
            and (tsval - self.ts_recent) & MASK >= _HALF
        ):
            if plen and self.sack_ok and seq < rcv_nxt:
                self._dsack_pending = (seq, min(seq + plen, rcv_nxt))  # as Linux: D-SACK
            self.dropped += 1
            self._ack_now = True
            self._dirty = True
            return
        if st is _SYN_RECEIVED and f & SYN and seq == self.irs:
            c = f & (SYN | ACK | RST | FIN)
            if c & (ACK | RST) == 0:
                # A retransmitted SYN: our SYN-ACK was probably lost; resend it at once (as
                # Linux does) instead of waiting for the SYN-ACK retransmission timer.
                self._need_syn = True
                self._dirty = True
                return
            if (
                c == SYN | ACK
                and not plen
                and not self.passive
                and _unwrap(seg.ack, self.snd_una) == self.snd_nxt
            ):
                # Simultaneous open (RFC 9293 3.5 figure 8; Linux tcp_validate_incoming
                # lets it pass): the peer's SYN-ACK of our SYN completes the open; taken
                # as its ACK at RCV.NXT, and acknowledged.
                seq = rcv_nxt
                seglen = 0
                f &= ~SYN
                self._ack_now = True
                self._dirty = True
        # First: sequence number check (RFC 9293 3.10.7.4, the four acceptability cases).
        wnd = self._rcv_adv - rcv_nxt
        if wnd < 0:
            wnd = 0
        if seglen == 0:
            ok = seq == rcv_nxt if wnd == 0 else rcv_nxt <= seq < rcv_nxt + wnd
        elif wnd == 0:
            ok = False
        else:
            ok = rcv_nxt <= seq < rcv_nxt + wnd or rcv_nxt <= seq + seglen - 1 < rcv_nxt + wnd
        if not ok:
            # RFC 9293 3.10.7.4: zero window still lets ACK and RST fields through when
            # SEG.SEQ == RCV.NXT; otherwise send <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> unless RST.
            if wnd == 0 and seq == rcv_nxt:
                if seglen:
                    # a zero-window probe (its text not acceptable): ACK it (RFC 9293 3.8.6.1;
                    # Linux at once), so a sender whose window update was lost hears of it
                    self._ack_now = True
                    self._dirty = True
                payload = b""
                plen = 0
                f &= ~(FIN | SYN)
            else:
                self.dropped += 1
                if not f & RST:
                    dup = plen + (f & FIN)
                    if (dup and not f & SYN and self.sack_ok and seq + dup <= rcv_nxt
                            and (plen or st is not _TIME_WAIT)):
                        # RFC 2883 4.1.1: D-SACK of the duplicate's sequence space, its
                        # FIN included (Linux tcp_send_dupack: a duplicate FIN too; not
                        # Linux's TIME-WAIT, nor a SYN: a challenge ACK)
                        self._dsack_pending = (seq, seq + dup)
                    if st is _TIME_WAIT and f & FIN:
                        # RFC 9293 3.10.7.4 eighth (TIME-WAIT): retransmitted FIN: restart 2MSL.
                        self._close_at = now + self.policy.time_wait
                    self._ack_now = True
                    self._dirty = True
                return
        # Second: RST (RFC 9293 3.10.7.4 second, RFC 5961 3.2).
        if f & RST:
            if seq != rcv_nxt:
                # RFC 5961 3.2: in-window but not exact: challenge ACK.
                self._challenge_ack(now)
                self.dropped += 1
                return
            if st is _SYN_RECEIVED:
                # Passive open: back to nothing (the listener keeps listening); active
                # (simultaneous) open: connection refused.
                self._set_closed(None if self.passive else _errno.ECONNREFUSED)
            elif st is _ESTABLISHED or st is _FIN_WAIT_1 or st is _FIN_WAIT_2:
                self._set_closed(_errno.ECONNRESET)
            elif st is _CLOSE_WAIT:
                # as Linux (tcp_reset): the peer had finished sending; what is left to fail
                # is our sending side
                self._set_closed(_errno.EPIPE)
            else:
                # CLOSING, LAST-ACK, TIME-WAIT: just close.
                self._set_closed()
            return
        # Fourth: SYN in a synchronized state (RFC 9293 3.10.7.4 fourth, RFC 5961 4.2).
        if f & SYN:
            self.dropped += 1
            if st is _SYN_RECEIVED and self.passive:
                # As Linux (tcp_check_req, embryonic_reset; RFC 9293 3.10.7.4 fourth: back
                # to LISTEN): a SYN in the window of a passive open's SYN-RECEIVED resets
                # the half-open connection (<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>, or
                # <SEQ=SEG.ACK><CTL=RST> with an ACK), unless its ACK is wrong (the
                # listener's answer then: <SEQ=SEG.ACK><CTL=RST>, the connection stays).
                self._out.append(_reset_for(seg))
                self._dirty = True
                if not f & ACK or _unwrap(seg.ack, self.snd_una) == self.snd_nxt:
                    self._set_closed(None)
                return
            self._challenge_ack(now)
            return
        # Fifth: ACK field.
        if not f & ACK:
            self.dropped += 1
            return
        # Trim data already received (RFC 9293 3.10.7.4, "segments ... trimmed").
        if seq < rcv_nxt:
            cut = rcv_nxt - seq
            if plen and self.sack_ok:
                self._dsack_pending = (seq, min(seq + plen, rcv_nxt))  # RFC 2883 4.1.1
            if cut >= plen:
                payload = b""
                plen = 0
            else:
                payload = payload[cut:]
                plen -= cut
            seq = rcv_nxt
        edge = self._rcv_adv
        if seq + plen > edge:
            keep = max(0, edge - seq)
            payload = payload[:keep]
            plen = keep
            f &= ~FIN
        self._last_rx = now
        self._probes = 0
        if self._keep_at is not None or self._keep_probes:
            self._reset_keepalive(now)
        # RFC 7323 4.3: TS.Recent <- SEG.TSval if SEG.SEQ <= Last.ACK.sent; in TIME-WAIT
        # whatever the ACK (as Linux's tcp_timewait_state_process and the compact TIME-WAIT),
        # in the other states once the ACK is acceptable too (below)
        ts_take = self.ts_ok and tsval is not None and seq <= self._last_ack_sent
        if ts_take and st is _TIME_WAIT:
            self.ts_recent = tsval  # type: ignore[assignment]
        una = self.snd_una
        ack = una + ((seg.ack - una + _HALF) & MASK) - _HALF  # _unwrap inlined
        if st is _SYN_RECEIVED:
            # RFC 9293 3.10.7.4 fifth, SYN-RECEIVED: acceptable ACK -> ESTABLISHED.
            if not self.snd_una < ack <= self.snd_nxt:
                self._out.append(Segment(seg.ack, 0, RST, 0))
                self._dirty = True
                self.dropped += 1
                return
            self.state = st = _ESTABLISHED
            self._need_syn = False
            self._peer_syn_opts = None
            self.snd_wnd = seg.window << self.snd_wscale
            self.max_snd_wnd = max(self.max_snd_wnd, self.snd_wnd)
            self.snd_wl1 = seq
            self.snd_wl2 = ack
            self._reset_keepalive(now)
            if self._fin_queued:
                self.state = st = _FIN_WAIT_1
        if ack > self.snd_nxt:
            # RFC 9293 3.10.7.4 fifth: ACK for data not yet sent: send ACK, drop.
            self._ack_now = True
            self._dirty = True
            self.dropped += 1
            return
        if ack < self.snd_una - self.max_snd_wnd:
            # RFC 5961 5.2: too old an ACK: challenge ACK, drop.
            self._challenge_ack(now)
            self.dropped += 1
            return
        if ts_take:
            # (as Linux: a blind segment dropped above for its ACK must not move TS.Recent,
            # or PAWS would then drop the real peer's segments)
            self.ts_recent = tsval  # type: ignore[assignment]
        self._process_ack(seg, seq, ack, plen, f, now)
        if self.state is _CLOSED:
            return
        st = self.state
        # Seventh: segment text (RFC 9293 3.10.7.4 seventh).
        if plen:
            if st in _RECV_DATA_STATES:
                if self._rd_closed:
                    # RFC 1122 4.2.2.13 / RFC 9293 3.10.7.4: data after CLOSE: reset,
                    # as Linux (tcp_rcv_state_process, then tcp_v4_send_reset answering
                    # the segment): <SEQ=SEG.ACK><CTL=RST>, exactly the peer's RCV.NXT
                    # (SND.NXT is not while the peer has not seen our FIN); the segment
                    # has ACK here, so _reset_for gives that form
                    self._out.append(_reset_for(seg))
                    self._set_closed(_errno.ECONNRESET)
                    return
                self._receive(seq, payload, plen, now)
                if f & URG:
                    # Sixth: URG (RFC 9293 3.10.7.4 sixth; Linux tcp_urg): a new urgent
                    # pointer, taken from segments with text (the segment holding the
                    # urgent byte always has URG); after the text, with RCV.NXT as it was
                    # before it: the urgent byte stays in the receive queue, where the
                    # reader meets it (see UrgentConnection)
                    self._urgent_in(seg, rcv_nxt)
            elif st is _TIME_WAIT:
                # the FIN came already: ignore the text, ACK (as Linux's TIME-WAIT)
                self._ack_now = True
                self._dirty = True
            else:
                # CLOSE-WAIT, CLOSING, LAST-ACK: text after the peer's FIN: ignored silently
                # (RFC 9293 3.10.7.4 seventh; Linux tcp_rcv_state_process), a FIN on it too
                self.dropped += 1
                f &= ~FIN
        # Eighth: FIN (RFC 9293 3.10.7.4 eighth).
        if f & FIN:
            fin_at = seq + plen
            if fin_at == self.rcv_nxt:
                self._on_fin(now)
            elif fin_at > self.rcv_nxt:
                self._ooo_fin = fin_at
                self._ack_now = True
                self._dirty = True

    def _process_ack(self, seg: Segment, seq: int, ack: int, plen: int, f: int,
                     now: float) -> None:
        """RFC 9293 3.10.7.4 fifth (ESTABLISHED and later), RFC 5681, 6582, 6675, 6298."""
        snd_una = self.snd_una
        newly_sacked = 0
        dsack = False
        if seg.sack and self.sack_ok:
            dsack = self._dsack(seg.sack, ack)
            newly_sacked = self._sack_update(seg.sack, ack)
            if self._rtx_log and newly_sacked:
                self._rack_detect(now)
        old_wnd = self.snd_wnd
        # Window update (RFC 9293 3.10.7.4: SND.WL1 < SEG.SEQ or (= and SND.WL2 =< SEG.ACK)).
        if self.snd_wl1 < seq or (self.snd_wl1 == seq and self.snd_wl2 <= ack):
            wnd = seg.window << self.snd_wscale
            self.snd_wnd = wnd
            self.snd_wl1 = seq
            self.snd_wl2 = ack
            if wnd > self.max_snd_wnd:
                self.max_snd_wnd = wnd
            if wnd != old_wnd:
                self._dirty = True
                if wnd:
                    self._persist_at = None
                    self._persist_backoff = 0
        if ack > snd_una:
            self._ack_advance(seg.tsecr, ack, now)
        elif ack == snd_una and self.snd_nxt > snd_una:
            # RFC 5681 2 (duplicate ACK) / RFC 6675 (ACK carrying new SACK information).
            # A D-SACK alone reports a duplicate, not a hole: no duplicate ACK (RFC 2883 5).
            if newly_sacked or (not plen and not f & FIN and self.snd_wnd == old_wnd
                                and not dsack):
                self._dupacks += 1
                self._on_dupack(now)
            elif self._in_recovery and newly_sacked:
                self._dirty = True
        if self._tlp_end >= 0:
            self._tlp_check(now)
        if self._fin_queued and self.snd_una > self._fin_seq:
            self._fin_acked(now)

    def _fin_acked(self, now: float) -> bool:
        """Our FIN is acknowledged (RFC 9293 3.10.7.4 fifth): FIN-WAIT-1 -> FIN-WAIT-2,
        CLOSING -> TIME-WAIT, LAST-ACK -> CLOSED (True: the connection is closed)."""
        st = self.state
        if st is _FIN_WAIT_1:
            self.state = _FIN_WAIT_2
            if self._user_closed:
                self._close_at = now + self.policy.fin_timeout
        elif st is _CLOSING:
            self._enter_time_wait(now)
        elif st is _LAST_ACK:
            self._set_closed()
            return True
        return False

    def _ack_advance(self, tsecr: int, ack: int, now: float) -> None:
        acked = ack - self.snd_una
        # RTT: timestamps (RFC 7323 4.1) or one timed segment with Karn's rule (RFC 6298 3).
        if self.ts_ok and tsecr:
            self._ts_rtt(tsecr, now)
        elif self._rtt_seq >= 0 and ack >= self._rtt_seq:
            self._rtt_sample(now - self._rtt_time)
            self._rtt_seq = -1
        self.snd_una = ack
        # release acknowledged bytes
        data_acked = min(ack, self._sseq + len(self._sbuf) - self._shead) - self._sseq
        if data_acked > 0:
            self._shead += data_acked
            self._sseq += data_acked
            if self._shead == len(self._sbuf):
                self._sbuf = bytearray()
                self._shead = 0
            elif self._shead >= 65536 and self._shead * 2 >= len(self._sbuf):
                del self._sbuf[: self._shead]
                self._shead = 0
        if self._sacked:
            self._sack_trim(ack)
        if self._rtx_log:
            self._rtx_log = [r for r in self._rtx_log if r[1] > ack]
        if self._high_rxt < ack:
            self._high_rxt = ack
        self._retries = 0
        self._dupacks = 0
        self._persist_backoff = 0
        self._tlp_at = None
        # RFC 6298 5.2 / 5.3: stop the timer when all is acked, else restart it.
        self._rto_at = None if ack >= self.snd_nxt else now + self.rto
        flight = self.snd_nxt - ack
        if self._in_recovery:
            if ack >= self._recover:
                # RFC 6582 3.2 step 3: full acknowledgment ends recovery.
                self._in_recovery = False
                self._inflate = 0
                self.cc.on_recovery_end(now, flight)
            elif not self.sack_ok:
                # RFC 6582 3.2 step 4: partial ACK: retransmit the next segment, deflate.
                self._lost_edge = max(self._lost_edge, min(ack + self.mss, self.snd_nxt))
                self._inflate = self._inflate - acked + self.mss
                self._rtx_force = True
            else:
                self._update_lost_edge()
                self._rtx_force = self._lost_edge > ack and self._high_rxt <= ack
        else:
            cc = self.cc
            # RFC 7661 / RFC 9438 5.8: grow only while cwnd limits the sender; in slow start
            # also while cwnd is below twice the largest recent flight (Linux
            # tcp_is_cwnd_limited), so an application- or rwnd-limited flow keeps its cwnd.
            if self._cwnd_limited or (cc.cwnd < cc.ssthresh and cc.cwnd < 2 * self._max_flight):
                cc.on_ack(acked, now, self.srtt, flight)
            else:
                cc.on_app_limited(now)
        self._dirty = True

    def _on_fin(self, now: float) -> None:
        """RFC 9293 3.10.7.4 eighth: FIN advances RCV.NXT and changes state."""
        self.rcv_nxt += 1
        self._rcv_eof = True
        self._dirty = True
        st = self.state
        if st is _ESTABLISHED or st is _SYN_RECEIVED:
            self.state = _CLOSE_WAIT
            if DELAYED_FIN_ACK:
                # As Linux (tcp_fin: CLOSE-WAIT in pingpong mode, then a delayed ACK): the
                # ACK of the FIN waits for the application's answer, usually its own FIN
                # (close) or a reply, which carries it; else it goes at the delayed-ACK
                # timer (RFC 1122 4.2.3.2), or earlier if one is running already.
                if self._ack_at is None:
                    self._ack_at = now + self.policy.delayed_ack
                return
            self._ack_now = True
            return
        self._ack_now = True
        if st is _FIN_WAIT_1:
            if self._fin_queued and self.snd_una > self._fin_seq:
                self._enter_time_wait(now)
            else:
                self.state = _CLOSING  # simultaneous close (RFC 9293 3.6 figure 13)
        elif st is _FIN_WAIT_2:
            self._enter_time_wait(now)
        elif st is _TIME_WAIT:
            self._close_at = now + self.policy.time_wait

    def _take_syn(self, syn: Segment, keep: bool = True) -> None:
        """The peer's SYN: IRS, RCV.NXT and the options (RFC 9293 3.7.1, RFC 7323 2.2/3.2,
        RFC 2018 2).  Its options are kept (``keep``) for our SYN-ACK and its retransmissions."""
        irs = self.irs = syn.seq
        self.rcv_nxt = self._rcv_adv = self._last_ack_sent = irs + 1
        mss = syn.mss
        wscale = syn.wscale
        tsval = syn.tsval
        if keep:
            # (positional options: mss, wscale, sack_perm, tsval; see Segment.__init__)
            self._peer_syn_opts = Segment(irs, 0, SYN, 0, b"", mss, wscale, syn.sack_perm,
                                          tsval)
        p = self.policy
        if not mss:
            mss = 1220 if len(self.remote[0]) == 16 else 536  # (the peer's default MSS)
        if wscale is not None and p.window_scaling:
            self.snd_wscale = wscale if wscale < _MAX_WSCALE else _MAX_WSCALE
        else:
            self.snd_wscale = 0
            self.rcv_wscale = 0
        self.sack_ok = syn.sack_perm and p.sack
        ts_ok = self.ts_ok = tsval is not None and p.timestamps
        if ts_ok and tsval is not None:
            self.ts_recent = tsval
        if mss > self.mss_local:
            mss = self.mss_local
        if ts_ok:
            mss -= 12
        if mss < 64:
            mss = 64
        self.mss = self._mss_max = mss
        self._rcv_mss = mss if mss < 536 else 536
        self.cc.set_mss(mss)

    def _challenge_ack(self, now: float) -> None:
        # RFC 5961 section 7: rate-limit challenge ACKs.
        if now - self._chal_window >= 1.0:
            self._chal_window = now
            self._chal_count = 0
        if self._chal_count < self.policy.challenge_ack_limit:
            self._chal_count += 1
            self.challenge_acks += 1
            self._ack_now = True
            self._dirty = True

    def icmp_error(self, seq: int, err: int, now: float) -> None:
        """An ICMP error (converted to ``err``) quoting our segment with sequence number
        ``seq`` (RFC 5927).

        Only quotes with SND.UNA <= seq < SND.NXT are believed.  Like Linux ``tcp_v4_err`` /
        ``tcp_v6_err``: in SYN-SENT any such error aborts the attempt with ``err``
        (ECONNREFUSED, ENETUNREACH, EHOSTUNREACH, EACCES...); in other states it is soft
        (RFC 1122 4.2.3.9): remembered and reported instead of ETIMEDOUT if the connection
        later times out.  ``err`` 0 (fragmentation needed, packet too big) is no error.
        """
        if not err:
            return
        s = _unwrap(seq, self.snd_una)
        if not self.snd_una <= s < self.snd_nxt:
            return
        if self.state is _SYN_SENT:
            self._set_closed(err)
        else:
            self._soft_error = err
