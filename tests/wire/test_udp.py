"""UDP: golden bytes (scapy-built, frozen), IPv4/IPv6 checksums, emit, round trip, errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ioth.wire import ipv4 as I
from ioth.wire import udp as U
from ioth.wire.errors import ChecksumError, IntegrityError, TruncatedError, WireError
from tests.wire.strategies import ip4, ip6, port

A1 = bytes([192, 0, 2, 1])
A2 = bytes([192, 0, 2, 2])
S6 = bytes.fromhex("20010db8000000000000000000000001")
D6 = bytes.fromhex("20010db8000000000000000000000002")
# scapy: IP(192.0.2.1 > 192.0.2.2)/UDP(1234, 5678)/b"hello world": the UDP part
UDP4 = bytes.fromhex("04d2162e0013cef568656c6c6f20776f726c64")
# scapy: IP/UDP(7, 7, chksum=0)/b"abc": the UDP part
UDP4_ZERO = bytes.fromhex("00070007000b0000616263")


def test_golden_v4() -> None:
    hdr, payload = U.parse(UDP4, A1, A2)
    assert hdr == U.UdpHeader(1234, 5678) and bytes(payload) == b"hello world"
    assert hdr.emit(b"hello world", A1, A2) == UDP4[:8]
    assert U.emit(1234, 5678, b"hello world", A1, A2) == UDP4[:8]
    assert U.parse_fast(UDP4, A1, A2) == (1234, 5678, 19)
    assert str(hdr) == "UDP 1234 > 5678"


def test_zero_checksum() -> None:
    assert U.parse(UDP4_ZERO, A1, A2)[0] == U.UdpHeader(7, 7)
    assert U.parse_fast(UDP4_ZERO, A1, A2) == (7, 7, 11)
    assert U.UdpHeader(7, 7).emit(b"abc", A1, A2, checksum=False) == UDP4_ZERO[:8]
    with pytest.raises(ChecksumError, match="IPv6"):
        U.parse(UDP4_ZERO, S6, D6)
    with pytest.raises(ChecksumError):
        U.parse_fast(UDP4_ZERO, S6, D6)
    with pytest.raises(ValueError):
        U.UdpHeader(7, 7).emit(b"abc", S6, D6, checksum=False)


def test_computed_zero_is_sent_as_ffff() -> None:
    # find a payload whose checksum computes to zero: pick the last two bytes accordingly
    hdr = U.UdpHeader(1, 2)
    base = hdr.emit(b"\0\0", A1, A2)
    c = int.from_bytes(base[6:8], "big")
    raw = hdr.emit(c.to_bytes(2, "big"), A1, A2)
    assert raw[6:8] == b"\xff\xff"
    assert U.parse(raw + c.to_bytes(2, "big"), A1, A2)[0] == hdr


def test_scapy_v6_cross_check() -> None:
    from scapy.layers.inet import UDP
    from scapy.layers.inet6 import IPv6
    pkt = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=53, dport=40000)
                / b"answer")
    hdr, payload = U.parse(pkt[40:], S6, D6)
    assert hdr == U.UdpHeader(53, 40000) and bytes(payload) == b"answer"
    assert hdr.emit(b"answer", S6, D6) == pkt[40:48]


def test_scapy_v4_cross_check() -> None:
    from scapy.layers.inet import IP, UDP
    data = bytes(range(256)) * 6  # long enough for the numpy checksum path
    pkt = bytes(IP(src="203.0.113.1", dst="203.0.113.2") / UDP(sport=9, dport=10) / data)
    src, dst = I.str_to_addr("203.0.113.1"), I.str_to_addr("203.0.113.2")
    assert U.emit(9, 10, data, src, dst) == pkt[20:28]
    assert U.parse_fast(pkt[20:], src, dst) == (9, 10, 8 + len(data))


def test_errors() -> None:
    for n in range(8):
        with pytest.raises(TruncatedError):
            U.parse(UDP4[:n])
        with pytest.raises(TruncatedError):
            U.parse_fast(UDP4[:n], A1, A2)
    with pytest.raises(TruncatedError):
        U.parse(UDP4[:-1], A1, A2)
    with pytest.raises(IntegrityError):
        U.parse(UDP4[:4] + b"\x00\x07" + UDP4[6:])
    with pytest.raises(IntegrityError):
        U.parse_fast(UDP4[:4] + b"\x00\x07" + UDP4[6:], A1, A2)
    bad = bytearray(UDP4)
    bad[-1] ^= 0x10
    with pytest.raises(ChecksumError):
        U.parse(bad, A1, A2)
    with pytest.raises(ChecksumError):
        U.parse_fast(bad, A1, A2)
    with pytest.raises(ChecksumError):
        U.parse(UDP4, A1, bytes([192, 0, 2, 3]))  # pseudo-header covers the addresses
    assert U.parse(bad)[0] == U.UdpHeader(1234, 5678)  # no addresses: no verification
    # trailing bytes after Length are ignored (and not checksummed)
    assert bytes(U.parse(UDP4 + b"zz", A1, A2)[1]) == b"hello world"
    assert U.parse_fast(UDP4 + b"zz", A1, A2)[2] == 19


@settings(deadline=None)
@given(port, port, st.binary(max_size=2000), st.one_of(st.tuples(ip4, ip4), st.tuples(ip6, ip6)))
def test_round_trip(sp: int, dp: int, data: bytes, addrs: tuple[bytes, bytes]) -> None:
    src, dst = addrs
    hdr = U.UdpHeader(sp, dp)
    raw = hdr.emit(data, src, dst) + data
    got, payload = U.parse(raw, src, dst)
    assert got == hdr and bytes(payload) == data
    assert U.parse_fast(raw, src, dst) == (sp, dp, len(raw))
    assert U.checksum_ok(raw, src, dst)


@settings(deadline=None)
@given(st.binary(max_size=64), st.one_of(st.tuples(ip4, ip4), st.tuples(ip6, ip6)))
def test_random_bytes_only_raise_wire_error(data: bytes, addrs: tuple[bytes, bytes]) -> None:
    for f in (lambda: U.parse(data, *addrs), lambda: U.parse(data),
              lambda: U.parse_fast(data, *addrs)):
        try:
            f()
        except WireError:
            pass


@settings(deadline=None, max_examples=50)
@given(port, port, st.binary(max_size=1200), st.booleans())
def test_emit_matches_scapy(sp: int, dp: int, data: bytes, v6: bool) -> None:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6
    if v6:
        raw = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=sp, dport=dp) / data)
        assert U.emit(sp, dp, data, S6, D6) == raw[40:48]
    else:
        raw = bytes(IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=sp, dport=dp) / data)
        assert U.emit(sp, dp, data, A1, A2) == raw[20:28]
