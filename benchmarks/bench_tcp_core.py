"""TCP core benchmark: two TcpLayers joined in memory (no IP, no plugs, no kernel).

Measures the pure protocol cost: bulk MB/s one way (MTU 1500 and 65520), 64-byte round trips
per second (TCP_NODELAY) and connections per second (connect, accept, one exchange, close).
Checksums are computed and verified on every segment, as through a real link.  ``stackcps``
and ``stackrr`` run the same between two StackCores (Ethernet, ARP, IPv4, the fused receive
path and the fast output) and report thread CPU per connection / round trip, which moves far
less than the rates on a shared machine; ``stackcount`` counts the same work instead of
timing it (bytecodes, Python calls, ``_service`` passes per unit: repeatable anywhere), per
connection in both orders (stackcps's and stackcpsx's, the FINs crossing) and per round trip.
The connection fast paths have knobs (``ioth.stack.tcp.layer``: QUIET_TIMERS,
HANDSHAKE_FASTPATH, IDLE_DISPATCH, HEAP_PRUNE; ``ioth.stack.tcp.output``: SMALL_SEND,
SMALL_FIN; ``ioth.stack.tcp.stackhook``: ROUTE_ONCE, ROUTE_CACHE, FAST_OUTPUT;
``ioth.stack.core``: RX_HANDSHAKE, RX_PLAIN; ``ioth.stack.tcp.input``: DELAYED_FIN_ACK, which
changes the frames as Linux does) for A/B runs, set through ``BENCH_TCP_TWEAK`` as for
bench_tcp.py.

Run: ``python benchmarks/bench_tcp_core.py [--mb 50] [--seconds 2]``
"""

from __future__ import annotations

import argparse
import importlib
import os
import random
import time
from collections import deque
from collections.abc import Callable

from ioth.stack.tcp.connection import State, TcpConnection
from ioth.stack.tcp.layer import TcpLayer
from ioth.stack.tcp.policy import TcpPolicy

A = bytes([198, 18, 0, 1])
B = bytes([198, 18, 0, 2])


class Pair:
    """Two layers whose output goes straight into the other's input (FIFO)."""

    def __init__(self, mtu: int, policy: TcpPolicy, batch: bool = False) -> None:
        self.batch = batch
        self.timed = False
        self.cpu = [0.0, 0.0]  # seconds inside a.input (sender side), b.input (receiver)
        self.q: deque[tuple[TcpLayer, bytes, bytes, bytes]] = deque()
        q = self.q
        self.a = TcpLayer(random.Random(1), policy, lambda s, d, b: q.append((self.b, s, d, b)),
                          mtu)
        self.b = TcpLayer(random.Random(2), policy, lambda s, d, b: q.append((self.a, s, d, b)),
                          mtu)
        self.segments = 0

    def run(self) -> None:
        q = self.q
        a, b_ = self.a, self.b
        while q:
            # one batch = what is queued now (like one read-until-EAGAIN of a runtime)
            now = time.monotonic()
            if self.batch:
                a.begin_batch()
                b_.begin_batch()
            for _ in range(len(q)):
                layer, s, d, b = q.popleft()
                if self.timed:
                    t0 = time.perf_counter()
                    layer.input(s, d, b, now)
                    self.cpu[layer is b_] += time.perf_counter() - t0
                else:
                    layer.input(s, d, b, now)
                self.segments += 1
            if self.batch:
                a.end_batch(now)
                b_.end_batch(now)

    def timers(self) -> None:
        now = time.monotonic()
        self.a.on_timer(now)
        self.b.on_timer(now)
        self.run()

    def connect(self, port: int = 80) -> tuple[TcpConnection, TcpConnection]:
        listener = self.b.listen(port)
        c = self.a.connect(A, B, port, time.monotonic())
        self.run()
        s = listener.accept()
        assert s is not None and c.state is State.ESTABLISHED
        self.b.close_listener(listener, time.monotonic())
        return c, s


