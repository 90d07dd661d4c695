"""Less work per connection must not change what a connection does.

* :data:`ioth.stack.tcp.stackhook.ROUTE_CACHE` (connections between the same two addresses
  share one ``TxRoute``): the same frames and TCB state with the knob on and off, and a shared
  route is given up as soon as a fresh lookup would differ (route change, interface down or
  new MTU, path MTU entry, the remote address made local, a new broadcast address).
* The ISN / timestamp-offset hash (a copied keyed BLAKE2s state) gives the digests of a
  freshly keyed one.
"""

from __future__ import annotations

import hashlib
import random
import struct

import pytest

from ioth.stack.core import StackCore
from ioth.stack.route import Route
from ioth.stack.tcp import stackhook
from ioth.stack.tcp.isn import IsnGenerator
from tests.stack.harness import ip
from tests.stack.tcp import test_conn_fastpaths as fp


def test_isn_hash_matches_a_freshly_keyed_blake2s() -> None:
    rng = random.Random(5)
    gen = IsnGenerator(random.Random(5))
    key = rng.getrandbits(256).to_bytes(32, "big")
    for i in range(50):
        la, ra = bytes([10, 0, 0, i]), bytes([10, 0, 1, 255 - i])
        lp, rp = 1000 + i * 7, 65535 - i
        want = int.from_bytes(hashlib.blake2s(
            la + ra + struct.pack("!HH", lp, rp), key=key, digest_size=8).digest(), "big")
        assert gen._pair(la, lp, ra, rp) == want
        assert gen.isn_ts(12.5, la, lp, ra, rp) == (
            (int(12.5 * 250_000) + (want >> 32)) & 0xFFFFFFFF, want & 0xFFFFFFFF)


@pytest.mark.parametrize(("v6", "loss", "seed"), [(False, 0.0, 11), (True, 0.0, 12),
                                                  (False, 0.1, 13)])
def test_route_cache_sends_the_same_frames(monkeypatch: pytest.MonkeyPatch, v6: bool,
                                           loss: float, seed: int) -> None:
    fp._knobs(monkeypatch, True)
    monkeypatch.setattr(stackhook, "ROUTE_CACHE", False)
    general = fp._scenario(v6, loss, seed)
    monkeypatch.setattr(stackhook, "ROUTE_CACHE", True)
    fast = fp._scenario(v6, loss, seed)
    assert len(fast[0]) == len(general[0])
    for i, (x, y) in enumerate(zip(fast[0], general[0], strict=True)):
        assert x == y, f"frame {i} differs"
    assert fast[1:] == general[1:]


def _core() -> StackCore:
    core = StackCore(random.Random(3))
    iface = core.add_interface("vde0", bytes([2, 0, 0, 0, 0, 1]), 1500)
    core.set_up(iface.index, True, 0.0)
    core.add_addr4(iface.index, ip("198.18.0.1"), 24, 0.0)
    core.routes4.add(Route(ip("203.0.113.0"), 24, ip("198.18.0.254"), iface.index))
    core.ip6.add_addr(iface.index, ip("2001:db8::1"), 64, 0.0)
    return core


def _info(core: StackCore, remote: bytes, sport: int) -> tuple[int, int, object]:
    local = ip("2001:db8::1") if len(remote) == 16 else ip("198.18.0.1")
    ri = core.tcp.route_info
    assert ri is not None
    return ri((local, sport), (remote, 80))


def _same(a: tuple[int, int, object], b: tuple[int, int, object]) -> None:
    """Same MTU, TSO size and route (interface, next hop, checksum base) or both None."""
    assert a[:2] == b[:2]
    ra, rb = a[2], b[2]
    assert (ra is None) == (rb is None)
    if isinstance(ra, stackhook.TxRoute) and isinstance(rb, stackhook.TxRoute):
        assert (ra.iface, ra.nkey, ra.v6, ra.addr_sum) == (rb.iface, rb.nkey, rb.v6, rb.addr_sum)


