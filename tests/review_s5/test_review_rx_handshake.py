"""Adversarial review (session 5): the fused receive path's handshake short cut
(``ioth.stack.core.RX_HANDSHAKE``) against the layered path, on random handshake frames.

Two stack cores with the same seed hold the same tables: listeners (a specific address, the
wildcard, one whose accept queue is full, one with a one-entry SYN queue so that cookies
start), a connection in SYN-SENT, a 4-tuple in TIME-WAIT.  Hypothesis draws SYN-like frames
with Linux's SYN option layout (the shape the short cut takes) but any flags around SYN (ACK,
ECE, CWR, PSH, URG, FIN, RST), MSS (0 included), window scale (above 14 included), sequence
and acknowledgment numbers (right and wrong), ports (listened, not listened, the SYN-SENT and
TIME-WAIT 4-tuples), a payload or none, a bad checksum.  Both cores must send the same frames
and end with the same connections, TIME-WAIT entries, listener queues and counters; and the
short cut must really be taken for some frames (else the comparison proves nothing).
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ioth.stack import core as core_mod
from ioth.stack.tcp.connection import State
from ioth.wire import tcp as wire_tcp
from tests.support.twostacks import (
    ACK,
    CWR,
    ECE,
    FIN,
    MAC_A,
    MAC_B,
    MASK,
    PSH,
    RST,
    SYN,
    URG,
    CoreRig,
    eth,
    ip4_packet,
    ip6_packet,
)

SYN_SENT_PORT = 40001  # our port of the connection in SYN-SENT (to the peer's port 9000)
TW_PORT = 40002  # our port of the TIME-WAIT 4-tuple (with the peer's port 9001)


def syn_options(mss: int, tsval: int, tsecr: int, ws: int) -> bytes:
    """Linux's SYN options: MSS, SACK-permitted, Timestamps, NOP, window scale (20 bytes)."""
    return struct.pack("!BBHBBBBIIBBBB", 2, 4, mss, 4, 2, 8, 10, tsval, tsecr, 1, 3, 3, ws)


class Rig(CoreRig):
    """A :class:`CoreRig` (seed 5) holding the tables above; ``short_cut`` is the value its
    :meth:`feed` gives the ``knobs`` of :mod:`ioth.stack.core` for each frame."""

    def __init__(self, v6: bool, short_cut: bool,
                 knobs: tuple[str, ...] = ("RX_HANDSHAKE",)) -> None:
        self.short_cut = short_cut
        self.knobs = knobs
        super().__init__(v6, 5)
        core = self.core
        tcp = core.tcp
        from ioth.stack.tcp.policy import TcpPolicy
        self.l80 = tcp.listen(80, addr=self.a)
        self.l81 = tcp.listen(81)
        self.l82 = tcp.listen(82, backlog=1)
        self.l84 = tcp.listen(84, policy=TcpPolicy(syn_backlog=1))
        # fill port 82's accept queue: one handshake from the peer
        self.feed(self.frame(7000, 0, SYN, 82, 50000, syn_options(1460, 1, 0, 7)))
        iss = self._their_iss()
        self.feed(self.frame(7001, iss + 1, ACK, 82, 50000, wire_tcp.ts_option(2, 0)))
        assert len(self.l82.accept_queue) == 1
        # a connection of ours in SYN-SENT
        self.client = tcp.connect(self.a, self.b, 9000, self.now, sport=SYN_SENT_PORT)
        self.client_iss = self.client.iss
        # a TIME-WAIT 4-tuple: we connect, the peer accepts, we close first
        c = tcp.connect(self.a, self.b, 9001, self.now, sport=TW_PORT)
        self.feed(self.frame(9100, (c.iss + 1) & MASK, SYN | ACK, TW_PORT, 9001,
                             syn_options(1460, 10, 0, 7)))
        assert c.state is State.ESTABLISHED, c.state
        c.close()
        tcp.flush(c, self.now)
        self.feed(self.frame(9101, (c.iss + 2) & MASK, FIN | ACK, TW_PORT, 9001,
                             wire_tcp.ts_option(11, 0)))
        self.advance(0.5)
        assert c.state in (State.TIME_WAIT, State.CLOSED)
        assert len(tcp.time_wait) == 1
        self.iface.txq.clear()

    def _their_iss(self) -> int:
        frame = bytes(self.iface.txq[-1])
        off = 54 if self.v6 else 34
        return int.from_bytes(frame[off + 4:off + 8], "big")

    def feed(self, frame: bytes) -> None:
        saved = [(name, getattr(core_mod, name)) for name in self.knobs]
        for name in self.knobs:
            setattr(core_mod, name, int(self.short_cut))
        try:
            self.core.input_frame(self.iface.index, frame, self.now)
        finally:
            for name, value in saved:
                setattr(core_mod, name, value)

    def frame(self, seq: int, ack: int, flags: int, dport: int, sport: int, opts: bytes,
              payload: bytes = b"", window: int = 64240, corrupt: bool = False) -> bytes:
        hdr = wire_tcp.emit_fast(sport, dport, seq & MASK, ack & MASK, flags, window, payload,
                                 self.b, self.a, opts)
        seg = bytearray(hdr + payload)
        if corrupt:
            seg[len(seg) - 1] ^= 0x5A
        if self.v6:
            return eth(MAC_A, MAC_B, 0x86DD, ip6_packet(self.b, self.a, 6, bytes(seg)))
        return eth(MAC_A, MAC_B, 0x0800, ip4_packet(self.b, self.a, 6, bytes(seg)))

    def snapshot(self) -> tuple[object, ...]:
        core = self.core
        tcp = core.tcp
        conns = []
        for key, c in sorted(tcp.connections.items(), key=lambda kv: kv[0]):
            conns.append((key, c.state, c.iss, c.irs, c.snd_una, c.snd_nxt, c.rcv_nxt,
                          c.snd_wnd, c.mss, c.ts_ok, c.ts_recent, c.sack_ok,
                          getattr(c, "snd_wscale", None), getattr(c, "rcv_wscale", None),
                          c.segments_in, c.segments_out, c.error, c.poll_at()))
        tws = sorted((k, tw.snd_nxt, tw.rcv_nxt, tw.expiry) for k, tw in tcp.time_wait.items())
        ls = [(len(x.accept_queue), len(x.syn_queue), x.syn_dropped, x.ack_dropped,
               x.cookies_sent, x.cookies_accepted, x.cookies_rejected)
              for x in (self.l80, self.l81, self.l82, self.l84)]
        return (conns, tws, ls, sorted(core.counters.items()), tcp.rx_segments, tcp.rx_errors,
                tcp.rx_no_socket, tcp.resets_sent, tcp.tw_reused, tcp.listing(),
                core.next_deadline(), self.iface.rx_frames, self.iface.tx_frames)