def bulk(mtu: int, megabytes: int, batch: bool = False) -> tuple[float, int]:
    policy = TcpPolicy(send_buffer=4 << 20, recv_buffer=4 << 20)
    p = Pair(mtu, policy, batch)
    c, s = p.connect()
    chunk = bytes(1 << 20)
    total = megabytes << 20
    sent = got = 0
    t0 = time.perf_counter()
    while got < total:
        while sent < total and c.send_space:
            sent += c.send(chunk[: min(len(chunk), total - sent)])
        p.a.flush(c, time.monotonic())
        p.run()
        while True:
            try:
                got += len(s.recv(1 << 22))
            except BlockingIOError:
                break
        p.b.flush(s, time.monotonic())
        p.run()
        p.timers()
    dt = time.perf_counter() - t0
    return total / dt / 1e6, p.segments


def one_sided(mtu: int, megabytes: int) -> tuple[float, float]:
    """Microseconds per data segment spent in the sender's and the receiver's input path
    (ACK processing + new data emission vs. data processing + ACK emission)."""
    policy = TcpPolicy(send_buffer=4 << 20, recv_buffer=4 << 20)
    p = Pair(mtu, policy)
    c, s = p.connect()
    p.timed = True
    chunk = bytes(1 << 20)
    total = megabytes << 20
    sent = got = 0
    while got < total:
        while sent < total and c.send_space:
            sent += c.send(chunk[: min(len(chunk), total - sent)])
        p.a.flush(c, time.monotonic())
        p.run()
        while True:
            try:
                got += len(s.recv(1 << 22))
            except BlockingIOError:
                break
        p.b.flush(s, time.monotonic())
        p.run()
    segs = c.segments_out
    return p.cpu[0] / segs * 1e6, p.cpu[1] / segs * 1e6


def round_trips(seconds: float) -> float:
    policy = TcpPolicy(nodelay=True)
    p = Pair(1500, policy)
    c, s = p.connect()
    msg = bytes(64)
    n = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while True:
        for _ in range(200):
            c.send(msg)
            p.a.flush(c, time.monotonic())
            p.run()
            s.send(s.recv(4096))
            p.b.flush(s, time.monotonic())
            p.run()
            assert len(c.recv(4096)) == 64
            p.a.flush(c, time.monotonic())
        n += 200
        p.timers()
        if time.perf_counter() >= end:
            break
    return n / (time.perf_counter() - t0)


def connections(seconds: float) -> float:
    policy = TcpPolicy(time_wait=0.0, nodelay=True)
    p = Pair(1500, policy)
    listener = p.b.listen(80, backlog=1024)
    n = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while time.perf_counter() < end:
        c = p.a.connect(A, B, 80, time.monotonic())
        p.run()
        s = listener.accept()
        assert s is not None
        c.send(b"hello")
        p.a.flush(c, time.monotonic())
        p.run()
        assert s.recv(100) == b"hello"
        c.close()
        p.a.flush(c, time.monotonic())
        p.run()
        s.close()
        p.b.flush(s, time.monotonic())
        p.run()
        n += 1
        if n % 100 == 0:
            p.timers()
    p.timers()
    return n / (time.perf_counter() - t0)


