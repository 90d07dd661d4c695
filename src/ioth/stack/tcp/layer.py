"""The TCP demultiplexer of one stack: listeners, connections by 4-tuple, RSTs, SYN cookies.

Sans-IO like the TCB: :meth:`TcpLayer.input` takes a segment's bytes with its IP addresses
(raw 4- or 16-byte ``bytes``) and ``now``; segments to send go to the ``output`` callback
``(src_addr, dst_addr, segment_bytes)`` (or to :attr:`TcpLayer.outbox` when there is none),
checksummed with the IPv4 or IPv6 pseudo-header.  The runtime calls :meth:`TcpLayer.on_timer`
when :meth:`TcpLayer.poll_at` is due; socket code calls :meth:`TcpLayer.flush` after a user
call on a connection (``send``, ``recv``, ``shutdown``...) so that its output goes out.

Listeners have a bounded accept queue (the ``backlog``) and a bounded SYN queue
(``policy.syn_backlog``); when the SYN queue is full, SYN-ACKs carry SYN cookies and no state
is kept until a valid ACK returns.
"""

from __future__ import annotations

import errno as _errno
import heapq
import itertools
import os
import random
from collections import deque
from collections.abc import Callable
from typing import Any

from ioth.stack.tcp.connection import MASK, TcpConnection, TcpInfo, reset_for
from ioth.stack.tcp.isn import IsnGenerator
from ioth.stack.tcp.policy import TcpPolicy
from ioth.stack.tcp.segment import ACK, CWR, FIN, PSH, RST, SYN, Segment, decode, encode
from ioth.stack.tcp.state import (
    _CLOSE_WAIT,
    _CLOSED,
    _CLOSING,
    _ESTABLISHED,
    _FIN_WAIT_1,
    _FIN_WAIT_2,
    _LAST_ACK,
    _SYN_RECEIVED,
    _SYN_SENT,
    _TIME_WAIT,
)
from ioth.stack.tcp.timewait import (
    TW_CHALLENGE,
    TW_CLOSE,
    TW_KEEP,
    TW_REUSE,
    TimeWait,
    syn_reuses,
)
from ioth.wire.errors import WireError

Output = Callable[[bytes, bytes, bytes], None]
FastOutput = Callable[["TcpConnection", list[Segment]], int]
RouteInfo = Callable[[tuple[bytes, int], tuple[bytes, int]], tuple[int, int, Any]]
Notify = Callable[["TcpConnection | Listener"], None]

#: Knob (for A/B measurements): a timer entry that finds nothing due re-arms without a
#: service pass (dispatch, queue moves, notify), and a TCB whose output is over (TIME-WAIT,
#: FIN-WAIT-2, CLOSING, LAST-ACK) or that has no deadline left drops its earlier entry
#: instead of being woken up for nothing; off: every entry runs :meth:`_service`.
QUIET_TIMERS = True
#: Knob: the timer heap is rebuilt without its stale entries whenever it grows past twice
#: what it held after the last rebuild (plus :data:`HEAP_SLACK`).  A stale entry (its TCB
#: rescheduled, closed or compacted into TIME-WAIT) does nothing but it references the TCB:
#: behind an earlier live entry (any connection with data in flight) every closed
#: connection's TCB stayed alive until its last entry's time (FIN-WAIT-2: fin_timeout, 60 s),
#: whatever the compact TIME-WAIT saved.  Off: stale entries leave only from the top.
HEAP_PRUNE = True
HEAP_SLACK = 64
#: Knob: a SYN for a listener goes straight to SYN-RECEIVED (no segment dispatch on LISTEN).
HANDSHAKE_FASTPATH = True
#: Knob: a due service pass with nothing to send but perhaps an ACK (an ACK of everything in
#: flight marks the TCB dirty) settles without the dispatch passes
#: (TcpConnection._quiet_dispatch).
IDLE_DISPATCH = True
#: Knob: a connection entering TIME-WAIT (nothing unread, nothing owed) is replaced in the
#: table by a compact :class:`~ioth.stack.tcp.timewait.TimeWait` record (as Linux's timewait
#: sockets; same frames), expired in order without a timer entry each, at most
#: ``policy.max_tw_buckets`` of them; off: the full TCB stays for the whole TIME-WAIT.
COMPACT_TIME_WAIT = True
#: Expiry of compact TIME-WAIT entries is batched: the layer's deadline is the earliest
#: expiry plus this slack, so a busy server is not woken up once per entry (an entry past its
#: expiry is treated as gone at once when a segment arrives for it).
TW_SLACK = 0.1

EPHEMERAL_LOW = 32768
EPHEMERAL_HIGH = 60999
_ESTABLISHED_LIKE = frozenset({_ESTABLISHED, _CLOSE_WAIT})
_ENDING = frozenset({_FIN_WAIT_2, _CLOSING, _LAST_ACK, _TIME_WAIT})
_ANY4 = bytes(4)
#: The errnos of the ICMP errors about a SYN-ACK that drop the half-open connection (Linux
#: ``tcp_req_err`` with ``abort``: IPv4 net/host unreachable, time exceeded, parameter problem;
#: IPv6 the "fatal" ones of ``icmpv6_err_convert``: administratively prohibited, port
#: unreachable, parameter problem...).
_REQ_ABORT4 = frozenset({_errno.ENETUNREACH, _errno.EHOSTUNREACH, _errno.EPROTO})
_REQ_ABORT6 = frozenset({_errno.EACCES, _errno.ECONNREFUSED, _errno.EPROTO})
_ANY6 = bytes(16)
#: TcpConnection / TimeWait / Listener ``bind_flags``: what the socket layer's bind-conflict
#: check needs of a connection whose socket may be gone (Linux keeps an orphaned or
#: TIME-WAIT socket in its port's bind bucket with the socket's sk_reuse and ipv6only).
BIND_REUSE = 1
BIND_V6ONLY = 2
#: in :meth:`TcpLayer.port_owners` only: the entry is a TIME-WAIT (Linux 6.x: an IPv6 one does
#: not conflict with an IPv4 wildcard bind, unlike the same connection before it closed)
BIND_TW = 4
#: SO_REUSEPORT: listeners with it share a port (:meth:`TcpLayer.listen`)
BIND_REUSEPORT = 8
#: Shortest interval between two Listener.recount calls of a listener that looks full.
RECOUNT_INTERVAL = 0.01


