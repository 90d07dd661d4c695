"""ARP: golden bytes (scapy-built, frozen), emit, round trip, errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ioth.wire import arp as A
from ioth.wire import ethernet as E
from ioth.wire.errors import SanityError, TruncatedError, WireError
from tests.wire.strategies import ip4, mac

M1 = bytes.fromhex("020000000001")
M2 = bytes.fromhex("020000000002")
IP1 = bytes([192, 0, 2, 1])
IP2 = bytes([192, 0, 2, 2])
# scapy: ARP(op=2, hwsrc=M2, psrc=192.0.2.2, hwdst=M1, pdst=192.0.2.1)
REPLY = bytes.fromhex("0001080006040002020000000002c0000202020000000001c0000201")
# scapy: Ether/Dot1Q(vlan=100, prio=3)/ARP(who-has 192.0.2.2 from M1 192.0.2.1)
VLAN_ARP = bytes.fromhex(
    "ffffffffffff0200000000018100606408060001080006040001020000000001c0000201000000000000c0000202")


def test_golden_request() -> None:
    _, payload = E.parse(VLAN_ARP)
    pkt, rest = A.parse(payload)
    assert pkt == A.request(M1, IP1, IP2)
    assert pkt.is_request and not pkt.is_gratuitous and len(rest) == 0
    assert pkt.emit() == VLAN_ARP[18:]
    assert str(pkt) == ("ARP request 02:00:00:00:00:01 192.0.2.1 -> 00:00:00:00:00:00 "
                        "192.0.2.2")


def test_golden_reply() -> None:
    req = A.request(M1, IP1, IP2)
    rep = A.reply(req, M2)
    assert rep.emit() == REPLY
    assert A.parse(REPLY)[0] == rep
    # trailing Ethernet padding is returned as payload
    assert len(A.parse(E.pad(REPLY))[1]) == 60 - 28


def test_scapy_cross_check() -> None:
    from scapy.layers.l2 import ARP
    raw = bytes(ARP(op=1, hwsrc="02:11:22:33:44:55", psrc="198.51.100.9", pdst="198.51.100.9"))
    pkt, _ = A.parse(raw)
    assert pkt.is_gratuitous and pkt.sha == bytes.fromhex("021122334455")
    assert pkt.spa == bytes([198, 51, 100, 9])


def test_errors() -> None:
    for n in range(28):
        with pytest.raises(TruncatedError):
            A.parse(REPLY[:n])
    with pytest.raises(SanityError):
        A.parse(b"\x00\x06" + REPLY[2:])  # htype IEEE 802
    with pytest.raises(SanityError):
        A.parse(REPLY[:4] + b"\x08\x04" + REPLY[6:])  # hlen 8
    with pytest.raises(SanityError):
        A.parse(REPLY[:6] + b"\x00\x03" + REPLY[8:])  # RARP request


@settings(deadline=None)
@given(st.sampled_from([A.OP_REQUEST, A.OP_REPLY]), mac, ip4, mac, ip4)
def test_round_trip(op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes) -> None:
    pkt = A.ArpPacket(op, sha, spa, tha, tpa)
    assert A.parse(pkt.emit())[0] == pkt


@settings(deadline=None)
@given(st.binary(max_size=40))
def test_random_bytes_only_raise_wire_error(data: bytes) -> None:
    try:
        A.parse(data)
    except WireError:
        pass