@dataclass
class Shot:
    flags: int
    dport: str
    sport: int
    seq: str
    ack: str
    mss: int
    ws: int
    tsval: int
    tsecr: int
    payload: int
    window: int
    corrupt: bool
    dt: float


FLAGS = [SYN, SYN, SYN | ACK, SYN | ACK, SYN | ECE | CWR, SYN | ACK | ECE, SYN | PSH,
         SYN | URG, SYN | FIN, SYN | RST, SYN | ACK | PSH, SYN | CWR]
shots = st.builds(
    Shot,
    flags=st.sampled_from(FLAGS),
    dport=st.sampled_from(["80", "81", "82", "83", "84", "synsent", "tw"]),
    sport=st.sampled_from([50001, 50002, 50003, 9000, 9001]),
    seq=st.sampled_from(["random", "fixed", "tw_newer", "tw_older"]),
    ack=st.sampled_from(["right", "wrong", "zero", "random"]),
    mss=st.sampled_from([0, 1, 88, 536, 1460, 65535]),
    ws=st.sampled_from([0, 7, 14, 15, 255]),
    tsval=st.sampled_from([0, 5, 100, 1 << 31, MASK]),
    tsecr=st.sampled_from([0, 1, 12345]),
    payload=st.sampled_from([0, 0, 0, 10]),
    window=st.sampled_from([0, 1024, 65535]),
    corrupt=st.booleans(),
    dt=st.sampled_from([0.0, 0.0, 0.01, 0.3, 1.5]),
)


def _build(r: Rig, s: Shot, rnd: random.Random) -> bytes:
    if s.dport == "synsent":
        dport, sport = SYN_SENT_PORT, 9000
    elif s.dport == "tw":
        dport, sport = TW_PORT, 9001
    else:
        dport, sport = int(s.dport), s.sport
    seq = {"random": rnd.getrandbits(32), "fixed": 123456, "tw_newer": 9102 + 100000,
           "tw_older": 9000}[s.seq]
    ack = {"right": r.client_iss + 1, "wrong": r.client_iss + 7, "zero": 0,
           "random": rnd.getrandbits(32)}[s.ack]
    return r.frame(seq, ack, s.flags, dport, sport, syn_options(s.mss, s.tsval, s.tsecr, s.ws),
                   bytes(s.payload), s.window, s.corrupt)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(v6=st.booleans(), seed=st.integers(0, 1000), steps=st.lists(shots, min_size=1,
                                                                   max_size=12))
def test_handshake_short_cut_agrees_with_the_layered_path(v6: bool, seed: int,
                                                          steps: list[Shot]) -> None:
    fast, slow = Rig(v6, True), Rig(v6, False)
    assert fast.snapshot() == slow.snapshot()
    rnd_f, rnd_s = random.Random(seed), random.Random(seed)
    for s in steps:
        ff, fs = _build(fast, s, rnd_f), _build(slow, s, rnd_s)
        assert ff == fs
        fast.feed(ff)
        slow.feed(fs)
        if s.dt:
            fast.advance(s.dt)
            slow.advance(s.dt)
        assert fast.sent() == slow.sent(), s
        assert fast.snapshot() == slow.snapshot(), s


