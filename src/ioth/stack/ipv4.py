"""IPv4 (RFC 791, RFC 1122, RFC 1812): input, local delivery, output with fragmentation,
bounded reassembly and forwarding.

Header: ver/ihl(1) tos(1) total(2) id(2) flags/frag(2) ttl(1) proto(1) csum(2) src(4) dst(4).
"""

from __future__ import annotations

import errno
import struct
from typing import TYPE_CHECKING

from ioth.stack.errors import Drop
from ioth.stack.interface import BROADCAST_MAC, Interface
from ioth.stack.reassembly import Reassembler
from ioth.wire.checksum import checksum, verify

if TYPE_CHECKING:
    from ioth.stack.core import StackCore

HDR = struct.Struct("!BBHHHBBH4s4s")
PROTO_ICMP = 1
PROTO_IGMP = 2
PROTO_TCP = 6
PROTO_UDP = 17
DF = 0x4000
MF = 0x2000
DEFAULT_TTL = 64
REASM_TIMEOUT = 30.0
ALL_ONES = b"\xff\xff\xff\xff"
ZERO = b"\0\0\0\0"


def build_header(src: bytes, dst: bytes, proto: int, length: int, ident: int, frag: int,
                 ttl: int, tos: int = 0) -> bytes:
    """A 20-byte IPv4 header with its checksum."""
    hdr = bytearray(HDR.pack(0x45, tos, 20 + length, ident, frag, ttl, proto, 0, src, dst))
    struct.pack_into("!H", hdr, 10, checksum(hdr))
    return bytes(hdr)


def is_multicast(addr: bytes) -> bool:
    """224.0.0.0/4."""
    return addr[0] & 0xF0 == 0xE0


def multicast_mac(addr: bytes) -> bytes:
    """RFC 1112 mapping of an IPv4 group to 01:00:5e:xx:xx:xx."""
    return b"\x01\x00\x5e" + bytes((addr[1] & 0x7F, addr[2], addr[3]))