def through_stacks(mtu: int, megabytes: int) -> float:
    """Bulk MB/s between two StackCores (Ethernet, ARP, IPv4, TCP) joined by their txqs,
    input batched per pass like a runtime reading until EAGAIN."""
    from ioth.stack.core import StackCore

    cores = [StackCore(random.Random(i)) for i in (1, 2)]
    ifaces = []
    for i, core in enumerate(cores):
        iface = core.add_interface("vde0", bytes([2, 0, 0, 0, 0, i + 1]), mtu)
        core.set_up(iface.index, True, 0.0)
        core.add_addr4(iface.index, bytes([198, 18, 0, i + 1]), 24, 0.0)
        ifaces.append(iface)

    def pump() -> None:
        moved = True
        while moved:
            moved = False
            now = time.monotonic()
            for me, other in ((0, 1), (1, 0)):
                q = ifaces[me].txq
                if q:
                    moved = True
                    cores[other].begin_batch()
                    while q:
                        cores[other].input_frame(ifaces[other].index, q.popleft(), now)
                    cores[other].end_batch(now)
            for core in cores:
                d = core.next_deadline()
                if d is not None and d <= now:
                    core.poll(now)

    policy = TcpPolicy(send_buffer=4 << 20, recv_buffer=4 << 20)
    listener = cores[1].tcp.listen(80, policy=policy)
    c = cores[0].tcp.connect(A, B, 80, time.monotonic(), policy=policy)
    pump()
    s = listener.accept()
    assert s is not None and c.state is State.ESTABLISHED
    chunk = bytes(1 << 20)
    total = megabytes << 20
    sent = got = 0
    t0 = time.perf_counter()
    while got < total:
        while sent < total and c.send_space:
            sent += c.send(chunk[: min(len(chunk), total - sent)])
        cores[0].tcp.flush(c, time.monotonic())
        pump()
        while True:
            try:
                got += len(s.recv(1 << 22))
            except BlockingIOError:
                break
        cores[1].tcp.flush(s, time.monotonic())
        pump()
    return total / (time.perf_counter() - t0) / 1e6


class StackPair:
    """Two StackCores (Ethernet, ARP, IPv4, TCP) joined by their txqs, input batched per
    pass like a runtime reading until EAGAIN; CPU spent in each core's input is timed."""

    def __init__(self, mtu: int = 1500) -> None:
        from ioth.stack.core import StackCore

        self.cores = [StackCore(random.Random(i)) for i in (1, 2)]
        self.ifaces = []
        for i, core in enumerate(self.cores):
            iface = core.add_interface("vde0", bytes([2, 0, 0, 0, 0, i + 1]), mtu)
            core.set_up(iface.index, True, 0.0)
            core.add_addr4(iface.index, bytes([198, 18, 0, i + 1]), 24, 0.0)
            self.ifaces.append(iface)
        self.cpu = [0.0, 0.0]
        self.now: Callable[[], float] = time.monotonic
        """The stacks' clock (a fake one makes runs repeatable: see :func:`stack_counts`)."""

    def pump(self) -> None:
        cores, ifaces, cpu = self.cores, self.ifaces, self.cpu
        clock = time.perf_counter
        moved = True
        while moved:
            moved = False
            now = self.now()
            for me, other in ((0, 1), (1, 0)):
                q = ifaces[me].txq
                if q:
                    moved = True
                    t0 = clock()
                    core = cores[other]
                    core.begin_batch()
                    while q:
                        core.input_frame(ifaces[other].index, q.popleft(), now)
                    core.end_batch(now)
                    cpu[other] += clock() - t0
            for i, core in enumerate(cores):
                d = core.next_deadline()
                if d is not None and d <= now:
                    t0 = clock()
                    core.poll(now)
                    cpu[i] += clock() - t0


