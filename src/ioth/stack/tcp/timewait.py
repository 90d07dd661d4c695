"""Compact TIME-WAIT: what is left of a connection after both FINs (Linux timewait sockets).

A TCB in TIME-WAIT only answers the peer and waits 2*MSL; it keeps no buffers, no timers but
one and none of the congestion or recovery state, yet a full :class:`TcpConnection` weighs
about 2.6 KB.  :class:`TimeWait` keeps what TIME-WAIT needs (sequence numbers, the window it
advertises, the timestamp state, the expiry) and answers segments as the full TCB does in
that state (RFC 9293 3.10.7.4): :meth:`TimeWait.input` returns a verdict and the ACK to send;
the demultiplexer (:class:`~ioth.stack.tcp.layer.TcpLayer`) replaces the TCB with one when it
is safe (nothing unread, nothing owed) and expires them in order (a deque per TIME-WAIT
length, no timer per entry).

Rules (the full TCB's, so that compact and full TIME-WAIT send the same frames):

* PAWS (RFC 7323 5.3): an older timestamp is answered with an ACK (D-SACK for data).
* A segment outside the window gets an ACK (not a RST); a retransmitted FIN also restarts
  the 2*MSL timer (RFC 9293 3.10.7.4 first and eighth).
* A RST with SEQ = RCV.NXT ends TIME-WAIT (as Linux with ``tcp_rfc1337=0``); another
  in-window RST or SYN gets a challenge ACK (RFC 5961).
* A SYN without ACK reuses the 4-tuple (:func:`syn_reuses`: RFC 6191 with timestamps,
  otherwise a sequence number above RCV.NXT, as Linux ``tcp_timewait_state_process``).
* Data or an ACK of something never sent gets an ACK; a duplicate ACK is absorbed.
"""

from __future__ import annotations

from ioth.stack.tcp.info import TcpInfo
from ioth.stack.tcp.policy import TcpPolicy
from ioth.stack.tcp.segment import ACK, FIN, RST, SYN, Segment
from ioth.stack.tcp.state import _HALF, _TIME_WAIT, MASK

#: verdicts of :meth:`TimeWait.input`
TW_KEEP = 0
"""Handled (maybe with an ACK to send); the entry stays."""
TW_CLOSE = 1
"""A RST ended TIME-WAIT: forget the entry."""
TW_REUSE = 2
"""A new SYN may take the 4-tuple: forget the entry and give the SYN to the listener."""
TW_CHALLENGE = 3
"""Send a challenge ACK (RFC 5961) if the rate limit allows it (:meth:`TimeWait.ack`)."""


def syn_reuses(seq: int, tsval: int | None, rcv_nxt: int, ts_ok: bool, ts_recent: int) -> bool:
    """A SYN (no ACK, no RST) may reopen a TIME-WAIT 4-tuple (32-bit ``seq``/``rcv_nxt``).

    Like Linux ``tcp_timewait_state_process``: never when PAWS rejects its timestamp (older
    than TS.Recent), yes when the timestamp is newer (RFC 6191), otherwise when its sequence
    number is above RCV.NXT (RFC 9293 3.10.7.4 / RFC 1122 4.2.2.13)."""
    if ts_ok and tsval is not None:
        d = (tsval - ts_recent) & MASK
        if d >= _HALF:
            return False
        if d:
            return True
    return 0 < (seq - rcv_nxt) & MASK < _HALF


