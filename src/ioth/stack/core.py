"""The sans-IO core of a stack: interfaces, tables, timers, counters, Ethernet in and out.

Rules (as in h11/aioquic): every entry point takes ``now`` (seconds, any monotonic origin);
randomness comes from the injected ``random.Random``; nothing here touches time, sockets, select or
threads.  Output is queued: Ethernet frames on each interface's ``txq`` (the runtime hands them to
plugs) and timers in one heap (``next_deadline`` / ``poll``).  Malformed input raises
:class:`~ioth.stack.errors.Drop` (a :class:`~ioth.wire.errors.WireError`) inside the core; it is
counted and the frame dropped, never propagated to the caller.
"""

from __future__ import annotations

import heapq
import itertools
import random
import struct
from collections import Counter, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ioth.stack.arp import Arp
from ioth.stack.errors import Drop
from ioth.stack.icmp4 import ICMPv4
from ioth.stack.igmp import Igmp
from ioth.stack.interface import BROADCAST_MAC, PREFERRED, Addr4, Interface
from ioth.stack.ipv4 import IPv4
from ioth.stack.route import Route, RouteTable
from ioth.stack.tcp.segment import _SYN_ALL_FIELDS, _SYN_MSS, _SYN_SACK_TS, _SYN_WS, Segment
from ioth.stack.tcp.state import State
from ioth.stack.udp import Udp
from ioth.wire.checksum import NUMPY_THRESHOLD, batch_partial_sums, partial_sum_at
from ioth.wire.errors import WireError

if TYPE_CHECKING:
    from ioth.stack.tcp.layer import TcpLayer

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8
_ETYPE = {ETH_P_IP: b"\x08\x00", ETH_P_ARP: b"\x08\x06", ETH_P_IPV6: b"\x86\xdd"}

# The fused receive path (StackCore._rx_fast): Ethernet + IPv4/IPv6 + TCP (+ the aligned
# NOP NOP Timestamps option) unpacked by one struct.  Fields: destination MAC; IPv4 total length,
# flags/fragment offset, source, destination (or IPv6 payload length, source, destination); TCP
# ports, sequence, acknowledgment, flags byte, window; (option kind bytes, TSval, TSecr).
_FAST4 = struct.Struct("!6s10xH2xH4x4s4sHHIIxBH4x")
_FAST4_TS = struct.Struct("!6s10xH2xH4x4s4sHHIIxBH4x4sII")
_FAST6 = struct.Struct("!6s12xH2x16s16sHHIIxBH4x")
_FAST6_TS = struct.Struct("!6s12xH2x16s16sHHIIxBH4x4sII")
_IP4_TCP = b"\x08\x00\x45"  # EtherType IPv4, version 4 with a 20-byte header (no options)
_TS_ALIGNED = b"\x01\x01\x08\x0a"
_LOOPBACK6 = bytes(15) + b"\x01"
_ESTABLISHED = State.ESTABLISHED
_SYN_SENT = State.SYN_SENT
_TCP_FAST_MASK = 0x37  # SYN | FIN | RST | ACK | URG: only ACK may be set (PSH, ECE, CWR may)
_TCP_SEMI_MASK = 0x36  # SYN | RST | ACK | URG: ACK set (FIN may be): see _rx_fast
_TCP_FIN = 0x01
_NOT_SEMI = frozenset((State.CLOSED, State.LISTEN, State.SYN_SENT))
_SYN_RECEIVED = State.SYN_RECEIVED
_PLAIN_STATES = frozenset((State.SYN_RECEIVED, State.ESTABLISHED, State.FIN_WAIT_1,
                           State.FIN_WAIT_2, State.CLOSING, State.LAST_ACK, State.CLOSE_WAIT))
_from_bytes = int.from_bytes
RX_FASTPATH = 1
"""Default of :attr:`StackCore.rx_fastpath` (0 turns the fused receive path off, e.g. for A/B
benchmarks with ``BENCH_TCP_TWEAK=ioth.stack.core:RX_FASTPATH=0``)."""

RX_HANDSHAKE = 1
"""1: the fused receive path also takes a SYN (for no connection: to the listener) and a
SYN-ACK (for a connection in SYN-SENT) without payload whose options have Linux's layout
(MSS, SACK-permitted, Timestamps, NOP, window scale), straight to the TCP layer's code after
its ``decode``; 0: they go through :meth:`StackCore.tcp_input` (A/B knob, same frames and
state)."""

RX_PLAIN = 1
"""1: the fused receive path gives a segment without payload that header prediction does not
take (the handshake's ACK, a FIN, an ACK of our FIN) to
:meth:`~ioth.stack.tcp.connection.TcpConnection.rx_plain` for a connection in SYN-RECEIVED,
ESTABLISHED or a closing state, without building a Segment; 0: to TcpLayer.conn_input (A/B
knob, same frames and state)."""

