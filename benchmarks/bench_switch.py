"""Benchmark: TCP throughput between two kernel namespaces through ``ioth switch`` and through
Debian's ``vde_switch``.

Topology, rebuilt for every run in fresh network namespaces (run as root)::

    ns A: iperf3 -c --tap-- [attachment] -- SWITCH -- [attachment] --tap-- ns B: iperf3 -s

Configurations:

* ``vde_switch``: Debian's vde_switch; each namespace's TAP joined by Debian ``vde_plug``
  (the reference: three processes on the path);
* ``ioth switch``: ``ioth switch``; the TAPs joined by Debian ``vde_plug`` exactly as above;
* ``ioth switch, in-process taps``: ``ioth switch --port tap://tA[netns=A/up] --port ...``:
  the TAPs are ports of the switch process itself (one process on the path);
* ``... + offload``: the same with TAP offloads (64 KiB TSO/GSO frames cross the switch);
* ``... MTU 65520 + offload``: the same with ``tap://NAME[mtu=65520/up/offload]`` (both kernel
  interfaces at MTU 65520).

Issue 2's three cases are (a) ``vde``, (b) ``inproc`` (target >= 2x (a)) and (c) ``jumbo``
(target >= 8 Gbit/s); the table marks them.

Each run is one iperf3 TCP test of ``--time`` seconds (default 5); runs alternate over
``--rounds`` rounds.  The table shows the median Mbit/s and the ratio against ``vde_switch``
measured in the same run.  The machine is shared: expect noise.

``--micro`` also times the sans-IO engine alone (``SwitchCore.forward``, no I/O): nanoseconds
per frame for a learnt unicast frame, a broadcast to 8 ports, and an access-to-trunk frame that
gets tagged.

``--pingpong`` also measures the switch at low rate, where a wake-up per frame is the cost: two
minimal VDE clients (``ioth``'s ``vde://`` plug, then plain blocking ``send``/``recv``) bounce a
64-byte frame through ``vde_switch`` and through ``ioth switch``, each burning ``--burn`` us of
CPU on a large Python heap per frame (default 150, about what an ioth TCP end spends per
round trip, so that the switch wakes up with cold caches as it does under ``bench_tcp`` rr).
It prints round trips/s and the switch's CPU per frame (from /proc, every thread).  No
namespaces needed.

``ioth-general`` (in ``--only`` and in the ping-pong) is ``ioth switch`` without the data
thread's inline fast path (``FAST_PATH=False``: every wake-up goes through the general receive
function), measured in the same run.  Other variants for ``--paired`` (knobs of
``ioth.net.switch.server``): ``ioth-locked`` (``LOCK_FREE=False``: the lock for every
wake-up), ``ioth-sock`` (``FD_IO=False``: the socket objects' recv/send), ``ioth-s4`` (the
data thread as in session 4 but for the inline cache rule: socket objects, the lock, a drain
every 8 quiet wake-ups, 64 epoll events).

``--paired A,B`` runs two ping-pongs AT THE SAME TIME, one through switch A and one through B,
``--rounds`` times (the order alternating): both see the same background load, so on a shared
machine their difference is far less noisy than runs one after the other.  It prints each
switch's CPU per frame (median and range) and the median of the per-round differences.

``--callgrind KIND,...`` counts, deterministically, the user-space instructions the switch
process spends per forwarded frame (valgrind's callgrind; the counters are zeroed after 300
warm-up round trips and read after ``--frames`` more, no burn): on a shared machine the only
figure that does not move with the other processes' load (it leaves out the kernel and the
cache misses).

Usage: ``python benchmarks/bench_switch.py [--time 5] [--rounds 1]
[--only vde,ioth,ioth-general,inproc,offload,jumbo] [--micro] [--pingpong [--burn US]]
[--paired vde,ioth] [--callgrind ioth,ioth-s4 [--frames 2000]]``
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.peers import Netns, ioth_cmd, run, stop_process

CONFIGS = {
    "vde": "(a) vde_switch + vde_plug",
    "ioth": "ioth switch + vde_plug",
    "ioth-general": "ioth switch (no inline fast path) + vde_plug",
    "inproc": "(b) ioth switch, in-process taps",
    "offload": "ioth switch, in-process taps + offload",
    "jumbo": "(c) ioth switch, taps MTU 65520 + offload",
}
#: issue 2's targets: (b) at least twice vde_switch, (c) at least 8 Gbit/s
TARGETS = {"inproc": "target >= 2.00x", "jumbo": "target >= 8000 Mbit/s"}
JUMBO_MTU = 65520
#: ``ioth switch`` variants measured side by side: settings of ioth.net.switch.server knobs
VARIANTS = {"ioth": "", "ioth-general": "FAST_PATH=False", "ioth-locked": "LOCK_FREE=False",
            "ioth-sock": "FD_IO=False",
            "ioth-s4": "FD_IO=False,LOCK_FREE=False,PROBE_MAX=8,MAX_EVENTS=64"}


def switch_argv(kind: str, *args: str) -> list[str]:
    """argv of ``ioth switch ARGS`` with the knobs of variant ``kind`` set (see VARIANTS)."""
    tweak = VARIANTS.get(kind, "")
    if not tweak:
        return ioth_cmd("switch", *args)
    sets = "; ".join(f"server.{name} = {value}" for name, value in
                     (t.split("=", 1) for t in tweak.split(",")))
    code = ("import sys; from ioth.net.switch import server; " + sets
            + "; from ioth.cli.main import main; sys.argv[0] = 'ioth'; sys.exit(main())")
    return [sys.executable, "-c", code, "switch", *args]


def _wait(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise RuntimeError("timed out")


def one_run(kind: str, seconds: int) -> float:
    """Mbit/s of one iperf3 TCP run through configuration ``kind``."""
    sw = Path(tempfile.mkdtemp(prefix="benchsw")) / "sw"
    procs: list[subprocess.Popen[bytes]] = []
    spaces: list[Netns] = []
    try:
        taps = []
        for _ in range(2):
            ns = Netns(f"bs-{secrets.token_hex(4)}")
            run(["ip", "netns", "add", ns.name])
            spaces.append(ns)
            ns.run(["ip", "link", "set", "lo", "up"])
            taps.append("bs" + secrets.token_hex(4))
        if kind == "vde":
            procs.append(subprocess.Popen(["vde_switch", "-s", str(sw)], stdin=subprocess.PIPE,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True))
        else:
            ports: list[str] = []
            if kind in ("inproc", "offload", "jumbo"):
                extra = {"inproc": "", "offload": "/offload",
                         "jumbo": f"/offload/mtu={JUMBO_MTU}"}[kind]
                ports = [arg for ns, tap in zip(spaces, taps, strict=True)
                         for arg in ("--port", f"tap://{tap}[netns={ns.name}/up{extra}]")]
            procs.append(subprocess.Popen(switch_argv(kind, str(sw), *ports),
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True))
        _wait(lambda: (sw / "ctl").exists())
        for i, (ns, tap) in enumerate(zip(spaces, taps, strict=True)):
            if kind in ("vde", "ioth", "ioth-general"):
                ns.popen(["vde_plug", f"vde://{sw}", f"tap://{tap}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _wait(lambda ns=ns, tap=tap: ns.run(["ip", "link", "show", tap],  # type: ignore[misc]
                                                check=False).returncode == 0)
            if kind == "jumbo":
                ns.run(["ip", "link", "set", tap, "mtu", str(JUMBO_MTU)])
            ns.run(["ip", "addr", "add", f"198.51.100.{i + 1}/24", "dev", tap])
            ns.run(["ip", "link", "set", tap, "up"])
        spaces[1].popen(["iperf3", "-s", "-1", "-B", "198.51.100.2"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: "5201" in spaces[1].run(["ss", "-ltn"]).stdout)
        spaces[0].run(["ping", "-c", "1", "-W", "2", "198.51.100.2"], check=False)
        res = spaces[0].run(["iperf3", "-c", "198.51.100.2", "-t", str(seconds), "-J"],
                            check=False, timeout=seconds + 30)
        return float(json.loads(res.stdout)["end"]["sum_received"]["bits_per_second"]) / 1e6
    finally:
        for ns in spaces:
            ns.delete()
        for proc in procs:
            stop_process(proc)


def micro() -> None:
    """ns per frame of ``SwitchCore.forward`` (best of 3 runs of 200,000 frames)."""
    from ioth.net.switch.core import MAX_FRAME, SwitchCore

    a, b = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
    cases: list[tuple[str, SwitchCore, bytes]] = []
    sw = SwitchCore()
    for n in range(1, 9):
        sw.add_port(n, MAX_FRAME)
    sw.forward(2, a + b + b"\x08\x00" + bytes(46), 0.0)
    cases.append(("unicast, learnt, 1514 B", sw, b + a + b"\x08\x00" + bytes(1500)))
    cases.append(("broadcast to 7 ports", sw, b"\xff" * 6 + a + b"\x08\x00" + bytes(46)))
    tagging = SwitchCore()
    tagging.add_port(1, MAX_FRAME)
    tagging.add_port(2, MAX_FRAME)
    tagging.create_vlan(10)
    tagging.set_untagged_vlan(1, 10)
    tagging.forward(2, a + b + b"\x81\x00\x00\x0a\x08\x00" + bytes(46), 0.0)
    cases.append(("access -> trunk, tag added", tagging, b + a + b"\x08\x00" + bytes(1500)))
    print(f"{'SwitchCore.forward':42s} {'ns/frame':>9s}")
    for label, core, frame in cases:
        forward = core.forward
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(200_000):
                forward(1, frame, 1.0)
            best = min(best, (time.perf_counter() - start) / 200_000 * 1e9)
        print(f"{label:42s} {best:9.0f}")
    print()


_HEAP = [{"a": i, "b": str(i)} for i in range(20000)]


def _burn(us: float) -> None:
    """Spend ``us`` microseconds touching a large heap (evicts the switch from the caches)."""
    end = time.perf_counter() + us * 1e-6
    i = 0
    while time.perf_counter() < end:
        for _ in range(50):
            _HEAP[(i * 7919) % 20000]["a"] += 1  # type: ignore[operator]
            i += 1


def _pp_peer(directory: str, me: bytes, other: bytes, role: str, seconds: float,
             burn: float, out: Any, done: Any) -> None:
    from ioth.net.plugs.vde import VdePlug

    plug = VdePlug(directory)
    sock = plug._sock
    sock.setblocking(True)
    frame = other + me + b"\x08\x00" + bytes(50)
    stop = other + me + b"\x08\x00STOP" + bytes(46)
    # the switch learns us; the echo does not answer this one (one frame in flight, not two)
    sock.send(other + me + b"\x08\x00LRN." + bytes(46))
    if role == "echo":
        while (kind := sock.recv(2000)[14:18]) != b"STOP":
            if kind == b"LRN.":
                continue
            _burn(burn)
            sock.send(frame)
    else:
        time.sleep(0.2)
        start = time.perf_counter()
        count = 0
        while count % 64 or time.perf_counter() - start < seconds:
            sock.send(frame)
            sock.recv(2000)
            _burn(burn)
            count += 1
        out.put(count / (time.perf_counter() - start))
        done.wait(30)  # the switch's CPU is read while every port (and its thread) is alive
        sock.send(stop)
    plug.close()


def _cpu_seconds(pid: int) -> float:
    """CPU time of every thread of ``pid`` so far, in seconds (ns resolution: schedstat)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # a thread that just ended
    return total / 1e9


