"""The TCP protocol core: one transmission control block (TCB), sans-IO.

Rules of this package's TCB code (h11 style):

* Pure.  Every entry point takes ``now`` (seconds, float, monotonic); randomness and the ISN
  secret come from the injected :class:`~ioth.stack.tcp.isn.IsnGenerator`.  No time, socket,
  select or threading calls.
* Entry points in the spirit of smoltcp's ``socket/tcp.rs``: :meth:`TcpConnection.process`
  feeds one incoming segment, :meth:`TcpConnection.dispatch` returns what to send now and fires
  due timers, :meth:`TcpConnection.poll_at` says when ``dispatch`` must run next.  The user calls
  are :meth:`connect`, :meth:`listen`, :meth:`send`, :meth:`recv`, :meth:`shutdown`,
  :meth:`close` and :meth:`abort`.
* Sequence numbers are kept *unwrapped* (plain unbounded ints) inside the TCB: incoming 32-bit
  values are unwrapped next to RCV.NXT / SND.UNA, outgoing ones masked.  Comparisons are then
  ordinary ``<``.
* User errors raise ``OSError`` with an errno (``ECONNREFUSED``, ``ETIMEDOUT``, ``ECONNRESET``,
  ``EPIPE``, ``ENOTCONN``, ``EISCONN``, ``EAGAIN``/``BlockingIOError``).  Remote protocol errors
  never raise: the segment is dropped (and counted), or answered with an ACK or RST.

:class:`TcpConnection` is one class assembled from mixins, one module per concern; all of them
share the slots and ``__init__`` of :class:`~ioth.stack.tcp.tcb.TcbBase`, so a method call or
field access costs the same as in a single class:

=====================================  ========================================================
:mod:`ioth.stack.tcp.state`            ``State``, sequence constants, ``reset_for``
:mod:`ioth.stack.tcp.info`             ``TcpInfo`` (``ss -ti`` snapshot)
:mod:`ioth.stack.tcp.tcb`              fields, ``__init__``, shared transitions (close, TIME-WAIT)
:mod:`ioth.stack.tcp.input`            segment arrival, ACK processing, RFC 5961 checks, FIN
:mod:`ioth.stack.tcp.output`           ``poll_at``/``dispatch``, segment building, Nagle/SWS,
                                       window updates, delayed ACK, persist/zero-window probes
:mod:`ioth.stack.tcp.recovery`         SACK scoreboard, NewReno/RFC 6675, RTO, TLP, early
                                       retransmit, RTT, timers (keepalive, TIME-WAIT)
:mod:`ioth.stack.tcp.buffers`          send/recv, receive queue, out-of-order reassembly
this module                            the user calls (open, close, options) and introspection
=====================================  ========================================================

``MASK``, ``State``, ``TcpInfo`` and ``reset_for`` are re-exported here.
"""

from __future__ import annotations

import errno as _errno

from ioth.stack.tcp.buffers import BufferMixin
from ioth.stack.tcp.cc import make_cc
from ioth.stack.tcp.info import TcpInfo
from ioth.stack.tcp.input import InputMixin
from ioth.stack.tcp.output import OutputMixin
from ioth.stack.tcp.policy import TcpPolicy
from ioth.stack.tcp.recovery import RecoveryMixin
from ioth.stack.tcp.segment import ACK, FIN, RST, SYN, URG, Segment, urgent
from ioth.stack.tcp.state import (
    _CLOSE_WAIT,
    _CLOSED,
    _ESTABLISHED,
    _FIN_WAIT_1,
    _FIN_WAIT_2,
    _HALF,
    _LAST_ACK,
    _LISTEN,
    _MAX_WSCALE,
    _SYN_RECEIVED,
    _SYN_SENT,
    _SYNCHRONIZED,
    _TIME_WAIT,
    MASK,
    State,
    _oserror,
    reset_for,
)

__all__ = ["MASK", "State", "TcpConnection", "TcpInfo", "UrgentConnection", "reset_for"]

# UrgentConnection._urg_state: no urgent byte, one the reader has not taken (out of band)
# yet (it may not have arrived: RCV.UP beyond RCV.NXT), one taken by recv_urgent
_URG_NONE = 0
_URG_PENDING = 1
_URG_READ = 2


