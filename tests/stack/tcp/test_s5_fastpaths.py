"""Session 5's per-connection fast paths (knobs below) change no frame and no state.

Each knob is compared off against on with every other fast path on:

* the frames, counters and tables of :func:`test_conn_fastpaths._scenario` (bursts, SYN
  cookies, every close order, loss, IPv4 and IPv6);
* :func:`_lifecycle`: connections between two StackCores fed in batches as a runtime does
  (begin_batch / input_frames / end_batch), in the orders of the benchmarks (the FINs
  crossing, the server closing first) and the others (client first, simultaneous, RST, a
  SYN for a TIME-WAIT 4-tuple), with and without TCP options: every field of both TCBs and
  of the compact TIME-WAIT entries after every step, and every frame;
* that the fast path is taken when the knob is on (else the comparison proves nothing).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from ioth.stack import core as core_mod
from ioth.stack.core import StackCore
from ioth.stack.tcp import output as output_mod
from ioth.stack.tcp.connection import State, TcpConnection
from ioth.stack.tcp.policy import TcpPolicy
from tests.stack.harness import ip
from tests.stack.tcp import test_conn_fastpaths as fp

#: (module, name) of every session-5 knob whose fast path must not change a frame or a state
S5_KNOBS: list[tuple[object, str]] = [
    (core_mod, "RX_HANDSHAKE"),
    (core_mod, "RX_PLAIN"),
    (output_mod, "SMALL_FIN"),
]


def _set(monkeypatch: pytest.MonkeyPatch, knobs: list[tuple[object, str]], on: bool) -> None:
    for mod, name in knobs:
        monkeypatch.setattr(mod, name, type(getattr(mod, name))(on))


def _tw_state(core: StackCore) -> list[tuple[object, ...]]:
    out = []
    for key, tw in sorted(core.tcp.time_wait.items()):
        out.append((key, *(getattr(tw, f) for f in type(tw).__slots__ if f != "policy")))
    return out


class _Link:
    """Two StackCores; each side's queued frames reach the other as one batch."""

    def __init__(self, v6: bool) -> None:
        self.cores = [StackCore(random.Random(i)) for i in (1, 2)]
        self.ifaces = []
        self.frames: list[bytes] = []
        self.now = 100.0
        for i, core in enumerate(self.cores):
            iface = core.add_interface("vde0", bytes([2, 0, 0, 0, 0, i + 1]), 1500)
            core.set_up(iface.index, True, 0.0)
            if v6:
                core.ip6.add_addr(iface.index, ip(f"2001:db8::{i + 1}"), 64, 0.0)
            else:
                core.add_addr4(iface.index, ip(f"198.18.0.{i + 1}"), 24, 0.0)
            self.ifaces.append(iface)
        if v6:
            self.run(3.0)  # DAD
            self.addrs = (ip("2001:db8::1"), ip("2001:db8::2"))
        else:
            self.addrs = (ip("198.18.0.1"), ip("198.18.0.2"))

    def tick(self) -> float:
        self.now += 0.0003
        return self.now

    def deliver(self, src: int) -> bool:
        q = self.ifaces[src].txq
        if not q:
            return False
        frames = list(q)
        q.clear()
        self.frames += frames
        dst = 1 - src
        core = self.cores[dst]
        now = self.tick()
        core.begin_batch()
        core.input_frames(self.ifaces[dst].index, frames, now)
        core.end_batch(now)
        return True

    def pump(self) -> None:
        moved = True
        while moved:
            moved = self.deliver(0) | self.deliver(1)
            self.timers()

    def timers(self) -> None:
        for core in self.cores:
            d = core.next_deadline()
            if d is not None and d <= self.now:
                core.poll(self.now)

    def run(self, seconds: float) -> None:
        end = self.now + seconds
        while self.now < end:
            self.now += 0.01
            self.timers()
            self.pump()


