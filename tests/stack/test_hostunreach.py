"""A TCP connection attempt to an on-link address nobody answers for fails with EHOSTUNREACH once
neighbour resolution (ARP / ND) gives up (about 3 s, as Linux), not ETIMEDOUT after the SYN
retries; connected UDP sockets see the same error (virtual clock)."""

from __future__ import annotations

import errno

from ioth.stack.core import StackCore
from ioth.stack.route import Route
from tests.stack.harness import VirtualNet, ip


def _net() -> tuple[VirtualNet, StackCore]:
    net = VirtualNet(7)
    hub = net.hub()
    a, b = net.stack(), net.stack()
    ia, ib = net.attach(a, hub), net.attach(b, hub)
    a.add_addr4(ia.index, ip("192.0.2.1"), 24, 0)
    b.add_addr4(ib.index, ip("192.0.2.2"), 24, 0)
    a.ip6.add_addr(ia.index, ip("fd00::1"), 64, 0)
    b.ip6.add_addr(ib.index, ip("fd00::2"), 64, 0)
    net.run(3.0)  # DAD
    return net, b


def test_tcp_connect_to_absent_ipv4_neighbour_fails_with_ehostunreach() -> None:
    net, _ = _net()
    a = net.cores[0]
    conn = a.tcp.connect(ip("192.0.2.1"), ip("192.0.2.77"), 80, net.now)
    net.run(2.5)
    assert conn.state.name == "SYN_SENT" and conn.error is None
    net.run(1.0)  # the third ARP probe times out at 3 s
    assert conn.state.name == "CLOSED" and conn.error == errno.EHOSTUNREACH
    assert a.counters["arp.resolution_failed"] == 1
    assert a.tcp.unreachable_aborts == 1


def test_tcp_connect_through_an_absent_gateway_fails_with_ehostunreach() -> None:
    net, _ = _net()
    a = net.cores[0]
    ifindex = next(i for i in a.ifaces.values() if not i.loopback).index
    a.routes4.add(Route(ip("0.0.0.0"), 0, ip("192.0.2.254"), ifindex))
    conn = a.tcp.connect(ip("192.0.2.1"), ip("203.0.113.5"), 443, net.now)
    net.run(4.0)
    assert conn.state.name == "CLOSED" and conn.error == errno.EHOSTUNREACH


def test_tcp_connect_to_absent_ipv6_neighbour_fails_with_ehostunreach() -> None:
    net, _ = _net()
    a = net.cores[0]
    conn = a.tcp.connect(ip("fd00::1"), ip("fd00::77"), 80, net.now)
    net.run(4.0)
    assert conn.state.name == "CLOSED" and conn.error == errno.EHOSTUNREACH
    assert a.counters["ndp.resolution_failed"] == 1


def test_present_neighbour_and_established_connections_are_not_aborted() -> None:
    net, b = _net()
    a = net.cores[0]
    listener = b.tcp.listen(80)
    conn = a.tcp.connect(ip("192.0.2.1"), ip("192.0.2.2"), 80, net.now)
    net.run(1.0)
    assert conn.state.name == "ESTABLISHED" and listener.accept_queue
    # the peer vanishes: resolution of a stale entry's re-probe fails, the connection keeps
    # retransmitting (soft error) instead of being aborted
    net.hubs[0].loss = 1.0
    a.arp.cache.remove(next(i for i in a.ifaces.values() if not i.loopback).index)
    conn.send(b"x" * 100)
    a.tcp.flush(conn, net.now)
    net.run(5.0)
    assert a.counters["arp.resolution_failed"] >= 1
    assert conn.state.name == "ESTABLISHED" and conn.error is None
    assert a.tcp.unreachable_aborts == 0


def test_connected_udp_gets_ehostunreach_from_failed_resolution() -> None:
    # ioth behaviour (RFC 1122 4.1.3.3); Linux reports it to a connected UDP socket only with
    # IP_RECVERR (host unreachable is not "fatal" in its icmp_err_convert)
    net, _ = _net()
    a = net.cores[0]
    ep = a.udp.open(4, 17)
    a.udp.connect(ep, ip("192.0.2.78"), 9)
    a.udp.sendto(ep, b"x", None, 0, net.now)
    net.run(4.0)
    assert ep.take_error() == errno.EHOSTUNREACH