class Listener:
    """A listening endpoint: accept queue (backlog) and SYN queue with counters.

    ``backlog`` bounds the established connections not yet accepted: those in
    :attr:`accept_queue` plus :attr:`handed` (taken out of it by an owner that keeps them for
    the application in a queue of its own, the socket layer).  While they are ``backlog``,
    a SYN and a handshake-completing ACK are dropped (counted), as Linux does while its
    accept queue is full (``sk_acceptq_is_full``; the socket layer passes the application's
    backlog + 1, Linux's bound); the peer retransmits."""

    def __init__(self, addr: bytes, port: int, backlog: int, policy: TcpPolicy) -> None:
        self.addr = addr
        """Local address, or ``b""`` for every address of the stack."""
        self.port = port
        self.backlog = max(1, backlog)
        self.policy = policy
        self.handed = 0
        """Connections taken out of :attr:`accept_queue` by its owner and not yet accepted
        by the application (they count against :attr:`backlog`; the owner keeps the count)."""
        self.bind_flags = 0
        """The listening socket's BIND_* flags, inherited by its connections."""
        self.recount: Callable[[], None] | None = None
        """Set by the owner: brings :attr:`handed` down to what still waits for the
        application (some may have been accepted where the owner does not see it); called at
        most every :data:`RECOUNT_INTERVAL` while the backlog looks full."""
        self.recount_at = 0.0
        self.accept_queue: deque[TcpConnection] = deque()
        self.syn_queue: set[TcpConnection] = set()
        self.closed = False
        self.syn_dropped = 0
        """SYNs dropped because the accept queue was full."""
        self.ack_dropped = 0
        """Handshake-completing ACKs dropped because the accept queue was full."""
        self.cookies_sent = 0
        self.cookies_accepted = 0
        self.cookies_rejected = 0
        self.defer_accept = 0
        """TCP_DEFER_ACCEPT, in SYN-ACK retransmissions (Linux's ``rskq_defer_accept``): a
        handshake-completing ACK without data is dropped (counted in :attr:`defer_dropped`)
        while the half-open connection has retransmitted its SYN-ACK fewer times, so that it
        joins the accept queue with its first data (or FIN), or with the ACK that answers
        the SYN-ACK retransmitted at the end of that period; 0: off.  Set it with
        :meth:`set_defer_accept`."""
        self.plain_backlog = self.backlog
        """:attr:`backlog`, or -1 under :attr:`defer_accept`: what the stack's fused receive
        path compares the queues with before it completes a handshake itself (-1: never, it
        leaves the ACK to :meth:`TcpLayer.conn_input`), so that it tests no flag."""
        self.defer_dropped = 0
        """Handshake ACKs without data dropped under :attr:`defer_accept`."""
        self.group: list[Listener] | None = None
        """SO_REUSEPORT: the listeners sharing this address and port, in the order they
        started (the same list object for each of them); None: alone."""

    def __repr__(self) -> str:
        return f"<Listener port={self.port} queued={len(self.accept_queue)}>"

    def set_defer_accept(self, retransmissions: int) -> None:
        """TCP_DEFER_ACCEPT: :attr:`defer_accept` (0: off) and :attr:`plain_backlog`."""
        self.defer_accept = max(0, retransmissions)
        self.plain_backlog = -1 if self.defer_accept else self.backlog

    def accept(self) -> TcpConnection | None:
        """The oldest established connection, or None if there is none yet."""
        if self.accept_queue:
            return self.accept_queue.popleft()
        return None

    @property
    def readable(self) -> bool:
        """accept() would return a connection."""
        return bool(self.accept_queue)




def tso_payload(gso_size: int, v6: bool) -> int:
    """The largest TCP payload of a super-segment whose IP packets may reach ``gso_size``
    bytes (the IP header and 60 bytes of TCP header with options off it); 0: no TSO."""
    return max(0, gso_size - (40 if v6 else 20) - 60) if gso_size > 0 else 0

