"""IPv6, NDP, DAD, MLDv2, ICMPv6 and UDP over IPv6 on a virtual clock (scapy as the oracle)."""

from __future__ import annotations

import errno
import random

from scapy.layers.inet import UDP  # type: ignore[import-untyped]
from scapy.layers.inet6 import (  # type: ignore[import-untyped]
    HBHOptUnknown,
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6MLReport2,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RA,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptMTU,
    ICMPv6NDOptPrefixInfo,
    ICMPv6NDOptSrcLLAddr,
    ICMPv6PacketTooBig,
    ICMPv6ParamProblem,
    ICMPv6TimeExceeded,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
)
from scapy.layers.l2 import Ether  # type: ignore[import-untyped]

from ioth.stack.core import StackCore
from ioth.stack.interface import DUPLICATE, PREFERRED, TENTATIVE, Interface
from ioth.stack.neighbour import DELAY, PROBE, REACHABLE, STALE
from tests.stack.harness import VirtualNet, ip

MAC = "02:00:00:00:00:01"
PEER = "02:00:00:00:00:99"
LL = "fe80::ff:fe00:1"  # EUI-64 of MAC
ME = "2001:db8::1"


def one_stack(settle: bool = True, forwarding: bool = False) -> tuple[StackCore, Interface]:
    core = StackCore(random.Random(5))
    core.forwarding = forwarding
    iface = core.add_interface("vde0", bytes.fromhex(MAC.replace(":", "")))
    core.set_up(iface.index, True, 0.0)
    core.ip6.add_addr(iface.index, ip(ME), 64, 0.0)
    if settle:
        advance(core, 0.0, 5.0)
        iface.txq.clear()
    return core, iface


def advance(core: StackCore, start: float, end: float) -> None:
    """Run the core's timers at their own deadlines from ``start`` to ``end``."""
    while (d := core.next_deadline()) is not None and d <= end:
        core.poll(max(d, start))


def frames(iface: Interface) -> list[Ether]:
    out = [Ether(f) for f in iface.txq]
    iface.txq.clear()
    return out


def frm(pkt: IPv6, dst: str = MAC) -> bytes:
    return bytes(Ether(src=PEER, dst=dst) / pkt)


def learn_peer(core: StackCore, iface: Interface, addr: str = "2001:db8::2") -> None:
    core.ip6.ndp.cache.add_static(iface.index, ip(addr), bytes.fromhex("020000000099"), 0)


def test_link_local_dad_mld_then_preferred() -> None:
    core, iface = one_stack(settle=False)
    addrs = {str(a): a for a in iface.addrs6}
    assert f"{LL}/64" in addrs and addrs[f"{LL}/64"].state == TENTATIVE
    advance(core, 0.0, 0.99)
    out = frames(iface)
    dad = [f for f in out if f.haslayer(ICMPv6ND_NS)]
    assert {f[ICMPv6ND_NS].tgt for f in dad} == {LL, ME}
    assert all(f[IPv6].src == "::" and f[IPv6].hlim == 255 and not f.haslayer(
        ICMPv6NDOptSrcLLAddr) for f in dad)
    assert {f[IPv6].dst for f in dad} == {"ff02::1:ff00:1"}
    advance(core, 0.99, 3.0)
    assert all(a.state == PREFERRED for a in iface.addrs6)
    out += frames(iface)
    reports = [f for f in out if f.haslayer(ICMPv6MLReport2)]
    assert reports and all(f[IPv6].dst == "ff02::16" and f[IPv6].hlim == 1 and f.haslayer(
        IPv6ExtHdrHopByHop) for f in reports)
    groups = {r.dst for f in reports for r in f[ICMPv6MLReport2].records}
    assert "ff02::1:ff00:1" in groups and "ff02::1" not in groups
    assert any(f[IPv6].src == LL for f in reports)
    assert core.counters["ndp.dad_ok"] == 2


def test_dad_detects_duplicate_from_na_and_from_foreign_probe() -> None:
    core, iface = one_stack(settle=False)
    na = IPv6(src="fe80::99", dst="ff02::1", hlim=255) / ICMPv6ND_NA(
        tgt=ME, R=0, S=0, O=1) / ICMPv6NDOptDstLLAddr(lladdr=PEER)
    core.input_frame(iface.index, frm(na, "33:33:00:00:00:01"), 0.5)
    probe = IPv6(src="::", dst="ff02::1:ff00:1", hlim=255) / ICMPv6ND_NS(tgt=LL)
    core.input_frame(iface.index, frm(probe, "33:33:ff:00:00:01"), 0.5)
    states = {str(a): a.state for a in iface.addrs6}
    assert states[f"{ME}/64"] == DUPLICATE and states[f"{LL}/64"] == DUPLICATE
    assert core.counters["ndp.dad_duplicates"] == 2
    assert any("duplicate address 2001:db8::1" in e for e in core.events)
    assert not core.ip6.is_local(ip(ME))


