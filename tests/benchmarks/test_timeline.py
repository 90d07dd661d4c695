"""benchmarks/timeline.py: the phases of a connection cycle and the scheduler shares, from
``perf script`` lines (synthetic here; tests/interop/test_bench_smoke.py runs it on a real
trace)."""

from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType

import pytest

PATH = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "timeline.py")


@pytest.fixture(scope="module")
def timeline() -> ModuleType:
    spec = importlib.util.spec_from_file_location("timeline", PATH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["timeline"] = mod
    spec.loader.exec_module(mod)
    return mod


CLI, SRV = 100, 200


def _send(pid: int, t: float, size: int) -> str:
    return (f" {pid}/{pid}  [000] {t:.6f}:  syscalls:sys_enter_sendto: fd: 0x00000006, buff: "
            f"0x7f00, len: {size:#010x}, flags: 0x00000000, addr: 0x00000000, addr_len: 0x0")


def _recv(pid: int, t: float, size: int) -> str:
    return f" {pid}/{pid}  [001] {t:.6f}: syscalls:sys_exit_recvfrom: {size:#x}"


def _cycle(t: float) -> list[str]:
    """One connection: client and server frames at fixed offsets (microseconds)."""
    us = 1e-6
    return [_send(CLI, t, 74), _recv(SRV, t + 50 * us, 74), _send(SRV, t + 130 * us, 74),
            _recv(CLI, t + 200 * us, 74), _send(CLI, t + 260 * us, 66),
            _send(CLI, t + 330 * us, 130), _recv(SRV, t + 380 * us, 66),
            _recv(SRV, t + 420 * us, 130), _send(SRV, t + 500 * us, 130),
            _send(SRV, t + 600 * us, 66), _recv(CLI, t + 560 * us, 130),
            _send(CLI, t + 650 * us, 66)]


def test_cps_phases_from_frames(timeline: ModuleType) -> None:
    lines = sorted(_cycle(1.0) + _cycle(1.001) + _cycle(1.002),
                   key=lambda s: float(s.split("]")[1].split(":")[0]))
    ios, _, window = timeline.parse(lines, {CLI: "client", SRV: "server"})
    phases = timeline.cps_phases(ios["client"], ios["server"], 64)
    got = {k: [round(v * 1e6) for v in vals] for k, vals in phases.items()}
    assert got["client: SYN sent -> SYN-ACK in"] == [200, 200]
    assert got["client: SYN-ACK in -> ACK sent"] == [60, 60]
    assert got["client: ACK sent -> request sent"] == [70, 70]
    assert got["client: request sent -> reply in"] == [230, 230]
    assert got["client: reply in -> FIN sent"] == [90, 90]
    assert got["client: FIN sent -> next SYN sent"] == [350, 350]
    assert got["cycle (client SYN to SYN)"] == [1000, 1000]
    assert got["server: SYN in -> SYN-ACK sent"] == [80, 80, 80]
    assert got["server: request in -> reply sent"] == [80, 80, 80]
    assert got["server: reply sent -> FIN sent"] == [100, 100, 100]
    assert window == pytest.approx(0.00265)


def test_scheduler_shares(timeline: ModuleType) -> None:
    """Running, preempted and woken-but-waiting time per process, threads folded in."""
    lines = [
        f" 0/0 [000] 1.000000: sched:sched_switch: prev_comm=swapper/0 prev_pid=0 "
        f"prev_prio=120 prev_state=R ==> next_comm=python3 next_pid={CLI} next_prio=120",
        f" {CLI}/{CLI} [000] 1.000100: sched:sched_switch: prev_comm=python3 prev_pid={CLI} "
        f"prev_prio=120 prev_state=R ==> next_comm=python3 next_pid={SRV + 1} next_prio=120",
        f" {SRV}/{SRV + 1} [000] 1.000150: sched:sched_wakeup: comm=python3 pid={SRV} "
        f"prio=120 target_cpu=000",
        f" {SRV}/{SRV + 1} [000] 1.000300: sched:sched_switch: prev_comm=python3 "
        f"prev_pid={SRV + 1} prev_prio=120 prev_state=S ==> next_comm=python3 next_pid={CLI} "
        f"next_prio=120",
        f" {CLI}/{CLI} [000] 1.000400: sched:sched_switch: prev_comm=python3 prev_pid={CLI} "
        f"prev_prio=120 prev_state=S ==> next_comm=python3 next_pid={SRV} next_prio=120",
        f" {SRV}/{SRV} [000] 1.000500: sched:sched_switch: prev_comm=python3 prev_pid={SRV} "
        f"prev_prio=120 prev_state=S ==> next_comm=swapper/0 next_pid=0 next_prio=120",
    ]
    _, sched, window = timeline.parse(lines, {CLI: "client", SRV: "server", SRV + 1: "server"})
    assert window == pytest.approx(0.0005)
    assert sched["client"].running == pytest.approx(0.0002)  # 1.0000-1.0001, 1.0003-1.0004
    assert sched["client"].preempted == pytest.approx(0.0002)  # 1.0001-1.0003
    assert sched["server"].wake_wait == pytest.approx(0.00025)  # woken 1.00015, on CPU 1.0004
    assert sched["server"].running == pytest.approx(0.0003)  # thread 201 150 us, 200 100 us
    assert sched["server"].cpus[0] == 2
