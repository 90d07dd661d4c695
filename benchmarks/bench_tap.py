"""Benchmark: how fast a TapPlug pair bridges two kernel stacks, against Debian's vde_plug.

Topology, rebuilt for every configuration inside fresh network namespaces (run as root)::

    ns A: iperf3 -c 198.18.0.2  --tap tA--  BRIDGE  --tap tB--  ns B: iperf3 -s (198.18.0.2)

BRIDGE is one of:

* ``ioth``: two TapPlugs (``tap://tA[netns=A/up]``, ``tap://tB[netns=B/up]``) and a selector loop
  in one thread of this process (recv_frames on one side, send on the other);
* ``ioth offload``: the same with ``offload`` (64 KiB TSO/GSO frames, link MTU still 1500);
* ``ioth mtu 65521``: no offloads, link MTU 65521 on both taps;
* ``ioth offload -> plain``: the sender's tap offloads, the receiver's does not (its plug cuts
  the super-frames in software);
* ``(Engine)``: the same plugs joined by :class:`ioth.net.bridge.Bridge` on an ioth Engine
  thread (what a two-plug ioth command does) instead of the bare selector loop;
* ``vde_plug 1 proc``: ``vde_plug tap://tA tap://tB`` (one process; the taps are created in a
  scratch namespace and moved into A and B);
* ``vde_plug dpipe``: ``dpipe vde_plug tap://tA = vde_plug tap://tB`` (two processes, stream).

Each run is a 5-second iperf3 TCP test.  CPU is the bridge's CPU time over wall time.
Frames/s counts the frames the bridge read from the two kernels (tx_packets of both taps; a GSO
super-frame counts as one).  Ratios are against ``vde_plug 1 proc`` measured in the same run.
The machine is shared: expect noise.

Usage: ``python benchmarks/bench_tap.py [--time 5] [--only ioth,vde1,...]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from ioth.net.bridge import Bridge
from ioth.net.plugs.tap import TapPlug
from ioth.runtime.engine import Engine

ADDR_A = "198.18.0.1"
ADDR_B = "198.18.0.2"


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command, capture text output."""
    return subprocess.run(list(cmd), check=check, capture_output=True, text=True, timeout=60)


def nsexec(ns: str, *cmd: str) -> list[str]:
    """argv running ``cmd`` inside namespace ``ns``."""
    return ["ip", "netns", "exec", ns, *cmd]


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process we started (its whole session) by pid."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@contextlib.contextmanager
def namespaces(count: int) -> Iterator[list[str]]:
    """``count`` fresh namespaces with loopback up, deleted afterwards."""
    names = [f"bt-{secrets.token_hex(4)}" for _ in range(count)]
    try:
        for name in names:
            sh("ip", "netns", "add", name)
            sh(*nsexec(name, "ip", "link", "set", "lo", "up"))
        yield names
    finally:
        for name in names:
            sh("ip", "netns", "delete", name, check=False)


