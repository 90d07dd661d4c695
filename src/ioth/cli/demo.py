"""``ioth demo``: a virtual network of thread-nodes in one process, no root needed.

It starts an ioth switch on a temporary control directory, creates several nodes (one
:class:`ioth.Stack` each, plugged into the switch with ``vde://``, each driven by its own thread),
and then checks, with real traffic between the nodes:

* ICMP echo over IPv4 and IPv6 from every node to node1 (ARP, NDP and DAD on the way);
* UDP request/response round trips between two nodes;
* TCP: a bulk transfer through the standard library's ``socket.create_connection`` and
  ``socket.create_server`` used under ``ioth.use(stack)``;
* HTTP: node1 serves files with the standard library's ``http.server`` and the other nodes fetch
  them with unmodified ``urllib.request`` (and ``requests``, when it is installed) code.

It prints who is who, what passed and how fast; ``--json`` prints the same for scripts.  The exit
status is 0 when every check passed.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import os
import socket
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from ioth.errors import IothUserError

NET4 = "198.51.100."
NET6 = "2001:db8:1::"


@dataclass
class Check:
    """One demo check and its outcome."""

    name: str
    ok: bool
    detail: str
    seconds: float
    figures: dict[str, float] = field(default_factory=dict)


def register(subparsers: Any) -> None:
    """Add the ``demo`` sub-command."""
    p = subparsers.add_parser("demo", help="build a virtual network of thread-nodes and test it",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=4, help="number of nodes (2..50, default 4)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--seconds", type=float, default=1.0,
                   help="duration of each throughput measurement (default 1)")
    p.set_defaults(func=run)


class Progress:
    """One-line progress messages on stderr (silent with --json)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def __call__(self, text: str) -> None:
        if not self.quiet:
            print(f"  .. {text}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _network(nodes: int, directory: str) -> Iterator[tuple[Any, list[Any]]]:
    from ioth.net.switch.server import SwitchServer
    from ioth.stack.stack import Stack

    switch = SwitchServer(os.path.join(directory, "switch"), default_mtu=1500).start()
    stacks: list[Any] = []
    try:
        for n in range(1, nodes + 1):
            config = f"eth,ip={NET4}{n}/24,ip={NET6}{n:x}/64"
            stacks.append(Stack(f"vde://{switch.directory}", config, own_thread=True))
        yield switch, stacks
    finally:
        for s in stacks:
            s.close()
        switch.close()


def _timed(name: str, fn: Callable[[], tuple[bool, str, dict[str, float]]]) -> Check:
    t0 = time.monotonic()
    try:
        ok, detail, figures = fn()
    except Exception as exc:  # a failed check is reported, not raised
        ok, detail, figures = False, f"{type(exc).__name__}: {exc}", {}
    return Check(name, ok, detail, time.monotonic() - t0, figures)


def _ping(stack: Any, family: int, dest: str, count: int = 3) -> tuple[bool, str, dict[str, float]]:
    proto = socket.IPPROTO_ICMP if family == socket.AF_INET else socket.IPPROTO_ICMPV6
    echo = 8 if family == socket.AF_INET else 128
    sock = stack.socket(family, socket.SOCK_DGRAM, proto)
    rtts: list[float] = []
    try:
        sock.settimeout(3.0)
        for seq in range(1, count + 1):
            t0 = time.monotonic()
            sock.sendto(struct.pack("!BBHHH", echo, 0, 0, 0, seq) + b"ioth-demo" * 6, (dest, 0))
            while True:
                data, _ = sock.recvfrom(2048)
                if struct.unpack_from("!H", data, 6)[0] == seq:
                    break
            rtts.append((time.monotonic() - t0) * 1000)
    finally:
        sock.close()
    return (len(rtts) == count, f"{count}/{count} replies, rtt min/avg {min(rtts):.2f}/"
            f"{sum(rtts) / len(rtts):.2f} ms", {"rtt_avg_ms": sum(rtts) / len(rtts)})


def _udp_round_trips(server: Any, client: Any, seconds: float) -> tuple[bool, str,
                                                                          dict[str, float]]:
    srv = server.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind((f"{NET4}1", 7))
    stop = threading.Event()

    def echo() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                data, addr = srv.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            srv.sendto(data, addr)

    thread = threading.Thread(target=echo, name="demo-udp-echo", daemon=True)
    thread.start()
    cli = client.socket(socket.AF_INET, socket.SOCK_DGRAM)
    cli.settimeout(3.0)
    cli.connect((f"{NET4}1", 7))
    n = 0
    try:
        deadline = time.monotonic() + seconds
        t0 = time.monotonic()
        while time.monotonic() < deadline:
            payload = n.to_bytes(8, "big") * 8
            cli.send(payload)
            if cli.recv(2048) != payload:
                return False, f"wrong echo after {n} round trips", {}
            n += 1
        rate = n / (time.monotonic() - t0)
    finally:
        stop.set()
        cli.close()
        thread.join(2)
        srv.close()
    return n > 0, f"{n} round trips of 64 bytes, {rate:,.0f}/s", {"round_trips_per_s": rate}


def _tcp_bulk(server: Any, client: Any, seconds: float) -> tuple[bool, str,
                                                                  dict[str, float]]:
    import ioth

    total = 0
    digest_rx = hashlib.sha256()
    with ioth.use(server):
        lsock = socket.create_server((f"{NET4}1", 5001))
    result: dict[str, Any] = {}

    def sink() -> None:
        nonlocal total
        conn, _ = lsock.accept()
        with conn:
            buf = bytearray(1 << 16)
            while True:
                n = conn.recv_into(buf)
                if not n:
                    break
                total += n
                digest_rx.update(memoryview(buf)[:n])
        result["done"] = True

    thread = threading.Thread(target=sink, name="demo-tcp-sink", daemon=True)
    thread.start()
    chunk = os.urandom(1 << 16)
    digest_tx = hashlib.sha256()
    sent = 0
    try:
        with ioth.use(client):
            conn = socket.create_connection((f"{NET4}1", 5001), timeout=10)
        with conn:
            t0 = time.monotonic()
            while time.monotonic() - t0 < seconds:
                conn.sendall(chunk)
                digest_tx.update(chunk)
                sent += len(chunk)
            conn.shutdown(socket.SHUT_WR)
            thread.join(30)
            dt = time.monotonic() - t0
    finally:
        lsock.close()
    ok = result.get("done", False) and total == sent and digest_rx.digest() == digest_tx.digest()
    rate = total * 8 / dt / 1e6
    return ok, (f"{total / 1e6:.1f} MB node2 -> node1 over one TCP connection, sha256 "
                f"{'ok' if ok else 'MISMATCH'}, {rate:.0f} Mbit/s"), {"tcp_mbit_per_s": rate}


def _http(stacks: list[Any], directory: str, seconds: float) -> tuple[bool, str,
                                                                       dict[str, float]]:
    import http.server
    import urllib.request

    import ioth

    requests: Any
    try:
        import requests as requests_module
        requests = requests_module
    except ImportError:  # optional: the check says it was not used
        requests = None

    use = ioth.use
    root = os.path.join(directory, "www")
    os.mkdir(root)
    blob = os.urandom(4 << 20)
    with open(os.path.join(root, "blob.bin"), "wb") as f:
        f.write(blob)
    with open(os.path.join(root, "index.html"), "wb") as f:
        f.write(b"<h1>hello from node1 over ioth</h1>\n")
    digest = hashlib.sha256(blob).hexdigest()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, directory=root, **kw)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    ready = threading.Event()
    holder: dict[str, Any] = {}

    def serve() -> None:
        with use(stacks[0]):
            httpd = http.server.ThreadingHTTPServer((f"{NET4}1", 80), Quiet)
            holder["httpd"] = httpd
            ready.set()
            httpd.serve_forever(poll_interval=0.2)

    server_thread = threading.Thread(target=serve, name="demo-httpd", daemon=True)
    server_thread.start()
    if not ready.wait(10):
        raise RuntimeError("HTTP server did not start")
    fetched: list[str] = []
    errors: list[str] = []
    mbps = 0.0

    def fetch(stack: Any, name: str) -> None:
        nonlocal mbps
        try:
            with use(stack):
                with urllib.request.urlopen(f"http://{NET4}1/index.html", timeout=10) as r:
                    if b"hello from node1" not in r.read():
                        errors.append(f"{name}: wrong page")
                        return
                t0 = time.monotonic()
                with urllib.request.urlopen(f"http://{NET4}1/blob.bin", timeout=30) as r:
                    body = r.read()
                dt = time.monotonic() - t0
            if hashlib.sha256(body).hexdigest() != digest:
                errors.append(f"{name}: blob digest mismatch")
                return
            mbps = max(mbps, len(body) * 8 / dt / 1e6)
            if requests is not None:
                with use(stack):
                    r = requests.get(f"http://{NET4}1/index.html", timeout=10)
                if r.status_code != 200 or "hello from node1" not in r.text:
                    errors.append(f"{name}: requests got {r.status_code}")
                    return
            fetched.append(name)
        except Exception as exc:
            errors.append(f"{name}: {type(exc).__name__}: {exc}")

    clients = [threading.Thread(target=fetch, args=(s, f"node{i}"), daemon=True)
               for i, s in enumerate(stacks[1:], start=2)]
    try:
        for t in clients:
            t.start()
        for t in clients:
            t.join(60)
    finally:
        httpd = holder.get("httpd")
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        server_thread.join(5)
    ok = not errors and len(fetched) == len(stacks) - 1
    libs = "urllib + requests" if requests is not None else "urllib (requests not installed)"
    detail = (f"{len(fetched)} nodes fetched index.html and a 4 MiB file with {libs} "
              f"(sha256 ok), best {mbps:.0f} Mbit/s") if ok else (
                  "; ".join(errors) or "no fetch finished")
    return ok, detail, {"http_mbit_per_s": mbps}