def _lifecycle(v6: bool, options: bool) -> tuple[list[object], list[bytes]]:
    link = _Link(v6)
    client, server = link.cores
    ca, sa = link.addrs
    policy = TcpPolicy(nodelay=True, time_wait=0.5, timestamps=options, sack=options,
                       window_scaling=options)
    listener = server.tcp.listen(80, policy=policy)
    states: list[object] = []
    conns: list[TcpConnection] = []
    msg = bytes(range(64))

    seen: set[tuple[State, bool]] = set()

    def step(*pair: TcpConnection) -> None:
        seen.update((c.state, c._user_closed) for c in pair)
        states.append(([fp._tcb_state(c) for c in pair], _tw_state(client),
                       _tw_state(server), fp._tables(client), fp._tables(server)))

    def flush(core: StackCore, conn: TcpConnection) -> None:
        core.tcp.flush(conn, link.tick())

    for mode in range(9):
        sport = 40000 + (mode if mode != 6 else 5)  # mode 6 reuses mode 5's TIME-WAIT
        c = client.tcp.connect(ca, sa, 80, link.tick(), sport=sport, policy=policy)
        conns.append(c)
        step(c)
        link.pump()
        s = listener.accept()
        assert s is not None, mode
        conns.append(s)
        step(c, s)
        c.send(msg)
        flush(client, c)
        link.pump()
        assert s.recv(4096) == msg
        s.send(msg)
        flush(server, s)
        step(c, s)
        if mode in (0, 6):  # the FINs cross (bench_tcp's cps): client closes on the reply
            link.deliver(1)
            s.close()
            flush(server, s)
            step(c, s)
            assert c.recv(4096) == msg
            c.close()
            flush(client, c)
            step(c, s)
            link.deliver(1)
            step(c, s)
            link.deliver(0)
            step(c, s)
        elif mode in (1, 5):  # server closes first, its FIN arrives before the client closes
            # (mode 5 leaves the server a TIME-WAIT that mode 6's SYN reuses)
            s.close()
            flush(server, s)
            link.pump()
            step(c, s)
            assert c.recv(4096) == msg
            c.close()
            flush(client, c)
        elif mode == 2:  # client closes first
            link.pump()
            assert c.recv(4096) == msg
            c.close()
            flush(client, c)
            link.pump()
            step(c, s)
            s.close()
            flush(server, s)
        elif mode == 3:  # simultaneous close, nothing in flight
            link.pump()
            assert c.recv(4096) == msg
            c.close()
            s.close()
            flush(client, c)
            flush(server, s)
        elif mode == 7:  # client closes, FIN-WAIT-2 (orphaned) until the server closes
            link.pump()
            assert c.recv(4096) == msg
            c.close()
            flush(client, c)
            link.pump()
            link.run(0.3)
            step(c, s)
            s.close()
            flush(server, s)
        elif mode == 8:  # half-close: FIN-WAIT-2 until the delayed ACK, then a reply
            link.pump()
            assert c.recv(4096) == msg
            c.shutdown()
            flush(client, c)
            link.pump()
            link.run(0.3)
            step(c, s)
            s.send(msg)
            s.close()
            flush(server, s)
            link.pump()
            step(c, s)
            assert c.recv(4096) == msg
            c.close()
            flush(client, c)
        else:  # abort with unread data: RST
            link.pump()
            c.abort()
            flush(client, c)
            s.close()
            flush(server, s)
        step(c, s)
        link.pump()
        step(c, s)
    assert server.tcp.tw_reused == 1  # mode 6's SYN took mode 5's TIME-WAIT 4-tuple
    assert (State.FIN_WAIT_2, True) in seen  # mode 7
    assert (State.FIN_WAIT_2, False) in seen  # mode 8
    link.run(1.0)  # TIME-WAIT expiry
    step(*conns)
    assert all(c.state is State.CLOSED for c in conns)
    return states, link.frames


@pytest.mark.parametrize("knob", [name for _, name in S5_KNOBS])
@pytest.mark.parametrize(("v6", "loss", "seed", "backlog"), [
    (False, 0.0, 1, 64), (True, 0.0, 2, 64), (False, 0.1, 3, 64), (True, 0.08, 4, 64),
    (False, 0.1, 7, 1),  # SYN cookies, full accept queue (handshake ACKs dropped)
])
def test_scenario_frames_match(monkeypatch: pytest.MonkeyPatch, knob: str, v6: bool,
                               loss: float, seed: int, backlog: int) -> None:
    fp._knobs(monkeypatch, True)
    _set(monkeypatch, S5_KNOBS, True)
    _set(monkeypatch, [k for k in S5_KNOBS if k[1] == knob], False)
    general = fp._scenario(v6, loss, seed, syn_backlog=min(backlog, 128), backlog=backlog)
    _set(monkeypatch, S5_KNOBS, True)
    fast = fp._scenario(v6, loss, seed, syn_backlog=min(backlog, 128), backlog=backlog)
    assert len(fast[0]) == len(general[0])
    for i, (x, y) in enumerate(zip(fast[0], general[0], strict=True)):
        assert x == y, f"frame {i} differs"
    assert fast[1:] == general[1:]