class TcpConnection(InputMixin, OutputMixin, RecoveryMixin, BufferMixin):
    """One TCP connection (a TCB) driven by segments, user calls and the clock."""

    __slots__ = ()

    #: True once the connection met urgent data (see :class:`UrgentConnection`)
    urgent_mode = False

    def __repr__(self) -> str:
        return f"<TcpConnection {self.state} {self.local[1]}->{self.remote[1]}>"

    # -- urgent data (RFC 9293 3.8.5, RFC 6093; Linux's semantics) ----------------------------
    def _urgent_start(self) -> UrgentConnection:
        """Become an :class:`UrgentConnection` (the same object, its urgent slots set)."""
        self.__class__ = UrgentConnection
        self._urg_state = _URG_NONE
        self._urg_seq = 0
        self._urg_inline = False
        self._urg_up = self.snd_una
        return self  # type: ignore[return-value]

    def _urgent_in(self, seg: Segment, rcv_nxt: int) -> None:
        """A segment with URG arrived (input's sixth step); ``rcv_nxt``: RCV.NXT before its
        text was queued."""
        self._urgent_start()._urgent_in(seg, rcv_nxt)

    def send_urgent(self, data: bytes | bytearray | memoryview) -> int:
        """SEND with the URGENT flag (send(MSG_OOB)): queue what :meth:`send` takes of
        ``data`` and make its last byte urgent: SND.UP is the sequence number after it (the
        urgent pointer points one past the urgent byte, as BSD and Linux, RFC 6093).  The
        segments sent before SND.UP is acknowledged carry URG and the pointer (at most
        65535 ahead of their sequence number); Nagle waits for nothing meanwhile."""
        n = self.send(data)
        if n:
            conn = self._urgent_start() if not self.urgent_mode else self
            conn._urg_up = self._sseq + len(self._sbuf) - self._shead
        return n

    def recv_urgent(self, peek: bool = False) -> bytes:
        """recv(MSG_OOB): the urgent byte held out of band.  EINVAL without one (none came,
        it was read already, or SO_OOBINLINE), EAGAIN while the urgent pointer is known but
        its byte has not arrived yet, b"" then if the stream ended; ``peek``: leave it."""
        raise _oserror(_errno.EINVAL, "no urgent data")

    @property
    def oob_inline(self) -> bool:
        """SO_OOBINLINE: the urgent byte stays in the stream (recv_urgent: EINVAL)."""
        return False

    @oob_inline.setter
    def oob_inline(self, on: bool) -> None:
        if on:
            self._urgent_start()._urg_inline = True

    @property
    def at_mark(self) -> bool:
        """SIOCATMARK: the next byte :meth:`recv` would meet is the urgent byte."""
        return False

    @property
    def urgent_ready(self) -> bool:
        """An urgent byte has arrived and was not read yet (POLLPRI)."""
        return False

    @property
    def urgent_offset(self) -> int:
        """Bytes of the receive queue before the urgent byte when that byte is queued and
        still to be taken out of band; -1 otherwise."""
        return -1

    def drop_mark(self) -> bool:
        """What a read does first when it starts at the urgent byte (not inline): drop that
        byte (taken out of band or not); True if it did.  No pending error is raised."""
        return False

    @property
    def readable(self) -> bool:
        """recv() would not raise BlockingIOError (data, end of stream or an error)."""
        return self._rlen > 0 or self._rcv_eof or self.error is not None or (
            self.state is _CLOSED and self._had_connection
        )

    @property
    def writable(self) -> bool:
        """send() would not raise BlockingIOError."""
        if self.error is not None or self._fin_queued:
            return True
        return self.state in (_ESTABLISHED, _CLOSE_WAIT) and self.send_space > 0

    @property
    def eof(self) -> bool:
        """The peer's FIN was received and all data before it was read."""
        return self._rcv_eof and self._rlen == 0

    @property
    def is_open(self) -> bool:
        """Not CLOSED (the demultiplexer still needs this TCB)."""
        return self.state is not _CLOSED

    def info(self) -> TcpInfo:
        """Counters and estimates for an ``ss -ti``-like listing."""
        return TcpInfo(
            state=self.state,
            local=self.local,
            remote=self.remote,
            cc=self.cc.name,
            cwnd=self.cc.cwnd,
            ssthresh=self.cc.ssthresh,
            srtt=self.srtt,
            rttvar=self.rttvar,
            rto=self.rto,
            mss=self.mss,
            snd_wscale=self.snd_wscale,
            rcv_wscale=self.rcv_wscale,
            sack=self.sack_ok,
            timestamps=self.ts_ok,
            bytes_in_flight=self.snd_nxt - self.snd_una,
            send_queue=self.send_queue,
            recv_queue=self._rlen,
            retransmissions=self.retransmissions,
            rto_expirations=self.rto_expirations,
            fast_recoveries=self.fast_recoveries,
            segments_in=self.segments_in,
            segments_out=self.segments_out,
            dropped=self.dropped,
            error=self.error,
            tail_probes=self.tail_probes,
            dsacks=self.dsacks,
            spurious_probes=self.spurious_probes,
            spurious_retrans=self.spurious_retrans,
            undos=self.undos,
            dsacks_sent=self.dsacks_sent,
        )

    def connect(self, now: float) -> None:
        """Active OPEN (RFC 9293 3.10.1): send a SYN and enter SYN-SENT."""
        if self.state is not _CLOSED or self._had_connection:
            raise _oserror(_errno.EISCONN, f"connection is {self.state}")
        if not self.remote[0]:  # (port 0 is a destination: Linux sends the SYN)
            raise _oserror(_errno.EDESTADDRREQ, "no remote address")
        self._init_send(now)
        self.state = _SYN_SENT
        self._had_connection = True
        self._need_syn = True
        self._dirty = True

    def listen(self) -> None:
        """Passive OPEN (RFC 9293 3.10.1): wait in LISTEN for a SYN."""
        if self.state is not _CLOSED or self._had_connection:
            raise _oserror(_errno.EISCONN, f"connection is {self.state}")
        self.state = _LISTEN
        self.passive = True

    def shutdown(self) -> None:
        """Half-close (SHUT_WR, RFC 9293 3.10.4): send FIN after the queued data."""
        st = self.state
        if st is _SYN_RECEIVED and not self._fin_queued:
            # RFC 9293 3.10.4: queue the FIN until ESTABLISHED is reached.
            self._fin_queued = True
            self._fin_seq = self._sseq + (len(self._sbuf) - self._shead)
            return
        if st is _SYN_SENT:
            # RFC 9293 3.10.4: CLOSE in SYN-SENT deletes the TCB.
            self._set_closed()
            return
        if st in (_CLOSED, _LISTEN):
            if st is _LISTEN:
                self._set_closed()
                return
            if self._had_connection:
                return
            raise _oserror(_errno.ENOTCONN, "connection is CLOSED")
        if self._fin_queued:
            return
        if st is _ESTABLISHED:
            self.state = _FIN_WAIT_1
        elif st is _CLOSE_WAIT:
            self.state = _LAST_ACK
        else:
            return
        self._fin_queued = True
        self._fin_seq = self._sseq + (len(self._sbuf) - self._shead)
        self._dirty = True

    def close(self) -> None:
        """CLOSE (RFC 9293 3.10.4): shutdown both ways.

        Unread received data makes it abortive (RFC 1122 4.2.2.13: send RST).
        """
        self._user_closed = True
        self._rd_closed = True
        if self._rlen and self.state in _SYNCHRONIZED:
            self.abort()
            return
        self.shutdown()
        self._dirty = True

    def abort(self) -> None:
        """ABORT (RFC 9293 3.10.5), also SO_LINGER with zero time: RST and CLOSED."""
        st = self.state
        if st in (_SYN_RECEIVED, _ESTABLISHED, _FIN_WAIT_1, _FIN_WAIT_2,
                  _CLOSE_WAIT):
            self._out.append(self._mkrst(self.snd_nxt))
        self._rd_closed = True
        self._user_closed = True
        self._set_closed()

    def open_from_cookie(
        self, iss: int, ack_seg: Segment, peer_mss: int, now: float,
        peer_wscale: int | None = None, sack: bool = False,
    ) -> None:
        """Become ESTABLISHED from a valid SYN-cookie ACK.

        Timestamps are on when the ACK carries them (our SYN-ACK then echoed the options in
        the low bits of its TSval: ``peer_wscale`` and ``sack``); otherwise no options.
        """
        self._init_send(now)
        self.iss = iss
        self.snd_una = self.snd_nxt = iss + 1
        self._sseq = iss + 1
        self._recover = iss
        self._lost_edge = self._high_rxt = iss + 1
        self.irs = (ack_seg.seq - 1) & MASK
        self.rcv_nxt = self.irs + 1
        self._rcv_adv = self.rcv_nxt + min(self.policy.recv_buffer, 0xFFFF)
        self._last_ack_sent = self.rcv_nxt
        self.ts_ok = ack_seg.tsval is not None and self.policy.timestamps
        if self.ts_ok and ack_seg.tsval is not None:
            self.ts_recent = ack_seg.tsval
        if self.ts_ok and peer_wscale is not None:
            self.snd_wscale = min(peer_wscale, _MAX_WSCALE)
        else:
            self.rcv_wscale = self.snd_wscale = 0
        self.sack_ok = self.ts_ok and sack
        mss = min(peer_mss, self.mss_local) - (12 if self.ts_ok else 0)
        self.mss = self._mss_max = max(64, mss)
        self.cc.set_mss(self.mss)
        self.snd_wnd = ack_seg.window << self.snd_wscale
        self.max_snd_wnd = self.snd_wnd
        self.snd_wl1 = self.irs + 1
        self.snd_wl2 = iss + 1
        self.state = _ESTABLISHED
        self.passive = True
        self._had_connection = True
        self._reset_keepalive(now)
        if ack_seg.payload or ack_seg.flags & FIN:
            self.process(ack_seg, now)

    def reopen_time_wait(self) -> None:
        """Forget this TIME-WAIT TCB because a new SYN reuses its 4-tuple (RFC 6191)."""
        if self.state is _TIME_WAIT:
            self._set_closed()

    @property
    def unacked_rx(self) -> int:
        """Bytes received in order and not acknowledged yet (delayed ACK)."""
        return self._unacked_rx

    @property
    def rcv_mss(self) -> int:
        """The peer's largest segment seen so far (RFC 5681 4.2 'full-sized segment')."""
        return self._rcv_mss

    @property
    def keepalive(self) -> bool:
        """SO_KEEPALIVE (RFC 9293 3.8.4); times come from the policy (TCP_KEEPIDLE ...)."""
        return self._keepalive

    @keepalive.setter
    def keepalive(self, on: bool) -> None:
        """Turn keepalive probes on or off (armed at the next dispatch)."""
        self._keepalive = on
        if not on:
            self._keep_at = None
            self._keep_probes = 0
        self._dirty = True

    def apply_policy(self, policy: TcpPolicy) -> None:
        """Switch to ``policy`` (setsockopt on an existing connection).

        Nagle, keepalive, buffers, RTO bounds, retry counts and timers apply at once; a new
        congestion controller takes over the current cwnd and ssthresh.  The window scale
        stays what the handshake fixed (a bigger receive buffer is advertised up to
        65535 << rcv_wscale).  ``nodelay`` and ``keepalive`` become the policy's values even
        when :attr:`nodelay` / :attr:`keepalive` were set on the connection directly (as the
        socket layer does); new keepalive times re-arm an idle keepalive timer.
        """
        policy.validate()
        old = self.policy
        self.policy = policy
        if policy.nodelay != self.nodelay:
            self.nodelay = policy.nodelay
        if policy.keepalive != self._keepalive:
            self.keepalive = policy.keepalive
        elif (self._keepalive and self._keep_probes == 0
              and (policy.keepidle != old.keepidle or policy.keepintvl != old.keepintvl)):
            self._keep_at = None  # dispatch re-arms it with the new keepidle
        if policy.congestion_control != self.cc.name:
            cc = make_cc(policy.congestion_control, self.mss, policy.initial_window)
            cc.cwnd, cc.ssthresh = self.cc.cwnd, self.cc.ssthresh
            self.cc = cc
        self.cc.abc_limit = policy.abc_limit
        self.rto = min(max(self.rto, policy.min_rto), policy.max_rto)
        self._dirty = True

    def set_path_mtu(self, mtu: int) -> None:
        """Path MTU changed (RFC 8201 / RFC 1191): resize segments, never above the peer's MSS.

        A smaller MSS with data in flight: the path dropped those segments, so all of it is
        presumed lost and sent again at once in segments of the new size (Linux
        ``tcp_simple_retransmit``: the congestion window is left alone)."""
        hdr = 60 if len(self.remote[0]) == 16 else 40
        mss = mtu - hdr - (12 if self.ts_ok else 0)
        mss = max(64, min(mss, self._mss_max))
        if mss != self.mss:
            shrink = mss < self.mss
            self.mss = mss
            self.cc.set_mss(mss)
            self._dirty = True
            st = self.state
            if (shrink and self.snd_nxt > self.snd_una and st is not _SYN_SENT
                    and st is not _SYN_RECEIVED):
                self._lost_edge = self.snd_nxt
                self._high_rxt = self.snd_una
                self._rerxt = []


