"""IPv4, ARP, ICMPv4 and UDP on a virtual clock: golden rx->tx frames (scapy as the oracle)
and counters per branch."""

from __future__ import annotations

import errno
import random
import struct

import pytest
from scapy.layers.inet import ICMP, IP, UDP, fragment  # type: ignore[import-untyped]
from scapy.layers.l2 import ARP, Dot1Q, Ether  # type: ignore[import-untyped]

from ioth.stack.core import StackCore
from ioth.stack.interface import Interface
from tests.stack.harness import VirtualNet, ip

MAC = "02:00:00:00:00:01"
PEER = "02:00:00:00:00:99"


def one_stack(forwarding: bool = False) -> tuple[StackCore, Interface]:
    core = StackCore(random.Random(7))
    iface = core.add_interface("vde0", bytes.fromhex(MAC.replace(":", "")))
    core.set_up(iface.index, True, 0.0)
    core.add_addr4(iface.index, ip("192.0.2.1"), 24, 0.0)
    core.forwarding = forwarding
    iface.txq.clear()
    return core, iface


def sent(iface: Interface) -> list[Ether]:
    """IPv4/ARP frames queued on ``iface`` (IPv6 housekeeping: DAD, MLD, RS is left out)."""
    frames = [Ether(f) for f in iface.txq if f[12:14] != b"\x86\xdd"]
    iface.txq.clear()
    return frames


def learn_peer(core: StackCore, iface: Interface, addr: str = "192.0.2.2") -> None:
    core.input_frame(iface.index, bytes(Ether(src=PEER, dst=MAC) / ARP(
        op=2, hwsrc=PEER, psrc=addr, hwdst=MAC, pdst="192.0.2.1")), 0.0)
    iface.txq.clear()


def test_arp_request_gets_reply_and_learns_sender() -> None:
    core, iface = one_stack()
    req = Ether(src=PEER, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=PEER, psrc="192.0.2.2",
                                                         pdst="192.0.2.1")
    core.input_frame(iface.index, bytes(req), 1.0)
    (reply,) = sent(iface)
    assert reply[Ether].dst == PEER and reply[ARP].op == 2
    assert reply[ARP].psrc == "192.0.2.1" and reply[ARP].hwsrc == MAC
    assert reply[ARP].pdst == "192.0.2.2" and reply[ARP].hwdst == PEER
    assert core.counters["arp.rx_request"] == 1 and core.counters["arp.tx_reply"] == 1
    assert core.arp.cache.entries[(iface.index, ip("192.0.2.2"))].mac == bytes.fromhex(
        PEER.replace(":", ""))


def test_arp_for_other_host_is_not_learned_and_gratuitous_on_add() -> None:
    core, iface = one_stack()
    req = Ether(src=PEER, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=PEER, psrc="192.0.2.2",
                                                         pdst="192.0.2.3")
    core.input_frame(iface.index, bytes(req), 1.0)
    assert sent(iface) == [] and not core.arp.cache.entries
    core.add_addr4(iface.index, ip("192.0.2.77"), 24, 1.0)
    (garp,) = sent(iface)
    assert garp[ARP].op == 1 and garp[ARP].psrc == garp[ARP].pdst == "192.0.2.77"
    assert garp[Ether].dst == "ff:ff:ff:ff:ff:ff"


def test_echo_request_reply_golden() -> None:
    core, iface = one_stack()
    learn_peer(core, iface)
    req = Ether(src=PEER, dst=MAC) / IP(src="192.0.2.2", dst="192.0.2.1", id=9) / ICMP(
        type=8, id=0x1234, seq=7) / (b"abc" * 10)
    core.input_frame(iface.index, bytes(req), 1.0)
    (rep,) = sent(iface)
    assert rep[Ether].dst == PEER and rep[IP].src == "192.0.2.1" and rep[IP].dst == "192.0.2.2"
    assert rep[ICMP].type == 0 and rep[ICMP].id == 0x1234 and rep[ICMP].seq == 7
    assert bytes(rep[ICMP].payload) == b"abc" * 10
    # checksums verify (scapy recomputes them when the fields are deleted)
    again = rep.copy()
    del again[IP].chksum, again[ICMP].chksum
    assert bytes(Ether(bytes(again))) == bytes(rep)
    assert core.counters["icmp4.rx_echo_request"] == 1
    assert core.counters["icmp4.tx_echo_reply"] == 1