def run_demo(nodes: int, seconds: float, progress: Callable[[str], None]) -> dict[str, Any]:
    """Build the network, run every check, return a JSON-able summary."""
    started = time.monotonic()
    checks: list[Check] = []
    with tempfile.TemporaryDirectory(prefix="ioth-demo-") as directory:
        progress(f"starting an ioth switch and {nodes} thread-nodes")
        with _network(nodes, directory) as (switch, stacks):
            for s in stacks:
                s.wait_dad(5.0)
            table = []
            for n, s in enumerate(stacks, start=1):
                iface = next(i for i in s.interfaces() if not i["loopback"])
                table.append({"node": f"node{n}", "interface": iface["name"], "mac": iface["mac"],
                              "addresses": iface["addresses"], "switch": switch.directory})
            for family, fam_name, dest in ((socket.AF_INET, "IPv4", f"{NET4}1"),
                                           (socket.AF_INET6, "IPv6", f"{NET6}1")):
                for n, s in enumerate(stacks[1:], start=2):
                    progress(f"node{n} pings node1 over {fam_name}")
                    checks.append(_timed(f"ping {fam_name} node{n} -> node1",
                                         functools.partial(_ping, s, family, dest)))
            progress("UDP round trips node2 -> node1")
            checks.append(_timed("UDP echo node2 -> node1",
                                 lambda: _udp_round_trips(stacks[0], stacks[1], seconds)))
            progress("TCP bulk transfer node2 -> node1 (stdlib socket API under ioth.use)")
            checks.append(_timed("TCP bulk node2 -> node1",
                                 lambda: _tcp_bulk(stacks[0], stacks[1], seconds)))
            progress("HTTP: node1 serves with http.server, the others fetch with urllib")
            checks.append(_timed("HTTP http.server on node1, urllib on the others",
                                 lambda: _http(stacks, directory, seconds)))
    return {"nodes": table, "checks": [asdict(c) for c in checks],
            "passed": all(c.ok for c in checks), "seconds": time.monotonic() - started}


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _print_table(rows: list[list[str]], headers: list[str]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


def run(args: argparse.Namespace) -> int:
    """Run the demo and print its report."""
    if not 2 <= args.nodes <= 50:
        raise IothUserError(f"--nodes {args.nodes}: must be between 2 and 50")
    if not 0.1 <= args.seconds <= 60:
        raise IothUserError(f"--seconds {args.seconds}: must be between 0.1 and 60")
    result = run_demo(args.nodes, args.seconds, Progress(args.json))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0 if result["passed"] else 1
    print(f"\nioth demo: {args.nodes} thread-nodes on one ioth switch "
          f"({result['nodes'][0]['switch']}), no root needed\n")
    _print_table([[r["node"], r["interface"], r["mac"], ", ".join(r["addresses"])]
                  for r in result["nodes"]], ["node", "iface", "mac", "addresses"])
    print()
    _print_table([["PASS" if c["ok"] else "FAIL", c["name"], _duration(c["seconds"]), c["detail"]]
                  for c in result["checks"]], ["result", "check", "time", "detail"])
    passed = sum(c["ok"] for c in result["checks"])
    print(f"\n{passed}/{len(result['checks'])} checks passed in {result['seconds']:.1f}s")
    return 0 if result["passed"] else 1