RX_BATCH = 64
"""Frames :meth:`StackCore.input_frame` holds back inside a batch (see :meth:`begin_batch`) to
sum their checksums together; also the most :meth:`StackCore.input_frames` sums in one pass."""
RX_BATCH_MIN = 4
"""Fewer frames than this are summed one by one."""
RX_BATCH_SUM_MIN = 256
"""Shorter frames are summed one by one (the big-int sum of a 66-byte ACK costs ~0.4 us; a
numpy pass ~4 us plus ~0.6 us per 1514-byte frame): a batch is summed in numpy only when at
least RX_BATCH_MIN of its frames are this long (the handshake/close segments and requests of
round trips and connections are not)."""
RX_BATCH_SUM_MAX = 12288
"""Longer frames are summed one by one: joining them costs more than a numpy call each
(64 KiB frames: 30 us each in a batch, 9 us alone; 9 KB: 2.3 against 3.1; 1514 B: 0.8 against
2.2, measured with benchmarks/bench_wire.py's machine)."""
_RX_NO = 0  # _rx_fast: not consumed, checksums not verified
_RX_DONE = 1  # consumed
_RX_VERIFIED = 2  # not consumed, but the IP (v4) and TCP checksums were verified

MAX_TXQ = 8192


class Counters(Counter[str]):
    """The stack's counters: a :class:`collections.Counter` whose item assignment is dict's own.

    ``Counter`` defines ``__delitem__`` in Python, so CPython routes every ``c[k] = v``
    through a Python-level slot wrapper (the set and delete of an item share one C slot):
    ``c[k] += 1`` costs ~155 ns against ~63 for a dict. Restoring dict's ``__delitem__``
    gives the slot back to dict's C function: ~79 ns, and the values are exactly those of a
    Counter at every observation (nothing is deferred or folded). The one difference:
    ``del c[key]`` of a missing key raises KeyError (Counter ignores it); nothing deletes
    counters."""

    __slots__ = ()
    __delitem__ = dict.__delitem__  # type: ignore[assignment]


COUNTERS_FAST = 1
"""1: :attr:`StackCore.counters` is a :class:`Counters`; 0: a plain ``Counter`` (A/B knob,
``BENCH_TCP_TWEAK=ioth.stack.core:COUNTERS_FAST=0``)."""
MAX_PMTU_ENTRIES = 1024
PMTU_TIMEOUT = 600.0
MAX_EVENTS = 256


