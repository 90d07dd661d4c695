"""Hypothesis: random and mutated frames never escape the stack; they are counted and dropped."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, UDP  # type: ignore[import-untyped]
from scapy.layers.inet6 import (  # type: ignore[import-untyped]
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrFragment,
)
from scapy.layers.l2 import ARP, Ether  # type: ignore[import-untyped]

from ioth.stack.core import StackCore
from tests.stack.harness import ip

MAC = bytes.fromhex("020000000001")


def make() -> StackCore:
    core = StackCore(random.Random(1))
    iface = core.add_interface("vde0", MAC)
    core.set_up(iface.index, True, 0.0)
    core.add_addr4(iface.index, ip("192.0.2.1"), 24, 0.0)
    core.ip6.add_addr(iface.index, ip("2001:db8::1"), 64, 0.0)
    core.forwarding = True
    ep = core.udp.open(4, 17)
    core.udp.bind(ep, None, 5000)
    while (d := core.next_deadline()) is not None and d < 5.0:
        core.poll(d)
    return core


CORE = make()

# templates (built with scapy so checksums are right), addressed to the stack
_P = "02:00:00:00:00:99"
_M = "02:00:00:00:00:01"
TEMPLATES = [
    bytes(Ether(src=_P, dst=_M) / IP(src="192.0.2.2", dst="192.0.2.1") / UDP(
        sport=4000, dport=5000) / b"abcdef"),
    bytes(Ether(src=_P, dst=_M) / IPv6(src="2001:db8::2", dst="2001:db8::1") /
          ICMPv6EchoRequest(id=1, seq=1, data=b"abcdefgh")),
    bytes(Ether(src=_P, dst="ff:ff:ff:ff:ff:ff") / ARP(hwsrc=_P, psrc="192.0.2.2",
                                                      pdst="192.0.2.1")),
    bytes(Ether(src=_P, dst=_M) / IPv6(src="2001:db8::2", dst="2001:db8::1") /
          IPv6ExtHdrFragment(nh=17, m=1, id=7) / (b"\0" * 16)),
    bytes(Ether(src=_P, dst=_M) / IP(src="192.0.2.2", dst="198.51.100.7", ttl=1) / ICMP()),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_random_frames_never_raise(data: bytes) -> None:
    for frame in (MAC + data, data):
        before = sum(CORE.counters.values())
        CORE.input_frame(2, frame, 1.0)
        assert sum(CORE.counters.values()) > before  # every frame is accounted for
    CORE.ifaces[2].txq.clear()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(TEMPLATES), st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)),
                                             max_size=6), st.integers(0, 120))
def test_mutated_frames_never_raise(template: bytes, flips: list[tuple[int, int]],
                                    cut: int) -> None:
    frame = bytearray(template)
    for pos, value in flips:
        if pos < len(frame):
            frame[pos] = value
    frame = frame[: len(frame) - cut] if cut < len(frame) else frame
    CORE.input_frame(2, bytes(frame), 2.0)
    CORE.poll(2.0)
    CORE.ifaces[2].txq.clear()
    assert len(CORE.ip4.reasm) <= CORE.ip4.reasm.max_datagrams
    assert CORE.ip6.reasm.held <= CORE.ip6.reasm.max_bytes


def test_templates_are_valid() -> None:
    core = make()
    for t in TEMPLATES:
        core.input_frame(2, t, 1.0)
    assert core.counters["udp.rx"] == 1 and core.counters["icmp6.rx_echo_request"] == 1
    assert core.counters["arp.rx"] == 1 and core.ip6.reasm.stats["fragments"] == 1
    assert core.counters["icmp4.tx_error_11_0"] == 1
    assert core.counters["eth.rx_malformed"] == 0
