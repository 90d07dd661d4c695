"""IGMP against a snooping Linux bridge: the group an ioth socket joins shows up in the bridge's
multicast database on the ioth stack's port and goes away after the socket leaves.

A bridge in a namespace (``mcast_snooping 1 mcast_querier 1``, IGMPv2 or IGMPv3 querier, short
last-member interval) has the ioth stack's TAP as a port.  An ioth UDP socket joins a group with
IP_ADD_MEMBERSHIP: ``bridge mdb show`` lists it on the TAP port; after IP_DROP_MEMBERSHIP the
bridge's last-member queries go unanswered and the entry disappears.  tcpdump captures the
exchange on the port; tshark decodes our reports without malformed or bad-checksum warnings.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

import ioth
import ioth.sockets
from tests.support.peers import (
    Netns,
    netns,
    require_root,
    require_tools,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.interop

GROUP = "239.12.34.56"


def mdb_ports(ns: Netns, group: str) -> list[str]:
    """Ports the bridge's multicast database lists for ``group``."""
    out = ns.run(["bridge", "mdb", "show"]).stdout
    ports = []
    for line in out.splitlines():
        words = line.split()
        if group in words and "port" in words:
            ports.append(words[words.index("port") + 1])
    return ports


@pytest.mark.parametrize("version", [2, 3])
def test_bridge_snooping_lists_and_drops_the_ioth_group(version: int, tmp_path: Path) -> None:
    require_root()
    require_tools("ip", "bridge", "tcpdump", "tshark")
    with netns("igm") as ns:
        tap = "ig" + secrets.token_hex(4)
        stack = ioth.Stack(f"tap://{tap}[netns={ns.name}/up]", "eth,ip=192.0.2.2/24")
        cap = tmp_path / "igmp.pcap"
        dump: subprocess.Popen[bytes] | None = None
        try:
            ns.sh(
                "ip link add br0 type bridge mcast_snooping 1 mcast_querier 1 "
                f"mcast_igmp_version {version} mcast_last_member_interval 20 "
                "mcast_last_member_count 2 mcast_query_response_interval 100 "
                f"mcast_startup_query_interval 100; ip link set {tap} master br0; "
                f"ip link set {tap} up; ip addr add 192.0.2.1/24 dev br0; ip link set br0 up")
            dump = ns.popen(["tcpdump", "-U", "--immediate-mode", "-n", "-i", tap,
                             "-w", str(cap), "igmp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            assert dump.stderr is not None
            line = dump.stderr.readline()  # "listening on ..." once it captures
            assert b"listening" in line, line
            with ioth.use(stack):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                try:
                    sock.bind(("", 5000))
                    mreq = struct.pack("4s4s", ipaddress.IPv4Address(GROUP).packed,
                                       ipaddress.IPv4Address("192.0.2.2").packed)
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
                    wait_for(lambda: tap in mdb_ports(ns, GROUP), timeout=10,
                             what="the group on the TAP port in bridge mdb show")
                    assert [g["users"] for g in stack.groups() if g["group"] == GROUP] == [1]
                    if version == 2:  # the bridge's IGMPv2 queries put us in v2 mode
                        iface = next(i for i in stack.core.ifaces.values() if not i.loopback)
                        wait_for(lambda: stack.core.igmp.version(iface, stack.now()) == 2,
                                 timeout=10, what="IGMPv2 compatibility mode")
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_DROP_MEMBERSHIP, mreq)
                    wait_for(lambda: tap not in mdb_ports(ns, GROUP), timeout=10,
                             what="the group gone from bridge mdb show")
                finally:
                    sock.close()
        finally:
            if dump is not None:
                time.sleep(0.3)  # the last packets reach the capture file
                stop_process(dump)
            stack.close()
    counters = stack.counters()["igmp"]
    assert counters["tx_report"] >= 1 and counters.get("rx_malformed", 0) == 0
    if version == 2:
        assert counters["tx_leave"] >= 1
    # tshark decodes what we sent: IGMP of the right version, no malformed / checksum warnings
    res = subprocess.run(
        ["tshark", "-r", str(cap), "-n", "-V", "-o", "ip.check_checksum:TRUE",
         "-Y", "ip.src == 192.0.2.2"], capture_output=True, text=True, timeout=30)
    out = res.stdout
    assert "Internet Group Management Protocol" in out, (res.stderr, cap.stat().st_size)
    assert "Router Alert" in out
    assert "Malformed" not in out and "[Checksum Status: Bad]" not in out
    assert "Expert Info (Warning" not in out and "Expert Info (Error" not in out
    assert "Membership Report" in out
    if version == 2:
        assert "Leave Group" in out
    else:
        assert "Change To Include Mode" in out or "Change to Include Mode" in out, out[-3000:]
