"""IGMP host side on a virtual clock: IGMPv3 reports on join/leave, answers to queries within
their maximum response time, IGMPv2/v1 compatibility mode, malformed input (scapy as the
oracle)."""

from __future__ import annotations

import random
import struct
from ipaddress import IPv4Address

from scapy.layers.inet import IP  # type: ignore[import-untyped]
from scapy.layers.l2 import Ether  # type: ignore[import-untyped]

from ioth.stack.core import StackCore
from ioth.stack.igmp import OLDER_QUERIER_TIMEOUT, igmp_time
from ioth.stack.interface import Interface
from ioth.wire.checksum import checksum
from tests.stack.harness import ip

MAC = "02:00:00:00:00:01"
ROUTER = "02:00:00:00:00:fe"
G1, G2 = "239.1.2.3", "239.9.9.9"


def one_stack(seed: int = 7) -> tuple[StackCore, Interface]:
    core = StackCore(random.Random(seed))
    iface = core.add_interface("vde0", bytes.fromhex(MAC.replace(":", "")))
    core.set_up(iface.index, True, 0.0)
    core.add_addr4(iface.index, ip("192.0.2.1"), 24, 0.0)
    iface.txq.clear()
    return core, iface


def advance(core: StackCore, start: float, end: float) -> float:
    """Run the core's timers from ``start`` up to ``end``; returns ``end``."""
    while (when := core.next_deadline()) is not None and when <= end:
        core.poll(max(when, start))
    return end


def igmp_out(iface: Interface) -> list[Ether]:
    """IGMP frames queued on ``iface`` (IPv6 housekeeping left out); the queue is emptied."""
    frames = [Ether(bytes(f)) for f in iface.txq if f[12:14] == b"\x08\x00" and f[23] == 2]
    iface.txq.clear()
    return frames


def check_ip(frame: Ether, dst: str) -> None:
    """RFC 3376 / 2236 IP header of a report: TTL 1, ToS 0xc0, Router Alert, valid checksums."""
    raw = bytes(frame)[14:]
    assert raw[0] == 0x46 and raw[20:24] == b"\x94\x04\x00\x00"  # IHL 6: Router Alert
    assert raw[1] == 0xC0 and raw[8] == 1 and raw[9] == 2
    assert frame[IP].dst == dst and frame[IP].src == "192.0.2.1"
    assert checksum(raw[:24]) == 0 and checksum(raw[24:]) == 0
    mac = ip(dst)
    assert frame[Ether].dst == f"01:00:5e:{mac[1] & 0x7F:02x}:{mac[2]:02x}:{mac[3]:02x}"


def v3_query(group: str, mrcode: int) -> bytes:
    """An IGMPv3 query (built by hand: scapy stacks IGMPv3 query layers oddly)."""
    body = bytearray(struct.pack("!BBH4sBBH", 0x11, mrcode, 0, ip(group), 2, 125, 0))
    struct.pack_into("!H", body, 2, checksum(body))
    return bytes(body)


def igmp(frame: Ether) -> bytes:
    """The IGMP message of a frame sent by the stack (after its 24-byte IP header)."""
    return bytes(frame)[14 + 24:]


def records(frame: Ether) -> list[tuple[int, str]]:
    """(record type, group) of an IGMPv3 report without sources."""
    msg = igmp(frame)
    assert msg[0] == 0x22
    n = struct.unpack_from("!H", msg, 6)[0]
    assert len(msg) == 8 + 8 * n
    return [(msg[8 + 8 * i], str(IPv4Address(msg[12 + 8 * i : 16 + 8 * i]))) for i in range(n)]


def v2_query(group: str, mrcode: int, kind: int = 0x11) -> bytes:
    """An IGMPv1/v2 message (query, or report with ``kind`` 0x16)."""
    body = bytearray(struct.pack("!BBH4s", kind, mrcode, 0, ip(group)))
    struct.pack_into("!H", body, 2, checksum(body))
    return bytes(body)


def query(core: StackCore, iface: Interface, payload: object, now: float,
          dst: str = "224.0.0.1") -> None:
    frame = Ether(src=ROUTER, dst="01:00:5e:00:00:01") / IP(
        src="192.0.2.254", dst=dst, ttl=1, tos=0xC0, proto=2) / payload
    core.input_frame(iface.index, bytes(frame), now)


def test_join_sends_v3_state_change_report_twice_leave_twice() -> None:
    core, iface = one_stack()
    core.igmp.join(iface, ip("224.0.0.1"), 0.0)  # all systems: never reported
    assert igmp_out(iface) == []
    core.igmp.join(iface, ip(G1), 0.0)
    core.igmp.join(iface, ip(G1), 0.0)  # second member: nothing new
    (first,) = igmp_out(iface)
    check_ip(first, "224.0.0.22")
    assert records(first) == [(4, G1)]  # CHANGE_TO_EXCLUDE
    advance(core, 0.0, 1.0)  # the repeat comes within the unsolicited report interval (1 s)
    (again,) = igmp_out(iface)
    assert records(again) == [(4, G1)]
    core.igmp.leave(iface, ip(G1), 5.0)
    assert igmp_out(iface) == []  # one member left
    core.igmp.leave(iface, ip(G1), 5.0)
    advance(core, 5.0, 6.0)
    leaves = igmp_out(iface)
    assert [records(f) for f in leaves] == [[(3, G1)], [(3, G1)]]  # CHANGE_TO_INCLUDE
    assert core.counters["igmp.tx_report"] == 4 and ip(G1) not in iface.groups4


