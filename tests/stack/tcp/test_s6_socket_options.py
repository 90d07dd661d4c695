"""TCP layer pieces of the socket options (session 6): the IP header fields of a connection's
policy in its packets (IP_TTL/IP_TOS, IPV6_UNICAST_HOPS/IPV6_TCLASS; fast and general output),
SO_REUSEPORT listener groups, TCP_MAXSEG as the policy's ``mss``, ``struct tcp_info``.
Two StackCores joined in memory, frames read off the interfaces' queues, a fixed clock."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable

import pytest

from ioth.errors import ConfigError
from ioth.stack.core import StackCore
from ioth.stack.tcp import stackhook
from ioth.stack.tcp.connection import TcpConnection
from ioth.stack.tcp.info import TCP_INFO_SIZE, pack_tcp_info
from ioth.stack.tcp.policy import TcpPolicy
from ioth.stack.tcp.state import State

V6A = bytes.fromhex("fd" + "00" * 14 + "01")
V6B = bytes.fromhex("fd" + "00" * 14 + "02")


class _Pair:
    """Two cores on one virtual wire; every frame that crossed it is kept."""

    def __init__(self, v6: bool) -> None:
        self.cores = [StackCore(random.Random(i)) for i in (1, 2)]
        self.ifaces = []
        for i, core in enumerate(self.cores):
            iface = core.add_interface("vde0", bytes([2, 0, 0, 0, 0, i + 1]), 1500)
            core.set_up(iface.index, True, 0.0)
            core.add_addr4(iface.index, bytes([198, 18, 0, i + 1]), 24, 0.0)
            if v6:
                core.ip6.add_addr(iface.index, (V6A, V6B)[i], 64, 0.0)
            self.ifaces.append(iface)
        self.wire: list[tuple[int, bytes]] = []
        self.now = 1.0
        if v6:
            for _ in range(8):  # DAD
                self.now += 1.0
                for core in self.cores:
                    core.poll(self.now)
                self.pump()
        self.wire.clear()
        self.a, self.b = (V6A, V6B) if v6 else (bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2]))

    def pump(self) -> None:
        moved = True
        while moved:
            moved = False
            self.now += 0.001
            for me, other in ((0, 1), (1, 0)):
                q = self.ifaces[me].txq
                while q:
                    moved = True
                    frame = bytes(q.popleft())
                    self.wire.append((me, frame))
                    self.cores[other].input_frame(self.ifaces[other].index, frame, self.now)
            for core in self.cores:
                core.poll(self.now)


def _ip_fields(frame: bytes) -> tuple[int, int, int] | None:
    """(ethertype, TTL/hop limit, TOS/traffic class) of an IP frame carrying TCP."""
    etype = int.from_bytes(frame[12:14], "big")
    ip = frame[14:]
    if etype == 0x0800 and ip[9] == 6:
        return etype, ip[8], ip[1]
    if etype == 0x86DD and ip[6] == 6:
        word = int.from_bytes(ip[:4], "big")
        return etype, ip[7], (word >> 20) & 0xFF
    return None


@pytest.mark.parametrize("fast", [True, False], ids=["fast-output", "general-output"])
@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_policy_ip_header_fields_are_in_every_packet(
        v6: bool, fast: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stackhook, "FAST_OUTPUT", fast)
    p = _Pair(v6)
    client = TcpPolicy(ttl=33, tos=0x28, hop_limit=7, tclass=0x48, nodelay=True)
    server = TcpPolicy(nodelay=True)
    lst = p.cores[1].tcp.listen(80, policy=server)
    c = p.cores[0].tcp.connect(p.a, p.b, 80, p.now, policy=client)
    p.pump()
    s = lst.accept()
    assert s is not None and c.state is State.ESTABLISHED
    c.send(b"x" * 5000)
    p.cores[0].tcp.flush(c, p.now)
    p.pump()
    assert s.recv(10000) == b"x" * 5000
    s.send(b"y" * 100)
    p.cores[1].tcp.flush(s, p.now)
    p.pump()
    sent = [(who, f) for who, f in ((w, _ip_fields(fr)) for w, fr in p.wire) if f is not None]
    mine = [f for who, f in sent if who == 0]
    theirs = [f for who, f in sent if who == 1]
    assert len(mine) >= 5 and theirs  # SYN, ACK, data segments; SYN-ACK, ACKs, data
    want = (0x86DD, 7, 0x48) if v6 else (0x0800, 33, 0x28)
    assert set(mine) == {want}
    assert set(theirs) == {(0x86DD if v6 else 0x0800, 64, 0)}
    assert p.cores[0].tcp.tx_fast > 0 if fast else p.cores[0].tcp.tx_fast == 0


def test_connection_policy_change_remakes_the_header_template() -> None:
    p = _Pair(False)
    lst = p.cores[1].tcp.listen(80)
    c = p.cores[0].tcp.connect(p.a, p.b, 80, p.now, policy=TcpPolicy(nodelay=True))
    p.pump()
    assert lst.accept() is not None
    c.apply_policy(c.policy.replace(ttl=9))
    c.tx_route = None  # (what the socket layer does with it)
    p.wire.clear()
    c.send(b"z" * 10)
    p.cores[0].tcp.flush(c, p.now)
    p.pump()
    assert [f[1] for w, fr in p.wire if w == 0 and (f := _ip_fields(fr))] == [9]


def test_policy_ip_fields_are_checked() -> None:
    assert not TcpPolicy().ip_header
    assert TcpPolicy(tos=4).ip_header and TcpPolicy(hop_limit=0).ip_header
    for bad in ({"ttl": 0}, {"ttl": 256}, {"hop_limit": -2}, {"tos": 300}, {"tclass": -1},
                {"wmem_max": 0}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            TcpPolicy().replace(**bad)
    assert TcpPolicy.from_options({"ttl": "12"}).ttl == 12
    with pytest.raises(ConfigError, match="unknown tcp option"):
        TcpPolicy.from_options({"ip_header": "1"})


def _syn_to(p: _Pair, sport: int) -> None:
    """A SYN to port 80 of core 1 from ``sport`` of core 0 (through its TCP layer)."""
    p.cores[0].tcp.connect(p.a, p.b, 80, p.now, sport=sport)


def test_reuseport_listeners_share_a_port_by_4_tuple_hash() -> None:
    p = _Pair(False)
    layer = p.cores[1].tcp
    with pytest.raises(OSError, match="in use"):
        layer.listen(80)
        layer.listen(80, reuseport=True)  # (the first one has no SO_REUSEPORT)
    layer.close_listener(layer.listeners[(b"", 80)], p.now)
    one = layer.listen(80, reuseport=True)
    two = layer.listen(80, reuseport=True)
    assert one.group is two.group and one.group == [one, two]
    with pytest.raises(OSError):
        layer.listen(80)  # (without SO_REUSEPORT: in use)
    for sport in range(40000, 40032):
        _syn_to(p, sport)
    p.pump()
    got = [len(one.accept_queue), len(two.accept_queue)]
    assert sum(got) == 32 and min(got) > 0
    # the same 4-tuple always goes to the same listener
    pick: Callable[..., object] = layer._reuseport_pick
    assert all(pick(one.group, p.a, sp, p.b, 80) is pick(one.group, p.a, sp, p.b, 80)
               for sp in range(1000, 1010))
    layer.close_listener(one, p.now)  # its queue is reset, the other goes on alone
    assert two.group is None and layer.listeners[(b"", 80)] is two
    _syn_to(p, 41000)
    p.pump()
    assert len(two.accept_queue) == got[1] + 1


def test_maxseg_policy_clamps_advertised_and_used_mss() -> None:
    p = _Pair(False)
    lst = p.cores[1].tcp.listen(80)
    c = p.cores[0].tcp.connect(p.a, p.b, 80, p.now, policy=TcpPolicy(mss=1000))
    p.pump()
    s = lst.accept()
    assert s is not None
    assert c.mss == s.mss == 1000 - 12  # (timestamps on both ends)


def test_tcp_info_layout() -> None:
    p = _Pair(False)
    lst = p.cores[1].tcp.listen(80)
    c = p.cores[0].tcp.connect(p.a, p.b, 80, p.now)
    p.pump()
    s = lst.accept()
    assert isinstance(s, TcpConnection)
    c.send(b"q" * 3000)
    p.cores[0].tcp.flush(c, p.now)
    p.pump()
    for _ in range(5):  # (the delayed ACK)
        p.now += 0.02
        p.pump()
    info = pack_tcp_info(c)
    assert len(info) == TCP_INFO_SIZE == 280
    state, ca, _r, _p, _b, opts, wscale = struct.unpack_from("7B", info)
    assert (state, ca, opts) == (1, 0, 7)
    assert wscale == (c.snd_wscale | c.rcv_wscale << 4)
    rto, _ato, snd_mss, rcv_mss, unacked = struct.unpack_from("5I", info, 8)
    assert (snd_mss, unacked) == (c.mss, 0) and rto == int(c.rto * 1e6)
    assert rcv_mss == c.rcv_mss
    rtt, _rttvar, ssthresh, cwnd, advmss = struct.unpack_from("5I", info, 8 + 4 * 15)
    assert rtt == int(c.srtt * 1e6) and ssthresh == 0x7FFFFFFF
    assert cwnd == c.cc.cwnd // c.mss and advmss == c.mss_local
    assert struct.unpack_from("2Q", info, 120) == (3000, 0)  # bytes acked, received
    assert struct.unpack_from("2Q", pack_tcp_info(s), 120) == (0, 3000)
    segs_out, segs_in = struct.unpack_from("2I", info, 136)
    assert (segs_out, segs_in) == (c.segments_out, c.segments_in)
    closed = pack_tcp_info(None)
    assert closed[0] == 7 and struct.unpack_from("I", closed, 8)[0] == 1_000_000
    listening = pack_tcp_info(None, 10, (3, 128))
    assert listening[0] == 10 and struct.unpack_from("2I", listening, 24) == (3, 128)


@pytest.mark.parametrize("user_timeout", [0.0, 1.0])
def test_user_timeout_ends_unacknowledged_data(user_timeout: float) -> None:
    """TCP_USER_TIMEOUT (policy ``user_timeout``): the peer falls silent after the
    handshake; data sent then is retransmitted until ``user_timeout`` after it went out,
    then ETIMEDOUT (the RTO is cut to fire then); without it the retries go on."""
    import errno

    p = _Pair(False)
    lst = p.cores[1].tcp.listen(80)
    c = p.cores[0].tcp.connect(p.a, p.b, 80, p.now,
                               policy=TcpPolicy(user_timeout=user_timeout))
    p.pump()
    assert lst.accept() is not None
    sent_at = p.now
    c.send(b"d" * 100)
    p.cores[0].tcp.flush(c, p.now)
    p.ifaces[0].txq.clear()  # (the peer is gone: nothing reaches it, nothing comes back)
    ended = None
    while p.now < sent_at + 5 and ended is None:
        p.now += 0.01
        p.cores[0].poll(p.now)
        p.ifaces[0].txq.clear()
        if c.error is not None or c.state is State.CLOSED:
            ended = p.now - sent_at
    if user_timeout:
        assert ended is not None and user_timeout <= ended < user_timeout + 0.05
        assert c.error == errno.ETIMEDOUT and c.state is State.CLOSED
    else:
        assert ended is None and c.rto_expirations >= 3
