"""IPv6 fixed header and extension header walker: golden bytes (scapy-built, frozen), errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ioth.wire import ipv6 as V
from ioth.wire.errors import (
    AddressError,
    ParameterProblemError,
    SanityError,
    TruncatedError,
    WireError,
)
from tests.wire.strategies import ip6, u8

S = bytes.fromhex("20010db8000000000000000000000001")
D = bytes.fromhex("20010db8000000000000000000000002")
# scapy: IPv6(src=S, dst=D, tc=0xb8, fl=0x12345, hlim=7)/UDP(1000, 2000)/b"data"
V6UDP = bytes.fromhex(
    "6b812345000c110720010db800000000000000000000000120010db80000000000000000000000020"
    "3e807d0000cbfe664617461")
# scapy: IPv6/HopByHop(RouterAlert)/DestOpt(PadN 4)/Routing(segleft=0)/UDP(1, 2)
V6CHAIN = bytes.fromhex(
    "600000000020004020010db800000000000000000000000120010db8000000000000000000000002"
    "3c000502000001002b000104000000001100000000000000000100020008a466")
# scapy: IPv6/IPv6ExtHdrFragment(nh=17, offset=185, m=1, id=0xdeadbeef)/(b"f" * 16)
V6FRAG = bytes.fromhex(
    "6000000000182c4020010db800000000000000000000000120010db8000000000000000000000002"
    "110005c9deadbeef66666666666666666666666666666666")


def test_golden_header() -> None:
    hdr, payload = V.parse(V6UDP)
    assert hdr == V.Ipv6Header(S, D, V.NH_UDP, 12, 7, 0xB8, 0x12345)
    assert hdr.emit() == V6UDP[:40] and bytes(payload) == V6UDP[40:]
    assert V.parse_fast(V6UDP) == (17, S, D, 12, 7)
    assert str(hdr) == "IPv6 2001:db8::1 > 2001:db8::2 nh=17 len=12 hlim=7"
    assert V.walk(payload, hdr.next_header) == V.ExtChain(17, 0)
    assert bytes(V.parse(V6UDP + b"\0\0")[1]) == V6UDP[40:]  # link padding dropped


def test_golden_chain() -> None:
    hdr, payload = V.parse(V6CHAIN)
    chain = V.walk(payload, hdr.next_header)
    assert chain == V.ExtChain(V.NH_UDP, 24, 40 + 16, None, -1, 0)
    assert bytes(payload[chain.offset:chain.offset + 4]) == b"\x00\x01\x00\x02"
    assert V.router_alert_header(V.NH_DSTOPTS) == payload[:8]
    assert V.emit_options_header(V.NH_ROUTING, [(V.OPT_PADN, bytes(4))]) == payload[8:16]


def test_golden_fragment() -> None:
    hdr, payload = V.parse(V6FRAG)
    chain = V.walk(payload, hdr.next_header)
    assert chain.fragment == V.FragmentHeader(17, 1480, True, 0xDEADBEEF)
    assert (chain.proto, chain.offset, chain.frag_offset, chain.nh_pointer) == (17, 8, 0, 40)
    assert chain.fragment.emit() == payload[:8] and not chain.fragment.is_atomic
    assert "off=1480+" in str(chain.fragment)


def _dstopts(opt: bytes, nh: int = V.NH_UDP) -> bytes:
    return V.emit_options_header(nh, [(opt[0], opt[2:])])


@pytest.mark.parametrize(("otype", "multicast", "send"), [
    (0x7E, False, False), (0xBE, False, True), (0xBE, True, True), (0xFE, False, True),
    (0xFE, True, False)])
def test_unknown_option_actions(otype: int, multicast: bool, send: bool) -> None:
    ext = b"\x11\x00" + bytes((otype, 2)) + b"\xaa\xbb\x01\x00" + bytes(8)
    with pytest.raises(ParameterProblemError) as exc:
        V.walk(ext, V.NH_DSTOPTS, dst_multicast=multicast)
    assert exc.value.code == V.PARAM_UNKNOWN_OPTION and exc.value.pointer == 42
    assert exc.value.send_icmp is send


def test_skippable_option_and_padding() -> None:
    ext = b"\x11\x00" + b"\x3e\x02\xaa\xbb" + b"\x00\x00" + bytes(8)  # 00-action option, Pad1 x2
    assert V.walk(ext, V.NH_DSTOPTS) == V.ExtChain(17, 8, 40, None, -1, None)


def test_hop_by_hop_not_first() -> None:
    ext = V.emit_options_header(V.NH_HOPOPT, []) + V.emit_options_header(17, [])
    with pytest.raises(ParameterProblemError) as exc:
        V.walk(ext, V.NH_DSTOPTS)
    assert exc.value.code == V.PARAM_UNKNOWN_NEXT_HEADER and exc.value.pointer == 40


def test_routing_with_segments_left() -> None:
    ext = bytes((17, 2, 0, 1)) + bytes(4) + S  # type 0, one segment left
    with pytest.raises(ParameterProblemError) as exc:
        V.walk(ext, V.NH_ROUTING)
    assert exc.value.code == 0 and exc.value.pointer == 42


def test_truncated() -> None:
    for n in range(40):
        with pytest.raises(TruncatedError):
            V.parse(V6UDP[:n])
    with pytest.raises(TruncatedError):
        V.parse(V6UDP[:-1])
    with pytest.raises(TruncatedError):
        V.parse_fast(V6UDP[:-1])
    with pytest.raises(SanityError):
        V.parse(b"\x45" + V6UDP[1:])
    payload = V6CHAIN[40:]
    for n in (0, 4, 7, 12, 20):
        with pytest.raises(TruncatedError):
            V.walk(payload[:n], V.NH_HOPOPT)
    with pytest.raises(TruncatedError):
        V.walk(b"\x11\x00\x01\x08" + bytes(4), V.NH_DSTOPTS)  # PadN overruns the header
    with pytest.raises(TruncatedError):
        V.walk(V6FRAG[40:44], V.NH_FRAGMENT)


def test_quoted() -> None:
    hdr, rest = V.parse_quoted(V6UDP[:48])
    assert hdr.payload_len == 12 and len(rest) == 8
    with pytest.raises(TruncatedError):
        V.parse_quoted(V6UDP[:39])


def test_addresses() -> None:
    from scapy.utils6 import in6_getnsma, in6_mactoifaceid
    assert V.addr_to_str(S) == "2001:db8::1" and V.str_to_addr("2001:db8::2") == D
    for bad in ("2001:db8::1::2", "192.0.2.1", "fe80::1%eth0", "g::1"):
        with pytest.raises(AddressError, match="IPv6"):
            V.str_to_addr(bad)
    assert V.solicited_node(D) == in6_getnsma(D)
    mac = bytes.fromhex("020000abcdef")
    ll = V.link_local_from_mac(mac)
    assert ll == V.str_to_addr("fe80::" + in6_mactoifaceid("02:00:00:ab:cd:ef"))
    assert V.is_link_local(ll) and not V.is_link_local(S)
    assert V.is_multicast(V.ALL_NODES) and V.is_unspecified(V.UNSPECIFIED)


def test_fragment() -> None:
    payload = bytes(range(256)) * 11
    frags = V.fragment(V.Ipv6Header(S, D, V.NH_UDP, 0), payload, 1280, 0x1234)
    assert len(frags) == 3 and all(len(f) <= 1280 for f in frags)
    data = b""
    for i, f in enumerate(frags):
        hdr, p = V.parse(f)
        chain = V.walk(p, hdr.next_header)
        assert chain.fragment is not None and chain.fragment.ident == 0x1234
        assert chain.fragment.offset == len(data) and chain.fragment.more == (i < 2)
        assert chain.proto == V.NH_UDP
        data += bytes(p[chain.offset:])
    assert data == payload
    assert V.fragment(V.Ipv6Header(S, D, 17, 0), b"abc", 1280, 1) == [
        V.Ipv6Header(S, D, 17, 3).emit() + b"abc"]
    with pytest.raises(ValueError):
        V.fragment(V.Ipv6Header(S, D, 17, 0), payload, 50, 1)


def test_scapy_parses_our_fragments() -> None:
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, defragment6
    payload = bytes(range(256)) * 8
    frags = V.fragment(V.Ipv6Header(S, D, V.NH_UDP, 0), payload, 1280, 77)
    pkts = [IPv6(f) for f in frags]
    assert all(p[IPv6ExtHdrFragment].id == 77 for p in pkts)
    whole = defragment6(pkts)  # type: ignore[no-untyped-call]
    assert bytes(whole)[40:] == payload


headers = st.builds(V.Ipv6Header, ip6, ip6, u8, st.integers(0, 300), u8, u8,
                    st.integers(0, 0xFFFFF))


@settings(deadline=None)
@given(headers)
def test_round_trip(hdr: V.Ipv6Header) -> None:
    raw = hdr.emit() + bytes(hdr.payload_len)
    assert V.parse(raw) == (hdr, memoryview(bytes(hdr.payload_len)))
    assert V.parse_quoted(raw)[0] == hdr


opts = st.lists(st.tuples(st.sampled_from([0x1E, 0x3E, V.OPT_ROUTER_ALERT]),
                          st.binary(max_size=10)), max_size=4)


@settings(deadline=None)
@given(opts, opts, st.integers(0, 0xFFFFFFFF), st.integers(0, 8191), st.booleans())
def test_chain_round_trip(o1: list[tuple[int, bytes]], o2: list[tuple[int, bytes]],
                          ident: int, off: int, more: bool) -> None:
    fh = V.FragmentHeader(V.NH_TCP, off * 8, more, ident)
    chain = (V.emit_options_header(V.NH_DSTOPTS, o1) + V.emit_options_header(V.NH_FRAGMENT, o2)
             + fh.emit())
    got = V.walk(chain, V.NH_HOPOPT)
    assert got.fragment == fh and got.offset == len(chain) and got.proto == V.NH_TCP
    assert got.frag_offset == len(chain) - 8


@settings(deadline=None)
@given(st.binary(max_size=80), st.sampled_from([0, 43, 44, 60, 17]), st.booleans())
def test_random_bytes_only_raise_wire_error(data: bytes, nh: int, mc: bool) -> None:
    for f in (V.parse, V.parse_fast, V.parse_quoted, lambda d: V.walk(d, nh, mc)):
        try:
            f(data)
        except WireError:
            pass


@settings(deadline=None)
@given(headers)
def test_emit_fast_matches_dataclass(hdr: V.Ipv6Header) -> None:
    assert V.emit_fast(hdr.src, hdr.dst, hdr.next_header, hdr.payload_len, hdr.hop_limit,
                       hdr.traffic_class, hdr.flow_label) == hdr.emit()