def test_general_and_group_specific_v3_queries_are_answered_once_within_max_resp() -> None:
    core, iface = one_stack()
    core.igmp.join(iface, ip(G1), 0.0)
    core.igmp.join(iface, ip(G2), 0.0)
    advance(core, 0.0, 2.0)
    igmp_out(iface)
    assert igmp_time(20) == 2.0 and igmp_time(0x8F) == (0x1F << 3) / 10.0
    general = v3_query("0.0.0.0", 20)
    query(core, iface, general, 10.0)
    query(core, iface, general, 10.5)  # a pending earlier answer is not repeated
    assert igmp_out(iface) == []  # randomised delay, not at once
    advance(core, 10.0, 12.6)
    (answer,) = igmp_out(iface)
    check_ip(answer, "224.0.0.22")
    assert sorted(records(answer)) == [(2, G1), (2, G2)]  # MODE_IS_EXCLUDE
    query(core, iface, v3_query("239.7.7.7", 10), 20.0,
          dst="239.7.7.7")  # not joined: not even delivered
    query(core, iface, v3_query(G2, 10), 20.0, dst=G2)
    advance(core, 20.0, 21.1)
    (specific,) = igmp_out(iface)
    assert records(specific) == [(2, G2)]
    assert core.counters["igmp.rx_v3_query"] == 3


def test_v2_querier_switches_to_v2_reports_leave_and_suppression_then_back() -> None:
    core, iface = one_stack()
    core.igmp.join(iface, ip(G1), 0.0)
    advance(core, 0.0, 2.0)
    igmp_out(iface)
    query(core, iface, v2_query("0.0.0.0", 50), 10.0)
    assert core.igmp.version(iface, 10.0) == 2
    advance(core, 10.0, 15.1)
    (report,) = igmp_out(iface)
    check_ip(report, G1)  # an IGMPv2 report goes to the group itself
    assert igmp(report) == v2_query(G1, 0, 0x16)
    # another member's report of the same group suppresses our pending answer
    query(core, iface, v2_query("0.0.0.0", 100), 20.0)
    other = Ether(src="02:00:00:00:00:33", dst="01:00:5e:01:02:03") / IP(
        src="192.0.2.33", dst=G1, ttl=1, proto=2) / v2_query(G1, 0, 0x16)
    core.input_frame(iface.index, bytes(other), 20.001)
    advance(core, 20.0, 31.0)
    assert igmp_out(iface) == [] and core.counters["igmp.suppressed"] == 1
    core.igmp.join(iface, ip(G2), 40.0)
    (v2join,) = igmp_out(iface)
    assert igmp(v2join) == v2_query(G2, 0, 0x16) and v2join[IP].dst == G2
    core.igmp.leave(iface, ip(G1), 41.0)
    leave = igmp_out(iface)[0]
    check_ip(leave, "224.0.0.2")
    assert igmp(leave) == v2_query(G1, 0, 0x17)
    assert core.counters["igmp.tx_leave"] == 1
    # the older-version querier present timer runs out: IGMPv3 again
    later = 10.0 + OLDER_QUERIER_TIMEOUT + 60.0
    advance(core, 41.0, later)
    igmp_out(iface)
    assert core.igmp.version(iface, later) == 3
    core.igmp.leave(iface, ip(G2), later)
    (v3leave,) = igmp_out(iface)
    assert records(v3leave) == [(3, G2)]


def test_v1_querier_gives_v1_reports_and_no_leave() -> None:
    core, iface = one_stack()
    core.igmp.join(iface, ip(G1), 0.0)
    advance(core, 0.0, 2.0)
    igmp_out(iface)
    query(core, iface, v2_query("0.0.0.0", 0), 10.0)
    advance(core, 10.0, 20.1)  # IGMPv1: 10 s maximum response time
    (report,) = igmp_out(iface)
    assert igmp(report) == v2_query(G1, 0, 0x12) and report[IP].dst == G1
    core.igmp.leave(iface, ip(G1), 21.0)
    advance(core, 21.0, 40.0)
    assert igmp_out(iface) == []


def test_malformed_and_bad_checksum_are_counted_and_dropped() -> None:
    core, iface = one_stack()
    core.igmp.join(iface, ip(G1), 0.0)
    advance(core, 0.0, 2.0)
    igmp_out(iface)
    bad = bytearray(v2_query("0.0.0.0", 50))
    bad[2] ^= 0xFF
    query(core, iface, bytes(bad), 3.0)
    nine = bytearray(v2_query("0.0.0.0", 50) + b"\0")
    nine[2:4] = b"\0\0"
    nine[2:4] = checksum(bytes(nine)).to_bytes(2, "big")
    query(core, iface, bytes(nine), 3.0)
    query(core, iface, b"\x11\x00", 3.0)
    advance(core, 3.0, 20.0)
    assert igmp_out(iface) == []
    assert core.counters["igmp.rx_bad_checksum"] == 1
    assert core.counters["igmp.rx_malformed"] == 2
    assert core.igmp.version(iface, 20.0) == 3  # nothing was taken for a v2 query



def test_groups_joined_while_down_are_announced_at_link_up() -> None:
    core, iface = one_stack()
    core.set_up(iface.index, False, 0.0)
    core.igmp.join(iface, ip(G1), 0.0)
    assert igmp_out(iface) == []
    core.set_up(iface.index, True, 1.0)
    (report,) = igmp_out(iface)
    assert records(report) == [(4, G1)]
