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