def pingpong(kind: str, seconds: float, burn: float) -> tuple[float, float]:
    """(round trips/s, switch CPU us per frame) of a ping-pong through ``kind`` (vde/ioth)."""
    return pingpong_many([kind], seconds, burn)[0]


def pingpong_many(kinds: list[str], seconds: float, burn: float) -> list[tuple[float, float]]:
    """:func:`pingpong` through several switches at once (one ping-pong pair each, same time
    window): (round trips/s, switch CPU us per frame) per switch, in the order of ``kinds``."""
    import multiprocessing

    a, b = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
    with tempfile.TemporaryDirectory(prefix="benchpp") as tmp:
        dirs = [os.path.join(tmp, f"sw{i}") for i in range(len(kinds))]
        ctx = multiprocessing.get_context("fork")
        done = ctx.Event()
        procs: list[Any] = []
        switches: list[subprocess.Popen[bytes]] = []
        try:
            for kind, d in zip(kinds, dirs, strict=True):
                argv = ["vde_switch", "-s", d] if kind == "vde" else switch_argv(kind, d)
                switches.append(subprocess.Popen(argv, stdin=subprocess.PIPE,
                                                 stdout=subprocess.DEVNULL,
                                                 stderr=subprocess.DEVNULL,
                                                 start_new_session=True))
            outs: list[Any] = []
            for d in dirs:
                _wait(lambda d=d: os.path.exists(os.path.join(d, "ctl")))  # type: ignore[misc]
                out = ctx.Queue()
                outs.append(out)
                echo = ctx.Process(target=_pp_peer, args=(d, b, a, "echo", seconds, burn, out,
                                                          done))
                echo.start()
                procs.append(echo)
            time.sleep(0.3)
            cpu0 = [_cpu_seconds(sw.pid) for sw in switches]
            t0 = time.monotonic()
            for d, out in zip(dirs, outs, strict=True):
                ping = ctx.Process(target=_pp_peer, args=(d, a, b, "ping", seconds, burn, out,
                                                          done))
                ping.start()
                procs.append(ping)
            rates = [float(out.get(timeout=seconds + 30)) for out in outs]
            wall = time.monotonic() - t0
            cpu = [_cpu_seconds(sw.pid) - c for sw, c in zip(switches, cpu0, strict=True)]
            done.set()
            for proc in procs:
                proc.join(5)
            return [(rate, c / (rate * 2 * wall) * 1e6)
                    for rate, c in zip(rates, cpu, strict=True)]
        finally:
            for proc in procs:
                if proc.is_alive():
                    proc.terminate()
                    proc.join(5)
            for sw in switches:
                stop_process(sw)