def test_bad_checksums_are_counted_and_dropped() -> None:
    core, iface = one_stack()
    learn_peer(core, iface)
    pkt = Ether(src=PEER, dst=MAC) / IP(src="192.0.2.2", dst="192.0.2.1", chksum=1) / ICMP()
    core.input_frame(iface.index, bytes(pkt), 1.0)
    pkt = Ether(src=PEER, dst=MAC) / IP(src="192.0.2.2", dst="192.0.2.1") / UDP(
        sport=1, dport=2, chksum=7) / b"x"
    core.input_frame(iface.index, bytes(pkt), 1.0)
    assert sent(iface) == []
    assert core.counters["ipv4.rx_bad_checksum"] == 1
    assert core.counters["udp.rx_bad_checksum"] == 1


def test_udp_to_closed_port_gets_port_unreachable_quoting_the_datagram() -> None:
    core, iface = one_stack()
    learn_peer(core, iface)
    dgram = IP(src="192.0.2.2", dst="192.0.2.1") / UDP(sport=4000, dport=9) / b"hello"
    core.input_frame(iface.index, bytes(Ether(src=PEER, dst=MAC) / dgram), 1.0)
    (err,) = sent(iface)
    assert err[ICMP].type == 3 and err[ICMP].code == 3
    assert bytes(err[ICMP].payload)[:28] == bytes(dgram)[:28]
    assert core.counters["udp.rx_no_port"] == 1


def test_udp_delivery_zero_checksum_accepted_and_bad_length_dropped() -> None:
    core, iface = one_stack()
    ep = core.udp.open(4, 17)
    core.udp.bind(ep, None, 5000)
    learn_peer(core, iface)
    pkt = Ether(src=PEER, dst=MAC) / IP(src="192.0.2.2", dst="192.0.2.1") / UDP(
        sport=4000, dport=5000, chksum=0) / b"data"
    core.input_frame(iface.index, bytes(pkt), 1.0)
    assert ep.pop() == (b"data", ip("192.0.2.2"), 4000, iface.index)
    bad = bytearray(bytes(pkt))
    struct.pack_into("!H", bad, 14 + 20 + 4, 200)
    core.input_frame(iface.index, bytes(bad), 1.0)
    assert core.counters["udp.rx_bad_length"] == 1


def test_fragmentation_and_reassembly_out_of_order() -> None:
    core, iface = one_stack()
    learn_peer(core, iface)
    ep = core.udp.open(4, 17)
    core.udp.bind(ep, None, 5000)
    payload = bytes(range(256)) * 20
    pkt = IP(src="192.0.2.2", dst="192.0.2.1", id=77) / UDP(sport=1, dport=5000) / payload
    frags = fragment(pkt, fragsize=1000)
    for f in reversed(frags):
        core.input_frame(iface.index, bytes(Ether(src=PEER, dst=MAC) / f), 1.0)
    assert ep.pop() == (payload, ip("192.0.2.2"), 1, iface.index)
    # and our own output is fragmented at the MTU and reassembles with scapy
    core.udp.sendto(ep, payload, ip("192.0.2.2"), 7, 2.0)
    out = sent(iface)
    assert len(out) == 4 and all(len(bytes(f)) <= 1514 for f in out)
    assert core.counters["ipv4.tx_fragments"] == 4
    from scapy.all import defragment  # type: ignore[import-untyped]

    (whole,) = defragment([f[IP] for f in out])
    assert bytes(IP(bytes(whole))[UDP].payload) == payload


def test_reassembly_timeout_sends_time_exceeded_and_frees_memory() -> None:
    core, iface = one_stack()
    learn_peer(core, iface)
    pkt = IP(src="192.0.2.2", dst="192.0.2.1", id=5) / UDP(sport=1, dport=2) / (b"x" * 3000)
    first = fragment(pkt, fragsize=1000)[0]
    core.input_frame(iface.index, bytes(Ether(src=PEER, dst=MAC) / first), 1.0)
    assert core.ip4.reasm.held > 0
    core.poll(40.0)
    (err,) = sent(iface)
    assert err[ICMP].type == 11 and err[ICMP].code == 1
    assert core.ip4.reasm.held == 0 and core.ip4.reasm.stats["timeouts"] == 1


