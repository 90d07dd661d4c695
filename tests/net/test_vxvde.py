"""vxvde:// plug: learning table (pure) and in-process endpoints inside a test namespace."""

from __future__ import annotations

import pytest

from ioth.errors import VNLError
from ioth.net.plugs.vxvde import MacTable, VxvdePlug, vx_header
from ioth.net.registry import open_plug
from tests.net import nsutil
from tests.net.test_udp import recv_some

BCAST = bytes.fromhex("ffffffffffff")
MAC_A = bytes.fromhex("020000000a0a")
MAC_B = bytes.fromhex("020000000b0b")


def frame(dst: bytes, src: bytes, tag: int) -> bytes:
    return dst + src + b"\x08\x00" + bytes([tag]) * 50


def test_header_golden() -> None:
    assert vx_header(1) == bytes.fromhex("0800000000000100")
    assert vx_header(0xABCDEF) == bytes.fromhex("08000000abcdef00")


def test_mac_table_expiry_bound_and_forget() -> None:
    t = MacTable(size=2, expire=128)
    t.learn(MAC_A, ("198.18.0.1", 1000), now=0)
    assert t.lookup(MAC_A, 128) == ("198.18.0.1", 1000)
    assert t.lookup(MAC_A, 128.5) is None  # expired
    t.learn(MAC_A, ("x", 1), 200)
    t.learn(MAC_B, ("y", 2), 201)
    t.learn(b"\x02" * 6, ("z", 3), 202)  # full: the oldest (A) goes
    assert t.evictions == 1 and t.lookup(MAC_A, 203) is None and len(t) == 2
    assert t.forget_addr(("y", 2)) == 1 and t.lookup(MAC_B, 203) is None


@pytest.mark.parametrize("bad", ["vxvde://198.18.0.1", "vxvde://239.1.2.3/if=nosuchif0",
                                 "vxvde://239.1.2.3/colour=red"])
def test_bad_vnl(bad: str) -> None:
    with pytest.raises(VNLError):
        open_plug(bad)


def test_broadcast_learning_echo_and_close(make_netns: object) -> None:
    ns = make_netns()  # type: ignore[operator]
    nsutil.multicast_ready(ns)
    with nsutil.inside(ns.name):
        a = open_plug("vxvde://239.1.2.3")
        b = open_plug("vxvde://239.1.2.3")
        other_vni = open_plug("vxvde://239.1.2.3/vni=2")
    assert isinstance(a, VxvdePlug) and isinstance(b, VxvdePlug)
    try:
        assert a.send(frame(BCAST, MAC_A, 1))
        assert recv_some(b) == [frame(BCAST, MAC_A, 1)]
        assert a.multicast_tx == 1 and a.unicast_tx == 0
        # b learned A: its reply goes unicast
        assert b.send(frame(MAC_A, MAC_B, 2))
        assert b.unicast_tx == 1 and b.multicast_tx == 0
        assert recv_some(a) == [frame(MAC_A, MAC_B, 2)]
        # a never got its own broadcast back
        recv_some(a, 1, 0.2)
        assert a.echo_dropped == 1 and a.counters.rx_frames == 1
        # a learned B from the unicast frame
        assert a.send(frame(MAC_B, MAC_A, 3))
        assert a.unicast_tx == 1
        assert recv_some(b) == [frame(MAC_B, MAC_A, 3)]
        # other VNI: frames are read and dropped
        recv_some(other_vni, 1, 0.3)
        assert other_vni.counters.rx_frames == 0 and other_vni.counters.rx_dropped >= 1
        # close: b forgets a's MAC and goes back to multicast
        a.close()
        recv_some(b, 1, 0.3)
        assert b.closes_received == 1 and len(b.table) == 0
        assert b.send(frame(MAC_A, MAC_B, 4))
        assert b.multicast_tx == 1
    finally:
        for p in (a, b, other_vni):
            p.close()


def test_ipv6_group(make_netns: object) -> None:
    ns = make_netns()  # type: ignore[operator]
    nsutil.multicast_ready(ns)
    with nsutil.inside(ns.name):
        a = open_plug("vxvde://[ff05:56de::7]/if=va")
        b = open_plug("vxvde://ff05:56de::7/v6/if=va")
    try:
        assert a.send(frame(BCAST, MAC_A, 1))
        assert recv_some(b) == [frame(BCAST, MAC_A, 1)]
        assert b.send(frame(MAC_A, MAC_B, 2)) and b.unicast_tx == 1
        assert recv_some(a) == [frame(MAC_A, MAC_B, 2)]
        assert a.echo_dropped == 1
    finally:
        a.close()
        b.close()


def test_jumbo_mtu(make_netns: object) -> None:
    ns = make_netns()  # type: ignore[operator]
    nsutil.multicast_ready(ns)
    with nsutil.inside(ns.name):
        a = open_plug("vxvde://239.1.2.9/mtu=9000")
        b = open_plug("vxvde://239.1.2.9/mtu=9000")
    try:
        big = BCAST + MAC_A + b"\x08\x00" + bytes(9000)
        assert a.send(big)
        assert recv_some(b) == [big]
    finally:
        a.close()
        b.close()


def test_random_datagrams_are_counted_never_raise(make_netns: object) -> None:
    import os
    import socket

    ns = make_netns()  # type: ignore[operator]
    nsutil.multicast_ready(ns)
    with nsutil.inside(ns.name):
        plug = open_plug("vxvde://239.1.2.8")
        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    assert isinstance(plug, VxvdePlug)
    try:
        good = vx_header(1) + frame(BCAST, MAC_B, 1)
        junk = [os.urandom(n) for n in (0, 1, 7, 9, 21, 22, 60, 1500)]
        junk += [vx_header(2) + frame(BCAST, MAC_B, 2), b"\x00" + good[1:]]
        for d in [*junk, good]:
            raw.sendto(d, ("239.1.2.8", 14789))
            raw.sendto(d, ("198.18.5.1", plug.uniport))
        got = recv_some(plug, 2, 1.0)
        recv_some(plug, 1, 0.2)
        assert got == [frame(BCAST, MAC_B, 1)] * 2
        c = plug.counters
        assert c.rx_frames == 2 and c.rx_errors + c.rx_dropped == 2 * len(junk)
    finally:
        plug.close()
        raw.close()


def test_grp_and_rcvbuf_options(make_netns: object) -> None:
    from ioth.net.plugs.vxvde import group_id, resolve_group, size_option
    from ioth.net.registry import parse_vnl

    vnl = parse_vnl("vxvde://239.0.0.0/grp=66051/rcvbuf=2M")
    assert size_option(vnl, "rcvbuf") == 2 << 20
    gid = group_id(vnl)
    assert gid == 66051
    assert resolve_group(vnl, 14789, gid)[1][0] == "239.1.2.3"
    with pytest.raises(VNLError, match="no group"):
        open_plug("vxvde://239.0.0.0/grp=no-such-group-here")
    ns = make_netns()  # type: ignore[operator]
    nsutil.multicast_ready(ns)
    with nsutil.inside(ns.name):
        plug = open_plug("vxvde://239.0.0.0/grp=66051/rcvbuf=1M")
    try:
        assert isinstance(plug, VxvdePlug)
        assert plug.vni == 66051 and plug.group[0] == "239.1.2.3"
    finally:
        plug.close()
