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
from ioth.stack.tcp.segment import FIN, Segment
from ioth.stack.tcp.state import (
    _CLOSE_WAIT,
    _CLOSED,
    _ESTABLISHED,
    _FIN_WAIT_1,
    _FIN_WAIT_2,
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

__all__ = ["MASK", "State", "TcpConnection", "TcpInfo", "reset_for"]


class TcpConnection(InputMixin, OutputMixin, RecoveryMixin, BufferMixin):
    """One TCP connection (a TCB) driven by segments, user calls and the clock."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<TcpConnection {self.state} {self.local[1]}->{self.remote[1]}>"

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
        """Path MTU changed (RFC 8201 / RFC 1191): resize segments, never above the peer's MSS."""
        hdr = 60 if len(self.remote[0]) == 16 else 40
        mss = mtu - hdr - (12 if self.ts_ok else 0)
        mss = max(64, min(mss, self._mss_max))
        if mss != self.mss:
            self.mss = mss
            self.cc.set_mss(mss)
            self._dirty = True