def _fresh(core: StackCore, remote: bytes, monkeypatch: pytest.MonkeyPatch
           ) -> tuple[int, int, object]:
    monkeypatch.setattr(stackhook, "ROUTE_CACHE", False)
    try:
        return _info(core, remote, 999)
    finally:
        monkeypatch.setattr(stackhook, "ROUTE_CACHE", True)


def test_connections_share_a_route_until_a_lookup_would_differ(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stackhook, "ROUTE_CACHE", True)
    core = _core()
    far = ip("203.0.113.9")
    first = _info(core, far, 40000)
    assert _info(core, far, 40001)[2] is first[2]  # shared
    six = _info(core, ip("2001:db8::2"), 40000)
    assert _info(core, ip("2001:db8::2"), 40001)[2] is six[2]
    iface = core.ifaces[2]
    # a route change: a new table list, a new lookup (here: a more specific route)
    core.routes4.add(Route(ip("203.0.113.0"), 25, ip("198.18.0.253"), iface.index))
    after = _info(core, far, 40002)
    assert after[2] is not first[2]
    _same(after, _fresh(core, far, monkeypatch))
    assert isinstance(after[2], stackhook.TxRoute) and after[2].nkey[1] == ip("198.18.0.253")
    # a new MTU on the interface
    shared = after[2]
    iface.mtu = 1400
    bigger = _info(core, far, 40003)
    assert bigger[2] is not shared and bigger[0] == 1400
    _same(bigger, _fresh(core, far, monkeypatch))
    # TSO offered by the interface now
    iface.gso_max_size = 65536
    tso = _info(core, far, 40008)
    assert tso[1] > 0
    _same(tso, _fresh(core, far, monkeypatch))
    # a path MTU entry: no sharing while one is cached
    core.pmtu_set(far, 1300, 0.0)
    assert _info(core, far, 40004)[0] == 1300
    _same(_info(core, far, 40005), _fresh(core, far, monkeypatch))
    core.pmtu.clear()
    # the interface down: no route at all, as a fresh lookup says
    core.set_up(iface.index, False, 0.0)
    _same(_info(core, far, 40006), _fresh(core, far, monkeypatch))
    assert _info(core, far, 40007)[2] is None


def test_an_address_made_local_is_no_longer_routed_to_the_link(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stackhook, "ROUTE_CACHE", True)
    core = _core()
    near = ip("198.18.0.7")
    assert isinstance(_info(core, near, 40000)[2], stackhook.TxRoute)
    core.add_addr4(1, near, 32, 0.0)  # now ours (on lo: the routing table is unchanged)
    got = _info(core, near, 40001)
    assert got[2] is None
    _same(got, _fresh(core, near, monkeypatch))
    six = ip("2001:db8::7")
    assert isinstance(_info(core, six, 40000)[2], stackhook.TxRoute)
    core.ip6.add_addr(1, six, 128, 0.0)
    _same(_info(core, six, 40001), _fresh(core, six, monkeypatch))


def test_a_next_hop_that_became_a_broadcast_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stackhook, "ROUTE_CACHE", True)
    core = _core()
    near = ip("198.18.0.255")  # the broadcast address of 198.18.0.1/24
    far = ip("192.0.2.63")
    core.routes4.add(Route(ip("192.0.2.0"), 24, None, core.ifaces[2].index))
    assert isinstance(_info(core, far, 40000)[2], stackhook.TxRoute)
    core.add_addr4(core.ifaces[2].index, ip("192.0.2.33"), 27, 0.0)  # broadcast .63
    got = _info(core, far, 40001)
    _same(got, _fresh(core, far, monkeypatch))
    assert got[2] is None
    assert _info(core, near, 40000)[2] is None


def test_the_shared_table_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stackhook, "ROUTE_CACHE", True)
    monkeypatch.setattr(stackhook, "ROUTE_CACHE_MAX", 4)
    core = _core()
    for i in range(10):
        _info(core, bytes([203, 0, 113, i + 1]), 40000)
    glue = core.tcp.route_info.__self__  # type: ignore[union-attr]
    assert len(glue.shared) <= 4
    assert glue.shared_resets == 2