def test_fragment_flood_keeps_memory_bounded() -> None:
    core, iface = one_stack()
    learn_peer(core, iface)
    for ident in range(500):
        f = fragment(IP(src="192.0.2.2", dst="192.0.2.1", id=ident) / UDP() / (b"y" * 20000),
                     fragsize=8000)[0]
        core.input_frame(iface.index, bytes(Ether(src=PEER, dst=MAC) / f), 1.0)
    r = core.ip4.reasm
    assert len(r) <= r.max_datagrams and r.held <= r.max_bytes
    assert r.stats["evicted"] == 500 - r.max_datagrams


def test_forwarding_decrements_ttl_and_sends_icmp_errors() -> None:
    core, iface = one_stack(forwarding=True)
    other = core.add_interface("vde1", bytes.fromhex("020000000002"), mtu=1000)
    core.set_up(other.index, True, 0.0)
    core.add_addr4(other.index, ip("198.51.100.1"), 24, 0.0)
    other.txq.clear()
    learn_peer(core, iface)
    core.arp.cache.add_static(other.index, ip("198.51.100.2"), bytes.fromhex("020000000077"), 0)
    p = IP(src="192.0.2.2", dst="198.51.100.2", ttl=5) / UDP(sport=1, dport=2) / b"z"
    core.input_frame(iface.index, bytes(Ether(src=PEER, dst=MAC) / p), 1.0)
    (fwd,) = sent(other)
    assert fwd[IP].ttl == 4 and fwd[Ether].dst == "02:00:00:00:00:77"
    assert IP(bytes(fwd[IP])).chksum == fwd[IP].chksum
    # TTL 1: time exceeded from the ingress address
    p.ttl = 1
    core.input_frame(iface.index, bytes(Ether(src=PEER, dst=MAC) / p), 1.0)
    (te,) = sent(iface)
    assert te[ICMP].type == 11 and te[IP].src == "192.0.2.1"
    # no route: net unreachable
    p.ttl, p.dst = 9, "203.0.113.5"
    core.input_frame(iface.index, bytes(Ether(src=PEER, dst=MAC) / p), 1.0)
    (nu,) = sent(iface)
    assert nu[ICMP].type == 3 and nu[ICMP].code == 0
    # too big with DF: fragmentation needed carrying the next-hop MTU
    big = IP(src="192.0.2.2", dst="198.51.100.2", flags="DF") / UDP() / (b"q" * 1400)
    core.input_frame(iface.index, bytes(Ether(src=PEER, dst=MAC) / big), 1.0)
    (fn,) = sent(iface)
    assert fn[ICMP].type == 3 and fn[ICMP].code == 4 and fn[ICMP].nexthopmtu == 1000
    # without DF the router fragments
    big[IP].flags = 0
    core.input_frame(iface.index, bytes(Ether(src=PEER, dst=MAC) / big), 1.0)
    assert len(sent(other)) == 2
    assert core.counters["ipv4.forwarded"] == 2


def test_not_forwarding_by_default() -> None:
    core, iface = one_stack()
    learn_peer(core, iface)
    p = IP(src="192.0.2.2", dst="198.51.100.2") / UDP() / b"z"
    core.input_frame(iface.index, bytes(Ether(src=PEER, dst=MAC) / p), 1.0)
    assert sent(iface) == [] and core.counters["ipv4.rx_not_for_us"] == 1


def test_frag_needed_updates_path_mtu_and_next_send_fragments() -> None:
    core, iface = one_stack()
    learn_peer(core, iface)
    core.routes4.add(__import__("ioth.stack.route", fromlist=["Route"]).Route(
        ip("0.0.0.0"), 0, ip("192.0.2.2"), iface.index))
    ep = core.udp.open(4, 17)
    core.udp.sendto(ep, b"a" * 1400, ip("203.0.113.9"), 53, 1.0)
    (orig,) = sent(iface)
    err = IP(src="192.0.2.2", dst="192.0.2.1") / ICMP(type=3, code=4, nexthopmtu=576) / bytes(
        orig[IP])[:28]
    core.input_frame(iface.index, bytes(Ether(src=PEER, dst=MAC) / err), 2.0)
    assert core.pmtu_get(ip("203.0.113.9"), 2.0) == 576
    core.udp.sendto(ep, b"a" * 1400, ip("203.0.113.9"), 53, 3.0)
    assert len(sent(iface)) == 3


