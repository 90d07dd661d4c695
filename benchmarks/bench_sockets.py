"""Cost of the ioth socket layer: TCP throughput (sendall / recv_into with 64 KiB buffers) and
1-byte round trips per second through ioth sockets, against the same traffic driven through the
raw stack API (TcpLayer / TcpConnection calls under the stack lock, woken by the layer's notify
callback) on an identical stack, measured in the same run and printed as ratios.

    python benchmarks/bench_sockets.py [--seconds 2] [--mtu 65535]

Both sides use one stack's loopback interface by default (no frames on a plug), so the figures
isolate protocol + socket-layer work; ``--switch`` puts the two ends on two stacks joined by an
ioth switch instead.
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
from typing import Any

import ioth
from ioth.sockets import socket as isocket

CHUNK = 64 * 1024


def _stacks(switch: bool, tmp: str) -> tuple[ioth.Stack, ioth.Stack, str]:
    if not switch:
        s = ioth.Stack()
        _tcp(s)
        return s, s, "127.0.0.1"
    a = ioth.Stack(f"switch://{tmp}", "eth,ip=198.18.0.1/24")
    b = ioth.Stack(f"vde://{tmp}", "eth,ip=198.18.0.2/24")
    _tcp(a)
    _tcp(b)
    return a, b, "198.18.0.2"


def _tcp(stack: ioth.Stack) -> None:
    assert stack.core.tcp is not None  # created on first use


def bench_sockets(a: ioth.Stack, b: ioth.Stack, addr: str, seconds: float
                  ) -> tuple[float, float]:
    """(bytes/s, round trips/s) through ioth sockets."""
    srv = isocket(b, socket.AF_INET, socket.SOCK_STREAM)
    srv.bind((addr, 5001))
    srv.listen()
    cli = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
    cli.connect((addr, 5001))
    conn, _ = srv.accept()
    total = [0]

    def sink() -> None:
        buf = bytearray(CHUNK)
        n = 0
        while True:
            got = conn.recv_into(buf)
            if not got:
                break
            n += got
        total[0] = n

    t = threading.Thread(target=sink)
    t.start()
    data = b"\xa5" * CHUNK
    t0 = time.perf_counter()
    sent = 0
    while time.perf_counter() - t0 < seconds:
        cli.sendall(data)
        sent += CHUNK
    cli.shutdown(socket.SHUT_WR)
    t.join()
    rate = total[0] / (time.perf_counter() - t0)
    assert total[0] == sent
    conn.close()
    cli.close()
    # round trips
    cli = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
    cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    cli.connect((addr, 5001))
    conn, _ = srv.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def echo() -> None:
        while d := conn.recv(1):
            conn.sendall(d)

    t = threading.Thread(target=echo)
    t.start()
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        cli.sendall(b"x")
        cli.recv(1)
        n += 1
    rtt = n / (time.perf_counter() - t0)
    cli.close()
    t.join()
    conn.close()
    srv.close()
    return rate, rtt


class _Raw:
    """One end driven through the TcpConnection API; waits on the layer's notify callback."""

    def __init__(self, stack: ioth.Stack, conn: Any, cond: threading.Condition) -> None:
        self.stack = stack
        self.conn = conn
        self.cond = cond

    def send(self, data: memoryview) -> None:
        stack, conn = self.stack, self.conn
        layer = stack.core.tcp
        with self.cond:
            while data:
                try:
                    n = conn.send(data)
                except BlockingIOError:
                    n = 0
                if n:
                    data = data[n:]
                    layer.flush(conn, stack.now())
                    stack.core.drain_loopback(stack.now())
                    stack.runtime.flush()
                else:
                    self.cond.wait(1)

    def recv(self, limit: int) -> bytes:
        stack, conn = self.stack, self.conn
        layer = stack.core.tcp
        with self.cond:
            while True:
                try:
                    data: bytes = conn.recv(limit)
                except BlockingIOError:
                    self.cond.wait(1)
                    continue
                layer.flush(conn, stack.now())
                stack.core.drain_loopback(stack.now())
                stack.runtime.flush()
                return data