class UrgentConnection(TcpConnection):
    """A :class:`TcpConnection` that met urgent data (a URG segment, ``send_urgent`` or
    ``oob_inline``): the object's class is switched to this one, which adds the urgent
    pointers to its receive and send paths, so a connection without urgent data pays
    nothing for them (its fast paths are unchanged).  It stays one.

    Receive side (Linux ``tcp_check_urg`` / ``tcp_urg`` / ``tcp_recvmsg``): RCV.UP is kept
    as the sequence number of the urgent byte (``_urg_seq``; the pointer field points one
    past it; a pointer of 0 names the segment's first byte, as Linux without tcp_stdurg).  A
    pointer to bytes already received is ignored, a newer one replaces the older (whose byte
    then stays ordinary data).  The byte stays in the receive queue: :meth:`recv` stops
    before it (returns what comes before the mark), and a read that starts at it skips it
    (unless :attr:`oob_inline`), whether :meth:`recv_urgent` took it or not; once the reader
    is past it, the urgent data is gone (``recv_urgent``: EINVAL).

    Send side (Linux ``tcp_mark_urg`` / ``__tcp_transmit_skb``): SND.UP is the sequence
    number after the last urgent byte; a segment whose sequence number is below it carries
    URG and the pointer SND.UP - SEG.SEQ (65535 when that is too far and the segment may
    still be the last sent); while SND.UP is beyond SND.UNA segments are not super-segments
    (no TSO cut has to move the pointer) and Nagle does not hold small ones back."""

    __slots__ = ()

    urgent_mode = True

    def _copied(self) -> int:
        """Sequence number of the next byte the reader gets (Linux copied_seq)."""
        return self.rcv_nxt - self._rlen - (1 if self._rcv_eof else 0)

    def _urgent_in(self, seg: Segment, rcv_nxt: int) -> None:
        ptr = urgent(seg)
        seq = rcv_nxt + ((seg.seq - rcv_nxt + _HALF) & MASK) - _HALF
        byte = seq + ptr - 1 if ptr else seq
        if byte < rcv_nxt:
            return  # urgent data seen (and perhaps read) already: not replayed
        state = self._urg_state
        if state and byte <= self._urg_seq:
            return  # a newer (or the same) pointer is known already
        copied = self._copied()
        if state and self._urg_seq == copied and not self._urg_inline and copied != rcv_nxt:
            # the reader is at the older urgent byte: it goes (Linux: copied_seq++)
            self._skip_urgent()
        self._urg_seq = byte
        self._urg_state = _URG_PENDING

    def _skip_urgent(self) -> None:
        """Drop the urgent byte at the head of the receive queue."""
        TcpConnection.recv(self, 1)
        self._urg_state = _URG_NONE

    def _urg_limit(self) -> int:
        """Before a read: how many bytes it may return (-1: any); skips the urgent byte
        when the read starts at it (not inline)."""
        if not self._urg_state:
            return -1
        off = self._urg_seq - self._copied()
        if off < 0:
            self._urg_state = _URG_NONE
            return -1
        if off >= self._rlen:
            return -1  # (not queued yet: the mark is beyond what is there)
        if off:
            return off
        if not self._urg_inline:
            self._skip_urgent()
        return -1

    def _urg_passed(self) -> None:
        """After a read: the urgent data is over once the reader went past its byte."""
        if self._urg_state and self._urg_seq < self._copied():
            self._urg_state = _URG_NONE

    def recv(self, max_bytes: int = 1 << 20) -> bytes:
        """:meth:`TcpConnection.recv` that stops at the urgent mark and skips the urgent
        byte (unless :attr:`oob_inline`)."""
        if self._urg_state and max_bytes > 0:
            limit = self._urg_limit()
            if 0 < limit < max_bytes:
                max_bytes = limit
            data = TcpConnection.recv(self, max_bytes)
            self._urg_passed()
            return data
        return TcpConnection.recv(self, max_bytes)

    def recv_into(self, buffer: bytearray | memoryview) -> int:
        """:meth:`TcpConnection.recv_into` that stops at the urgent mark (see :meth:`recv`)."""
        if self._urg_state:
            mv = memoryview(buffer).cast("B")
            limit = self._urg_limit() if len(mv) else -1
            if 0 < limit < len(mv):
                mv = mv[:limit]
            n = TcpConnection.recv_into(self, mv)
            self._urg_passed()
            return n
        return TcpConnection.recv_into(self, buffer)

    def recv_urgent(self, peek: bool = False) -> bytes:
        """recv(MSG_OOB) (Linux ``tcp_recv_urg``): see :meth:`TcpConnection.recv_urgent`."""
        if self._urg_inline or self._urg_state != _URG_PENDING:
            raise _oserror(_errno.EINVAL, "no urgent data")
        off = self._urg_seq - self._copied()
        if off >= self._rlen:
            if self._rcv_eof or self.state is _CLOSED:
                return b""
            raise BlockingIOError(_errno.EAGAIN, "the urgent byte has not arrived yet")
        byte = self._queued_byte(off)
        if not peek:
            self._urg_state = _URG_READ
        return byte

    def _queued_byte(self, off: int) -> bytes:
        """The byte ``off`` bytes into the receive queue."""
        i = self._rhead
        off += self._roff
        rbuf = self._rbuf
        while off >= len(rbuf[i]):
            off -= len(rbuf[i])
            i += 1
        return bytes(rbuf[i][off:off + 1])

    @property
    def oob_inline(self) -> bool:
        """SO_OOBINLINE: the urgent byte stays in the stream (recv_urgent: EINVAL)."""
        return self._urg_inline

    @oob_inline.setter
    def oob_inline(self, on: bool) -> None:
        self._urg_inline = bool(on)

    @property
    def at_mark(self) -> bool:
        """SIOCATMARK: the next byte :meth:`recv` would meet is the urgent byte."""
        return bool(self._urg_state) and self._urg_seq == self._copied()

    @property
    def urgent_ready(self) -> bool:
        """An urgent byte has arrived and was not read yet (POLLPRI)."""
        return self._urg_state == _URG_PENDING and self._urg_seq < self._copied() + self._rlen

    @property
    def urgent_offset(self) -> int:
        """Bytes of the receive queue before the urgent byte when that byte is queued and
        still to be taken out of band (not inline); -1 otherwise."""
        if self._urg_state != _URG_PENDING or self._urg_inline:
            return -1
        off = self._urg_seq - self._copied()
        return off if 0 <= off < self._rlen else -1

    def drop_mark(self) -> bool:
        """See :meth:`TcpConnection.drop_mark`."""
        if (self._urg_state and not self._urg_inline and self._rlen
                and self._urg_seq == self._copied()):
            self._skip_urgent()
            return True
        return False

    # -- send side
    def _transmit(self, now: float, out: list[Segment]) -> None:
        if self._urg_up <= self.snd_una:
            TcpConnection._transmit(self, now, out)
            return
        tso, nodelay = self.tso_max, self.nodelay
        self.tso_max = 0
        self.nodelay = True  # (Linux tcp_nagle_test: no Nagle for urgent data)
        try:
            TcpConnection._transmit(self, now, out)
        finally:
            self.tso_max = tso
            self.nodelay = nodelay

    def _mkseg(self, seq: int, flags: int, payload: bytes | bytearray, now: float) -> Segment:
        seg = TcpConnection._mkseg(self, seq, flags, payload, now)
        up = self._urg_up
        if up > seq and up > self.snd_una and not flags & (SYN | RST) and flags & ACK:
            ahead = up - seq
            if ahead <= 0xFFFF:
                seg.flags |= URG
                seg.urg = ahead
            elif seq + 0xFFFF > self.snd_nxt:
                seg.flags |= URG
                seg.urg = 0xFFFF
        return seg
