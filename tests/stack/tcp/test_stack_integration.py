"""TCP through whole stacks: StackCore IPv4/IPv6 + ARP/NDP over a lossy in-memory hub."""

from __future__ import annotations

import hashlib
import random

import pytest

from ioth.stack.core import StackCore
from ioth.stack.tcp.connection import State, TcpConnection
from tests.stack.harness import VirtualNet, ip


def _pump(a: StackCore, ca: TcpConnection, b: StackCore, cb: TcpConnection, data: bytes,
          got: bytearray, sent: list[int], now: float) -> None:
    if ca.state in (State.ESTABLISHED, State.CLOSE_WAIT) and sent[0] < len(data):
        sent[0] += ca.send(data[sent[0] : sent[0] + 65536])
        if sent[0] == len(data):
            ca.shutdown()
        a.tcp.flush(ca, now)
    while True:
        try:
            chunk = cb.recv(1 << 20)
        except BlockingIOError:
            break
        if not chunk:
            break
        got += chunk
    b.tcp.flush(cb, now)


@pytest.mark.parametrize("v6", [False, True])
def test_tcp_between_two_stacks_over_a_lossy_hub(v6: bool) -> None:
    net = VirtualNet(21)
    hub = net.hub(loss=0.03, dup=0.01, jitter=0.002, delay=0.001)
    a, b = net.stack(), net.stack()
    ia, ib = net.attach(a, hub), net.attach(b, hub)
    if v6:
        a.ip6.add_addr(ia.index, ip("2001:db8::a"), 64, 0)
        b.ip6.add_addr(ib.index, ip("2001:db8::b"), 64, 0)
        net.run(3.0)  # DAD
        sa, sb = ip("2001:db8::a"), ip("2001:db8::b")
    else:
        a.add_addr4(ia.index, ip("192.0.2.1"), 24, 0)
        b.add_addr4(ib.index, ip("192.0.2.2"), 24, 0)
        sa, sb = ip("192.0.2.1"), ip("192.0.2.2")
    listener = b.tcp.listen(80)
    ca = a.tcp.connect(sa, sb, 80, net.now)
    for _ in range(200):
        net.run(0.05)
        if listener.accept_queue:
            break
    cb = listener.accept()
    assert cb is not None and ca.state is State.ESTABLISHED
    data = random.Random(1).randbytes(1_000_000)
    got = bytearray()
    sent = [0]
    for _ in range(20000):
        _pump(a, ca, b, cb, data, got, sent, net.now)
        if cb.eof:
            break
        net.run(0.01)
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    cb.close()
    b.tcp.flush(cb, net.now)
    for _ in range(1000):
        net.run(0.1)
        if not a.tcp.connections and not b.tcp.connections:
            break
    assert not a.tcp.connections and not b.tcp.connections
    assert ca.mss == (1500 - 60 - 12 if v6 else 1500 - 40 - 12)


@pytest.mark.parametrize("v6", [False, True])
def test_tcp_over_loopback_of_one_stack(v6: bool) -> None:
    net = VirtualNet(22)
    core = net.stack()
    lo = bytes(15) + b"\x01" if v6 else bytes([127, 0, 0, 1])
    listener = core.tcp.listen(7000, lo)
    client = core.tcp.connect(lo, lo, 7000, net.now)
    core.drain_loopback(net.now)  # what the Stack does after a user call
    server = listener.accept()
    assert server is not None and client.state is State.ESTABLISHED
    assert client.mss == 65535 - (60 if v6 else 40) - 12  # loopback MTU
    data = random.Random(2).randbytes(3_000_000)
    got = bytearray()
    sent = [0]
    for _ in range(5000):
        _pump(core, client, core, server, data, got, sent, net.now)
        core.drain_loopback(net.now)
        if server.eof:
            break
        net.run(0.001)
    assert bytes(got) == data
    server.close()
    core.tcp.flush(server, net.now)
    core.drain_loopback(net.now)
    net.run(0.5)
    # the client's TIME-WAIT is a compact entry of the layer (the TCB itself is CLOSED)
    assert (*client.local, *client.remote) in core.tcp.time_wait
    assert client.state is State.CLOSED and server.state is State.CLOSED
    assert [i.state for i in core.tcp.info()] == [State.TIME_WAIT]
    net.run(61.0)
    assert not core.tcp.connections and not core.tcp.time_wait
