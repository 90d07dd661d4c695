"""Glue between a :class:`~ioth.stack.core.StackCore` and its :class:`TcpLayer`.

The stack core keeps this tiny: it creates the layer lazily with :func:`make_layer` (so a stack
that never uses TCP draws nothing from its random generator), hands protocol-6 payloads of
IPv4/IPv6 packets addressed to it to ``layer.input``, folds ``layer.poll_at()`` into its next
deadline and calls ``layer.on_timer(now)`` from its poll.  Everything else lives here.

Output has two paths. The general one encodes a segment
(:func:`~ioth.stack.tcp.segment.encode`) and hands it to the core's IPv4/IPv6 output (routing,
neighbour resolution, fragmentation rules). The fast one (:meth:`_Glue.fast_output`) serves the
data path of established connections over Ethernet interfaces: it keeps per connection
(``tx_route``) the route, the Ethernet header and the constant parts of the IP header and
checksums (header templates), and builds the whole frame with one ``struct`` call, straight
onto the interface's queue. On an interface with ``tx_csum_offload`` the TCP checksum is left
partial (the pseudo-header sum; the plug's kernel completes it) and on one with
``gso_max_size`` super-segments go out whole with their cut size: both as
:class:`~ioth.net.plug.OffloadFrame` frames. SYN and SYN-ACK segments take it too
(their options are encoded by :func:`options_bytes`).  Anything it is not sure about (RST,
URG with its urgent pointer, an unresolved or STALE neighbour, a cached path MTU, a changed
route, a full queue...) returns False and takes the general path, which cuts super-segments
first.
"""

from __future__ import annotations

import itertools
import random
import struct
from typing import TYPE_CHECKING

import numpy as np

from ioth.net.plug import OffloadFrame
from ioth.stack.core import MAX_TXQ
from ioth.stack.neighbour import DELAY, PERMANENT, PROBE, REACHABLE, NeighbourCache
from ioth.stack.tcp.layer import TcpLayer, tso_payload
from ioth.stack.tcp.policy import TcpPolicy
from ioth.stack.tcp.segment import RST, URG, Segment, options_bytes
from ioth.wire.checksum import NUMPY_THRESHOLD, partial_sum

if TYPE_CHECKING:
    from ioth.stack.core import StackCore
    from ioth.stack.interface import Interface
    from ioth.stack.route import RouteTable
    from ioth.stack.tcp.connection import TcpConnection

PROTO_TCP = 6
#: Knobs (constants, for A/B measurements such as ``BENCH_TCP_TWEAK``): the fast output with
#: header templates, and TSO on interfaces that offer it; read when a stack's layer is made.
FAST_OUTPUT = True
TSO = True
#: One route lookup per new connection gives its MSS, TSO size and fast-output route
#: (:meth:`_Glue.route_info`); off: three lookups (MTU, GSO size, then the fast output's).
ROUTE_ONCE = True
#: New connections between the same two addresses share one :class:`TxRoute` (the route
#: lookup, MTU and TSO size of the first, while the routing table, the interface, its MTU and
#: GSO size stay what they were and no path MTU is cached); off: one lookup and one TxRoute
#: per connection.  Same frames either way.
ROUTE_CACHE = True
#: Bound of the shared-route table (address pairs); when full it starts over.
ROUTE_CACHE_MAX = 256
_DF = 0x4000
_RST_URG = RST | URG  # (one test: the general path sends these)
_IP4_BASE = 0x4500 + _DF  # version/IHL/TOS and DF words of the IPv4 header checksum
_TS_WORDS = 0x0101 + 0x080A  # NOP NOP kind/length of the Timestamps option
_FAST_STATES = frozenset((REACHABLE, DELAY, PROBE, PERMANENT))
# IPv4 (20) + TCP (20) [+ NOP NOP TS (12)]; IPv6 (40) + TCP [+ TS]
_V4 = struct.Struct("!BBHHHBBH4s4sHHIIHHHH")
_V4TS = struct.Struct("!BBHHHBBH4s4sHHIIHHHHIII")
_V6 = struct.Struct("!IHBB16s16sHHIIHHHH")
_V6TS = struct.Struct("!IHBB16s16sHHIIHHHHIII")
_TS_KIND = 0x0101080A
_U16_BE = np.dtype(">u2")
_U64 = np.dtype(np.uint64)


