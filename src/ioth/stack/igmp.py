"""IGMP host side: IGMPv3 (RFC 3376) with IGMPv2 (RFC 2236) / IGMPv1 compatibility modes.

Groups are joined by sockets (IP_ADD_MEMBERSHIP, counted in ``Interface.groups4``); the state
machine is the one MLDv2 uses (:class:`ioth.stack.mld.GroupListener`): a join sends a
state-change report (CHANGE_TO_EXCLUDE {}), the last leave a CHANGE_TO_INCLUDE {} one, each sent
twice (robustness 2, the repeat within the unsolicited report interval: 1 s for IGMPv3, 10 s for
v1/v2); queries are answered after a random delay within their maximum response time.
224.0.0.1 (all systems) is never reported.

Compatibility (RFC 3376 7.2.1): a v1 or v2 query starts that version's Older Version Querier
Present timer (robustness x query interval + query response interval = 260 s); while it runs,
reports are IGMPv2 (type 0x16, to the group) or v1 (0x12), a leave is an IGMPv2 Leave Group
(0x17, to 224.0.0.2; nothing in v1 mode), and a report of the same group by another member
cancels our pending answer (v1/v2 report suppression).

Every IGMP packet leaves with TTL 1, ToS 0xc0 (internetwork control), DF and a Router Alert
option (RFC 2113) in a 24-byte IPv4 header; IGMPv3 reports go to 224.0.0.22.

Packets: query type(1)=0x11 max-resp(1) checksum(2) group(4) [v3: flags(1) QQIC(1) nsrc(2)
sources]; v3 report type=0x22 reserved(1) checksum(2) reserved(2) nrec(2) records (type(1)
auxlen(1) nsrc(2) group(4) ...); v1/v2 report / leave type(1) 0(1) checksum(2) group(4).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ioth.stack.errors import Drop
from ioth.stack.interface import Interface
from ioth.stack.mld import CHANGE_TO_INCLUDE, GroupListener, Records
from ioth.wire.checksum import checksum, verify

if TYPE_CHECKING:
    from ioth.stack.core import StackCore

PROTO_IGMP = 2
QUERY = 0x11
V1_REPORT = 0x12
V2_REPORT = 0x16
V2_LEAVE = 0x17
V3_REPORT = 0x22
ALL_SYSTEMS = bytes((224, 0, 0, 1))
ALL_ROUTERS = bytes((224, 0, 0, 2))
V3_ROUTERS = bytes((224, 0, 0, 22))
ROBUSTNESS = 2
QUERY_INTERVAL = 125.0
QUERY_RESPONSE_INTERVAL = 10.0
OLDER_QUERIER_TIMEOUT = ROBUSTNESS * QUERY_INTERVAL + QUERY_RESPONSE_INTERVAL
V3_UNSOLICITED_INTERVAL = 1.0
V2_UNSOLICITED_INTERVAL = 10.0
TOS = 0xC0
TTL = 1
DF = 0x4000
ROUTER_ALERT = b"\x94\x04\x00\x00"
_IP_RA = struct.Struct("!BBHHHBBH4s4s4s")


def igmp_time(code: int) -> float:
    """Seconds of an IGMPv3 Max Resp Code (RFC 3376 4.1.1: 1/10 s, floating point >= 128)."""
    if code >= 128:
        code = ((code & 0x0F) | 0x10) << (((code >> 4) & 7) + 3)
    return code / 10.0


class Igmp(GroupListener):
    """IGMP host state of one stack."""

    name = "igmp"

    def __init__(self, core: StackCore) -> None:
        super().__init__(core)
        # ifindex -> until when an older-version querier (1 or 2) is present
        self._older: dict[int, dict[int, float]] = {}

    # -- hooks of GroupListener ------------------------------------------------------------
    def groups(self, iface: Interface) -> dict[bytes, int]:
        """IPv4 groups of ``iface`` (joined by sockets)."""
        return iface.groups4

    def reportable(self, group: bytes) -> bool:
        """Every group but 224.0.0.1."""
        return group != ALL_SYSTEMS

    def unsolicited_interval(self, iface: Interface, now: float) -> float:
        """1 s (IGMPv3), 10 s in v1/v2 compatibility mode."""
        return V3_UNSOLICITED_INTERVAL if self.version(iface, now) == 3 else \
            V2_UNSOLICITED_INTERVAL

    def version(self, iface: Interface, now: float) -> int:
        """Compatibility mode of ``iface`` at ``now``: 3, or 2 / 1 while an older querier is
        present."""
        older = self._older.get(iface.index)
        if not older:
            return 3
        for v, until in list(older.items()):
            if until <= now:
                del older[v]
        return min(older, default=3)

    def send_report(self, iface: Interface, records: Records, now: float) -> None:
        """Report ``records``: one IGMPv3 report, or v1/v2 reports and leaves (compat mode)."""
        if not records or not iface.up or iface.loopback:
            return
        version = self.version(iface, now)
        counters = self.core.counters
        if version == 3:
            body = bytearray(struct.pack("!BBHHH", V3_REPORT, 0, 0, 0, len(records)) + b"".join(
                struct.pack("!BBH", kind, 0, 0) + group for kind, group in records))
            struct.pack_into("!H", body, 2, checksum(body))
            self._send(iface, V3_ROUTERS, bytes(body), now)
            counters["igmp.tx_report"] += 1
            counters["igmp.tx_v3_report"] += 1
            return
        for kind, group in records:
            if kind == CHANGE_TO_INCLUDE:
                if version == 1:
                    continue  # IGMPv1 has no leave message
                self._send(iface, ALL_ROUTERS, _simple(V2_LEAVE, group), now)
                counters["igmp.tx_leave"] += 1
            else:
                kind_v = V2_REPORT if version == 2 else V1_REPORT
                self._send(iface, group, _simple(kind_v, group), now)
                counters["igmp.tx_report"] += 1
                counters[f"igmp.tx_v{version}_report"] += 1

    def _send(self, iface: Interface, dst: bytes, body: bytes, now: float) -> None:
        ip4 = self.core.ip4
        src = iface.addrs4[0].addr if iface.addrs4 else b"\0\0\0\0"
        ip4.ident = (ip4.ident + 1) & 0xFFFF
        hdr = bytearray(_IP_RA.pack(0x46, TOS, 24 + len(body), ip4.ident, DF, TTL, PROTO_IGMP, 0,
                                    src, dst, ROUTER_ALERT))
        struct.pack_into("!H", hdr, 10, checksum(hdr))
        self.core.counters["ipv4.tx"] += 1
        ip4.send_packet(iface, dst, bytes(hdr) + body, now)

    # -- input ------------------------------------------------------------------------------
    def input(self, iface: Interface, src: bytes, dst: bytes, msg: memoryview,
              now: float, *, trusted: bool | None = None) -> None:
        """Process a received IGMP message (queries; others' reports count and suppress).

        ``trusted``: skip the checksum check (default: the interface's ``rx_csum_trusted``).
        """
        counters = self.core.counters
        n = len(msg)
        if n < 8:
            raise Drop("igmp.rx_malformed")
        if not (iface.rx_csum_trusted if trusted is None else trusted) and not verify(msg):
            raise Drop("igmp.rx_bad_checksum")
        kind = msg[0]
        counters["igmp.rx"] += 1
        group = bytes(msg[4:8])
        if kind == QUERY:
            if n == 8:  # v1 (max resp 0) or v2 query
                version = 2 if msg[1] else 1
                max_delay = msg[1] / 10.0 if version == 2 else 10.0
                self._older.setdefault(iface.index, {})[version] = now + OLDER_QUERIER_TIMEOUT
            elif n >= 12:
                version = 3
                nsrc = (msg[10] << 8) | msg[11]
                if n < 12 + 4 * nsrc:
                    raise Drop("igmp.rx_malformed")
                max_delay = igmp_time(msg[1])
            else:
                raise Drop("igmp.rx_malformed")  # RFC 3376 7.1: 9-11 byte queries are ignored
            counters[f"igmp.rx_v{version}_query"] += 1
            if group == b"\0\0\0\0":
                if self.version(iface, now) == 3:
                    self.query(iface, None, max_delay, now)  # one report for every group
                else:  # RFC 2236 3: a timer per group (each one can be suppressed)
                    for g in list(iface.groups4):
                        if self.reportable(g):
                            self.query(iface, g, max_delay, now)
            elif group[0] & 0xF0 == 0xE0:
                # a group-and-source-specific query is answered as group-specific: with
                # EXCLUDE {} every source is wanted
                self.query(iface, group, max_delay, now)
            else:
                raise Drop("igmp.rx_malformed")
        elif kind in (V1_REPORT, V2_REPORT):
            counters["igmp.rx_report"] += 1
            if self.version(iface, now) < 3:
                self.suppress(iface, group)
        elif kind == V3_REPORT:
            counters["igmp.rx_report"] += 1
        elif kind == V2_LEAVE:
            counters["igmp.rx_leave"] += 1
        else:
            counters["igmp.rx_other"] += 1


def _simple(kind: int, group: bytes) -> bytes:
    body = bytearray(struct.pack("!BBH4s", kind, 0, 0, group))
    struct.pack_into("!H", body, 2, checksum(body))
    return bytes(body)
