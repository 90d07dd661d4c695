"""ARP (RFC 826) for IPv4 over Ethernet, on the shared neighbour state machine.

Packet: htype(2)=1 ptype(2)=0x0800 hlen(1)=6 plen(1)=4 op(2) sha(6) spa(4) tha(6) tpa(4).
Merge rule of RFC 826: an existing entry for the sender is updated; a new one is created only
when we are the target.  Gratuitous ARP (a request with spa == tpa) announces new addresses.
"""

from __future__ import annotations

import errno
import struct
from typing import TYPE_CHECKING

from ioth.stack.errors import Drop
from ioth.stack.interface import Interface
from ioth.stack.neighbour import Neighbour, NeighbourCache

if TYPE_CHECKING:
    from ioth.stack.core import StackCore

ETH_P_ARP = 0x0806
ARP_REQUEST = 1
ARP_REPLY = 2
_HDR = struct.Struct("!HHBBH")
_PREFIX = _HDR.pack(1, 0x0800, 6, 4, 0)[:6]
ZERO4 = b"\0\0\0\0"


def arp_packet(op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes) -> bytes:
    """An Ethernet/IPv4 ARP packet."""
    return b"".join((_PREFIX, op.to_bytes(2, "big"), sha, spa, tha, tpa))


class Arp:
    """ARP protocol handler and the IPv4 neighbour cache."""

    def __init__(self, core: StackCore) -> None:
        self.core = core
        self.cache = NeighbourCache(core, "arp", self._solicit, self._failed)

    def _solicit(self, iface: Interface, n: Neighbour, unicast: bool, now: float) -> None:
        spa = iface.addr4_for(n.ip) or ZERO4
        pkt = arp_packet(ARP_REQUEST, iface.mac, spa, b"\0" * 6, n.ip)
        if unicast and n.mac is not None:
            self.core.eth_output(iface, n.mac, ETH_P_ARP, pkt)
        else:
            self.core.broadcast(iface, ETH_P_ARP, pkt)

    def _failed(self, iface: Interface, n: Neighbour, now: float) -> None:
        # RFC 1122 3.3.1.4 / RFC 4861 7.2.2: report "host unreachable" for what was waiting:
        # an ICMP error to ourselves (as Linux arp_error_report) and, at once, to TCP for each
        # queued segment (a connection attempt then fails with EHOSTUNREACH, as on Linux)
        if n.pending:
            _, packet = n.pending[0]
            tcp = self.core._tcp
            if tcp is not None:
                for _, pkt in n.pending:
                    ihl = (pkt[0] & 15) << 2
                    if pkt[9] == 6 and not ((pkt[6] << 8) | pkt[7]) & 0x1FFF:
                        tcp.unreachable(pkt[12:16], pkt[16:20], pkt[ihl : ihl + 8],
                                        errno.EHOSTUNREACH, now)
            self.core.icmp4.send_error(3, 1, memoryview(packet), now, in_iface=iface)
            self.core.counters["arp.pending_drops"] += len(n.pending)
            n.pending.clear()

    def announce(self, iface: Interface, addr: bytes) -> None:
        """Send a gratuitous ARP request for ``addr``."""
        self.core.counters["arp.tx_gratuitous"] += 1
        self.core.broadcast(iface, ETH_P_ARP,
                            arp_packet(ARP_REQUEST, iface.mac, addr, b"\0" * 6, addr))

    def input(self, iface: Interface, pkt: memoryview, now: float) -> None:
        """Process one received ARP packet."""
        counters = self.core.counters
        if len(pkt) < 28:
            raise Drop("arp.rx_truncated")
        htype, ptype, hlen, plen, op = _HDR.unpack_from(pkt)
        if htype != 1 or ptype != 0x0800 or hlen != 6 or plen != 4:
            raise Drop("arp.rx_unsupported")
        if iface.loopback:
            return
        counters["arp.rx"] += 1
        sha = bytes(pkt[8:14])
        spa = bytes(pkt[14:18])
        tpa = bytes(pkt[24:28])
        if sha[0] & 1:
            raise Drop("arp.rx_bad_sender")
        if sha == iface.mac:
            counters["arp.rx_own"] += 1
            return
        mine = any(a.addr == tpa for a in iface.addrs4)
        if any(a.addr == spa for a in iface.addrs4):
            counters["arp.rx_conflict"] += 1
            self.core.event(f"arp: {iface.name}: address {'.'.join(map(str, spa))} "
                            f"also used by {sha.hex(':')}")
            if mine and op == ARP_REQUEST:
                self.announce(iface, spa)  # defend the address (RFC 5227 2.4)
            return
        if spa != ZERO4:
            if op == ARP_REPLY:
                counters["arp.rx_reply"] += 1
                self.cache.learn(iface, spa, sha, now, advert=True, solicited=mine,
                                 override=True, create=mine)
            else:
                self.cache.learn(iface, spa, sha, now, advert=False, create=mine)
        if op == ARP_REQUEST and mine:
            counters["arp.rx_request"] += 1
            counters["arp.tx_reply"] += 1
            self.core.eth_output(iface, sha, ETH_P_ARP,
                                 arp_packet(ARP_REPLY, iface.mac, tpa, sha, spa))

    def output(self, iface: Interface, nexthop: bytes, packet: bytes, now: float) -> None:
        """Send an IPv4 packet to on-link ``nexthop`` through the neighbour cache."""
        self.cache.output(iface, nexthop, 0x0800, packet, now)