def bench_raw(a: ioth.Stack, b: ioth.Stack, addr: str, seconds: float) -> tuple[float, float]:
    """(bytes/s, round trips/s) through the raw stack API."""
    import ipaddress

    dst = ipaddress.IPv4Address(addr).packed
    conds = {id(a): threading.Condition(a.lock), id(b): threading.Condition(b.lock)}
    for s in {id(a): a, id(b): b}.values():
        cond = conds[id(s)]
        s.core.tcp.notify = lambda _obj, c=cond: c.notify_all()

    def pair(port: int, nodelay: bool) -> tuple[_Raw, _Raw]:
        with b.lock:
            lst = b.core.tcp.listen(port, dst)
        with a.lock:
            iface, nh = a.core.ip4.route(dst)
            src = a.core.ip4.source_for(iface, nh)
            c = a.core.tcp.connect(src, dst, port, a.now())
            c.nodelay = nodelay
            a.core.drain_loopback(a.now())
            a.runtime.flush()
        with conds[id(b)]:
            while not lst.accept_queue:
                conds[id(b)].wait(1)
            sconn = lst.accept()
            assert sconn is not None
            sconn.nodelay = nodelay
            b.core.tcp.close_listener(lst, b.now())
        with conds[id(a)]:
            while str(c.state) != "ESTABLISHED":
                conds[id(a)].wait(1)
        return _Raw(a, c, conds[id(a)]), _Raw(b, sconn, conds[id(b)])

    cli, srv = pair(5002, False)
    total = [0]

    def sink() -> None:
        n = 0
        while True:
            d = srv.recv(1 << 20)
            if not d:
                break
            n += len(d)
        total[0] = n

    t = threading.Thread(target=sink)
    t.start()
    data = memoryview(b"\xa5" * CHUNK)
    sent = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        cli.send(data)
        sent += CHUNK
    with a.lock:
        cli.conn.shutdown()
        a.core.tcp.flush(cli.conn, a.now())
        a.core.drain_loopback(a.now())
        a.runtime.flush()
    t.join()
    rate = total[0] / (time.perf_counter() - t0)
    assert total[0] == sent
    cli, srv = pair(5003, True)
    stop = [False]

    def echo() -> None:
        while not stop[0]:
            d = srv.recv(1)
            if not d:
                break
            srv.send(memoryview(d))

    t = threading.Thread(target=echo, daemon=True)
    t.start()
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        cli.send(memoryview(b"x"))
        cli.recv(1)
        n += 1
    rtt = n / (time.perf_counter() - t0)
    stop[0] = True
    with a.lock:
        cli.conn.shutdown()
        a.core.tcp.flush(cli.conn, a.now())
        a.core.drain_loopback(a.now())
        a.runtime.flush()
    t.join(2)
    return rate, rtt


def main() -> None:
    """Run both measurements and print the ratios."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--switch", action="store_true", help="two stacks on an ioth switch")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (best is kept)")
    args = ap.parse_args()
    best = {"s_rate": 0.0, "s_rtt": 0.0, "r_rate": 0.0, "r_rtt": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(args.rounds):  # alternate, keep the best of each (shared machines)
            for kind, fn in (("s", bench_sockets), ("r", bench_raw)):
                a, b, addr = _stacks(args.switch, f"{tmp}/{kind}{rnd}")
                try:
                    rate, rtt = fn(a, b, addr, args.seconds)
                finally:
                    b.close()
                    a.close()
                best[kind + "_rate"] = max(best[kind + "_rate"], rate)
                best[kind + "_rtt"] = max(best[kind + "_rtt"], rtt)
    s_rate, s_rtt, r_rate, r_rtt = best["s_rate"], best["s_rtt"], best["r_rate"], best["r_rtt"]
    print(f"{'measure':<28}{'ioth sockets':>16}{'raw stack API':>16}{'ratio':>8}")
    print(f"{'TCP throughput (MB/s)':<28}{s_rate / 1e6:>16.1f}{r_rate / 1e6:>16.1f}"
          f"{s_rate / r_rate:>8.2f}")
    print(f"{'TCP round trips (/s)':<28}{s_rtt:>16.0f}{r_rtt:>16.0f}{s_rtt / r_rtt:>8.2f}")


if __name__ == "__main__":
    main()
