"""ICMPv4: golden bytes (scapy-built, frozen), emit, round trip, errors with quoted datagrams."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ioth.wire import icmpv4 as M
from ioth.wire import ipv4 as I
from ioth.wire import udp as U
from ioth.wire.errors import ChecksumError, TruncatedError, WireError
from tests.wire.strategies import u8, u16, u32

# scapy: ICMP(type=8, id=0x4242, seq=7)/b"abcdefgh"
ECHO = bytes.fromhex("08002421424200076162636465666768")
# scapy: ICMP(type=0, id=0, seq=0): the all-zero sum gives checksum 0xffff
ECHO_ZERO = bytes.fromhex("0000ffff00000000")
# scapy: IP(192.0.2.1 > 198.51.100.7, id=5, DF)/UDP(4000, 53)/(b"q" * 100)
INNER = bytes.fromhex(
    "450000800005400040114e2cc0000201c63364070fa00035006cdadc" + "71" * 100)
# scapy: ICMP(type=3, code=4, nexthopmtu=1400)/INNER[:28]
FRAG_NEEDED = bytes.fromhex(
    "03040c6600000578450000800005400040114e2cc0000201c63364070fa00035006cdadc")
# scapy: ICMP(type=11, code=0)/INNER[:28]
TIME_EXCEEDED = bytes.fromhex(
    "0b0009e200000000450000800005400040114e2cc0000201c63364070fa00035006cdadc")
# scapy: ICMP(type=12, code=0, ptr=9)/INNER[:28]
PARAM_PROBLEM = bytes.fromhex(
    "0c00ffe109000000450000800005400040114e2cc0000201c63364070fa00035006cdadc")


def test_golden_echo() -> None:
    msg, data = M.parse(ECHO)
    assert msg == M.Echo(0x4242, 7) and bytes(data) == b"abcdefgh"
    assert msg.emit(b"abcdefgh") == ECHO
    assert msg.make_reply() == M.Echo(0x4242, 7, reply=True)
    assert str(msg) == "ICMPv4 echo request id=16962 seq=7"
    assert M.parse(ECHO_ZERO)[0] == M.Echo(0, 0, True)
    assert M.Echo(0, 0, True).emit() == ECHO_ZERO
    assert not M.is_error(msg)


def test_golden_errors() -> None:
    q = M.quote(INNER, 28)
    assert M.DestUnreachable(M.UNREACH_FRAG_NEEDED, 1400).emit(q) == FRAG_NEEDED
    assert M.TimeExceeded(M.EXCEEDED_TTL).emit(q) == TIME_EXCEEDED
    assert M.ParamProblem(9).emit(q) == PARAM_PROBLEM
    msg, data = M.parse(FRAG_NEEDED)
    assert msg == M.DestUnreachable(4, 1400) and M.is_error(msg) and "mtu=1400" in str(msg)
    inner, transport = I.parse_quoted(data)
    assert inner.dst == bytes([198, 51, 100, 7]) and inner.proto == I.PROTO_UDP
    assert (transport[0] << 8 | transport[1], transport[2] << 8 | transport[3]) == (4000, 53)
    assert M.parse(TIME_EXCEEDED)[0] == M.TimeExceeded(0)
    assert M.parse(PARAM_PROBLEM)[0] == M.ParamProblem(9)


def test_quote_limit() -> None:
    big = I.Ipv4Header(b"\xc0\0\2\1", b"\xc0\0\2\2", 17, 1400).emit() + bytes(1400)
    q = M.quote(big)
    assert len(q) == 548 and len(M.DestUnreachable(M.UNREACH_PORT).emit(q)) + 20 == 576
    assert M.quote(INNER) == INNER


def test_scapy_cross_check() -> None:
    from scapy.layers.inet import ICMP, IPerror, UDPerror
    # our port-unreachable is dissected by scapy with a good checksum and the quoted UDP header
    src, dst = bytes([198, 51, 100, 7]), bytes([192, 0, 2, 1])
    udp = U.UdpHeader(4000, 53)
    payload = b"query"
    dgram = I.Ipv4Header(dst, src, 17, 13, ident=1).emit() + udp.emit(payload, dst, src) + payload
    raw = M.DestUnreachable(M.UNREACH_PORT).emit(M.quote(dgram))
    pkt = ICMP(raw)
    assert pkt.type == 3 and pkt.code == 3
    ref = pkt.copy()
    del ref.chksum
    assert bytes(ref) == raw
    assert pkt[IPerror].src == "192.0.2.1" and pkt[UDPerror].dport == 53
    # a scapy-built timestamp request parses as Other
    other = bytes(ICMP(type=13, id=1, seq=2) / bytes(12))
    msg, data = M.parse(other)
    assert msg == M.Other(13, 0, 0x00010002) and len(data) == len(other) - 8


def test_errors() -> None:
    for n in range(8):
        with pytest.raises(TruncatedError):
            M.parse(ECHO[:n])
    bad = bytearray(ECHO)
    bad[-1] ^= 1
    with pytest.raises(ChecksumError):
        M.parse(bad)
    assert M.parse(bad, verify_checksum=False)[0] == M.Echo(0x4242, 7)
    # echo with a non-zero code is kept as Other
    odd = M.Other(8, 1, 5).emit(b"x")
    assert M.parse(odd)[0] == M.Other(8, 1, 5)


messages = st.one_of(
    st.builds(M.Echo, u16, u16, st.booleans()),
    st.builds(M.DestUnreachable, u8, u16),
    st.builds(M.TimeExceeded, u8),
    st.builds(M.ParamProblem, u8, u8),
    st.builds(M.Other, u8.filter(lambda t: t not in (0, 3, 8, 11, 12)), u8, u32),
)


@settings(deadline=None)
@given(messages, st.binary(max_size=1200))
def test_round_trip(msg: M.Icmpv4Message, data: bytes) -> None:
    got, d = M.parse(msg.emit(data))
    assert got == msg and bytes(d) == data
    assert str(got)


@settings(deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_only_raise_wire_error(data: bytes) -> None:
    for verify in (True, False):
        try:
            M.parse(data, verify)
        except WireError:
            pass
