"""vxlan:// plug: two in-process VTEPs in two namespaces joined by a veth pair."""

from __future__ import annotations

import socket
import time

from ioth.net.plugs.vxlan import VxlanPlug
from ioth.net.registry import open_plug
from tests.net import nsutil
from tests.net.test_udp import recv_some
from tests.net.test_vxvde import BCAST, MAC_A, MAC_B, frame


def test_vxlan_pair_learning_and_vni_filter(make_netns: object) -> None:
    ns1, ns2 = make_netns(), make_netns()  # type: ignore[operator]
    nsutil.veth_between(ns1, ns2)
    with nsutil.inside(ns1.name):
        a = open_plug("vxlan://239.1.2.4/vni=42")
        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with nsutil.inside(ns2.name):
        b = open_plug("vxlan://239.1.2.4/vni=42")
    assert isinstance(a, VxlanPlug) and isinstance(b, VxlanPlug)
    try:
        assert a.send(frame(BCAST, MAC_A, 1)) and a.multicast_tx == 1
        assert recv_some(b) == [frame(BCAST, MAC_A, 1)]
        # b learned A at 198.18.0.1:4789 and answers unicast
        assert b.table.lookup(MAC_A, time.monotonic()) == ("198.18.0.1", 4789)
        assert b.send(frame(MAC_A, MAC_B, 2)) and b.unicast_tx == 1
        assert recv_some(a) == [frame(MAC_A, MAC_B, 2)]
        # a datagram from another port is learned at port 4789; other VNIs and flags dropped
        raw.sendto(bytes.fromhex("0800000000002b00") + frame(MAC_A, MAC_B, 3),
                   ("198.18.0.2", 4789))
        raw.sendto(bytes.fromhex("0800000000002a00") + frame(MAC_A, MAC_B, 4),
                   ("198.18.0.2", 4789))
        raw.sendto(bytes.fromhex("0000000000002a00") + frame(MAC_A, MAC_B, 5),
                   ("198.18.0.2", 4789))
        got = recv_some(b, 1, 1.0)
        recv_some(b, 1, 0.2)
        assert got == [frame(MAC_A, MAC_B, 4)]
        assert b.counters.rx_dropped == 2
    finally:
        a.close()
        b.close()
        raw.close()


def test_vxlan_ipv6_pair(make_netns: object) -> None:
    ns1, ns2 = make_netns(), make_netns()  # type: ignore[operator]
    nsutil.veth_between(ns1, ns2)
    ns1.sh("ip -6 addr add fd00:5::1/64 dev va nodad")
    ns2.sh("ip -6 addr add fd00:5::2/64 dev vb nodad")
    with nsutil.inside(ns1.name):
        a = open_plug("vxlan://[ff05::4]/vni=7/if=va")
    with nsutil.inside(ns2.name):
        b = open_plug("vxlan://ff05::4/v6/vni=7/if=vb")
    assert isinstance(a, VxlanPlug) and isinstance(b, VxlanPlug)
    try:
        assert a.send(frame(BCAST, MAC_A, 1))
        assert recv_some(b) == [frame(BCAST, MAC_A, 1)]
        assert b.send(frame(MAC_A, MAC_B, 2)) and b.unicast_tx == 1
        assert recv_some(a) == [frame(MAC_A, MAC_B, 2)]
        learned = b.table.lookup(MAC_A, time.monotonic())
        assert learned is not None and learned[1] == 4789
    finally:
        a.close()
        b.close()
