"""Smoke test of benchmarks/bench_tcp.py: a few fast cases run against real peers and report
numbers (no timing assertions: the machine is shared).

Cases: ``k2i1500`` (kernel sender in a namespace -> ioth sink on a TAP), ``k2i-iperf`` (the
kernel's ``iperf3 -c`` against the benchmark's iperf3-protocol server on ioth), ``rr-i2i`` (two ioth
processes through an ``ioth switch``) and ``conn10k`` at 200 connections.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support import peers

pytestmark = pytest.mark.interop

BENCH = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "bench_tcp.py")


def test_bench_tcp_quick_reports_numbers() -> None:
    """The benchmark runs its cases and reports a positive value for each."""
    peers.require_root()
    peers.require_tools("ip", "iperf3", "ss", "vde_switch", "vde_plug")
    proc = subprocess.run(
        [sys.executable, BENCH, "--quick", "--json", "--only", "k2i1500,k2i-iperf,rr-i2i,conn10k",
         "--seconds", "0.5", "--rr-seconds", "0.5", "--conns", "200"],
        capture_output=True, text=True, timeout=100, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    results = {r["key"]: r for r in json.loads(proc.stdout)}
    assert set(results) == {"k2i1500", "k2i-iperf", "rr-i2i", "conn10k"}
    for key, r in results.items():
        assert not r["error"], (key, r["error"])
        assert r["value"] > 0, (key, r)
    assert results["k2i1500"]["unit"] == "Gbit/s"
    assert results["rr-i2i"]["unit"] == "rt/s"