class IPv4:
    """The IPv4 layer of one stack."""

    def __init__(self, core: StackCore) -> None:
        self.core = core
        self._reasm_armed: float | None = None
        self.reasm = Reassembler(REASM_TIMEOUT, drop_overlaps=False)
        self.ident = core.rng.randrange(65536)
        self.default_ttl = DEFAULT_TTL

    # -- input ----------------------------------------------------------------------------
    def input(self, iface: Interface, pkt: memoryview, now: float, l2_multicast: bool,
              verified: bool = False) -> None:
        """Process a received IPv4 packet (the Ethernet payload).

        ``verified``: the header and TCP checksums were verified already (the stack's fused
        receive path); like frames of an ``rx_csum_trusted`` interface, they are not again.
        """
        core = self.core
        counters = core.counters
        counters["ipv4.rx"] += 1
        if len(pkt) < 20:
            raise Drop("ipv4.rx_truncated")
        vihl, _tos, total, ident, frag, ttl, proto, _c, src, dst = HDR.unpack_from(pkt)
        if vihl >> 4 != 4:
            raise Drop("ipv4.rx_bad_version")
        ihl = (vihl & 15) << 2
        if ihl < 20 or total < ihl or total > len(pkt):
            raise Drop("ipv4.rx_bad_length")
        trusted = verified or iface.rx_csum_trusted
        if not trusted and not verify(pkt[:ihl]):
            raise Drop("ipv4.rx_bad_checksum")
        if len(pkt) != total:
            pkt = pkt[:total]
        if is_multicast(src) or src == ALL_ONES or (src[0] == 127 and not iface.loopback):
            raise Drop("ipv4.rx_martian_source")
        if dst in core.local4 or (iface.loopback and dst[0] == 127):
            broadcast = False
        elif dst in core.bcast4 or (is_multicast(dst) and (dst == b"\xe0\0\0\1"
                                                           or dst in iface.groups4)):
            broadcast = True
        else:
            if l2_multicast or is_multicast(dst):
                counters["ipv4.rx_not_for_us"] += 1
            elif core.forwarding and not iface.loopback:
                self.forward(iface, pkt, ihl, ttl, now)
            else:
                counters["ipv4.rx_not_for_us"] += 1
            return
        payload = pkt[ihl:]
        if frag & (MF | 0x1FFF):
            key = (src, dst, proto, ident)
            offset = (frag & 0x1FFF) << 3
            first = bytes(pkt[: ihl + 8]) if offset == 0 else None
            data, deadline = self.reasm.add(key, offset, bool(frag & MF), bytes(payload),
                                            now, first)
            if deadline is not None and self._reasm_armed is None:
                self._reasm_armed = deadline
                core.schedule(deadline, self._reasm_timer)
            if data is None:
                return
            counters["ipv4.rx_reassembled"] += 1
            # a trusted plug vouches for each frame, but cannot check a fragment against the
            # whole datagram's checksum: reassembled datagrams are always verified
            trusted = False
            payload = memoryview(data)
            head = bytearray(pkt[:ihl])
            struct.pack_into("!HH", head, 2, ihl + len(data), 0)
            struct.pack_into("!H", head, 10, 0)
            struct.pack_into("!H", head, 10, checksum(head))
            pkt = memoryview(bytes(head) + data[:548])
        counters["ipv4.rx_delivered"] += 1
        if proto == PROTO_UDP:
            core.udp.input(4, iface, src, dst, payload, pkt, now, broadcast,
                           trusted=trusted and iface.rx_csum_trusted)
        elif proto == PROTO_ICMP:
            core.icmp4.input(iface, src, dst, payload, pkt, now, broadcast,
                             trusted=trusted and iface.rx_csum_trusted)
        elif proto == PROTO_TCP and not broadcast:
            core.tcp_input(src, dst, payload, now, trusted)
        elif proto == PROTO_IGMP:
            core.igmp.input(iface, src, dst, payload, now,
                            trusted=trusted and iface.rx_csum_trusted)
        else:
            counters["ipv4.rx_unknown_protocol"] += 1
            if not broadcast:
                core.icmp4.send_error(3, 2, pkt, now, in_iface=iface)

    def _reasm_timer(self, now: float) -> None:
        # one timer per reassembler (not per datagram): re-armed at the next expiry
        expired = self.reasm.expire(now)
        self._reasm_armed = self.reasm.next_expiry()
        if self._reasm_armed is not None:
            self.core.schedule(self._reasm_armed, self._reasm_timer)
        for first in expired:
            # RFC 792: time exceeded, code 1 (fragment reassembly time exceeded)
            self.core.icmp4.send_error(11, 1, memoryview(first), now)

    # -- routing --------------------------------------------------------------------------
    def route(self, dst: bytes, ifindex: int = 0) -> tuple[Interface, bytes]:
        """Outgoing interface and next hop for ``dst``; OSError(ENETUNREACH) if none."""
        core = self.core
        if dst in core.local4 or dst[0] == 127:
            return core.ifaces[1], dst
        if dst == ALL_ONES or is_multicast(dst):
            if ifindex:
                iface = core.ifaces.get(ifindex)
            else:
                iface = next((i for i in core.ifaces.values()
                              if i.up and not i.loopback and i.addrs4), None)
            if iface is None:
                raise OSError(errno.ENETUNREACH, "Network is unreachable")
            return iface, dst
        return core.routes4.resolve(dst, ifindex, core.ifaces)

    def source_for(self, iface: Interface, nexthop: bytes) -> bytes:
        """Source address for packets leaving ``iface`` towards ``nexthop``."""
        if nexthop in self.core.local4:
            return nexthop  # to ourselves: the destination is the best source (as Linux)
        src = iface.addr4_for(nexthop)
        if src is None:
            src = next((a.addr for i in self.core.ifaces.values() for a in i.addrs4
                        if not i.loopback), ZERO)
        return src

    # -- output ---------------------------------------------------------------------------
    def output(self, src: bytes | None, dst: bytes, proto: int, payload: bytes, now: float,
               *, ttl: int | None = None, tos: int = 0, df: bool = False,
               ifindex: int = 0, via: tuple[Interface, bytes] | None = None) -> None:
        """Route and send a locally generated datagram, fragmenting it if needed.

        Raises OSError: ENETUNREACH (no route), EMSGSIZE (too big with DF set or > 65535).
        """
        iface, nexthop = via if via is not None else self.route(dst, ifindex)
        if src is None:
            src = self.source_for(iface, nexthop)
        if len(payload) + 20 > 65535:
            raise OSError(errno.EMSGSIZE, "Message too long")
        mtu = iface.mtu
        pmtu = self.core.pmtu_get(dst, now) if self.core.pmtu else None
        if pmtu is not None and pmtu < mtu:
            mtu = pmtu
        if ttl is None:
            ttl = 1 if is_multicast(dst) else self.default_ttl
        self.ident = (self.ident + 1) & 0xFFFF
        ident = self.ident
        if len(payload) + 20 <= mtu:
            packet = build_header(src, dst, proto, len(payload), ident, DF if df else 0, ttl,
                                  tos) + payload
            self.core.counters["ipv4.tx"] += 1
            self.send_packet(iface, nexthop, packet, now)
            return
        if df:
            raise OSError(errno.EMSGSIZE, "Message too long")
        self._fragment(iface, nexthop, src, dst, proto, ident, ttl, tos, payload, mtu, 0, False,
                       now)

    def _fragment(self, iface: Interface, nexthop: bytes, src: bytes, dst: bytes, proto: int,
                  ident: int, ttl: int, tos: int, payload: bytes | memoryview, mtu: int,
                  base: int, last_mf: bool, now: float) -> None:
        step = (mtu - 20) & ~7
        if step < 8:
            self.core.counters["ipv4.tx_frag_fails"] += 1
            return
        view = memoryview(payload)
        n = len(view)
        for start in range(0, n, step):
            chunk = view[start : start + step]
            more = start + step < n or last_mf
            frag = ((base + start) >> 3) | (MF if more else 0)
            packet = build_header(src, dst, proto, len(chunk), ident, frag, ttl, tos) + chunk
            self.core.counters["ipv4.tx_fragments"] += 1
            self.send_packet(iface, nexthop, packet, now)

    def send_packet(self, iface: Interface, nexthop: bytes, packet: bytes, now: float) -> None:
        """Hand a complete IPv4 packet to the link layer of ``iface``."""
        core = self.core
        if iface.loopback:
            core.loopq.append((0x0800, packet))
        elif nexthop == ALL_ONES or nexthop in core.bcast4:
            core.eth_output(iface, BROADCAST_MAC, 0x0800, packet)
        elif is_multicast(nexthop):
            core.eth_output(iface, multicast_mac(nexthop), 0x0800, packet)
        else:
            core.arp.output(iface, nexthop, packet, now)

    # -- forwarding (RFC 1812) -------------------------------------------------------------
    def forward(self, in_iface: Interface, pkt: memoryview, ihl: int, ttl: int,
                now: float) -> None:
        """Forward a packet that is not for this node."""
        core = self.core
        src = bytes(pkt[12:16])
        dst = bytes(pkt[16:20])
        if src == ZERO or dst[0] == 127 or dst == ZERO:
            core.counters["ipv4.fwd_martian"] += 1
            return
        if ttl <= 1:
            core.counters["ipv4.fwd_ttl_exceeded"] += 1
            core.icmp4.send_error(11, 0, pkt, now, in_iface=in_iface)
            return
        try:
            iface, nexthop = self.route(dst)
        except OSError:
            core.counters["ipv4.fwd_no_route"] += 1
            core.icmp4.send_error(3, 0, pkt, now, in_iface=in_iface)
            return
        if iface.loopback:
            core.counters["ipv4.fwd_martian"] += 1
            return
        head = bytearray(pkt[:ihl])
        head[8] = ttl - 1
        head[10:12] = b"\0\0"
        struct.pack_into("!H", head, 10, checksum(head))
        mtu = iface.mtu
        if len(pkt) <= mtu:
            core.counters["ipv4.forwarded"] += 1
            self.send_packet(iface, nexthop, bytes(head) + pkt[ihl:], now)
            return
        frag = (pkt[6] << 8) | pkt[7]
        if frag & DF:
            core.counters["ipv4.fwd_frag_needed"] += 1
            core.icmp4.send_error(3, 4, pkt, now, extra=mtu, in_iface=in_iface)
            return
        # options are not copied into later fragments; a forwarded fragment keeps its offset
        core.counters["ipv4.forwarded"] += 1
        self._fragment(iface, nexthop, src, dst, pkt[9], (pkt[4] << 8) | pkt[5], ttl - 1,
                       pkt[1], pkt[ihl:], mtu, (frag & 0x1FFF) << 3, bool(frag & MF), now)