def wait_link(ns: str, ifname: str, timeout: float = 10) -> None:
    """Wait until ``ifname`` exists in ``ns``."""
    deadline = time.monotonic() + timeout
    while sh(*nsexec(ns, "ip", "link", "show", ifname), check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{ifname} did not appear in {ns}")
        time.sleep(0.05)


def configure(ns: str, ifname: str, addr: str, mtu: int | None = None) -> None:
    """Address and bring up ``ifname`` in ``ns``."""
    sh(*nsexec(ns, "ip", "addr", "add", f"{addr}/24", "dev", ifname))
    if mtu is not None:
        sh(*nsexec(ns, "ip", "link", "set", ifname, "mtu", str(mtu)))
    sh(*nsexec(ns, "ip", "link", "set", ifname, "up"))


def tx_packets(ns: str, ifname: str) -> int:
    """Frames the kernel sent into ``ifname`` (i.e. handed to the bridge)."""
    out = sh(*nsexec(ns, "cat", f"/sys/class/net/{ifname}/statistics/tx_packets")).stdout
    return int(out)


def process_cpu() -> float:
    """CPU seconds used by this process (the bridge thread does nearly all of it)."""
    t = os.times()
    return t.user + t.system


def pid_cpu(pid: int) -> float:
    """CPU seconds used by process ``pid`` (``ip netns exec`` execs, so it is vde_plug)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    """One measured configuration."""

    name: str
    gbps: float
    frames_per_s: float
    cpu: float | None = None  # CPU seconds per second used by the bridge (None: not measured)
    note: str = ""


def ioth_bridge(a: TapPlug, b: TapPlug, stopping: threading.Event) -> None:
    """Move frames both ways between ``a`` and ``b`` until ``stopping`` is set."""
    sel = selectors.DefaultSelector()
    sel.register(a.fileno(), selectors.EVENT_READ, (a, b))
    sel.register(b.fileno(), selectors.EVENT_READ, (b, a))
    while not stopping.is_set():
        for key, _ in sel.select(0.1):
            src, dst = key.data
            send = dst.send
            for frame in src.recv_frames(64):
                send(frame)
    sel.close()


def measure(ns_a: str, ns_b: str, if_a: str, if_b: str, seconds: float,
            cpu_clock: Callable[[], float] | None = None) -> tuple[float, float, float | None]:
    """Run iperf3 A -> B; return (Gbit/s received, bridge frames/s, bridge CPU fraction)."""
    port = str(20000 + secrets.randbelow(20000))
    server = subprocess.Popen(nsexec(ns_b, "iperf3", "-s", "-1", "-B", ADDR_B, "-p", port),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while f":{port}" not in sh(*nsexec(ns_b, "ss", "-ltnH")).stdout:
            if time.monotonic() > deadline:
                raise RuntimeError("iperf3 server did not start")
            time.sleep(0.05)
        before = tx_packets(ns_a, if_a) + tx_packets(ns_b, if_b)
        cpu0 = cpu_clock() if cpu_clock else 0.0
        t0 = time.monotonic()
        client = sh(*nsexec(ns_a, "iperf3", "-c", ADDR_B, "-p", port, "-t", str(seconds),
                            "-J"), check=False)
        elapsed = time.monotonic() - t0
        cpu = (cpu_clock() - cpu0) / elapsed if cpu_clock else None
        after = tx_packets(ns_a, if_a) + tx_packets(ns_b, if_b)
        report = json.loads(client.stdout)
        if "error" in report:
            raise RuntimeError(f"iperf3: {report['error']}")
        bps = float(report["end"]["sum_received"]["bits_per_second"])
        return bps / 1e9, (after - before) / elapsed, cpu
    finally:
        stop(server)


def run_ioth(seconds: float, offload: bool, mtu: int | None, offload_b: bool | None = None,
             engine: bool = False) -> Result:
    """ioth TapPlug bridge (``offload_b``: offloads of the receiving side, default as A;
    ``engine``: ioth.net.bridge.Bridge on an ioth Engine instead of the plain loop)."""
    offload_b = offload if offload_b is None else offload_b
    with namespaces(2) as (ns_a, ns_b):
        if_a, if_b = "tA" + secrets.token_hex(3), "tB" + secrets.token_hex(3)
        opts = "/offload" if offload else ""
        a = TapPlug(if_a, netns=ns_a, up=True, offload=offload, mtu=mtu)
        b = TapPlug(if_b, netns=ns_b, up=True, offload=offload_b, mtu=mtu)
        stopping = threading.Event()
        thread = threading.Thread(target=ioth_bridge, args=(a, b, stopping), daemon=True)
        loop = Engine(name="bench-tap") if engine else None
        bridge = Bridge(loop, a, b) if loop is not None else None
        try:
            configure(ns_a, if_a, ADDR_A)
            configure(ns_b, if_b, ADDR_B)
            if loop is not None and bridge is not None:
                loop.start()
                bridge.start()
            else:
                thread.start()
            gbps, fps, cpu = measure(ns_a, ns_b, if_a, if_b, seconds, process_cpu)
        finally:
            if loop is not None and bridge is not None:
                bridge.stop()
                loop.stop()
                loop.close()
            else:
                stopping.set()
                thread.join()
            dropped = a.counters.tx_dropped + b.counters.tx_dropped
            a.close()
            b.close()
        name = "ioth" + (" offload" if offload else "") + (f" mtu {mtu}" if mtu else "")
        if offload_b != offload:
            name += " -> plain"
        if engine:
            name += " (Engine)"
        return Result(name, gbps, fps, cpu, f"{opts} dropped={dropped}")


def run_vde_one(seconds: float) -> Result:
    """``vde_plug tap://tA tap://tB`` in one process."""
    with namespaces(3) as (ns_a, ns_b, ns_c):
        if_a, if_b = "vA" + secrets.token_hex(3), "vB" + secrets.token_hex(3)
        proc = subprocess.Popen(nsexec(ns_c, "vde_plug", f"tap://{if_a}", f"tap://{if_b}"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            wait_link(ns_c, if_a)
            wait_link(ns_c, if_b)
            sh(*nsexec(ns_c, "ip", "link", "set", if_a, "netns", ns_a))
            sh(*nsexec(ns_c, "ip", "link", "set", if_b, "netns", ns_b))
            configure(ns_a, if_a, ADDR_A)
            configure(ns_b, if_b, ADDR_B)
            gbps, fps, cpu = measure(ns_a, ns_b, if_a, if_b, seconds,
                                     lambda: pid_cpu(proc.pid))
        finally:
            stop(proc)
        return Result("vde_plug 1 proc", gbps, fps, cpu)


def run_vde_dpipe(seconds: float) -> Result:
    """``dpipe vde_plug tap://tA = vde_plug tap://tB``, each side in its namespace."""
    with namespaces(2) as (ns_a, ns_b):
        if_a, if_b = "dA" + secrets.token_hex(3), "dB" + secrets.token_hex(3)
        proc = subprocess.Popen(["dpipe", *nsexec(ns_a, "vde_plug", f"tap://{if_a}"), "=",
                                 *nsexec(ns_b, "vde_plug", f"tap://{if_b}")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # dpipe makes itself a session (and process group) leader: stop() can killpg its pid.
        try:
            wait_link(ns_a, if_a)
            wait_link(ns_b, if_b)
            configure(ns_a, if_a, ADDR_A)
            configure(ns_b, if_b, ADDR_B)
            gbps, fps, _ = measure(ns_a, ns_b, if_a, if_b, seconds)
        finally:
            stop(proc)
        return Result("vde_plug dpipe", gbps, fps)


def main(argv: list[str] | None = None) -> int:
    """Run the configurations and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--time", type=float, default=5.0, help="seconds per iperf3 run")
    parser.add_argument("--only",
                        default="vde1,dpipe,ioth,offload,jumbo,mixed,engine,engine-offload",
                        help="comma list of: vde1, dpipe, ioth, offload, jumbo, mixed, engine, "
                        "engine-offload")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_tap needs root (network namespaces, TAPs)", file=sys.stderr)
        return 2
    for tool in ("iperf3", "vde_plug", "dpipe", "ss"):
        if shutil.which(tool) is None:
            print(f"bench_tap needs {tool}", file=sys.stderr)
            return 2
    runs: dict[str, Callable[[], Result]] = {
        "vde1": lambda: run_vde_one(args.time),
        "dpipe": lambda: run_vde_dpipe(args.time),
        "ioth": lambda: run_ioth(args.time, offload=False, mtu=None),
        "offload": lambda: run_ioth(args.time, offload=True, mtu=None),
        "jumbo": lambda: run_ioth(args.time, offload=False, mtu=65521),
        "mixed": lambda: run_ioth(args.time, offload=True, mtu=None, offload_b=False),
        "engine": lambda: run_ioth(args.time, offload=False, mtu=None, engine=True),
        "engine-offload": lambda: run_ioth(args.time, offload=True, mtu=None, engine=True),
    }
    results: list[Result] = []
    for key in args.only.split(","):
        key = key.strip()
        if key not in runs:
            parser.error(f"unknown configuration {key!r}")
        result = runs[key]()
        print(f"  {result.name}: {result.gbps:.2f} Gbit/s, {result.frames_per_s:,.0f} frames/s"
              f" {result.note}", file=sys.stderr, flush=True)
        results.append(result)
    ref = next((r for r in results if r.name == "vde_plug 1 proc"), None)
    print(f"\nTAP bridge, iperf3 TCP {args.time:g} s per run "
          f"(ratios vs vde_plug tap://A tap://B in this run)")
    print(f"{'bridge':<22}{'Gbit/s':>9}{'frames/s':>12}{'CPU':>7}{'ratio':>8}")
    for r in results:
        ratio = f"{r.gbps / ref.gbps:.2f}x" if ref and ref.gbps > 0 else "-"
        cpu = f"{r.cpu:.0%}" if r.cpu is not None else "-"
        print(f"{r.name:<22}{r.gbps:>9.2f}{r.frames_per_s:>12,.0f}{cpu:>7}{ratio:>8}")
    print("CPU: bridge CPU time / wall time (dpipe: two processes, not measured).  Gbit/s ratio "
          "vs vde_plug 1 proc.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
