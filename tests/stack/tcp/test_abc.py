"""Stretch ACKs and appropriate byte counting (RFC 3465) in NewReno and CUBIC: cwnd grows by
the bytes acknowledged, not by the number of ACKs, and ``abc_limit`` (RFC 3465's L) caps the
slow-start growth per ACK when asked to."""

from __future__ import annotations

import random

import pytest

from ioth.errors import ConfigError
from ioth.stack.tcp.cc import Cubic, NewReno
from ioth.stack.tcp.policy import TcpPolicy
from tests.stack.tcp.harness import Impairment, Link, Transfer

MSS = 1000


@pytest.mark.parametrize("cls", [NewReno, Cubic])
def test_slow_start_counts_the_bytes_of_a_stretch_ack(cls: type[NewReno] | type[Cubic]) -> None:
    cc = cls(MSS, 10)
    cc.on_ack(20 * MSS, 0.0, 0.05, 0)
    assert cc.cwnd == 30 * MSS


@pytest.mark.parametrize("cls", [NewReno, Cubic])
def test_abc_limit_caps_slow_start_growth_per_ack(cls: type[NewReno] | type[Cubic]) -> None:
    cc = cls(MSS, 10)
    cc.abc_limit = 2
    cc.on_ack(20 * MSS, 0.0, 0.05, 0)
    assert cc.cwnd == 12 * MSS
    cc.on_ack(MSS, 0.0, 0.05, 0)
    assert cc.cwnd == 13 * MSS


def test_newreno_avoidance_grows_per_cwnd_of_bytes_whatever_the_ack_pattern() -> None:
    one = NewReno(MSS, 10)
    many = NewReno(MSS, 10)
    for cc in (one, many):
        cc.ssthresh = 10 * MSS
    one.on_ack(10 * MSS, 0.0, 0.05, 0)  # one stretch ACK for a whole window
    for _ in range(10):
        many.on_ack(MSS, 0.0, 0.05, 0)
    assert one.cwnd == many.cwnd == 11 * MSS


def test_cubic_avoidance_is_about_the_same_for_one_stretch_ack_or_many_acks() -> None:
    one = Cubic(MSS, 10)
    many = Cubic(MSS, 10)
    for cc in (one, many):
        cc.on_ack(90 * MSS, 0.0, 0.05, 0)
        cc.on_congestion(1.0, 100 * MSS)
        cc.on_ack(MSS, 1.0, 0.05, 0)  # epoch starts
    start = one.cwnd
    one.on_ack(40 * MSS, 1.5, 0.05, 0)
    for _ in range(40):
        many.on_ack(MSS, 1.5, 0.05, 0)
    assert one.cwnd > start and many.cwnd > start
    # per-ACK steps toward the same target: within 3 % (the ACK count plays no part)
    assert abs(one.cwnd - many.cwnd) <= 0.03 * many.cwnd


def test_policy_abc_limit_reaches_the_controller() -> None:
    policy = TcpPolicy.from_options({"abc_limit": "2"})
    assert policy.abc_limit == 2
    with pytest.raises(ConfigError, match="abc_limit"):
        TcpPolicy(abc_limit=-1).validate()
    link = Link(seed=41, policy=policy)
    client, server = link.connect()
    assert client.cc.abc_limit == 2 and server.cc.abc_limit == 2
    client.apply_policy(policy.replace(abc_limit=0, congestion_control="newreno"))
    assert client.cc.name == "newreno" and client.cc.abc_limit == 0


def _transfer_time(abc_limit: int) -> float:
    policy = TcpPolicy(time_wait=1.0, abc_limit=abc_limit, recv_buffer=4 << 20,
                       send_buffer=4 << 20)
    link = Link(seed=42, policy=policy, batch=True, impairment=Impairment(delay=0.01))
    client, server = link.connect()
    start = link.now
    t = Transfer(link, client, server, random.Random(42).randbytes(3_000_000), b"")
    link.run_until(t.done, limit=120.0, pump=t.pump)
    t.check()
    return link.now - start


def test_abc_limit_slows_slow_start_behind_a_coalescing_receiver() -> None:
    """Why the default is 0: behind a receiver that ACKs once per batch (stretch ACKs), L=2
    makes the same 3 MB take longer (virtual time, 10 ms one-way delay)."""
    assert _transfer_time(2) > _transfer_time(0)
