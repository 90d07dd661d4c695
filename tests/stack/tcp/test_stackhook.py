"""The glue between a StackCore and its TcpLayer (output through IPv4/IPv6, MSS from routes)."""

from __future__ import annotations

import random

from ioth.stack.core import StackCore
from ioth.stack.tcp.stackhook import make_layer

A = bytes([192, 0, 2, 1])
B = bytes([192, 0, 2, 2])


def test_layer_output_goes_through_ipv4_and_arp() -> None:
    core = StackCore(random.Random(1))
    iface = core.add_interface("vde0", b"\x02\0\0\0\0\x01", 1400)
    core.set_up(iface.index, True, 0.0)
    core.add_addr4(iface.index, A, 24, 0.0)
    layer = make_layer(core)
    assert layer.mss_for(B) == 1400 - 40
    assert layer.mss_for(bytes([203, 0, 113, 9])) == 576 - 40  # no route
    conn = layer.connect(A, B, 80, 0.0)
    assert conn.mss_local == 1360
    frames = list(iface.txq)
    assert frames and frames[-1][12:14] == b"\x08\x06"  # the SYN waits for ARP
    layer.connect(A, bytes([203, 0, 113, 9]), 80, 0.0)
    assert core.counters["tcp.tx_no_route"] == 1


def _connections_between_cores(fast: bool, v6: bool) -> tuple[list[bytes], int, int]:
    """Three connections (open, request, response, close in both orders) between two cores
    at fixed times; returns every frame sent, the fused-path frames and the semi ones."""
    from ioth.stack.tcp.policy import TcpPolicy
    from ioth.stack.tcp.state import State

    cores = [StackCore(random.Random(i)) for i in (1, 2)]
    ifaces = []
    for i, core in enumerate(cores):
        core.rx_fastpath = fast
        iface = core.add_interface("vde0", bytes([2, 0, 0, 0, 0, i + 1]), 1500)
        core.set_up(iface.index, True, 0.0)
        core.add_addr4(iface.index, bytes([198, 18, 0, i + 1]), 24, 0.0)
        if v6:
            core.ip6.add_addr(iface.index, bytes.fromhex("fd" + "00" * 14) + bytes([i + 1]), 64,
                              0.0)
        ifaces.append(iface)
    wire: list[bytes] = []
    clock = [1.0]

    def pump() -> None:
        moved = True
        while moved:
            moved = False
            clock[0] += 0.001
            for me, other in ((0, 1), (1, 0)):
                q = ifaces[me].txq
                if q:
                    moved = True
                    cores[other].begin_batch()
                    while q:
                        frame = bytes(q.popleft())
                        wire.append(frame)
                        cores[other].input_frame(ifaces[other].index, frame, clock[0])
                    cores[other].end_batch(clock[0])

    if v6:
        for _ in range(8):  # DAD
            clock[0] += 1.0
            for core in cores:
                core.poll(clock[0])
            pump()
        a, b = bytes.fromhex("fd" + "00" * 14 + "01"), bytes.fromhex("fd" + "00" * 14 + "02")
    else:
        a, b = bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2])
    wire.clear()
    policy = TcpPolicy(nodelay=True, time_wait=0.5)
    listener = cores[1].tcp.listen(80, policy=policy)
    for i in range(3):
        c = cores[0].tcp.connect(a, b, 80, clock[0], policy=policy)
        pump()
        s = listener.accept()
        assert s is not None and c.state is State.ESTABLISHED
        c.send(b"q" * 64)
        cores[0].tcp.flush(c, clock[0])
        pump()
        assert s.recv(100) == b"q" * 64
        s.send(b"r" * 64)
        cores[1].tcp.flush(s, clock[0])
        pump()
        assert c.recv(100) == b"r" * 64
        first, second = ((s, cores[1]), (c, cores[0])) if i % 2 else ((c, cores[0]),
                                                                       (s, cores[1]))
        first[0].close()
        first[1].tcp.flush(first[0], clock[0])
        pump()
        second[0].close()
        second[1].tcp.flush(second[0], clock[0])
        pump()
        for core in cores:
            core.poll(clock[0] + 1.0)
        pump()
        assert (c.state, s.state) == (State.CLOSED, State.CLOSED)
        assert cores[0].tcp.connections == {} and cores[1].tcp.connections == {}
    return wire, sum(c.rx_fast_frames for c in cores), sum(c.rx_semi_frames for c in cores)


def test_handshake_and_close_segments_take_the_semi_fast_path_and_match_the_layered() -> None:
    for v6 in (False, True):
        fast, n_fast, n_semi = _connections_between_cores(True, v6)
        slow, n_slow, _ = _connections_between_cores(False, v6)
        assert n_slow == 0 and n_semi >= 3 * 4  # handshake ACK, FINs, last ACK per connection
        assert n_fast >= 3  # the request and response segments (header prediction)
        assert fast == slow  # every frame byte for byte
