"""The transmission control block's fields and the transitions every part of the TCB uses.

:class:`TcbBase` owns the ``__slots__`` (all of them: the mixins of
:class:`~ioth.stack.tcp.connection.TcpConnection` add none, so instances keep one flat slot
layout and attribute access costs what it did in a single class), ``__init__`` with every
field's initial value, and the small state changes shared by input, output and timers
(``_set_closed``, ``_enter_time_wait``, ``_reset_keepalive``, ``_ts_clock``, ``_init_send``).

The four urgent-data slots (``_urg_*``) are not set by ``__init__``: a connection gets them
when it first meets urgent data and becomes an
:class:`~ioth.stack.tcp.connection.UrgentConnection` (see there), so that the others pay
nothing for them.

The methods one mixin calls on another are declared at the end under ``TYPE_CHECKING`` only,
for the type checker; at run time they resolve to the mixin's definition through the MRO of
``TcpConnection``, with no extra call layer.
"""

from __future__ import annotations

import errno as _errno
from typing import TYPE_CHECKING, Any

from ioth.stack.tcp.cc import CcSnapshot, CongestionControl, make_cc
from ioth.stack.tcp.isn import IsnGenerator
from ioth.stack.tcp.policy import TcpPolicy
from ioth.stack.tcp.segment import Segment
from ioth.stack.tcp.state import (
    _CLOSED,
    _DUPTHRESH,
    _MAX_WSCALE,
    _TIME_WAIT,
    MASK,
)


