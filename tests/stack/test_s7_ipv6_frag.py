"""IPv6 reassembly drops a first fragment without the whole header chain (RFC 8200 4.5,
RFC 7112 5; Linux ipv6frag_thdr_truncated) with an ICMPv6 parameter problem, code 3,
pointer 0 (review s7 ip ipv6_fragment_header_chain), on a virtual clock."""

from __future__ import annotations

from typing import Any

from scapy.layers.inet import UDP  # type: ignore[import-untyped]
from scapy.layers.inet6 import (  # type: ignore[import-untyped]
    ICMPv6ParamProblem,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
)

from ioth.stack.core import StackCore
from ioth.stack.interface import Interface
from tests.stack.test_ipv6 import ME, frames, frm, learn_peer, one_stack

PEER6 = "2001:db8::2"


def _setup() -> tuple[StackCore, Interface, Any, bytes]:
    """A stack with a UDP endpoint on port 5000 and a datagram for it (after the IPv6
    header: 8 bytes of destination options, the UDP header, 200 bytes of data)."""
    core, iface = one_stack()
    learn_peer(core, iface)
    ep = core.udp.open(6, 17)
    core.udp.bind(ep, None, 5000)
    body = bytes(IPv6(src=PEER6, dst=ME, nh=60) / IPv6ExtHdrDestOpt(nh=17)
                 / UDP(sport=1, dport=5000) / (b"C" * 200))[40:]
    return core, iface, ep, body


def _frag(off: int, data: bytes, m: int, ident: int, nh: int = 60) -> bytes:
    return frm(IPv6(src=PEER6, dst=ME) / IPv6ExtHdrFragment(nh=nh, offset=off // 8, m=m,
                                                            id=ident) / data)


def test_first_fragment_cutting_the_upper_layer_header_is_dropped() -> None:
    core, iface, ep, body = _setup()
    core.input_frame(iface.index, _frag(0, body[:8], 1, 7), 10.0)  # the options only
    core.input_frame(iface.index, _frag(8, body[8:], 0, 7), 10.0)
    assert ep.pop() is None
    out = frames(iface)
    assert len(out) == 1 and out[0].haslayer(ICMPv6ParamProblem)
    pp = out[0][ICMPv6ParamProblem]
    assert (pp.code, pp.ptr) == (3, 0) and out[0][IPv6].dst == PEER6
    assert core.counters["ipv6.rx_fragment_chain_truncated"] == 1
    # a first fragment that holds the whole chain and the UDP header: reassembled
    core.input_frame(iface.index, _frag(0, body[:16], 1, 8), 11.0)
    core.input_frame(iface.index, _frag(16, body[16:], 0, 8), 11.0)
    got = ep.pop()
    assert got is not None and got[0] == b"C" * 200
    assert frames(iface) == []


def test_first_fragment_with_a_cut_tcp_header_is_dropped() -> None:
    """The review's case: a Destination Options header and 16 bytes of a TCP header."""
    core, iface, _, _ = _setup()
    body = bytes(IPv6ExtHdrDestOpt(nh=6)) + bytes(range(16)) + b"\0" * 8
    core.input_frame(iface.index, _frag(0, body[:24], 1, 9), 10.0)
    out = frames(iface)
    assert len(out) == 1 and out[0][ICMPv6ParamProblem].code == 3
    assert core.ip6.reasm.stats["fragments"] == 0