def test_the_short_cut_is_taken() -> None:
    """A plain SYN to a listener and the SYN-ACK of our SYN-SENT take the short cut (they
    never reach ``TcpLayer.input``), so the comparison above compares something."""
    for v6 in (False, True):
        for short_cut in (True, False):
            r = Rig(v6, short_cut)
            calls: list[object] = []
            layered = r.core.tcp.input

            def spy(*args: object, layered: object = layered, calls: list[object] = calls
                    ) -> None:
                calls.append(args)
                layered(*args)  # type: ignore[operator]

            r.core.tcp.input = spy  # type: ignore[method-assign]
            r.feed(r.frame(1, 0, SYN, 81, 50001, syn_options(1460, 5, 0, 7)))
            r.feed(r.frame(2, r.client_iss + 1, SYN | ACK, SYN_SENT_PORT, 9000,
                           syn_options(1460, 5, 0, 7)))
            assert r.client.state is State.ESTABLISHED
            assert len(r.l81.syn_queue) == 1
            assert len(calls) == (0 if short_cut else 2), (v6, short_cut, len(calls))


@pytest.mark.parametrize("v6", [False, True])
def test_a_syn_to_a_listener_with_a_full_accept_queue_is_dropped_either_way(v6: bool) -> None:
    for short_cut in (True, False):
        r = Rig(v6, short_cut)
        r.feed(r.frame(1, 0, SYN, 82, 50009, syn_options(1460, 5, 0, 7)))
        assert r.sent() == []
        assert r.l82.syn_dropped == 1


@dataclass
class HsAck:
    """A SYN from the peer (port ``sport``) to listener ``dport``, then the third segment."""

    dport: int
    sport: int
    flags: int
    seq: int  # offset from the right SEQ (the SYN's + 1)
    ack: str
    ts: str
    payload: int
    window: int
    dt: float


hs_acks = st.builds(
    HsAck,
    dport=st.sampled_from([81, 81, 82, 84]),
    sport=st.sampled_from([50001, 50002, 50003]),
    flags=st.sampled_from([ACK, ACK, ACK | PSH, ACK | FIN, ACK | FIN | PSH, ACK | RST, ACK | ECE,
                           ACK | URG, 0]),
    seq=st.sampled_from([0, 0, 0, 1, -1, 70000]),
    ack=st.sampled_from(["right", "right", "plus1", "minus1", "zero"]),
    ts=st.sampled_from(["next", "next", "old", "none", "zero_ecr"]),
    payload=st.sampled_from([0, 0, 0, 5]),
    window=st.sampled_from([0, 1, 502, 65535]),
    dt=st.sampled_from([0.0, 0.0, 0.2, 1.2, 3.5]),
)


def _synack_iss(frames: list[bytes], v6: bool, port: int) -> int | None:
    """The ISS of the SYN-ACK sent from our ``port`` among ``frames``."""
    off = 54 if v6 else 34
    for f in frames:
        if len(f) >= off + 20 and int.from_bytes(f[off:off + 2], "big") == port \
                and f[off + 13] & 0x12 == 0x12:
            return int.from_bytes(f[off + 4:off + 8], "big")
    return None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(v6=st.booleans(), steps=st.lists(hs_acks, min_size=1, max_size=10))
def test_handshake_acks_agree_with_the_layered_path(v6: bool, steps: list[HsAck]) -> None:
    """RX_HANDSHAKE and RX_PLAIN (71ec4ad: rx_plain takes the handshake's ACK in
    SYN-RECEIVED) on, against both off: a SYN from the peer, then a random third segment
    (right/wrong SEQ and ACK, FIN, PSH, RST, URG, ECE, no ACK, old or no timestamps, data, a
    zero window), for a listener with room, one whose accept queue is full and one whose SYN
    queue holds one (cookies); delays let the SYN-ACK be retransmitted."""
    knobs = ("RX_HANDSHAKE", "RX_PLAIN")
    fast, slow = Rig(v6, True, knobs), Rig(v6, False, knobs)
    ts = 100
    for s in steps:
        ts += 1
        syn_seq = 1000 * s.sport
        syn = [r.frame(syn_seq, 0, SYN, s.dport, s.sport, syn_options(1460, ts, 0, 7))
               for r in (fast, slow)]
        fast.feed(syn[0])
        slow.feed(syn[1])
        out_f, out_s = fast.sent(), slow.sent()
        assert out_f == out_s, s
        iss = _synack_iss(out_f, v6, s.dport)
        if iss is None:  # (dropped: full accept queue; or a SYN for a half-open 4-tuple)
            iss = 0
        ack = {"right": iss + 1, "plus1": iss + 2, "minus1": iss, "zero": 0}[s.ack]
        tsval = ts + 1 if s.ts != "old" else ts - 5
        opts = b"" if s.ts == "none" else wire_tcp.ts_option(
            tsval & MASK, 0 if s.ts == "zero_ecr" else 1)
        third = [r.frame(syn_seq + 1 + s.seq, ack, s.flags, s.dport, s.sport, opts,
                         bytes(s.payload), s.window) for r in (fast, slow)]
        fast.feed(third[0])
        slow.feed(third[1])
        if s.dt:
            fast.advance(s.dt)
            slow.advance(s.dt)
        assert fast.sent() == slow.sent(), s
        assert fast.snapshot() == slow.snapshot(), s
