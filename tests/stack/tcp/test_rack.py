"""Tail loss probes and RACK's reordering window (RFC 8985), on a virtual clock.

Regression tests for benchmark finding F4: on a loss-free path the ioth sender retransmitted
11-14 segments per 3 s that the kernel receiver already had (TCPDSACKOldSent): the probe
timeout fired while the sender itself had unsent data queued (or held back by Nagle), and the
probe retransmitted the last segment instead of sending that new data (RFC 8985 7.3).
"""

from __future__ import annotations

import heapq
import random

import pytest

from ioth.stack.tcp.connection import MASK, TcpConnection
from ioth.stack.tcp.layer import TcpLayer
from tests.stack.tcp.harness import Impairment, Link, Transfer
from tests.stack.tcp.test_connection import POLICY, established, only, recv, seg

SEG = 536


def _sender(nodelay: bool = False) -> tuple[TcpConnection, int]:
    policy = POLICY.replace(timestamps=False, window_scaling=False, min_rto=1.0,
                            nodelay=nodelay)
    c = established(policy, sack_perm=True)
    c.process(seg(1, c.iss + 1, window=60000), 0.0)
    c.srtt, c.rttvar, c.rto = 0.1, 0.05, 1.0
    return c, c.iss + 1


def test_probe_sends_queued_new_data_not_a_retransmission() -> None:
    """cwnd full, more data queued: the PTO sends the next new segment past cwnd."""
    c, base = _sender()
    c.cc.cwnd = 3 * SEG
    c.send(b"n" * SEG * 5)
    assert len(recv(c, 0.0)) == 3
    assert c.poll_at() == pytest.approx(0.2)
    probe = only(recv(c, 0.2))
    assert probe.seq == (base + 3 * SEG) & MASK and len(probe.payload) == SEG
    assert c.tail_probes == 1 and c.retransmissions == 0
    assert c.cc.cwnd == 3 * SEG and c._inflate == 0  # the lent segment is given back
    # one probe per episode: no second probe, the RTO is next
    # the RTO restarts from the probe (RFC 8985 7.3; Linux tcp_send_loss_probe)
    assert recv(c, 0.45) == [] and c.poll_at() == pytest.approx(1.2)


def test_probe_sends_data_that_nagle_held_back() -> None:
    """A sub-MSS tail held by Nagle is the probe (Linux: TCP_NAGLE_OFF); nodelay stays off."""
    c, base = _sender()
    c.send(b"m" * (SEG * 3 + 100))
    assert len(recv(c, 0.0)) == 3  # Nagle holds the 100 bytes while data is unacked
    probe = only(recv(c, 0.2))
    assert probe.seq == (base + 3 * SEG) & MASK and len(probe.payload) == 100
    assert c.retransmissions == 0 and c.tail_probes == 1 and c.nodelay is False


def test_probe_retransmits_the_last_segment_when_nothing_new_is_queued() -> None:
    c, base = _sender()
    c.send(b"r" * SEG * 3)
    assert len(recv(c, 0.0)) == 3
    probe = only(recv(c, 0.2))
    assert probe.seq == (base + 2 * SEG) & MASK
    assert c.retransmissions == 1 and c._tlp_probe == (base + 2 * SEG, base + 3 * SEG)


def test_pto_restarts_when_new_data_is_sent() -> None:
    """RFC 8985 7.2: the PTO is (re)started after new data goes out."""
    c, _ = _sender(nodelay=True)
    c.send(b"a" * SEG * 2)
    assert len(recv(c, 0.0)) == 2
    assert c.poll_at() == pytest.approx(0.2)
    c.send(b"b" * SEG)
    assert len(recv(c, 0.15)) == 1
    assert c.poll_at() == pytest.approx(0.35)


def test_pto_of_a_one_segment_flight_adds_the_delayed_ack_time() -> None:
    """RFC 8985 7.2: PTO = 2*SRTT + WCDelAckT when one segment is in flight."""
    c, _ = _sender()
    c.send(b"x" * 100)
    only(recv(c, 0.0))
    assert c.poll_at() == pytest.approx(0.4)