class StackCore:
    """All protocol state of one network node."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng if rng is not None else random.Random()
        self.counters: Counter[str] = Counters() if COUNTERS_FAST else Counter()
        self.ifaces: dict[int, Interface] = {}
        self._timers: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self.routes4 = RouteTable(32)
        self.routes6 = RouteTable(128)
        self.local4: dict[bytes, int] = {}  # address -> ifindex
        self.bcast4: set[bytes] = {b"\xff\xff\xff\xff"}
        self.forwarding = False
        self.pmtu: dict[bytes, tuple[int, float]] = {}
        self.loopq: deque[tuple[int, bytes]] = deque()
        self._draining = False
        self.events: deque[str] = deque(maxlen=MAX_EVENTS)
        self._icmp_tokens = 50.0
        self._icmp_last = 0.0
        self.icmp_rate = 100.0  # ICMP errors per second (token bucket)
        self.icmp_burst = 50.0
        self.rx_fastpath = bool(RX_FASTPATH)
        """Try the fused path (:meth:`_rx_fast`) for established in-order TCP segments first."""
        self.rx_fast_frames = 0
        """Frames consumed by the fused receive path (the others took the layered path)."""
        self.rx_semi_frames = 0
        """Segments header prediction did not take that went from the fused path straight to
        their connection (:meth:`TcpLayer.conn_input`): handshake ACKs, FINs, closing ACKs,
        out-of-order data..."""
        self.rx_l4_frames = 0
        """Other verified TCP segments for a local address that the fused path handed to the
        TCP layer without the Ethernet and IP layers (SYNs, RSTs, segments with options...)."""
        self._rx_held: list[bytes] | None = None
        self._rx_held_at: tuple[int, float] = (0, 0.0)
        self.arp = Arp(self)
        self.ip4 = IPv4(self)
        self.icmp4 = ICMPv4(self)
        self.igmp = Igmp(self)
        self.udp = Udp(self)
        self._tcp: TcpLayer | None = None
        from ioth.stack.ipv6 import IPv6  # IPv6 pulls NDP/MLD/ICMPv6; imported here to keep order

        self.ip6 = IPv6(self)
        lo = self.add_interface("lo", b"\0" * 6, 65535, loopback=True)
        lo.up = True
        self.add_addr4(lo.index, bytes((127, 0, 0, 1)), 8, 0.0)
        self.ip6.add_addr(lo.index, b"\0" * 15 + b"\1", 128, 0.0)

    # -- timers ---------------------------------------------------------------------------
    def schedule(self, when: float, callback: Callable[..., None], *args: Any) -> None:
        """Call ``callback(now, *args)`` at ``when`` (no cancellation: callbacks check state)."""
        heapq.heappush(self._timers, (when, next(self._seq), callback, args))

    def next_deadline(self) -> float | None:
        """When :meth:`poll` must next be called (None: no timer pending)."""
        when = self._timers[0][0] if self._timers else None
        tcp = self._tcp
        if tcp is not None:
            # TcpLayer.poll_at inlined (once per runtime flush): the earliest live entry of
            # its heap (stale ones popped) or of the compact TIME-WAIT expiry
            at = tcp._tw_due
            heap = tcp._heap
            while heap:
                t, _, conn = heap[0]
                if conn.layer_deadline == t:
                    if at is None or t < at:
                        at = t
                    break
                heapq.heappop(heap)
            if at is not None and (when is None or at < when):
                when = at
        return when

    def poll(self, now: float) -> None:
        """Run every timer due at ``now``."""
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, callback, args = heapq.heappop(timers)
            callback(now, *args)
        if self._tcp is not None:
            self._tcp.on_timer(now)
        self.drain_loopback(now)

    # -- TCP (ioth.stack.tcp): created on first use -------------------------------------------
    @property
    def tcp(self) -> TcpLayer:
        """This node's TCP layer (created lazily, see :mod:`ioth.stack.tcp.stackhook`)."""
        if self._tcp is None:
            from ioth.stack.tcp.stackhook import make_layer

            self._tcp = make_layer(self)
        return self._tcp

    def tcp_input(self, src: bytes, dst: bytes, segment: memoryview, now: float,
                  trusted: bool = False) -> None:
        """Hand a TCP segment addressed to this node to the TCP layer.

        ``trusted``: the segment came from an interface whose plug vouches for its checksum
        (:attr:`Interface.rx_csum_trusted`); the layer then skips verifying it.
        """
        self.counters["tcp.rx"] += 1
        tcp = self.tcp
        if trusted and tcp.verify_checksum:
            tcp.verify_checksum = False
            try:
                tcp.input(src, dst, segment, now)
            finally:
                tcp.verify_checksum = True
        else:
            tcp.input(src, dst, segment, now)

    def tcp_icmp_error(self, local: bytes, remote: bytes, quoted: memoryview, err: int,
                       now: float) -> None:
        """An ICMP error quoting a TCP segment this node sent; ``err``: the errno TCP sees
        (0: none, e.g. fragmentation needed: only the path MTU changed)."""
        if self._tcp is None:
            return
        from ioth.stack.tcp.stackhook import icmp_error

        icmp_error(self, self._tcp, local, remote, quoted, err, now)

    def begin_batch(self) -> None:
        """A runtime is about to feed several frames (TCP coalesces its ACKs until
        :meth:`end_batch`).

        With the fused receive path on, :meth:`input_frame` then holds frames back (up to
        :data:`RX_BATCH`, in order, per interface and ``now``) and processes them together
        through :meth:`input_frames`, whose checksums cost less per frame; everything is
        processed by :meth:`end_batch`, before any output of the batch is dispatched.
        """
        tcp = self._tcp
        if tcp is not None:
            if tcp._batch is None:  # TcpLayer.begin_batch inlined (once per read)
                tcp._batch = {}
            if self.rx_fastpath and self._rx_held is None:
                self._rx_held = []

    def end_batch(self, now: float) -> None:
        """End of a batch of frames."""
        held = self._rx_held
        try:
            if held is not None:
                self._rx_held = None
                if held:
                    index, at = self._rx_held_at
                    self.input_frames(index, held, at)
        finally:
            tcp = self._tcp
            if tcp is not None:
                # TcpLayer.end_batch inlined (once per read)
                batch = tcp._batch
                tcp._batch = None
                if batch:
                    service = tcp._service
                    for conn in batch:
                        service(conn, now)
        if self.loopq:
            self.drain_loopback(now)

    # -- interfaces -----------------------------------------------------------------------
    def add_interface(self, name: str, mac: bytes, mtu: int = 1500, loopback: bool = False,
                      vnl: str = "", index: int = 0) -> Interface:
        """Create an interface (down, no addresses)."""
        if any(i.name == name for i in self.ifaces.values()):
            raise ValueError(f"interface {name!r} exists")
        if not index:
            index = max(self.ifaces, default=0) + 1
        elif index in self.ifaces:
            raise ValueError(f"interface index {index} exists")
        iface = Interface(index, name, mac, mtu, loopback=loopback, vnl=vnl)
        self.ifaces[index] = iface
        return iface

    def del_interface(self, index: int) -> None:
        """Remove an interface with its addresses, routes and neighbours."""
        iface = self.ifaces[index]
        for a in list(iface.addrs4):
            self.del_addr4(index, a.addr, a.plen)
        for a6 in list(iface.addrs6):
            self.ip6.del_addr(index, a6.addr, a6.plen)
        self.routes4.remove_if(index)
        self.routes6.remove_if(index)
        self.arp.cache.remove(index)
        self.ip6.ndp.cache.remove(index)
        del self.ifaces[index]

    def set_up(self, index: int, up: bool, now: float) -> None:
        """Bring a link up (announce addresses, start IPv6) or down."""
        iface = self.ifaces[index]
        if iface.up == up:
            return
        iface.up = up
        if up:
            for a in iface.addrs4:
                self.arp.announce(iface, a.addr)
            self.igmp.link_up(iface, now)
            self.ip6.link_up(iface, now)
        else:
            iface.txq.clear()
            self.arp.cache.remove(index)
            self.ip6.link_down(iface)
        self.drain_loopback(now)

    def iface_by_name(self, name: str) -> Interface | None:
        """The interface called ``name``."""
        for iface in self.ifaces.values():
            if iface.name == name:
                return iface
        return None

    # -- IPv4 addresses and routes ----------------------------------------------------------
    def add_addr4(self, index: int, addr: bytes, plen: int, now: float) -> None:
        """Add an IPv4 address and its on-link route; announce it with a gratuitous ARP."""
        iface = self.ifaces[index]
        if any(a.addr == addr for a in iface.addrs4):
            raise FileExistsError(17, "address already assigned")
        value = int.from_bytes(addr, "big")
        hostmask = (1 << (32 - plen)) - 1
        bcast = (value | hostmask).to_bytes(4, "big") if plen < 31 else b"\xff\xff\xff\xff"
        iface.addrs4.append(Addr4(addr, plen, bcast))
        self.local4[addr] = index
        if plen < 31:
            self.bcast4.add(bcast)
        if not iface.loopback or plen < 32:
            self.routes4.add(Route(addr, plen, None, index, 0, "kernel"))
        if iface.up and not iface.loopback:
            self.arp.announce(iface, addr)

    def del_addr4(self, index: int, addr: bytes, plen: int | None = None) -> None:
        """Remove an IPv4 address (and its on-link route)."""
        iface = self.ifaces[index]
        for a in iface.addrs4:
            if a.addr == addr and (plen is None or a.plen == plen):
                iface.addrs4.remove(a)
                self.local4.pop(addr, None)
                self.bcast4 = {b"\xff\xff\xff\xff"} | {
                    x.broadcast for i in self.ifaces.values() for x in i.addrs4 if x.plen < 31}
                if not any(x.plen == a.plen and _same_net(x.addr, addr, a.plen)
                           for x in iface.addrs4):
                    self.routes4.remove(addr, a.plen, None, index)
                return
        raise FileNotFoundError(99, "address not assigned")

    # -- path MTU ---------------------------------------------------------------------------
    def pmtu_get(self, dst: bytes, now: float) -> int | None:
        """Cached path MTU towards ``dst``."""
        entry = self.pmtu.get(dst)
        if entry is None:
            return None
        if entry[1] <= now:
            del self.pmtu[dst]
            return None
        return entry[0]

    def pmtu_set(self, dst: bytes, mtu: int, now: float) -> None:
        """Remember a smaller path MTU towards ``dst`` (from ICMP frag needed / too big)."""
        if dst not in self.pmtu and len(self.pmtu) >= MAX_PMTU_ENTRIES:
            oldest = min(self.pmtu, key=lambda k: self.pmtu[k][1])
            del self.pmtu[oldest]
        self.pmtu[dst] = (mtu, now + PMTU_TIMEOUT)
        self.counters["pmtu.updates"] += 1

    def icmp_error_allowed(self, now: float) -> bool:
        """Token-bucket limit on the ICMP errors this node sends (RFC 1812 4.3.2.8)."""
        self._icmp_tokens = min(self.icmp_burst,
                                self._icmp_tokens + (now - self._icmp_last) * self.icmp_rate)
        self._icmp_last = now
        if self._icmp_tokens < 1.0:
            self.counters["icmp.errors_rate_limited"] += 1
            return False
        self._icmp_tokens -= 1.0
        return True

    def event(self, text: str) -> None:
        """Record a notable event (DAD failure, address conflict) for introspection."""
        self.events.append(text)

    # -- Ethernet -------------------------------------------------------------------------
    def input_frame(self, index: int, frame: bytes, now: float) -> None:
        """Process one Ethernet frame received on interface ``index`` (inside a batch, see
        :meth:`begin_batch`, possibly later but in order and before :meth:`end_batch` ends)."""
        held = self._rx_held
        if held is not None:
            if held and self._rx_held_at != (index, now):
                self._rx_held = []
                i, at = self._rx_held_at
                self.input_frames(i, held, at)
                self._rx_held = held = []
            self._rx_held_at = (index, now)
            held.append(frame)
            if len(held) >= RX_BATCH:
                self._rx_held = []
                self.input_frames(index, held, now)
            return
        iface = self.ifaces.get(index)
        if iface is None or not iface.up:
            self.counters["eth.rx_link_down"] += 1
            return
        self._input(iface, frame, now, None)

    def input_frames(self, index: int, frames: list[bytes], now: float) -> None:
        """Process Ethernet frames received together on interface ``index``, in order: the
        same as :meth:`input_frame` on each, but the fused path's checksums of the whole list
        are summed in one numpy pass (:func:`~ioth.wire.checksum.batch_partial_sums`)."""
        iface = self.ifaces.get(index)
        if iface is None or not iface.up:
            self.counters["eth.rx_link_down"] += len(frames)
            return
        if (
            len(frames) < RX_BATCH_MIN
            or not self.rx_fastpath
            or self._tcp is None
            or iface.rx_csum_trusted
        ):
            for frame in frames:
                # _input inlined (one call less per frame; the usual read has one frame)
                iface.rx_frames += 1
                if self.rx_fastpath and self._tcp is not None:
                    r = self._rx_fast(iface, frame, now, None)
                    if r == _RX_DONE:
                        if self.loopq:
                            self.drain_loopback(now)
                        continue
                    self._input_layered(iface, frame, now, r == _RX_VERIFIED)
                else:
                    self._input_layered(iface, frame, now, False)
            return
        for i in range(0, len(frames), RX_BATCH):
            chunk = frames[i:i + RX_BATCH] if len(frames) > RX_BATCH else frames
            # sum only what may be TCP over IPv4 (byte 23: protocol) or IPv6 (byte 20: next
            # header); the others (UDP...) are summed by their own layer as before
            sel = [f if RX_BATCH_SUM_MIN <= len(f) <= RX_BATCH_SUM_MAX
                   and (f[23] if f[12] == 8 else f[20]) == 6 else b"" for f in chunk]
            if len(sel) - sel.count(b"") < RX_BATCH_MIN:
                for frame in chunk:  # (few long TCP frames: one by one is cheaper)
                    self._input(iface, frame, now, None)
                continue
            sums = batch_partial_sums(sel, 14, 54)
            for frame, isum in zip(chunk, sums, strict=True):
                self._input(iface, frame, now, isum)

    def _input(self, iface: Interface, frame: bytes, now: float, isum: int | None) -> None:
        # ``isum``: partial sum of frame[14:] when the caller summed it (input_frames)
        iface.rx_frames += 1
        verified = False
        if self.rx_fastpath and self._tcp is not None:
            r = self._rx_fast(iface, frame, now, isum)
            if r == _RX_DONE:
                if self.loopq:
                    self.drain_loopback(now)
                return
            verified = r == _RX_VERIFIED
        self._input_layered(iface, frame, now, verified)

    def _input_layered(self, iface: Interface, frame: bytes, now: float,
                       verified: bool) -> None:
        """The layered receive path: what :meth:`_input` and the inlined copy of it in
        :meth:`input_frames` do with a frame the fused path did not take."""
        counters = self.counters
        try:
            self._eth_input(iface, frame, now, verified)
        except Drop as exc:
            counters[exc.counter] += 1
        except (WireError, struct.error, IndexError):
            counters["eth.rx_malformed"] += 1
        if self.loopq:
            self.drain_loopback(now)

    def _rx_fast(self, iface: Interface, frame: bytes, now: float, isum: int | None) -> int:
        """Header prediction across the layers (TCP_PROFILE proposal 4) and a short cut for
        every other TCP segment to this host.

        A TCP segment unicast to our MAC, untagged, IPv4 without options or fragmentation (or
        IPv6 without extension headers), for a local address, with valid checksums:

        * established, in order, no option but the aligned Timestamps, flags ACK (+PSH):
          :meth:`TcpConnection.rx_predicted` takes it;
        * the same shape but not predicted (handshake ACK, FIN, ACKs of the closing states,
          out-of-order data, the batch's stretch-ACK bound...): a :class:`Segment` built from
          the fields unpacked here goes to :meth:`TcpLayer.conn_input`, as
          :meth:`TcpLayer.input` would after decode;
        * anything else (SYN, SYN-ACK, RST, other options, no connection):
          :meth:`tcp_input` with the checksum verified, skipping only the Ethernet and IP
          layers (which would just count it).

        ``_RX_DONE``: consumed, with the counters the layered path would have updated.
        Otherwise nothing changed and the frame takes the layered path, which counts and drops
        what is wrong with it (bad checksum, truncation...).

        Checksums are verified once, over the frame in place (or from ``isum``, the partial
        sum of ``frame[14:]`` when :meth:`input_frames` computed it for a batch), unless the
        interface's plug vouches for them (:attr:`Interface.rx_csum_trusted`).
        """
        n = len(frame)
        if n < 54:
            return _RX_NO
        simple = True  # no TCP option but aligned Timestamps: header prediction may take it
        if frame[12:15] == _IP4_TCP:
            if frame[23] != 6:
                return _RX_NO
            doff = frame[46]
            if doff == 0x80 and n >= 66 and frame[54:58] == _TS_ALIGNED:
                (dmac, total, frag, src, dst, sport, dport, seq, ack, flags, window, _k,
                 tsval, tsecr) = _FAST4_TS.unpack_from(frame)
                start = 66
            else:
                (dmac, total, frag, src, dst, sport, dport, seq, ack, flags,
                 window) = _FAST4.unpack_from(frame)
                tsval = None
                tsecr = 0
                start = 34 + ((doff >> 4) << 2)
                if doff != 0x50:
                    simple = False
                    if doff < 0x50:
                        return _RX_NO
            end = 14 + total
            if (
                dmac != iface.mac
                or frag & 0x3FFF
                or end < start
                or end > n
                or src[0] >= 224
                or src[0] == 127
                or dst not in self.local4
            ):
                return _RX_NO
            if not iface.rx_csum_trusted and (
                _from_bytes(frame[14:34], "big") % 0xFFFF
                # with the IPv4 header summing to zero, frame[14:] sums like the TCP segment
                or (_from_bytes(src, "big") + _from_bytes(dst, "big") + 6 + total - 20
                    + (isum if isum is not None and end == n
                       # (partial_sum_at inlined for a short segment: one call less)
                       else (_from_bytes(frame[34:end], "big") << (8 if total & 1 else 0))
                       if total < NUMPY_THRESHOLD else partial_sum_at(frame, 34, end))
                    ) % 0xFFFF
            ):
                return _RX_NO
            ip_rx, ip_delivered = "ipv4.rx", "ipv4.rx_delivered"
            l4 = 34
        elif frame[12:14] == b"\x86\xdd":
            if n < 74 or frame[20] != 6 or frame[14] >> 4 != 6:
                return _RX_NO
            doff = frame[66]
            if doff == 0x80 and n >= 86 and frame[74:78] == _TS_ALIGNED:
                (dmac, plen, src, dst, sport, dport, seq, ack, flags, window, _k,
                 tsval, tsecr) = _FAST6_TS.unpack_from(frame)
                start = 86
            else:
                (dmac, plen, src, dst, sport, dport, seq, ack, flags,
                 window) = _FAST6.unpack_from(frame)
                tsval = None
                tsecr = 0
                start = 54 + ((doff >> 4) << 2)
                if doff != 0x50:
                    simple = False
                    if doff < 0x50:
                        return _RX_NO
            end = 54 + plen
            if (
                dmac != iface.mac
                or end < start
                or end > n
                or src[0] == 0xFF
                or dst[0] == 0xFF
            ):
                return _RX_NO
            entry = self.ip6.local.get(dst)
            if (
                entry is None
                or entry[1].state != PREFERRED
                or (entry[0] != iface.index and dst[0] == 0xFE and dst[1] & 0xC0 == 0x80)
                or src == _LOOPBACK6
            ):
                return _RX_NO
            if not iface.rx_csum_trusted and (
                _from_bytes(src, "big") + _from_bytes(dst, "big") + 6 + plen
                + (isum - _from_bytes(frame[14:54], "big") if isum is not None and end == n
                   else partial_sum_at(frame, 54, end))
            ) % 0xFFFF:
                return _RX_NO
            ip_rx, ip_delivered = "ipv6.rx", "ipv6.rx_delivered"
            l4 = 54
        else:
            return _RX_NO
        # A verified TCP segment for a local address, without IP options, fragmentation or
        # IPv6 extension headers: whatever it is, the Ethernet and IP layers would only count
        # it and hand it to TCP.
        tcp = self._tcp
        assert tcp is not None
        counters = self.counters
        conn = None
        # Segment options are positional below (mss, wscale, sack_perm, tsval, tsecr: see
        # Segment.__init__): ~190 ns less per segment than by keyword
        if simple and flags & _TCP_SEMI_MASK == 0x10:
            conn = tcp.connections.get((dst, dport, src, sport))
        elif (
            doff == 0xA0
            and end == start
            and flags & _TCP_FAST_MASK | 0x10 == 0x12  # SYN or SYN-ACK (no FIN, RST, URG)
            and RX_HANDSHAKE
            and frame[l4 + 20:l4 + 22] == _SYN_MSS
            and frame[l4 + 24:l4 + 28] == _SYN_SACK_TS
            and frame[l4 + 36:l4 + 39] == _SYN_WS
        ):
            # a handshake segment with Linux's SYN options and no payload: what tcp_input
            # and TcpLayer.input do with it after decode (the same Segment, its payload
            # empty), for the usual cases only; the others go on below
            key = (dst, dport, src, sport)
            hconn = tcp.connections.get(key)
            if flags & 0x10:
                if hconn is not None and hconn.state is _SYN_SENT:
                    mss, tsval, tsecr, ws = _SYN_ALL_FIELDS.unpack_from(frame, l4 + 20)
                    counters[ip_rx] += 1
                    counters[ip_delivered] += 1
                    self.rx_l4_frames += 1
                    counters["tcp.rx"] += 1
                    tcp.rx_segments += 1
                    tcp.now = now
                    tcp.conn_input(hconn, Segment(seq, ack, flags, window, b"", mss, ws, True,
                                                  tsval, tsecr), now)
                    return _RX_DONE
            elif hconn is None and (not tcp.time_wait or key not in tcp.time_wait):
                mss, tsval, tsecr, ws = _SYN_ALL_FIELDS.unpack_from(frame, l4 + 20)
                counters[ip_rx] += 1
                counters[ip_delivered] += 1
                self.rx_l4_frames += 1
                counters["tcp.rx"] += 1
                tcp.rx_segments += 1
                tcp.now = now
                tcp._to_listener(src, sport, dst, dport, Segment(seq, ack, flags, window, b"",
                                 mss, ws, True, tsval, tsecr), now)
                return _RX_DONE
        if conn is None or conn.state in _NOT_SEMI:
            # SYN, SYN-ACK, RST, URG, other options, no connection: TcpLayer.input
            counters[ip_rx] += 1
            counters[ip_delivered] += 1
            self.rx_l4_frames += 1
            self.tcp_input(src, dst, memoryview(frame)[l4:end], now, True)
            return _RX_DONE
        counters[ip_rx] += 1
        counters[ip_delivered] += 1
        counters["tcp.rx"] += 1
        tcp.rx_segments += 1
        tcp.now = now
        payload = frame[start:end] if end > start else b""
        if conn.state is not _ESTABLISHED or flags & _TCP_FAST_MASK != 0x10:
            # Not for header prediction (handshake ACK, FIN, ACKs in the closing states...),
            # but simple: straight to the connection, as TcpLayer.input would after decode
            # (header prediction would decline it: not asked again)
            self.rx_semi_frames += 1
            if (
                end == start
                and RX_PLAIN
                and conn.state in _PLAIN_STATES
                and (conn.state is not _SYN_RECEIVED or (lst := conn.listener) is None
                     # (else TcpLayer.conn_input may drop the ACK: accept queue full, or
                     # TCP_DEFER_ACCEPT, under which plain_backlog is -1)
                     or len(lst.accept_queue) + lst.handed + len(tcp._batch or ())
                     < lst.plain_backlog
                     or not (lst.defer_accept or tcp.accept_full(lst)))
                and conn.rx_plain(seq, ack, flags, window, tsval, tsecr, now)
            ):
                # what TcpLayer.conn_input does after TcpConnection.process
                batch = tcp._batch
                if batch is not None:
                    if conn._unacked_rx >= tcp.batch_ack_segments * conn._rcv_mss:
                        tcp._send(conn, conn.dispatch(now))
                    batch[conn] = None
                else:
                    tcp._service(conn, now)
                return _RX_DONE
            tcp.conn_input(conn, Segment(seq, ack, flags, window, payload, None, None,
                                         False, tsval, tsecr), now, False)
            return _RX_DONE
        batch = tcp._batch
        # (the private fields behind TcpConnection's unacked_rx / rcv_mss properties: a
        # property read costs a call per frame on this path)
        if batch is not None and (conn._unacked_rx + end - start
                                  >= tcp.batch_ack_segments * conn._rcv_mss):
            # the layer's stretch-ACK bound may be reached (its ACK goes out at once: the
            # bound only grows with rcv_mss, so below it here means below it after the
            # segment too): what TcpLayer.input does after decode
            self.rx_semi_frames += 1
            tcp.conn_input(conn, Segment(seq, ack, flags, window, payload, None, None,
                                         False, tsval, tsecr), now)
            return _RX_DONE
        if not conn.rx_predicted(seq, ack, window, tsval, tsecr, payload, now):
            # prediction declined (nothing changed): the general path, without asking again
            self.rx_semi_frames += 1
            tcp.conn_input(conn, Segment(seq, ack, flags, window, payload, None, None,
                                         False, tsval, tsecr), now, False)
            return _RX_DONE
        self.rx_fast_frames += 1
        # what TcpLayer.input does after TcpConnection.process (below the stretch-ACK bound)
        if batch is not None:
            batch[conn] = None
        else:
            tcp._service(conn, now)
        return _RX_DONE

    def _eth_input(self, iface: Interface, frame: bytes, now: float,
                   verified: bool = False) -> None:
        if len(frame) < 14:
            raise Drop("eth.rx_runt")
        dst = frame[:6]
        multicast = bool(dst[0] & 1)
        if not multicast:
            if dst != iface.mac:
                self.counters["eth.rx_other_host"] += 1
                return
        elif dst[0] == 0x33 and dst not in iface.mcast_macs:
            # IPv6 multicast for a group we did not join: dropped before any parsing
            self.counters["eth.rx_other_multicast"] += 1
            return
        etype = (frame[12] << 8) | frame[13]
        off = 14
        if etype in (ETH_P_8021Q, ETH_P_8021AD):
            if len(frame) < 18:
                raise Drop("eth.rx_runt")
            if ((frame[14] << 8) | frame[15]) & 0xFFF:
                self.counters["eth.rx_other_vlan"] += 1
                return
            etype = (frame[16] << 8) | frame[17]
            off = 18
            self.counters["eth.rx_priority_tagged"] += 1
        payload = memoryview(frame)[off:]
        if etype == ETH_P_IP:
            self.ip4.input(iface, payload, now, multicast, verified)
        elif etype == ETH_P_IPV6:
            self.ip6.input(iface, payload, now, multicast, verified)
        elif etype == ETH_P_ARP:
            self.arp.input(iface, payload, now)
        else:
            self.counters["eth.rx_unknown_type"] += 1

    def eth_output(self, iface: Interface, dst_mac: bytes, etype: int, packet: bytes) -> None:
        """Queue a frame for ``iface`` (IP packets on loopback go to the loopback queue)."""
        if iface.loopback:
            self.loopq.append((etype, packet))
            return
        if not iface.up:
            iface.tx_dropped += 1
            self.counters["eth.tx_link_down"] += 1
            return
        if len(iface.txq) >= MAX_TXQ:
            iface.tx_dropped += 1
            self.counters["eth.tx_queue_full"] += 1
            return
        iface.txq.append(b"".join((dst_mac, iface.mac, _ETYPE[etype], packet)))
        iface.tx_frames += 1

    def broadcast(self, iface: Interface, etype: int, packet: bytes) -> None:
        """Queue ``packet`` to the Ethernet broadcast address."""
        self.eth_output(iface, BROADCAST_MAC, etype, packet)

    def drain_loopback(self, now: float) -> None:
        """Deliver packets sent to this node itself (bounded work per call)."""
        if self._draining or not self.loopq:
            return
        self._draining = True
        lo = self.ifaces[1]
        try:
            budget = 10000
            while self.loopq and budget:
                budget -= 1
                etype, packet = self.loopq.popleft()
                lo.rx_frames += 1
                lo.tx_frames += 1
                try:
                    if etype == ETH_P_IP:
                        self.ip4.input(lo, memoryview(packet), now, False)
                    else:
                        self.ip6.input(lo, memoryview(packet), now, False)
                except Drop as exc:
                    self.counters[exc.counter] += 1
                except (WireError, struct.error, IndexError):
                    self.counters["lo.rx_malformed"] += 1
        finally:
            self._draining = False

    def counters_by_protocol(self) -> dict[str, dict[str, int]]:
        """Counters grouped by protocol: ``{"ipv4": {"rx": 3, ...}, ...}``."""
        out: dict[str, dict[str, int]] = {}
        for key, value in sorted(self.counters.items()):
            proto, _, name = key.partition(".")
            out.setdefault(proto, {})[name] = value
        for name, stats in (("ipv4_reasm", self.ip4.reasm.stats),
                            ("ipv6_reasm", self.ip6.reasm.stats)):
            out[name] = dict(stats)
        return out


def _same_net(a: bytes, b: bytes, plen: int) -> bool:
    shift = len(a) * 8 - plen
    return (int.from_bytes(a, "big") >> shift) == (int.from_bytes(b, "big") >> shift)
