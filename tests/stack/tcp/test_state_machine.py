"""Hypothesis state machine: random user calls, deliveries and segment mangling.

Whatever happens, user calls only raise ``OSError`` (the documented errno errors), the layers
never raise on input, and the TCB invariants hold.  A second property checks that data which
does get through an impaired (but not forged) path is exactly a prefix of what was sent.
"""

from __future__ import annotations

import itertools
import random

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ioth.stack.tcp.connection import State, TcpConnection
from ioth.stack.tcp.layer import Listener, TcpLayer
from ioth.stack.tcp.policy import TcpPolicy
from ioth.stack.tcp.segment import Segment, decode, encode
from tests.stack.tcp.harness import A4, B4

POLICY = TcpPolicy(
    time_wait=1.0, retries=4, syn_retries=2, synack_retries=2, fin_timeout=3.0,
    send_buffer=8192, recv_buffer=8192, keepalive=True, keepidle=5.0, keepintvl=1.0, keepcnt=2,
    syn_backlog=2,
)
FLAGS = st.integers(0, 0x3F)


class TcpMachine(RuleBasedStateMachine):
    """Two layers, a packet list we control, and a handful of connections."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.packets: list[tuple[TcpLayer, bytes, bytes, bytes]] = []
        self.a = TcpLayer(random.Random(1), POLICY, self._out_a, 1500)
        self.b = TcpLayer(random.Random(2), POLICY, self._out_b, 1500)
        self.listener: Listener = self.b.listen(80, backlog=2)
        self.conns: list[tuple[TcpLayer, TcpConnection]] = []

    def _out_a(self, src: bytes, dst: bytes, data: bytes) -> None:
        self.packets.append((self.b, src, dst, bytes(data)))

    def _out_b(self, src: bytes, dst: bytes, data: bytes) -> None:
        self.packets.append((self.a, src, dst, bytes(data)))

    def _accept(self) -> None:
        while True:
            conn = self.listener.accept()
            if conn is None:
                return
            self.conns.append((self.b, conn))

    # -------------------------------------------------------------- network

    @precondition(lambda self: bool(self.packets))
    @rule(i=st.integers(0, 1000))
    def deliver(self, i: int) -> None:
        layer, src, dst, data = self.packets.pop(i % len(self.packets))
        layer.input(src, dst, data, self.now)
        self._accept()

    @precondition(lambda self: bool(self.packets))
    @rule(rounds=st.integers(1, 60), batch=st.booleans())
    def deliver_in_order(self, rounds: int, batch: bool) -> None:
        if batch:
            self.a.begin_batch()
            self.b.begin_batch()
        for _ in range(rounds):
            if not self.packets:
                break
            layer, src, dst, data = self.packets.pop(0)
            layer.input(src, dst, data, self.now)
            self._accept()
        if batch:
            self.a.end_batch(self.now)
            self.b.end_batch(self.now)
            self._accept()

    @precondition(lambda self: bool(self.packets))
    @rule(i=st.integers(0, 1000))
    def drop(self, i: int) -> None:
        self.packets.pop(i % len(self.packets))

    @precondition(lambda self: bool(self.packets))
    @rule(i=st.integers(0, 1000))
    def duplicate(self, i: int) -> None:
        self.packets.append(self.packets[i % len(self.packets)])

    @precondition(lambda self: bool(self.packets))
    @rule(
        i=st.integers(0, 1000),
        flags=st.one_of(st.none(), FLAGS),
        dseq=st.integers(-70000, 70000),
        dack=st.integers(-70000, 70000),
        window=st.one_of(st.none(), st.integers(0, 0xFFFF)),
        cut=st.integers(0, 50),
        strip=st.booleans(),
    )
    def mangle(self, i: int, flags: int | None, dseq: int, dack: int, window: int | None,
               cut: int, strip: bool) -> None:
        layer, src, dst, data = self.packets.pop(i % len(self.packets))
        sport, dport, seg = decode(data)
        if flags is not None:
            seg.flags = flags
        seg.seq = (seg.seq + dseq) & 0xFFFFFFFF
        seg.ack = (seg.ack + dack) & 0xFFFFFFFF
        if window is not None:
            seg.window = window
        seg.payload = bytes(seg.payload)[cut:]
        if strip:
            seg.tsval = None
            seg.sack = None
        layer.input(src, dst, encode(seg, sport, dport, src, dst), self.now)
        self._accept()

    @precondition(lambda self: bool(self.packets))
    @rule(i=st.integers(0, 1000), junk=st.binary(max_size=60), pos=st.integers(0, 80))
    def corrupt(self, i: int, junk: bytes, pos: int) -> None:
        layer, src, dst, data = self.packets[i % len(self.packets)]
        bad = bytearray(data)
        bad[pos : pos + len(junk)] = junk
        layer.input(src, dst, bytes(bad), self.now)  # usually a checksum error: dropped
        self._accept()

    @precondition(lambda self: bool(self.conns))
    @rule(
        i=st.integers(0, 100),
        flags=FLAGS,
        dseq=st.integers(-3000, 3000),
        dack=st.integers(-3000, 3000),
        payload=st.binary(max_size=40),
    )
    def inject(self, i: int, flags: int, dseq: int, dack: int, payload: bytes) -> None:
        """A forged segment for an existing 4-tuple, near its sequence numbers."""
        layer, conn = self.conns[i % len(self.conns)]
        seq = (conn.rcv_nxt + dseq) & 0xFFFFFFFF
        ack = (conn.snd_nxt + dack) & 0xFFFFFFFF
        seg = Segment(seq, ack, flags, 1000, payload)
        (la, lp), (ra, rp) = conn.local, conn.remote
        layer.input(ra, la, encode(seg, rp, lp, ra, la), self.now)
        self._accept()

    @rule(dt=st.sampled_from([0.001, 0.05, 0.3, 1.0, 5.0]))
    def advance(self, dt: float) -> None:
        self.now += dt
        self.a.on_timer(self.now)
        self.b.on_timer(self.now)
        self._accept()

    # -------------------------------------------------------------- user calls

    @precondition(lambda self: len(self.conns) < 6)
    @rule(port=st.sampled_from([80, 80, 80, 81]))
    def connect(self, port: int) -> None:
        conn = self.a.connect(A4, B4, port, self.now)
        self.conns.append((self.a, conn))

    @precondition(lambda self: bool(self.conns))
    @rule(i=st.integers(0, 100), n=st.integers(0, 20000), call=st.sampled_from(
        ["send", "recv", "shutdown", "close", "abort", "nodelay"]))
    def user(self, i: int, n: int, call: str) -> None:
        layer, conn = self.conns[i % len(self.conns)]
        try:
            if call == "send":
                conn.send(bytes(n % 251 for n in range(n)))
            elif call == "recv":
                conn.recv(n + 1)
            elif call == "shutdown":
                conn.shutdown()
            elif call == "close":
                conn.close()
            elif call == "abort":
                conn.abort()
            else:
                conn.nodelay = not conn.nodelay
        except OSError:
            pass  # documented: errno errors, BlockingIOError
        layer.flush(conn, self.now)

    # -------------------------------------------------------------- invariants

    @invariant()
    def tcb_invariants(self) -> None:
        for layer, conn in self.conns:
            assert conn.snd_una <= conn.snd_nxt
            assert conn.send_queue <= POLICY.send_buffer
            assert conn.recv_available >= 0
            assert conn._pipe() >= 0 or conn.state is State.CLOSED
            blocks = conn._sacked
            for (a1, b1), (a2, _) in itertools.pairwise(blocks):
                assert a1 < b1 < a2
            for a1, b1 in blocks:
                assert conn.snd_una <= a1 < b1 <= conn.snd_nxt
            if conn.state is State.CLOSED:
                assert conn.poll_at() is None or conn.poll_at() == 0.0
                key = (*conn.local, *conn.remote)
                if layer.connections.get(key) is conn:
                    # a closed TCB leaves the table as soon as its last output is flushed
                    layer.flush(conn, self.now)
                    assert layer.connections.get(key) is not conn

    def teardown(self) -> None:
        for _, conn in self.conns:
            event(f"state {conn.state}")

    @invariant()
    def tables_hold_only_open_connections(self) -> None:
        for layer in (self.a, self.b):
            for conn in layer.connections.values():
                assert conn.state is not State.CLOSED
            assert len(self.listener.syn_queue) <= POLICY.syn_backlog


TcpMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestTcpMachine = TcpMachine.TestCase


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    ops=st.lists(st.sampled_from(["deliver", "drop", "dup", "swap", "tick"]), min_size=50,
                 max_size=400),
    size=st.integers(1, 60_000),
)
def test_delivered_data_is_a_prefix_of_sent_data(seed: int, ops: list[str], size: int) -> None:
    """Loss, duplication, reordering and time never corrupt the byte stream."""
    rng = random.Random(seed)
    payload = rng.randbytes(size)
    packets: list[tuple[TcpLayer, bytes, bytes, bytes]] = []
    policy = POLICY.replace(keepalive=False, send_buffer=1 << 16, recv_buffer=1 << 16)
    a = TcpLayer(random.Random(seed), policy, lambda s, d, b: packets.append((lb, s, d, bytes(b))))
    lb = TcpLayer(random.Random(seed + 1), policy,
                  lambda s, d, b: packets.append((a, s, d, bytes(b))))
    listener = lb.listen(80)
    client = a.connect(A4, B4, 80, 0.0)
    server: TcpConnection | None = None
    now = 0.0
    sent = 0
    got = bytearray()
    for op in ops + ["tick", "deliver"] * 200:
        if op == "deliver" and packets:
            layer, s, d, b = packets.pop(0)
            layer.input(s, d, b, now)
        elif op == "drop" and packets:
            packets.pop(rng.randrange(len(packets)))
        elif op == "dup" and packets:
            packets.append(packets[rng.randrange(len(packets))])
        elif op == "swap" and len(packets) > 1:
            j = rng.randrange(len(packets))
            packets[0], packets[j] = packets[j], packets[0]
        elif op == "tick":
            now += 0.25
            a.on_timer(now)
            lb.on_timer(now)
        if server is None:
            server = listener.accept()
        if client.state in (State.ESTABLISHED, State.CLOSE_WAIT) and sent < size:
            try:
                sent += client.send(payload[sent:])
            except OSError:
                pass
            a.flush(client, now)
        if server is not None:
            try:
                got += server.recv(1 << 20)
            except OSError:
                pass
            lb.flush(server, now)
    assert bytes(got) == payload[: len(got)]
