"""IPv4 header: golden bytes (scapy-built, frozen), emit, round trip, fragments, errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ioth.wire import ipv4 as I
from ioth.wire.errors import (
    AddressError,
    ChecksumError,
    IntegrityError,
    SanityError,
    TruncatedError,
    WireError,
)
from tests.wire.strategies import ip4, u8, u16

A1 = bytes([192, 0, 2, 1])
A2 = bytes([192, 0, 2, 2])
# scapy: IP(src=192.0.2.1, dst=192.0.2.2, id=0x1234, flags=DF)/UDP(1234, 5678)/b"hello world"
IP_UDP = bytes.fromhex(
    "45000027123440004011a48ec0000201c000020204d2162e0013cef568656c6c6f20776f726c64")
# scapy: IP(198.51.100.1 > 203.0.113.9, id=7, ttl=1, tos=0xb9, Router Alert, proto=2)/8 bytes
IP_OPTS = bytes.fromhex(
    "46b90020000700000102bdd9c6336401cb007109940400001122334455667788")
# scapy: IP(id=99, flags=MF, frag=185, proto=17)/(b"x" * 16)
IP_FRAG = bytes.fromhex(
    "45000024006320b94011d5a9c0000201c000020278787878787878787878787878787878")


def test_golden_udp() -> None:
    hdr, payload = I.parse(IP_UDP)
    assert hdr == I.Ipv4Header(A1, A2, I.PROTO_UDP, 19, ttl=64, ident=0x1234, df=True)
    assert hdr.emit() == IP_UDP[:20]
    assert bytes(payload) == IP_UDP[20:]
    assert I.parse_fast(IP_UDP) == (17, A1, A2, 20, 39, 0x4000, 64)
    assert str(hdr) == "IPv4 192.0.2.1 > 192.0.2.2 proto=17 len=19 ttl=64 id=4660 DF"


def test_golden_options() -> None:
    hdr, payload = I.parse(IP_OPTS)
    assert hdr.options == bytes.fromhex("94040000") and hdr.header_len == 24
    assert hdr.dscp == 0xB9 >> 2 and hdr.ecn == 1 and hdr.ttl == 1 and hdr.proto == 2
    assert hdr.emit() == IP_OPTS[:24]
    assert bytes(payload) == IP_OPTS[24:]
    assert I.parse_fast(IP_OPTS)[3] == 24


def test_golden_fragment() -> None:
    hdr, _payload = I.parse(IP_FRAG)
    assert hdr.mf and not hdr.df and hdr.frag_offset == 185 * 8 and hdr.is_fragment
    assert hdr.emit() == IP_FRAG[:20]
    assert "frag=1480+" in str(hdr)


def test_scapy_cross_check() -> None:
    from scapy.layers.inet import IP
    raw = bytes(IP(src="203.0.113.5", dst="198.18.0.1", ttl=3, id=65535, tos=0x10,
                   frag=8191, proto=6) / b"abc")
    hdr, payload = I.parse(raw)
    assert hdr.src == I.str_to_addr("203.0.113.5") and hdr.dst == I.str_to_addr("198.18.0.1")
    assert hdr.frag_offset == 8191 * 8 and hdr.ident == 65535 and hdr.dscp == 4
    assert bytes(payload) == b"abc" and hdr.emit() == raw[:20]
    # our emitted header is accepted by scapy with a correct checksum
    mine = I.Ipv4Header(A1, A2, 1, 4, ttl=9, ident=42, df=True, options=b"\x01\x01\x01\x00")
    pkt = IP(mine.emit() + b"ping")
    del pkt.chksum  # scapy recomputes it
    assert bytes(pkt)[:24] == mine.emit() and pkt.ttl == 9 and pkt.flags == "DF"


def test_padding_is_trimmed() -> None:
    _hdr, payload = I.parse(IP_UDP + b"\0" * 7)
    assert bytes(payload) == IP_UDP[20:]


def test_errors() -> None:
    for n in range(20):
        with pytest.raises(TruncatedError):
            I.parse(IP_UDP[:n])
    with pytest.raises(TruncatedError):
        I.parse(IP_UDP[:-1])
    with pytest.raises(TruncatedError):
        I.parse_fast(IP_UDP[:-1])
    bad = bytearray(IP_UDP)
    bad[8] = 63  # TTL changed, checksum not updated
    with pytest.raises(ChecksumError):
        I.parse(bad)
    with pytest.raises(ChecksumError):
        I.parse_fast(bad)
    assert I.parse(bad, verify_checksum=False)[0].ttl == 63
    with pytest.raises(SanityError):
        I.parse(b"\x65" + IP_UDP[1:])
    with pytest.raises(IntegrityError):
        I.parse(b"\x44" + IP_UDP[1:])
    with pytest.raises(IntegrityError):
        I.parse(IP_UDP[:2] + b"\x00\x10" + IP_UDP[4:])  # total length < header length
    assert not I.header_checksum_ok(bad) and I.header_checksum_ok(IP_UDP)


def test_addresses() -> None:
    assert I.addr_to_str(A1) == "192.0.2.1" and I.str_to_addr(" 192.0.2.1") == A1
    for bad in ("192.0.2", "192.0.2.256", "::1", "x"):
        with pytest.raises(AddressError, match="IPv4"):
            I.str_to_addr(bad)
    assert I.is_multicast(bytes([224, 0, 0, 1])) and not I.is_multicast(A1)
    assert I.is_broadcast(I.BROADCAST) and I.is_loopback(bytes([127, 0, 0, 1]))
    assert I.is_unspecified(I.ANY)


def _reassemble(frags: list[bytes]) -> tuple[I.Ipv4Header, bytes]:
    data = bytearray()
    parsed = [I.parse(f) for f in frags]
    for h, p in sorted(parsed, key=lambda hp: hp[0].frag_offset):
        assert h.frag_offset == len(data)
        data += p
    return parsed[0][0], bytes(data)


def test_fragment() -> None:
    payload = bytes(range(256)) * 12  # 3072 bytes
    hdr = I.Ipv4Header(A1, A2, I.PROTO_UDP, len(payload), ident=77,
                       options=bytes.fromhex("94040000") + bytes.fromhex("07070400000000"))
    frags = I.fragment(hdr, payload, 1500)
    assert len(frags) == 3 and all(len(f) <= 1500 for f in frags)
    first, rest = I.parse(frags[0])[0], [I.parse(f)[0] for f in frags[1:]]
    assert first.options == hdr.options + b"\0" and first.mf
    assert all(h.options == bytes.fromhex("94040000") for h in rest)  # only copied options
    assert rest[-1].mf is False and all(h.ident == 77 for h in rest)
    _, data = _reassemble(frags)
    assert data == payload
    # fits: unchanged
    assert I.fragment(hdr, payload[:100], 1500) == [
        I.Ipv4Header(A1, A2, 17, 100, ident=77, options=hdr.options).emit() + payload[:100]]
    with pytest.raises(ValueError, match="DF"):
        I.fragment(I.Ipv4Header(A1, A2, 17, 0, df=True), payload, 1500)
    with pytest.raises(ValueError, match="too small"):
        I.fragment(I.Ipv4Header(A1, A2, 17, 0), payload, 24)


def test_fragment_matches_scapy() -> None:
    from scapy.layers.inet import IP, fragment
    payload = bytes(range(256)) * 8
    ours = I.fragment(I.Ipv4Header(A1, A2, 17, len(payload), ident=5), payload, 576)
    orig = IP(src="192.0.2.1", dst="192.0.2.2", id=5, proto=17) / payload
    theirs = [bytes(p) for p in fragment(orig, fragsize=552)]  # type: ignore[no-untyped-call]
    assert ours == theirs


def test_refragment_keeps_offset_and_mf() -> None:
    payload = bytes(1000)
    hdr = I.Ipv4Header(A1, A2, 17, 1000, ident=3, mf=True, frag_offset=800)
    frags = [I.parse(f)[0] for f in I.fragment(hdr, payload, 420)]
    assert [h.frag_offset for h in frags] == [800, 1200, 1600]
    assert all(h.mf for h in frags)


def test_copied_options_malformed() -> None:
    with pytest.raises(SanityError):
        I.copied_options(b"\x94\x09\x00\x00")
    assert I.copied_options(b"\x01\x00\x94\x04") == b""


def test_parse_quoted() -> None:
    hdr, rest = I.parse_quoted(IP_UDP[:28])
    assert hdr.payload_len == 19 and bytes(rest) == IP_UDP[20:28]
    with pytest.raises(TruncatedError):
        I.parse_quoted(IP_OPTS[:22])


headers = st.builds(
    I.Ipv4Header, ip4, ip4, u8, st.integers(0, 65535 - 60), ttl=u8, ident=u16, df=st.booleans(),
    mf=st.booleans(), frag_offset=st.integers(0, 8191).map(lambda x: x * 8),
    dscp=st.integers(0, 63), ecn=st.integers(0, 3),
    options=st.integers(0, 10).flatmap(lambda k: st.binary(min_size=4 * k, max_size=4 * k)))


@settings(deadline=None)
@given(headers)
def test_round_trip(hdr: I.Ipv4Header) -> None:
    raw = hdr.emit() + bytes(hdr.payload_len)
    got, payload = I.parse(raw)
    assert got == hdr and len(payload) == hdr.payload_len
    assert I.parse_fast(raw)[:5] == (hdr.proto, hdr.src, hdr.dst, hdr.header_len, hdr.total_len)
    assert I.parse_quoted(raw)[0] == hdr


@settings(deadline=None)
@given(st.binary(max_size=80))
def test_random_bytes_only_raise_wire_error(data: bytes) -> None:
    for f in (I.parse, I.parse_fast, I.parse_quoted, I.copied_options):
        try:
            f(data)
        except WireError:
            pass


@settings(deadline=None)
@given(ip4, ip4, u8, st.integers(0, 65515), u8, u16, u16, u8)
def test_emit_fast_matches_dataclass(src: bytes, dst: bytes, proto: int, plen: int, ttl: int,
                                     ident: int, ff: int, tos: int) -> None:
    hdr = I.Ipv4Header(src, dst, proto, plen, ttl, ident, bool(ff & I.FLAG_DF),
                       bool(ff & I.FLAG_MF), (ff & I.FRAG_OFFSET_MASK) << 3, tos >> 2, tos & 3)
    assert I.emit_fast(src, dst, proto, plen, ttl, ident, ff & ~I.FLAG_RESERVED, tos) == hdr.emit()


@settings(deadline=None, max_examples=50)
@given(headers)
def test_emit_matches_scapy(hdr: I.Ipv4Header) -> None:
    from scapy.layers.inet import IP
    ref = IP(src=I.addr_to_str(hdr.src), dst=I.addr_to_str(hdr.dst), proto=hdr.proto,
             ttl=hdr.ttl, id=hdr.ident, flags=(2 if hdr.df else 0) | (1 if hdr.mf else 0),
             frag=hdr.frag_offset >> 3, tos=(hdr.dscp << 2) | hdr.ecn,
             len=hdr.total_len, options=hdr.options)
    assert bytes(ref)[:hdr.header_len] == hdr.emit()
