"""The sans-IO switch engine on a virtual clock."""

from __future__ import annotations

import errno
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ioth.net.switch.core import (
    DEFAULT_MAX_FRAME,
    MAX_FRAME,
    SwitchConfigError,
    SwitchCore,
)

A = bytes.fromhex("020000000001")
B = bytes.fromhex("020000000002")
C = bytes.fromhex("020000000003")
BCAST = b"\xff" * 6
MCAST = bytes.fromhex("01005e000001")
IPV4 = b"\x08\x00"


def eth(dst: bytes, src: bytes, payload: bytes = b"p" * 46, etype: bytes = IPV4) -> bytes:
    return dst + src + etype + payload


def tagged(dst: bytes, src: bytes, vid: int, payload: bytes = b"p" * 46, pcp: int = 0) -> bytes:
    tci = (pcp << 13) | vid
    return dst + src + b"\x81\x00" + tci.to_bytes(2, "big") + IPV4 + payload


def untag(frame: bytes) -> bytes:
    return frame[:12] + frame[16:]


def switch(nports: int = 4, **kw: object) -> SwitchCore:
    sw = SwitchCore(**kw)  # type: ignore[arg-type]
    for n in range(1, nports + 1):
        sw.add_port(n)
    return sw


def ports(out: list[tuple[int, bytes]]) -> list[int]:
    return sorted(p for p, _ in out)


def test_unknown_destination_floods_then_learns() -> None:
    sw = switch()
    f = eth(B, A)
    out = sw.forward(1, f, 0.0)
    assert ports(out) == [2, 3, 4]
    assert all(frame == f for _, frame in out)
    assert sw.lookup(A, 0, 0.0) == 1
    # B answers: A is known, so it goes to port 1 only, and B is learnt on port 2
    assert sw.forward(2, eth(A, B), 1.0) == [(1, eth(A, B))]
    assert sw.forward(1, f, 2.0) == [(2, f)]
    assert sw.counters.learned == 2
    assert sw.counters.unicast == 2
    assert sw.counters.flooded == 1


def test_broadcast_and_multicast_flood_and_are_not_learnt_as_sources() -> None:
    sw = switch()
    assert ports(sw.forward(1, eth(BCAST, A), 0.0)) == [2, 3, 4]
    assert ports(sw.forward(1, eth(MCAST, A), 0.0)) == [2, 3, 4]
    # a multicast source address is never learnt
    sw.forward(2, eth(BCAST, MCAST), 0.0)
    assert sw.lookup(MCAST, 0, 0.0) is None
    assert ports(sw.forward(1, eth(MCAST, A), 0.0)) == [2, 3, 4]


def test_never_sent_back_to_ingress_port() -> None:
    sw = switch()
    sw.forward(1, eth(BCAST, A), 0.0)
    sw.forward(1, eth(BCAST, B), 0.0)  # A and B both on port 1
    assert sw.forward(1, eth(B, A), 0.0) == []
    assert sw.counters.filtered == 1


def test_station_moves_to_another_port() -> None:
    sw = switch()
    sw.forward(1, eth(BCAST, A), 0.0)
    sw.forward(3, eth(BCAST, A), 1.0)
    assert sw.lookup(A, 0, 1.0) == 3
    assert sw.counters.moved == 1
    assert ports(sw.forward(2, eth(A, B), 1.0)) == [3]


def test_ageing_on_a_virtual_clock() -> None:
    sw = switch(ageing=10)
    sw.forward(1, eth(BCAST, A), 0.0)
    assert ports(sw.forward(2, eth(A, B), 10.0)) == [1]
    # B was refreshed at 10, A was last seen at 0 -> A expired at 20.5
    assert ports(sw.forward(2, eth(A, B), 20.5)) == [1, 3, 4]
    assert sw.lookup(B, 0, 20.5) == 2
    assert sw.expire(31.0) == 2
    assert sw.table_entries == 0
    assert sw.counters.expired == 2
    sw.set_ageing(100)
    assert sw.ageing == 100


def test_default_ageing_is_120_seconds() -> None:
    sw = switch()
    sw.forward(1, eth(BCAST, A), 0.0)
    assert sw.lookup(A, 0, 120.0) == 1
    assert sw.lookup(A, 0, 120.5) is None


