"""The TCP protocol core: one transmission control block (TCB), sans-IO.

Rules of this module (h11 style):

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

Loss recovery keeps three numbers besides SND.UNA/SND.NXT: a SACK scoreboard (RFC 6675),
``lost_edge`` (unSACKed bytes below it are presumed lost) and ``high_rxt`` (lost bytes below it
were retransmitted).  ``pipe`` (RFC 6675 section 2) follows from them, so NewReno (RFC 6582),
SACK recovery and go-back-N after an RTO (RFC 6298 5.4) share one retransmission path.
"""

from __future__ import annotations

import bisect
import enum
import errno as _errno
import os
from dataclasses import dataclass
from typing import Any

from ioth.stack.tcp.cc import CongestionControl, make_cc
from ioth.stack.tcp.isn import IsnGenerator
from ioth.stack.tcp.policy import TcpPolicy
from ioth.stack.tcp.segment import ACK, FIN, PSH, RST, SYN, URG, Segment

MASK = 0xFFFFFFFF
_HALF = 0x80000000
_G = 0.001  # clock granularity for RFC 6298 (timestamps tick in ms)
_DUPTHRESH = 3
_MAX_WSCALE = 14
_MAX_SACK_BLOCKS = 1024


class State(enum.Enum):
    """RFC 9293 3.3.2 connection states."""

    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN-SENT"
    SYN_RECEIVED = "SYN-RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"

    def __str__(self) -> str:
        return self.value


_SYNCHRONIZED = frozenset(
    {
        State.SYN_RECEIVED,
        State.ESTABLISHED,
        State.FIN_WAIT_1,
        State.FIN_WAIT_2,
        State.CLOSE_WAIT,
        State.CLOSING,
        State.LAST_ACK,
        State.TIME_WAIT,
    }
)
_RECV_DATA_STATES = frozenset({State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2})
_SEND_STATES = frozenset({State.SYN_SENT, State.SYN_RECEIVED, State.ESTABLISHED, State.CLOSE_WAIT})


def _unwrap(value: int, ref: int) -> int:
    """The unwrapped sequence number congruent to ``value`` (mod 2**32) closest to ``ref``."""
    return ref + ((value - ref + _HALF) & MASK) - _HALF


def _oserror(code: int, detail: str = "") -> OSError:
    msg = os.strerror(code) + (f" ({detail})" if detail else "")
    return OSError(code, msg)


@dataclass(frozen=True, slots=True)
class TcpInfo:
    """A snapshot for ``ss``-like listings (times in seconds, sizes in bytes)."""

    state: State
    local: tuple[bytes, int]
    remote: tuple[bytes, int]
    cc: str
    cwnd: int
    ssthresh: int
    srtt: float | None
    rttvar: float | None
    rto: float
    mss: int
    snd_wscale: int
    rcv_wscale: int
    sack: bool
    timestamps: bool
    bytes_in_flight: int
    send_queue: int
    recv_queue: int
    retransmissions: int
    rto_expirations: int
    fast_recoveries: int
    segments_in: int
    segments_out: int
    dropped: int
    error: int | None

    def __str__(self) -> str:
        """One line in the spirit of ``ss -tni``."""
        la, lp = self.local
        ra, rp = self.remote
        opts = [o for o, on in (("ts", self.timestamps), ("sack", self.sack)) if on]
        rtt = (f" rtt:{self.srtt * 1000:.3f}/{(self.rttvar or 0) * 1000:.3f}"
               if self.srtt is not None else "")
        ssthresh = "" if self.ssthresh >= 1 << 60 else f" ssthresh:{self.ssthresh // self.mss}"
        return (
            f"{self.state} {self.recv_queue} {self.send_queue} {_addr(la)}:{lp} {_addr(ra)}:{rp}"
            f" {' '.join(opts)} {self.cc} wscale:{self.snd_wscale},{self.rcv_wscale}"
            f" rto:{self.rto * 1000:.0f}{rtt} mss:{self.mss} cwnd:{self.cwnd // self.mss}"
            f"{ssthresh} unacked:{self.bytes_in_flight} retrans:{self.retransmissions}"
            f" rto_expired:{self.rto_expirations} recoveries:{self.fast_recoveries}"
            f" segs_in:{self.segments_in} segs_out:{self.segments_out}"
        )


def _addr(raw: bytes) -> str:
    import ipaddress

    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw))
    if len(raw) == 16:
        return f"[{ipaddress.IPv6Address(raw)}]"
    return "*"


