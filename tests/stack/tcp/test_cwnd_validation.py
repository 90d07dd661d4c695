"""Congestion window validation (RFC 7661, RFC 9438 5.8): cwnd grows only when it limits.

Regression tests for benchmark finding F1: cwnd grew on every ACK, even when the application
or the receive window limited the sender (2.8 GB of cwnd against a 1 MiB receive window).
"""

from __future__ import annotations

import random

import pytest

from ioth.stack.tcp.cc import Cubic
from ioth.stack.tcp.policy import TcpPolicy
from tests.stack.tcp.harness import Link, Transfer

MSS = 1460


@pytest.mark.parametrize("cc", ["cubic", "newreno"])
def test_cwnd_bounded_by_receive_window(cc: str) -> None:
    """A receive-window-limited bulk sender stops growing cwnd near twice the flight."""
    rwnd = 64 * 1024
    policy = TcpPolicy(time_wait=1.0, recv_buffer=rwnd, send_buffer=256 * 1024,
                       congestion_control=cc)
    link = Link(seed=3, policy=policy)
    client, server = link.connect()
    data = random.Random(3).randbytes(8_000_000)
    t = Transfer(link, client, server, data, b"")
    link.run_until(t.done, limit=120.0, pump=t.pump)
    t.check()
    assert client.retransmissions == 0
    # slow start may reach twice the largest flight (Linux tcp_is_cwnd_limited), no more
    assert client.cc.cwnd <= 2 * rwnd + 2 * client.mss, client.cc.cwnd


@pytest.mark.parametrize("cc", ["cubic", "newreno"])
def test_cwnd_not_grown_by_application_limited_sender(cc: str) -> None:
    """Small writes far below the window (one per RTT) leave cwnd at the initial window."""
    policy = TcpPolicy(time_wait=1.0, congestion_control=cc, nodelay=True)
    link = Link(seed=4, policy=policy)
    client, server = link.connect()
    iw = client.cc.cwnd
    got = 0
    for _ in range(300):
        client.send(b"x" * 1000)
        link.a.flush(client, link.now)
        deadline = link.now + 0.05
        while link.now < deadline and link.step():
            pass
        while True:
            try:
                chunk = server.recv(1 << 16)
            except BlockingIOError:
                break
            got += len(chunk)
    assert got == 300_000
    assert client.cc.cwnd == iw


def test_cwnd_grows_when_cwnd_limited() -> None:
    """The validation must not stop a cwnd-limited sender from growing."""
    policy = TcpPolicy(time_wait=1.0, recv_buffer=4 << 20, send_buffer=4 << 20)
    link = Link(seed=5, policy=policy)
    client, server = link.connect()
    iw = client.cc.cwnd
    t = Transfer(link, client, server, random.Random(5).randbytes(2_000_000), b"")
    link.run_until(t.done, limit=120.0, pump=t.pump)
    t.check()
    assert client.cc.cwnd > 8 * iw


def test_cubic_epoch_skips_application_limited_time() -> None:
    """RFC 9438 5.8: the time spent application-limited does not count in t."""
    steady = Cubic(MSS, 10)
    paused = Cubic(MSS, 10)
    for cc in (steady, paused):
        cc.on_ack(90 * MSS, 0.0, 0.05, 0)
        cc.on_congestion(1.0, 100 * MSS)
        cc.on_ack(MSS, 1.1, 0.05, 0)  # starts the epoch at 1.1
    # application-limited from 1.3 until the ACK at 21.3: 20 s that must not count
    steady.on_ack(MSS, 1.3, 0.05, 0)
    paused.on_app_limited(1.3)
    paused.on_app_limited(5.0)  # the pause started at 1.3, not later
    paused.on_ack(MSS, 21.3, 0.05, 0)
    assert paused.cwnd == steady.cwnd
    steady.on_ack(MSS, 2.0, 0.05, 0)
    paused.on_ack(MSS, 22.0, 0.05, 0)
    assert paused.cwnd == steady.cwnd
    # without the pause, 20 s of t would have sent CUBIC far past W_max
    free = Cubic(MSS, 10)
    free.on_ack(90 * MSS, 0.0, 0.05, 0)
    free.on_congestion(1.0, 100 * MSS)
    free.on_ack(MSS, 1.1, 0.05, 0)
    free.on_ack(MSS, 21.3, 0.05, 0)
    assert free.cwnd > paused.cwnd