class TxRoute:
    """What :meth:`_Glue.fast_output` keeps per connection (shared by the connections
    between the same two addresses, :data:`ROUTE_CACHE`): valid while the routing table
    (list identity), the interface and the neighbour entry stay what they were."""

    __slots__ = ("addr_sum", "eth", "gso", "hop_limit", "iface", "ip_base", "mac", "mtu",
                 "neigh", "nkey", "routes", "src_mac", "table", "tos", "ttl", "v6", "v6word")

    def __init__(self, iface: Interface, table: RouteTable, neigh: NeighbourCache,
                 nexthop: bytes, v6: bool, addr_sum: int, ttl: int = 64, tos: int = 0,
                 hop_limit: int = 0, tclass: int = 0) -> None:
        self.iface = iface
        self.table = table
        self.routes = table._routes  # replaced (never mutated in place) on every change
        self.neigh = neigh
        self.nkey = (iface.index, nexthop)
        self.v6 = v6
        self.addr_sum = addr_sum
        self.mtu = iface.mtu
        """The interface's MTU and GSO size when the route was made (a shared route is
        reused only while they are unchanged)."""
        self.gso = iface.gso_max_size
        self.mac: bytes | None = None
        self.src_mac = iface.mac
        self.eth = b""
        # the IP header fields of the connection's policy (IP_TTL, IP_TOS, IPV6_UNICAST_HOPS,
        # IPV6_TCLASS), made once here (the header template) rather than per segment
        self.ttl = ttl
        self.tos = tos
        """IPv4 TTL and TOS byte."""
        self.ip_base = _IP4_BASE + tos + (ttl << 8) + addr_sum
        """The constant part of the IPv4 header checksum (version/IHL/TOS, DF, TTL/protocol,
        addresses: the protocol is in ``addr_sum``)."""
        self.hop_limit = hop_limit
        """IPv6 hop limit; 0: the interface's (which a router advertisement may change)."""
        self.v6word = 0x60000000 | tclass << 20
        """First word of the IPv6 header: version and traffic class."""


