"""Bulk transfers over an impaired in-memory link on a virtual clock."""

from __future__ import annotations

import random

import pytest

from ioth.stack.tcp.connection import State
from ioth.stack.tcp.policy import TcpPolicy
from tests.stack.tcp.harness import Impairment, Link, Transfer


def _run(link: Link, size: int, limit: float = 900.0) -> Transfer:
    client, server = link.connect()
    rng = random.Random(link.seed)
    t = Transfer(link, client, server, rng.randbytes(size), rng.randbytes(size))
    link.run_until(t.done, limit=limit, pump=t.pump)
    t.check()
    # both sides closed: wait out TIME-WAIT; nothing may remain
    link.run_until(
        lambda: not link.a.connections and not link.b.connections
        and not link.a.time_wait and not link.b.time_wait, limit=limit, pump=t.pump
    )
    assert client.state is State.CLOSED and server.state is State.CLOSED
    assert client.error is None and server.error is None
    assert link.a.poll_at() is None and link.b.poll_at() is None
    return t


POLICY = TcpPolicy(time_wait=1.0)


@pytest.mark.parametrize("cc", ["cubic", "newreno"])
def test_clean_link(cc: str) -> None:
    link = Link(seed=1, policy=POLICY.replace(congestion_control=cc))
    _run(link, 2_000_000)
    assert link.a.connections == {}


@pytest.mark.parametrize(
    ("seed", "sack", "ts", "v6"),
    [(2, True, True, False), (3, False, True, False), (4, True, False, True),
     (5, False, False, True)],
)
def test_impaired_link_2mb(seed: int, sack: bool, ts: bool, v6: bool) -> None:
    imp = Impairment(loss=0.1, duplicate=0.02, reorder=0.05, jitter=0.002)
    link = Link(seed=seed, impairment=imp, policy=POLICY.replace(sack=sack, timestamps=ts),
                v6=v6)
    _run(link, 2_000_000)
    assert link.lost > 0


@pytest.mark.parametrize("cc", ["cubic", "newreno"])
def test_impaired_link_20mb_jumbo(cc: str) -> None:
    """20 MB each way with 10% loss, duplication, reordering and jitter (MTU 9000)."""
    imp = Impairment(loss=0.1, duplicate=0.02, reorder=0.05, jitter=0.002)
    link = Link(seed=7, impairment=imp, policy=POLICY.replace(congestion_control=cc), mtu=9000)
    _run(link, 20_000_000, limit=3600.0)


@pytest.mark.parametrize("v6", [False, True])
def test_impaired_link_20mb_mtu1500(v6: bool) -> None:
    """20 MB each way with 10% loss at MTU 1500 (~15k segments each way)."""
    imp = Impairment(loss=0.1, duplicate=0.02, reorder=0.05, jitter=0.002)
    link = Link(seed=8, impairment=imp, policy=POLICY, v6=v6)
    _run(link, 20_000_000, limit=3600.0)


def test_sequence_numbers_wrap(monkeypatch: pytest.MonkeyPatch) -> None:
    """ISNs just below 2**32 (and a timestamp clock about to wrap) change nothing."""
    from ioth.stack.tcp.isn import IsnGenerator

    monkeypatch.setattr(IsnGenerator, "isn_ts",
                        lambda self, now, *a: (0xFFFFFFFF - 50_000, 0xFFFFFFFF - 2_000))
    monkeypatch.setattr(IsnGenerator, "ts_offset", lambda self, *a: 0xFFFFFFFF - 2_000)
    imp = Impairment(loss=0.05, reorder=0.05, jitter=0.002)
    link = Link(seed=11, impairment=imp, policy=POLICY)
    t = _run(link, 500_000)
    assert t.rx_len == [500_000, 500_000]


def test_batched_input_coalesces_acks() -> None:
    """begin_batch/end_batch: same bytes, fewer ACKs (a 1 ms link tick batches arrivals)."""
    imp = Impairment(loss=0.02, reorder=0.02, delay=0.005, jitter=0.0)
    plain = Link(seed=12, impairment=imp, policy=POLICY)
    _run(plain, 1_000_000)
    batched = Link(seed=12, impairment=imp, policy=POLICY, batch=True)
    _run(batched, 1_000_000)
    assert batched.sent < plain.sent