@pytest.mark.parametrize("knob", [name for _, name in S5_KNOBS] + ["all"])
@pytest.mark.parametrize(("v6", "options"), [(False, True), (True, True), (False, False)])
def test_lifecycle_states_match(monkeypatch: pytest.MonkeyPatch, knob: str, v6: bool,
                                options: bool) -> None:
    fp._knobs(monkeypatch, True)
    _set(monkeypatch, S5_KNOBS, True)
    _set(monkeypatch, [k for k in S5_KNOBS if knob in (k[1], "all")], False)
    general = _lifecycle(v6, options)
    _set(monkeypatch, S5_KNOBS, True)
    fast = _lifecycle(v6, options)
    assert fast[1] == general[1]
    assert len(fast[0]) == len(general[0])
    for i, (x, y) in enumerate(zip(fast[0], general[0], strict=True)):
        assert x == y, f"state differs after step {i}"


def _count_calls(monkeypatch: pytest.MonkeyPatch, cls: type, name: str) -> Callable[[], int]:
    calls = [0]
    orig = getattr(cls, name)

    def wrapper(*args: object, **kw: object) -> object:
        calls[0] += 1
        return orig(*args, **kw)

    monkeypatch.setattr(cls, name, wrapper)
    return lambda: calls[0]


@pytest.mark.parametrize("v6", [False, True])
def test_handshake_segments_skip_the_layered_input(monkeypatch: pytest.MonkeyPatch,
                                                   v6: bool) -> None:
    """RX_HANDSHAKE on: the SYN and the SYN-ACK (Linux's option layout) do not go through
    StackCore.tcp_input; off: both do."""
    for on, want in ((True, 0), (False, 2)):
        monkeypatch.setattr(core_mod, "RX_HANDSHAKE", int(on))
        link = _Link(v6)
        client, server = link.cores
        listener = server.tcp.listen(80)
        c = client.tcp.connect(*link.addrs, 80, link.tick())
        link.pump()  # ARP / ND
        count = _count_calls(monkeypatch, StackCore, "tcp_input")
        c2 = client.tcp.connect(*link.addrs, 80, link.tick())
        link.pump()
        assert c.state is State.ESTABLISHED and c2.state is State.ESTABLISHED
        assert listener.accept() is not None and listener.accept() is not None
        assert count() == want
        monkeypatch.undo()


@pytest.mark.parametrize("v6", [False, True])
def test_closing_segments_take_rx_plain(monkeypatch: pytest.MonkeyPatch, v6: bool) -> None:
    """RX_PLAIN on: the handshake's ACK and, with the FINs crossing, both FINs and both ACKs
    of them are consumed by TcpConnection.rx_plain; off: none is offered to it."""
    taken: list[bool] = []
    orig = TcpConnection.rx_plain

    def spy(self: TcpConnection, *args: object) -> bool:
        r = orig(self, *args)  # type: ignore[arg-type]
        taken.append(r)
        return r

    monkeypatch.setattr(TcpConnection, "rx_plain", spy)
    for on in (True, False):
        monkeypatch.setattr(core_mod, "RX_PLAIN", int(on))
        taken.clear()
        link = _Link(v6)
        client, server = link.cores
        listener = server.tcp.listen(80, policy=TcpPolicy(nodelay=True))
        c = client.tcp.connect(*link.addrs, 80, link.tick(), policy=TcpPolicy(nodelay=True))
        link.pump()
        s = listener.accept()
        assert s is not None
        c.send(b"x")
        client.tcp.flush(c, link.tick())
        link.pump()
        assert s.recv(10) == b"x"
        s.send(b"y")
        server.tcp.flush(s, link.tick())
        link.deliver(1)
        s.close()
        server.tcp.flush(s, link.tick())
        assert c.recv(10) == b"y"
        c.close()
        client.tcp.flush(c, link.tick())
        link.pump()
        assert c.state is State.CLOSED and s.state is State.CLOSED
        assert len(client.tcp.time_wait) == 1 and len(server.tcp.time_wait) == 1
        assert taken == ([True] * 5 if on else [])