class _Glue:
    """Output and MTU callbacks of one core's TcpLayer."""

    def __init__(self, core: StackCore, fast: bool = True, tso: bool = True) -> None:
        self.core = core
        self.layer: TcpLayer | None = None
        self.fast = fast
        """The fast output is on (:data:`FAST_OUTPUT` when the layer was made)."""
        self.tso = tso
        """TSO is on (:data:`TSO` when the layer was made)."""
        self.shared: dict[tuple[bytes, bytes], tuple[int, int, TxRoute]] = {}
        """(local address, remote address) -> what :meth:`route_info` returned for them
        (:data:`ROUTE_CACHE`; at most :data:`ROUTE_CACHE_MAX` pairs)."""
        self.shared_resets = 0
        """Times the shared-route table was full and started over."""

    def output(self, src: bytes, dst: bytes, segment: bytes,
               policy: TcpPolicy | None = None) -> None:
        """Send a segment through the core's IPv4 (DF set) or IPv6 output (with the IP header
        fields of ``policy``, a connection's; None: the defaults)."""
        core = self.core
        now = self.layer.now if self.layer is not None else 0.0
        try:
            if policy is not None:
                if len(dst) == 4:
                    core.ip4.output(src, dst, PROTO_TCP, segment, now, df=True,
                                    ttl=policy.ttl if policy.ttl >= 0 else None,
                                    tos=policy.tos)
                else:
                    core.ip6.output(src, dst, PROTO_TCP, segment, now,
                                    hop_limit=policy.hop_limit if policy.hop_limit >= 0
                                    else None, tclass=policy.tclass)
            elif len(dst) == 4:
                core.ip4.output(src, dst, PROTO_TCP, segment, now, df=True)
            else:
                core.ip6.output(src, dst, PROTO_TCP, segment, now)
        except OSError:
            core.counters["tcp.tx_no_route"] += 1

    def mtu(self, remote: bytes) -> int:
        """The route MTU towards ``remote``, lowered by a cached path MTU."""
        core = self.core
        v6 = len(remote) == 16
        try:
            iface, _ = (core.ip6 if v6 else core.ip4).route(remote)
        except OSError:
            return 1280 if v6 else 576
        return self._path_mtu(iface.mtu, remote)

    def _path_mtu(self, mtu: int, remote: bytes) -> int:
        """``mtu`` (the route's interface MTU) lowered by a cached path MTU to ``remote``."""
        core = self.core
        if core.pmtu:
            pmtu = core.pmtu_get(remote, self.layer.now if self.layer is not None else 0.0)
            if pmtu is not None and pmtu < mtu:
                return pmtu
        return mtu

    def gso(self, remote: bytes) -> int:
        """The GSO size (largest IP packet of a TCP super-segment) of the route's interface."""
        core = self.core
        try:
            iface, _ = (core.ip6 if len(remote) == 16 else core.ip4).route(remote)
        except OSError:
            return 0
        return 0 if iface.loopback else iface.gso_max_size

    def route_info(self, local: tuple[bytes, int], remote: tuple[bytes, int]
                   ) -> tuple[int, int, TxRoute | None]:
        """What a new connection from ``local`` to ``remote`` needs from the route, with one
        lookup: the MTU (as :meth:`mtu`), the largest TSO payload (as
        :meth:`TcpLayer.tso_for`, or as :meth:`_route` sets it when the fast output takes the
        connection) and the fast output's :class:`TxRoute` (None: the general path)."""
        core = self.core
        ra = remote[0]
        if ROUTE_CACHE and not core.pmtu:
            hit = self.shared.get((local[0], ra))
            if hit is not None:
                # still what a lookup would give: the same routing table (a new list on
                # every change), interface up with the same MTU and GSO size, the remote
                # address not local now, the next hop no broadcast address of a new subnet
                sr = hit[2]
                si = sr.iface
                if (sr.routes is sr.table._routes and si.up and sr.mtu == si.mtu
                        and sr.gso == si.gso_max_size
                        and (ra not in core.ip6.local if sr.v6 else
                             ra not in core.local4 and sr.nkey[1] not in core.bcast4)):
                    return hit
        v6 = len(ra) == 16
        try:
            if v6:
                iface, nexthop = core.ip6.route(ra)
            else:
                iface, nexthop = core.ip4.route(ra)
        except OSError:
            return (1280 if v6 else 576), 0, None
        mtu = self._path_mtu(iface.mtu, ra)
        tso = tso_payload(iface.gso_max_size, v6) if self.tso and not iface.loopback else 0
        r = None
        if self.fast:
            r = self._make_route(iface, nexthop, v6, local, remote)
            if r is not None:
                tso = tso_payload(iface.gso_max_size, v6)
                if ROUTE_CACHE and not core.pmtu and (
                        # a route from the routing table (not the local or link-local
                        # shortcuts of ip4.route / ip6.route, which do not depend on it)
                        (ra[0] != 0xFE or ra[1] & 0xC0 != 0x80) if v6 else ra[0] != 127):
                    shared = self.shared
                    if len(shared) >= ROUTE_CACHE_MAX:
                        shared.clear()
                        self.shared_resets += 1
                    shared[(local[0], ra)] = (mtu, tso, r)
        return mtu, tso, r

    # -- fast output ------------------------------------------------------------------------
    def _route(self, conn: TcpConnection) -> TxRoute | None:
        """A new :class:`TxRoute` for ``conn`` (None: not an interface for the fast path)."""
        core = self.core
        ra = conn.remote[0]
        v6 = len(ra) == 16
        try:
            if v6:
                iface, nexthop = core.ip6.route(ra)
            else:
                iface, nexthop = core.ip4.route(ra)
        except OSError:
            return None
        r = self._make_route(iface, nexthop, v6, conn.local, conn.remote, conn.policy)
        if r is not None:
            conn.tso_max = tso_payload(iface.gso_max_size, v6)
        return r

    def _make_route(self, iface: Interface, nexthop: bytes, v6: bool,
                    local: tuple[bytes, int], remote: tuple[bytes, int],
                    policy: TcpPolicy | None = None) -> TxRoute | None:
        """The fast output's route (None: not for it) with the IP header fields of ``policy``
        (None: the stack's defaults)."""
        core = self.core
        if iface.loopback:
            return None
        if v6:
            if nexthop[0] == 0xFF:
                return None
            table = core.routes6
            cache = core.ip6.ndp.cache
        else:
            if nexthop in core.bcast4 or nexthop[0] & 0xF0 == 0xE0:
                return None
            table = core.routes4
            cache = core.arp.cache
        addr_sum = int.from_bytes(local[0], "big") + int.from_bytes(remote[0], "big") + PROTO_TCP
        ttl = core.ip4.default_ttl
        if policy is None or not policy.ip_header:
            return TxRoute(iface, table, cache, nexthop, v6, addr_sum, ttl)
        return TxRoute(iface, table, cache, nexthop, v6, addr_sum,
                       policy.ttl if policy.ttl >= 0 else ttl, policy.tos,
                       policy.hop_limit if policy.hop_limit >= 0 else 0, policy.tclass)

    def fast_output(self, conn: TcpConnection, segs: list[Segment]) -> int:
        """Build and queue the frames of ``segs`` (in order) from ``conn``'s cached route and
        headers; returns how many were sent, the rest go by the general path (see the module
        docstring)."""
        seg = segs[0]
        if seg.flags & _RST_URG:
            return 0
        r: TxRoute | None = conn.tx_route
        if r is None or r.routes is not r.table._routes or not r.iface.up:
            r = conn.tx_route = self._route(conn)
            if r is None:
                return 0
        iface = r.iface
        n = r.neigh.entries.get(r.nkey)
        if n is None or n.state not in _FAST_STATES:
            return 0  # resolution, or STALE -> DELAY: the neighbour cache's business
        core = self.core
        remote, dport = conn.remote
        if core.pmtu and remote in core.pmtu:
            return 0
        txq = iface.txq
        room = MAX_TXQ - len(txq)
        if room <= 0:
            return 0
        mac = n.mac
        if mac != r.mac or r.src_mac != iface.mac:
            assert mac is not None
            r.mac = mac
            r.src_mac = iface.mac
            r.eth = mac + iface.mac + (b"\x86\xdd" if r.v6 else b"\x08\x00")
        eth = r.eth
        offload = iface.tx_csum_offload
        if len(segs) == 1 and not offload:
            # one segment (ACKs, handshake, round trips): without the batch set-up below
            tsval = seg.tsval
            opts = b""
            if seg.mss is None and seg.wscale is None and not seg.sack_perm and not seg.sack:
                hlen = 20 if tsval is None else 32
            else:  # SYN options or SACK blocks
                opts = options_bytes(seg)
                tsval = None
                hlen = 20 + len(opts)
            payload = seg.payload
            plen = len(payload)
            tcplen = hlen + plen
            v6 = r.v6
            if tcplen + (40 if v6 else 20) <= iface.mtu:
                # the loop below for this one segment, without its set-up (same frame)
                local, sport = conn.local
                seq = seg.seq
                ack = seg.ack
                offflags = (hlen << 10) | seg.flags
                window = seg.window
                s = r.addr_sum + tcplen + (sport << 16) + dport + seq + ack + offflags + window
                if plen:
                    if plen < NUMPY_THRESHOLD:  # partial_sum inlined for a short payload
                        s += (int.from_bytes(payload, "big") << 8 if plen & 1
                              else int.from_bytes(payload, "big"))
                    else:
                        s += partial_sum(payload)
                if tsval is not None:
                    tsecr = seg.tsecr
                    s += _TS_WORDS + tsval + tsecr
                elif opts:
                    s += int.from_bytes(opts, "big")
                c = s % 0xFFFF
                csum = 0xFFFF - c if c else 0
                if v6:
                    if tsval is not None:
                        hdr = _V6TS.pack(r.v6word, tcplen, PROTO_TCP,
                                         r.hop_limit or iface.hop_limit,
                                         local, remote, sport, dport, seq, ack, offflags,
                                         window, csum, 0, _TS_KIND, tsval, tsecr)
                    else:
                        hdr = _V6.pack(r.v6word, tcplen, PROTO_TCP,
                                       r.hop_limit or iface.hop_limit,
                                       local, remote, sport, dport, seq, ack, offflags,
                                       window, csum, 0) + opts
                else:
                    ip4 = core.ip4
                    iplen = tcplen + 20
                    ident = ip4.ident = (ip4.ident + 1) & 0xFFFF
                    c = (r.ip_base + iplen + ident) % 0xFFFF
                    ipsum = 0xFFFF - c if c else 0
                    if tsval is not None:
                        hdr = _V4TS.pack(0x45, r.tos, iplen, ident, _DF, r.ttl, PROTO_TCP,
                                         ipsum, local, remote, sport, dport, seq, ack,
                                         offflags, window, csum, 0, _TS_KIND, tsval, tsecr)
                    else:
                        hdr = _V4.pack(0x45, r.tos, iplen, ident, _DF, r.ttl, PROTO_TCP, ipsum,
                                       local, remote, sport, dport, seq, ack, offflags,
                                       window, csum, 0) + opts
                txq.append(b"".join((eth, hdr, payload)))
                iface.tx_frames += 1
                core.counters["ipv6.tx" if v6 else "ipv4.tx"] += 1
                return 1
        sums = None if offload or len(segs) < 2 else _payload_sums(segs)
        v6 = r.v6
        addr_sum = r.addr_sum
        mtu = iface.mtu
        gso_max = iface.gso_max_size
        cut = conn.tso_cut
        local, sport = conn.local
        ports = (sport << 16) | dport
        ip4 = core.ip4
        ttl = r.ttl
        tos = r.tos
        hop_limit = r.hop_limit or iface.hop_limit
        v6word = r.v6word
        ip_base = r.ip_base
        sent = 0
        for seg in segs:
            flags = seg.flags
            if flags & _RST_URG or sent >= room:
                break
            payload = seg.payload
            plen = len(payload)
            tsval = seg.tsval
            opts = b""
            if seg.mss is not None or seg.wscale is not None or seg.sack_perm or seg.sack:
                opts = options_bytes(seg)
                tsval = None
                hlen = 20 + len(opts)
            elif tsval is not None:
                hlen = 32
            else:
                hlen = 20
            tcplen = hlen + plen
            iplen = tcplen + (40 if v6 else 20)
            gso = 0
            if iplen > mtu:
                if iplen > gso_max or cut <= 0 or plen <= cut:
                    break
                gso = cut
            seq = seg.seq
            ack = seg.ack
            offflags = (hlen << 10) | flags
            window = seg.window
            tsecr = seg.tsecr
            # one's complement sums modulo 0xFFFF: 32-bit fields add as they are (2**16 == 1)
            pseudo = addr_sum + tcplen
            if offload:
                c = pseudo % 0xFFFF
                csum = c if c else 0xFFFF  # the pseudo-header sum, not complemented
            else:
                s = pseudo + ports + seq + ack + offflags + window + (
                    sums[sent] if sums is not None else partial_sum(payload) if plen else 0)
                if tsval is not None:
                    s += _TS_WORDS + tsval + tsecr
                elif opts:
                    s += int.from_bytes(opts, "big")
                c = s % 0xFFFF
                csum = 0xFFFF - c if c else 0
            if v6:
                if tsval is not None:
                    hdr = _V6TS.pack(v6word, tcplen, PROTO_TCP, hop_limit, local, remote,
                                     sport, dport, seq, ack, offflags, window, csum, 0,
                                     _TS_KIND, tsval, tsecr)
                else:
                    hdr = _V6.pack(v6word, tcplen, PROTO_TCP, hop_limit, local, remote,
                                   sport, dport, seq, ack, offflags, window, csum, 0) + opts
                l4 = 54
            else:
                ident = ip4.ident = (ip4.ident + 1) & 0xFFFF
                c = (ip_base + iplen + ident) % 0xFFFF
                ipsum = 0xFFFF - c if c else 0
                if tsval is not None:
                    hdr = _V4TS.pack(0x45, tos, iplen, ident, _DF, ttl, PROTO_TCP, ipsum,
                                     local, remote, sport, dport, seq, ack, offflags, window,
                                     csum, 0, _TS_KIND, tsval, tsecr)
                else:
                    hdr = _V4.pack(0x45, tos, iplen, ident, _DF, ttl, PROTO_TCP, ipsum,
                                   local, remote, sport, dport, seq, ack, offflags, window, csum,
                                   0) + opts
                l4 = 34
            if offload or gso:
                frame = OffloadFrame(eth, l4 if offload else 0, 16, gso)
                frame += hdr
                frame += payload
                txq.append(frame)
            else:
                txq.append(b"".join((eth, hdr, payload)))
            sent += 1
        if sent:
            iface.tx_frames += sent
            core.counters["ipv6.tx" if v6 else "ipv4.tx"] += sent
        return sent


