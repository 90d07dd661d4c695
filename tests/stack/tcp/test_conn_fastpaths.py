"""The connection fast paths (knobs in :mod:`ioth.stack.tcp.layer` and
:mod:`ioth.stack.tcp.stackhook`) produce exactly the frames of the general paths.

Each scenario runs twice on a virtual clock, two StackCores over an in-memory hub (seeded loss,
reordering and duplication in some): once with every fast path on, once with every one off;
the captures must be equal frame by frame (the hub's random draws then match too) and so must
the connections' counters and the layers' tables.
"""

from __future__ import annotations

import pytest

from ioth.stack.core import StackCore
from ioth.stack.tcp import layer as layer_mod
from ioth.stack.tcp import output as output_mod
from ioth.stack.tcp import stackhook
from ioth.stack.tcp.connection import State, TcpConnection
from ioth.stack.tcp.policy import TcpPolicy
from ioth.stack.tcp.segment import Segment
from tests.stack.harness import VirtualNet, ip

#: (module, name) of every knob whose fast path must not change a frame
KNOBS = [
    (layer_mod, "QUIET_TIMERS"),
    (layer_mod, "HANDSHAKE_FASTPATH"),
    (layer_mod, "IDLE_DISPATCH"),
    (layer_mod, "HEAP_PRUNE"),
    (stackhook, "ROUTE_ONCE"),
    (stackhook, "ROUTE_CACHE"),
    (stackhook, "FAST_OUTPUT"),
    (output_mod, "SMALL_SEND"),
]


def _knobs(monkeypatch: pytest.MonkeyPatch, on: bool) -> None:
    for mod, name in KNOBS:
        monkeypatch.setattr(mod, name, on)


def _read(conn: TcpConnection) -> bytes:
    try:
        return conn.recv(65536)
    except OSError:  # nothing yet, or reset by the peer
        return b""


def _send(conn: TcpConnection, data: bytes) -> None:
    try:
        conn.send(data)
    except OSError:  # reset, timed out
        pass


def _snapshot(conns: list[TcpConnection]) -> list[tuple[object, ...]]:
    return [(c.state, c.segments_in, c.segments_out, c.retransmissions, c.dropped,
             c.snd_nxt - c.iss, c.rcv_nxt - c.irs, c.mss, c.tso_max, c.error)
            for c in conns]


def _tables(core: StackCore) -> tuple[object, ...]:
    tcp = core.tcp
    return (sorted((k[1], k[3], v.state.name) for k, v in tcp.connections.items()),
            tcp.rx_segments, tcp.tx_segments, tcp.resets_sent, tcp.rx_no_socket,
            dict(core.counters))


