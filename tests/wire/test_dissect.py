"""One-line frame summaries: content for each protocol, bad checksums reported, never raises."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ioth.wire import dissect, ethernet, icmpv4, icmpv6, ipv4, ipv6, tcp, udp
from tests.interop.test_wire_tshark import frames
from tests.wire.test_ethernet import ETH_UDP, QINQ, VLAN_ARP

A1 = bytes([192, 0, 2, 1])
A2 = bytes([192, 0, 2, 2])


def test_golden_frames() -> None:
    assert dissect.summary(ETH_UDP) == (
        "Ethernet 02:00:00:00:00:01 > 02:00:00:00:00:02 type=0x0800 | "
        "IPv4 192.0.2.1 > 192.0.2.2 proto=17 len=19 ttl=64 id=4660 DF | UDP 1234 > 5678 len=11")
    assert "ARP request" in dissect.summary(VLAN_ARP)
    assert "ICMPv4 echo request id=0 seq=0" in dissect.summary(QINQ)


def test_every_interop_frame_is_described_without_errors() -> None:
    for f in frames():
        s = dissect.summary(f)
        assert "malformed" not in s and "bad" not in s, s
    text = "\n".join(dissect.summary(f) for f in frames())
    for needle in ("TCP 40000 > 80 [S]", "ICMPv6 neighbor solicitation", "ICMPv6 MLDv2 report",
                   "IPv6 fragment", "fragment data", "ICMPv6 router advertisement",
                   "ICMPv4 destination unreachable code=4 mtu=1400", "ICMPv6 packet too big"):
        assert needle in text, needle


def test_bad_checksums_are_reported() -> None:
    bad = bytearray(ETH_UDP)
    bad[-1] ^= 1
    assert dissect.summary(bad).endswith("[bad checksum]")
    bad = bytearray(ETH_UDP)
    bad[22] ^= 1  # IPv4 TTL
    assert "[bad IPv4 header checksum]" in dissect.summary(bad)
    e4 = ethernet.emit_fast(b"\x02" * 6, b"\x04" * 6, ethernet.ETHERTYPE_IPV4)
    icmp = bytearray(icmpv4.Echo(1, 2).emit(b"x"))
    icmp[-1] ^= 1
    f = e4 + ipv4.emit_fast(A1, A2, 1, len(icmp)) + icmp
    assert "ICMPv4 echo request id=1 seq=2 len=1 | [bad checksum]" in dissect.summary(f)
    s6, d6 = ipv6.str_to_addr("fd00::1"), ipv6.str_to_addr("fd00::2")
    e6 = ethernet.emit_fast(b"\x02" * 6, b"\x04" * 6, ethernet.ETHERTYPE_IPV6)
    m6 = icmpv6.Echo(1, 2).emit(s6, s6)  # checksummed for the wrong destination
    assert dissect.summary(e6 + ipv6.emit_fast(s6, d6, 58, len(m6)) + m6).endswith(
        "[bad checksum]")
    seg = tcp.emit_fast(1, 2, 3, 4, tcp.ACK, 5, b"", A1, A1)
    assert dissect.summary(e4 + ipv4.emit_fast(A1, A2, 6, 20) + seg).endswith("[bad checksum]")
    assert "[malformed" in dissect.summary(e4 + ipv4.emit_fast(A1, A2, 17, 4) + b"abcd")
    u = udp.emit(1, 2, b"", A1, A2)
    assert "proto 99 8 bytes" in dissect.summary(e4 + ipv4.emit_fast(A1, A2, 99, 8) + u)
    assert dissect.summary(b"\x00" * 5).startswith("[malformed")


@settings(deadline=None)
@given(st.binary(max_size=120), st.sampled_from([0x0800, 0x86DD, 0x0806, 0x8100, 0x1234]))
def test_never_raises(data: bytes, etype: int) -> None:
    assert isinstance(dissect.summary(b"\x02" * 12 + etype.to_bytes(2, "big") + data), str)
    assert isinstance(dissect.summary(data), str)
