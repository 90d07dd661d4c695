"""impair:// wrapper and its sans-IO core: statistics over 100,000 frames on a virtual clock."""

from __future__ import annotations

import math
import statistics
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ioth.errors import VNLError
from ioth.net.plugs.impair import (
    DirectionParams,
    ImpairCore,
    ImpairDirection,
    ImpairError,
    ImpairPlug,
    parse_params,
)
from ioth.net.registry import parse_vnl
from tests.net.memplug import MemPlug

N = 100_000
FRAME = bytes(12) + b"\x08\x00" + bytes(986)  # 1000 bytes


def run_direction(params: DirectionParams, n: int = N, gap: float = 0.001, seed: int = 1,
                  frame: bytes = FRAME) -> tuple[ImpairDirection, list[tuple[float, float]]]:
    """Feed ``n`` numbered frames every ``gap`` seconds; (sent time, release time) per copy."""
    import random

    d = ImpairDirection(params, random.Random(seed))
    sent_at: dict[int, float] = {}
    timeline: list[tuple[float, float]] = []

    def release_until(limit: float) -> None:
        while True:
            due = d.next_deadline()
            if due is None or due > limit:
                return
            for out in d.release(due):
                timeline.append((sent_at.get(int.from_bytes(out[:4], "big"), -1.0), due))

    for i in range(n):
        now = i * gap
        release_until(now)
        tagged = i.to_bytes(4, "big") + frame[4:]
        sent_at[i] = now
        d.submit(tagged, now)
        release_until(now)
    release_until(math.inf)
    return d, timeline


def within(value: float, expected: float, sigmas: float, sd: float) -> bool:
    return abs(value - expected) <= sigmas * sd


def test_bernoulli_loss_rate() -> None:
    d, timeline = run_direction(DirectionParams(loss=10.0))
    sd = math.sqrt(N * 0.1 * 0.9)
    assert within(d.stats.lost, N * 0.1, 5, sd)
    assert len(timeline) == N - d.stats.lost


def test_gilbert_elliott_bursts_keep_the_rate_and_the_mean_burst() -> None:
    import random

    d = ImpairDirection(DirectionParams(loss=5.0, burst=4.0), random.Random(3))
    lost_flags = []
    for i in range(N):
        before = d.stats.lost
        d.submit(FRAME, i * 0.001)
        lost_flags.append(d.stats.lost > before)
    bursts, run = [], 0
    for flag in lost_flags:
        if flag:
            run += 1
        elif run:
            bursts.append(run)
            run = 0
    assert 0.04 <= d.stats.lost / N <= 0.06
    assert 3.4 <= statistics.mean(bursts) <= 4.6
    independent = ImpairDirection(DirectionParams(loss=5.0), random.Random(3))
    for i in range(N):
        independent.submit(FRAME, i * 0.001)
    assert abs(independent.stats.lost / N - 0.05) < 0.005


def test_duplication_rate() -> None:
    d, timeline = run_direction(DirectionParams(dup=5.0))
    sd = math.sqrt(N * 0.05 * 0.95)
    assert within(d.stats.duplicated, N * 0.05, 5, sd)
    assert len(timeline) == N + d.stats.duplicated


def test_uniform_delay_distribution() -> None:
    _, timeline = run_direction(DirectionParams(delay=0.020, jitter=0.005, nofifo=True),
                                gap=0.01)
    delays = [r - s for s, r in timeline]
    assert min(delays) >= 0.015 - 1e-9 and max(delays) <= 0.025 + 1e-9
    assert abs(statistics.mean(delays) - 0.020) < 0.0002
    # uniform on [-5, 5] ms has standard deviation 10 / sqrt(12) ms
    assert abs(statistics.pstdev(delays) - 0.010 / math.sqrt(12)) < 0.0002


def test_normal_delay_distribution() -> None:
    _, timeline = run_direction(DirectionParams(delay=0.050, jitter=0.005, normal=True,
                                                nofifo=True), gap=0.01)
    delays = [r - s for s, r in timeline]
    assert abs(statistics.mean(delays) - 0.050) < 0.0002
    assert abs(statistics.pstdev(delays) - 0.005) < 0.0002
    inside = sum(1 for x in delays if abs(x - 0.050) <= 0.005) / len(delays)
    assert 0.66 <= inside <= 0.70  # one sigma: 68.3 %