def _stale_run(prune: bool, monkeypatch: pytest.MonkeyPatch, n: int = 200
               ) -> tuple[list[bytes], list[object], StackCore]:
    """Server-closed connections (the cps order) next to one connection whose server end
    keeps an RTO pending (its segments are lost): every frame sent, each TCB's end state."""
    from ioth.stack.tcp import layer as layer_mod
    from ioth.stack.tcp.policy import TcpPolicy

    monkeypatch.setattr(layer_mod, "HEAP_PRUNE", prune)
    monkeypatch.setattr(layer_mod, "HEAP_SLACK", 8)
    cores = [StackCore(random.Random(i)) for i in (1, 2)]
    ifaces = []
    for i, core in enumerate(cores):
        iface = core.add_interface("vde0", bytes([2, 0, 0, 0, 0, i + 1]), 1500)
        core.set_up(iface.index, True, 0.0)
        core.add_addr4(iface.index, bytes([198, 18, 0, i + 1]), 24, 0.0)
        ifaces.append(iface)
    frames: list[bytes] = []
    clock = [100.0]

    def pump(drop_server: bool = False) -> None:
        moved = True
        while moved:
            moved = False
            clock[0] += 0.0005
            now = clock[0]
            for me, other in ((0, 1), (1, 0)):
                q = ifaces[me].txq
                if q and drop_server and me == 1:
                    frames.extend(q)
                    q.clear()
                    continue
                if q:
                    moved = True
                    cores[other].begin_batch()
                    while q:
                        f = q.popleft()
                        frames.append(f)
                        cores[other].input_frame(ifaces[other].index, f, now)
                    cores[other].end_batch(now)
            for core in cores:
                d = core.next_deadline()
                if d is not None and d <= now:
                    core.poll(now)

    a, b = cores
    policy = TcpPolicy(nodelay=True, time_wait=60.0)
    listener = b.tcp.listen(80, policy=policy, backlog=1024)
    sa, sb = bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2])
    c0 = a.tcp.connect(sa, sb, 80, clock[0], policy=policy)
    pump()
    s0 = listener.accept()
    assert s0 is not None
    tcbs: list[object] = [c0, s0]
    msg = bytes(64)
    for _ in range(n):
        s0.send(b"x")
        b.tcp.flush(s0, clock[0])
        pump(drop_server=True)  # lost: s0's retransmission timer stays armed
        c = a.tcp.connect(sa, sb, 80, clock[0], policy=policy)
        pump()
        s = listener.accept()
        assert s is not None
        c.send(msg)
        a.tcp.flush(c, clock[0])
        pump()
        assert s.recv(4096) == msg
        s.send(msg)
        s.close()
        b.tcp.flush(s, clock[0])
        pump()
        assert c.recv(4096) == msg
        c.close()
        a.tcp.flush(c, clock[0])
        pump()
        tcbs += [c, s]
    return frames, [fp._tcb_state(t) for t in tcbs], b  # type: ignore[arg-type]


def test_stale_timer_entries_do_not_keep_closed_connections(
        monkeypatch: pytest.MonkeyPatch) -> None:
    frames_off, states_off, b_off = _stale_run(False, monkeypatch)
    frames_on, states_on, b_on = _stale_run(True, monkeypatch)
    assert frames_on == frames_off
    assert states_on == states_off
    # without pruning, the FIN-WAIT-2 entries (60 s) of the server ends wait behind s0's
    # retransmission entry, each holding its (compacted, closed) TCB
    held_off = {id(e[2]) for e in b_off.tcp._heap}
    held_on = {id(e[2]) for e in b_on.tcp._heap}
    assert len(held_off) > 150
    assert len(held_on) < 40
    assert b_on.tcp.heap_prunes > 0
    assert len(b_on.tcp.time_wait) == len(b_off.tcp.time_wait) > 150