def paired(kinds: list[str], rounds: int, seconds: float, burn: float) -> None:
    """``--paired A,B``: both ping-pongs at once, ``rounds`` times; medians, ranges and the
    median of the per-round differences of the switches' CPU per frame."""
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
    for i in range(rounds):
        order = kinds if i % 2 == 0 else kinds[::-1]
        for kind, result in zip(order, pingpong_many(order, seconds, burn), strict=True):
            runs[kind].append(result)
        print("  round " + str(i + 1) + ": " + "  ".join(
            f"{k} {runs[k][-1][1]:5.1f} us/frame ({runs[k][-1][0]:.0f} rt/s)" for k in kinds),
            flush=True)
    print(f"{'paired ping-pong (burn ' + str(burn) + ' us)':42s} {'rt/s':>9s} {'us/frame':>9s}"
          f" {'range':>11s}")
    for kind in kinds:
        us = [u for _, u in runs[kind]]
        rate = statistics.median(r for r, _ in runs[kind])
        print(f"{kind + ' switch':42s} {rate:9.0f} {statistics.median(us):9.1f}"
              f" {min(us):5.1f}-{max(us):<5.1f}")
    first, second = kinds[0], kinds[1]
    diffs = [x[1] - y[1] for x, y in zip(runs[first], runs[second], strict=True)]
    print(f"{first} - {second} per round: " + " ".join(f"{d:+.1f}" for d in diffs)
          + f"  median {statistics.median(diffs):+.1f} us/frame")
    print()