def stack_connections(seconds: float, time_wait: float = 60.0, crossing: bool = False
                      ) -> tuple[float, float, float, float]:
    """Connections per second between two StackCores (no plugs, no sockets): connect, accept,
    64-byte request, response and close by the server, then the client closes (the order of
    bench_tcp.py's cps cases: the server keeps the TIME-WAIT, ``time_wait`` seconds).  The
    server's FIN reaches the client before it closes; with ``crossing`` the client closes on
    the reply alone and the two FINs cross, as in bench_tcp.py's ioth<->ioth cps runs (9
    frames per connection there and here, against 7 without crossing).
    Returns (conn/s, CPU us per connection (thread time of the whole loop: steadier than the
    rate on a shared machine), client us and server us per connection (time inside each
    core's input, timers and user calls))."""
    sp = StackPair()
    client, server = sp.cores
    cpu = sp.cpu
    clock = time.perf_counter
    policy = TcpPolicy(nodelay=True, time_wait=time_wait)
    listener = server.tcp.listen(80, policy=policy, backlog=1024)
    ctcp, stcp = client.tcp, server.tcp
    msg = bytes(64)
    # warm up ARP
    c = ctcp.connect(A, B, 80, time.monotonic(), policy=policy)
    sp.pump()
    s = listener.accept()
    assert s is not None
    c.close()
    s.close()
    ctcp.flush(c, time.monotonic())
    stcp.flush(s, time.monotonic())
    sp.pump()
    cpu[0] = cpu[1] = 0.0
    n = 0
    cpu0 = time.thread_time()
    t0 = time.perf_counter()
    end = t0 + seconds
    while time.perf_counter() < end:
        for _ in range(50):
            t = clock()
            c = ctcp.connect(A, B, 80, time.monotonic(), policy=policy)
            cpu[0] += clock() - t
            sp.pump()
            t = clock()
            s = listener.accept()
            assert s is not None
            cpu[1] += clock() - t
            t = clock()
            c.send(msg)
            ctcp.flush(c, time.monotonic())
            cpu[0] += clock() - t
            sp.pump()
            t = clock()
            assert len(s.recv(4096)) == 64
            s.send(msg)
            if crossing:
                stcp.flush(s, time.monotonic())
                cpu[1] += clock() - t
                sp.pump()  # the reply alone
                t = clock()
            s.close()
            stcp.flush(s, time.monotonic())
            cpu[1] += clock() - t
            if not crossing:
                sp.pump()
            t = clock()
            assert len(c.recv(4096)) == 64
            c.close()
            ctcp.flush(c, time.monotonic())
            cpu[0] += clock() - t
            sp.pump()
            n += 1
    dt = time.perf_counter() - t0
    total = time.thread_time() - cpu0
    return n / dt, total / n * 1e6, cpu[0] / n * 1e6, cpu[1] / n * 1e6


def stack_round_trips(seconds: float) -> tuple[float, float]:
    """64-byte round trips (TCP_NODELAY) between two StackCores (Ethernet, ARP, IPv4, the
    fused receive path and the fast output; no plugs, no sockets), each direction delivered
    as one batch like a runtime's read.  Returns (round trips/s, CPU us per round trip for
    both ends: thread time of the whole loop)."""
    sp = StackPair()
    client, server = sp.cores
    policy = TcpPolicy(nodelay=True)
    listener = server.tcp.listen(80, policy=policy)
    ctcp, stcp = client.tcp, server.tcp
    c = ctcp.connect(A, B, 80, time.monotonic(), policy=policy)
    sp.pump()
    s = listener.accept()
    assert s is not None
    ifaces = sp.ifaces
    msg = bytes(64)

    def deliver(src: int, dst: int) -> None:
        q = ifaces[src].txq
        core = sp.cores[dst]
        now = time.monotonic()
        core.begin_batch()
        while q:
            core.input_frame(ifaces[dst].index, q.popleft(), now)
        core.end_batch(now)

    n = 0
    cpu0 = time.thread_time()
    t0 = time.perf_counter()
    end = t0 + seconds
    while time.perf_counter() < end:
        for _ in range(200):
            c.send(msg)
            ctcp.flush(c, time.monotonic())
            deliver(0, 1)
            s.send(s.recv(4096))
            stcp.flush(s, time.monotonic())
            deliver(1, 0)
            assert len(c.recv(4096)) == 64
            now = time.monotonic()
            for core in sp.cores:
                d = core.next_deadline()
                if d is not None and d <= now:
                    core.poll(now)
        n += 200
    dt = time.perf_counter() - t0
    return n / dt, (time.thread_time() - cpu0) / n * 1e6