class TcpLayer:
    """All TCP state of one stack."""

    def __init__(
        self,
        rng: random.Random,
        policy: TcpPolicy | None = None,
        output: Output | None = None,
        mtu: int | Callable[[bytes], int] = 1500,
        *,
        verify_checksum: bool = True,
        max_connections: int = 65536,
        notify: Notify | None = None,
        batch_ack_segments: int = 64,
        gso: Callable[[bytes], int] | None = None,
        fast_output: FastOutput | None = None,
        route_info: RouteInfo | None = None,
    ) -> None:
        self.rng = rng
        self.policy = policy if policy is not None else TcpPolicy()
        self.policy.validate()
        self.output = output
        self.outbox: list[tuple[bytes, bytes, bytes]] = []
        self._mtu = mtu
        self._gso = gso
        """The largest IP packet (0: none) the interface towards a remote takes as a TCP
        super-segment and cuts into segments itself (TSO)."""
        self.fast_output = fast_output
        """Optional output path for a connection's segments (the stack's per-connection header
        templates): sends a leading part of a list of segments and returns how many; the
        others go through :func:`encode` and ``output`` (a super-segment cut into
        ``tso_cut``-sized pieces first)."""
        self.route_info = route_info
        """Optional: ``(local, remote) -> (mtu, tso_max, tx_route)`` for a new connection
        from one route lookup (instead of the ``mtu`` and ``gso`` callbacks and the fast
        output's own lookup at the first segment)."""
        self.verify_checksum = verify_checksum
        self.max_connections = max_connections
        self.notify = notify
        self.isn = IsnGenerator(rng)
        self.connections: dict[tuple[bytes, int, bytes, int], TcpConnection] = {}
        self.listeners: dict[tuple[bytes, int], Listener] = {}
        self._heap: list[tuple[float, int, TcpConnection]] = []
        self._heap_limit = HEAP_SLACK
        """Size of the heap past which it is rebuilt without stale entries (HEAP_PRUNE)."""
        self.heap_prunes = 0
        """Times the timer heap was rebuilt without its stale entries."""
        self._batch: dict[TcpConnection, None] | None = None
        self.batch_ack_segments = batch_ack_segments
        """Inside a batch, a connection that received this many full-sized segments without
        acknowledging them dispatches at once: a bound on stretch ACKs (without it one ACK
        covered 100-176 segments).  RFC 5681 4.2 asks for every 2nd segment, but every ACK
        inside a batch costs: 2 lost about a third of the batched MTU 1500 throughput of
        benchmarks/bench_tcp_core.py, 16 about a fifth of kernel->ioth (bench_tcp k2i1500),
        64 is within the noise of that benchmark; a quarter or half of a 1 MiB window halved
        the batched MTU 65520 throughput, so there is no window-relative bound."""
        self.now = 0.0
        """The ``now`` of the entry point running (for output callbacks that need a time)."""
        self._tick = itertools.count()
        # counters
        self.rx_segments = 0
        self.rx_errors = 0
        """Segments dropped by the codec (truncated, bad checksum, bad options)."""
        self.rx_no_socket = 0
        """Segments for no connection and no listener (answered with RST unless RST)."""
        self.unreachable_aborts = 0
        """Connection attempts failed because neighbour resolution of their next hop failed."""
        self.icmp_req_drops = 0
        """Half-open connections dropped by an ICMP error about their SYN-ACK."""
        self.tx_segments = 0
        self.tx_fast = 0
        """Segments sent by the fast output (header templates)."""
        self.tx_super = 0
        """TCP super-segments (TSO) handed to the output whole."""
        self.tx_super_split = 0
        """Super-segments cut into MSS-sized segments here because the output path could not
        take them whole (neighbour unresolved, path MTU entry, route without TSO)."""
        self.resets_sent = 0
        self.table_full = 0
        # compact TIME-WAIT (COMPACT_TIME_WAIT)
        self.time_wait: dict[tuple[bytes, int, bytes, int], TimeWait] = {}
        """Connections in compact TIME-WAIT by 4-tuple (not in :attr:`connections`; they do
        not count against ``max_connections``, as Linux's timewait buckets)."""
        self.port_use: dict[int, int] = {}
        """Entries of :attr:`connections` and :attr:`time_wait` per local port (a port
        absent: none), so that :meth:`port_owners` looks at a free port without a pass
        over the tables."""
        self._tw_queues: dict[float, deque[TimeWait]] = {}
        """Entries by TIME-WAIT length, each deque in expiry order (a restarted entry is
        appended again; its earlier occurrence is skipped)."""
        self._tw_due: float | None = None
        """When the earliest compact entry expires (plus :data:`TW_SLACK`)."""
        self._tw_chal_window = 0.0
        self._tw_chal_count = 0
        self.tw_compacted = 0
        """Connections that entered compact TIME-WAIT."""
        self.tw_overflow = 0
        """Connections that skipped TIME-WAIT because ``max_tw_buckets`` entries existed
        (Linux: "time wait bucket table overflow")."""
        self.tw_reused = 0
        """TIME-WAIT 4-tuples taken by a new SYN (RFC 6191) or, with timestamps, by a connect
        from the explicitly given local port (as Linux tcp_twsk_unique)."""
        self.tw_killed = 0
        """TIME-WAIT entries ended by a RST (RFC 1337 assassination, as Linux by default)."""

    # ------------------------------------------------------------------ helpers

    def mss_for(self, remote: bytes) -> int:
        """The MSS for segments to ``remote``: MTU minus IP and TCP headers."""
        mtu = self._mtu(remote) if callable(self._mtu) else self._mtu
        return mtu - (60 if len(remote) == 16 else 40)

    def tso_for(self, remote: bytes) -> int:
        """The largest TCP payload of a super-segment towards ``remote`` (0: no TSO)."""
        if self._gso is None:
            return 0
        return tso_payload(self._gso(remote), len(remote) == 16)

    def _send(self, conn: TcpConnection, segs: list[Segment]) -> None:
        """Send segments of ``conn``: the fast output first, the others encoded (a
        super-segment cut into ``conn.tso_cut``-sized pieces)."""
        if not segs:
            return
        fast = self.fast_output
        cut = conn.tso_cut
        done = 0
        if fast is not None:
            done = fast(conn, segs)
            if done:
                self.tx_segments += done
                self.tx_fast += done
                if cut > 0:
                    self.tx_super += sum(1 for s in segs[:done] if len(s.payload) > cut)
                if done == len(segs):
                    return
                segs = segs[done:]
        self._send_slow(conn, segs)

    def _send_slow(self, conn: TcpConnection, segs: list[Segment]) -> None:
        """Encode and emit what the fast output did not take (a super-segment cut into
        ``conn.tso_cut``-sized pieces)."""
        cut = conn.tso_cut
        la, lp = conn.local
        ra, rp = conn.remote
        policy = conn.policy
        if policy.ip_header and self.output is not None:
            self._send_policy(conn, segs)
            return
        for seg in segs:
            payload = seg.payload
            n = len(payload)
            if cut <= 0 or n <= cut:
                self._emit(la, lp, ra, rp, seg)
                continue
            self.tx_super_split += 1
            flags = seg.flags
            for off in range(0, n, cut):
                f = flags
                if off:
                    f &= ~CWR
                if off + cut < n:
                    f &= ~(FIN | PSH)
                piece = Segment((seg.seq + off) & MASK, seg.ack, f, seg.window,
                                payload[off:off + cut], tsval=seg.tsval, tsecr=seg.tsecr,
                                sack=seg.sack)
                self._emit(la, lp, ra, rp, piece)

    def _send_policy(self, conn: TcpConnection, segs: list[Segment]) -> None:
        """:meth:`_send_slow` for a connection whose policy sets IP header fields (IP_TTL,
        IP_TOS...): the output is given the policy (super-segments cut first)."""
        cut = conn.tso_cut
        la, lp = conn.local
        ra, rp = conn.remote
        output = self.output
        assert output is not None
        for seg in segs:
            payload = seg.payload
            n = len(payload)
            pieces = [seg]
            if 0 < cut < n:
                self.tx_super_split += 1
                pieces = []
                for off in range(0, n, cut):
                    f = seg.flags
                    if off:
                        f &= ~CWR
                    if off + cut < n:
                        f &= ~(FIN | PSH)
                    pieces.append(Segment((seg.seq + off) & MASK, seg.ack, f, seg.window,
                                          payload[off:off + cut], tsval=seg.tsval,
                                          tsecr=seg.tsecr, sack=seg.sack))
            for piece in pieces:
                self.tx_segments += 1
                if piece.flags & RST:
                    self.resets_sent += 1
                output(la, ra, encode(piece, lp, rp, la, ra), conn.policy)  # type: ignore[call-arg]

    def _emit(self, src: bytes, sport: int, dst: bytes, dport: int, seg: Segment) -> None:
        data = encode(seg, sport, dport, src, dst)
        self.tx_segments += 1
        if seg.flags & RST:
            self.resets_sent += 1
        if self.output is not None:
            self.output(src, dst, data)
        else:
            self.outbox.append((src, dst, data))

    def _schedule(self, conn: TcpConnection) -> None:
        # Lazy timers: a later deadline keeps the earlier heap entry (it fires early, finds
        # nothing due and re-arms), so restarting the RTO on every ACK costs no heap push.
        t = conn.poll_at()
        if t is not None:
            d = conn.layer_deadline
            if d is None or t < d:
                conn.layer_deadline = t
                heapq.heappush(self._heap, (t, next(self._tick), conn))

    def _new_conn(
        self, local: tuple[bytes, int], remote: tuple[bytes, int], policy: TcpPolicy
    ) -> TcpConnection:
        info = self.route_info
        if info is not None:
            mtu, tso, tx_route = info(local, remote)
            conn = TcpConnection(policy, self.isn, local, remote,
                                 mtu - (60 if len(remote[0]) == 16 else 40))
            conn.tso_max = tso
            # (IP_TTL, IP_TOS...: a route of its own, made with the connection's headers)
            conn.tx_route = None if policy.ip_header else tx_route
            return conn
        conn = TcpConnection(policy, self.isn, local, remote, self.mss_for(remote[0]))
        conn.tso_max = self.tso_for(remote[0])
        return conn

    def _service(self, conn: TcpConnection, now: float) -> None:
        """Dispatch ``conn``'s output, move it between queues, forget it once CLOSED."""
        self.now = now
        # conn.dispatch inlined; when nothing is due and nothing else happens below, the
        # deadline it computed is the one to schedule (saves a second poll_at).  A dirty TCB
        # (the usual case: a segment or a user call changed it) is due without poll_at.
        if conn._dirty or conn._out or conn._ack_now:
            t: float | None = 0.0
        else:
            t = conn.poll_at()
        if t is not None and t <= now:
            segs = None
            st = conn.state
            if IDLE_DISPATCH and (st is _ESTABLISHED or st is _CLOSE_WAIT) and \
                    len(conn._sbuf) == conn._shead:
                segs = conn._quiet_dispatch(now)  # nothing to send but an ACK: no passes
            if segs is None:
                segs = conn._dispatch(now)
            conn._dirty = False
            t = -1.0  # recompute below
            if segs:
                # _send inlined for the usual case (fast output, no TSO cut to count)
                fast = self.fast_output
                if fast is not None and conn.tso_cut <= 0:
                    done = fast(conn, segs)
                    if done:
                        self.tx_segments += done
                        self.tx_fast += done
                        if done != len(segs):
                            self._send_slow(conn, segs[done:])
                    else:
                        self._send_slow(conn, segs)
                else:
                    self._send(conn, segs)
        st = conn.state
        listener: Listener | None = conn.listener
        if listener is not None and st is not _SYN_RECEIVED:
            t = -1.0
            listener.syn_queue.discard(conn)
            conn.listener = None
            if st in _ESTABLISHED_LIKE or st is _FIN_WAIT_1:
                if listener.closed:
                    conn.abort()
                    self._send(conn, conn.dispatch(now))
                else:
                    listener.accept_queue.append(conn)
                    if self.notify is not None:
                        self.notify(listener)
                st = conn.state  # (the callback may have changed it)
            elif (st is _CLOSED and conn.error is not None and conn.snd_una > conn.iss
                  and not listener.closed):
                # the handshake's ACK and a reset in one batch: Linux queued the connection
                # at the ACK and the reset found it there; accept still gives it, its first
                # read the error (a reset before the ACK of our SYN ends only the request)
                listener.accept_queue.append(conn)
                if self.notify is not None:
                    self.notify(listener)
        if st is _CLOSED:
            la, lp = conn.local
            ra, rp = conn.remote
            key = (la, lp, ra, rp)
            if self.connections.get(key) is conn:
                del self.connections[key]
                pu = self.port_use  # (_port_done inlined)
                n = pu.get(lp, 0)
                if n > 1:
                    pu[lp] = n - 1
                else:
                    pu.pop(lp, None)
            conn.layer_deadline = None
        elif st is _TIME_WAIT and COMPACT_TIME_WAIT and self._compact(conn, now):
            pass
        else:
            # _schedule inlined: a later deadline keeps the earlier heap entry (it fires
            # early, finds nothing due and re-arms), except once the TCB's output is over
            # (TIME-WAIT...: its deadlines no longer move per segment), where the earlier
            # entry goes stale instead of waking the runtime up for nothing
            if t == -1.0:
                # conn.poll_at() inlined (the earliest of its deadlines)
                if conn._dirty or conn._out or conn._ack_now:
                    t = 0.0
                else:
                    t = conn._rto_at
                    d = conn._ack_at
                    if d is not None and (t is None or d < t):
                        t = d
                    d = conn._persist_at
                    if d is not None and (t is None or d < t):
                        t = d
                    d = conn._keep_at
                    if d is not None and (t is None or d < t):
                        t = d
                    d = conn._close_at
                    if d is not None and (t is None or d < t):
                        t = d
                    d = conn._tlp_at
                    if d is not None and (t is None or d < t):
                        t = d
            if t is not None:
                d = conn.layer_deadline
                if d is None or t < d or (t > d and QUIET_TIMERS and st in _ENDING):
                    conn.layer_deadline = t
                    heap = self._heap
                    heapq.heappush(heap, (t, next(self._tick), conn))
                    if len(heap) > self._heap_limit and HEAP_PRUNE:
                        self._prune_heap()
            elif QUIET_TIMERS:
                conn.layer_deadline = None  # nothing pending: an earlier entry goes stale
        notify = self.notify
        if notify is not None:
            notify(conn)

    def _prune_heap(self) -> None:
        """Drop the stale timer entries (in place: :meth:`on_timer` may be iterating)."""
        heap = self._heap
        heap[:] = [e for e in heap if e[2].layer_deadline == e[0]]
        heapq.heapify(heap)
        self._heap_limit = 2 * len(heap) + HEAP_SLACK
        self.heap_prunes += 1

    # ------------------------------------------------------------------ user API

    def listen(
        self, port: int, addr: bytes = b"", backlog: int = 128, policy: TcpPolicy | None = None,
        reuseport: bool = False,
    ) -> Listener:
        """Start listening on ``addr``:``port``; EADDRINUSE if taken.

        ``addr`` is an address of the stack, ``bytes(4)`` / ``bytes(16)`` for every IPv4 /
        IPv6 address (INADDR_ANY, in6addr_any), or ``b""`` for every address of both families.
        ``reuseport`` (SO_REUSEPORT): a port listened on with it may be listened on again with
        it; the new connections are spread over the listeners by a hash of their 4-tuple
        (as Linux), each listener with its own queues.
        """
        key = (addr, port)
        first = self.listeners.get(key)
        if first is not None and not (reuseport and first.bind_flags & BIND_REUSEPORT):
            raise OSError(_errno.EADDRINUSE, f"{os.strerror(_errno.EADDRINUSE)} (port {port})")
        if not 0 < port < 65536:
            raise OSError(_errno.EINVAL, f"bad port {port}")
        listener = Listener(addr, port, backlog, policy or self.policy)
        if reuseport:
            listener.bind_flags = BIND_REUSEPORT
        if first is not None:
            group = first.group
            if group is None:
                group = first.group = [first]
            group.append(listener)
            listener.group = group
        else:
            self.listeners[key] = listener
        return listener

    def _reuseport_pick(self, group: list[Listener], src: bytes, sport: int, dst: bytes,
                        dport: int) -> Listener:
        """The listener of a SO_REUSEPORT group that takes a new connection: a hash of its
        4-tuple with this layer's secret (as Linux's ``reuseport_select_sock``)."""
        h = self.isn.ts_offset(dst, dport, src, sport)  # (a keyed hash of the 4-tuple)
        return group[h % len(group)]

    def close_listener(self, listener: Listener, now: float) -> None:
        """Stop listening; queued and half-open connections are reset."""
        listener.closed = True
        key = (listener.addr, listener.port)
        group = listener.group
        if group is not None:
            group.remove(listener)
            listener.group = None
            if self.listeners.get(key) is listener:
                self.listeners[key] = group[0]
            if len(group) == 1:
                group[0].group = None
        elif self.listeners.get(key) is listener:
            del self.listeners[key]
        for conn in list(listener.accept_queue) + list(listener.syn_queue):
            conn.abort()
            self._service(conn, now)
        listener.accept_queue.clear()
        listener.syn_queue.clear()

    def accept_full(self, listener: Listener) -> bool:
        """``listener`` has no room for another established connection (Linux's
        ``sk_acceptq_is_full``): its queue, what its owner took out of it and not yet gave
        the application (:attr:`Listener.handed`), and those whose handshake completed in the
        current input batch (they join the queue at its end) fill its backlog."""
        n = len(listener.accept_queue) + listener.handed
        backlog = listener.backlog
        if n >= backlog:
            recount = listener.recount
            if recount is None or not listener.handed or self.now < listener.recount_at:
                return True
            listener.recount_at = self.now + RECOUNT_INTERVAL
            recount()
            n = len(listener.accept_queue) + listener.handed
            if n >= backlog:
                return True
        batch = self._batch
        if not batch or n + len(batch) < backlog:
            return False
        for conn in batch:
            if conn.listener is listener and conn.state is not _SYN_RECEIVED \
                    and conn.state is not _CLOSED:
                n += 1
        return n >= backlog

    def port_owners(self, port: int, now: float) -> list[tuple[bytes, int]]:
        """(local address, ``bind_flags``) of every connection and unexpired TIME-WAIT entry on
        local port ``port``: what Linux keeps in the port's bind bucket besides the sockets
        themselves (orphaned connections, TIME-WAIT), and a bind must not conflict with
        (``inet_csk_bind_conflict``); TIME-WAIT entries with :data:`BIND_TW` (a full TCB in
        TIME-WAIT too).  A port without entries (:attr:`port_use`) costs no pass over the
        tables; one with entries, one pass."""
        if port not in self.port_use:
            return []
        out = [(key[0], conn.bind_flags | BIND_TW if conn.state is _TIME_WAIT
                else conn.bind_flags) for key, conn in self.connections.items()
               if key[1] == port and conn.state is not _CLOSED]
        if self.time_wait:
            out.extend((key[0], tw.bind_flags | BIND_TW) for key, tw in self.time_wait.items()
                       if key[1] == port and tw.expiry >= now)
        return out

    def ephemeral_port(self, src: bytes, dst: bytes, dport: int) -> int:
        """A free local port for a connection to ``dst``:``dport`` (from the injected rng)."""
        span = EPHEMERAL_HIGH - EPHEMERAL_LOW + 1
        start = self.rng.randrange(span)
        for i in range(span):
            port = EPHEMERAL_LOW + (start + i) % span
            key = (src, port, dst, dport)
            if key not in self.connections and key not in self.time_wait:
                return port
        raise OSError(_errno.EADDRNOTAVAIL, os.strerror(_errno.EADDRNOTAVAIL))

    def connect(
        self,
        src: bytes,
        dst: bytes,
        dport: int,
        now: float,
        sport: int = 0,
        policy: TcpPolicy | None = None,
    ) -> TcpConnection:
        """Active open from ``src``:``sport`` (0: ephemeral) to ``dst``:``dport``; sends the SYN."""
        if len(src) != len(dst) or len(dst) not in (4, 16):
            raise OSError(_errno.EINVAL, "source and destination addresses of different families")
        # (port 0 is a destination like any other: Linux sends the SYN, the peer refuses it)
        if not 0 <= dport < 65536 or not 0 <= sport < 65536:
            raise OSError(_errno.EINVAL, f"bad port {dport if not 0 <= dport < 65536 else sport}")
        if len(self.connections) >= self.max_connections:
            self.table_full += 1
            raise OSError(_errno.ENOBUFS, "too many TCP connections")
        bound = sport != 0
        if not bound:
            sport = self.ephemeral_port(src, dst, dport)
        key = (src, sport, dst, dport)
        tw = self.time_wait.get(key)
        if tw is not None and tw.expiry < now:
            self._tw_forget(tw)
            tw = None
        iss: int | None = None
        if bound:
            # As Linux (tcp_twsk_unique for an explicitly bound port): a TIME-WAIT of ours
            # that had timestamps gives its 4-tuple to the new connection (PAWS protects it
            # from the old one's segments), whose ISS starts above the old sequence space
            # (the old SND.NXT + 65537, as a SYN reopening a TIME-WAIT of a listener).
            if tw is not None:
                if tw.ts_offset is not None:
                    self._tw_forget(tw)
                    self.tw_reused += 1
                    iss = tw.snd_nxt + 65537
            else:
                old = self.connections.get(key)
                if old is not None and old.state is _TIME_WAIT and old.ts_ok:
                    old.reopen_time_wait()
                    self._service(old, now)  # (CLOSED: out of the table)
                    self.tw_reused += 1
                    iss = old.snd_nxt + 65537
        if key in self.connections or key in self.time_wait:
            raise OSError(_errno.EADDRINUSE, f"{os.strerror(_errno.EADDRINUSE)} (port {sport})")
        conn = self._new_conn((src, sport), (dst, dport), policy or self.policy)
        conn.connect(now)
        if iss is not None:
            conn.rebase_iss(iss & MASK or 1)
        self.connections[key] = conn
        pu = self.port_use
        pu[sport] = pu.get(sport, 0) + 1
        self._service(conn, now)
        return conn

    def flush(self, conn: TcpConnection, now: float) -> None:
        """Send what ``conn`` has to send after user calls and re-arm its timer."""
        self._service(conn, now)

    def pmtu_update(self, remote: bytes, mtu: int) -> None:
        """The path MTU towards ``remote`` changed (ICMP too big / PMTUD): resize segments."""
        for conn in self.connections.values():
            if conn.remote[0] == remote:
                conn.set_path_mtu(mtu)

    def icmp_error(
        self, local: bytes, remote: bytes, quoted: bytes | bytearray | memoryview, err: int,
        now: float, mtu: int | None = None,
    ) -> None:
        """An ICMP error quoting a segment we sent from ``local`` to ``remote``.

        ``quoted`` holds at least the first 8 bytes of that TCP header (ports, sequence).
        ``mtu`` (fragmentation needed / packet too big) shrinks the segments of the
        connection; ``err`` is the errno the error converts to (0: none, e.g. fragmentation
        needed): it aborts a connection attempt and is a soft error in other states (see
        :meth:`TcpConnection.icmp_error`).
        """
        if len(quoted) < 8:
            self.rx_errors += 1
            return
        sport = (quoted[0] << 8) | quoted[1]
        dport = (quoted[2] << 8) | quoted[3]
        seq = int.from_bytes(quoted[4:8], "big")
        conn = self.connections.get((local, sport, remote, dport))
        if conn is None:
            return
        if mtu is not None and (seq - conn.snd_una) & MASK < conn.snd_nxt - conn.snd_una:
            # (only for a quote of what is in flight: Linux drops out-of-window ICMPs)
            conn.set_path_mtu(mtu)
        if conn.state is _SYN_RECEIVED and conn.listener is not None:
            # a half-open connection (Linux tcp_req_err): an error quoting the SYN-ACK's
            # sequence number that says the SYN's source is unreachable drops it; others
            # are ignored
            if seq == conn.iss and err in (_REQ_ABORT6 if len(remote) == 16 else _REQ_ABORT4):
                self.icmp_req_drops += 1
                conn._set_closed()
                self._service(conn, now)
            return
        conn.icmp_error(seq, err, now)
        self._service(conn, now)

    def unreachable(self, local: bytes, remote: bytes, quoted: bytes | bytearray | memoryview,
                    err: int, now: float) -> None:
        """Neighbour resolution failed for a segment we sent (``quoted``: its TCP header).

        Like Linux (a failed ARP/ND entry reports "host unreachable" for each queued packet,
        which ``tcp_v4_err``/``tcp_v6_err`` turn into a hard error in SYN-SENT): a connection
        attempt fails with ``err`` (EHOSTUNREACH); other states treat it as a soft error and
        keep retransmitting (RFC 1122 4.2.3.9).
        """
        if len(quoted) < 8:
            return
        sport = (quoted[0] << 8) | quoted[1]
        dport = (quoted[2] << 8) | quoted[3]
        conn = self.connections.get((local, sport, remote, dport))
        if conn is None or conn.state is not _SYN_SENT:
            return
        self.unreachable_aborts += 1
        conn._set_closed(err)
        self._service(conn, now)

    def info(self) -> list[TcpInfo]:
        """Introspection of every connection (for an ``ss``-like listing)."""
        return [conn.info() for conn in self.connections.values()] + [
            tw.info() for tw in self.time_wait.values()]

    def listing(self) -> list[str]:
        """``ss -tni``-like lines: listeners, then connections."""
        lines = []
        for listener in self.listeners.values():
            addr = _fmt_addr(listener.addr)
            lines.append(
                f"LISTEN {len(listener.accept_queue)} {listener.backlog} {addr}:{listener.port}"
                f" syn_queue:{len(listener.syn_queue)} cookies:{listener.cookies_sent}"
                f" overflows:{listener.syn_dropped + listener.ack_dropped}"
            )
        lines.extend(str(conn.info()) for conn in self.connections.values())
        lines.extend(str(tw.info()) for tw in self.time_wait.values())
        return lines

    def begin_batch(self) -> None:
        """Defer output of connections that receive segments until :meth:`end_batch`.

        A runtime that reads many frames per wakeup brackets them with these calls: each
        connection then dispatches once per batch, so its ACKs are coalesced (like GRO) and a
        sender reacts to several ACKs with one burst.
        """
        if self._batch is None:
            self._batch = {}

    def end_batch(self, now: float) -> None:
        """Dispatch every connection touched since :meth:`begin_batch`."""
        # (StackCore.end_batch has an inlined copy: keep them the same)
        batch = self._batch
        self._batch = None
        if batch:
            for conn in batch:
                self._service(conn, now)

    # ------------------------------------------------------------------ timers

    def poll_at(self) -> float | None:
        """Earliest deadline of any connection (0.0: now), None if nothing is pending."""
        # (StackCore.next_deadline has an inlined copy: keep them the same)
        heap = self._heap
        tw = self._tw_due
        while heap:
            t, _, conn = heap[0]
            if conn.layer_deadline == t:
                return tw if tw is not None and tw < t else t
            heapq.heappop(heap)
        return tw

    def on_timer(self, now: float) -> None:
        """Run every connection whose deadline is due."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            t, _, conn = heapq.heappop(heap)
            if conn.layer_deadline != t:
                continue
            if QUIET_TIMERS and conn.listener is None and conn.state is not _CLOSED:
                # A lazy deadline (an earlier timer since cancelled or moved, e.g. a delayed
                # ACK that a reply carried): nothing is due, nothing changed since the last
                # _service, so re-arm only (no dispatch, no notify).
                d = conn.poll_at()
                if d is not None and d > now:
                    conn.layer_deadline = d
                    heapq.heappush(heap, (d, next(self._tick), conn))
                    continue
            conn.layer_deadline = None
            self._service(conn, now)
        tw = self._tw_due
        if tw is not None and tw <= now:
            self._tw_expire(now)

    # ------------------------------------------------------------------ compact TIME-WAIT

    def _compact(self, conn: TcpConnection, now: float) -> bool:
        """Replace ``conn`` (TIME-WAIT, just serviced) by a :class:`TimeWait` record, or
        close it when ``max_tw_buckets`` records exist.  False (keep the full TCB for now):
        something unread, owed or pending, or a zero TIME-WAIT, or not in the table.

        As Linux (``tcp_time_wait`` then ``tcp_done``), the TCB itself becomes CLOSED without
        an error: whoever still holds it (a socket) reads the same end of stream as before,
        and the 4-tuple's TIME-WAIT lives on in :attr:`time_wait`."""
        close_at = conn._close_at
        if (
            conn._rlen or conn._ooo or conn._out or conn._ack_now or conn._dirty
            or conn._ack_at is not None or conn._dsack_pending is not None
            or close_at is None or close_at <= now or conn.listener is not None
        ):
            return False
        la, lp = conn.local
        ra, rp = conn.remote
        key = (la, lp, ra, rp)
        if self.connections.get(key) is not conn:
            return False
        del self.connections[key]
        conn.layer_deadline = None  # its heap entry goes stale
        conn._set_closed()
        # (port_use: the TIME-WAIT entry takes the connection's place)
        if len(self.time_wait) >= self.policy.max_tw_buckets:
            self.tw_overflow += 1  # as Linux: the connection skips TIME-WAIT
            self._port_done(lp)
            return True
        policy = conn.policy
        ws = conn.rcv_wscale
        cap = policy.recv_buffer
        step = cap >> 1
        if conn.mss_local < step:
            step = conn.mss_local
        rcv = conn.rcv_nxt
        tw = TimeWait(
            key, policy, conn.snd_nxt & MASK, rcv & MASK, conn._rcv_adv - rcv,
            (cap >> ws) << ws, step, ws, conn.ts_recent,
            conn._ts_offset if conn.ts_ok else None, conn._ts_last, conn.sack_ok,
            conn.max_snd_wnd, close_at,
        )
        tw.bind_flags = conn.bind_flags
        self.time_wait[key] = tw
        length = policy.time_wait
        q = self._tw_queues.get(length)
        if q is None:
            q = self._tw_queues[length] = deque()
        q.append(tw)
        due = close_at + TW_SLACK
        if self._tw_due is None or due < self._tw_due:
            self._tw_due = due
        self.tw_compacted += 1
        return True

    def _tw_forget(self, tw: TimeWait) -> None:
        """Drop ``tw`` from the table (its deque occurrences are skipped later)."""
        if self.time_wait.get(tw.key) is tw:
            del self.time_wait[tw.key]
            self._port_done(tw.key[1])

    def _port_done(self, port: int) -> None:
        """One entry of :attr:`connections` / :attr:`time_wait` on ``port`` left."""
        pu = self.port_use
        n = pu.get(port, 0)
        if n > 1:
            pu[port] = n - 1
        else:
            pu.pop(port, None)

    def _tw_expire(self, now: float) -> None:
        """Forget every compact entry whose TIME-WAIT is over; re-arm :attr:`_tw_due`."""
        table = self.time_wait
        due: float | None = None
        for length, q in list(self._tw_queues.items()):
            while q:
                tw = q[0]
                if tw.queued > 1:  # restarted: a later occurrence holds its place
                    tw.queued -= 1
                    q.popleft()
                    continue
                if table.get(tw.key) is not tw:  # reset or reused already
                    q.popleft()
                    continue
                if tw.expiry <= now:
                    q.popleft()
                    del table[tw.key]
                    self._port_done(tw.key[1])
                    continue
                t = tw.expiry + TW_SLACK
                if due is None or t < due:
                    due = t
                break
            if not q:
                del self._tw_queues[length]
        self._tw_due = due

    def _tw_input(self, tw: TimeWait, seg: Segment, now: float) -> int:
        """A segment for a compact TIME-WAIT entry: ``TW_KEEP`` if handled, ``TW_CLOSE`` if
        the 4-tuple is free now (expired) or ``TW_REUSE`` (a SYN reuses it): the caller then
        gives the segment to a listener."""
        if tw.expiry < now:  # (the full TCB still answers at its expiry instant)
            self._tw_forget(tw)
            return TW_CLOSE
        expiry = tw.expiry
        verdict, ack = tw.input(seg, now)
        if verdict == TW_REUSE:
            if not self._listening(tw.key[0], tw.key[1]):
                # no listener to take it: the TIME-WAIT's ACK (Linux tcp_v4_rcv: TCP_TW_SYN
                # without a listener falls to TCP_TW_ACK; RFC 5961 4.2)
                la, lp, ra, rp = tw.key
                self._emit(la, lp, ra, rp, tw.ack(now))
                return TW_KEEP
            self.tw_reused += 1
            self._tw_forget(tw)
            return TW_REUSE
        if verdict == TW_CLOSE:
            self.tw_killed += 1
            self._tw_forget(tw)
            return TW_KEEP
        if verdict == TW_CHALLENGE:
            # RFC 5961 7: rate-limited (one budget for all compact entries of the layer)
            if now - self._tw_chal_window >= 1.0:
                self._tw_chal_window = now
                self._tw_chal_count = 0
            if self._tw_chal_count < self.policy.challenge_ack_limit:
                self._tw_chal_count += 1
                ack = tw.ack(now)
        if tw.expiry != expiry:  # 2*MSL restarted: queue it again at the tail
            q = self._tw_queues.get(tw.policy.time_wait)
            if q is None:
                q = self._tw_queues[tw.policy.time_wait] = deque()
            q.append(tw)
            tw.queued += 1
            if self._tw_due is None:
                self._tw_due = tw.expiry + TW_SLACK
        if ack is not None:
            la, lp, ra, rp = tw.key
            self._emit(la, lp, ra, rp, ack)
        return TW_KEEP

    # ------------------------------------------------------------------ input

    def input(self, src: bytes, dst: bytes, data: bytes | bytearray | memoryview,
              now: float) -> None:
        """One segment from the IP layer (``src`` sent it to our ``dst``)."""
        self.rx_segments += 1
        self.now = now
        try:
            if self.verify_checksum:
                sport, dport, seg = decode(data, src, dst)
            else:
                sport, dport, seg = decode(data)
        except WireError:
            self.rx_errors += 1
            return
        conn = self.connections.get((dst, dport, src, sport))
        if conn is not None and conn.state is _CLOSED:
            # closed while its output waited in a batch: forget it now
            self._service(conn, now)
            conn = None
        iss: int | None = None
        if conn is None and self.time_wait:
            tw = self.time_wait.get((dst, dport, src, sport))
            if tw is not None:
                verdict = self._tw_input(tw, seg, now)
                if verdict == TW_KEEP:
                    return
                if verdict == TW_REUSE:
                    iss = tw.snd_nxt + 65537  # as Linux: above the old incarnation's space
        if conn is not None:
            flags = seg.flags
            if (
                conn.state is _TIME_WAIT
                and flags & (SYN | ACK | RST) == SYN
                and syn_reuses(seg.seq, seg.tsval, conn.rcv_nxt & MASK, conn.ts_ok,
                               conn.ts_recent)
            ):
                # RFC 9293 3.10.7.4 / RFC 6191: a new SYN may reopen a TIME-WAIT 4-tuple if
                # its timestamp is newer or (no timestamps) its sequence number is above
                # RCV.NXT; without a listener to take it: the TIME-WAIT's ACK (as above).
                if not self._listening(dst, dport):
                    conn._ack_now = True
                    self._service(conn, now)
                    return
                conn.reopen_time_wait()
                self._service(conn, now)
                self._to_listener(src, sport, dst, dport, seg, now, conn.snd_nxt + 65537)
                return
            self.conn_input(conn, seg, now)
            return
        self._to_listener(src, sport, dst, dport, seg, now, iss)

    def conn_input(self, conn: TcpConnection, seg: Segment, now: float,
                   predict: bool = True) -> None:
        """A segment for ``conn`` (found in :attr:`connections`, not CLOSED), decoded and
        checksum-verified; not a SYN reopening a TIME-WAIT.  What :meth:`input` does once it
        found the connection: the stack's fused receive path calls it directly for the
        segments header prediction does not take (handshake ACK, FIN...), without the
        Ethernet/IP layers and :func:`decode`.  The caller counts ``rx_segments``.
        ``predict=False``: header prediction is known to decline ``seg`` (see
        :meth:`TcpConnection.process`)."""
        listener: Listener | None = conn.listener
        if (
            listener is not None
            and conn.state is _SYN_RECEIVED
            and seg.flags & (SYN | ACK | RST) == ACK
        ):
            defer = listener.defer_accept
            if defer and conn._retries < defer and not seg.payload and not seg.flags & FIN:
                # TCP_DEFER_ACCEPT (Linux tcp_check_req): a bare ACK leaves the connection
                # half-open; its SYN-ACK timer goes on (the peer's answer to the last
                # retransmission within the period completes it)
                listener.defer_dropped += 1
                return
            if (len(listener.accept_queue) + listener.handed + len(self._batch or ())
                    >= listener.backlog  # (accept_full's early out, inline: no call)
                    and self.accept_full(listener)):
                listener.ack_dropped += 1  # accept queue full: like Linux, drop the final ACK
                return
        conn.process(seg, now, predict)
        batch = self._batch
        if batch is not None:
            if conn._unacked_rx >= self.batch_ack_segments * conn._rcv_mss:
                # no stretch ACK of a whole batch: send now; end_batch still services it
                # (queues, notify), so this costs no wake-up of the application
                self._send(conn, conn.dispatch(now))
            batch[conn] = None
        else:
            self._service(conn, now)

    def _listening(self, dst: bytes, dport: int) -> bool:
        """Whether a listener takes segments for ``dst``:``dport`` (as :meth:`_to_listener`
        finds it)."""
        listeners = self.listeners
        return ((dst, dport) in listeners
                or (_ANY4 if len(dst) == 4 else _ANY6, dport) in listeners
                or (b"", dport) in listeners)

    def _to_listener(
        self, src: bytes, sport: int, dst: bytes, dport: int, seg: Segment, now: float,
        iss: int | None = None,
    ) -> None:
        """A segment for no connection: to a listener (SYN, cookie ACK) or answered with a
        RST.  ``iss``: a SYN reopening a TIME-WAIT 4-tuple; the new connection's ISS (Linux
        ``tcp_timewait_state_process``: the old SND.NXT + 65537, so that the new sequence
        space starts above the old one, RFC 9293 3.10.7.4 / RFC 1122 4.2.2.13)."""
        listeners = self.listeners
        listener = (
            listeners.get((dst, dport))
            or listeners.get((_ANY4 if len(dst) == 4 else _ANY6, dport))
            or listeners.get((b"", dport))
        )
        flags = seg.flags
        if listener is None:
            self.rx_no_socket += 1
            rst = reset_for(seg)  # RFC 9293 3.10.7.1
            if rst is not None:
                self._emit(dst, dport, src, sport, rst)
            return
        if flags & RST:
            return  # RFC 9293 3.10.7.2 first
        if listener.group is not None:
            listener = self._reuseport_pick(listener.group, src, sport, dst, dport)
        if flags & ACK and not flags & SYN:
            self._cookie_ack(listener, src, sport, dst, dport, seg, now)
            return
        if not flags & SYN or flags & FIN:
            return  # RFC 9293 3.10.7.2 fourth (SYN+FIN is nonsense; drop it)
        if len(listener.accept_queue) + listener.handed + len(self._batch or ()) >= \
                listener.backlog and self.accept_full(listener):
            listener.syn_dropped += 1
            return
        policy = listener.policy
        if len(listener.syn_queue) >= policy.syn_backlog or len(self.connections) >= \
                self.max_connections:
            self._cookie_synack(listener, src, sport, dst, dport, seg, now)
            return
        conn = self._new_conn((dst, dport), (src, sport), policy)
        if HANDSHAKE_FASTPATH and not flags & ACK:
            conn.passive_open(seg, now)  # SYN (no RST, FIN: above) in LISTEN, no match
        else:
            conn.listen()
            conn.process(seg, now)
        if conn.state is not _SYN_RECEIVED:
            self._service(conn, now)
            return
        if iss is not None:
            conn.rebase_iss(iss & MASK or 1)
        conn.listener = listener
        conn.bind_flags = listener.bind_flags
        listener.syn_queue.add(conn)
        self.connections[(dst, dport, src, sport)] = conn
        pu = self.port_use
        pu[dport] = pu.get(dport, 0) + 1
        self._service(conn, now)

    def _cookie_synack(
        self, listener: Listener, src: bytes, sport: int, dst: bytes, dport: int, seg: Segment,
        now: float,
    ) -> None:
        mss = self.mss_for(src)
        if listener.policy.mss:
            mss = min(mss, listener.policy.mss)
        peer_mss = seg.mss or (1220 if len(src) == 16 else 536)
        cookie = self.isn.cookie(now, dst, dport, src, sport, seg.seq, min(mss, peer_mss))
        policy = listener.policy
        synack = Segment(
            cookie, (seg.seq + 1) & MASK, SYN | ACK, min(policy.recv_buffer, 0xFFFF), mss=mss,
        )
        if seg.tsval is not None and policy.timestamps:
            # Like Linux: the options we cannot keep ride in the low 6 bits of our TSval, which
            # the peer echoes in every TSecr: 0x20 marker, 0x10 SACK, 0x0F wscale + 1.
            bits = 0x20
            if seg.wscale is not None and policy.window_scaling:
                bits |= min(seg.wscale, 14) + 1
                ws = 0
                while ws < 14 and (policy.recv_buffer >> ws) > 0xFFFF:
                    ws += 1
                synack.wscale = ws
            if seg.sack_perm and policy.sack:
                bits |= 0x10
                synack.sack_perm = True
            offset = self.isn.ts_offset(dst, dport, src, sport)
            clock = (int(now * 1000) + offset) & MASK
            tsval = (clock & ~0x3F) | bits
            if (tsval - clock) & MASK < 0x80000000 and tsval != clock:
                tsval = (tsval - 0x40) & MASK  # never ahead of the connection's clock
            synack.tsval = tsval
            synack.tsecr = seg.tsval
        listener.cookies_sent += 1
        self._emit(dst, dport, src, sport, synack)

    def _cookie_ack(
        self, listener: Listener, src: bytes, sport: int, dst: bytes, dport: int, seg: Segment,
        now: float,
    ) -> None:
        cookie = (seg.ack - 1) & MASK
        client_isn = (seg.seq - 1) & MASK
        mss = self.isn.check_cookie(now, dst, dport, src, sport, client_isn, cookie)
        if mss is None or self.accept_full(listener) or \
                len(self.connections) >= self.max_connections:
            if mss is None:
                listener.cookies_rejected += 1
                self.rx_no_socket += 1
                # RFC 9293 3.10.7.2 second: an ACK to a listener gets <SEQ=SEG.ACK><CTL=RST>.
                self._emit(dst, dport, src, sport, Segment(seg.ack, 0, RST, 0))
            else:
                listener.ack_dropped += 1
            return
        listener.cookies_accepted += 1
        conn = self._new_conn((dst, dport), (src, sport), listener.policy)
        peer_ws: int | None = None
        sack = False
        if seg.tsval is not None and seg.tsecr & 0x20:
            bits = seg.tsecr & 0x3F
            peer_ws = (bits & 0x0F) - 1 if bits & 0x0F else None
            sack = bool(bits & 0x10)
        conn.open_from_cookie(cookie, seg, mss, now, peer_ws, sack)
        conn.bind_flags = listener.bind_flags
        self.connections[(dst, dport, src, sport)] = conn
        pu = self.port_use
        pu[dport] = pu.get(dport, 0) + 1
        listener.accept_queue.append(conn)
        if self.notify is not None:
            self.notify(listener)
        self._service(conn, now)


def _fmt_addr(raw: bytes) -> str:
    import ipaddress

    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw))
    if len(raw) == 16:
        return f"[{ipaddress.IPv6Address(raw)}]"
    return "*"