def callgrind(kind: str, frames: int) -> float:
    """User-space instructions per forwarded frame of switch ``kind`` (an ioth variant) under
    callgrind, in a ping-pong of ``frames`` frames."""
    import re

    from ioth.net.plugs.vde import VdePlug

    a, b = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
    with tempfile.TemporaryDirectory(prefix="benchcg") as tmp:
        d, out = os.path.join(tmp, "sw"), os.path.join(tmp, "cg.out")
        sw = subprocess.Popen(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
                               *switch_argv(kind, d)], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
        plugs: list[Any] = []
        try:
            _wait(lambda: os.path.exists(os.path.join(d, "ctl")), 120)
            plugs = [VdePlug(d), VdePlug(d)]
            sa, sb = (plug._sock for plug in plugs)
            for sock in (sa, sb):
                sock.setblocking(True)
                sock.settimeout(30)
            fa, fb = b + a + b"\x08\x00" + bytes(50), a + b + b"\x08\x00" + bytes(50)

            def bounce(n: int) -> None:
                for _ in range(n):
                    sa.send(fa)
                    sb.recv(2000)
                    sb.send(fb)
                    sa.recv(2000)
            bounce(300)
            run(["callgrind_control", "-z", str(sw.pid)])
            bounce(frames // 2)
            run(["callgrind_control", "-d", str(sw.pid)])
            dumps = sorted((f for f in os.listdir(tmp) if f.startswith("cg.out")),
                           key=lambda f: os.path.getmtime(os.path.join(tmp, f)))
            text = run(["callgrind_annotate", "--threshold=100",
                        os.path.join(tmp, dumps[-1])]).stdout
            m = re.search(r"^\s*([\d,]+) \(100.0%\)\s+PROGRAM TOTALS", text, re.M)
            if m is None:
                raise RuntimeError("no PROGRAM TOTALS in callgrind_annotate's output")
            return int(m.group(1).replace(",", "")) / (frames // 2 * 2)
        finally:
            for plug in plugs:
                plug.close()
            stop_process(sw)


def main() -> None:
    """Run every configuration and print the table."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--time", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--only", default=",".join(CONFIGS),
                        help="comma-separated subset of " + ",".join(CONFIGS))
    parser.add_argument("--micro", action="store_true",
                        help="also time SwitchCore.forward alone")
    parser.add_argument("--pingpong", action="store_true",
                        help="also measure rt/s and switch CPU per frame at low rate")
    parser.add_argument("--burn", type=float, default=150.0,
                        help="CPU us each ping-pong end spends per frame (default 150)")
    parser.add_argument("--callgrind", default="",
                        help="KIND,...: instructions per frame under callgrind (ioth variants: "
                        + ", ".join(VARIANTS) + ")")
    parser.add_argument("--frames", type=int, default=2000,
                        help="frames counted by --callgrind (default 2000)")
    parser.add_argument("--paired", default="",
                        help="A,B: two ping-pongs at once through switches A and B "
                        "(vde, " + ", ".join(VARIANTS) + ")")
    args = parser.parse_args()
    if args.micro:
        micro()
    if args.callgrind:
        for kind in args.callgrind.split(","):
            if kind not in VARIANTS:
                raise SystemExit(f"--callgrind {kind}: one of {', '.join(VARIANTS)}")
            print(f"  {kind + ' switch':40s} {callgrind(kind, args.frames):9,.0f} instructions"
                  " per frame (callgrind, user space)", flush=True)
        print()
    if args.paired:
        pair = args.paired.split(",")
        if len(pair) != 2 or any(k != "vde" and k not in VARIANTS for k in pair):
            raise SystemExit(f"--paired {args.paired}: two of vde, {', '.join(VARIANTS)}")
        paired(pair, max(args.rounds, 1), args.time, args.burn)
    if args.pingpong:
        pp: dict[str, list[tuple[float, float]]] = {"vde": [], "ioth": [], "ioth-general": []}
        for _ in range(args.rounds):
            for kind in pp:
                rate, us = pingpong(kind, args.time, args.burn)
                pp[kind].append((rate, us))
                print(f"  ping-pong through {kind:10s} {rate:8.0f} rt/s  switch {us:5.1f} us/frame",
                      flush=True)
        ref = statistics.median(us for _, us in pp["vde"])
        print(f"{'ping-pong (burn ' + str(args.burn) + ' us)':42s} {'rt/s':>9s} {'us/frame':>9s}"
              f" {'x vde':>6s}")
        for kind, runs in pp.items():
            rate = statistics.median(r for r, _ in runs)
            us = statistics.median(u for _, u in runs)
            print(f"{kind + ' switch':42s} {rate:9.0f} {us:9.1f} {us / ref:6.2f}")
        print()
    kinds = [k for k in args.only.split(",") if k]
    if not kinds and (args.micro or args.pingpong or args.paired or args.callgrind):
        return  # --only '': just those
    if "vde" not in kinds:
        kinds.insert(0, "vde")  # the reference is always measured
    results: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(args.rounds):
        for kind in kinds:
            try:
                mbps = one_run(kind, args.time)
            except (RuntimeError, KeyError, ValueError, subprocess.SubprocessError) as exc:
                print(f"{CONFIGS[kind]}: failed: {exc!r}", flush=True)
                continue
            results[kind].append(mbps)
            print(f"  {CONFIGS[kind]:42s} {mbps:9.1f} Mbit/s", flush=True)
    if not results["vde"]:
        raise SystemExit("the vde_switch reference run failed")
    ref = statistics.median(results["vde"])
    print()
    print(f"{'configuration':42s} {'Mbit/s':>9s} {'ratio':>7s}")
    for kind in kinds:
        if results[kind]:
            med = statistics.median(results[kind])
            print(f"{CONFIGS[kind]:42s} {med:9.1f} {med / ref:7.2f}  {TARGETS.get(kind, '')}")
        else:
            print(f"{CONFIGS[kind]:42s} {'failed':>9s}")


if __name__ == "__main__":
    main()
