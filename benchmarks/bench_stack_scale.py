"""1,000 ioth stacks in one process, each answering ping on one ioth switch.

Reports: start time, memory per idle stack (tracemalloc and RSS), how many answer, and the ping
round-trip time from another stack on the same switch.  Addresses from 198.18.0.0/15.

Run:  python benchmarks/bench_stack_scale.py [--stacks 1000]
"""

from __future__ import annotations

import argparse
import gc
import resource
import socket
import statistics
import struct
import sys
import tempfile
import time
import tracemalloc

import ioth


def rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stacks", type=int, default=1000)
    args = parser.parse_args(argv)
    n = args.stacks
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with tempfile.TemporaryDirectory() as tmp:
        sw = f"{tmp}/sw"
        pinger = ioth.Stack(f"switch://{sw}[numports={n + 16}]", "eth,ip=198.18.255.254/15")
        def make(i: int) -> ioth.Stack:
            return ioth.Stack(f"vde://{sw}", f"eth,ip=198.18.{i // 250}.{i % 250 + 1}/15")

        # memory: traced over a first batch (tracemalloc slows everything down)
        sample = min(100, n)
        gc.collect()
        tracemalloc.start()
        m0 = tracemalloc.get_traced_memory()[0]
        stacks = [make(i) for i in range(sample)]
        time.sleep(2.5)  # IPv6 link-local DAD and MLD reports settle
        gc.collect()
        per_stack = (tracemalloc.get_traced_memory()[0] - m0) / sample / 1024
        tracemalloc.stop()
        rss0 = rss_kib()
        t0 = time.monotonic()
        stacks += [make(i) for i in range(sample, n)]
        start = time.monotonic() - t0
        time.sleep(3)
        rss_per = (rss_kib() - rss0) / max(n - sample, 1)
        sock = pinger.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
        sock.settimeout(2.0)
        rtts = []
        answered = 0
        for i in range(n):
            dst = f"198.18.{i // 250}.{i % 250 + 1}"
            for attempt in range(2):  # the first one may wait for ARP
                t = time.monotonic()
                sock.sendto(struct.pack("!BBHHH", 8, 0, 0, 0, i * 2 + attempt) + b"x" * 56,
                            (dst, 0))
                try:
                    sock.recvfrom(200)
                except TimeoutError:
                    continue
                if attempt == 1 or i == 0:
                    rtts.append((time.monotonic() - t) * 1000)
                answered += attempt == 0 or attempt == 1
                break
        # second round: neighbours resolved, pure round trips
        rtts = []
        ok = 0
        for i in range(n):
            dst = f"198.18.{i // 250}.{i % 250 + 1}"
            t = time.monotonic()
            sock.sendto(struct.pack("!BBHHH", 8, 0, 0, 1, i) + b"x" * 56, (dst, 0))
            try:
                while True:
                    data, _ = sock.recvfrom(200)
                    if struct.unpack_from("!H", data, 6)[0] == i:
                        break
                ok += 1
                rtts.append((time.monotonic() - t) * 1000)
            except TimeoutError:
                pass
        for s in stacks:
            s.close()
        pinger.close()
    print(f"stacks: {n}; start of {n - sample}: {start:.2f} s "
          f"({start / max(n - sample, 1) * 1000:.2f} ms/stack)")
    print(f"memory per idle stack: {per_stack:.1f} KiB (tracemalloc), {rss_per:.1f} KiB (RSS)")
    print(f"answering ping: first round {answered}/{n}, second round {ok}/{n}")
    if rtts:
        print(f"rtt ms: median {statistics.median(rtts):.3f}, "
              f"p99 {sorted(rtts)[int(len(rtts) * 0.99) - 1]:.3f}, max {max(rtts):.3f}")
    return 0 if ok == n else 1


if __name__ == "__main__":
    sys.exit(main())