class TcbBase:
    """Fields of one TCB (RFC 9293 3.3.1) and the transitions shared by the mixins."""

    __slots__ = (
        "_ack_at",
        "_ack_now",
        "_chal_count",
        "_chal_window",
        "_close_at",
        "_cwnd_limited",
        "_dirty",
        "_dsack_pending",
        "_dsack_round",
        "_dupacks",
        "_episode",
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
        "_last_tsecr",
        "_lost_edge",
        "_max_flight",
        "_max_flight_seq",
        "_min_rtt",
        "_mss_max",
        "_need_syn",
        "_ooo",
        "_ooo_fin",
        "_out",
        "_peer_syn_opts",
        "_persist_at",
        "_persist_backoff",
        "_probes",
        "_pto_steps",
        "_rbuf",
        "_rcv_adv",
        "_rcv_eof",
        "_rcv_mss",
        "_rd_closed",
        "_recover",
        "_reo_mult",
        "_reo_persist",
        "_reordering",
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
        "_rtx_stamp",
        "_sack_last",
        "_sacked",
        "_sacked_bytes",
        "_sbuf",
        "_shead",
        "_soft_error",
        "_sseq",
        "_tlp_at",
        "_tlp_end",
        "_tlp_nagle",
        "_tlp_probe",
        "_tlp_quota",
        "_ts_last",
        "_ts_offset",
        "_unacked_rx",
        "_undo_prior",
        "_undo_ranges",
        "_undo_reord",
        "_undo_tsval",
        "_urg_inline",
        "_urg_seq",
        "_urg_state",
        "_urg_up",
        "_user_closed",
        "bind_flags",
        "cc",
        "challenge_acks",
        "dropped",
        "dsacks",
        "dsacks_sent",
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
        "spurious_probes",
        "spurious_retrans",
        "srtt",
        "state",
        "tail_probes",
        "ts_ok",
        "ts_recent",
        "tso_cut",
        "tso_max",
        "tso_segments",
        "tx_route",
        "undos",
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
        self.state = _CLOSED
        self.error: int | None = None
        self.bind_flags = 0  # the socket's SO_REUSEADDR / IPV6_V6ONLY (layer.BIND_*)
        self.mss_local = min(mss, policy.mss) if policy.mss else mss
        self.mss = self.mss_local  # effective send MSS (payload bytes per segment)
        self.cc: CongestionControl = make_cc(
            policy.congestion_control, self.mss, policy.initial_window
        )
        self.cc.abc_limit = policy.abc_limit
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
        # congestion window validation (RFC 7661; Linux tcp_cwnd_validate): cwnd grows only
        # while the flight was limited by cwnd at some send in the current window of data
        self._cwnd_limited = False
        self._max_flight = 0  # largest flight (pipe) sent since _max_flight_seq was set
        self._max_flight_seq = 0  # SND.NXT when that window started
        # lost-retransmission detection (the RACK idea of RFC 8985 6.2, for retransmissions)
        self._rtx_log: list[tuple[int, int, float, int]] = []  # (start, end, time, SND.NXT)
        self._rerxt: list[tuple[int, int]] = []  # retransmissions found lost: send again
        self._tlp_at: float | None = None  # tail loss probe timer (RFC 8985 7)
        self._tlp_end = -1  # SND.NXT when the outstanding probe was sent
        self._tlp_probe = (0, 0)  # [start, end) of the last probe, until a D-SACK names it
        self._pto_steps = 0  # extra SRTTs in the PTO after spurious probes (D-SACK)
        self._tlp_quota = 0  # cwnd allowance lent to a new-data probe (RFC 8985 7.3)
        self._tlp_nagle = False  # Nagle lifted for that probe (nodelay to restore)
        # RACK reordering window (RFC 8985 6.2 step 4): reo_wnd = min(mult * min_RTT/4, SRTT)
        self._rtx_stamp = 0.0  # when the data of a run of RTOs went out (TCP_USER_TIMEOUT)
        self._min_rtt: float | None = None  # RACK.min_RTT
        self._reo_mult = 1  # RACK.reo_wnd_mult, grown by D-SACKs
        self._reo_persist = 0  # RACK.reo_wnd_persist: recoveries before mult resets
        self._dsack_round = -1  # RACK.dsack_round: SND.NXT when mult last grew (-1: none)
        # undo of spurious reductions (RFC 2883 5 / Linux undo_marker, undo_retrans)
        self._episode = False  # a fast recovery or RTO recovery is in progress
        self._undo_prior: CcSnapshot | None = None  # the controller before the reduction
        # [start, end) of each retransmission since then that no D-SACK reported yet
        self._undo_ranges: list[tuple[int, int]] = []
        self._undo_tsval = -1  # TSval of the episode's first retransmission (RFC 3522)
        self._last_tsecr = 0  # TSecr of the latest ACK that advanced SND.UNA
        self._undo_reord = 0  # segments SACKed beyond the hole when fast recovery began
        self._reordering = _DUPTHRESH  # DupThresh: the path's reordering degree (segments)
        # receiver side: a duplicate segment to report first in the next SACK (RFC 2883 4)
        self._dsack_pending: tuple[int, int] | None = None
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
        self.dsacks = 0  # D-SACK blocks received (RFC 2883; RFC 3708 spurious retransmissions)
        self.spurious_probes = 0  # tail loss probes a D-SACK showed to be duplicates
        self.spurious_retrans = 0  # retransmitted segments a D-SACK showed to be duplicates
        self.undos = 0  # congestion window reductions undone (all retransmissions spurious)
        self.dsacks_sent = 0  # D-SACK blocks sent (duplicate segments received)
        self.passive = False
        # TSO (set by the demultiplexer from the route's interface): largest payload of one
        # super-segment (0: none), the size the last super-segments are cut into, how many
        # were sent; tx_route is the output path's per-connection cache (route, headers)
        self.tso_max = 0
        self.tso_cut = 0
        self.tso_segments = 0
        self.tx_route: Any = None
        self.layer_deadline: float | None = None
        """Deadline under which the demultiplexer scheduled this TCB (owned by TcpLayer)."""
        self.listener: Any = None
        """The listener whose SYN queue holds this TCB (owned by TcpLayer)."""
        self._error_reported = False
        self._soft_error: int | None = None
        """Errno of the latest soft ICMP error: reported instead of ETIMEDOUT (Linux
        sk_err_soft)."""
        self._had_connection = False
        self._last_rx = 0.0
        self._ts_last = 0

    def _init_send(self, now: float) -> None:
        la, lp = self.local
        ra, rp = self.remote
        self.iss, self._ts_offset = self._isn.isn_ts(now, la, lp, ra, rp)
        self.snd_una = self.snd_nxt = self.iss
        self._sseq = self.iss + 1
        self._recover = self._lost_edge = self._high_rxt = self.iss
        ws = 0
        if self.policy.window_scaling:
            # the smallest shift that brings the buffer under 64 KiB (RFC 7323 2.3), at most 14
            ws = self.policy.recv_buffer.bit_length() - 16
            ws = 0 if ws < 0 else _MAX_WSCALE if ws > _MAX_WSCALE else ws
        self.rcv_wscale = ws

    def rebase_iss(self, iss: int) -> None:
        """Use ``iss`` as our initial sequence number instead of the generator's (a SYN that
        reopened a TIME-WAIT 4-tuple), before our SYN or SYN-ACK is sent."""
        self.iss = iss
        self.snd_una = self.snd_nxt = iss
        self._sseq = iss + 1
        self._recover = self._lost_edge = self._high_rxt = iss
        self.snd_wl2 = iss

    def _set_closed(self, err: int | None = None) -> None:
        if err is not None and self.error is None and not self._user_closed:
            self.error = err
        self.state = _CLOSED
        self._rto_at = self._ack_at = self._persist_at = self._keep_at = self._close_at = None
        self._tlp_at = None
        self._need_syn = False
        self._ack_now = False
        self._dirty = bool(self._out)
        # buffers and lists dropped (new empty ones only where something was left: most
        # connections close with all of them empty)
        if self._sbuf:
            self._sbuf = bytearray()
        self._shead = 0
        if self._ooo:
            self._ooo = []
        if self._sacked:
            self._sacked = []
        if self._rtx_log:
            self._rtx_log = []
        if self._rerxt:
            self._rerxt = []

    def _timed_out(self) -> None:
        """Retries exhausted: close with the latest soft error, else ETIMEDOUT (Linux
        tcp_write_err)."""
        self._set_closed(self._soft_error or _errno.ETIMEDOUT)

    def _ts_clock(self, now: float) -> int:
        # RFC 7323 5.4: TSval must not go backwards, even if a caller passes a stale ``now``.
        ms = int(now * 1000)
        if ms < self._ts_last:
            ms = self._ts_last
        self._ts_last = ms
        return (ms + self._ts_offset) & MASK

    def _reset_keepalive(self, now: float) -> None:
        self._keep_probes = 0
        self._keep_at = now + self.policy.keepidle if self._keepalive else None

    def _enter_time_wait(self, now: float) -> None:
        self.state = _TIME_WAIT
        self._rto_at = self._persist_at = self._keep_at = self._tlp_at = None
        self._close_at = now + self.policy.time_wait
        if self._sbuf:
            self._sbuf = bytearray()
        self._shead = 0
        if self._sacked:
            self._sacked = []

    if TYPE_CHECKING:
        # Implemented by the mixins (module named in each comment); declared for mypy only.

        # input.py
        def _on_fin(self, now: float) -> None: ...

        # connection.py
        def _urgent_in(self, seg: Segment, rcv_nxt: int) -> None: ...

        # output.py
        def _mkseg(
            self, seq: int, flags: int, payload: bytes | bytearray, now: float
        ) -> Segment: ...
        def _mkrst(self, seq: int) -> Segment: ...
        def _window_update_check(self) -> None: ...

        # recovery.py
        def _timers(self, now: float) -> None: ...
        def _rtt_sample(self, r: float) -> None: ...
        def _ts_rtt(self, tsecr: int, now: float) -> None: ...
        def _on_dupack(self, now: float) -> None: ...
        def _tlp_check(self, now: float) -> None: ...
        def _dsack(self, blocks: tuple[tuple[int, int], ...], ack: int) -> bool: ...
        def _after_transmit(self, now: float, nxt0: int, rtx0: int) -> None: ...
        def _sack_update(self, blocks: tuple[tuple[int, int], ...], ack: int) -> int: ...
        def _rack_detect(self, now: float) -> None: ...
        def _sack_trim(self, una: int) -> None: ...
        def _update_lost_edge(self) -> None: ...
        def _unsacked(self, a: int, b: int) -> int: ...
        def _pipe(self) -> int: ...

        # buffers.py
        def _receive(
            self, seq: int, payload: bytes | bytearray | memoryview, plen: int, now: float
        ) -> None: ...