def test_fifo_is_kept_unless_nofifo() -> None:
    _, timeline = run_direction(DirectionParams(delay=0.020, jitter=0.010), n=10_000)
    sent = [s for s, _ in timeline]
    assert sent == sorted(sent)
    _, timeline = run_direction(DirectionParams(delay=0.020, jitter=0.010, nofifo=True),
                                n=10_000)
    sent = [s for s, _ in timeline]
    assert sent != sorted(sent)


def test_reorder_lets_frames_overtake() -> None:
    d, timeline = run_direction(DirectionParams(delay=0.050, reorder=10.0), n=20_000)
    overtaking = sum(1 for s, r in timeline if r == s)
    assert d.stats.reordered == overtaking
    assert 0.09 <= overtaking / 20_000 <= 0.11
    sent = [s for s, _ in timeline]
    assert sent != sorted(sent)


@pytest.mark.parametrize("rate", [10e6, 1e9])
def test_rate_limit_throughput_within_5_percent(rate: float) -> None:
    # offer twice the link rate; the queue bound drops the excess
    gap = len(FRAME) * 8 / rate / 2
    d, timeline = run_direction(DirectionParams(rate=rate, queue=100), gap=gap)
    delivered = len(timeline)
    duration = timeline[-1][1] - timeline[0][0]
    throughput = delivered * len(FRAME) * 8 / duration
    assert abs(throughput - rate) / rate < 0.05
    assert d.stats.queue_dropped > 0
    assert d.stats.queue_dropped + delivered == N
    assert max(r - s for s, r in timeline) <= 101 * len(FRAME) * 8 / rate + 1e-9


def test_mtu_and_noise() -> None:
    import random

    d = ImpairDirection(DirectionParams(mtu=500), random.Random(1))
    d.submit(FRAME, 0.0)
    d.submit(FRAME[:514], 0.0)
    assert d.stats.mtu_dropped == 1 and len(d.release(0.0)) == 1
    # 1000 bits per MiB on 1000-byte frames: lambda = 0.00763 flips per frame
    noisy, _ = run_direction(DirectionParams(noise=1000.0), n=N)
    lam = 1000.0 * len(FRAME) * 8 / (8 * 1048576)
    expected = N * (1 - math.exp(-lam))
    assert within(noisy.stats.damaged, expected, 5, math.sqrt(expected))


def test_seed_reproducible() -> None:
    a, ta = run_direction(DirectionParams(loss=20, dup=10, delay=0.01, jitter=0.005),
                          n=5000, seed=42)
    b, tb = run_direction(DirectionParams(loss=20, dup=10, delay=0.01, jitter=0.005),
                          n=5000, seed=42)
    assert ta == tb and a.stats == b.stats


def test_parse_params_per_direction_and_errors() -> None:
    lr, rl, seed = parse_params({"loss": "2:0", "delay": "20ms+5n", "rate": "10M",
                                 "dup": "1", "seed": "9", "mtu": "1400"})
    assert (lr.loss, rl.loss, lr.delay, lr.jitter, lr.normal, seed) == (2, 0, 0.02, 0.005,
                                                                        True, 9)
    assert lr.rate == rl.rate == 10e6 and lr.mtu == 1400 and lr.dup == 1
    lr, _, _ = parse_params({"rate": "1MB", "delay": "1s+500us"})
    assert lr.rate == 8e6 and lr.delay == 1.0 and lr.jitter == 0.0005
    for bad in ({"loss": "200"}, {"delay": "fast"}, {"rate": "10X"}, {"queue": "0"},
                {"colour": "red"}, {"seed": "x"}):
        with pytest.raises(ImpairError):
            parse_params(bad)


def test_vnl_forms_and_bad_vnl() -> None:
    vnl = parse_vnl("impair://loss=2/delay=20+5/dup=1/rate=10M/mtu=1400{null://}")
    assert vnl.address == "loss=2/delay=20+5/dup=1/rate=10M/mtu=1400"
    vnl = parse_vnl("impair://[loss=2:0/seed=3]{null://}")
    assert vnl.options == {"loss": "2:0", "seed": "3"}
    import ioth.net.registry as reg
    with pytest.raises(VNLError, match="loss"):
        reg.open_plug("impair://loss=abc{null://}")


