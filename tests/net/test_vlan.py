"""vlan:// wrapper: tagging rules of libvdeplug_vlan (unit tests on an in-memory nested plug)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ioth.net.registry as reg
from ioth.errors import VNLError
from ioth.net.plugs.vlan import TPID_8021AD, TPID_8021Q, VlanPlug, parse_tags
from ioth.net.registry import open_plug, parse_vnl
from tests.net.memplug import MemPlug

DST = bytes.fromhex("020000000002")
SRC = bytes.fromhex("020000000001")
PAYLOAD = b"\x45" + bytes(45)


def untagged(ethertype: int = 0x0800) -> bytes:
    return DST + SRC + struct.pack("!H", ethertype) + PAYLOAD


def tagged(vid: int, tpid: int = TPID_8021Q, ethertype: int = 0x0800, pcp: int = 0) -> bytes:
    return DST + SRC + struct.pack("!HHH", tpid, (pcp << 13) | vid, ethertype) + PAYLOAD


def make(text: str) -> tuple[VlanPlug, MemPlug]:
    """A VlanPlug configured from ``vlan://TEXT{...}`` over a MemPlug."""
    vnl = parse_vnl(f"vlan://{text}{{null://}}")
    inner = MemPlug()
    orig = reg.open_plug
    reg.open_plug = lambda *a, **k: inner  # type: ignore[assignment]
    try:
        v = VlanPlug.from_vnl(vnl)
    finally:
        reg.open_plug = orig
    return v, inner


def test_untagged_vlan_tags_on_send_and_strips_on_recv() -> None:
    v, net = make("3")
    assert v.send(untagged())
    assert net.sent == [tagged(3)]
    net.inject(tagged(3), tagged(4), untagged())
    assert v.recv_frames() == [untagged()]  # VLAN 4 not ours, untagged dropped (N is set)
    assert v.counters.rx_dropped == 2


def test_untag_option_maps_untagged_network_traffic() -> None:
    v, net = make("3[untag=7]")
    net.inject(untagged())
    assert v.recv_frames() == [tagged(7)]
    assert v.send(tagged(7))  # tagged with untag -> sent untagged
    assert net.sent == [untagged()]


def test_tag_list_remaps_both_ways() -> None:
    v, net = make("[tag=10:11-12]")
    assert v.send(tagged(10)) and v.send(tagged(11))
    assert not v.send(tagged(13))
    assert net.sent == [tagged(10), tagged(12)]
    net.inject(tagged(12), tagged(11), tagged(10))
    assert v.recv_frames() == [tagged(11), tagged(10)]  # 11 on the net is not listed


def test_trunk_passes_unlisted_valid_vlans_only() -> None:
    v, net = make("[trunk]")
    assert v.send(tagged(100))
    assert not v.send(tagged(4095)) and not v.send(tagged(1))
    assert net.sent == [tagged(100)]
    assert v.send(untagged())  # no N, no untag: untagged passes as is
    assert net.sent[-1] == untagged()


def test_priority_bits_are_kept_on_remap() -> None:
    v, net = make("[tag=5-6]")
    assert v.send(tagged(5, pcp=5))
    assert net.sent == [tagged(6, pcp=5)]


def test_qinq_uses_8021ad_and_treats_8021q_as_untagged() -> None:
    v, net = make("5[qinq]")
    assert v.tpid == TPID_8021AD
    assert v.send(tagged(4))
    assert net.sent == [DST + SRC + struct.pack("!HH", TPID_8021AD, 5) + tagged(4)[12:]]
    net.inject(net.sent[0])
    assert v.recv_frames() == [tagged(4)]


def test_vlan_4095_drops_untagged_sends() -> None:
    v, net = make("4095")
    assert not v.send(untagged())
    assert net.sent == []


def test_slash_options_and_aliases() -> None:
    v, _ = make("5/q")
    assert v.tpid == TPID_8021AD and v.untagged == 5
    v, _ = make("2[u=3/t=4/x]")
    assert (v.untagged, v.tag2untag, v.trunk, v.map_lr) == (2, 3, True, {4: 4})


def test_parse_tags_and_errors() -> None:
    assert parse_tags("1.2-3:4", "") == ({1: 1, 2: 3, 4: 4}, {1: 1, 3: 2, 4: 4})
    with pytest.raises(VNLError):
        parse_tags("x", "")
    with pytest.raises(VNLError):
        open_plug("vlan://abc{null://}")
    with pytest.raises(VNLError):
        open_plug("vlan://3[bogus]{null://}")


@settings(max_examples=300, deadline=None)
@given(frame=st.binary(min_size=0, max_size=80),
       cfg=st.sampled_from(["3", "3[untag=7]", "[tag=10:11-12/trunk]", "5[qinq]", "0"]))
def test_random_frames_never_raise(frame: bytes, cfg: str) -> None:
    v, net = make(cfg)
    with v:
        v.send(frame)
        net.inject(frame)
        for out in v.recv_frames() + net.sent:
            assert len(out) >= 14


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(min_size=0, max_size=100), vid=st.integers(2, 4094))
def test_tag_then_untag_is_identity(payload: bytes, vid: int) -> None:
    v, net = make(str(vid))
    with v:
        f = untagged() + payload
        assert v.send(f)
        net.inject(*net.sent)
        assert v.recv_frames() == [f]