def stack_counts(n: int = 200) -> list[tuple[str, float, float, float]]:
    """Deterministic per-unit work of the stack code in ``stackcps`` and ``stackrr`` (the same
    calls, ``n`` of each after a warm-up), counted with a tracer instead of timed: Python
    calls, bytecode instructions executed (``f_trace_opcodes``) and ``TcpLayer._service``
    passes, per connection and per round trip (both ends; this module's own code is not
    counted).  Unlike CPU times, these do not move with the load of a shared machine."""
    import sys

    here = __file__
    tally = {"calls": 0, "ops": 0, "service": 0}

    def local(frame: object, event: str, arg: object) -> object:
        if event == "opcode":
            tally["ops"] += 1
        return local

    def tracer(frame: object, event: str, arg: object) -> object:
        code = frame.f_code  # type: ignore[attr-defined]
        if event != "call" or code.co_filename == here:
            return None
        tally["calls"] += 1
        if code.co_name == "_service":
            tally["service"] += 1
        frame.f_trace_opcodes = True  # type: ignore[attr-defined]
        return local

    def measure(body: Callable[[], None]) -> tuple[float, float, float]:
        for k in tally:
            tally[k] = 0
        sys.settrace(tracer)
        try:
            for _ in range(n):
                body()
        finally:
            sys.settrace(None)
        return tally["calls"] / n, tally["ops"] / n, tally["service"] / n

    sp = StackPair()
    ticks = [1000.0]

    def fake_clock() -> float:
        # 20 us per reading: repeatable, and no timer falls due within a connection
        ticks[0] += 20e-6
        return ticks[0]

    sp.now = fake_clock
    client, server = sp.cores
    policy = TcpPolicy(nodelay=True, time_wait=60.0)
    listener = server.tcp.listen(80, policy=policy, backlog=1024)
    ctcp, stcp = client.tcp, server.tcp
    msg = bytes(64)

    def one_connection() -> None:
        c = ctcp.connect(A, B, 80, fake_clock(), policy=policy)
        sp.pump()
        s = listener.accept()
        assert s is not None
        c.send(msg)
        ctcp.flush(c, fake_clock())
        sp.pump()
        assert len(s.recv(4096)) == 64
        s.send(msg)
        s.close()
        stcp.flush(s, fake_clock())
        sp.pump()
        assert len(c.recv(4096)) == 64
        c.close()
        ctcp.flush(c, fake_clock())
        sp.pump()

    def one_crossing() -> None:
        # stackcpsx's order: the client closes on the reply alone, the two FINs cross
        c = ctcp.connect(A, B, 80, fake_clock(), policy=policy)
        sp.pump()
        s = listener.accept()
        assert s is not None
        c.send(msg)
        ctcp.flush(c, fake_clock())
        sp.pump()
        assert len(s.recv(4096)) == 64
        s.send(msg)
        stcp.flush(s, fake_clock())
        sp.pump()
        s.close()
        stcp.flush(s, fake_clock())
        assert len(c.recv(4096)) == 64
        c.close()
        ctcp.flush(c, fake_clock())
        sp.pump()

    for _ in range(20):
        one_connection()
        one_crossing()
    rows = [("per connection (stackcps)", *measure(one_connection)),
            ("per connection, crossing FINs", *measure(one_crossing))]
    c = ctcp.connect(A, B, 80, fake_clock(), policy=policy)
    sp.pump()
    s = listener.accept()
    assert s is not None

    def one_round_trip() -> None:
        c.send(msg)
        ctcp.flush(c, fake_clock())
        sp.pump()
        s.send(s.recv(4096))
        stcp.flush(s, fake_clock())
        sp.pump()
        assert len(c.recv(4096)) == 64

    for _ in range(20):
        one_round_trip()
    rows.append(("per round trip (stackrr)", *measure(one_round_trip)))
    return rows