def test_ns_gets_solicited_na_and_sender_is_learned() -> None:
    core, iface = one_stack()
    ns = IPv6(src="2001:db8::2", dst="ff02::1:ff00:1", hlim=255) / ICMPv6ND_NS(
        tgt=ME) / ICMPv6NDOptSrcLLAddr(lladdr=PEER)
    core.input_frame(iface.index, frm(ns, "33:33:ff:00:00:01"), 10.0)
    (na,) = frames(iface)
    assert na[Ether].dst == PEER and na[IPv6].dst == "2001:db8::2" and na[IPv6].hlim == 255
    assert na[ICMPv6ND_NA].S == 1 and na[ICMPv6ND_NA].O == 1 and na[ICMPv6ND_NA].tgt == ME
    assert na[ICMPv6NDOptDstLLAddr].lladdr == MAC
    n = core.ip6.ndp.cache.entries[(iface.index, ip("2001:db8::2"))]
    assert n.state == STALE
    # hop limit other than 255: dropped as off-link
    core.input_frame(iface.index, frm(ns.copy().__class__(bytes(ns))), 10.0)
    bad = IPv6(bytes(ns))
    bad.hlim = 64
    del bad.cksum
    core.input_frame(iface.index, frm(IPv6(bytes(bad))), 10.0)
    assert core.counters["ndp.rx_invalid"] == 1


def test_neighbour_state_machine() -> None:
    core, iface = one_stack()
    ep = core.udp.open(6, 17)
    core.udp.sendto(ep, b"x", ip("2001:db8::2"), 9, 10.0)
    (ns,) = frames(iface)
    assert ns[ICMPv6ND_NS].tgt == "2001:db8::2" and ns[IPv6].dst == "ff02::1:ff00:2"
    key = (iface.index, ip("2001:db8::2"))
    na = IPv6(src="2001:db8::2", dst=ME, hlim=255) / ICMPv6ND_NA(
        tgt="2001:db8::2", S=1, O=1) / ICMPv6NDOptDstLLAddr(lladdr=PEER)
    core.input_frame(iface.index, frm(na), 10.1)
    assert core.ip6.ndp.cache.entries[key].state == REACHABLE
    (queued,) = frames(iface)
    assert queued.haslayer(UDP) and queued[Ether].dst == PEER
    advance(core, 10.1, 60.0)
    assert core.ip6.ndp.cache.entries[key].state == STALE
    core.udp.sendto(ep, b"y", ip("2001:db8::2"), 9, 61.0)
    assert core.ip6.ndp.cache.entries[key].state == DELAY
    advance(core, 61.0, 66.1)
    assert core.ip6.ndp.cache.entries[key].state == PROBE
    probes = [f for f in frames(iface) if f.haslayer(ICMPv6ND_NS)]
    assert probes[-1][IPv6].dst == "2001:db8::2" and probes[-1][Ether].dst == PEER
    advance(core, 66.1, 80.0)
    assert key not in core.ip6.ndp.cache.entries


def test_echo_reply_and_udp_zero_checksum_rejected() -> None:
    core, iface = one_stack()
    learn_peer(core, iface)
    req = IPv6(src="2001:db8::2", dst=ME) / ICMPv6EchoRequest(id=3, seq=4, data=b"ping")
    core.input_frame(iface.index, frm(req), 10.0)
    (rep,) = frames(iface)
    assert rep[ICMPv6EchoReply].id == 3 and rep[ICMPv6EchoReply].data == b"ping"
    again = IPv6(bytes(rep[IPv6]))
    cks = again[ICMPv6EchoReply].cksum
    del again[ICMPv6EchoReply].cksum
    assert IPv6(bytes(again))[ICMPv6EchoReply].cksum == cks
    ep = core.udp.open(6, 17)
    core.udp.bind(ep, None, 5000)
    raw = bytearray(bytes(IPv6(src="2001:db8::2", dst=ME) / UDP(sport=1, dport=5000) / b"u"))
    raw[46:48] = b"\0\0"
    core.input_frame(iface.index, frm(IPv6(bytes(raw))), 10.0)
    assert core.counters["udp.rx_zero_checksum_v6"] == 1 and not ep.rxq
    core.input_frame(iface.index, frm(IPv6(src="2001:db8::2", dst=ME) / UDP(
        sport=1, dport=5000) / b"ok"), 10.0)
    assert ep.pop() == (b"ok", ip("2001:db8::2"), 1, iface.index)


