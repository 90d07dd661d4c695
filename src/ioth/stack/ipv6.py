"""IPv6 (RFC 8200): addresses, extension headers, fragmentation and reassembly (RFC 5722: an
overlapping fragment abandons the datagram; RFC 6946 atomic fragments), routing, output and
forwarding.  Link-local addresses (modified EUI-64), NDP and DAD live in :mod:`ndp`, MLDv2 in
:mod:`mld`, ICMPv6 in :mod:`icmp6`.

Header: ver/class/flow(4) payload length(2) next header(1) hop limit(1) src(16) dst(16).
"""

from __future__ import annotations

import errno
import struct
from typing import TYPE_CHECKING

from ioth.stack.errors import Drop
from ioth.stack.hashaddr import eui64_iid
from ioth.stack.icmp6 import ICMPv6
from ioth.stack.interface import DUPLICATE, PREFERRED, TENTATIVE, Addr6, Interface
from ioth.stack.mld import Mld
from ioth.stack.ndp import Ndp
from ioth.stack.reassembly import Reassembler
from ioth.stack.route import Route

if TYPE_CHECKING:
    from ioth.stack.core import StackCore

HDR = struct.Struct("!IHBB16s16s")
NH_HOPOPTS = 0
NH_ROUTING = 43
NH_FRAGMENT = 44
NH_DSTOPTS = 60
NH_NONE = 59
NH_ICMPV6 = 58
NH_UDP = 17
NH_TCP = 6
_AH = 51
REASM_TIMEOUT = 60.0
MIN_MTU = 1280
UNSPECIFIED = b"\0" * 16
LOOPBACK = b"\0" * 15 + b"\1"
ALL_NODES = bytes.fromhex("ff020000000000000000000000000001")
LINK_LOCAL_PREFIX = bytes.fromhex("fe800000000000000000000000000000")
# hop-by-hop header carrying a Router Alert (RFC 2711, value 0 = MLD) and PadN
_HBH_RA = b"\x05\x02\x00\x00\x01\x00"


def is_link_local(addr: bytes) -> bool:
    """fe80::/10."""
    return addr[0] == 0xFE and addr[1] & 0xC0 == 0x80


def solicited_node(addr: bytes) -> bytes:
    """The solicited-node multicast group of ``addr`` (ff02::1:ffXX:XXXX)."""
    return bytes.fromhex("ff0200000000000000000001ff") + addr[13:]


def multicast_mac(group: bytes) -> bytes:
    """RFC 2464 mapping 33:33:xx:xx:xx:xx."""
    return b"\x33\x33" + group[12:]


def _chain_truncated(nh: int, data: memoryview) -> bool:
    """Whether the first fragment payload ``data`` (after the fragment header, whose next
    header is ``nh``) lacks part of the header chain through the upper-layer header (RFC
    7112 5).  As Linux (``ipv6_skip_exthdr``): each extension header is skipped by its length
    field; a chain that cannot be followed (a field missing, no next header, a later
    fragment header) is left to the rest of the input path."""
    off = 0
    n = len(data)
    while nh in (NH_HOPOPTS, NH_ROUTING, NH_FRAGMENT, _AH, NH_DSTOPTS):
        if off + 2 > n:
            return False
        if nh == NH_FRAGMENT:
            if off + 4 > n:
                return False
            if ((data[off + 2] << 8) | data[off + 3]) & 0xFFF8:
                return False
            hlen = 8
        elif nh == _AH:
            hlen = (data[off + 1] + 2) << 2
        else:
            hlen = (data[off + 1] + 1) << 3
        nh = data[off]
        off += hlen
    if nh == NH_NONE:
        return False
    # the upper-layer header bytes it must hold (Linux ipv6frag_thdr_truncated: TCP, UDP
    # and ICMPv6 headers, one byte of anything else)
    need = 20 if nh == NH_TCP else 8 if nh in (NH_UDP, NH_ICMPV6) else 1
    return off + need > n


