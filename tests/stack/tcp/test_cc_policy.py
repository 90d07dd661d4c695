"""Congestion controllers (NewReno, CUBIC), their registry, and TcpPolicy validation."""

from __future__ import annotations

import pytest

from ioth.errors import ConfigError
from ioth.stack.tcp.cc import (
    INFINITE_SSTHRESH,
    CongestionControl,
    Cubic,
    NewReno,
    cc_names,
    make_cc,
    register_cc,
)
from ioth.stack.tcp.policy import TcpPolicy

MSS = 1000


def test_newreno_slow_start_then_linear() -> None:
    cc = NewReno(MSS, 10)
    assert cc.cwnd == 10 * MSS and cc.ssthresh == INFINITE_SSTHRESH
    cc.on_ack(10 * MSS, 0.0, 0.1, 10 * MSS)
    assert cc.cwnd == 20 * MSS  # doubles per window in slow start
    cc.on_congestion(0.1, 20 * MSS)
    assert cc.ssthresh == cc.cwnd == 10 * MSS  # RFC 5681 eq. 4
    for _ in range(10):
        cc.on_ack(MSS, 0.2, 0.1, 10 * MSS)
    assert cc.cwnd == 11 * MSS  # one MSS per window of ACKed bytes
    cc.on_rto(0.3, 6 * MSS)
    assert cc.cwnd == MSS and cc.ssthresh == 3 * MSS


def test_cubic_reduction_and_growth() -> None:
    cc = Cubic(MSS, 10)
    cc.on_ack(90 * MSS, 0.0, 0.05, 0)
    assert cc.cwnd == 100 * MSS
    cc.on_congestion(1.0, 100 * MSS)
    assert cc.cwnd == cc.ssthresh == 70 * MSS  # beta_cubic = 0.7
    # concave growth back towards W_max = 100 segments, then convex beyond it
    # (an RTT of 200 ms keeps CUBIC above the Reno-friendly estimate)
    now = 1.0
    sizes = []
    for _ in range(60):
        now += 0.2
        for _ in range(max(1, cc.cwnd // MSS)):
            cc.on_ack(MSS, now, 0.2, cc.cwnd)
        sizes.append(cc.cwnd / MSS)
    assert sizes == sorted(sizes)
    k = ((100 - 70) / Cubic.C) ** (1 / 3)  # RFC 9438 eq. 2: time to reach W_max
    at_k = sizes[round(k / 0.2)]
    assert 95 <= at_k <= 105
    assert sizes[5] - sizes[0] > sizes[round(k / 0.2)] - sizes[round(k / 0.2) - 5]  # concave
    assert sizes[-1] > 150


def test_cubic_fast_convergence() -> None:
    cc = Cubic(MSS, 10)
    cc.on_ack(90 * MSS, 0.0, 0.05, 0)
    cc.on_congestion(1.0, 0)
    cc.on_congestion(2.0, 0)  # second loss below W_max: W_max shrinks further
    assert cc._w_max == pytest.approx(70 * (1 + 0.7) / 2)
    cc.on_rto(3.0, 0)
    assert cc.cwnd == MSS


def test_registry() -> None:
    class Fixed(CongestionControl):
        name = "fixed"

        def on_ack(self, acked: int, now: float, srtt: float | None, in_flight: int) -> None:
            pass

    register_cc("fixed_test", Fixed)
    assert "fixed_test" in cc_names()
    assert isinstance(make_cc("fixed_test", MSS, 4), Fixed)
    assert TcpPolicy(congestion_control="fixed_test").replace().congestion_control == "fixed_test"
    with pytest.raises(ConfigError, match="unknown congestion control 'nope'"):
        make_cc("nope", MSS, 4)
    with pytest.raises(ConfigError):
        register_cc("not a name", Fixed)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"congestion_control": "vegas2"}, "congestion_control"),
        ({"initial_window": 0}, "initial_window"),
        ({"recv_buffer": 0}, "recv_buffer"),
        ({"min_rto": 0.0}, "min_rto"),
        ({"min_rto": 5.0, "max_rto": 1.0}, "above max_rto"),
        ({"retries": -1}, "retries"),
        ({"time_wait": -1.0}, "time_wait"),
        ({"mss": 10}, "mss"),
    ],
)
def test_policy_validation_names_the_field(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TcpPolicy().replace(**change)


def test_policy_is_immutable_and_overridable() -> None:
    base = TcpPolicy()
    per_socket = base.replace(nodelay=True, congestion_control="newreno")
    assert base.nodelay is False and per_socket.nodelay is True
    with pytest.raises(AttributeError):
        base.nodelay = True  # type: ignore[misc]


def test_policy_from_text_options() -> None:
    p = TcpPolicy.from_options({"congestion_control": "newreno", "min_rto": "0.3",
                                "nodelay": "yes", "recv_buffer": "0x40000", "mss": "auto"})
    assert p.congestion_control == "newreno" and p.min_rto == 0.3 and p.nodelay
    assert p.recv_buffer == 1 << 18 and p.mss is None
    with pytest.raises(ConfigError, match="unknown tcp option 'colour'"):
        TcpPolicy.from_options({"colour": "blue"})
    with pytest.raises(ConfigError, match="nodelay='maybe'"):
        TcpPolicy.from_options({"nodelay": "maybe"})
    with pytest.raises(ConfigError, match="initial_window"):
        TcpPolicy.from_options({"initial_window": "0"})
