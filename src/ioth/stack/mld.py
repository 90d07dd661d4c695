"""MLDv2 (RFC 3810) listener side: reports for joined groups (solicited-node groups included).

Reports go to ff02::16 with hop limit 1 and a Router Alert hop-by-hop option.  A join sends a
state-change report (CHANGE_TO_EXCLUDE, no sources) twice (robustness 2); a query is answered with
current-state reports (MODE_IS_EXCLUDE) after a random delay within its maximum response time.
The link-scope all-nodes group is never reported.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ioth.stack.errors import Drop
from ioth.stack.interface import Interface

if TYPE_CHECKING:
    from ioth.stack.core import StackCore

MLDV2_REPORT = 143
MLDV2_ROUTERS = bytes.fromhex("ff020000000000000000000000000016")
ALL_NODES = bytes.fromhex("ff020000000000000000000000000001")
MODE_IS_EXCLUDE = 2
CHANGE_TO_INCLUDE = 3
CHANGE_TO_EXCLUDE = 4
UNSOLICITED_INTERVAL = 1.0
MAX_RECORDS = 64


class Mld:
    """Multicast listener state of one stack."""

    def __init__(self, core: StackCore) -> None:
        self.core = core

    def _reportable(self, group: bytes) -> bool:
        return group != ALL_NODES and group[1] & 0x0F > 1  # not node-local, not all-nodes

    def join(self, iface: Interface, group: bytes, now: float) -> None:
        """Join ``group`` on ``iface``; announce it when it is new."""
        count = iface.groups6.get(group, 0)
        iface.groups6[group] = count + 1
        iface.mcast_macs.add(b"\x33\x33" + group[12:])
        # before the link-local address is ready, report_all() (after its DAD) covers the group
        if (count == 0 and iface.up and not iface.loopback and self._reportable(group)
                and iface.link_local6() is not None):
            self.send_report(iface, [(CHANGE_TO_EXCLUDE, group)])
            delay = self.core.rng.uniform(0, UNSOLICITED_INTERVAL)
            self.core.schedule(now + delay, self._repeat, iface.index, group)

    def leave(self, iface: Interface, group: bytes, now: float) -> None:
        """Leave ``group`` (reference counted)."""
        count = iface.groups6.get(group, 0)
        if count <= 1:
            iface.groups6.pop(group, None)
            iface.mcast_macs = {b"\x33\x33" + g[12:] for g in iface.groups6}
            if count and iface.up and self._reportable(group):
                self.send_report(iface, [(CHANGE_TO_INCLUDE, group)])
        else:
            iface.groups6[group] = count - 1

    def _repeat(self, now: float, ifindex: int, group: bytes) -> None:
        iface = self.core.ifaces.get(ifindex)
        if iface is not None and iface.up and group in iface.groups6:
            self.send_report(iface, [(CHANGE_TO_EXCLUDE, group)])

    def report_all(self, iface: Interface, now: float) -> None:
        """Current-state report of every joined group (after link-up / a general query)."""
        records = [(MODE_IS_EXCLUDE, g) for g in iface.groups6 if self._reportable(g)]
        for i in range(0, len(records), MAX_RECORDS):
            self.send_report(iface, records[i : i + MAX_RECORDS])

    def send_report(self, iface: Interface, records: list[tuple[int, bytes]]) -> None:
        """Send one MLDv2 report with ``records`` ((record type, group) pairs)."""
        if not records or not iface.up or iface.loopback:
            return
        from ioth.stack.icmp6 import icmp6_message

        body = struct.pack("!BBHHH", MLDV2_REPORT, 0, 0, 0, len(records)) + b"".join(
            struct.pack("!BBH", kind, 0, 0) + group for kind, group in records)
        src = iface.link_local6() or b"\0" * 16
        try:
            self.core.ip6.output(src, MLDV2_ROUTERS, 58, icmp6_message(src, MLDV2_ROUTERS, body),
                                 0.0, hop_limit=1, ifindex=iface.index, router_alert=True)
            self.core.counters["mld.tx_report"] += 1
        except OSError:
            self.core.counters["mld.tx_failed"] += 1

    def input(self, iface: Interface, icmp_type: int, src: bytes, dst: bytes, msg: memoryview,
              now: float) -> None:
        """Process a query (reports and dones of other listeners are only counted)."""
        counters = self.core.counters
        if icmp_type != 130:
            counters["mld.rx_other"] += 1
            return
        if len(msg) < 24:
            raise Drop("mld.rx_truncated")
        counters["mld.rx_query"] += 1
        code = struct.unpack_from("!H", msg, 4)[0]
        if len(msg) >= 28 and code >= 0x8000:  # MLDv2 floating-point Maximum Response Code
            code = ((code & 0x0FFF) | 0x1000) << (((code >> 12) & 7) + 3)
        max_delay = code / 1000.0
        group = bytes(msg[8:24])
        delay = self.core.rng.uniform(0, max(max_delay, 0.001))
        self.core.schedule(now + delay, self._answer, iface.index, group)

    def _answer(self, now: float, ifindex: int, group: bytes) -> None:
        iface = self.core.ifaces.get(ifindex)
        if iface is None:
            return
        if group == b"\0" * 16:
            self.report_all(iface, now)
        elif group in iface.groups6 and self._reportable(group):
            self.send_report(iface, [(MODE_IS_EXCLUDE, group)])