def _fin_after(tweak: Callable[[TcpConnection], None]) -> tuple[object, ...]:
    """A client TCB with 64 bytes in flight (or acknowledged), tweaked, then closed: its state
    and segments after the dispatch that sends the FIN."""
    from ioth.stack.tcp.layer import TcpLayer

    a = TcpLayer(random.Random(1), TcpPolicy(nodelay=True))
    b = TcpLayer(random.Random(2), TcpPolicy(nodelay=True))
    ca, sa = ip("198.18.0.1"), ip("198.18.0.2")

    def move(src: TcpLayer, dst: TcpLayer, now: float) -> None:
        out = list(src.outbox)
        src.outbox.clear()
        for s, d, seg in out:
            dst.input(s, d, seg, now)

    listener = b.listen(80)
    c = a.connect(ca, sa, 80, 1.0)
    move(a, b, 1.001)
    move(b, a, 1.002)
    move(a, b, 1.003)
    assert listener.accept() is not None
    c.send(bytes(64))
    a.flush(c, 1.004)
    a.outbox.clear()  # the request is in flight (lost, for all this TCB knows)
    tweak(c)
    c.close()
    a.flush(c, 1.005)
    return fp._tcb_state(c), [seg for _, _, seg in a.outbox]


def _acked(c: TcpConnection) -> None:
    c.snd_una = c.snd_nxt  # (as if the peer acknowledged the request)
    c._shead = len(c._sbuf)
    c._sseq = c.snd_nxt


@pytest.mark.parametrize("tweak", [
    lambda c: None,
    _acked,
    lambda c: setattr(c.cc, "cwnd", c.mss),  # cwnd-limited (after an RTO)
    lambda c: (_acked(c), setattr(c, "_persist_at", 9.0)),  # persist timer armed
    lambda c: setattr(c, "tso_max", 65000),  # TSO: the cut size is set
    lambda c: setattr(c, "_rto_at", None),
    lambda c: setattr(c, "snd_wnd", 64),  # the window ends at the FIN: general path
    lambda c: setattr(c, "_lost_edge", c.snd_nxt),  # presumed lost: general path
], ids=["in-flight", "acked", "cwnd-limited", "persist", "tso", "no-rto", "closed-window",
        "lost"])
def test_fin_alone_short_path_same_state(monkeypatch: pytest.MonkeyPatch,
                                         tweak: Callable[[TcpConnection], None]) -> None:
    monkeypatch.setattr(output_mod, "SMALL_FIN", False)
    general = _fin_after(tweak)
    monkeypatch.setattr(output_mod, "SMALL_FIN", True)
    fast = _fin_after(tweak)
    assert [repr(s) for s in fast[1]] == [repr(s) for s in general[1]]
    assert fast[0] == general[0]


def test_ts_rtt_inlines_rtt_sample() -> None:
    """RecoveryMixin._ts_rtt's inlined copy of _rtt_sample gives its SRTT, RTTVAR, RTO and
    min RTT, from the first sample on, within and outside the RTO bounds."""
    from ioth.stack.tcp.isn import IsnGenerator
    from ioth.stack.tcp.state import MASK

    rng = random.Random(9)
    policy = TcpPolicy(min_rto=0.2, max_rto=3.0)
    local, remote = (ip("198.18.0.1"), 1000), (ip("198.18.0.2"), 80)
    x = TcpConnection(policy, IsnGenerator(random.Random(1)), local, remote)
    y = TcpConnection(policy, IsnGenerator(random.Random(1)), local, remote)
    x._ts_offset = y._ts_offset = 12345
    now = 50.0
    for _ in range(300):
        now += rng.random() * 0.5
        rtt_ms = rng.choice((0, 1, 3, 40, 700, 5000, 20000))
        ms = int(now * 1000)
        tsecr = (ms + 12345 - rtt_ms) & MASK
        x._ts_rtt(tsecr, now)
        # the reference: _ts_rtt as it was, calling _rtt_sample
        y._last_tsecr = tsecr
        y._ts_last = max(ms, y._ts_last)
        delta = (((y._ts_last + 12345) & MASK) - tsecr) & MASK
        if delta < 0x80000000:
            y._rtt_sample(delta / 1000.0)
        assert (x.srtt, x.rttvar, x.rto, x._min_rtt, x._ts_last, x._last_tsecr) == (
            y.srtt, y.rttvar, y.rto, y._min_rtt, y._ts_last, y._last_tsecr)