def test_table_is_bounded_and_counts_what_it_could_not_learn() -> None:
    sw = switch(table_size=3, ageing=5)
    macs = [bytes([2, 0, 0, 0, 1, i]) for i in range(10)]
    for mac in macs:
        sw.forward(1, eth(BCAST, mac), 0.0)
    assert sw.table_entries == 3
    assert sw.counters.table_full == 7
    assert sw.lookup(macs[0], 0, 0.0) == 1
    assert sw.lookup(macs[5], 0, 0.0) is None
    # once the old entries have expired the table makes room again
    sw.forward(2, eth(BCAST, macs[9]), 10.0)
    assert sw.lookup(macs[9], 0, 10.0) == 2
    assert sw.table_entries == 1


def test_hub_floods_everything_unchanged() -> None:
    sw = switch(hub=True)
    sw.forward(2, eth(BCAST, B), 0.0)
    f = eth(B, A)
    out = sw.forward(1, f, 0.0)
    assert ports(out) == [2, 3, 4]
    t = tagged(B, A, 7)
    assert ports(sw.forward(1, t, 0.0)) == [2, 3, 4]
    assert all(frame == t for _, frame in sw.forward(1, t, 0.0))


def test_runt_frames_are_dropped_and_counted() -> None:
    sw = switch()
    assert sw.forward(1, b"\x00" * 13, 0.0) == []
    assert sw.forward(1, BCAST + A + b"\x81\x00\x00", 0.0) == []
    assert sw.ports[1].counters.drop_runt == 2
    assert sw.ports[1].counters.rx_frames == 2


def test_unknown_ingress_port_is_counted() -> None:
    sw = switch()
    assert sw.forward(9, eth(BCAST, A), 0.0) == []
    assert sw.counters.unknown_port == 1


def test_counters_per_port() -> None:
    sw = switch(2)
    f = eth(BCAST, A)
    sw.forward(1, f, 0.0)
    c1, c2 = sw.ports[1].counters, sw.ports[2].counters
    assert (c1.rx_frames, c1.rx_bytes, c1.tx_frames) == (1, len(f), 0)
    assert (c2.tx_frames, c2.tx_bytes, c2.rx_frames) == (1, len(f), 0)
    sw.count_send_drop(2)
    assert c2.drops() == {"runt": 0, "vlan": 0, "too_big": 0, "send": 1}
    c2.reset()
    assert c2.as_dict()["tx_frames"] == 0


# -- frame sizes ------------------------------------------------------------------------------
def test_big_frames_only_to_ports_that_allow_them() -> None:
    sw = SwitchCore()
    sw.add_port(1, MAX_FRAME)
    sw.add_port(2, MAX_FRAME)
    sw.add_port(3)  # classic VDE port: 1518
    sw.add_port(4, 9018)
    for size in (1518, 1519, 9000, 9018, 9019, 65000, MAX_FRAME):
        f = eth(BCAST, A, b"j" * (size - 14))
        got = ports(sw.forward(1, f, 0.0))
        expect = [2] + ([3] if size <= DEFAULT_MAX_FRAME else []) + ([4] if size <= 9018 else [])
        assert got == sorted(expect), size
    assert sw.ports[3].counters.drop_too_big == 6
    assert sw.ports[4].counters.drop_too_big == 3
    # unicast too
    sw.forward(3, eth(BCAST, C), 0.0)
    assert sw.forward(1, eth(C, A, b"j" * 2000), 0.0) == []
    assert sw.ports[3].counters.drop_too_big == 7


def test_adding_a_tag_can_make_a_frame_too_big() -> None:
    sw = SwitchCore()
    sw.add_port(1)
    sw.add_port(2)  # trunk, 1518
    sw.create_vlan(5)
    sw.set_untagged_vlan(1, 5)
    full = eth(BCAST, A, b"x" * 1500)  # 1514 untagged -> 1518 tagged: fits
    assert [p for p, _ in sw.forward(1, full, 0.0)] == [2]
    sw.set_max_frame(2, 1514)
    assert sw.forward(1, full, 0.0) == []
    assert sw.ports[2].counters.drop_too_big == 1


