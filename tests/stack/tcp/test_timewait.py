"""Compact TIME-WAIT (layer.COMPACT_TIME_WAIT): each RFC 9293 TIME-WAIT rule at packet level,
on a virtual clock, with the compact record and with the full TCB: same frames, and the
expected ones (retransmitted FIN, RST, SYN reuse with and without timestamps, old duplicates,
expiry, the max_tw_buckets bound); the connection scenarios of test_conn_fastpaths give the
same frames with compact TIME-WAIT on and off."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pytest

from ioth.stack.tcp import layer as layer_mod
from ioth.stack.tcp.connection import State
from ioth.stack.tcp.layer import TcpLayer
from ioth.stack.tcp.policy import TcpPolicy
from ioth.stack.tcp.segment import ACK, FIN, RST, SYN, Segment, decode, encode
from ioth.stack.tcp.timewait import TimeWait
from tests.stack.tcp.harness import Link

MASK = 0xFFFFFFFF
TW = 10.0
Key = tuple[bytes, int, bytes, int]


class Setup:
    """Client on A, server on B; the server closes first and ends in TIME-WAIT."""

    def __init__(self, compact: bool, options: bool = True) -> None:
        layer_mod.COMPACT_TIME_WAIT = compact
        self.compact = compact
        policy = TcpPolicy(time_wait=TW, timestamps=options, sack=options,
                           window_scaling=options, nodelay=True)
        self.link = link = Link(seed=11, policy=policy)
        self.wire: list[tuple[bytes, bytes, bytes]] = []
        self.deliver = True

        def tap(src: bytes, dst: bytes, data: bytes) -> bool:
            self.wire.append((src, dst, data))
            return self.deliver

        link.tap = tap
        client, server = link.connect()
        client.send(b"q" * 100)
        link.a.flush(client, link.now)
        link.run_until(lambda: server.recv_available == 100)
        assert server.recv() == b"q" * 100
        server.send(b"r" * 50)
        server.close()
        link.b.flush(server, link.now)
        link.run_until(lambda: client.state is State.CLOSE_WAIT and server.state is
                       State.FIN_WAIT_2)
        assert client.recv() == b"r" * 50
        client.close()
        link.a.flush(client, link.now)
        link.run_until(lambda: client.state is State.CLOSED)
        self.key: Key = (*server.local, *server.remote)
        assert self.in_tw()
        assert (self.key in link.b.time_wait) is compact
        self.t0 = link.now
        # the client's last segment (its FIN... then the ACK of ours): values to forge with
        last = decode(self.wire[-1][2])[2] if self.wire[-1][1] == link.addr_b else None
        fin = [decode(d)[2] for s, _, d in self.wire if s == link.addr_a
               and decode(d)[2].flags & FIN][-1]
        assert last is None or last.flags & FIN
        self.fin = fin
        self.rcv_nxt = (fin.seq + 1) & MASK  # the server's RCV.NXT
        self.snd_nxt = fin.ack  # the server's SND.NXT
        self.deliver = False  # from now on, capture only
        self.mark = len(self.wire)

    def in_tw(self) -> bool:
        b = self.link.b
        conn = b.connections.get(self.key)
        return self.key in b.time_wait or (conn is not None and conn.state is State.TIME_WAIT)

    def send(self, seg: Segment, at: float) -> list[Segment]:
        """Deliver ``seg`` from the client's 4-tuple to B at ``at``; B's answers."""
        link = self.link
        link.now = at
        n = len(self.wire)
        link.b.input(link.addr_a, link.addr_b,
                     encode(seg, self.key[3], self.key[1], link.addr_a, link.addr_b), at)
        link.b.on_timer(at)
        return [decode(d)[2] for _, _, d in self.wire[n:]]

    def tick(self, at: float) -> None:
        self.link.now = at
        self.link.b.on_timer(at)

    def ts(self, delta: int) -> int:
        assert self.fin.tsval is not None
        return (self.fin.tsval + delta) & MASK

    def frames(self) -> list[bytes]:
        return [d for _, _, d in self.wire]


@pytest.fixture(autouse=True)
def _restore() -> object:
    saved = layer_mod.COMPACT_TIME_WAIT
    yield None
    layer_mod.COMPACT_TIME_WAIT = saved


def both(fn: Callable[[Setup], object], options: bool = True) -> object:
    """Run ``fn`` with compact and full TIME-WAIT: same result, same frames."""
    full = Setup(False, options)
    r_full = fn(full)
    compact = Setup(True, options)
    r_compact = fn(compact)
    assert r_compact == r_full
    assert compact.frames() == full.frames()
    return r_compact


def test_retransmitted_fin_is_acked_and_restarts_2msl() -> None:
    def run(s: Setup) -> object:
        f = s.fin
        out = s.send(Segment(f.seq, f.ack, FIN | ACK, f.window, tsval=s.ts(5), tsecr=f.tsecr),
                     s.t0 + 5.0)
        assert [(o.flags, o.seq, o.ack) for o in out] == [(ACK, s.snd_nxt, s.rcv_nxt)]
        assert out[0].tsecr == s.ts(0)  # (an unacceptable segment leaves TS.Recent alone)
        s.tick(s.t0 + TW + 1.0)  # past the first expiry: restarted, still there
        alive = s.in_tw()
        s.tick(s.t0 + 5.0 + TW + 0.5)
        return alive, s.in_tw(), repr(out)
    assert cast(tuple[object, ...], both(run))[:2] == (True, False)


def test_rst_ends_time_wait_and_an_inexact_one_is_challenged() -> None:
    def run(s: Setup) -> object:
        t = s.t0 + 1.0
        out1 = s.send(Segment((s.rcv_nxt + 100) & MASK, 0, RST, 0), t)  # in window, inexact
        assert [(o.flags, o.seq, o.ack) for o in out1] == [(ACK, s.snd_nxt, s.rcv_nxt)]
        out2 = s.send(Segment((s.rcv_nxt - 5000) & MASK, 0, RST, 0), t)  # outside: nothing
        assert out2 == [] and s.in_tw()
        out3 = s.send(Segment(s.rcv_nxt, 0, RST, 0), t + 0.1)  # exact: TIME-WAIT over
        assert out3 == [] and not s.in_tw()
        # the 4-tuple is free: an ACK now gets a RST (no connection)
        out4 = s.send(Segment(s.rcv_nxt, s.snd_nxt, ACK, 100), t + 0.2)
        assert [o.flags for o in out4] == [RST]
        return len(out1), len(out4)
    both(run)


def test_syn_with_newer_timestamp_reuses_the_4_tuple() -> None:
    def run(s: Setup) -> object:
        listener = s.link.b.listen(80)
        # older timestamp, sequence number above RCV.NXT: PAWS says no: ACK, stays
        old = s.send(Segment((s.rcv_nxt + 10) & MASK, 0, SYN, 65535, mss=1460, tsval=s.ts(-1),
                             sack_perm=True, wscale=7), s.t0 + 1.0)
        assert [(o.flags, o.ack) for o in old] == [(ACK, s.rcv_nxt)] and s.in_tw()
        # newer timestamp, sequence number BELOW RCV.NXT (RFC 6191): reused
        out = s.send(Segment((s.rcv_nxt - 1000) & MASK, 0, SYN, 65535, mss=1460,
                             tsval=s.ts(1000), sack_perm=True, wscale=7), s.t0 + 2.0)
        assert [o.flags for o in out] == [SYN | ACK]
        assert out[0].ack == (s.rcv_nxt - 999) & MASK and out[0].tsecr == s.ts(1000)
        assert out[0].seq == (s.snd_nxt + 65537) & MASK  # above the old sequence space
        conn = s.link.b.connections[s.key]
        assert conn.state is State.SYN_RECEIVED and conn in listener.syn_queue
        assert s.key not in s.link.b.time_wait
        assert s.link.b.tw_reused == (1 if s.compact else 0)  # (counted by compact only)
        return None
    both(run)


def test_syn_without_timestamps_needs_a_higher_sequence_number() -> None:
    def run(s: Setup) -> object:
        s.link.b.listen(80)
        low = s.send(Segment((s.rcv_nxt - 10) & MASK, 0, SYN, 65535, mss=1460), s.t0 + 1.0)
        assert [(o.flags, o.seq, o.ack) for o in low] == [(ACK, s.snd_nxt, s.rcv_nxt)]
        assert low[0].tsval is None and s.in_tw()
        out = s.send(Segment((s.rcv_nxt + 70000) & MASK, 0, SYN, 65535, mss=1460),
                     s.t0 + 2.0)
        assert [o.flags for o in out] == [SYN | ACK] and not s.in_tw()
        assert out[0].seq == (s.snd_nxt + 65537) & MASK
        return len(out)
    both(run, options=False)


def test_old_duplicates_are_acked_with_dsack_and_paws() -> None:
    def run(s: Setup) -> object:
        f = s.fin
        t = s.t0 + 1.0
        # old data (before the FIN): ACK with a D-SACK block (RFC 2883)
        dup = s.send(Segment((f.seq - 40) & MASK, f.ack, ACK, f.window, b"x" * 40,
                             tsval=s.ts(1), tsecr=f.tsecr), t)
        assert [(o.flags, o.ack) for o in dup] == [(ACK, s.rcv_nxt)]
        assert dup[0].sack == (((f.seq - 40) & MASK, f.seq),)
        # an older timestamp (PAWS, RFC 7323 5.3): ACK, no restart
        paws = s.send(Segment(s.rcv_nxt, f.ack, ACK, f.window, tsval=s.ts(-100),
                              tsecr=f.tsecr), t + 0.5)
        assert [(o.flags, o.ack, o.sack) for o in paws] == [(ACK, s.rcv_nxt, None)]
        # an in-window duplicate ACK: absorbed; data beyond the FIN: ACKed, not taken
        quiet = s.send(Segment(s.rcv_nxt, f.ack, ACK, f.window, tsval=s.ts(2),
                               tsecr=f.tsecr), t + 0.6)
        data = s.send(Segment(s.rcv_nxt, f.ack, ACK, f.window, b"late", tsval=s.ts(3),
                              tsecr=f.tsecr), t + 0.7)
        assert quiet == [] and [(o.flags, o.ack) for o in data] == [(ACK, s.rcv_nxt)]
        # an ACK of something never sent: ACK
        ahead = s.send(Segment(s.rcv_nxt, (f.ack + 5) & MASK, ACK, f.window, tsval=s.ts(4),
                               tsecr=f.tsecr), t + 0.8)
        assert [o.flags for o in ahead] == [ACK]
        s.tick(s.t0 + TW + 0.5)  # nothing restarted the timer
        return s.in_tw()
    assert both(run) is False


def test_expiry_frees_the_4_tuple_without_a_timer_per_entry() -> None:
    def run(s: Setup) -> object:
        b = s.link.b
        due = b.poll_at()
        assert due is not None and abs(due - (s.t0 + TW)) <= layer_mod.TW_SLACK + 0.05
        s.tick(s.t0 + TW - 0.01)
        before = s.in_tw()
        s.tick(s.t0 + TW + layer_mod.TW_SLACK)
        gone = not s.in_tw() and b.poll_at() is None
        out = s.send(Segment(s.rcv_nxt, s.snd_nxt, ACK, 100), s.t0 + TW + 1.0)
        return before, gone, [o.flags for o in out]
    assert both(run) == (True, True, [RST])


def test_a_segment_after_expiry_finds_no_connection_before_the_batched_sweep() -> None:
    s = Setup(True)
    out = s.send(Segment(s.rcv_nxt, s.snd_nxt, ACK, 100), s.t0 + TW + 0.01)  # within slack
    assert [o.flags for o in out] == [RST] and s.key not in s.link.b.time_wait


def _server_closes_first(link: Link, listener: Any, sport: int) -> Any:
    """A connection from port ``sport`` of stack a to ``listener`` on b, closed by b first
    and then by a until a's end is CLOSED: returns b's TCB (b's side in TIME-WAIT)."""
    c = link.a.connect(link.addr_a, link.addr_b, 80, link.now, sport=sport)
    link.run_until(lambda: bool(listener.accept_queue))
    s = listener.accept()
    assert s is not None
    s.close()
    link.b.flush(s, link.now)
    link.run_until(lambda: c.state is State.CLOSE_WAIT)
    c.close()
    link.a.flush(c, link.now)
    link.run_until(lambda: c.state is State.CLOSED)
    return s


def test_many_entries_share_one_deadline_and_restarts_keep_order() -> None:
    layer_mod.COMPACT_TIME_WAIT = True
    link = Link(seed=3, policy=TcpPolicy(time_wait=5.0, nodelay=True))
    listener = link.b.listen(80)
    servers = []
    for i in range(20):
        s = _server_closes_first(link, listener, 41000 + i)
        servers.append((*s.local, *s.remote))
        link.now += 0.01
    b = link.b
    assert set(b.time_wait) == set(servers) and not b.connections and b.tw_compacted == 20
    assert not b._heap or all(e[2].layer_deadline != e[0] for e in b._heap)  # no timer each
    # restart the first one's 2*MSL with a retransmitted FIN (forged from its record)
    first = b.time_wait[servers[0]]
    t = first.expiry - 1.0
    fin = Segment((first.rcv_nxt - 1) & MASK, first.snd_nxt, FIN | ACK, 1000,
                  tsval=(first.ts_recent + 1) & MASK, tsecr=0)
    b.input(link.addr_a, link.addr_b, encode(fin, servers[0][3], 80, link.addr_a,
                                             link.addr_b), t)
    assert first.queued == 2
    last = b.time_wait[servers[-1]].expiry
    b.on_timer(last + layer_mod.TW_SLACK)
    assert list(b.time_wait) == [servers[0]]  # the restarted one only
    b.on_timer(t + 5.0 + layer_mod.TW_SLACK)
    assert not b.time_wait and b.poll_at() is None and not b._tw_queues


def test_max_tw_buckets_bounds_the_table() -> None:
    layer_mod.COMPACT_TIME_WAIT = True
    policy = TcpPolicy(time_wait=30.0, nodelay=True, max_tw_buckets=2)
    link = Link(seed=4, policy=policy)
    listener = link.b.listen(80)
    for i in range(3):
        s = _server_closes_first(link, listener, 42000 + i)
        assert s.state is State.CLOSED
    b = link.b
    assert len(b.time_wait) == 2 and b.tw_overflow == 1 and not b.connections
    assert [i.state for i in b.info()] == [State.TIME_WAIT] * 2
    assert sum(line.startswith("TIME-WAIT") for line in b.listing()) == 2


def test_policy_field_is_validated_and_parsed() -> None:
    from ioth.errors import ConfigError

    assert TcpPolicy.from_options({"max_tw_buckets": "10"}).max_tw_buckets == 10
    with pytest.raises(ConfigError, match="max_tw_buckets"):
        TcpPolicy(max_tw_buckets=-1).validate()


def test_zero_buckets_skip_time_wait_and_connect_sees_busy_4_tuples() -> None:
    layer_mod.COMPACT_TIME_WAIT = True
    # (without timestamps: with them a connect from the bound port takes the TIME-WAIT over,
    # as Linux's tcp_twsk_unique: test_s5_timewait_reuse.py)
    link = Link(seed=5, policy=TcpPolicy(time_wait=30.0, nodelay=True, timestamps=False))
    listener = link.b.listen(80)
    c = link.a.connect(link.addr_a, link.addr_b, 80, link.now, sport=43000)
    link.run_until(lambda: bool(listener.accept_queue))
    s = listener.accept()
    assert s is not None
    c.close()  # the client closes first: A holds the TIME-WAIT
    link.a.flush(c, link.now)
    link.run_until(lambda: s.state is State.CLOSE_WAIT)
    s.close()
    link.b.flush(s, link.now)
    link.run_until(lambda: s.state is State.CLOSED)
    a: TcpLayer = link.a
    assert (*c.local, *c.remote) in a.time_wait
    with pytest.raises(OSError, match="in use"):
        a.connect(link.addr_a, link.addr_b, 80, link.now, sport=43000)
    # after the TIME-WAIT the same port connects again
    again = a.connect(link.addr_a, link.addr_b, 80, link.now + 31.0, sport=43000)
    assert again.state is State.SYN_SENT
    a2 = Link(seed=6, policy=TcpPolicy(time_wait=30.0, max_tw_buckets=0))
    lst = a2.b.listen(80)
    c2 = a2.a.connect(a2.addr_a, a2.addr_b, 80, a2.now)
    a2.run_until(lambda: bool(lst.accept_queue))
    c2.close()
    a2.a.flush(c2, a2.now)
    s2 = lst.accept()
    assert s2 is not None
    a2.run_until(lambda: s2.state is State.CLOSE_WAIT)
    s2.close()
    a2.b.flush(s2, a2.now)
    a2.run_until(lambda: s2.state is State.CLOSED)
    assert not a2.a.time_wait and a2.a.tw_overflow == 1 and not a2.a.connections


@pytest.mark.parametrize(("v6", "loss", "seed"), [
    (False, 0.0, 1), (True, 0.0, 2), (False, 0.08, 3), (True, 0.08, 4), (False, 0.2, 5),
])
def test_stack_scenarios_send_the_same_frames(monkeypatch: pytest.MonkeyPatch, v6: bool,
                                              loss: float, seed: int) -> None:
    """test_conn_fastpaths' connection scenarios (four close orders, loss, duplicates, two
    StackCores with every fast path) with compact TIME-WAIT off and on: the same frames,
    frame by frame, and the same layer counters; the TCBs end in the same states."""
    from tests.stack.tcp.test_conn_fastpaths import _scenario

    layer_mod.COMPACT_TIME_WAIT = False
    full = _scenario(v6, loss, seed)
    layer_mod.COMPACT_TIME_WAIT = True
    made: list[object] = []

    class Counted(TimeWait):
        __slots__ = ()

        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            made.append(None)

    monkeypatch.setattr(layer_mod, "TimeWait", Counted)
    compact = _scenario(v6, loss, seed)
    assert made  # the scenario did go through compact TIME-WAIT
    frames_c, frames_f = cast(list[bytes], compact[0]), cast(list[bytes], full[0])
    assert len(frames_c) == len(frames_f)
    for i, (x, y) in enumerate(zip(frames_c, frames_f, strict=True)):
        assert x == y, f"frame {i} differs"
    assert compact[2:] == full[2:]
    # (counters of a TCB stop at compaction: compare states and errors only)
    conns_c = cast(list[tuple[object, ...]], compact[1])
    conns_f = cast(list[tuple[object, ...]], full[1])
    assert [(c[0], c[-1]) for c in conns_c] == [(c[0], c[-1]) for c in conns_f]
