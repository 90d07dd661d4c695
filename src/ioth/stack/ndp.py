"""Neighbor Discovery (RFC 4861) and Duplicate Address Detection (RFC 4862).

NS/NA keep the neighbour cache (shared state machine in :mod:`neighbour`); RAs give default
routers, on-link prefixes, MTU, hop limit and timers (accepted when not forwarding).  DAD: a
tentative address is probed with an NS from ``::``; an NA for it, or another node's DAD NS for
it, marks it duplicate and the event is recorded.
"""

from __future__ import annotations

import errno
import struct
from typing import TYPE_CHECKING

from ioth.stack.errors import Drop
from ioth.stack.icmp6 import ND_NA, ND_NS, ND_RA, ND_RS, icmp6_message
from ioth.stack.interface import PREFERRED, TENTATIVE, Addr6, Interface
from ioth.stack.neighbour import Neighbour, NeighbourCache
from ioth.stack.route import Route

if TYPE_CHECKING:
    from ioth.stack.core import StackCore

OPT_SLLA = 1
OPT_TLLA = 2
OPT_PREFIX = 3
OPT_MTU = 5
NA_ROUTER = 0x80
NA_SOLICITED = 0x40
NA_OVERRIDE = 0x20
ALL_NODES = bytes.fromhex("ff020000000000000000000000000001")
ALL_ROUTERS = bytes.fromhex("ff020000000000000000000000000002")
UNSPECIFIED = b"\0" * 16
MAX_RTR_SOLICITATION_DELAY = 1.0
MAX_PREFIXES = 64


def _solicited_node(addr: bytes) -> bytes:
    return bytes.fromhex("ff0200000000000000000001ff") + addr[13:]


def parse_options(msg: memoryview, start: int) -> list[tuple[int, memoryview]]:
    """NDP options (type, whole option bytes); a zero length is invalid (RFC 4861 4.6)."""
    out = []
    i = start
    n = len(msg)
    while i + 2 <= n:
        olen = msg[i + 1] * 8
        if olen == 0 or i + olen > n:
            raise Drop("ndp.rx_bad_option")
        out.append((msg[i], msg[i : i + olen]))
        i += olen
    if i != n:
        raise Drop("ndp.rx_bad_option")
    return out


def _lla(options: list[tuple[int, memoryview]], kind: int) -> bytes | None:
    for t, body in options:
        if t == kind and len(body) >= 8:
            return bytes(body[2:8])
    return None


