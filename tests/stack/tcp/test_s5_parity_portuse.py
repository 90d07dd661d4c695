"""TcpLayer.port_use (session 5): the count of connections and TIME-WAIT entries per local
port, which lets a bind of a free port skip the pass over the tables, stays equal to what
the tables hold through every way in and out: active and passive opens, SYN-cookie opens,
compaction to TIME-WAIT (and its overflow), TIME-WAIT expiry and reuse (by a bound connect
and by a listener's SYN), resets, full TCBs in TIME-WAIT."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from ioth.stack.tcp import layer as layer_mod
from ioth.stack.tcp.layer import TcpLayer
from ioth.stack.tcp.policy import TcpPolicy
from tests.stack.harness import ip
from tests.stack.tcp.layerpair import LayerPair

CA, SA = ip("198.18.0.1"), ip("198.18.0.2")


def _truth(lay: TcpLayer) -> dict[int, int]:
    c = Counter(k[1] for k in lay.connections)
    c.update(k[1] for k in lay.time_wait)
    return dict(c)


class _Pair(LayerPair):
    def after_round(self) -> None:
        self.check()

    def tick(self, dt: float) -> None:
        self.now += dt
        for lay in (self.a, self.b):
            lay.on_timer(self.now)
        self.run()

    def check(self) -> None:
        for lay in (self.a, self.b):
            assert lay.port_use == _truth(lay)


@pytest.mark.parametrize("compact", [True, False])
@pytest.mark.parametrize("buckets", [262144, 1])
def test_port_use_follows_the_tables(monkeypatch: pytest.MonkeyPatch, compact: bool,
                                     buckets: int) -> None:
    monkeypatch.setattr(layer_mod, "COMPACT_TIME_WAIT", compact)
    p = _Pair(TcpPolicy(time_wait=1.0, syn_backlog=2, max_tw_buckets=buckets))
    lst = p.b.listen(80, backlog=64)
    rng = random.Random(5)
    conns = []
    for i in range(12):  # (syn_backlog 2: some handshakes open by SYN cookie)
        sport = 4000 + i % 3 if i % 2 else 0  # bound ports, reused; or ephemeral
        try:
            c = p.a.connect(CA, SA, 80, p.now, sport=sport)
        except OSError:
            continue
        conns.append(c)
        if i % 4 == 3:
            p.run()
    p.run()
    accepted = []
    while (s := lst.accept()) is not None:
        accepted.append(s)
    p.check()
    for c in conns:  # different closes: client first, server first, reset
        s = next((x for x in accepted if x.remote[1] == c.local[1]), None)
        how = rng.randrange(3)
        if how == 0 or s is None:
            c.close()
            p.a.flush(c, p.now)
        elif how == 1:
            s.close()
            p.b.flush(s, p.now)
        else:
            c.abort()
            p.a.flush(c, p.now)
        p.run()
        if s is not None:
            s.close()
            p.b.flush(s, p.now)
        c.close()
        p.a.flush(c, p.now)
        p.run()
    p.tick(0.5)
    for i in range(3):  # TIME-WAIT reuse by a bound connect (timestamps) and by a SYN
        try:
            p.a.connect(CA, SA, 80, p.now, sport=4000 + i)
        except OSError:
            continue
        p.run()
    p.tick(3.0)  # every TIME-WAIT over
    p.tick(3.0)
    p.check()
    assert _truth(p.a) == p.a.port_use
