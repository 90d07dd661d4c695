"""ioth stack vs the Linux kernel: ICMP echo and UDP request/response round trips per second, UDP
throughput both ways.  The peer is a kernel namespace on a TAP opened by the ioth stack; the
reference is the same measurement kernel<->kernel over a veth pair in the same run.

Run as root:  python benchmarks/bench_stack.py [--seconds 3] [--size 1472]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import ioth

CLIENT_RR = r"""
import socket, sys, time
fam = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(1)
s.connect((sys.argv[1], int(sys.argv[2]))); end = time.monotonic() + float(sys.argv[3]); n = 0
while time.monotonic() < end:
    s.send(b'x' * 32)
    try: s.recv(100); n += 1
    except socket.timeout: pass
print(n / float(sys.argv[3]))
"""

SENDER = r"""
import socket, sys, time
fam = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM); s.connect((sys.argv[1], int(sys.argv[2])))
data = b'u' * int(sys.argv[4]); end = time.monotonic() + float(sys.argv[3]); n = 0
while time.monotonic() < end:
    try: s.send(data); n += 1
    except OSError: pass
print(n)
"""

SINK = r"""
import socket, sys, time
fam = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1<<22)
s.bind((sys.argv[1], int(sys.argv[2]))); s.settimeout(1.0); total = 0; first = last = None
print('ready', flush=True)
while True:
    try: d = s.recv(65536)
    except socket.timeout:
        if first is not None: break
        continue
    last = time.monotonic(); first = first or last; total += len(d)
print(total / max(last - first, 1e-6))
"""

ECHO = r"""
import socket, sys
fam = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM); s.bind((sys.argv[1], int(sys.argv[2])))
print('ready', flush=True)
while True:
    d, a = s.recvfrom(100); s.sendto(d, a)