def test_reo_wnd_grows_once_per_round_trip_and_resets_after_16_recoveries() -> None:
    """RFC 8985 6.2 step 4: D-SACKs widen reo_wnd = min(mult * min_RTT / 4, SRTT)."""
    c, base = _sender()
    c._min_rtt = None
    c._rtt_sample(0.04)
    c.srtt = 0.1
    assert c._min_rtt == pytest.approx(0.04)
    assert c._reo_wnd() == pytest.approx(0.01)
    c.send(b"d" * SEG * 4)
    assert len(recv(c, 0.0)) == 4
    c.process(seg(1, base + SEG, window=60000), 0.05)
    dsack = (base & MASK, (base + 100) & MASK)
    c.process(seg(1, base + SEG, window=60000, sack=(dsack,)), 0.06)
    c.process(seg(1, base + SEG, window=60000, sack=(dsack,)), 0.07)
    assert c.dsacks == 2 and c._reo_mult == 2  # one step in this round trip
    assert c._reo_wnd() == pytest.approx(0.02)
    c.process(seg(1, base + 4 * SEG, window=60000), 0.1)  # the round is over
    c.process(seg(1, base + 4 * SEG, window=60000, sack=(dsack,)), 0.11)
    assert c._reo_mult == 3 and c._reo_persist == 16
    c._reo_mult = 100
    c.srtt = 0.1
    assert c._reo_wnd() == pytest.approx(0.1)  # never more than SRTT
    for _ in range(16):  # sixteen recoveries without D-SACK: back to 1
        c._episode = True
        c._recover = c.snd_una
        c._dirty = True
        recv(c, 0.2)
        assert not c._episode
    assert c._reo_mult == 1


class _AckStallLink(Link):
    """A loss-free link whose reverse path stalls now and then (a busy receiving host or a
    descheduled ACK reader): ACKs sent during a stall arrive together when it ends, in order."""

    stalls: tuple[tuple[float, float], ...] = ()

    def _out_b(self, src: bytes, dst: bytes, data: bytes) -> None:
        self.sent += 1
        t = self.now + self.impairment.delay
        for start, end in self.stalls:
            if start <= self.now < end:
                t = max(t, end + self.impairment.delay)
        heapq.heappush(self._events, (t, next(self._tick), self.a, src, dst, bytes(data)))


def test_ack_stalls_on_a_loss_free_path_cause_no_retransmission() -> None:
    """F4 as a virtual-clock scenario: 4 MB through a loss-free path with stretch ACKs
    (batched input) and ACK stalls of 3-5 SRTTs while the application keeps data queued:
    every probe is new data (the code before sent 2 needless retransmissions here)."""
    policy = POLICY.replace(time_wait=1.0, recv_buffer=1 << 20, send_buffer=256 * 1024)
    link = _AckStallLink(seed=21, policy=policy, batch=True,
                         impairment=Impairment(delay=0.002))
    client, server = link.connect()
    t0 = link.now + 0.01
    link.stalls = tuple((t0 + 0.05 * k, t0 + 0.05 * k + 0.015 + 0.005 * (k % 3))
                        for k in range(200))
    t = Transfer(link, client, server, random.Random(21).randbytes(4_000_000), b"")
    link.run_until(t.done, limit=120.0, pump=t.pump)
    t.check()
    assert client.rto_expirations == 0 and client.fast_recoveries == 0
    assert client.tail_probes > 0  # the stalls did trigger probes...
    assert client.retransmissions == 0, client.info()  # ...but no retransmissions
    assert server.dsacks_sent == 0


def test_loss_free_batched_link_sends_no_retransmission() -> None:
    layer_policy = POLICY.replace(time_wait=1.0, recv_buffer=1 << 20, send_buffer=1 << 20)
    link = Link(seed=22, policy=layer_policy, batch=True, impairment=Impairment(delay=0.003))
    client, server = link.connect()
    t = Transfer(link, client, server, random.Random(22).randbytes(6_000_000), b"")
    link.run_until(t.done, limit=120.0, pump=t.pump)
    t.check()
    assert client.retransmissions == 0 and client.dsacks == 0
    assert isinstance(link.a, TcpLayer)


def test_lost_super_segment_retransmission_is_resent_only_where_unsacked() -> None:
    """RACK on retransmissions (RFC 8985 6.2) with TSO-sized retransmissions: a lost
    retransmission of 4 segments whose second segment was SACKed meanwhile is sent again
    as its two holes only."""
    c, base = _sender()
    c.cc.cwnd = 20 * SEG
    c.send(b"s" * SEG * 10)
    assert len(recv(c, 0.0)) == 10
    c._sacked = [[base + SEG, base + 2 * SEG], [base + 9 * SEG, base + 10 * SEG]]
    assert c._holes(base, base + 4 * SEG) == [(base, base + SEG),
                                              (base + 2 * SEG, base + 4 * SEG)]
    assert c._holes(base + SEG, base + 2 * SEG) == []
    c._rtx_log = [(base, base + 4 * SEG, 0.0, base + 8 * SEG)]  # sent before SND.NXT 8
    c._rack_detect(0.01)  # not yet RTT + reo_wnd after it was sent
    assert c._rerxt == [] and len(c._rtx_log) == 1
    c._rack_detect(0.5)
    assert c._rerxt == [(base, base + SEG), (base + 2 * SEG, base + 4 * SEG)]
    assert c._rtx_log == []