def test_connected_udp_reports_econnrefused_and_unresolved_neighbour_ehostunreach() -> None:
    net = VirtualNet(3)
    hub = net.hub()
    a, b = net.stack(), net.stack()
    ia, ib = net.attach(a, hub), net.attach(b, hub)
    a.add_addr4(ia.index, ip("192.0.2.1"), 24, 0)
    b.add_addr4(ib.index, ip("192.0.2.2"), 24, 0)
    ep = a.udp.open(4, 17)
    a.udp.connect(ep, ip("192.0.2.2"), 9)
    a.udp.sendto(ep, b"x", None, 0, net.now)
    net.run(1.0)
    assert ep.take_error() == errno.ECONNREFUSED
    a.udp.connect(ep, ip("192.0.2.200"), 9)  # nobody: ARP fails after 3 probes
    a.udp.sendto(ep, b"x", None, 0, net.now)
    net.run(5.0)
    assert ep.take_error() == errno.EHOSTUNREACH
    assert a.counters["arp.resolution_failed"] == 1
    with pytest.raises(OSError) as exc:
        a.udp.connect(ep, ip("203.0.113.1"), 9)
    assert exc.value.errno == errno.ENETUNREACH


def test_bind_errors() -> None:
    core, _ = one_stack()
    e1, e2 = core.udp.open(4, 17), core.udp.open(4, 17)
    core.udp.bind(e1, None, 7000)
    with pytest.raises(OSError) as exc:
        core.udp.bind(e2, ip("192.0.2.1"), 7000)
    assert exc.value.errno == errno.EADDRINUSE
    with pytest.raises(OSError) as exc:
        core.udp.bind(e2, ip("198.51.100.1"), 7001)
    assert exc.value.errno == errno.EADDRNOTAVAIL
    with pytest.raises(OSError) as exc:
        core.udp.sendto(e2, b"x" * 70000, ip("192.0.2.9"), 1, 0.0)
    assert exc.value.errno == errno.EMSGSIZE
    e1.reuse = e2.reuse = True
    core.udp.bind(e2, None, 7000)


def test_8021q_priority_tagged_accepted_other_vlans_dropped() -> None:
    core, iface = one_stack()
    learn_peer(core, iface)
    echo = IP(src="192.0.2.2", dst="192.0.2.1") / ICMP(type=8, id=1, seq=1)
    core.input_frame(iface.index, bytes(Ether(src=PEER, dst=MAC) / Dot1Q(vlan=0, prio=5) / echo),
                     1.0)
    (rep,) = sent(iface)
    assert rep[ICMP].type == 0 and not rep.haslayer(Dot1Q)
    core.input_frame(iface.index, bytes(Ether(src=PEER, dst=MAC) / Dot1Q(vlan=7) / echo), 1.0)
    assert sent(iface) == [] and core.counters["eth.rx_other_vlan"] == 1
    assert core.counters["eth.rx_priority_tagged"] == 1


def test_datagram_to_own_address_goes_through_loopback_with_that_source() -> None:
    core, iface = one_stack()
    srv, cli = core.udp.open(4, 17), core.udp.open(4, 17)
    core.udp.bind(srv, None, 53)
    core.udp.sendto(cli, b"self", ip("192.0.2.1"), 53, 1.0)
    data, src, _, ifindex = srv.pop()  # type: ignore[misc]
    assert (data, src, ifindex) == (b"self", ip("192.0.2.1"), 1)
    assert sent(iface) == []


def test_whole_127_8_is_local() -> None:
    core, _ = one_stack()
    srv, cli = core.udp.open(4, 17), core.udp.open(4, 17)
    core.udp.bind(srv, ip("127.0.0.53"), 53)
    core.udp.sendto(cli, b"lo", ip("127.0.0.53"), 53, 1.0)
    assert srv.pop() == (b"lo", ip("127.0.0.1"), cli.local_port, 1)
