"""Virtual-clock test harness: TcpLayers joined by an impaired in-memory link."""

from __future__ import annotations

import hashlib
import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from ioth.stack.tcp.connection import State, TcpConnection
from ioth.stack.tcp.layer import TcpLayer
from ioth.stack.tcp.policy import TcpPolicy

A4 = bytes([192, 0, 2, 1])
B4 = bytes([192, 0, 2, 2])
A6 = bytes.fromhex("20010db8000000000000000000000001")
B6 = bytes.fromhex("20010db8000000000000000000000002")


@dataclass
class Impairment:
    """Per-packet impairments of the link (probabilities and seconds)."""

    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    delay: float = 0.005
    jitter: float = 0.0
    reorder_delay: float = 0.01


@dataclass
class Link:
    """Two TcpLayers joined by a link with seeded impairments, on a virtual clock."""

    seed: int = 0
    impairment: Impairment = field(default_factory=Impairment)
    policy: TcpPolicy = field(default_factory=TcpPolicy)
    mtu: int = 1500
    v6: bool = False
    batch: bool = False

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.now = 0.0
        self._events: list[tuple[float, int, TcpLayer, bytes, bytes, bytes]] = []
        self._tick = itertools.count()
        self.addr_a, self.addr_b = (A6, B6) if self.v6 else (A4, B4)
        self.a = TcpLayer(random.Random(self.seed + 1), self.policy, self._out_a, self.mtu)
        self.b = TcpLayer(random.Random(self.seed + 2), self.policy, self._out_b, self.mtu)
        self.sent = 0
        self.lost = 0
        self.tap: Callable[[bytes, bytes, bytes], bool] | None = None

    def _out_a(self, src: bytes, dst: bytes, data: bytes) -> None:
        self._send(self.b, src, dst, bytes(data))

    def _out_b(self, src: bytes, dst: bytes, data: bytes) -> None:
        self._send(self.a, src, dst, bytes(data))

    def _send(self, layer: TcpLayer, src: bytes, dst: bytes, data: bytes) -> None:
        self.sent += 1
        if self.tap is not None and not self.tap(src, dst, data):
            return
        imp = self.impairment
        rng = self.rng
        if imp.loss and rng.random() < imp.loss:
            self.lost += 1
            return
        copies = 2 if imp.duplicate and rng.random() < imp.duplicate else 1
        for _ in range(copies):
            t = self.now + imp.delay
            if imp.jitter:
                t += rng.random() * imp.jitter
            if imp.reorder and rng.random() < imp.reorder:
                t += rng.random() * imp.reorder_delay
            heapq.heappush(self._events, (t, next(self._tick), layer, src, dst, data))

    def next_time(self) -> float | None:
        """The next instant something happens (a delivery or a timer)."""
        times = [t for t in (self.a.poll_at(), self.b.poll_at()) if t is not None]
        if self._events:
            times.append(self._events[0][0])
        return max(min(times), self.now) if times else None

    def step(self) -> bool:
        """Advance to the next event and run it; False if nothing is pending."""
        t = self.next_time()
        if t is None:
            return False
        self.now = t
        ev = self._events
        if self.batch:
            self.a.begin_batch()
            self.b.begin_batch()
        while ev and ev[0][0] <= t:
            _, _, layer, src, dst, data = heapq.heappop(ev)
            layer.input(src, dst, data, t)
        if self.batch:
            self.a.end_batch(t)
            self.b.end_batch(t)
        self.a.on_timer(t)
        self.b.on_timer(t)
        return True

    def run_until(self, cond: Callable[[], bool], limit: float = 600.0,
                  pump: Callable[[], None] | None = None) -> None:
        """Step until ``cond()``; AssertionError if the virtual time passes ``limit``."""
        deadline = self.now + limit
        while not cond():
            if pump is not None:
                pump()
                if cond():
                    return
            if not self.step() and self.next_time() is None:
                raise AssertionError(f"stalled: nothing pending at t={self.now:.3f}")
            if self.now > deadline:
                raise AssertionError(f"stalled: condition not met by t={self.now:.3f}")

    def connect(self, port: int = 80) -> tuple[TcpConnection, TcpConnection]:
        """Handshake a client on A with a server on B."""
        listener = self.b.listen(port)
        client = self.a.connect(self.addr_a, self.addr_b, port, self.now)
        self.run_until(lambda: bool(listener.accept_queue) and client.state is State.ESTABLISHED)
        server = listener.accept()
        assert server is not None
        self.b.close_listener(listener, self.now)
        return client, server


class Transfer:
    """Bidirectional bulk transfer application with SHA-256 accounting."""

    def __init__(self, link: Link, client: TcpConnection, server: TcpConnection,
                 a_to_b: bytes, b_to_a: bytes, chunk: int = 256 * 1024) -> None:
        self.link = link
        self.ends = [(client, link.a, memoryview(a_to_b)), (server, link.b, memoryview(b_to_a))]
        self.sent = [0, 0]
        self.rx = [hashlib.sha256(), hashlib.sha256()]
        self.rx_len = [0, 0]
        self.eof = [False, False]
        self.shut = [False, False]
        self.chunk = chunk
        self.expect = [hashlib.sha256(b_to_a).digest(), hashlib.sha256(a_to_b).digest()]
        self.lengths = [len(b_to_a), len(a_to_b)]

    def pump(self) -> None:
        """Move application data once on both ends."""
        now = self.link.now
        for i, (conn, layer, data) in enumerate(self.ends):
            touched = False
            off = self.sent[i]
            while off < len(data) and conn.send_space:
                off += conn.send(data[off : off + self.chunk])
                touched = True
            self.sent[i] = off
            if off == len(data) and not self.shut[i]:
                conn.shutdown()
                self.shut[i] = True
                touched = True
            while not self.eof[i]:
                try:
                    got = conn.recv(1 << 20)
                except BlockingIOError:
                    break
                if not got:
                    self.eof[i] = True
                    break
                self.rx[i].update(got)
                self.rx_len[i] += len(got)
                touched = True
            if touched:
                layer.flush(conn, now)

    def done(self) -> bool:
        """Both ends saw EOF."""
        return all(self.eof)

    def check(self) -> None:
        """Digests and lengths match what the other end sent."""
        assert self.rx_len == self.lengths
        assert [h.digest() for h in self.rx] == self.expect