"""


def sh(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


@contextlib.contextmanager
def namespace() -> Iterator[str]:
    name = "bst-" + secrets.token_hex(3)
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def nsrun(ns: str, *cmd: str, timeout: float = 60) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], check=True, capture_output=True,
                          text=True, timeout=timeout).stdout


def nspopen(ns: str, *cmd: str) -> subprocess.Popen[str]:
    return subprocess.Popen(["ip", "netns", "exec", ns, *cmd], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)


def ping_rate(ns: str, dst: str, count: int) -> float:
    t = time.monotonic()
    out = nsrun(ns, "ping", "-f", "-q", "-c", str(count), "-W", "1", dst)
    elapsed = time.monotonic() - t
    got = int(re.search(r"(\d+) received", out).group(1))  # type: ignore[union-attr]
    return got / elapsed


def _sock(stack: ioth.Stack, family: int) -> Any:
    return stack.socket(family, socket.SOCK_DGRAM)


def ioth_sink(stack: ioth.Stack, family: int, port: int, result: list[float],
              ready: threading.Event) -> None:
    s = _sock(stack, family)
    s.bind(("", port))
    s.settimeout(1.0)
    ready.set()
    total = 0
    first = last = 0.0
    while True:
        try:
            d = s.recv(65536)
        except TimeoutError:
            if first:
                break
            continue
        last = time.monotonic()
        first = first or last
        total += len(d)
    s.close()
    result.append(total / max(last - first, 1e-6))


def ioth_echo(stack: ioth.Stack, family: int, port: int, stop: threading.Event) -> None:
    s = _sock(stack, family)
    s.bind(("", port))
    s.settimeout(0.2)
    while not stop.is_set():
        try:
            d, a = s.recvfrom(100)
        except TimeoutError:
            continue
        s.sendto(d, a)
    s.close()


def ioth_send(stack: ioth.Stack, family: int, dst: str, port: int, seconds: float,
              size: int) -> None:
    s = _sock(stack, family)
    s.connect((dst, port))
    data = b"u" * size
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(50):
            s.send(data)
    s.close()


def measure_kernel_pair(seconds: float, size: int, pings: int) -> dict[str, float]:
    with namespace() as a, namespace() as b:
        va, vb = "va" + secrets.token_hex(3), "vb" + secrets.token_hex(3)
        sh("ip", "link", "add", va, "netns", a, "type", "veth", "peer", vb, "netns", b)
        nsrun(a, "ip", "addr", "add", "192.0.2.1/24", "dev", va)
        nsrun(b, "ip", "addr", "add", "192.0.2.2/24", "dev", vb)
        nsrun(a, "ip", "link", "set", va, "up")
        nsrun(b, "ip", "link", "set", vb, "up")
        time.sleep(0.5)
        res = {"icmp_rtt_per_s": ping_rate(a, "192.0.2.2", pings)}
        echo = nspopen(b, sys.executable, "-c", ECHO, "192.0.2.2", "7")
        assert echo.stdout is not None
        echo.stdout.readline()
        res["udp_rr_per_s"] = float(nsrun(a, sys.executable, "-c", CLIENT_RR, "192.0.2.2", "7",
                                          str(seconds)))
        echo.kill()
        sink = nspopen(b, sys.executable, "-c", SINK, "192.0.2.2", "9")
        assert sink.stdout is not None
        sink.stdout.readline()
        nsrun(a, sys.executable, "-c", SENDER, "192.0.2.2", "9", str(seconds), str(size))
        res["udp_tx_MBps"] = float(sink.communicate(timeout=30)[0]) / 1e6
        res["udp_rx_MBps"] = res["udp_tx_MBps"]  # symmetric: kernel to kernel
        return res


def measure_ioth(seconds: float, size: int, pings: int) -> dict[str, float]:
    with namespace() as ns:
        tap = "bt" + secrets.token_hex(3)
        with ioth.Stack(f"tap://{tap}[netns={ns}/up]", "eth,ip=192.0.2.2/24") as stack:
            nsrun(ns, "ip", "addr", "add", "192.0.2.1/24", "dev", tap)
            nsrun(ns, "ip", "link", "set", tap, "up")
            time.sleep(0.5)
            nsrun(ns, "ping", "-c", "1", "-W", "2", "192.0.2.2")
            res = {"icmp_rtt_per_s": ping_rate(ns, "192.0.2.2", pings)}
            stop = threading.Event()
            t = threading.Thread(target=ioth_echo, args=(stack, socket.AF_INET, 7, stop))
            t.start()
            res["udp_rr_per_s"] = float(nsrun(ns, sys.executable, "-c", CLIENT_RR, "192.0.2.2",
                                              "7", str(seconds)))
            stop.set()
            t.join()
            # kernel -> ioth
            result: list[float] = []
            ready = threading.Event()
            t = threading.Thread(target=ioth_sink, args=(stack, socket.AF_INET, 9, result, ready))
            t.start()
            ready.wait()
            nsrun(ns, sys.executable, "-c", SENDER, "192.0.2.2", "9", str(seconds), str(size))
            t.join()
            res["udp_rx_MBps"] = result[0] / 1e6
            # ioth -> kernel
            sink = nspopen(ns, sys.executable, "-c", SINK, "192.0.2.1", "9")
            assert sink.stdout is not None
            sink.stdout.readline()
            ioth_send(stack, socket.AF_INET, "192.0.2.1", 9, seconds, size)
            res["udp_tx_MBps"] = float(sink.communicate(timeout=30)[0]) / 1e6
            res["counters_udp_rx_buffer_drops"] = float(
                stack.counters().get("udp", {}).get("rx_buffer_drops", 0))
            return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--size", type=int, default=1472, help="UDP payload bytes")
    parser.add_argument("--pings", type=int, default=3000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    kernel = measure_kernel_pair(args.seconds, args.size, args.pings)
    stack = measure_ioth(args.seconds, args.size, args.pings)
    if args.json:
        print(json.dumps({"kernel_veth": kernel, "ioth_tap": stack}))
        return 0
    print(f"UDP payload {args.size} bytes, {args.seconds:.0f} s per test, ioth side: "
          "ioth.sockets (real descriptors)")
    print(f"{'metric':<22}{'kernel<->kernel':>18}{'kernel<->ioth':>16}{'ratio':>8}")
    for key in ("icmp_rtt_per_s", "udp_rr_per_s", "udp_rx_MBps", "udp_tx_MBps"):
        k, i = kernel[key], stack[key]
        label = key + (" (k->ioth)" if key == "udp_rx_MBps" else
                       " (ioth->k)" if key == "udp_tx_MBps" else "")
        print(f"{label:<22}{k:>18.1f}{i:>16.1f}{i / k if k else 0:>8.2f}")
    print(f"ioth UDP receive-buffer drops: {stack['counters_udp_rx_buffer_drops']:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
