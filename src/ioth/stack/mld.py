"""MLDv2 (RFC 3810) listener side, and the host-side group logic it shares with IGMPv3.

Reports go to ff02::16 with hop limit 1 and a Router Alert hop-by-hop option.  A join sends a
state-change report (CHANGE_TO_EXCLUDE, no sources), a leave a CHANGE_TO_INCLUDE one, each
repeated once more after a random delay within the unsolicited report interval (robustness 2); a
query is answered with current-state reports (MODE_IS_EXCLUDE) after a random delay within its
maximum response time (one answer pending per group: a later query never postpones it).
The link-scope all-nodes group is never reported.

:class:`GroupListener` holds that logic for both protocols (IGMPv3, RFC 3376, has the same
record types and timers); :class:`Mld` and :class:`ioth.stack.igmp.Igmp` add their packets.
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

Records = list[tuple[int, bytes]]
"""Group records of a report: (record type, group) pairs, no sources (EXCLUDE {} / INCLUDE {})."""


class GroupListener:
    """Host side of a multicast membership protocol on every interface of one stack.

    Subclasses say where the joined groups live (:meth:`groups`), which groups are reported,
    whether an interface can send yet (:meth:`ready`), and build the packets
    (:meth:`send_report`).  Timers go through the core (sans-IO); they never get cancelled, a
    callback checks that it is still the one expected.
    """

    name = "group"
    """Counter prefix."""

    def __init__(self, core: StackCore) -> None:
        self.core = core
        self._pending: dict[tuple[int, bytes], float] = {}  # (ifindex, group or zero) -> when

    # -- protocol hooks -------------------------------------------------------------------
    def groups(self, iface: Interface) -> dict[bytes, int]:
        """The joined groups of ``iface`` with their reference counts."""
        raise NotImplementedError

    def reportable(self, group: bytes) -> bool:
        """True for groups that are announced (not the all-nodes / all-systems group)."""
        raise NotImplementedError

    def ready(self, iface: Interface) -> bool:
        """``iface`` has what it needs to send reports (MLD: a link-local address)."""
        return True

    def groups_changed(self, iface: Interface) -> None:
        """The set of joined groups of ``iface`` changed (receive filters)."""

    def unsolicited_interval(self, iface: Interface, now: float) -> float:
        """Upper bound of the delay before repeating a state-change report."""
        return UNSOLICITED_INTERVAL

    def send_report(self, iface: Interface, records: Records, now: float) -> None:
        """Send ``records`` (a state-change or current-state report)."""
        raise NotImplementedError

    # -- shared logic ---------------------------------------------------------------------
    def join(self, iface: Interface, group: bytes, now: float) -> None:
        """Join ``group`` on ``iface`` (reference counted); announce it when it is new."""
        groups = self.groups(iface)
        count = groups.get(group, 0)
        groups[group] = count + 1
        if count == 0:
            self.groups_changed(iface)
            self._state_change(iface, group, CHANGE_TO_EXCLUDE, now)

    def leave(self, iface: Interface, group: bytes, now: float) -> None:
        """Leave ``group`` (reference counted); announce it when the last member leaves."""
        groups = self.groups(iface)
        count = groups.get(group, 0)
        if count <= 1:
            groups.pop(group, None)
            self._pending.pop((iface.index, group), None)
            self.groups_changed(iface)
            if count:
                self._state_change(iface, group, CHANGE_TO_INCLUDE, now)
        else:
            groups[group] = count - 1

    def link_up(self, iface: Interface, now: float) -> None:
        """``iface`` came up: announce the groups joined while it was down."""
        for group in list(self.groups(iface)):
            self._state_change(iface, group, CHANGE_TO_EXCLUDE, now)

    def _state_change(self, iface: Interface, group: bytes, kind: int, now: float) -> None:
        # before an interface is ready, report_all() (MLD: after DAD) covers its groups
        if iface.up and not iface.loopback and self.reportable(group) and self.ready(iface):
            self.send_report(iface, [(kind, group)], now)
            delay = self.core.rng.uniform(0, self.unsolicited_interval(iface, now))
            self.core.schedule(now + delay, self._repeat, iface.index, group, kind)

    def _repeat(self, now: float, ifindex: int, group: bytes, kind: int) -> None:
        iface = self.core.ifaces.get(ifindex)
        if iface is None or not iface.up:
            return
        joined = group in self.groups(iface)
        if joined == (kind == CHANGE_TO_EXCLUDE):  # still in the state announced
            self.send_report(iface, [(kind, group)], now)

    def report_all(self, iface: Interface, now: float) -> None:
        """Current-state report of every joined group (after link-up / a general query)."""
        records = [(MODE_IS_EXCLUDE, g) for g in self.groups(iface) if self.reportable(g)]
        for i in range(0, len(records), MAX_RECORDS):
            self.send_report(iface, records[i : i + MAX_RECORDS], now)

    def query(self, iface: Interface, group: bytes | None, max_delay: float, now: float) -> None:
        """A query (``group`` None: general) asking for an answer within ``max_delay`` s."""
        key = (iface.index, group or b"")
        if group is not None and group not in self.groups(iface):
            return
        at = now + self.core.rng.uniform(0, max(max_delay, 0.001))
        pending = self._pending.get(key)
        if pending is not None and pending <= at:
            return  # an earlier answer is already pending (RFC 3376 5.2, RFC 3810 6.2)
        self._pending[key] = at
        self.core.schedule(at, self._answer, iface.index, group, at)

    def suppress(self, iface: Interface, group: bytes) -> None:
        """Another member reported ``group``: drop our pending answer (IGMPv1/v2 only)."""
        if self._pending.pop((iface.index, group), None) is not None:
            self.core.counters[f"{self.name}.suppressed"] += 1

    def _answer(self, now: float, ifindex: int, group: bytes | None, at: float) -> None:
        key = (ifindex, group or b"")
        if self._pending.get(key) != at:
            return  # answered earlier, suppressed, or left
        del self._pending[key]
        iface = self.core.ifaces.get(ifindex)
        if iface is None:
            return
        if group is None:
            self.report_all(iface, now)
        elif group in self.groups(iface) and self.reportable(group):
            self.send_report(iface, [(MODE_IS_EXCLUDE, group)], now)


class Mld(GroupListener):
    """Multicast listener state of one stack."""

    name = "mld"

    def groups(self, iface: Interface) -> dict[bytes, int]:
        """IPv6 groups of ``iface``."""
        return iface.groups6

    def reportable(self, group: bytes) -> bool:
        """Not node-local, not all-nodes."""
        return group != ALL_NODES and group[1] & 0x0F > 1

    def ready(self, iface: Interface) -> bool:
        """Reports need a link-local source."""
        return iface.link_local6() is not None

    def groups_changed(self, iface: Interface) -> None:
        """Receive filter: the 33:33:xx MACs of the joined groups."""
        iface.mcast_macs = {b"\x33\x33" + g[12:] for g in iface.groups6}

    def send_report(self, iface: Interface, records: Records, now: float) -> None:
        """Send one MLDv2 report with ``records`` ((record type, group) pairs)."""
        if not records or not iface.up or iface.loopback:
            return
        from ioth.stack.icmp6 import icmp6_message

        body = struct.pack("!BBHHH", MLDV2_REPORT, 0, 0, 0, len(records)) + b"".join(
            struct.pack("!BBH", kind, 0, 0) + group for kind, group in records)
        src = iface.link_local6() or b"\0" * 16
        try:
            self.core.ip6.output(src, MLDV2_ROUTERS, 58, icmp6_message(src, MLDV2_ROUTERS, body),
                                 now, hop_limit=1, ifindex=iface.index, router_alert=True)
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
        group = bytes(msg[8:24])
        self.query(iface, None if group == b"\0" * 16 else group, code / 1000.0, now)