class IPv6:
    """The IPv6 layer of one stack."""

    def __init__(self, core: StackCore) -> None:
        self.core = core
        self._reasm_armed: float | None = None
        self.reasm = Reassembler(REASM_TIMEOUT, drop_overlaps=True)
        self.local: dict[bytes, tuple[int, Addr6]] = {}
        self.frag_id = core.rng.randrange(1 << 32)
        self.default_hop_limit = 64
        self.accept_ra = True
        self.icmp = ICMPv6(core)
        self.ndp = Ndp(core)
        self.mld = Mld(core)

    # -- addresses ------------------------------------------------------------------------
    def is_local(self, addr: bytes) -> bool:
        """True for a usable (not tentative, not duplicate) address of this node."""
        entry = self.local.get(addr)
        return entry is not None and entry[1].state == PREFERRED

    def add_addr(self, index: int, addr: bytes, plen: int, now: float,
                 origin: str = "static") -> Addr6:
        """Add an address; on an Ethernet link it stays tentative until DAD succeeds."""
        core = self.core
        iface = core.ifaces[index]
        if addr in self.local:
            raise FileExistsError(errno.EEXIST, "address already assigned")
        a = Addr6(addr, plen, PREFERRED if iface.loopback else TENTATIVE, 1, origin)
        iface.addrs6.append(a)
        self.local[addr] = (index, a)
        if plen < 128 and not (iface.loopback and plen == 128):
            core.routes6.add(Route(addr, plen, None, index, 256, "kernel"))
        if not iface.loopback:
            self.mld.join(iface, solicited_node(addr), now)
            if iface.up:
                self.ndp.start_dad(iface, a, now)
        return a

    def del_addr(self, index: int, addr: bytes, plen: int | None = None) -> None:
        """Remove an address (and its on-link route if no other address needs it)."""
        core = self.core
        iface = core.ifaces[index]
        for a in iface.addrs6:
            if a.addr == addr and (plen is None or a.plen == plen):
                iface.addrs6.remove(a)
                self.local.pop(addr, None)
                if not iface.loopback:
                    self.mld.leave(iface, solicited_node(addr), 0.0)
                shift = 128 - a.plen
                net = int.from_bytes(addr, "big") >> shift
                if a.plen < 128 and not any(
                        x.plen == a.plen and int.from_bytes(x.addr, "big") >> shift == net
                        for x in iface.addrs6):
                    core.routes6.remove(addr, a.plen, None, index)
                return
        raise FileNotFoundError(errno.EADDRNOTAVAIL, "address not assigned")

    def link_up(self, iface: Interface, now: float) -> None:
        """Start IPv6 on a link: all-nodes group, link-local address, DAD of every address."""
        if iface.loopback:
            return
        self.mld.join(iface, ALL_NODES, now)
        ll = LINK_LOCAL_PREFIX[:8] + eui64_iid(iface.mac)
        self.core.routes6.add(Route(LINK_LOCAL_PREFIX, 64, None, iface.index, 256, "kernel"))
        for a in iface.addrs6:
            if a.state != PREFERRED:
                a.state = TENTATIVE
                a.dad_left = 1
                self.ndp.start_dad(iface, a, now)
        if ll not in self.local:
            self.add_addr(iface.index, ll, 64, now, origin="link")
        # MLD reports of every joined group follow the link-local address's DAD

    def link_down(self, iface: Interface) -> None:
        """Forget the link-local address and neighbours when a link goes down."""
        for a in list(iface.addrs6):
            if a.origin == "link":
                self.del_addr(iface.index, a.addr, a.plen)
            else:
                a.state = TENTATIVE
        self.ndp.cache.remove(iface.index)

    def dad_failed(self, iface: Interface, a: Addr6) -> None:
        """Mark ``a`` duplicate (RFC 4862 5.4.5) and report it."""
        a.state = DUPLICATE
        self.core.counters["ndp.dad_duplicates"] += 1
        self.core.event(f"dad: {iface.name}: duplicate address {_fmt(a.addr)} detected")

    # -- routing and source selection -------------------------------------------------------
    def route(self, dst: bytes, ifindex: int = 0) -> tuple[Interface, bytes]:
        """Outgoing interface and next hop; OSError(ENETUNREACH) when there is none."""
        core = self.core
        entry = self.local.get(dst)
        if entry is not None and entry[1].state != DUPLICATE:
            return core.ifaces[1], dst
        if dst[0] == 0xFF or is_link_local(dst):
            iface = core.ifaces.get(ifindex) if ifindex else next(
                (i for i in core.ifaces.values() if i.up and not i.loopback), None)
            if iface is None or not iface.up:
                raise OSError(errno.ENETUNREACH, "Network is unreachable")
            return iface, dst
        return core.routes6.resolve(dst, ifindex, core.ifaces)

    def source_for(self, iface: Interface, dst: bytes) -> bytes:
        """RFC 6724 in short: same scope, then longest matching prefix, preferred only."""
        if self.is_local(dst):
            return dst
        if is_link_local(dst) or (dst[0] == 0xFF and dst[1] & 0x0F <= 2):
            return iface.link_local6() or UNSPECIFIED
        value = int.from_bytes(dst, "big")
        best = None
        best_len = -1
        for pool in ([iface], [i for i in self.core.ifaces.values() if not i.loopback]):
            for i in pool:
                for a in i.addrs6:
                    if a.state != PREFERRED or is_link_local(a.addr):
                        continue
                    common = 128 - (int.from_bytes(a.addr, "big") ^ value).bit_length()
                    if common > best_len:
                        best, best_len = a.addr, common
            if best is not None:
                return best
        return iface.link_local6() or UNSPECIFIED

    # -- output ---------------------------------------------------------------------------
    def output(self, src: bytes | None, dst: bytes, nh: int, payload: bytes, now: float, *,
               hop_limit: int | None = None, ifindex: int = 0, router_alert: bool = False,
               tclass: int = 0, via: tuple[Interface, bytes] | None = None) -> None:
        """Route and send a locally generated packet, fragmenting it if needed."""
        iface, nexthop = via if via is not None else self.route(dst, ifindex)
        if src is None:
            src = self.source_for(iface, dst)
        ext = b""
        if router_alert:
            ext = bytes((nh, 0)) + _HBH_RA
            nh = NH_HOPOPTS
        if hop_limit is None:
            hop_limit = 1 if dst[0] == 0xFF else iface.hop_limit
        if len(payload) + len(ext) > 65535:
            raise OSError(errno.EMSGSIZE, "Message too long")
        mtu = iface.mtu
        if self.core.pmtu:
            pmtu = self.core.pmtu_get(dst, now)
            if pmtu is not None and pmtu < mtu:
                mtu = pmtu
        first = (0x60000000 | (tclass << 20))
        counters = self.core.counters
        if 40 + len(ext) + len(payload) <= mtu:
            packet = HDR.pack(first, len(ext) + len(payload), nh, hop_limit, src, dst) + ext \
                + payload
            counters["ipv6.tx"] += 1
            self.send_packet(iface, nexthop, packet, now)
            return
        # RFC 8200 4.5: unfragmentable part (our only one is the hop-by-hop header) + fragments
        step = (mtu - 40 - len(ext) - 8) & ~7
        if step < 8:
            raise OSError(errno.EMSGSIZE, "Message too long")
        self.frag_id = (self.frag_id + 1) & 0xFFFFFFFF
        view = memoryview(payload)
        inner_nh = ext[0] if ext else nh
        outer_nh = NH_HOPOPTS if ext else NH_FRAGMENT
        ext_f = bytes((NH_FRAGMENT,)) + ext[1:] if ext else b""
        for start in range(0, len(view), step):
            chunk = view[start : start + step]
            more = 1 if start + step < len(view) else 0
            fh = struct.pack("!BBHI", inner_nh, 0, start | more, self.frag_id)
            packet = HDR.pack(first, len(ext_f) + 8 + len(chunk), outer_nh, hop_limit, src,
                              dst) + ext_f + fh + chunk
            counters["ipv6.tx_fragments"] += 1
            self.send_packet(iface, nexthop, packet, now)

    def send_packet(self, iface: Interface, nexthop: bytes, packet: bytes, now: float) -> None:
        """Hand a complete IPv6 packet to the link layer of ``iface``."""
        if iface.loopback:
            self.core.loopq.append((0x86DD, packet))
        elif nexthop[0] == 0xFF:
            self.core.eth_output(iface, multicast_mac(nexthop), 0x86DD, packet)
        else:
            self.ndp.cache.output(iface, nexthop, 0x86DD, packet, now)

    # -- input ----------------------------------------------------------------------------
    def input(self, iface: Interface, pkt: memoryview, now: float, l2_multicast: bool,
              verified: bool = False) -> None:
        """Process a received IPv6 packet (the Ethernet payload).

        ``verified``: the TCP checksum was verified already (the stack's fused receive path).
        """
        core = self.core
        counters = core.counters
        counters["ipv6.rx"] += 1
        if len(pkt) < 40:
            raise Drop("ipv6.rx_truncated")
        vtf, plen, nh, hlim, src, dst = HDR.unpack_from(pkt)
        if vtf >> 28 != 6:
            raise Drop("ipv6.rx_bad_version")
        if 40 + plen > len(pkt):
            raise Drop("ipv6.rx_truncated")
        if len(pkt) != 40 + plen:
            pkt = pkt[: 40 + plen]
        if src[0] == 0xFF or (src == LOOPBACK and not iface.loopback):
            raise Drop("ipv6.rx_martian_source")
        tentative = False
        multicast = dst[0] == 0xFF
        if multicast:
            if dst not in iface.groups6:
                counters["ipv6.rx_not_member"] += 1
                return
        else:
            entry = self.local.get(dst)
            if entry is None or (is_link_local(dst) and entry[0] != iface.index
                                 and not iface.loopback):
                if core.forwarding and not iface.loopback and not l2_multicast:
                    self.forward(iface, pkt, hlim, src, dst, now)
                else:
                    counters["ipv6.rx_not_for_us"] += 1
                return
            state = entry[1].state
            if state == DUPLICATE:
                counters["ipv6.rx_not_for_us"] += 1
                return
            tentative = state == TENTATIVE
        self._walk(iface, pkt, src, dst, nh, hlim, now, multicast, tentative, verified)

    def _walk(self, iface: Interface, pkt: memoryview, src: bytes, dst: bytes, nh: int,
              hlim: int, now: float, multicast: bool, tentative: bool,
              verified: bool = False) -> None:
        core = self.core
        counters = core.counters
        off = 40
        nh_ptr = 6  # offset of the next-header field naming the header at ``off``
        trusted = verified or iface.rx_csum_trusted
        while True:
            if nh == NH_ICMPV6:
                counters["ipv6.rx_delivered"] += 1
                self.icmp.input(iface, src, dst, hlim, pkt[off:], pkt, now, multicast,
                                tentative, trusted=trusted and iface.rx_csum_trusted)
                return
            if tentative:
                counters["ipv6.rx_to_tentative"] += 1
                return
            if nh == NH_UDP:
                counters["ipv6.rx_delivered"] += 1
                core.udp.input(6, iface, src, dst, pkt[off:], pkt, now, multicast,
                               trusted=trusted and iface.rx_csum_trusted)
                return
            if nh == NH_TCP and not multicast:
                counters["ipv6.rx_delivered"] += 1
                core.tcp_input(src, dst, pkt[off:], now, trusted)
                return
            if nh == NH_NONE:
                return
            if nh in (NH_HOPOPTS, NH_DSTOPTS, NH_ROUTING):
                if nh == NH_HOPOPTS and off != 40:
                    self.icmp.send_error(4, 1, pkt, now, extra=nh_ptr, in_iface=iface)
                    raise Drop("ipv6.rx_bad_hbh_position")
                if len(pkt) < off + 8:
                    raise Drop("ipv6.rx_truncated_ext")
                hlen = (pkt[off + 1] + 1) << 3
                if len(pkt) < off + hlen:
                    raise Drop("ipv6.rx_truncated_ext")
                if nh == NH_ROUTING:
                    if pkt[off + 3] != 0:  # segments left: we are not a source-route hop
                        self.icmp.send_error(4, 0, pkt, now, extra=off + 2, in_iface=iface)
                        raise Drop("ipv6.rx_routing_header")
                elif not self._options(iface, pkt, off, hlen, now, multicast):
                    return
                nh_ptr = off
                nh = pkt[off]
                off += hlen
                continue
            if nh == NH_FRAGMENT:
                if len(pkt) < off + 8:
                    raise Drop("ipv6.rx_truncated_ext")
                fnh, _, fo, ident = struct.unpack_from("!BBHI", pkt, off)
                start = fo & 0xFFF8
                more = bool(fo & 1)
                data = pkt[off + 8 :]
                if start == 0 and not more:  # RFC 6946 atomic fragment
                    counters["ipv6.rx_atomic_fragments"] += 1
                    nh_ptr = off
                    nh = fnh
                    off += 8
                    continue
                if start == 0 and _chain_truncated(fnh, data):
                    # RFC 8200 4.5 / RFC 7112 5: a first fragment without the whole header
                    # chain: parameter problem, code 3 (incomplete chain), pointer 0 (Linux
                    # ipv6frag_thdr_truncated)
                    self.icmp.send_error(4, 3, pkt, now, extra=0, in_iface=iface)
                    raise Drop("ipv6.rx_fragment_chain_truncated")
                if more and len(data) % 8:
                    self.icmp.send_error(4, 0, pkt, now, extra=4, in_iface=iface)
                    raise Drop("ipv6.rx_bad_fragment_length")
                first = bytes(pkt[:1280]) if start == 0 else None
                whole, deadline = self.reasm.add((src, dst, ident), start, more, bytes(data),
                                                 now, first)
                if deadline is not None and self._reasm_armed is None:
                    self._reasm_armed = deadline
                    core.schedule(deadline, self._reasm_timer)
                if whole is None:
                    return
                counters["ipv6.rx_reassembled"] += 1
                trusted = False  # fragments were vouched for, the reassembled datagram is not
                head = bytearray(pkt[:off])
                head[nh_ptr] = fnh
                struct.pack_into("!H", head, 4, off - 40 + len(whole))
                pkt = memoryview(bytes(head) + whole)
                nh = fnh
                continue
            counters["ipv6.rx_unknown_header"] += 1
            self.icmp.send_error(4, 1, pkt, now, extra=nh_ptr, in_iface=iface)
            return

    def _options(self, iface: Interface, pkt: memoryview, off: int, hlen: int, now: float,
                 multicast: bool) -> bool:
        """Walk hop-by-hop/destination options; False when the packet must be discarded."""
        i = off + 2
        end = off + hlen
        while i < end:
            opt = pkt[i]
            if opt == 0:
                i += 1
                continue
            if i + 2 > end or i + 2 + pkt[i + 1] > end:
                raise Drop("ipv6.rx_bad_option")
            if opt not in (1, 5):  # PadN and Router Alert are understood
                action = opt >> 6
                self.core.counters["ipv6.rx_unknown_option"] += 1
                if action == 1:
                    return False
                if action == 2 or (action == 3 and not multicast):
                    self.icmp.send_error(4, 2, pkt, now, extra=i, in_iface=iface,
                                         to_multicast=True)
                    return False
                if action == 3:
                    return False
            i += 2 + pkt[i + 1]
        return True

    def _reasm_timer(self, now: float) -> None:
        # one timer per reassembler (not per datagram): re-armed at the next expiry
        expired = self.reasm.expire(now)
        self._reasm_armed = self.reasm.next_expiry()
        if self._reasm_armed is not None:
            self.core.schedule(self._reasm_armed, self._reasm_timer)
        for first in expired:
            self.icmp.send_error(3, 1, memoryview(first), now)

    # -- forwarding -----------------------------------------------------------------------
    def forward(self, in_iface: Interface, pkt: memoryview, hlim: int, src: bytes, dst: bytes,
                now: float) -> None:
        """Forward a packet that is not for this node (RFC 8200 section 3, RFC 4443)."""
        core = self.core
        counters = core.counters
        if is_link_local(src) or is_link_local(dst) or src == UNSPECIFIED or dst == LOOPBACK:
            counters["ipv6.fwd_scope_drops"] += 1
            return
        if hlim <= 1:
            counters["ipv6.fwd_hop_limit_exceeded"] += 1
            self.icmp.send_error(3, 0, pkt, now, in_iface=in_iface)
            return
        try:
            iface, nexthop = self.route(dst)
        except OSError:
            counters["ipv6.fwd_no_route"] += 1
            self.icmp.send_error(1, 0, pkt, now, in_iface=in_iface)
            return
        if iface.loopback:
            return
        if len(pkt) > iface.mtu:
            counters["ipv6.fwd_too_big"] += 1
            self.icmp.send_error(2, 0, pkt, now, extra=iface.mtu, in_iface=in_iface,
                                 to_multicast=True)
            return
        packet = bytearray(pkt)
        packet[7] = hlim - 1
        counters["ipv6.forwarded"] += 1
        self.send_packet(iface, nexthop, bytes(packet), now)


def _fmt(addr: bytes) -> str:
    import ipaddress

    return str(ipaddress.IPv6Address(addr))