def test_plug_holds_frames_until_poll_at_and_set_changes_at_run_time() -> None:
    now = [100.0]
    net = MemPlug()
    plug = ImpairPlug(net, ImpairCore(seed=1), clock=lambda: now[0])
    plug.set(delay="30:10")
    assert plug.send(FRAME)
    assert net.sent == [] and plug.poll_at() == pytest.approx(100.03)
    net.inject(FRAME[:100])
    assert plug.recv_frames() == []
    assert plug.poll_at() == pytest.approx(100.01)
    now[0] = 100.01
    assert plug.recv_frames() == [FRAME[:100]]
    now[0] = 100.03
    assert plug.recv_frames() == [] and net.sent == [FRAME]
    assert plug.poll_at() is None
    plug.set(loss=100)
    plug.send(FRAME)
    now[0] = 200
    plug.recv_frames()
    assert len(net.sent) == 1 and plug.core.lr.stats.lost == 1
    with pytest.raises(ImpairError):
        plug.set(loss="x")


def test_wire_cli_over_udp_cables() -> None:
    """``ioth wire`` joins two udp cables with 100 % loss one way and none the other."""
    from ioth.net.registry import open_plug
    from tests.net.test_udp import free_udp_port, recv_some

    p = [free_udp_port() for _ in range(4)]
    a = open_plug(f"udp://{p[0]}->127.0.0.1:{p[1]}")
    b = open_plug(f"udp://{p[3]}->127.0.0.1:{p[2]}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ioth.cli.main", "wire", f"udp://{p[1]}->127.0.0.1:{p[0]}",
         f"udp://{p[2]}->127.0.0.1:{p[3]}", "--loss", "0:100", "--delay", "5",
         "--duration", "3"], stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        for i in range(20):
            a.send(FRAME[:60] + bytes([i]))
            b.send(FRAME[:60] + bytes([i]))
        got_b = recv_some(b, 20, 1.5)
        got_a = recv_some(a, 1, 0.3)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        a.close()
        b.close()
    assert len(got_b) == 20 and got_a == []
    assert "LR: in 20 out 20" in err and "RL: in 20 out 0 lost 20" in err
    assert proc.returncode == 0


def test_held_frames_are_released_by_an_owner_honouring_poll_at() -> None:
    """Through ``ioth plug A B`` (a Bridge on an Engine): delayed frames arrive although no
    other traffic wakes the bridge up, both ways."""
    from ioth.net.registry import open_plug
    from tests.net.test_udp import free_udp_port, recv_some

    p = [free_udp_port() for _ in range(4)]
    a = open_plug(f"udp://{p[0]}->127.0.0.1:{p[1]}")
    b = open_plug(f"udp://{p[3]}->127.0.0.1:{p[2]}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ioth.cli.main", "plug",
         f"impair://delay=300/seed=1{{udp://{p[1]}->127.0.0.1:{p[0]}}}",
         f"udp://{p[2]}->127.0.0.1:{p[3]}"], stderr=subprocess.PIPE)
    try:
        time.sleep(1.0)
        assert proc.poll() is None
        a.send(FRAME[:60] + b"a")  # into the impair plug from its nested side (RL)
        b.send(FRAME[:60] + b"b")  # into the impair plug's send side (LR)
        assert recv_some(b, 1, 3.0) == [FRAME[:60] + b"a"]
        assert recv_some(a, 1, 3.0) == [FRAME[:60] + b"b"]
    finally:
        proc.terminate()
        proc.wait(10)
        a.close()
        b.close()


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(["loss", "burst", "delay", "dup", "reorder", "nofifo", "rate",
                            "queue", "mtu", "noise", "seed", "bogus"]),
       value=st.text(max_size=12))
def test_parse_params_only_raises_impair_error(key: str, value: str) -> None:
    try:
        parse_params({key: value})
    except ImpairError:
        pass