def test_bad_configuration_is_refused_with_errno() -> None:
    sw = switch(2)
    cases: list[tuple[Callable[[], object], int]] = [
        (lambda: sw.add_port(1), errno.EEXIST),
        (lambda: sw.add_port(3, 10), errno.EINVAL),
        (lambda: sw.add_port(3, MAX_FRAME + 1), errno.EINVAL),
        (lambda: sw.set_untagged_vlan(1, 9), errno.ENXIO),
        (lambda: sw.set_untagged_vlan(7, 0), errno.ENXIO),
        (lambda: sw.create_vlan(0), errno.EINVAL),
        (lambda: sw.create_vlan(4095), errno.EINVAL),
        (lambda: sw.add_tagged_vlan(1, 9), errno.ENXIO),
        (lambda: sw.remove_vlan(9), errno.ENXIO),
        (lambda: sw.remove_port(9), errno.ENXIO),
        (lambda: sw.set_ageing(0), errno.EINVAL),
    ]
    for call, code in cases:
        with pytest.raises(SwitchConfigError) as info:
            call()
        assert info.value.errno == code
    sw.create_vlan(9)
    with pytest.raises(SwitchConfigError) as info:
        sw.create_vlan(9)
    assert info.value.errno == errno.EEXIST
    sw.add_tagged_vlan(1, 9)
    with pytest.raises(SwitchConfigError) as info:
        sw.remove_vlan(9)
    assert info.value.errno == errno.EADDRINUSE
    sw.set_untagged_vlan(2, 9)
    with pytest.raises(SwitchConfigError) as info:
        sw.remove_tagged_vlan(2, 9)
    assert info.value.errno == errno.EADDRINUSE


# -- VLANs ------------------------------------------------------------------------------------
def vlan_switch() -> SwitchCore:
    """Ports 1,2 access VLAN 10; port 3 access VLAN 20; port 4 tagged 10+20; 5 and 6 trunks."""
    sw = switch(6)
    sw.create_vlan(10)
    sw.create_vlan(20)
    sw.set_untagged_vlan(1, 10)
    sw.set_untagged_vlan(2, 10)
    sw.set_untagged_vlan(3, 20)
    sw.set_untagged_vlan(4, None)
    sw.add_tagged_vlan(4, 10)
    sw.add_tagged_vlan(4, 20)
    return sw


def test_access_ports_and_tagging_on_egress() -> None:
    sw = vlan_switch()
    f = eth(BCAST, A)
    out = dict(sw.forward(1, f, 0.0))
    assert sorted(out) == [2, 4, 5, 6]
    assert out[2] == f
    assert out[4] == tagged(BCAST, A, 10)
    assert out[5] == out[6] == tagged(BCAST, A, 10)  # trunks carry VLAN 10 tagged


def test_tagged_ingress_is_stripped_on_access_ports() -> None:
    sw = vlan_switch()
    t = tagged(BCAST, B, 20, pcp=5)
    out = dict(sw.forward(4, t, 0.0))
    assert sorted(out) == [3, 5, 6]
    assert out[3] == untag(t)
    assert out[5] == t  # stays tagged, priority bits kept
    # learnt on VLAN 20 only
    assert sw.lookup(B, 20, 0.0) == 4
    assert sw.lookup(B, 10, 0.0) is None
    # unicast back from the VLAN 20 access port gets tagged towards port 4
    assert sw.forward(3, eth(B, C), 1.0) == [(4, tagged(B, C, 20))]
    # unicast from the tagged port to the access port is stripped
    assert sw.forward(4, tagged(C, B, 20), 2.0) == [(3, eth(C, B))]


def test_no_leak_across_vlans() -> None:
    sw = vlan_switch()
    sw.forward(3, eth(BCAST, C), 0.0)  # C lives on VLAN 20, port 3
    # a frame to C from VLAN 10 does not find it: flooded on VLAN 10 only, never to port 3
    out = sw.forward(1, eth(C, A), 0.0)
    assert 3 not in ports(out)
    for p, frame in out:
        if p in (4, 5, 6):
            assert frame[12:16] == b"\x81\x00\x00\x0a"
    # tagged frames for VLANs a port is not a member of are dropped
    assert sw.forward(4, tagged(BCAST, B, 30), 0.0) == []
    assert sw.forward(1, tagged(BCAST, A, 20), 0.0) == []
    assert sw.ports[4].counters.drop_vlan == 1
    assert sw.ports[1].counters.drop_vlan == 1
    # port 4 has no untagged VLAN: untagged frames from it are dropped
    assert sw.forward(4, eth(BCAST, B), 0.0) == []
    assert sw.ports[4].counters.drop_vlan == 2


def test_trunks_forward_tagged_frames_as_they_are() -> None:
    sw = switch(3)
    sw.create_vlan(10)
    sw.set_untagged_vlan(3, 10)  # port 3 is an access port now
    t = tagged(BCAST, A, 3000, pcp=3)
    out = sw.forward(1, t, 0.0)
    assert out == [(2, t)]  # unconfigured VLAN 3000 crosses trunks untouched
    # VLAN 10 from a trunk reaches the access port untagged
    assert sorted(sw.forward(1, tagged(BCAST, A, 10), 0.0)) == [
        (2, tagged(BCAST, A, 10)), (3, eth(BCAST, A))]
    # untagged traffic on trunks is VLAN 0 and stays away from VLAN 10
    assert sw.forward(1, eth(BCAST, A), 0.0) == [(2, eth(BCAST, A))]
    # VID 4095 is reserved
    assert sw.forward(1, tagged(BCAST, A, 4095), 0.0) == []