def memory_per_connection(n: int = 10_000) -> float:
    """Bytes allocated per established TCB (both ends counted), tables included."""
    import tracemalloc

    p = Pair(1500, TcpPolicy())
    listener = p.b.listen(80, backlog=n + 1)
    keep = []
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(n):
        c = p.a.connect(A, B, 80, time.monotonic(), sport=1024 + i)
        p.run()
        keep.append((c, listener.accept()))
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / (2 * n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=50, help="megabytes per bulk run")
    ap.add_argument("--seconds", type=float, default=2.0, help="duration of rate runs")
    ap.add_argument("--only", default="",
                    help="comma-separated subset: bulk,stacks,onesided,rr,cps,stackcps,"
                         "stackcpsx,stackrr,stackcount,mem")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else None

    def want(name: str) -> bool:
        return only is None or name in only

    for tweak in os.environ.get("BENCH_TCP_TWEAK", "").split():
        # A/B of the fast-path knobs, as benchmarks/bench_tcp.py: MODULE:ATTR=INT
        mod, _, rest = tweak.partition(":")
        attr, _, val = rest.partition("=")
        module = importlib.import_module(mod)
        if not hasattr(module, attr):  # (a knob that moved: say so, do not add it)
            raise SystemExit(f"BENCH_TCP_TWEAK: {mod} has no {attr}")
        setattr(module, attr, int(val))
    print(f"{'test':<34}{'result':>16}")
    if want("stackcount") and only is not None:
        for name, calls, ops, service in stack_counts():
            print(f"{name:<34}{ops:>12.0f} ops   ({calls:.1f} Python calls,"
                  f" {service:.2f} _service passes, both ends)")
    if want("stackcps"):
        rate, cpu, cus, sus = stack_connections(args.seconds)
        print(f"{'conn/s via 2 StackCores':<34}{rate:>12.0f} /s"
              f"   (CPU {cpu:.0f} us per connection: client {cus:.0f} us, server {sus:.0f} us)")
    if want("stackcpsx"):
        rate, cpu, cus, sus = stack_connections(args.seconds, crossing=True)
        print(f"{'conn/s, crossing FINs':<34}{rate:>12.0f} /s"
              f"   (CPU {cpu:.0f} us per connection: client {cus:.0f} us, server {sus:.0f} us)")
    if want("stackrr"):
        rate, cpu = stack_round_trips(args.seconds)
        print(f"{'64-byte rt/s via 2 StackCores':<34}{rate:>12.0f} /s"
              f"   (CPU {cpu:.1f} us per round trip, both ends)")
    if want("bulk"):
        for mtu in (1500, 9000, 65520):
            for batch in (False, True):
                mbs, segs = bulk(mtu, args.mb, batch)
                name = f"bulk MTU {mtu}" + (" batched input" if batch else "")
                print(f"{name:<34}{mbs:>12.1f} MB/s"
                      f"   ({mbs * 8 / 1000:.2f} Gbit/s, {segs} segments)")
    if want("stacks"):
        for mtu in (1500, 65520):
            mbs = through_stacks(mtu, args.mb)
            print(f"{'via 2 StackCores (eth+ip), MTU ' + str(mtu):<34}{mbs:>12.1f} MB/s"
                  f"   ({mbs * 8 / 1000:.2f} Gbit/s)")
    if want("onesided"):
        snd, rcv = one_sided(1500, min(args.mb, 20))
        print(f"{'MTU 1500 us/segment sender, recv':<34}{snd:>9.1f} / {rcv:.1f} us"
              f"   (one side alone ~{1448 / max(snd, rcv):.0f} MB/s)")
    if want("rr"):
        rt = round_trips(args.seconds)
        print(f"{'64-byte round trips/s':<34}{rt:>12.0f} /s")
    if want("cps"):
        cps = connections(args.seconds)
        print(f"{'connections/s (open+1 msg+close)':<34}{cps:>12.0f} /s")
    if want("mem"):
        mem = memory_per_connection()
        print(f"{'10,000 established: bytes/TCB':<34}{mem:>12.0f} B")
    print("reference (DESIGN.md, same machines): LWIPv6 via vde_switch 25 MB/s, 4,700 rt/s;"
          " targets >= 5,000 rt/s, >= 2,000 conn/s")


if __name__ == "__main__":
    main()