def _scenario(v6: bool, loss: float, seed: int, syn_backlog: int = 128,
              backlog: int = 64) -> tuple[object, ...]:
    net = VirtualNet(seed)
    hub = net.hub(loss=loss, dup=loss / 3, jitter=0.0003 if loss else 0.0, delay=0.0002)
    a, b = net.stack(), net.stack()
    ia, ib = net.attach(a, hub), net.attach(b, hub)
    if v6:
        a.ip6.add_addr(ia.index, ip("2001:db8::a"), 64, 0)
        b.ip6.add_addr(ib.index, ip("2001:db8::b"), 64, 0)
        net.run(3.0)  # DAD
        sa, sb = ip("2001:db8::a"), ip("2001:db8::b")
    else:
        a.add_addr4(ia.index, ip("192.0.2.1"), 24, 0)
        b.add_addr4(ib.index, ip("192.0.2.2"), 24, 0)
        sa, sb = ip("192.0.2.1"), ip("192.0.2.2")
    policy = TcpPolicy(nodelay=True, time_wait=0.3, syn_backlog=syn_backlog)
    listener = b.tcp.listen(80, policy=policy, backlog=backlog)
    conns: list[TcpConnection] = []
    msg = bytes(range(64))
    # a burst of connects: SYN queue and accept queue fill (cookies, drops) when small
    burst = [a.tcp.connect(sa, sb, 80, net.now, policy=policy) for _ in range(6)]
    conns += burst
    for _ in range(3):
        net.run(0.3)
        while (s := listener.accept()) is not None:
            conns.append(s)
            _send(s, msg)
            s.close()
            b.tcp.flush(s, net.now)
    for c in burst:
        c.close()
        a.tcp.flush(c, net.now)
    for i in range(12):
        c = a.tcp.connect(sa, sb, 80, net.now, policy=policy)
        conns.append(c)
        for _ in range(400):
            net.run(0.005)
            if listener.accept_queue or c.state is State.CLOSED:
                break
        s = listener.accept()
        if s is None:
            continue
        conns.append(s)
        _send(c, msg * (1 + i % 3))
        a.tcp.flush(c, net.now)
        got = bytearray()
        for _ in range(400):
            net.run(0.005)
            got += _read(s)
            if len(got) >= 64 * (1 + i % 3):
                break
        b.tcp.flush(s, net.now)
        _send(s, bytes(got))
        mode = i % 4
        if mode == 0:  # server closes first (the cps benchmarks' order)
            s.close()
            b.tcp.flush(s, net.now)
            net.run(0.01)
            _read(c)
            c.close()
            a.tcp.flush(c, net.now)
        elif mode == 1:  # client closes first after reading
            b.tcp.flush(s, net.now)
            net.run(0.01)
            _read(c)
            c.close()
            a.tcp.flush(c, net.now)
            net.run(0.01)
            s.close()
            b.tcp.flush(s, net.now)
        elif mode == 2:  # simultaneous close
            s.close()
            c.shutdown()
            b.tcp.flush(s, net.now)
            a.tcp.flush(c, net.now)
        else:  # abort with unread data: RST
            b.tcp.flush(s, net.now)
            net.run(0.01)
            c.abort()
            a.tcp.flush(c, net.now)
            s.close()
            b.tcp.flush(s, net.now)
        net.run(0.02)
    net.run(5.0)  # retransmissions, TIME-WAIT and FIN-WAIT-2 expiry
    return (list(hub.frames), _snapshot(conns), _tables(a), _tables(b),
            listener.cookies_sent, listener.cookies_accepted, listener.syn_dropped)


@pytest.mark.parametrize(("v6", "loss", "seed"), [
    (False, 0.0, 1), (True, 0.0, 2), (False, 0.08, 3), (True, 0.08, 4), (False, 0.2, 5),
])
def test_fast_and_general_paths_send_the_same_frames(
        monkeypatch: pytest.MonkeyPatch, v6: bool, loss: float, seed: int) -> None:
    _knobs(monkeypatch, False)
    general = _scenario(v6, loss, seed)
    _knobs(monkeypatch, True)
    fast = _scenario(v6, loss, seed)
    assert len(fast[0]) == len(general[0])
    for i, (x, y) in enumerate(zip(fast[0], general[0], strict=True)):
        assert x == y, f"frame {i} differs"
    assert fast[1:] == general[1:]


def test_cookies_and_full_queues_match(monkeypatch: pytest.MonkeyPatch) -> None:
    """SYN cookies (SYN queue of 1 under loss) take the general paths in both runs."""
    _knobs(monkeypatch, False)
    general = _scenario(False, 0.1, 7, syn_backlog=1, backlog=1)
    _knobs(monkeypatch, True)
    fast = _scenario(False, 0.1, 7, syn_backlog=1, backlog=1)
    assert fast == general


_SKIP = {"tx_route", "listener", "policy", "_isn", "layer_deadline"}


