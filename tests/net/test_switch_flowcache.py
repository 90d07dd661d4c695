"""The switch engine's forwarding cache: a cached flow must behave exactly like the full path,
and anything that changes a flow's outcome must take it out of the cache."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ioth.net.switch.core import FLOW_CACHE_SIZE, SwitchCore

A = bytes.fromhex("020000000001")
B = bytes.fromhex("020000000002")
C = bytes.fromhex("020000000003")
BCAST = b"\xff" * 6
IPV4 = b"\x08\x00"


def eth(dst: bytes, src: bytes, size: int = 60) -> bytes:
    return dst + src + IPV4 + b"p" * (size - 14)


def tagged(dst: bytes, src: bytes, vid: int) -> bytes:
    return dst + src + b"\x81\x00" + vid.to_bytes(2, "big") + IPV4 + b"p" * 46


def learnt(nports: int = 3, **kw: object) -> SwitchCore:
    """A switch where A lives on port 1 and B on port 2, with the flow B -> A cached."""
    sw = SwitchCore(**kw)  # type: ignore[arg-type]
    for n in range(1, nports + 1):
        sw.add_port(n)
    sw.forward(1, eth(BCAST, A), 0.0)
    sw.forward(2, eth(BCAST, B), 0.0)
    assert sw.forward(2, eth(A, B), 0.0) == [(1, eth(A, B))]
    assert sw.flow_cache_entries == 1
    return sw


def test_a_cached_flow_counts_and_refreshes_like_the_full_path() -> None:
    sw = learnt()
    before_tx = sw.ports[1].counters.tx_frames
    before_rx = sw.ports[2].counters.rx_frames
    unicast = sw.counters.unicast
    assert sw.forward(2, eth(A, B, 100), 50.0) == [(1, eth(A, B, 100))]
    assert sw.ports[1].counters.tx_frames == before_tx + 1
    assert sw.ports[2].counters.rx_frames == before_rx + 1
    assert sw.ports[1].counters.tx_bytes >= 100
    assert sw.counters.unicast == unicast + 1
    # the hit refreshed B (the source): at 140 B is 90 s old, A (last seen at 0) has expired
    assert sw.lookup(B, 0, 140.0) == 2
    assert sw.lookup(A, 0, 140.0) is None


def test_expired_destination_is_flooded_not_served_from_the_cache() -> None:
    sw = learnt(ageing=10)
    assert sorted(p for p, _ in sw.forward(2, eth(A, B), 10.5)) == [1, 3]
    assert sw.counters.flooded >= 3


def test_mac_moved_away_from_the_destination_port() -> None:
    sw = learnt()
    sw.forward(3, eth(BCAST, A), 1.0)  # A moves to port 3
    assert sw.flow_cache_entries == 0
    assert sw.forward(2, eth(A, B), 1.0) == [(3, eth(A, B))]


def test_mac_moved_away_from_the_ingress_port() -> None:
    sw = learnt()
    sw.forward(3, eth(BCAST, B), 1.0)  # B moves to port 3
    assert sw.lookup(B, 0, 1.0) == 3
    # a frame from B on its old port moves it back (the full path), not a stale cache hit
    assert sw.forward(2, eth(A, B), 2.0) == [(1, eth(A, B))]
    assert sw.lookup(B, 0, 2.0) == 2
    assert sw.counters.moved == 2


def test_same_addresses_from_another_port_do_not_use_the_flow() -> None:
    sw = learnt()
    moved = sw.counters.moved
    assert sw.forward(3, eth(A, B), 1.0) == [(1, eth(A, B))]
    assert sw.counters.moved == moved + 1
    assert sw.lookup(B, 0, 1.0) == 3


def test_destination_port_removed() -> None:
    sw = learnt()
    sw.remove_port(1)
    assert sw.flow_cache_entries == 0
    assert sorted(p for p, _ in sw.forward(2, eth(A, B), 1.0)) == [3]


def test_destination_port_deactivated() -> None:
    sw = learnt()
    sw.set_active(1, False)
    assert sorted(p for p, _ in sw.forward(2, eth(A, B), 1.0)) == [3]


def test_ingress_port_removed_or_deactivated() -> None:
    sw = learnt()
    sw.set_active(2, False)
    assert sw.forward(2, eth(A, B), 1.0) == []
    assert sw.counters.unknown_port == 1
    sw.set_active(2, True)
    sw.remove_port(2)
    assert sw.forward(2, eth(A, B), 1.0) == []
    assert sw.counters.unknown_port == 2


def test_vlan_change_on_the_destination_port() -> None:
    sw = learnt()
    sw.create_vlan(10)
    sw.set_untagged_vlan(1, 10)
    # A was flushed with port 1's configuration; port 1 is not in VLAN 0 any more
    assert sorted(p for p, _ in sw.forward(2, eth(A, B), 1.0)) == [3]


def test_vlan_change_on_the_ingress_port() -> None:
    sw = learnt()
    sw.create_vlan(10)
    sw.set_untagged_vlan(2, 10)
    # B's frames now belong to VLAN 10, where A is unknown: flooded to the trunks, tagged
    out = sw.forward(2, eth(A, B), 1.0)
    assert sorted(p for p, _ in out) == [1, 3]
    assert all(data == tagged(A, B, 10) for _, data in out)


def test_destination_becomes_a_tagged_member() -> None:
    sw = learnt()
    sw.create_vlan(10)
    sw.set_untagged_vlan(1, 10)
    sw.set_untagged_vlan(2, 10)
    sw.forward(1, eth(BCAST, A), 1.0)
    sw.forward(2, eth(A, B), 1.0)  # learns B in VLAN 10
    sw.forward(2, eth(A, B), 1.0)
    assert sw.flow_cache_entries == 1
    sw.set_untagged_vlan(1, None)
    sw.add_tagged_vlan(1, 10)
    sw.forward(1, tagged(BCAST, A, 10), 2.0)
    assert sw.forward(2, eth(A, B), 2.0) == [(1, eth(A, B)[:12] + b"\x81\x00\x00\x0a"
                                                + eth(A, B)[12:])]


def test_smaller_max_frame_after_caching() -> None:
    sw = learnt()
    sw.set_max_frame(1, 100)
    assert sw.forward(2, eth(A, B, 200), 1.0) == []
    assert sw.ports[1].counters.drop_too_big == 1
    assert sw.forward(2, eth(A, B, 100), 1.0) == [(1, eth(A, B, 100))]


def test_flush_and_expire_empty_the_cache() -> None:
    sw = learnt()
    sw.flush()
    assert sw.flow_cache_entries == 0
    assert sorted(p for p, _ in sw.forward(2, eth(A, B), 1.0)) == [1, 3]
    sw = learnt(ageing=10)
    sw.forward(2, eth(A, B), 5.0)
    assert sw.expire(12.0) == 1  # A (seen at 0) goes, B (refreshed at 5) stays
    assert sw.flow_cache_entries == 0


def test_tagged_and_short_frames_never_hit() -> None:
    sw = learnt()
    sw.forward(2, eth(A, B), 1.0)
    # same 12 bytes, but tagged for a VLAN the trunk carries: classified, not cached
    out = sw.forward(2, tagged(A, B, 10), 1.0)
    assert out == [(1, tagged(A, B, 10))] or sorted(p for p, _ in out) == [1, 3]
    assert sw.forward(2, eth(A, B)[:13], 1.0) == []
    assert sw.ports[2].counters.drop_runt == 1


def test_hub_never_caches() -> None:
    sw = SwitchCore(hub=True)
    for n in (1, 2, 3):
        sw.add_port(n)
    sw.forward(1, eth(BCAST, A), 0.0)
    for _ in range(3):
        assert sorted(p for p, _ in sw.forward(2, eth(A, B), 0.0)) == [1, 3]
    assert sw.flow_cache_entries == 0


def test_cache_is_bounded() -> None:
    sw = SwitchCore()
    sw.add_port(1)
    sw.add_port(2)
    sw.forward(1, eth(BCAST, A), 0.0)
    for i in range(FLOW_CACHE_SIZE + 10):
        src = bytes.fromhex("0a00") + i.to_bytes(4, "big")
        sw.forward(2, eth(A, src), 0.0)
        sw.forward(2, eth(A, src), 0.0)
    assert 0 < sw.flow_cache_entries <= FLOW_CACHE_SIZE


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3), st.sampled_from([A, B, BCAST]),
                          st.sampled_from([A, B, C]), st.integers(0, 2),
                          st.sampled_from(["frame", "frame", "frame", "move_vlan", "remove",
                                           "deactivate", "max_frame", "flush", "expire"])),
                max_size=40))
def test_cache_never_changes_the_outcome(
        steps: list[tuple[int, bytes, bytes, int, str]]) -> None:
    """Two switches fed the same frames and changes, one with its cache emptied before every
    frame, give the same output and counters."""
    def make() -> SwitchCore:
        sw = SwitchCore(ageing=5)
        for n in range(1, 5):
            sw.add_port(n, 1518)
        sw.create_vlan(10)
        return sw

    cached, plain = make(), make()
    for t, (port, dst, src, size, action) in enumerate(steps):
        now = float(t)
        for sw in (cached, plain):
            if action == "move_vlan" and port in sw.ports:
                sw.set_untagged_vlan(port, 10 if sw.ports[port].untagged_vlan == 0 else 0)
            elif action == "remove" and port in sw.ports:
                sw.remove_port(port)
            elif action == "deactivate" and port in sw.ports:
                sw.set_active(port, not sw.ports[port].active)
            elif action == "max_frame" and port in sw.ports:
                sw.set_max_frame(port, 100 if sw.ports[port].max_frame > 100 else 1518)
            elif action == "flush":
                sw.flush_port(port)
            elif action == "expire":
                sw.expire(now)
        plain._flows.clear()
        frame = eth(dst, src, (60, 100, 200)[size])
        assert cached.forward(port, frame, now) == plain.forward(port, frame, now)
        plain._flows.clear()
        assert cached.table(now) == plain.table(now)
    assert cached.counters == plain.counters
    for n, p in cached.ports.items():
        assert p.counters.as_dict() == plain.ports[n].counters.as_dict()
    assert cached.table(float(len(steps))) == plain.table(float(len(steps)))