def _payload_sums(segs: list[Segment]) -> list[int]:
    """Partial sums of the payloads of ``segs`` with one numpy reduction for the whole batch
    (a numpy call costs about as much as summing 1,500 bytes, so a batch pays it once)."""
    lens = [len(s.payload) for s in segs]
    total = sum(lens)
    if total < NUMPY_THRESHOLD * 2 or any(n & 1 for n in lens):
        return [partial_sum(s.payload) for s in segs]
    words = np.frombuffer(b"".join([s.payload for s in segs]), _U16_BE)
    first = lens[0]
    if first and lens.count(first) == len(lens):
        return words.reshape(len(lens), first >> 1).sum(axis=1, dtype=_U64).tolist()  # type: ignore[no-any-return]
    starts = list(itertools.accumulate(lens[:-1], initial=0))
    nonempty = [i for i, n in enumerate(lens) if n]
    out = [0] * len(lens)
    if nonempty:
        idx = np.array([starts[i] >> 1 for i in nonempty], dtype=np.intp)
        for i, v in zip(nonempty, np.add.reduceat(words, idx, dtype=_U64).tolist(),
                        strict=True):
            out[i] = v
    return out


def make_layer(core: StackCore, policy: TcpPolicy | None = None) -> TcpLayer:
    """The TcpLayer of ``core``: output through the core's IPv4/IPv6 output, MSS from routes."""
    glue = _Glue(core, FAST_OUTPUT, TSO)
    layer = TcpLayer(random.Random(core.rng.getrandbits(64)), policy, glue.output, glue.mtu,
                     gso=glue.gso if TSO else None,
                     fast_output=glue.fast_output if FAST_OUTPUT else None,
                     route_info=glue.route_info if ROUTE_ONCE else None)
    glue.layer = layer
    return layer


def icmp_error(core: StackCore, layer: TcpLayer, local: bytes, remote: bytes,
               quoted: bytes | memoryview, err: int, now: float) -> None:
    """An ICMP/ICMPv6 error quoting a TCP segment we sent: PMTU update and/or the errno it
    converts to (0: none)."""
    pmtu = core.pmtu_get(remote, now) if core.pmtu else None
    layer.icmp_error(local, remote, quoted, err, now, mtu=pmtu)