def test_overlapping_fragments_drop_the_datagram_rfc5722() -> None:
    core, iface = one_stack()
    learn_peer(core, iface)
    ep = core.udp.open(6, 17)
    core.udp.bind(ep, None, 5000)
    hdr = IPv6(src="2001:db8::2", dst=ME)
    body = bytes(hdr / UDP(sport=1, dport=5000) / (b"A" * 200))[40:]

    def frag(off: int, data: bytes, m: int, ident: int) -> bytes:
        return frm(hdr / IPv6ExtHdrFragment(nh=17, offset=off // 8, m=m, id=ident) / data)

    # duplicates are harmless
    core.input_frame(iface.index, frag(0, body[:104], 1, 1), 10.0)
    core.input_frame(iface.index, frag(0, body[:104], 1, 1), 10.0)
    core.input_frame(iface.index, frag(104, body[104:], 0, 1), 10.0)
    assert ep.pop() is not None
    # overlap: [0,104) and [96, ...)
    core.input_frame(iface.index, frag(0, body[:104], 1, 2), 10.0)
    core.input_frame(iface.index, frag(96, body[96:], 0, 2), 10.0)
    core.input_frame(iface.index, frag(104, body[104:], 0, 2), 10.0)
    assert ep.pop() is None
    assert core.ip6.reasm.stats["overlaps"] == 1


def test_packet_too_big_sets_path_mtu() -> None:
    core, iface = one_stack()
    learn_peer(core, iface)
    ep = core.udp.open(6, 17)
    core.udp.sendto(ep, b"b" * 1400, ip("2001:db8::2"), 53, 10.0)
    (orig,) = frames(iface)
    ptb = IPv6(src="2001:db8::2", dst=ME) / ICMPv6PacketTooBig(mtu=1280) / bytes(
        orig[IPv6])[:1000]
    core.input_frame(iface.index, frm(ptb), 11.0)
    assert core.pmtu_get(ip("2001:db8::2"), 11.0) == 1280
    core.udp.sendto(ep, b"b" * 1400, ip("2001:db8::2"), 53, 12.0)
    out = frames(iface)
    assert len(out) == 2 and all(f.haslayer(IPv6ExtHdrFragment) for f in out)
    assert all(len(bytes(f[IPv6])) <= 1280 for f in out)


def test_errors_unknown_header_port_unreachable_connected_udp() -> None:
    core, iface = one_stack()
    learn_peer(core, iface)
    core.input_frame(iface.index, frm(IPv6(src="2001:db8::2", dst=ME, nh=253) / (b"x" * 8)),
                     10.0)
    (pp,) = frames(iface)
    assert pp[ICMPv6ParamProblem].code == 1 and pp[ICMPv6ParamProblem].ptr == 6
    core.input_frame(iface.index, frm(IPv6(src="2001:db8::2", dst=ME) / UDP(
        sport=7, dport=9)), 10.0)
    (pu,) = frames(iface)
    assert pu[ICMPv6DestUnreach].code == 4
    ep = core.udp.open(6, 17)
    core.udp.connect(ep, ip("2001:db8::2"), 9)
    core.udp.sendto(ep, b"q", None, 0, 11.0)
    (mine,) = frames(iface)
    err = IPv6(src="2001:db8::2", dst=ME) / ICMPv6DestUnreach(code=4) / bytes(mine[IPv6])
    core.input_frame(iface.index, frm(err), 11.0)
    assert ep.take_error() == errno.ECONNREFUSED


def test_router_advertisement_gives_default_route_prefix_and_mtu() -> None:
    core, iface = one_stack()
    ra = IPv6(src="fe80::1", dst="ff02::1", hlim=255) / ICMPv6ND_RA(routerlifetime=600) / \
        ICMPv6NDOptSrcLLAddr(lladdr=PEER) / ICMPv6NDOptMTU(mtu=1400) / ICMPv6NDOptPrefixInfo(
            prefix="2001:db8:1::", prefixlen=64, L=1, A=0, validlifetime=100)
    core.input_frame(iface.index, frm(ra, "33:33:00:00:00:01"), 10.0)
    r = core.routes6.lookup(ip("2001:db8:99::1"))
    assert r is not None and r.gateway == ip("fe80::1") and r.plen == 0
    p = core.routes6.lookup(ip("2001:db8:1::5"))
    assert p is not None and p.plen == 64 and p.gateway is None
    assert iface.mtu == 1400
    n = core.ip6.ndp.cache.entries[(iface.index, ip("fe80::1"))]
    assert n.is_router
    advance(core, 10.0, 200.0)
    p = core.routes6.lookup(ip("2001:db8:1::5"))
    assert p is not None and p.plen == 0  # prefix expired: only the default route matches


def test_forwarding_hop_limit_and_too_big() -> None:
    core, iface = one_stack(forwarding=True)
    other = core.add_interface("vde1", bytes.fromhex("020000000002"), mtu=1280)
    core.set_up(other.index, True, 0.0)
    core.ip6.add_addr(other.index, ip("2001:db8:2::1"), 64, 0.0)
    advance(core, 0.0, 5.0)
    other.txq.clear()
    iface.txq.clear()
    learn_peer(core, iface)
    core.ip6.ndp.cache.add_static(other.index, ip("2001:db8:2::2"), b"\x02" * 6, 0)
    p = IPv6(src="2001:db8::2", dst="2001:db8:2::2", hlim=3) / UDP() / b"z"
    core.input_frame(iface.index, frm(p), 10.0)
    (fwd,) = frames(other)
    assert fwd[IPv6].hlim == 2
    p.hlim = 1
    core.input_frame(iface.index, frm(p), 10.0)
    (te,) = frames(iface)
    assert te.haslayer(ICMPv6TimeExceeded) and te[IPv6].src == ME
    big = IPv6(src="2001:db8::2", dst="2001:db8:2::2") / UDP() / (b"x" * 1300)
    core.input_frame(iface.index, frm(big), 10.0)
    (tb,) = frames(iface)
    assert tb[ICMPv6PacketTooBig].mtu == 1280


def test_two_stacks_lossy_reordering_link_ping_and_big_udp() -> None:
    net = VirtualNet(11)
    hub = net.hub(loss=0.02, dup=0.05, jitter=0.002)
    a, b = net.stack(), net.stack()
    ia, ib = net.attach(a, hub), net.attach(b, hub)
    a.ip6.add_addr(ia.index, ip("2001:db8::a"), 64, 0)
    b.ip6.add_addr(ib.index, ip("2001:db8::b"), 64, 0)
    net.run(5.0)
    server = b.udp.open(6, 17)
    b.udp.bind(server, None, 7)
    client = a.udp.open(6, 17)
    got = 0
    for i in range(20):
        a.udp.sendto(client, bytes([i]) * 9000, ip("2001:db8::b"), 7, net.now)
        net.run(0.5)
    while (d := server.pop()) is not None:
        assert d[0] == bytes([d[0][0]]) * 9000
        got += 1
    assert 5 <= got <= 20  # 7 fragments each, 2% loss per fragment: most arrive whole
    assert b.ip6.reasm.stats["duplicates"] > 0


def test_fragment_flood_memory_bounded_and_timeout_frees() -> None:
    core, iface = one_stack()
    learn_peer(core, iface)
    hdr = IPv6(src="2001:db8::2", dst=ME)
    for ident in range(300):
        core.input_frame(iface.index, frm(hdr / IPv6ExtHdrFragment(nh=17, offset=0, m=1,
                                                                    id=ident) / (b"f" * 1200)),
                         10.0)
    r = core.ip6.reasm
    assert len(r) == r.max_datagrams and r.stats["evicted"] == 300 - r.max_datagrams
    advance(core, 10.0, 80.0)
    assert len(r) == 0 and r.held == 0 and r.stats["timeouts"] == r.max_datagrams
    # time exceeded (reassembly) goes back for datagrams whose first fragment arrived
    assert core.counters["icmp6.tx_error_3_1"] + core.counters["icmp.errors_rate_limited"] \
        == r.max_datagrams


def test_extension_headers_options_and_routing() -> None:
    core, iface = one_stack()
    learn_peer(core, iface)
    ep = core.udp.open(6, 17)
    core.udp.bind(ep, None, 5000)
    hdr = IPv6(src="2001:db8::2", dst=ME)
    # skippable unknown option (00xxxxxx) and PadN: delivered
    ok = hdr / IPv6ExtHdrDestOpt(options=[HBHOptUnknown(otype=0x1E, optdata=b"ab")]) / UDP(
        sport=1, dport=5000) / b"through"
    core.input_frame(iface.index, frm(ok), 10.0)
    assert ep.pop() is not None
    # 10xxxxxx: discard and send a parameter problem (code 2) pointing at the option
    bad = hdr / IPv6ExtHdrDestOpt(options=[HBHOptUnknown(otype=0x9E, optdata=b"ab")]) / UDP(
        sport=1, dport=5000) / b"nope"
    core.input_frame(iface.index, frm(bad), 10.0)
    (pp,) = frames(iface)
    assert pp[ICMPv6ParamProblem].code == 2 and pp[ICMPv6ParamProblem].ptr == 42
    assert ep.pop() is None
    assert core.counters["ipv6.rx_unknown_option"] == 2
