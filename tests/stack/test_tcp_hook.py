"""The core hands TCP to :mod:`ioth.stack.tcp` (layer created on first use): a connection
between two cores over a lossy virtual link, RST for a closed port, ICMP errors routed to TCP."""

from __future__ import annotations

from tests.stack.harness import VirtualNet, ip


def test_tcp_between_two_cores_over_a_lossy_link() -> None:
    net = VirtualNet(21)
    hub = net.hub(loss=0.01, jitter=0.001)
    a, b = net.stack(), net.stack()
    ia, ib = net.attach(a, hub), net.attach(b, hub)
    a.add_addr4(ia.index, ip("192.0.2.1"), 24, 0)
    b.add_addr4(ib.index, ip("192.0.2.2"), 24, 0)
    listener = b.tcp.listen(80)
    conn = a.tcp.connect(ip("192.0.2.1"), ip("192.0.2.2"), 80, net.now)
    net.run(2.0)
    server = listener.accept_queue[0] if listener.accept_queue else None
    assert server is not None
    payload = bytes(range(256)) * 400
    sent = conn.send(payload)
    a.tcp.flush(conn, net.now)
    got = b""
    for _ in range(200):
        net.run(0.05)
        got += server.recv()
        if len(got) >= sent:
            break
    assert got == payload[:sent] and sent > 0
    assert a.counters["tcp.rx"] > 0 and b.counters["tcp.rx"] > 0


def test_tcp_to_closed_port_is_refused() -> None:
    net = VirtualNet(22)
    hub = net.hub()
    a, b = net.stack(), net.stack()
    ia, ib = net.attach(a, hub), net.attach(b, hub)
    a.add_addr4(ia.index, ip("192.0.2.1"), 24, 0)
    b.add_addr4(ib.index, ip("192.0.2.2"), 24, 0)
    conn = a.tcp.connect(ip("192.0.2.1"), ip("192.0.2.2"), 81, net.now)
    net.run(2.0)
    assert conn.state.name == "CLOSED"
    assert b.counters["tcp.rx"] >= 1