def test_priority_tagged_frames_belong_to_the_untagged_vlan() -> None:
    sw = switch(2)
    pt = tagged(BCAST, A, 0, pcp=6)
    assert sw.forward(1, pt, 0.0) == [(2, untag(pt))]


def test_vlan_change_flushes_the_port() -> None:
    sw = switch(3)
    sw.forward(1, eth(BCAST, A), 0.0)
    assert sw.lookup(A, 0, 0.0) == 1
    sw.create_vlan(10)
    sw.set_untagged_vlan(1, 10)
    assert sw.lookup(A, 0, 0.0) is None
    assert sw.vlan_members(10) == [(1, False)]
    assert sw.vlan_members(0) == [(2, False), (3, False)]
    sw.add_tagged_vlan(2, 10)
    assert sw.vlan_members(10) == [(1, False), (2, True)]
    assert not sw.ports[2].trunk
    sw.remove_tagged_vlan(2, 10)
    assert sw.ports[2].trunk


def test_removed_port_gets_nothing() -> None:
    sw = switch(3)
    sw.forward(2, eth(BCAST, B), 0.0)
    sw.remove_port(2)
    assert ports(sw.forward(1, eth(B, A), 0.0)) == [3]


def test_table_listing() -> None:
    sw = switch(2)
    sw.forward(2, eth(BCAST, B), 1.0)
    sw.forward(1, eth(BCAST, A), 2.0)
    rows = sw.table(5.0)
    assert [(r.mac, r.vlan, r.port, r.age) for r in rows] == [(A, 0, 1, 3.0), (B, 0, 2, 4.0)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.binary(max_size=80),
                          st.floats(0, 1000, allow_nan=False)), max_size=40),
       st.booleans())
def test_random_frames_never_raise(frames: list[tuple[int, bytes, float]], hub: bool) -> None:
    sw = vlan_switch()
    sw.hub = hub
    for port, frame, now in frames:
        out = sw.forward(port, frame, now)
        for egress, data in out:
            assert egress != port
            assert egress in sw.ports
            assert len(data) <= sw.ports[egress].max_frame


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([1, 2, 3, 4, 5]),
                          st.sampled_from([A, B, C, BCAST, MCAST]),
                          st.sampled_from([A, B, C]),
                          st.sampled_from([None, 0, 10, 20, 30])), max_size=30))
def test_vlan_isolation_property(frames: list[tuple[int, bytes, bytes, int | None]]) -> None:
    """Whatever is sent, a frame only ever leaves on ports of its own VLAN, correctly tagged."""
    sw = vlan_switch()
    for t, (port, dst, src, vid) in enumerate(frames):
        frame = eth(dst, src) if vid is None else tagged(dst, src, vid)
        p = sw.ports[port]
        vlan = p.untagged_vlan if vid in (None, 0) else (vid if p.member(vid) else None)
        out = sw.forward(port, frame, float(t))
        if vlan is None:
            assert out == []
            continue
        for egress, data in out:
            e = sw.ports[egress]
            assert e.member(vlan)
            if e.untagged_vlan == vlan:
                assert data[12:14] != b"\x81\x00"
            else:
                assert data[12:16] == b"\x81\x00" + vlan.to_bytes(2, "big")


def test_inactive_port_keeps_config_but_gets_nothing() -> None:
    sw = switch(3)
    sw.create_vlan(10)
    sw.set_untagged_vlan(3, 10)
    sw.forward(3, eth(BCAST, C), 0.0)
    sw.set_active(3, False)
    assert sw.lookup(C, 10, 0.0) is None  # forgotten
    assert sw.forward(1, tagged(BCAST, A, 10), 0.0) == [(2, tagged(BCAST, A, 10))]
    assert sw.forward(3, eth(BCAST, C), 0.0) == []  # nothing comes from it either
    assert sw.counters.unknown_port == 1
    sw.set_active(3, True)
    assert sw.ports[3].untagged_vlan == 10
    assert ports(sw.forward(1, tagged(BCAST, A, 10), 0.0)) == [2, 3]
