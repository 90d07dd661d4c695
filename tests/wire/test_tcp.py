"""TCP header and options: golden bytes (scapy-built, frozen), fast path, round trip, errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ioth.wire import ipv4 as I
from ioth.wire import ipv6 as V
from ioth.wire import tcp as T
from ioth.wire.errors import ChecksumError, IntegrityError, SanityError, TruncatedError, WireError
from tests.wire.strategies import ip4, ip6, port, u16, u32

A1 = bytes([192, 0, 2, 1])
A2 = bytes([192, 0, 2, 2])
S6 = V.str_to_addr("2001:db8::1")
D6 = V.str_to_addr("2001:db8::2")

# scapy-built IP packets, frozen.
SYN = ("4500003c000100004006f6b7c0000201c00002029c400050000003e800000000a002faf046510000020405b4"
       "0402080a0001e2400000000001030307")
SYNACK6 = ("600000000020064020010db800000000000000000000000220010db80000000000000000000000010050"
           "9c4000001388000003e98012fe8861140000020405a00101040201030309")
DATA = ("45000046000100004006f6adc0000201c00002029c400050000003e900001389801801f6f520000001010"
        "80a0001e2440001869f474554202f20485454502f312e300d0a0d0a")
SACK = ("45000048000100004006f6abc0000202c000020100509c4000001389000003e9d01001fdafdb0000010108"
        "0a000000010000000201010512000007d100000bb900000fa100001389")
RST = ("45000028000100004006f6cbc0000202c000020100509c4000000000000003e9501400008b530000")


def seg4(hexstr: str) -> tuple[bytes, bytes, memoryview]:
    hdr, payload = I.parse(bytes.fromhex(hexstr))
    return hdr.src, hdr.dst, payload


def test_golden_syn() -> None:
    src, dst, seg = seg4(SYN)
    hdr, payload = T.parse(seg, src, dst)
    want = T.TcpHeader(40000, 80, 1000, 0, T.SYN, 64240, mss=1460, wscale=7,
                       sack_permitted=True, timestamps=(123456, 0))
    assert hdr == want and len(payload) == 0
    assert want.emit(b"", src, dst) == seg
    assert want.header_len == 40
    assert str(hdr) == ("TCP 40000 > 80 [S] seq=1000 ack=0 win=64240 "
                        "[mss 1460, sackOK, TS val 123456 ecr 0, wscale 7]")
    assert T.parse_fast(seg, src, dst) == (40000, 80, 1000, 0, T.SYN, 64240, 40)
    assert T.timestamps(seg, 40) == (123456, 0)
    assert T.parse_options(seg[20:40]).mss == 1460


def test_golden_synack_v6() -> None:
    hdr6, seg = V.parse(bytes.fromhex(SYNACK6))
    hdr, _ = T.parse(seg, hdr6.src, hdr6.dst)
    want = T.TcpHeader(80, 40000, 5000, 1001, T.SYN | T.ACK, 65160, mss=1440, wscale=9,
                       sack_permitted=True)
    assert hdr == want and want.emit(b"", hdr6.src, hdr6.dst) == seg
    assert T.timestamps(seg, 32) is None
    assert T.flags_to_str(hdr.flags) == "S."


def test_golden_data() -> None:
    src, dst, seg = seg4(DATA)
    hdr, payload = T.parse(seg, src, dst)
    assert bytes(payload) == b"GET / HTTP/1.0\r\n\r\n"
    assert hdr == T.TcpHeader(40000, 80, 1001, 5001, T.PSH | T.ACK, 502,
                              timestamps=(123460, 99999))
    assert hdr.emit(payload, src, dst) == seg[:32]
    fast = T.emit_fast(40000, 80, 1001, 5001, T.PSH | T.ACK, 502, payload, src, dst,
                       T.ts_option(123460, 99999))
    assert fast == seg[:32]
    assert T.parse_fast(seg, src, dst)[6] == 32 and T.timestamps(seg, 32) == (123460, 99999)


def test_golden_sack_and_rst() -> None:
    src, dst, seg = seg4(SACK)
    hdr, _ = T.parse(seg, src, dst)
    assert hdr.sack_blocks == ((2001, 3001), (4001, 5001)) and hdr.timestamps == (1, 2)
    assert hdr.emit(b"", src, dst) == seg
    assert T.timestamps(seg, 52) == (1, 2)
    assert "sack 2001:3001 4001:5001" in str(hdr)
    src, dst, seg = seg4(RST)
    hdr, _ = T.parse(seg, src, dst)
    assert hdr == T.TcpHeader(80, 40000, 0, 1001, T.RST | T.ACK, 0)
    assert hdr.emit(b"", src, dst) == seg and T.flags_to_str(0) == "none"


def test_scapy_parses_ours() -> None:
    from scapy.layers.inet import IP, TCP
    hdr = T.TcpHeader(1, 2, 0xFFFFFFFF, 7, T.SYN | T.ECE | T.CWR, 1000, mss=536, wscale=14,
                      timestamps=(5, 6), other_options=((30, b"\x01\x02"),))
    payload = b"x" * 1001
    seg = hdr.emit(payload, A1, A2) + payload
    ip = I.Ipv4Header(A1, A2, 6, len(seg)).emit()
    pkt = IP(ip + seg)
    opts = dict((k, v) for k, v in pkt[TCP].options if k != "NOP")
    assert opts["MSS"] == 536 and opts["WScale"] == 14 and opts["Timestamp"] == (5, 6)
    ref = pkt.copy()
    del ref[TCP].chksum
    assert bytes(ref) == ip + seg
    assert T.parse(seg, A1, A2)[0] == hdr


def test_errors() -> None:
    src, dst, seg = seg4(DATA)
    for n in range(20):
        with pytest.raises(TruncatedError):
            T.parse(seg[:n])
        with pytest.raises(TruncatedError):
            T.parse_fast(seg[:n], src, dst)
    with pytest.raises(TruncatedError):
        T.parse(seg[:30])
    with pytest.raises(TruncatedError):
        T.parse_fast(seg[:30], src, dst)
    with pytest.raises(IntegrityError):
        T.parse(bytes(seg[:12]) + b"\x40" + bytes(seg[13:]))
    with pytest.raises(IntegrityError):
        T.parse_fast(bytes(seg[:12]) + b"\x40" + bytes(seg[13:]), src, dst)
    bad = bytearray(seg)
    bad[-1] ^= 0x20
    with pytest.raises(ChecksumError):
        T.parse(bad, src, dst)
    with pytest.raises(ChecksumError):
        T.parse_fast(bad, src, dst)
    with pytest.raises(ChecksumError):
        T.parse(seg, src, A1)
    assert T.parse(bad)[0].seq == 1001
    # malformed options
    base = T.TcpHeader(1, 2, 3, 4, T.ACK, 5)
    for opts in (b"\x02\x01\x00\x00", b"\x02\x09\x00\x00", b"\x01\x01\x01\x08"):
        raw = T.emit_fast(1, 2, 3, 4, T.ACK, 5, b"", A1, A2, opts)
        with pytest.raises(SanityError):
            T.parse(raw)
    # known kinds with odd lengths are kept raw; EOL stops the parse
    raw = T.emit_fast(1, 2, 3, 4, T.ACK, 5, b"", A1, A2, b"\x02\x03\x05\x00\x00\x02\x04\x00")
    assert T.parse(raw)[0] == T.TcpHeader(1, 2, 3, 4, T.ACK, 5, other_options=((2, b"\x05"),))
    assert base.header_len == 20
    with pytest.raises(ValueError):
        T.TcpHeader(1, 2, 3, 4, 0, 0, timestamps=(1, 1),
                    sack_blocks=((1, 2), (3, 4), (5, 6), (7, 8))).options_bytes()


def _fits(h: T.TcpHeader) -> bool:
    try:
        h.options_bytes()
    except ValueError:
        return False
    return True


sack_blocks = st.lists(st.tuples(u32, u32), max_size=2).map(tuple)
others = st.lists(st.tuples(st.sampled_from([6, 7, 19, 28, 30, 34, 254]),
                            st.binary(max_size=4)), max_size=1).map(tuple)
headers = st.builds(
    T.TcpHeader, port, port, u32, u32, st.integers(0, T.FLAGS_MASK), u16, u16,
    st.none() | u16, st.none() | st.integers(0, 255), st.booleans(), sack_blocks,
    st.none() | st.tuples(u32, u32), others).filter(lambda h: _fits(h))


@settings(deadline=None)
@given(headers, st.binary(max_size=1500), st.one_of(st.tuples(ip4, ip4), st.tuples(ip6, ip6)))
def test_round_trip(hdr: T.TcpHeader, data: bytes, addrs: tuple[bytes, bytes]) -> None:
    raw = hdr.emit(data, *addrs) + data
    got, payload = T.parse(raw, *addrs)
    assert got == hdr and bytes(payload) == data
    fast = T.parse_fast(raw, *addrs)
    assert fast == (hdr.src_port, hdr.dst_port, hdr.seq, hdr.ack, hdr.flags, hdr.window,
                    hdr.header_len)
    assert T.timestamps(raw, fast[6]) == hdr.timestamps
    assert str(got)


@settings(deadline=None)
@given(st.binary(max_size=80), st.one_of(st.tuples(ip4, ip4), st.tuples(ip6, ip6)))
def test_random_bytes_only_raise_wire_error(data: bytes, addrs: tuple[bytes, bytes]) -> None:
    for f in (lambda: T.parse(data), lambda: T.parse(data, *addrs),
              lambda: T.parse_fast(data, *addrs), lambda: T.parse_options(data),
              lambda: T.timestamps(data, min(len(data), 60))):
        try:
            f()
        except WireError:
            pass


def _scapy_options(h: T.TcpHeader) -> list[tuple[str, object]]:
    """The same options, in the order TcpHeader emits them, as scapy option tuples."""
    out: list[tuple[str, object]] = []
    if h.mss is not None:
        out.append(("MSS", h.mss))
    if h.timestamps is not None:
        out += [("SAckOK", b"")] if h.sack_permitted else [("NOP", None), ("NOP", None)]
        out.append(("Timestamp", h.timestamps))
    elif h.sack_permitted:
        out += [("NOP", None), ("NOP", None), ("SAckOK", b"")]
    if h.wscale is not None:
        out += [("NOP", None), ("WScale", h.wscale)]
    if h.sack_blocks:
        out += [("NOP", None), ("NOP", None),
                ("SAck", tuple(x for blk in h.sack_blocks for x in blk))]
    return out


@settings(deadline=None, max_examples=50)
@given(headers.map(lambda h: T.TcpHeader(h.src_port, h.dst_port, h.seq, h.ack, h.flags & 0x1FF,
                                         h.window, h.urgent, h.mss, h.wscale, h.sack_permitted,
                                         h.sack_blocks, h.timestamps)),
       st.binary(max_size=600))
def test_emit_matches_scapy(hdr: T.TcpHeader, data: bytes) -> None:
    from scapy.layers.inet import IP, TCP
    ref = bytes(IP(src="192.0.2.1", dst="192.0.2.2")
                / TCP(sport=hdr.src_port, dport=hdr.dst_port, seq=hdr.seq, ack=hdr.ack,
                      flags=hdr.flags, window=hdr.window, urgptr=hdr.urgent,
                      options=_scapy_options(hdr)) / data)
    assert hdr.emit(data, A1, A2) == ref[20:20 + hdr.header_len]