class TimeWait:
    """One connection in TIME-WAIT, compact (about a tenth of a TCB).

    Sequence numbers are 32-bit wire values; ``wnd`` is the advertised right edge minus
    RCV.NXT and ``free``/``step`` what the receiver's SWS rule needs to move it (see
    ``OutputMixin._mkseg``); ``ts_offset`` is None without timestamps."""

    __slots__ = (
        "bind_flags",
        "expiry",
        "free",
        "key",
        "max_snd_wnd",
        "policy",
        "queued",
        "rcv_nxt",
        "sack_ok",
        "snd_nxt",
        "step",
        "ts_last",
        "ts_offset",
        "ts_recent",
        "wnd",
        "ws",
    )

    def __init__(self, key: tuple[bytes, int, bytes, int], policy: TcpPolicy, snd_nxt: int,
                 rcv_nxt: int, wnd: int, free: int, step: int, ws: int, ts_recent: int,
                 ts_offset: int | None, ts_last: int, sack_ok: bool, max_snd_wnd: int,
                 expiry: float) -> None:
        self.key = key
        """(local address, local port, remote address, remote port): the table's key."""
        self.policy = policy
        self.snd_nxt = snd_nxt
        self.rcv_nxt = rcv_nxt
        self.wnd = wnd
        self.free = free
        self.step = step
        self.ws = ws
        self.ts_recent = ts_recent
        self.ts_offset = ts_offset
        self.ts_last = ts_last
        self.sack_ok = sack_ok
        self.max_snd_wnd = max_snd_wnd
        self.expiry = expiry
        """When TIME-WAIT ends (2*MSL after the last FIN)."""
        self.queued = 1
        """Occurrences in the layer's expiry deque (a restart appends one more)."""
        self.bind_flags = 0
        """The closed socket's BIND_* flags (its port stays bound while TIME-WAIT lasts)."""

    state = _TIME_WAIT
    listener = None

    def __repr__(self) -> str:
        return f"<TimeWait {self.key[1]}->{self.key[3]} until {self.expiry:.3f}>"

    @property
    def local(self) -> tuple[bytes, int]:
        """Local (address, port)."""
        return self.key[0], self.key[1]

    @property
    def remote(self) -> tuple[bytes, int]:
        """Remote (address, port)."""
        return self.key[2], self.key[3]

    def info(self) -> TcpInfo:
        """An ``ss -ti``-like snapshot (counters of the full TCB are not kept: zero)."""
        mss = 536
        return TcpInfo(
            state=_TIME_WAIT, local=self.local, remote=self.remote,
            cc=self.policy.congestion_control, cwnd=mss, ssthresh=1 << 62, srtt=None,
            rttvar=None, rto=self.policy.initial_rto, mss=mss, snd_wscale=0,
            rcv_wscale=self.ws, sack=self.sack_ok, timestamps=self.ts_offset is not None,
            bytes_in_flight=0, send_queue=0, recv_queue=0, retransmissions=0,
            rto_expirations=0, fast_recoveries=0, segments_in=0, segments_out=0, dropped=0,
            error=None,
        )

    def ack(self, now: float, sack: tuple[tuple[int, int], ...] | None = None) -> Segment:
        """<SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> with the window and options the TCB would
        send (its ``_mkseg``: receiver SWS rule, TSval never going backwards)."""
        w = self.wnd
        free = self.free
        if free > w and (free - w >= self.step or (w <= 0 and free >= self.step)):
            self.wnd = w = free
        window = 0 if w <= 0 else min(w >> self.ws, 0xFFFF)
        off = self.ts_offset
        if off is None:
            return Segment(self.snd_nxt, self.rcv_nxt, ACK, window, b"", None, None, False,
                           None, 0, sack)
        ms = int(now * 1000)
        if ms < self.ts_last:
            ms = self.ts_last
        self.ts_last = ms
        return Segment(self.snd_nxt, self.rcv_nxt, ACK, window, b"", None, None, False,
                       (ms + off) & MASK, self.ts_recent, sack)

    def input(self, seg: Segment, now: float) -> tuple[int, Segment | None]:
        """A segment for this 4-tuple: the verdict (``TW_*``) and the ACK to send, if any."""
        f = seg.flags
        rcv = self.rcv_nxt
        ts_ok = self.ts_offset is not None
        tsval = seg.tsval
        if f & (SYN | ACK | RST) == SYN and syn_reuses(seg.seq, tsval, rcv, ts_ok,
                                                        self.ts_recent):
            return TW_REUSE, None
        plen = len(seg.payload)
        d = ((seg.seq - rcv + _HALF) & MASK) - _HALF  # SEG.SEQ - RCV.NXT
        if ts_ok and tsval is not None and not f & RST and (
                tsval - self.ts_recent) & MASK >= _HALF:
            # RFC 7323 5.3 (PAWS): old timestamp: ACK (D-SACK for old data) and drop
            sack = None
            if plen and self.sack_ok and d < 0:
                sack = ((seg.seq, (rcv + min(d + plen, 0)) & MASK),)
            return TW_KEEP, self.ack(now, sack)
        seglen = plen + (1 if f & SYN else 0) + (1 if f & FIN else 0)
        wnd = self.wnd if self.wnd > 0 else 0
        if seglen == 0:
            ok = d == 0 if wnd == 0 else 0 <= d < wnd
        elif wnd == 0:
            ok = False
        else:
            ok = 0 <= d < wnd or 0 <= d + seglen - 1 < wnd
        if not ok:
            if wnd == 0 and d == 0:
                plen = 0
                f &= ~(FIN | SYN)
            else:
                if f & RST:
                    return TW_KEEP, None
                sack = None
                if plen and self.sack_ok and d + plen <= 0:
                    sack = ((seg.seq, (seg.seq + plen) & MASK),)  # RFC 2883 4.1.1
                if f & FIN:
                    self.expiry = now + self.policy.time_wait  # retransmitted FIN: 2*MSL again
                return TW_KEEP, self.ack(now, sack)
        if f & RST:
            return (TW_CLOSE if d == 0 else TW_CHALLENGE), None
        if f & SYN:
            return TW_CHALLENGE, None
        if not f & ACK:
            return TW_KEEP, None
        dsack = None
        if d < 0:
            if plen and self.sack_ok:
                dsack = ((seg.seq, (rcv + min(d + plen, 0)) & MASK),)
            plen = plen + d if plen + d > 0 else 0
            d = 0
        if d + plen > self.wnd:
            plen = self.wnd - d if self.wnd > d else 0
            f &= ~FIN
        if ts_ok and tsval is not None and d <= 0:
            self.ts_recent = tsval  # RFC 7323 4.3 (SEG.SEQ <= Last.ACK.sent = RCV.NXT)
        a = ((seg.ack - self.snd_nxt + _HALF) & MASK) - _HALF
        if a > 0:
            return TW_KEEP, self.ack(now, dsack)  # ACK of something never sent
        if a < -self.max_snd_wnd:
            return TW_CHALLENGE, None  # RFC 5961 5.2
        owe = plen > 0  # data after the FIN: ACK it, take nothing
        if f & FIN:
            fin_at = d + plen
            if fin_at == 0:
                self.rcv_nxt = (rcv + 1) & MASK  # as the TCB (RFC 9293 3.10.7.4 eighth)
                self.wnd -= 1
                self.expiry = now + self.policy.time_wait
                owe = True
            elif fin_at > 0:
                owe = True
        return TW_KEEP, (self.ack(now, dsack) if owe else None)
