"""A connect from an explicitly given local port takes over our own TIME-WAIT of the same
4-tuple when it had timestamps (Linux ``tcp_twsk_unique`` for a bound port: PAWS protects the
new incarnation), with its ISS above the old sequence space; without timestamps the
4-tuple stays busy (EADDRINUSE) until TIME-WAIT ends, and an ephemeral connect never picks it.
Both the compact TIME-WAIT entry and a full TCB in TIME-WAIT."""

from __future__ import annotations

import errno

import pytest

from ioth.stack.tcp import layer as layer_mod
from ioth.stack.tcp.connection import State, TcpConnection
from ioth.stack.tcp.layer import TcpLayer
from ioth.stack.tcp.policy import TcpPolicy
from ioth.stack.tcp.segment import decode
from tests.stack.harness import ip
from tests.stack.tcp.layerpair import LayerPair

CA, SA = ip("198.18.0.1"), ip("198.18.0.2")


class _Pair(LayerPair):
    def __init__(self, policy: TcpPolicy) -> None:
        super().__init__(policy)
        self.syns: list[int] = []

    def seen(self, src: TcpLayer, data: bytes) -> None:
        _, _, seg = decode(data)
        if src is self.a and seg.flags == 0x02:
            self.syns.append(seg.seq)

    def exchange(self, listener: object, sport: int) -> tuple[TcpConnection, TcpConnection]:
        c = self.a.connect(CA, SA, 80, self.now, sport=sport)
        self.run()
        s = listener.accept()  # type: ignore[attr-defined]
        assert s is not None and c.state is State.ESTABLISHED
        c.send(b"ping")
        self.a.flush(c, self.now)
        self.run()
        assert s.recv(10) == b"ping"
        return c, s

    def client_closes_first(self, c: TcpConnection, s: TcpConnection) -> None:
        c.close()
        self.a.flush(c, self.now)
        self.run()
        s.close()
        self.b.flush(s, self.now)
        self.run()


@pytest.mark.parametrize("compact", [True, False])
def test_bound_connect_takes_our_time_wait_with_timestamps(
        monkeypatch: pytest.MonkeyPatch, compact: bool) -> None:
    monkeypatch.setattr(layer_mod, "COMPACT_TIME_WAIT", compact)
    p = _Pair(TcpPolicy(time_wait=60.0))
    listener = p.b.listen(80)
    c, s = p.exchange(listener, 40000)
    p.client_closes_first(c, s)
    key = (CA, 40000, SA, 80)
    if compact:
        assert key in p.a.time_wait
        old_nxt = p.a.time_wait[key].snd_nxt
    else:
        assert p.a.connections[key].state is State.TIME_WAIT
        old_nxt = c.snd_nxt & 0xFFFFFFFF
    c2, s2 = p.exchange(listener, 40000)  # raised EADDRINUSE before
    assert p.a.tw_reused == 1
    assert key not in p.a.time_wait and p.a.connections[key] is c2
    assert p.syns[-1] == (old_nxt + 65537) & 0xFFFFFFFF  # above the old sequence space
    assert c.state is State.CLOSED
    s2.send(b"pong")
    p.b.flush(s2, p.now)
    p.run()
    assert c2.recv(10) == b"pong"


def test_without_timestamps_the_time_wait_keeps_its_port() -> None:
    p = _Pair(TcpPolicy(time_wait=60.0, timestamps=False))
    listener = p.b.listen(80)
    c, s = p.exchange(listener, 40000)
    p.client_closes_first(c, s)
    with pytest.raises(OSError) as exc:
        p.a.connect(CA, SA, 80, p.now, sport=40000)
    assert exc.value.errno == errno.EADDRINUSE
    assert p.a.tw_reused == 0
    p.now += 61.0  # TIME-WAIT over: free again
    c2, _ = p.exchange(listener, 40000)
    assert c2.state is State.ESTABLISHED


def test_an_ephemeral_connect_never_picks_a_time_wait_port(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    monkeypatch.setattr(layer_mod, "EPHEMERAL_LOW", 40000)
    monkeypatch.setattr(layer_mod, "EPHEMERAL_HIGH", 40001)
    p = _Pair(TcpPolicy(time_wait=60.0))
    listener = p.b.listen(80)
    c, s = p.exchange(listener, 40000)
    p.client_closes_first(c, s)
    c2 = p.a.connect(CA, SA, 80, p.now)
    assert c2.local[1] == 40001 and p.a.tw_reused == 0