class TcpConnection:
    """One TCP connection (a TCB) driven by segments, user calls and the clock."""

    __slots__ = (
        "_ack_at",
        "_ack_now",
        "_chal_count",
        "_chal_window",
        "_close_at",
        "_dirty",
        "_dupacks",
        "_error_reported",
        "_fin_queued",
        "_fin_seq",
        "_had_connection",
        "_high_rxt",
        "_in_recovery",
        "_inflate",
        "_isn",
        "_keep_at",
        "_keep_probes",
        "_keepalive",
        "_last_ack_sent",
        "_last_data_tx",
        "_last_rx",
        "_lost_edge",
        "_mss_max",
        "_need_syn",
        "_ooo",
        "_ooo_fin",
        "_out",
        "_peer_syn_opts",
        "_persist_at",
        "_persist_backoff",
        "_probes",
        "_rbuf",
        "_rcv_adv",
        "_rcv_eof",
        "_rcv_mss",
        "_rd_closed",
        "_recover",
        "_rerxt",
        "_retries",
        "_rhead",
        "_rlen",
        "_roff",
        "_rto_at",
        "_rtt_seq",
        "_rtt_time",
        "_rtx_force",
        "_rtx_log",
        "_sack_last",
        "_sacked",
        "_sacked_bytes",
        "_sbuf",
        "_shead",
        "_sseq",
        "_tlp_at",
        "_tlp_end",
        "_ts_last",
        "_ts_offset",
        "_unacked_rx",
        "_user_closed",
        "cc",
        "challenge_acks",
        "dropped",
        "error",
        "fast_recoveries",
        "irs",
        "iss",
        "layer_deadline",
        "listener",
        "local",
        "max_snd_wnd",
        "mss",
        "mss_local",
        "nodelay",
        "passive",
        "policy",
        "rcv_nxt",
        "rcv_wscale",
        "remote",
        "retransmissions",
        "rto",
        "rto_expirations",
        "rttvar",
        "sack_ok",
        "segments_in",
        "segments_out",
        "snd_nxt",
        "snd_una",
        "snd_wl1",
        "snd_wl2",
        "snd_wnd",
        "snd_wscale",
        "srtt",
        "state",
        "tail_probes",
        "ts_ok",
        "ts_recent",
    )

    def __init__(
        self,
        policy: TcpPolicy,
        isn: IsnGenerator,
        local: tuple[bytes, int],
        remote: tuple[bytes, int] = (b"", 0),
        mss: int = 1460,
    ) -> None:
        self.policy = policy
        self._isn = isn
        self.local = local
        self.remote = remote
        self.state = State.CLOSED
        self.error: int | None = None
        self.mss_local = min(mss, policy.mss) if policy.mss else mss
        self.mss = self.mss_local  # effective send MSS (payload bytes per segment)
        self.cc: CongestionControl = make_cc(
            policy.congestion_control, self.mss, policy.initial_window
        )
        # send sequence space (unwrapped)
        self.iss = 0
        self.snd_una = 0
        self.snd_nxt = 0
        self.snd_wnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = 0
        self.max_snd_wnd = 0
        self.snd_wscale = 0
        self.rcv_wscale = 0
        # receive sequence space
        self.irs = 0
        self.rcv_nxt = 0
        self._rcv_adv = 0  # right edge of the window we advertised (never shrinks)
        # options
        self.sack_ok = False
        self.ts_ok = False
        self.ts_recent = 0
        self._ts_offset = 0
        self._last_ack_sent = 0
        self._last_data_tx = 0.0
        self._peer_syn_opts: Segment | None = None
        # send buffer: _sbuf[_shead:] holds the unacked+unsent data starting at _sseq
        self._sbuf = bytearray()
        self._shead = 0
        self._sseq = 0
        self._fin_queued = False
        self._fin_seq = -1
        # receive buffer: in-order chunks, out-of-order (seq, bytes) pieces
        self._rbuf: list[bytes] = []  # chunks; _rbuf[_rhead] is the first unread one
        self._rhead = 0
        self._rlen = 0
        self._roff = 0
        self._ooo: list[tuple[int, bytes]] = []
        self._ooo_fin = -1
        self._sack_last = 0
        self._rcv_eof = False
        self._rd_closed = False
        self._user_closed = False
        self._rcv_mss = 536
        # loss recovery
        self._sacked: list[list[int]] = []  # sorted, disjoint [start, end) SACKed blocks
        self._sacked_bytes = 0
        self._lost_edge = 0
        self._high_rxt = 0
        self._recover = 0
        self._in_recovery = False
        self._inflate = 0
        self._dupacks = 0
        self._rtx_force = False
        # lost-retransmission detection (the RACK idea of RFC 8985 6.2, for retransmissions)
        self._rtx_log: list[tuple[int, int, float, int]] = []  # (start, end, time, SND.NXT)
        self._rerxt: list[tuple[int, int]] = []  # retransmissions found lost: send again
        self._tlp_at: float | None = None  # tail loss probe timer (RFC 8985 7)
        self._tlp_end = -1  # SND.NXT when the outstanding probe was sent
        # RTT (RFC 6298)
        self.srtt: float | None = None
        self.rttvar: float | None = None
        self.rto = policy.initial_rto
        self._rtt_seq = -1
        self._rtt_time = 0.0
        # timers: absolute deadlines or None
        self._rto_at: float | None = None
        self._ack_at: float | None = None
        self._persist_at: float | None = None
        self._persist_backoff = 0
        self._probes = 0  # zero-window probes without any answer
        self._keep_at: float | None = None
        self._keep_probes = 0
        self._close_at: float | None = None  # TIME-WAIT and orphaned FIN-WAIT-2
        self._retries = 0
        self._ack_now = False
        self._unacked_rx = 0
        self._need_syn = False
        self._dirty = False
        self._out: list[Segment] = []
        self._chal_window = 0.0
        self._chal_count = 0
        self._keepalive = policy.keepalive
        self._mss_max = self.mss
        self.nodelay = policy.nodelay
        # counters
        self.retransmissions = 0
        self.rto_expirations = 0
        self.fast_recoveries = 0
        self.segments_in = 0
        self.segments_out = 0
        self.dropped = 0
        self.challenge_acks = 0
        self.tail_probes = 0
        self.passive = False
        self.layer_deadline: float | None = None
        self.listener: Any = None
        """The listener whose SYN queue holds this TCB (owned by TcpLayer)."""
        """Deadline under which the demultiplexer scheduled this TCB (owned by TcpLayer)."""
        self._error_reported = False
        self._had_connection = False
        self._last_rx = 0.0
        self._ts_last = 0

    # ------------------------------------------------------------------ introspection

    def __repr__(self) -> str:
        return f"<TcpConnection {self.state} {self.local[1]}->{self.remote[1]}>"

    @property
    def send_space(self) -> int:
        """Bytes :meth:`send` would accept now."""
        return max(0, self.policy.send_buffer - (len(self._sbuf) - self._shead))

    @property
    def send_queue(self) -> int:
        """Bytes queued and not yet acknowledged."""
        return len(self._sbuf) - self._shead

    @property
    def recv_available(self) -> int:
        """Bytes :meth:`recv` can return now."""
        return self._rlen

    @property
    def readable(self) -> bool:
        """recv() would not raise BlockingIOError (data, end of stream or an error)."""
        return self._rlen > 0 or self._rcv_eof or self.error is not None or (
            self.state is State.CLOSED and self._had_connection
        )

    @property
    def writable(self) -> bool:
        """send() would not raise BlockingIOError."""
        if self.error is not None or self._fin_queued:
            return True
        return self.state in (State.ESTABLISHED, State.CLOSE_WAIT) and self.send_space > 0

    @property
    def eof(self) -> bool:
        """The peer's FIN was received and all data before it was read."""
        return self._rcv_eof and self._rlen == 0

    @property
    def is_open(self) -> bool:
        """Not CLOSED (the demultiplexer still needs this TCB)."""
        return self.state is not State.CLOSED


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
        )

    # ------------------------------------------------------------------ user calls

    def _init_send(self, now: float) -> None:
        la, lp = self.local
        ra, rp = self.remote
        self.iss = self._isn.isn(now, la, lp, ra, rp)
        self.snd_una = self.snd_nxt = self.iss
        self._sseq = self.iss + 1
        self._recover = self._lost_edge = self._high_rxt = self.iss
        self._ts_offset = self._isn.ts_offset(la, lp, ra, rp)
        buf = self.policy.recv_buffer
        ws = 0
        if self.policy.window_scaling:
            while ws < _MAX_WSCALE and (buf >> ws) > 0xFFFF:
                ws += 1
        self.rcv_wscale = ws

    def connect(self, now: float) -> None:
        """Active OPEN (RFC 9293 3.10.1): send a SYN and enter SYN-SENT."""
        if self.state is not State.CLOSED or self._had_connection:
            raise _oserror(_errno.EISCONN, f"connection is {self.state}")
        if not self.remote[1]:
            raise _oserror(_errno.EDESTADDRREQ, "no remote address")
        self._init_send(now)
        self.state = State.SYN_SENT
        self._had_connection = True
        self._need_syn = True
        self._dirty = True

    def listen(self) -> None:
        """Passive OPEN (RFC 9293 3.10.1): wait in LISTEN for a SYN."""
        if self.state is not State.CLOSED or self._had_connection:
            raise _oserror(_errno.EISCONN, f"connection is {self.state}")
        self.state = State.LISTEN
        self.passive = True

    def send(self, data: bytes | bytearray | memoryview) -> int:
        """SEND (RFC 9293 3.10.2): queue up to :attr:`send_space` bytes; return how many.

        Raises BlockingIOError when the buffer is full, EPIPE after shutdown, the pending
        connection error (ECONNRESET, ETIMEDOUT, ECONNREFUSED) once, ENOTCONN before connect.
        """
        if self.error is not None:
            code, self.error = self.error, None
            self._error_reported = True
            raise _oserror(code)
        if self._fin_queued or self._error_reported:
            raise _oserror(_errno.EPIPE, "sending side is shut down")
        if self.state not in _SEND_STATES:
            if self.state is State.CLOSED and self._had_connection:
                raise _oserror(_errno.EPIPE, "connection is closed")
            raise _oserror(_errno.ENOTCONN, f"connection is {self.state}")
        if not isinstance(data, bytes | bytearray):
            data = memoryview(data).cast("B")
        n = len(data)
        if not n:
            return 0
        space = self.policy.send_buffer - (len(self._sbuf) - self._shead)
        if space <= 0:
            raise BlockingIOError(_errno.EAGAIN, "send buffer full")
        if n > space:
            n = space
            data = memoryview(data)[:n]
        self._sbuf += data
        self._dirty = True
        return n

    def recv(self, max_bytes: int = 1 << 20) -> bytes:
        """RECEIVE (RFC 9293 3.10.3): up to ``max_bytes`` in-order bytes; b"" at end of stream.

        Raises BlockingIOError when nothing is available yet, the pending connection error once,
        ENOTCONN on a connection that was never opened.
        """
        if max_bytes < 0:
            raise ValueError("negative buffersize in recv")
        if self._rlen == 0:
            if self.error is not None:
                code, self.error = self.error, None
                self._error_reported = True
                raise _oserror(code)
            if self._rcv_eof or (self.state is State.CLOSED and self._had_connection):
                return b""
            if self.state in (State.CLOSED, State.LISTEN):
                raise _oserror(_errno.ENOTCONN, f"connection is {self.state}")
            raise BlockingIOError(_errno.EAGAIN, "no data available")
        rbuf = self._rbuf
        i = self._rhead
        off = self._roff
        n = len(rbuf)
        first = rbuf[i]
        if off == 0 and i == n - 1 and len(first) <= max_bytes:
            out = first
            i = n
        else:
            parts: list[bytes] = []
            want = max_bytes
            while want and i < n:
                chunk = rbuf[i]
                avail = len(chunk) - off
                if avail <= want:
                    parts.append(chunk[off:] if off else chunk)
                    i += 1
                    want -= avail
                    off = 0
                else:
                    parts.append(chunk[off : off + want])
                    off += want
                    want = 0
            self._roff = off
            out = b"".join(parts)
        if i == n:
            rbuf.clear()
            i = 0
        elif i >= 64 and 2 * i >= n:
            del rbuf[:i]
            i = 0
        self._rhead = i
        self._rlen -= len(out)
        self._window_update_check()
        return out

    def recv_into(self, buffer: bytearray | memoryview) -> int:
        """Like :meth:`recv` but into ``buffer``; returns the byte count (0 at end of stream)."""
        mv = memoryview(buffer).cast("B")
        n = len(mv)
        if not n:
            return 0
        data = self.recv(n)
        got = len(data)
        mv[:got] = data
        return got

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
            self._ack_now = True
            self._dirty = True

    def shutdown(self) -> None:
        """Half-close (SHUT_WR, RFC 9293 3.10.4): send FIN after the queued data."""
        st = self.state
        if st is State.SYN_RECEIVED and not self._fin_queued:
            # RFC 9293 3.10.4: queue the FIN until ESTABLISHED is reached.
            self._fin_queued = True
            self._fin_seq = self._sseq + (len(self._sbuf) - self._shead)
            return
        if st is State.SYN_SENT:
            # RFC 9293 3.10.4: CLOSE in SYN-SENT deletes the TCB.
            self._set_closed()
            return
        if st in (State.CLOSED, State.LISTEN):
            if st is State.LISTEN:
                self._set_closed()
                return
            if self._had_connection:
                return
            raise _oserror(_errno.ENOTCONN, "connection is CLOSED")
        if self._fin_queued:
            return
        if st is State.ESTABLISHED:
            self.state = State.FIN_WAIT_1
        elif st is State.CLOSE_WAIT:
            self.state = State.LAST_ACK
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
        if st in (State.SYN_RECEIVED, State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2,
                  State.CLOSE_WAIT):
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
        self.state = State.ESTABLISHED
        self.passive = True
        self._had_connection = True
        self._reset_keepalive(now)
        if ack_seg.payload or ack_seg.flags & FIN:
            self.process(ack_seg, now)

    def reopen_time_wait(self) -> None:
        """Forget this TIME-WAIT TCB because a new SYN reuses its 4-tuple (RFC 6191)."""
        if self.state is State.TIME_WAIT:
            self._set_closed()

    # ------------------------------------------------------------------ helpers

    def _set_closed(self, err: int | None = None) -> None:
        if err is not None and self.error is None and not self._user_closed:
            self.error = err
        self.state = State.CLOSED
        self._rto_at = self._ack_at = self._persist_at = self._keep_at = self._close_at = None
        self._tlp_at = None
        self._need_syn = False
        self._ack_now = False
        self._dirty = bool(self._out)
        self._sbuf = bytearray()
        self._shead = 0
        self._ooo = []
        self._sacked = []
        self._rtx_log = []
        self._rerxt = []

    def _ts_clock(self, now: float) -> int:
        # RFC 7323 5.4: TSval must not go backwards, even if a caller passes a stale ``now``.
        ms = int(now * 1000)
        if ms < self._ts_last:
            ms = self._ts_last
        self._ts_last = ms
        return (ms + self._ts_offset) & MASK


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

    def _sack_blocks(self) -> tuple[tuple[int, int], ...] | None:
        """RFC 2018 section 4: the block with the latest segment first, then the others."""
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
        last = self._sack_last
        first = [b for b in blocks if b[0] <= last < b[1]]
        rest = [b for b in reversed(blocks) if not b[0] <= last < b[1]]
        limit = 3 if self.ts_ok else 4
        return tuple((a & MASK, b & MASK) for a, b in (first + rest)[:limit])

    def _mkseg(self, seq: int, flags: int, payload: bytes | bytearray, now: float) -> Segment:
        """A segment from the current TCB state; carries ACK, window, TS and SACK."""
        seg = Segment(seq & MASK, 0, flags, 0, payload)
        if flags & ACK:
            seg.ack = self.rcv_nxt & MASK
            self._last_ack_sent = self.rcv_nxt
            self._ack_now = False
            self._ack_at = None
            self._unacked_rx = 0
            if self.sack_ok and self._ooo:
                seg.sack = self._sack_blocks()
        if flags & SYN:
            seg.window = min(self.policy.recv_buffer, 0xFFFF)
            self._rcv_adv = self.rcv_nxt + seg.window
        else:
            seg.window = self._advertise()
        if self.ts_ok:
            seg.tsval = self._ts_clock(now)
            seg.tsecr = self.ts_recent
        self.segments_out += 1
        return seg

    def _mkrst(self, seq: int) -> Segment:
        return Segment(seq & MASK, self.rcv_nxt & MASK, RST | ACK, 0)

    def _syn_segment(self, now: float) -> Segment:
        """SYN or SYN-ACK with our options (RFC 9293 3.7.1, RFC 7323, RFC 2018)."""
        p = self.policy
        passive = self.state is State.SYN_RECEIVED
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

    def _negotiate(self, syn: Segment, ours_offered: bool) -> None:
        """Options from the peer's SYN (RFC 9293 3.7.1, RFC 7323 2.2/3.2, RFC 2018 2)."""
        p = self.policy
        v6 = len(self.remote[0]) == 16
        peer_mss = syn.mss if syn.mss else (1220 if v6 else 536)
        if syn.wscale is not None and p.window_scaling:
            self.snd_wscale = min(syn.wscale, _MAX_WSCALE)
        else:
            self.snd_wscale = 0
            self.rcv_wscale = 0
        self.sack_ok = syn.sack_perm and p.sack
        self.ts_ok = syn.tsval is not None and p.timestamps
        if self.ts_ok and syn.tsval is not None:
            self.ts_recent = syn.tsval
        mss = min(peer_mss, self.mss_local)
        if self.ts_ok:
            mss -= 12
        self.mss = self._mss_max = max(mss, 64)
        self._rcv_mss = min(self.mss, 536)
        self.cc.set_mss(self.mss)
        del ours_offered

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

    # ------------------------------------------------------------------ segment arrival

    def process(self, seg: Segment, now: float) -> None:
        """SEGMENT ARRIVES (RFC 9293 3.10.7).  Never raises on remote input."""
        self.segments_in += 1
        st = self.state
        f = seg.flags
        if (
            st is State.ESTABLISHED
            and f & (SYN | FIN | RST | ACK | URG) == ACK
            and seg.seq == self.rcv_nxt & MASK
            and not seg.sack
            and not self._in_recovery
            and self._fast_path(seg, now)
        ):
            return
        match (st, f & (SYN | ACK | RST)):
            case (s, _) if s in _SYNCHRONIZED:
                # RFC 9293 3.10.7.4: the eight checks for synchronized states.
                self._process_synchronized(seg, now)
            case (State.CLOSED, _):
                # RFC 9293 3.10.7.1: CLOSED answers anything but a RST with a RST.
                if not f & RST:
                    self._out.append(_reset_for(seg))
                    self._dirty = True
                self.dropped += 1
            case (State.LISTEN, c) if c & RST:
                # RFC 9293 3.10.7.2 first: an incoming RST is ignored.
                self.dropped += 1
            case (State.LISTEN, c) if c & ACK:
                # RFC 9293 3.10.7.2 second: any ACK is bad here: <SEQ=SEG.ACK><CTL=RST>.
                self._out.append(Segment(seg.ack, 0, RST, 0))
                self._dirty = True
                self.dropped += 1
            case (State.LISTEN, c) if c & SYN:
                # RFC 9293 3.10.7.2 third: SYN: select ISS, send SYN-ACK, enter SYN-RECEIVED.
                self._init_send(now)
                self.irs = seg.seq
                self.rcv_nxt = self.irs + 1
                self._rcv_adv = self.rcv_nxt
                self._last_ack_sent = self.rcv_nxt
                self._peer_syn_opts = Segment(
                    seg.seq, 0, SYN, 0, b"", mss=seg.mss, wscale=seg.wscale,
                    sack_perm=seg.sack_perm, tsval=seg.tsval
                )
                self._negotiate(seg, True)
                self.snd_wnd = seg.window  # RFC 7323 2.2: the SYN window is never scaled
                self.max_snd_wnd = self.snd_wnd
                self.snd_wl1 = self.irs
                self.snd_wl2 = self.iss
                self.state = State.SYN_RECEIVED
                self._had_connection = True
                self._need_syn = True
                self._dirty = True
            case (State.LISTEN, _):
                # RFC 9293 3.10.7.2 fourth: other control or text: drop.
                self.dropped += 1
            case (State.SYN_SENT, c) if c & ACK and not (
                self.iss < _unwrap(seg.ack, self.snd_una) <= self.snd_nxt
            ):
                # RFC 9293 3.10.7.3 first: unacceptable ACK: <SEQ=SEG.ACK><CTL=RST> unless RST.
                if not c & RST:
                    self._out.append(Segment(seg.ack, 0, RST, 0))
                    self._dirty = True
                self.dropped += 1
            case (State.SYN_SENT, c) if c & RST:
                # RFC 9293 3.10.7.3 second (RFC 5961 3.2): RST with an acceptable ACK refuses.
                if c & ACK:
                    self._set_closed(_errno.ECONNREFUSED)
                else:
                    self.dropped += 1
            case (State.SYN_SENT, c) if c & SYN:
                # RFC 9293 3.10.7.3 fourth: SYN (with ACK: established; without: simultaneous
                # open, RFC 9293 3.5 figure 8, go to SYN-RECEIVED and resend our SYN as SYN-ACK).
                self._syn_sent_syn(seg, now)
            case _:
                # RFC 9293 3.10.7.3 fifth: neither SYN nor RST: drop.
                self.dropped += 1

    def _fast_path(self, seg: Segment, now: float) -> bool:
        """Header prediction for the two bulk cases; False sends ``seg`` down the full path.

        (1) a pure ACK of new data, (2) in-order data that fits the window and needs no
        reassembly (possibly acking new data too).  Both are exactly what the RFC 9293
        3.10.7.4 steps would do for such segments.
        """
        rcv_nxt = self.rcv_nxt
        if self.ts_ok:
            tsval = seg.tsval
            if tsval is None or (tsval - self.ts_recent) & MASK >= _HALF:
                return False
        else:
            tsval = None
        una = self.snd_una
        ack = una + ((seg.ack - una + _HALF) & MASK) - _HALF
        payload = seg.payload
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
        wnd = seg.window << self.snd_wscale
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
            self._ack_advance(seg, ack, now)
        if plen:
            self._receive(rcv_nxt, payload, plen, now)
        return True

    def _syn_sent_syn(self, seg: Segment, now: float) -> None:
        self.irs = seg.seq
        self.rcv_nxt = self.irs + 1
        self._rcv_adv = self.rcv_nxt
        self._last_ack_sent = self.rcv_nxt
        self._peer_syn_opts = Segment(
            seg.seq, 0, SYN, 0, b"", mss=seg.mss, wscale=seg.wscale, sack_perm=seg.sack_perm,
            tsval=seg.tsval
        )
        self._negotiate(seg, True)
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
            self.state = State.ESTABLISHED
            self._ack_now = True
            self._reset_keepalive(now)
        else:
            self.snd_wnd = seg.window
            self.max_snd_wnd = self.snd_wnd
            self.state = State.SYN_RECEIVED
            self._need_syn = True
        self._dirty = True

    def _ts_rtt(self, tsecr: int, now: float) -> None:
        delta = (self._ts_clock(now) - tsecr) & MASK
        if delta < _HALF:
            self._rtt_sample(delta / 1000.0)

    def _reset_keepalive(self, now: float) -> None:
        self._keep_probes = 0
        self._keep_at = now + self.policy.keepidle if self._keepalive else None

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
        65535 << rcv_wscale).
        """
        policy.validate()
        old = self.policy
        self.policy = policy
        if policy.nodelay != old.nodelay:
            self.nodelay = policy.nodelay
        if policy.keepalive != old.keepalive:
            self.keepalive = policy.keepalive
        if policy.congestion_control != self.cc.name:
            cc = make_cc(policy.congestion_control, self.mss, policy.initial_window)
            cc.cwnd, cc.ssthresh = self.cc.cwnd, self.cc.ssthresh
            self.cc = cc
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

    def icmp_error(self, seq: int, hard: bool, now: float) -> None:
        """An ICMP unreachable quoting our segment with sequence number ``seq`` (RFC 5927).

        Only quotes with SND.UNA <= seq < SND.NXT are believed.  A hard error (port or protocol
        unreachable) refuses a connection in SYN-SENT; other errors are soft and ignored
        (RFC 1122 4.2.3.9).
        """
        s = _unwrap(seq, self.snd_una)
        if not self.snd_una <= s < self.snd_nxt:
            return
        if hard and self.state is State.SYN_SENT:
            self._set_closed(_errno.ECONNREFUSED)

    def _process_synchronized(self, seg: Segment, now: float) -> None:
        f = seg.flags
        payload = seg.payload
        plen = len(payload)
        rcv_nxt = self.rcv_nxt
        seq = _unwrap(seg.seq, rcv_nxt)
        seglen = plen + (1 if f & SYN else 0) + (1 if f & FIN else 0)
        st = self.state
        # RFC 7323 5.3 (PAWS): a timestamp older than TS.Recent makes the segment unacceptable.
        if (
            self.ts_ok
            and seg.tsval is not None
            and not f & RST
            and (seg.tsval - self.ts_recent) & MASK >= _HALF
        ):
            self.dropped += 1
            self._ack_now = True
            self._dirty = True
            return
        if st is State.SYN_RECEIVED and f & (SYN | ACK | RST) == SYN and seq == self.irs:
            # A retransmitted SYN: our SYN-ACK was probably lost; resend it at once (as Linux
            # does) instead of waiting for the SYN-ACK retransmission timer.
            self._need_syn = True
            self._dirty = True
            return
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
                payload = b""
                plen = 0
                f &= ~(FIN | SYN)
            else:
                self.dropped += 1
                if not f & RST:
                    if st is State.TIME_WAIT and f & FIN:
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
            match st:
                case State.SYN_RECEIVED:
                    # Passive open: back to nothing (the listener keeps listening); active
                    # (simultaneous) open: connection refused.
                    self._set_closed(None if self.passive else _errno.ECONNREFUSED)
                case State.ESTABLISHED | State.FIN_WAIT_1 | State.FIN_WAIT_2 | State.CLOSE_WAIT:
                    self._set_closed(_errno.ECONNRESET)
                case _:
                    # CLOSING, LAST-ACK, TIME-WAIT: just close.
                    self._set_closed()
            return
        # Fourth: SYN in a synchronized state (RFC 9293 3.10.7.4 fourth, RFC 5961 4.2).
        if f & SYN:
            self._challenge_ack(now)
            self.dropped += 1
            return
        # Fifth: ACK field.
        if not f & ACK:
            self.dropped += 1
            return
        # Trim data already received (RFC 9293 3.10.7.4, "segments ... trimmed").
        if seq < rcv_nxt:
            cut = rcv_nxt - seq
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
        # RFC 7323 4.3: TS.Recent <- SEG.TSval if SEG.SEQ <= Last.ACK.sent.
        if self.ts_ok and seg.tsval is not None and seq <= self._last_ack_sent:
            self.ts_recent = seg.tsval
        ack = _unwrap(seg.ack, self.snd_una)
        if st is State.SYN_RECEIVED:
            # RFC 9293 3.10.7.4 fifth, SYN-RECEIVED: acceptable ACK -> ESTABLISHED.
            if not self.snd_una < ack <= self.snd_nxt:
                self._out.append(Segment(seg.ack, 0, RST, 0))
                self._dirty = True
                self.dropped += 1
                return
            self.state = st = State.ESTABLISHED
            self._need_syn = False
            self._peer_syn_opts = None
            self.snd_wnd = seg.window << self.snd_wscale
            self.max_snd_wnd = max(self.max_snd_wnd, self.snd_wnd)
            self.snd_wl1 = seq
            self.snd_wl2 = ack
            self._reset_keepalive(now)
            if self._fin_queued:
                self.state = st = State.FIN_WAIT_1
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
        self._process_ack(seg, seq, ack, plen, f, now)
        if self.state is State.CLOSED:
            return
        st = self.state
        # Seventh: segment text (RFC 9293 3.10.7.4 seventh).
        if plen:
            if st in _RECV_DATA_STATES:
                if self._rd_closed:
                    # RFC 1122 4.2.2.13 / RFC 9293 3.10.7.4: data after CLOSE: reset.
                    self._out.append(self._mkrst(self.snd_nxt))
                    self._set_closed(_errno.ECONNRESET)
                    return
                self._receive(seq, payload, plen, now)
            else:
                # CLOSE-WAIT, CLOSING, LAST-ACK, TIME-WAIT: the FIN came already; ignore.
                self._ack_now = True
                self._dirty = True
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
        if seg.sack and self.sack_ok:
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
            self._ack_advance(seg, ack, now)
        elif ack == snd_una and self.snd_nxt > snd_una:
            # RFC 5681 2 (duplicate ACK) / RFC 6675 (ACK carrying new SACK information).
            if newly_sacked or (not plen and not f & FIN and self.snd_wnd == old_wnd):
                self._dupacks += 1
                self._on_dupack(now)
            elif self._in_recovery and newly_sacked:
                self._dirty = True
        if self._tlp_end >= 0:
            self._tlp_check(now)
        # FIN acknowledged?  (RFC 9293 3.10.7.4 fifth, FIN-WAIT-1 / CLOSING / LAST-ACK.)
        if self._fin_queued and self.snd_una > self._fin_seq:
            st = self.state
            if st is State.FIN_WAIT_1:
                self.state = State.FIN_WAIT_2
                if self._user_closed:
                    self._close_at = now + self.policy.fin_timeout
            elif st is State.CLOSING:
                self._enter_time_wait(now)
            elif st is State.LAST_ACK:
                self._set_closed()

    def _ack_advance(self, seg: Segment, ack: int, now: float) -> None:
        acked = ack - self.snd_una
        # RTT: timestamps (RFC 7323 4.1) or one timed segment with Karn's rule (RFC 6298 3).
        if self.ts_ok and seg.tsecr:
            self._ts_rtt(seg.tsecr, now)
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
            self.cc.on_ack(acked, now, self.srtt, flight)
        self._dirty = True

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
                self._enter_recovery(now)
                top = sb[-1][0]
                if self._lost_edge < top:
                    self._lost_edge = top

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

    def _receive(self, seq: int, payload: bytes | bytearray | memoryview, plen: int,
                 now: float) -> None:
        """Queue in-window text (RFC 9293 3.10.7.4 seventh), ACK policy of RFC 5681 4.2."""
        if plen > self._rcv_mss:
            self._rcv_mss = min(plen, self.mss_local)
        if seq == self.rcv_nxt:
            self._rbuf.append(bytes(payload))
            self._rlen += plen
            self.rcv_nxt = seq + plen
            if self._ooo or self._ooo_fin >= 0:
                self._ooo_pull()
                self._ack_now = True  # RFC 5681 4.2: ACK at once when a gap is filled
            self._unacked_rx += plen
            if self._unacked_rx >= 2 * self._rcv_mss:
                self._ack_now = True  # RFC 9293 3.8.6.3: at least every 2nd full segment
            elif self._ack_at is None:
                self._ack_at = now + self.policy.delayed_ack
        else:
            self._ooo_insert(seq, bytes(payload))
            self._ack_now = True  # RFC 5681 4.2: out-of-order data: immediate (dup) ACK
        # (no _dirty: poll_at() sees _ack_now, and _ack_at is a timer)

    def _ooo_insert(self, seq: int, data: bytes) -> None:
        end = seq + len(data)
        ooo = self._ooo
        if len(ooo) >= max(64, self.policy.recv_buffer >> 8):
            # Bounded reassembly queue: a flood of tiny out-of-order pieces is dropped
            # (the sender retransmits what matters).
            self.dropped += 1
            return
        self._sack_last = seq
        pos = seq
        pieces: list[tuple[int, bytes]] = []
        i = bisect.bisect_right(ooo, seq, key=_first)
        for s, d in ooo[i - 1 if i else 0 :]:
            e = s + len(d)
            if e <= pos:
                continue
            if s >= end:
                break
            if s > pos:
                pieces.append((pos, data[pos - seq : s - seq]))
            pos = e
            if pos >= end:
                break
        if pos < end:
            pieces.append((pos, data[pos - seq :] if pos > seq else data))
        for piece in pieces:
            bisect.insort(ooo, piece, key=_first)

    def _ooo_pull(self) -> None:
        ooo = self._ooo
        i = 0
        n = len(ooo)
        nxt = self.rcv_nxt
        while i < n and ooo[i][0] <= nxt:
            s, d = ooo[i]
            e = s + len(d)
            if e > nxt:
                piece = d[nxt - s :] if s < nxt else d
                self._rbuf.append(piece)
                self._rlen += len(piece)
                nxt = e
            i += 1
        if i:
            del ooo[:i]
        self.rcv_nxt = nxt
        if self._ooo_fin >= 0 and self._ooo_fin == nxt and self.state in _RECV_DATA_STATES:
            self._ooo_fin = -1
            self._on_fin(self._last_rx)


    def _on_fin(self, now: float) -> None:
        """RFC 9293 3.10.7.4 eighth: FIN advances RCV.NXT and changes state."""
        self.rcv_nxt += 1
        self._rcv_eof = True
        self._ack_now = True
        self._dirty = True
        st = self.state
        if st in (State.SYN_RECEIVED, State.ESTABLISHED):
            self.state = State.CLOSE_WAIT
        elif st is State.FIN_WAIT_1:
            if self._fin_queued and self.snd_una > self._fin_seq:
                self._enter_time_wait(now)
            else:
                self.state = State.CLOSING  # simultaneous close (RFC 9293 3.6 figure 13)
        elif st is State.FIN_WAIT_2:
            self._enter_time_wait(now)
        elif st is State.TIME_WAIT:
            self._close_at = now + self.policy.time_wait

    def _enter_time_wait(self, now: float) -> None:
        self.state = State.TIME_WAIT
        self._rto_at = self._persist_at = self._keep_at = self._tlp_at = None
        self._close_at = now + self.policy.time_wait
        self._sbuf = bytearray()
        self._shead = 0
        self._sacked = []

    # ------------------------------------------------------------------ timers and output

    def poll_at(self) -> float | None:
        """When :meth:`dispatch` must run next: ``0.0`` for now, ``None`` for never."""
        if self._dirty or self._out or self._ack_now:
            return 0.0
        t: float | None = None
        for d in (self._rto_at, self._ack_at, self._persist_at, self._keep_at, self._close_at,
                  self._tlp_at):
            if d is not None and (t is None or d < t):
                t = d
        return t

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
                self._rerxt.append((max(una, nxt - self.mss), nxt))
                self._rtx_force = True
                self._tlp_end = nxt
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
        if st is not State.CLOSED and st is not State.LISTEN:
            self._timers(now)
            st = self.state
        out = self._out
        self._out = []
        if st is State.CLOSED or st is State.LISTEN:
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
        if st is State.SYN_SENT:
            return out
        if self._keepalive and self._keep_at is None and (
            st is State.ESTABLISHED or st is State.CLOSE_WAIT
        ):
            self._reset_keepalive(now)
        if st is State.FIN_WAIT_2 and self._user_closed and self._close_at is None:
            self._close_at = now + self.policy.fin_timeout
        if st is not State.TIME_WAIT and st is not State.SYN_RECEIVED:
            self._transmit(now, out)
            if (
                self._tlp_at is None
                and self._tlp_end < 0
                and self.sack_ok
                and self.policy.tail_loss_probe
                and self.srtt is not None
                and not self._in_recovery
                and self.snd_nxt > self.snd_una
                and self._rto_at is not None
            ):
                # RFC 8985 7.2: PTO = 2*SRTT (+ a delayed-ACK allowance for one segment)
                pto = 2 * self.srtt + (0.2 if self.snd_nxt - self.snd_una <= self.mss else 0)
                pto = max(pto, 0.01)
                if now + pto < self._rto_at:
                    self._tlp_at = now + pto
        if self._ack_now or (self._ack_at is not None and now >= self._ack_at):
            out.append(self._mkseg(self.snd_nxt, ACK, b"", now))
        return out

    def _payload(self, seq: int, n: int) -> bytearray:
        off = self._shead + (seq - self._sseq)
        return self._sbuf[off : off + n]

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
        if self._ooo and self.sack_ok:
            mss -= 2 + 8 * min(len(self._ooo), 3 if self.ts_ok else 4) + 2
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
        while nxt < limit_end:
            avail = limit_end - nxt
            room = wnd_end - nxt
            croom = cwnd - pipe
            n = avail
            if n > mss:
                n = mss
            if n > room:
                n = room
            if n > croom:
                n = croom
            if n <= 0:
                break
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
            self._last_data_tx = now
            if self._rtt_seq < 0 and not self.ts_ok:
                self._rtt_seq = end
                self._rtt_time = now
            nxt = end
            pipe += n
            self.snd_nxt = nxt
            if self._rto_at is None:
                self._rto_at = now + self.rto
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
                    self._set_closed(_errno.ETIMEDOUT)
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
        payload = self._payload(s, dend - s) if dend > s else b""
        if dend >= data_end:
            flags |= PSH
        return self._mkseg(s, flags, payload, now)


def _first(item: tuple[int, bytes]) -> int:
    return item[0]


def _reset_for(seg: Segment) -> Segment:
    """RFC 9293 3.10.7.1: the RST answering ``seg`` when no connection exists."""
    if seg.flags & ACK:
        return Segment(seg.ack, 0, RST, 0)
    return Segment(0, (seg.seq + len(seg)) & MASK, RST | ACK, 0)


def reset_for(seg: Segment) -> Segment | None:
    """The RST to send for ``seg`` arriving at no connection (None for an incoming RST)."""
    if seg.flags & RST:
        return None
    return _reset_for(seg)