def _tcb_state(conn: TcpConnection) -> dict[str, object]:
    """Every field of the TCB (the controller's too), comparable across runs."""
    out: dict[str, object] = {}
    for cls in type(conn).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if name in _SKIP or name in out or not hasattr(conn, name):
                continue  # (the urgent-data slots stay unset until urgent data: TcbBase)
            v = getattr(conn, name)
            if name == "cc":
                v = (type(v).__name__,
                     tuple(getattr(v, f) for c in type(v).__mro__
                           for f in getattr(c, "__slots__", ())))
            elif isinstance(v, Segment):
                v = repr(v)
            elif isinstance(v, (bytearray, memoryview)):
                v = bytes(v)
            elif isinstance(v, list):
                v = [repr(x) if isinstance(x, Segment) else x for x in v]
            out[name] = v
    return out


def _rr_states(v6: bool, loss: float, seed: int, options: bool = True
               ) -> tuple[list[object], list[bytes]]:
    """Round trips (small and multi-segment messages) on one connection under loss; the
    full TCB state of both ends after every step."""
    net = VirtualNet(seed)
    hub = net.hub(loss=loss, dup=loss / 3, jitter=0.0003 if loss else 0.0, delay=0.0002)
    a, b = net.stack(), net.stack()
    ia, ib = net.attach(a, hub), net.attach(b, hub)
    if v6:
        a.ip6.add_addr(ia.index, ip("2001:db8::a"), 64, 0)
        b.ip6.add_addr(ib.index, ip("2001:db8::b"), 64, 0)
        net.run(3.0)
        sa, sb = ip("2001:db8::a"), ip("2001:db8::b")
    else:
        a.add_addr4(ia.index, ip("192.0.2.1"), 24, 0)
        b.add_addr4(ib.index, ip("192.0.2.2"), 24, 0)
        sa, sb = ip("192.0.2.1"), ip("192.0.2.2")
    policy = TcpPolicy(nodelay=True, keepalive=True, keepidle=0.5, keepintvl=0.2,
                       timestamps=options, sack=options, window_scaling=options)
    listener = b.tcp.listen(80, policy=policy)
    states: list[object] = []
    for _attempt in range(5):  # under heavy loss a connect may fail (neighbour resolution)
        c = a.tcp.connect(sa, sb, 80, net.now, policy=policy)
        for _ in range(100):
            net.run(0.1)
            if listener.accept_queue or c.state is State.CLOSED:
                break
        s = listener.accept()
        if s is not None:
            break
    assert s is not None
    for i in range(40):
        size = (64, 3000, 1, 9000)[i % 4]
        _send(c, bytes([i]) * size)
        a.tcp.flush(c, net.now)
        got = bytearray()
        for _ in range(200):
            net.run(0.002)
            got += _read(s)
            if len(got) >= size:
                break
        b.tcp.flush(s, net.now)
        _send(s, bytes(got))
        b.tcp.flush(s, net.now)
        back = bytearray()
        for _ in range(200):
            net.run(0.002)
            back += _read(c)
            if len(back) >= len(got):
                break
        a.tcp.flush(c, net.now)
        if i % 10 == 9:
            net.run(0.7)  # idle: keepalive probes, delayed ACKs, TLP/RTO timers
        states.append((_tcb_state(c), _tcb_state(s)))
    return states, list(hub.frames)


@pytest.mark.parametrize(("v6", "loss", "seed", "options"), [
    (False, 0.0, 11, True), (False, 0.1, 12, True), (True, 0.05, 13, True),
    (False, 0.2, 14, True), (True, 0.2, 15, True), (False, 0.0, 16, False),
    (False, 0.1, 17, False),
])
def test_round_trips_keep_every_tcb_field(
        monkeypatch: pytest.MonkeyPatch, v6: bool, loss: float, seed: int,
        options: bool) -> None:
    """Also without timestamps, SACK and window scaling (RTT timing by Karn's rule)."""
    _knobs(monkeypatch, False)
    general = _rr_states(v6, loss, seed, options)
    _knobs(monkeypatch, True)
    fast = _rr_states(v6, loss, seed, options)
    assert fast[1] == general[1]
    for i, (x, y) in enumerate(zip(fast[0], general[0], strict=True)):
        assert x == y, f"TCB state differs after step {i}"
