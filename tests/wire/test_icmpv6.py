"""ICMPv6, NDP and MLDv2: golden bytes (scapy-built, frozen), emit, round trip, errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ioth.wire import icmpv6 as M
from ioth.wire import ipv6 as V
from ioth.wire.errors import ChecksumError, SanityError, TruncatedError, WireError
from tests.wire.strategies import ip6, mac, u8, u16, u32

S = V.str_to_addr("2001:db8::1")
D = V.str_to_addr("2001:db8::2")
LL = V.str_to_addr("fe80::200:ff:fe00:1")
M1 = bytes.fromhex("020000000001")
H = "6000000000"  # prefix of the IPv6 headers below


def split(hexstr: str) -> tuple[V.Ipv6Header, memoryview]:
    """IPv6 header and the ICMPv6 message (after any Hop-by-Hop header)."""
    hdr, payload = V.parse(bytes.fromhex(hexstr))
    chain = V.walk(payload, hdr.next_header)
    assert chain.proto == V.NH_ICMPV6
    return hdr, payload[chain.offset:]


# All below: scapy-built IPv6 packets, frozen.
ECHO = ("60000000000d3a4020010db800000000000000000000000120010db80000000000000000000000028000fd38"
        "1234000570696e6736")
INNER = ("600000000012114020010db800000000000000000000000220010db800000000000000000000000114e9000"
         "90012350978787878787878787878")
UNREACH = ("6000000000423a4020010db800000000000000000000000120010db8000000000000000000000002"
           "010431db00000000" + INNER)
PTB = ("6000000000423a4020010db800000000000000000000000120010db800000000000000000000000202002bdf"
       "00000500" + INNER)
TE = ("6000000000423a4020010db800000000000000000000000120010db800000000000000000000000203012fde"
      "00000000" + INNER)
PP = ("6000000000423a4020010db800000000000000000000000120010db800000000000000000000000204012eb6"
      "00000028" + INNER)
RS = ("6000000000103afffe80000000000000020000fffe000001ff0200000000000000000000000000028500792c"
      "000000000101020000000001")
RA = ("6000000000903afffe80000000000000020000fffe000001ff02000000000000000000000000000186000a2d"
      "4088070800007530000003e8010102000000000105010000000005dc030440c00001518000003840000000"
      "0020010db8000100000000000000000000190500000000025820010db800000000000000000000005320010d"
      "b80000000000000000000000541f05000000000258076578616d706c6503636f6d000474657374076578616d"
      "706c65000000000000")
NS_DAD = ("6000000000183aff00000000000000000000000000000000ff0200000000000000000001ff00000287004ceb"
          "0000000020010db8000000000000000000000002")
NS = ("6000000000203aff20010db8000000000000000000000001ff0200000000000000000001ff00000287001c27"
      "0000000020010db80000000000000000000000020101020000000001")
NA = ("6000000000203aff20010db800000000000000000000000220010db800000000000000000000000188008a71"
      "6000000020010db80000000000000000000000020201020000000002")
REDIRECT = (
    "6000000000683afffe80000000000000020000fffe00000120010db80000000000000000000000018900a39d"
    "00000000fe80000000000000000000000000000120010db80005000000000000000000090201020000000003"
    "0407000000000000600000000008114020010db800000000000000000000000120010db80005000000000000"
    "00000009000100020008a45a")
MLD2 = ("6000000000580001fe80000000000000020000fffe000001ff0200000000000000000000000000163a00050200"
        "0001008f0014450000000204000000ff0200000000000000000001ff00000101000002ff0500000000000000"
        "0000000001000320010db800000000000000000000000720010db8000000000000000000000008")
MLDQ2 = ("6000000000240001fe800000000000000000000000000001ff0200000000000000000000000000013a000502"
         "00000100820056962710000000000000000000000000000000000000027d0000")


def check(hexstr: str, expected: M.Icmpv6Message, data: bytes = b"") -> None:
    hdr, msg = split(hexstr)
    got, d = M.parse(msg, hdr.src, hdr.dst)
    assert got == expected and bytes(d) == data
    assert expected.emit(hdr.src, hdr.dst, data) == msg
    assert str(got)


def test_golden_echo() -> None:
    check(ECHO, M.Echo(0x1234, 5), b"ping6")
    assert M.Echo(1, 2).make_reply() == M.Echo(1, 2, True)
    assert not M.is_error(M.Echo(1, 2))


def test_golden_errors() -> None:
    inner = bytes.fromhex(INNER)
    check(UNREACH, M.DestUnreachable(M.UNREACH_PORT), inner)
    check(PTB, M.PacketTooBig(1280), inner)
    check(TE, M.TimeExceeded(M.EXCEEDED_REASSEMBLY), inner)
    check(PP, M.ParamProblem(M.PARAM_UNKNOWN_NEXT_HEADER, 40), inner)
    assert M.is_error(M.PacketTooBig(1280))
    _, msg = split(UNREACH)
    quoted, rest = V.parse_quoted(M.parse(msg)[1])
    assert quoted.src == D and bytes(rest[:4]) == bytes.fromhex("14e90009")


def test_quote_limit() -> None:
    big = V.Ipv6Header(S, D, 17, 3000).emit() + bytes(3000)
    assert len(M.quote(big)) == 1232
    assert 40 + len(M.DestUnreachable(4).emit(S, D, M.quote(big))) == 1280


def test_golden_ndp() -> None:
    check(RS, M.RouterSolicit((M.LinkAddrOption(M1),)))
    ra = M.RouterAdvert(64, True, False, 1800, 30000, 1000, (
        M.LinkAddrOption(M1), M.MtuOption(1500),
        M.PrefixInfoOption(64, V.str_to_addr("2001:db8:1::"), 86400, 14400),
        M.RdnssOption(600, (V.str_to_addr("2001:db8::53"), V.str_to_addr("2001:db8::54"))),
        M.DnsslOption(600, ("example.com", "test.example"))), flags_extra=0x08)  # scapy: prf=1
    check(RA, ra)
    assert ra.source_lladdr == M1
    check(NS_DAD, M.NeighborSolicit(D))
    ns = M.NeighborSolicit(D, (M.LinkAddrOption(M1),))
    check(NS, ns)
    assert ns.source_lladdr == M1
    na = M.NeighborAdvert(D, False, True, True, (M.LinkAddrOption(bytes.fromhex(
        "020000000002"), target=True),))
    check(NA, na)
    assert na.target_lladdr == bytes.fromhex("020000000002")
    redirected = bytes.fromhex(REDIRECT)[-48:]
    check(REDIRECT, M.Redirect(V.str_to_addr("fe80::1"), V.str_to_addr("2001:db8:5::9"), (
        M.LinkAddrOption(bytes.fromhex("020000000003"), True),
        M.RedirectedHeaderOption(redirected))))


def test_golden_mld() -> None:
    check(MLD2, M.MldReport((
        M.McastRecord(M.CHANGE_TO_EXCLUDE, V.str_to_addr("ff02::1:ff00:1")),
        M.McastRecord(M.MODE_IS_INCLUDE, V.str_to_addr("ff05::1:3"),
                      (V.str_to_addr("2001:db8::7"), V.str_to_addr("2001:db8::8"))))))
    q = M.MldQuery(10000, V.UNSPECIFIED, True, False, 2, 125)
    check(MLDQ2, q)
    assert q.max_response_ms == 10000
    assert M.MldQuery(0x8000, V.UNSPECIFIED).max_response_ms == 0x1000 << 3
    v1 = M.MldQuery(1000, V.ALL_NODES, v2=False)
    assert M.parse(v1.emit(S, D), S, D)[0] == v1
    # the MLD report is sent with a Hop-by-Hop Router Alert
    assert bytes.fromhex(MLD2)[40:48] == V.router_alert_header(V.NH_ICMPV6)


def test_scapy_dissects_ours() -> None:
    from scapy.layers.inet6 import ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr, IPv6
    msg = M.NeighborSolicit(D, (M.LinkAddrOption(M1),)).emit(S, V.solicited_node(D))
    pkt = IPv6(V.Ipv6Header(S, V.solicited_node(D), 58, len(msg), 255).emit() + msg)
    assert pkt[ICMPv6ND_NS].tgt == "2001:db8::2"
    assert pkt[ICMPv6NDOptSrcLLAddr].lladdr == "02:00:00:00:00:01"
    ref = pkt.copy()
    del ref[ICMPv6ND_NS].cksum
    assert bytes(ref)[40:] == msg


def test_errors() -> None:
    hdr, msg = split(ECHO)
    for n in range(8):
        with pytest.raises(TruncatedError):
            M.parse(msg[:n])
    with pytest.raises(ChecksumError):
        M.parse(msg, hdr.src, S)  # pseudo-header mismatch
    bad = bytearray(msg)
    bad[-1] ^= 1
    with pytest.raises(ChecksumError):
        M.parse(bad, hdr.src, hdr.dst)
    assert M.parse(bad)[0] == M.Echo(0x1234, 5)
    _, ns = split(NS)
    with pytest.raises(SanityError):  # NDP with non-zero code
        M.parse(bytes(ns[:1]) + b"\x01" + bytes(ns[2:]))
    with pytest.raises(SanityError):  # zero-length option
        M.parse(bytes(ns[:25]) + b"\x00" + bytes(ns[26:]))
    with pytest.raises(TruncatedError):  # option overruns
        M.parse(bytes(ns[:25]) + b"\x02" + bytes(ns[26:]))
    for cut in (10, 20):
        with pytest.raises(TruncatedError):
            M.parse(ns[:cut])
    _, mld = split(MLD2)
    with pytest.raises(TruncatedError):
        M.parse(mld[:-1])
    with pytest.raises(SanityError):
        M.parse(M.MldQuery(1, V.ALL_NODES, v2=False).emit(S, D) + b"\0\0")
    with pytest.raises(SanityError):
        M.parse_options(bytes((M.OPT_MTU, 2)) + bytes(14))
    with pytest.raises(SanityError):
        M.parse_options(bytes((M.OPT_DNSSL, 2, 0, 0, 0, 0, 0, 1, 9)) + b"abc" + bytes(4))


def test_unknown_options_kept() -> None:
    raw = bytes((200, 1, 1, 2, 3, 4, 5, 6))
    assert M.parse_options(raw) == (M.UnknownOption(200, bytes(range(1, 7))),)
    assert M.UnknownOption(200, bytes(range(1, 7))).emit() == raw


addr_list = st.lists(ip6, max_size=3).map(tuple)
domain = st.lists(st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20),
                  min_size=1, max_size=3).map(".".join)
options = st.lists(st.one_of(
    st.builds(M.LinkAddrOption, mac, st.booleans()),
    st.builds(M.PrefixInfoOption, u8, ip6, u32, u32, st.booleans(), st.booleans()),
    st.builds(M.MtuOption, u32),
    st.builds(M.RdnssOption, u32, st.lists(ip6, min_size=1, max_size=3).map(tuple)),
    st.builds(M.DnsslOption, u32, st.lists(domain, min_size=1, max_size=3).map(tuple)),
    st.builds(M.RedirectedHeaderOption, st.integers(0, 5).flatmap(
        lambda k: st.binary(min_size=8 * k, max_size=8 * k))),
), max_size=4).map(tuple)
records = st.lists(st.builds(M.McastRecord, st.integers(1, 6), ip6, addr_list,
                             st.integers(0, 3).flatmap(
                                 lambda k: st.binary(min_size=4 * k, max_size=4 * k))),
                   max_size=3).map(tuple)
messages = st.one_of(
    st.builds(M.Echo, u16, u16, st.booleans()),
    st.builds(M.DestUnreachable, u8),
    st.builds(M.PacketTooBig, u32),
    st.builds(M.TimeExceeded, u8),
    st.builds(M.ParamProblem, u8, u32),
    st.builds(M.RouterSolicit, options),
    st.builds(M.RouterAdvert, u8, st.booleans(), st.booleans(), u16, u32, u32, options,
              st.integers(0, 63)),
    st.builds(M.NeighborSolicit, ip6, options),
    st.builds(M.NeighborAdvert, ip6, st.booleans(), st.booleans(), st.booleans(), options),
    st.builds(M.Redirect, ip6, ip6, options),
    st.builds(M.MldReport, records),
    st.builds(M.MldQuery, u16, ip6, st.just(True), st.booleans(), st.integers(0, 7), u8,
              addr_list),
    st.builds(M.MldQuery, u16, ip6, st.just(False)),
    st.builds(M.Other, st.sampled_from([0, 5, 100, 127, 131, 132, 138, 200, 255]), u8, u32),
)


@settings(deadline=None)
@given(messages, ip6, ip6)
def test_round_trip(msg: M.Icmpv6Message, src: bytes, dst: bytes) -> None:
    data = b"payload" if M.is_error(msg) or isinstance(msg, (M.Echo, M.Other)) else b""
    got, d = M.parse(msg.emit(src, dst, data), src, dst)
    assert got == msg and bytes(d) == data
    assert str(got)


@settings(deadline=None)
@given(st.binary(max_size=120), ip6, ip6)
def test_random_bytes_only_raise_wire_error(data: bytes, src: bytes, dst: bytes) -> None:
    for f in (lambda: M.parse(data), lambda: M.parse(data, src, dst),
              lambda: M.parse_options(data)):
        try:
            f()
        except WireError:
            pass


@settings(deadline=None)
@given(st.sampled_from([133, 134, 135, 136, 137, 130, 143]), st.binary(max_size=120))
def test_random_ndp_bodies_only_raise_wire_error(typ: int, body: bytes) -> None:
    try:
        M.parse(bytes((typ, 0, 0, 0)) + body)
    except WireError:
        pass


@settings(deadline=None, max_examples=40)
@given(u8, st.booleans(), st.booleans(), u16, u32, u32, mac, st.integers(0, 128), ip6, u32, u32,
       st.booleans(), st.booleans(), u32, st.lists(ip6, min_size=1, max_size=3), u32)
def test_router_advert_matches_scapy(hlim: int, managed: bool, other: bool, life: int,
                                     reach: int, retrans: int, lladdr: bytes, plen: int,
                                     prefix: bytes, valid: int, pref: int, on_link: bool,
                                     auto: bool, mtu: int, dns: list[bytes], dlife: int) -> None:
    from scapy.layers.inet6 import (
        ICMPv6ND_RA,
        ICMPv6NDOptMTU,
        ICMPv6NDOptPrefixInfo,
        ICMPv6NDOptRDNSS,
        ICMPv6NDOptSrcLLAddr,
        IPv6,
    )
    ra = M.RouterAdvert(hlim, managed, other, life, reach, retrans, (
        M.LinkAddrOption(lladdr), M.PrefixInfoOption(plen, prefix, valid, pref, on_link, auto),
        M.MtuOption(mtu), M.RdnssOption(dlife, tuple(dns))))
    ref = bytes(IPv6(src="fe80::1", dst="ff02::1")
                / ICMPv6ND_RA(chlim=hlim, M=int(managed), O=int(other), prf=0,
                              routerlifetime=life, reachabletime=reach, retranstimer=retrans)
                / ICMPv6NDOptSrcLLAddr(lladdr=lladdr.hex(":"))
                / ICMPv6NDOptPrefixInfo(prefixlen=plen, L=int(on_link), A=int(auto),
                                        validlifetime=valid, preferredlifetime=pref,
                                        prefix=V.addr_to_str(prefix))
                / ICMPv6NDOptMTU(mtu=mtu)
                / ICMPv6NDOptRDNSS(lifetime=dlife, dns=[V.addr_to_str(d) for d in dns]))
    assert ra.emit(V.str_to_addr("fe80::1"), V.ALL_NODES) == ref[40:]


@settings(deadline=None, max_examples=40)
@given(ip6, st.booleans(), st.booleans(), st.booleans(), mac)
def test_neighbor_advert_matches_scapy(target: bytes, r: bool, s: bool, o: bool,
                                       lladdr: bytes) -> None:
    from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6
    na = M.NeighborAdvert(target, r, s, o, (M.LinkAddrOption(lladdr, True),))
    ref = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2")
                / ICMPv6ND_NA(tgt=V.addr_to_str(target), R=int(r), S=int(s), O=int(o))
                / ICMPv6NDOptDstLLAddr(lladdr=lladdr.hex(":")))
    assert na.emit(S, D) == ref[40:]
