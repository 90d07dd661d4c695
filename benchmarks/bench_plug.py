"""Benchmark: ``ioth plug vde://SW tap://T`` against Debian's ``vde_plug vde://SW tap://T``.

Topology, rebuilt for every run in fresh network namespaces (run as root)::

    ns A: iperf3 -c  --tap--  PLUG A  --  vde_switch (Debian)  --  PLUG B  --tap--  ns B: iperf3 -s

PLUG is ``vde_plug`` (Debian, C) or ``ioth plug`` (this project) on both sides; the runs
alternate so that the shared machine's noise hits both.  Prints Mbit/s of each run and the ratio
ioth / vde_plug of the medians.

Usage: ``python benchmarks/bench_plug.py [--time 3] [--rounds 2]``
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.peers import Netns, ioth_cmd, run, stop_process


def _wait(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise RuntimeError("timed out")


def one_run(kind: str, seconds: int) -> float:
    """Mbit/s of one iperf3 TCP run through two plugs of ``kind`` and a vde_switch."""
    sw = Path(tempfile.mkdtemp(prefix="benchplug")) / "sw"
    switch = subprocess.Popen(["vde_switch", "-s", str(sw)], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    spaces: list[Netns] = []
    try:
        _wait(lambda: (sw / "ctl").exists())
        for i in range(2):
            ns = Netns(f"bp-{secrets.token_hex(4)}")
            run(["ip", "netns", "add", ns.name])
            spaces.append(ns)
            ns.run(["ip", "link", "set", "lo", "up"])
            tap = "bp" + secrets.token_hex(4)
            if kind == "vde_plug":
                argv = ["vde_plug", f"vde://{sw}", f"tap://{tap}"]
            else:
                argv = ioth_cmd("plug", f"vde://{sw}", f"tap://{tap}[up]")
            ns.popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _wait(lambda ns=ns, tap=tap: ns.run(["ip", "link", "show", tap],
                                                check=False).returncode == 0)
            ns.run(["ip", "addr", "add", f"198.51.100.{i + 1}/24", "dev", tap])
            ns.run(["ip", "link", "set", tap, "up"])
        spaces[1].popen(["iperf3", "-s", "-1", "-B", "198.51.100.2"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: "5201" in spaces[1].run(["ss", "-ltn"]).stdout)
        res = spaces[0].run(["iperf3", "-c", "198.51.100.2", "-t", str(seconds), "-J"],
                            check=False, timeout=seconds + 30)
        return float(json.loads(res.stdout)["end"]["sum_received"]["bits_per_second"]) / 1e6
    finally:
        for ns in spaces:
            ns.delete()
        stop_process(switch)


def main() -> None:
    """Alternate runs of both kinds and print the ratio of the medians."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--time", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    results: dict[str, list[float]] = {"vde_plug": [], "ioth": []}
    for _ in range(args.rounds):
        for kind in results:
            mbps = one_run(kind, args.time)
            results[kind].append(mbps)
            print(f"{kind:9s} {mbps:8.1f} Mbit/s", flush=True)
    ref = statistics.median(results["vde_plug"])
    ours = statistics.median(results["ioth"])
    print(f"median vde_plug {ref:.1f} Mbit/s, ioth plug {ours:.1f} Mbit/s, "
          f"ratio ioth/vde_plug {ours / ref:.2f}")


if __name__ == "__main__":
    main()
