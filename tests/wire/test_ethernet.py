"""Ethernet II / 802.1Q / 802.1ad: golden bytes (scapy-built, frozen), emit, round trip, errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ioth.wire import ethernet as E
from ioth.wire.errors import AddressError, SanityError, TruncatedError, WireError
from tests.wire.strategies import mac, u16

M1 = bytes.fromhex("020000000001")
M2 = bytes.fromhex("020000000002")

# scapy: Ether(dst=M2, src=M1)/IP(...)/UDP(...)/b"hello world"
ETH_UDP = bytes.fromhex(
    "020000000002020000000001080045000027123440004011a48ec0000201c000020204d2162e0013cef568656c6c"
    "6f20776f726c64")
# scapy: Ether(dst=bcast, src=M1)/Dot1Q(vlan=100, prio=3)/ARP(who-has 192.0.2.2)
VLAN_ARP = bytes.fromhex(
    "ffffffffffff0200000000018100606408060001080006040001020000000001c0000201000000000000c0000202")
# scapy: Ether(type=0x88a8)/Dot1AD(vlan=10, prio=1, id=1)/Dot1Q(vlan=20)/IP()/ICMP()
QINQ = bytes.fromhex(
    "02000000000202000000000188a8300a8100001408004500001c000100004001f6dcc0000201c00002020800f7ff"
    "00000000")


def test_parse_untagged() -> None:
    hdr, payload = E.parse(ETH_UDP)
    assert hdr == E.EthernetHeader(M2, M1, E.ETHERTYPE_IPV4)
    assert bytes(payload) == ETH_UDP[14:]
    assert hdr.emit() == ETH_UDP[:14]
    assert hdr.vid is None and hdr.header_len == 14
    assert str(hdr) == "Ethernet 02:00:00:00:00:01 > 02:00:00:00:00:02 type=0x0800"
    assert E.parse_fast(ETH_UDP) == (M2, M1, E.ETHERTYPE_IPV4, 14)


def test_parse_vlan() -> None:
    hdr, payload = E.parse(VLAN_ARP)
    assert hdr.tags == (E.VlanTag(100, 3, False, E.ETHERTYPE_VLAN),)
    assert hdr.ethertype == E.ETHERTYPE_ARP and hdr.vid == 100
    assert hdr.emit() == VLAN_ARP[:18]
    assert bytes(payload) == VLAN_ARP[18:]
    assert E.parse_fast(VLAN_ARP) == (E.BROADCAST, M1, E.ETHERTYPE_ARP, 18)
    assert "vid=100" in str(hdr)


def test_parse_qinq() -> None:
    hdr, payload = E.parse(QINQ)
    assert hdr.tags == (E.VlanTag(10, 1, True, E.ETHERTYPE_QINQ), E.VlanTag(20))
    assert hdr.ethertype == E.ETHERTYPE_IPV4 and hdr.vid == 20
    assert hdr.emit() + bytes(payload) == QINQ


def test_scapy_cross_check() -> None:
    from scapy.layers.l2 import Dot1AD, Dot1Q, Ether
    frame = bytes(Ether(dst="01:00:5e:00:00:fb", src="02:aa:bb:cc:dd:ee", type=0x88a8)
                  / Dot1AD(vlan=4094, prio=7) / Dot1Q(vlan=1, type=0x86DD) / (b"\x60" + bytes(39)))
    hdr, payload = E.parse(frame)
    assert hdr.dst == E.str_to_mac("01:00:5e:00:00:fb") and E.is_multicast(hdr.dst)
    assert hdr.tags[0].vid == 4094 and hdr.tags[0].pcp == 7 and hdr.tags[1].vid == 1
    assert hdr.ethertype == E.ETHERTYPE_IPV6 and len(payload) == 40


def test_truncated() -> None:
    for n in range(14):
        with pytest.raises(TruncatedError):
            E.parse(ETH_UDP[:n])
    for n in (14, 15, 16, 17):
        with pytest.raises(TruncatedError):
            E.parse(VLAN_ARP[:n])
    with pytest.raises(TruncatedError):
        E.parse_fast(b"\x00" * 5)


def test_too_many_tags() -> None:
    frame = M2 + M1 + b"\x81\x00\x00\x01" * 3 + b"\x08\x00"
    with pytest.raises(SanityError):
        E.parse(frame)


def test_mac_helpers() -> None:
    assert E.mac_to_str(M1) == "02:00:00:00:00:01"
    assert E.str_to_mac("02:00:00:00:00:01") == M1
    assert E.str_to_mac("2-0-0-0-0-1") == M1
    assert E.str_to_mac("020000000001") == M1
    for bad in ("", "02:00:00:00:00", "02:00:00:00:00:01:02", "zz:00:00:00:00:01",
                "02:00-00:00:00:01"):
        with pytest.raises(AddressError, match="MAC"):
            E.str_to_mac(bad)
    assert E.is_broadcast(E.BROADCAST) and E.is_multicast(E.BROADCAST)
    assert E.is_unicast(M1) and E.is_local(M1) and not E.is_multicast(M1)
    assert E.ipv4_multicast_mac(bytes([239, 255, 1, 2])) == bytes.fromhex("01005e7f0102")
    assert E.ipv6_multicast_mac(bytes.fromhex("ff02" + "00" * 9 + "01ff000001")) == \
        bytes.fromhex("3333ff000001")
    assert E.pad(b"ab") == b"ab" + bytes(58) and E.pad(bytes(70)) == bytes(70)


tags = st.lists(st.builds(E.VlanTag, st.integers(0, 4095), st.integers(0, 7), st.booleans(),
                          st.sampled_from(sorted(E.TAG_TPIDS))), max_size=2)


@settings(deadline=None)
@given(mac, mac, u16.filter(lambda t: t not in E.TAG_TPIDS), tags, st.binary(max_size=64))
def test_round_trip(dst: bytes, src: bytes, etype: int, tl: list[E.VlanTag], data: bytes) -> None:
    hdr = E.EthernetHeader(dst, src, etype, tuple(tl))
    frame = hdr.emit() + data
    got, payload = E.parse(frame)
    assert got == hdr and bytes(payload) == data
    assert E.parse_fast(frame) == (dst, src, etype, hdr.header_len)
    assert E.str_to_mac(E.mac_to_str(dst)) == dst


@settings(deadline=None)
@given(st.binary(max_size=40))
def test_random_bytes_only_raise_wire_error(data: bytes) -> None:
    try:
        E.parse(data)
        E.parse_fast(data)
    except WireError:
        pass


def test_emit_fast() -> None:
    assert E.emit_fast(M2, M1, E.ETHERTYPE_IPV4) == ETH_UDP[:14]