class Ndp:
    """NDP and DAD of one stack; owns the IPv6 neighbour cache."""

    def __init__(self, core: StackCore) -> None:
        self.core = core
        self.cache = NeighbourCache(core, "ndp", self._solicit, self._failed)
        self.prefixes: dict[tuple[int, bytes, int], float] = {}  # (ifindex, prefix, len) -> end
        self.dad_transmits = 1

    # -- sending --------------------------------------------------------------------------
    def _send(self, iface: Interface, src: bytes, dst: bytes, body: bytes,
              dst_mac: bytes | None = None, now: float = 0.0) -> None:
        from ioth.stack.ipv6 import HDR, multicast_mac

        msg = icmp6_message(src, dst, body)
        packet = HDR.pack(0x60000000, len(msg), 58, 255, src, dst) + msg
        self.core.counters["ipv6.tx"] += 1
        if dst_mac is not None:
            self.core.eth_output(iface, dst_mac, 0x86DD, packet)
        elif dst[0] == 0xFF:
            self.core.eth_output(iface, multicast_mac(dst), 0x86DD, packet)
        else:
            self.cache.output(iface, dst, 0x86DD, packet, now)

    def _solicit(self, iface: Interface, n: Neighbour, unicast: bool, now: float) -> None:
        src = self.core.ip6.source_for(iface, n.ip)
        if src == UNSPECIFIED:
            src = next((a.addr for a in iface.addrs6 if a.state == PREFERRED), UNSPECIFIED)
        body = struct.pack("!BBHI", ND_NS, 0, 0, 0) + n.ip
        if src != UNSPECIFIED:
            body += bytes((OPT_SLLA, 1)) + iface.mac
        if unicast and n.mac is not None:
            self._send(iface, src, n.ip, body, n.mac)
        else:
            self._send(iface, src, _solicited_node(n.ip), body)

    def _failed(self, iface: Interface, n: Neighbour, now: float) -> None:
        # as Arp._failed: ICMPv6 address unreachable to ourselves, EHOSTUNREACH to TCP at once
        if n.pending:
            _, packet = n.pending[0]
            tcp = self.core._tcp
            if tcp is not None:
                for _, pkt in n.pending:
                    if pkt[6] == 6:  # TCP right after the fixed header
                        tcp.unreachable(pkt[8:24], pkt[24:40], pkt[40:48], errno.EHOSTUNREACH,
                                        now)
            self.core.ip6.icmp.send_error(1, 3, memoryview(packet), now, in_iface=iface)
            self.core.counters["ndp.pending_drops"] += len(n.pending)
            n.pending.clear()

    def send_rs(self, iface: Interface) -> None:
        """Router solicitation to all-routers."""
        src = iface.link_local6() or UNSPECIFIED
        body = struct.pack("!BBHI", ND_RS, 0, 0, 0)
        if src != UNSPECIFIED:
            body += bytes((OPT_SLLA, 1)) + iface.mac
        self.core.counters["ndp.tx_rs"] += 1
        self._send(iface, src, ALL_ROUTERS, body)

    # -- DAD ------------------------------------------------------------------------------
    def start_dad(self, iface: Interface, a: Addr6, now: float) -> None:
        """Start DAD for tentative ``a`` after a random delay (RFC 4862 5.4.2)."""
        a.dad_left = self.dad_transmits
        delay = self.core.rng.uniform(0.0, MAX_RTR_SOLICITATION_DELAY)
        self.core.schedule(now + delay, self._dad_timer, iface.index, a)

    def _dad_timer(self, now: float, ifindex: int, a: Addr6) -> None:
        iface = self.core.ifaces.get(ifindex)
        if iface is None or a.state != TENTATIVE or a not in iface.addrs6 or not iface.up:
            return
        if a.dad_left > 0:
            a.dad_left -= 1
            self.core.counters["ndp.tx_dad_ns"] += 1
            body = struct.pack("!BBHI", ND_NS, 0, 0, 0) + a.addr
            self._send(iface, UNSPECIFIED, _solicited_node(a.addr), body)
            self.core.schedule(now + iface.retrans_timer, self._dad_timer, ifindex, a)
            return
        a.state = PREFERRED
        self.core.counters["ndp.dad_ok"] += 1
        if a.origin == "link":
            # now that we have a link-local source: MLD reports and a router solicitation
            self.core.ip6.mld.report_all(iface, now)
            if not self.core.forwarding:
                self.send_rs(iface)

    # -- input ----------------------------------------------------------------------------
    def input(self, iface: Interface, icmp_type: int, src: bytes, dst: bytes, hlim: int,
              msg: memoryview, now: float) -> None:
        """Process a received NDP message (already checksum-verified)."""
        counters = self.core.counters
        if hlim != 255 or msg[1] != 0:
            raise Drop("ndp.rx_invalid")  # RFC 4861 7.1.1: off-link or forged
        if iface.loopback:
            return
        if icmp_type == ND_NS:
            self._ns_input(iface, src, dst, msg, now)
        elif icmp_type == ND_NA:
            self._na_input(iface, src, dst, msg, now)
        elif icmp_type == ND_RA:
            self._ra_input(iface, src, msg, now)
        elif icmp_type == ND_RS:
            counters["ndp.rx_rs"] += 1
        else:
            counters["ndp.rx_redirect_ignored"] += 1

    def _ns_input(self, iface: Interface, src: bytes, dst: bytes, msg: memoryview,
                  now: float) -> None:
        counters = self.core.counters
        if len(msg) < 24:
            raise Drop("ndp.rx_truncated")
        target = bytes(msg[8:24])
        if target[0] == 0xFF:
            raise Drop("ndp.rx_invalid")
        options = parse_options(msg, 24)
        slla = _lla(options, OPT_SLLA)
        dad = src == UNSPECIFIED
        if dad and (dst[:13] != _solicited_node(target)[:13] or slla is not None):
            raise Drop("ndp.rx_invalid")
        counters["ndp.rx_ns"] += 1
        a = next((x for x in iface.addrs6 if x.addr == target), None)
        if a is None:
            counters["ndp.rx_ns_not_ours"] += 1
            return
        if a.state == TENTATIVE:
            if dad:  # RFC 4862 5.4.3: someone else is probing the same address
                self.core.ip6.dad_failed(iface, a)
            return
        if a.state != PREFERRED:
            return
        if not dad and slla is not None:
            self.cache.learn(iface, src, slla, now, advert=False)
        flags = NA_OVERRIDE | (NA_ROUTER if self.core.forwarding else 0)
        if not dad:
            flags |= NA_SOLICITED
        body = bytes((ND_NA, 0, 0, 0, flags, 0, 0, 0)) + target + bytes((OPT_TLLA, 1)) \
            + iface.mac
        counters["ndp.tx_na"] += 1
        if dad:
            self._send(iface, target, ALL_NODES, body)
        else:
            self._send(iface, target, src, body, slla, now)

    def _na_input(self, iface: Interface, src: bytes, dst: bytes, msg: memoryview,
                  now: float) -> None:
        counters = self.core.counters
        if len(msg) < 24:
            raise Drop("ndp.rx_truncated")
        flags = msg[4]
        target = bytes(msg[8:24])
        if target[0] == 0xFF or (dst[0] == 0xFF and flags & NA_SOLICITED):
            raise Drop("ndp.rx_invalid")
        options = parse_options(msg, 24)
        tlla = _lla(options, OPT_TLLA)
        counters["ndp.rx_na"] += 1
        a = next((x for x in iface.addrs6 if x.addr == target), None)
        if a is not None:
            if a.state == TENTATIVE:
                self.core.ip6.dad_failed(iface, a)
            elif tlla is not None and tlla != iface.mac:
                counters["ndp.rx_na_conflict"] += 1
                self.core.event(f"ndp: {iface.name}: another node advertises our address")
            return
        if tlla is None:
            n = self.cache.entries.get((iface.index, target))
            if n is None or n.mac is None:
                return
            tlla = n.mac
        self.cache.learn(iface, target, tlla, now, advert=True,
                         solicited=bool(flags & NA_SOLICITED),
                         override=bool(flags & NA_OVERRIDE), is_router=bool(flags & NA_ROUTER),
                         create=False)

    def _ra_input(self, iface: Interface, src: bytes, msg: memoryview, now: float) -> None:
        core = self.core
        counters = core.counters
        if len(msg) < 16:
            raise Drop("ndp.rx_truncated")
        if src[:2] != b"\xfe\x80":
            raise Drop("ndp.rx_invalid")
        options = parse_options(msg, 16)
        counters["ndp.rx_ra"] += 1
        if core.forwarding or not core.ip6.accept_ra:
            counters["ndp.rx_ra_ignored"] += 1
            return
        cur_hl, _flags, lifetime, reachable, retrans = struct.unpack_from("!BBHII", msg, 4)
        if cur_hl:
            iface.hop_limit = cur_hl
        if reachable:
            iface.reachable_time = reachable / 1000.0
        if retrans:
            iface.retrans_timer = retrans / 1000.0
        slla = _lla(options, OPT_SLLA)
        if slla is not None:
            self.cache.learn(iface, src, slla, now, advert=False, is_router=True)
        default = b"\0" * 16
        if lifetime:
            core.routes6.add(Route(default, 0, src, iface.index, 1024, "ra", now + lifetime))
            core.schedule(now + lifetime, self._expire)
        else:
            core.routes6.remove(default, 0, src, iface.index)
        for kind, body in options:
            if kind == OPT_MTU and len(body) >= 8:
                mtu = struct.unpack_from("!I", body, 4)[0]
                if 1280 <= mtu <= 65535:
                    iface.mtu = min(iface.mtu, mtu)
            elif kind == OPT_PREFIX and len(body) >= 32:
                plen, pflags, valid = body[2], body[3], struct.unpack_from("!I", body, 4)[0]
                prefix = bytes(body[16:32])
                if prefix[:2] == b"\xfe\x80" or plen > 128 or not pflags & 0x80:
                    continue
                key = (iface.index, prefix, plen)
                if valid == 0:
                    core.routes6.remove(prefix, plen, None, iface.index)
                    self.prefixes.pop(key, None)
                    continue
                if key not in self.prefixes and len(self.prefixes) >= MAX_PREFIXES:
                    counters["ndp.prefixes_dropped"] += 1
                    continue
                end = now + valid if valid != 0xFFFFFFFF else float("inf")
                self.prefixes[key] = end
                core.routes6.add(Route(prefix, plen, None, iface.index, 256, "ra",
                                       end if end != float("inf") else None))
                if end != float("inf"):
                    core.schedule(end, self._expire)

    def _expire(self, now: float) -> None:
        self.core.routes6.expire(now)
        for key, end in list(self.prefixes.items()):
            if end <= now:
                del self.prefixes[key]
