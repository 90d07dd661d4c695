"""The fused TCP receive path of StackCore (``_rx_fast``) against the layered path.

Two identical stack cores (same seed, same interface, same connection) receive the same
frames; one tries the fused path first, the other has it turned off.  After every frame the
two must agree on everything observable: frames sent (ACKs, data, RSTs, byte for byte), bytes
delivered to the application, the TCB, counters and ``tcp`` introspection.  Hypothesis draws
the frame sequences: in-order data, out-of-order, duplicates, corrupt checksums, segments with
options (SACK, unaligned timestamps, none), old timestamps, FIN/RST/URG/SYN, window changes,
IPv4 options, fragments, VLAN tags, multicast and foreign MACs, truncation and padding, over
IPv4 and IPv6, with and without a batch, with trusted and untrusted checksums.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ioth.stack.core import StackCore
from ioth.stack.tcp.connection import State, TcpConnection
from ioth.wire import tcp as wire_tcp
from ioth.wire.checksum import checksum

MASK = 0xFFFFFFFF
MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")
A4, B4 = bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2])
A6 = bytes.fromhex("20010db8000000000000000000000001")
B6 = bytes.fromhex("20010db8000000000000000000000002")
PORT_A, PORT_B = 80, 40000
ACK, PSH, FIN, SYN, RST, URG = 0x10, 0x08, 0x01, 0x02, 0x04, 0x20


def ip4_packet(src: bytes, dst: bytes, proto: int, payload: bytes, *, options: bytes = b"",
               ident: int = 1, frag: int = 0x4000) -> bytes:
    ihl = 20 + len(options)
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x40 | (ihl >> 2), 0, ihl + len(payload), ident,
                                frag, 64, proto, 0, src, dst) + options)
    struct.pack_into("!H", hdr, 10, checksum(hdr))
    return bytes(hdr) + payload


def ip6_packet(src: bytes, dst: bytes, nh: int, payload: bytes) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), nh, 64, src, dst) + payload


def eth(dst: bytes, src: bytes, etype: int, payload: bytes, vlan: int | None = None) -> bytes:
    if vlan is not None:
        return dst + src + struct.pack("!HH", 0x8100, vlan) + etype.to_bytes(2, "big") + payload
    return dst + src + etype.to_bytes(2, "big") + payload


class Rig:
    """One stack core with an established connection from a scripted peer (B) to it (A)."""

    def __init__(self, v6: bool, fast: bool, trusted: bool, seed: int) -> None:
        self.v6 = v6
        self.core = core = StackCore(random.Random(seed))
        core.rx_fastpath = fast
        self.iface = iface = core.add_interface("vde0", MAC_A, 1500)
        iface.rx_csum_trusted = trusted
        core.set_up(iface.index, True, 0.0)
        self.now = 0.0
        if v6:
            core.ip6.add_addr(iface.index, A6, 64, 0.0)
            core.ip6.ndp.cache.add_static(iface.index, B6, MAC_B, 0.0)
            for _ in range(6):
                self.advance(1.0)  # DAD
            self.a, self.b = A6, B6
        else:
            core.add_addr4(iface.index, A4, 24, 0.0)
            core.arp.cache.add_static(iface.index, B4, MAC_B, 0.0)
            self.a, self.b = A4, B4
        iface.txq.clear()
        listener = core.tcp.listen(PORT_A)
        self.peer_ts = 1000
        self.snd = 5000  # the peer's next sequence number
        syn_opts = wire_tcp.TcpHeader(0, 0, 0, 0, 0, 0, mss=1460, wscale=7, sack_permitted=True,
                                      timestamps=(self.peer_ts, 0)).options_bytes()
        self.feed(self.frame(self.snd, 0, SYN, 65535, b"", syn_opts))
        synack = self.sent()[-1]
        off = 54 if v6 else 34
        self.iss = int.from_bytes(synack[off + 4:off + 8], "big")
        self.snd = (self.snd + 1) & MASK
        self.peer_ts += 1
        self.feed(self.frame(self.snd, (self.iss + 1) & MASK, ACK, 512, b"",
                             wire_tcp.ts_option(self.peer_ts, 0)))
        conn = listener.accept()
        assert conn is not None and conn.state is State.ESTABLISHED
        self.conn: TcpConnection = conn
        self.delivered = bytearray()

    def advance(self, dt: float) -> None:
        self.now += dt
        self.core.poll(self.now)

    def sent(self) -> list[bytes]:
        q = self.iface.txq
        out = [bytes(f) for f in q]
        q.clear()
        return out

    def feed(self, frame: bytes) -> None:
        self.core.input_frame(self.iface.index, frame, self.now)

    def drain_app(self) -> None:
        while True:
            try:
                chunk = self.conn.recv(1 << 20)
            except (BlockingIOError, OSError):
                return
            if not chunk:
                return
            self.delivered += chunk

    def a_tsval(self) -> int:
        return (int(self.now * 1000) + self.conn._ts_offset) & MASK

    def frame(self, seq: int, ack: int, flags: int, window: int, payload: bytes,
              opts: bytes = b"", *, corrupt: int = 0, ip_options: bytes = b"",
              fragment: bool = False, vlan: int | None = None, dst_mac: bytes = MAC_A,
              truncate: int = 0, pad: int = 0, bad_ip_csum: bool = False) -> bytes:
        """Frames from the peer; ``fragment`` returns both IPv4 fragments joined by a
        separator the caller splits on (see :func:`frames_of`)."""
        hdr = wire_tcp.emit_fast(PORT_B, PORT_A, seq, ack, flags, window, payload, self.b,
                                 self.a, opts)
        seg = bytearray(hdr + payload)
        if corrupt:
            seg[corrupt % len(seg)] ^= 0x5A
        if self.v6:
            out = eth(dst_mac, MAC_B, 0x86DD, ip6_packet(self.b, self.a, 6, bytes(seg)), vlan)
        elif fragment:
            cut = max(8, (len(seg) // 2) & ~7)
            f1 = ip4_packet(self.b, self.a, 6, bytes(seg[:cut]), frag=0x2000, ident=7)
            f2 = ip4_packet(self.b, self.a, 6, bytes(seg[cut:]), frag=cut >> 3, ident=7)
            return eth(dst_mac, MAC_B, 0x0800, f1, vlan) + SPLIT + eth(dst_mac, MAC_B, 0x0800,
                                                                        f2, vlan)
        else:
            pkt = bytearray(ip4_packet(self.b, self.a, 6, bytes(seg), options=ip_options))
            if bad_ip_csum:
                pkt[10] ^= 0x01
            out = eth(dst_mac, MAC_B, 0x0800, bytes(pkt), vlan)
        if truncate:
            out = out[:max(0, len(out) - truncate)]
        return out + bytes(pad)


SPLIT = b"--fragment-split--"


def frames_of(blob: bytes) -> list[bytes]:
    return blob.split(SPLIT)


@dataclass
class Op:
    """One drawn input step (interpreted against the live state of the rig)."""

    kind: str
    size: int
    ack_delta: int
    window: int
    ts_kind: str
    extra: int
    flags: int
    batch: bool
    dt: float
    app_send: int


KINDS = ["inorder"] * 85 + ["pure_ack"] * 15 + [
    "ooo", "dup", "partial_dup", "corrupt", "bad_ip", "sack", "ts_unaligned", "no_ts", "fin",
    "rst", "urg", "syn", "ipopt", "frag", "vlan", "prio_tag", "mcast", "other_host",
    "truncate", "runt", "pad", "future", "beyond_window", "ece"]

ops = st.builds(
    Op,
    kind=st.sampled_from(KINDS),
    size=st.sampled_from([0, 1, 100, 536, 1000, 1448]),
    ack_delta=st.integers(-3000, 20000),
    window=st.sampled_from([0, 1, 16, 512, 4096, 65535]),
    ts_kind=st.sampled_from(["next"] * 6 + ["same", "old", "zero_ecr"]),
    extra=st.integers(1, 5000),
    flags=st.sampled_from([0, PSH]),
    batch=st.booleans(),
    dt=st.sampled_from([0.0, 0.0, 0.001, 0.05, 0.3]),
    app_send=st.sampled_from([0, 0, 1000, 20000]),
)


def build(r: Rig, op: Op) -> list[bytes]:
    """Frames for ``op`` from the state of ``r`` (the fast rig; both rigs agree so far)."""
    c = r.conn
    rcv = c.rcv_nxt & MASK
    una, nxt = c.snd_una, c.snd_nxt
    if op.ack_delta >= 0:
        ack = (una + min(op.ack_delta, nxt - una)) & MASK
    else:
        ack = (una + op.ack_delta) & MASK
    if op.ts_kind == "next":
        r.peer_ts += 1
    ts = r.peer_ts - (50 if op.ts_kind == "old" else 0)
    ecr = 0 if op.ts_kind == "zero_ecr" else r.a_tsval()
    opts = wire_tcp.ts_option(ts & MASK, ecr)
    if not c.ts_ok:
        opts = b""
    payload = bytes((i * 7 + op.extra) & 0xFF for i in range(op.size))
    flags = ACK | op.flags
    seq = rcv
    kw: dict[str, object] = {}
    k = op.kind
    if k == "pure_ack":
        payload = b""
    elif k == "ooo":
        seq = (rcv + op.extra) & MASK
    elif k == "dup":
        seq = (rcv - max(1, len(payload))) & MASK
    elif k == "partial_dup":
        seq = (rcv - op.extra % 700) & MASK
    elif k == "corrupt":
        kw["corrupt"] = op.extra
    elif k == "bad_ip":
        kw["bad_ip_csum"] = True
    elif k == "sack":
        block = ((rcv + 2000) & MASK, (rcv + 3000) & MASK)
        opts = wire_tcp.TcpHeader(0, 0, 0, 0, 0, 0, timestamps=(ts & MASK, ecr),
                                  sack_blocks=(block,)).options_bytes()
    elif k == "ts_unaligned":
        opts = b"\x08\x0a" + struct.pack("!II", ts & MASK, ecr) + b"\x01\x00"
    elif k == "no_ts":
        opts = b""
    elif k == "fin":
        flags |= FIN
    elif k == "rst":
        flags = RST | ACK
        payload = b""
    elif k == "urg":
        flags |= URG
    elif k == "syn":
        flags = SYN
        payload = b""
    elif k == "ece":
        flags |= 0xC0
    elif k == "ipopt":
        kw["ip_options"] = b"\x01\x01\x01\x00"  # NOP NOP NOP EOL
    elif k == "frag":
        kw["fragment"] = True
    elif k == "vlan":
        kw["vlan"] = 5
    elif k == "prio_tag":
        kw["vlan"] = 0
    elif k == "mcast":
        kw["dst_mac"] = bytes.fromhex("01005e000001")
    elif k == "other_host":
        kw["dst_mac"] = bytes.fromhex("020000000099")
    elif k == "truncate":
        kw["truncate"] = 1 + op.extra % 40
    elif k == "runt":
        kw["truncate"] = 1400 + op.extra  # down to a few bytes, or nothing
    elif k == "pad":
        kw["pad"] = 1 + op.extra % 30
    elif k == "future":
        ack = (nxt + op.extra) & MASK
    elif k == "beyond_window":
        seq = (rcv + (c._rcv_adv - c.rcv_nxt) - 10) & MASK
    if r.v6 and k in ("ipopt", "frag", "bad_ip"):
        kw.pop("ip_options", None)
        kw.pop("fragment", None)
        kw.pop("bad_ip_csum", None)
    blob = r.frame(seq, ack, flags, op.window, payload, opts, **kw)  # type: ignore[arg-type]
    return frames_of(blob)


def snapshot(r: Rig) -> tuple[object, ...]:
    c = r.conn
    core = r.core
    return (
        c.state, c.rcv_nxt, c._rcv_adv, c.snd_una, c.snd_nxt, c.snd_wnd, c.max_snd_wnd,
        c.snd_wl1, c.snd_wl2, c.ts_recent, c._last_ack_sent, c.segments_in, c.segments_out,
        c.dropped, c._rlen, c.srtt, c.rttvar, c.rto, c.cc.cwnd, c.cc.ssthresh, c._dupacks,
        c._unacked_rx, c._ack_now, c._ack_at, c._ooo, c._ooo_fin, c.poll_at(),
        c.challenge_acks, c.error, str(c.info()), bytes(r.delivered),
        sorted(core.counters.items()), r.iface.rx_frames, r.iface.tx_frames,
        core.tcp.rx_segments, core.tcp.rx_errors, core.tcp.rx_no_socket, core.tcp.listing(),
        core.next_deadline(),
    )


def run_pair(v6: bool, trusted: bool, seed: int, steps: list[Op]) -> tuple[Rig, Rig]:
    fast = Rig(v6, True, trusted, seed)
    slow = Rig(v6, False, trusted, seed)
    assert fast.sent() == slow.sent()
    assert snapshot(fast) == snapshot(slow)
    for op in steps:
        if op.app_send:
            for r in (fast, slow):
                try:
                    r.conn.send(bytes(op.app_send))
                    r.core.tcp.flush(r.conn, r.now)
                except OSError:
                    pass
        frames = build(fast, op)
        for r in (fast, slow):
            if op.batch:
                r.core.begin_batch()
            for f in frames:
                r.feed(f)
            if op.batch:
                r.core.end_batch(r.now)
            r.drain_app()
            if op.dt:
                r.advance(op.dt)
        assert fast.sent() == slow.sent(), op
        assert snapshot(fast) == snapshot(slow), op
    assert slow.core.rx_fast_frames == 0
    return fast, slow


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(v6=st.booleans(), trusted=st.booleans(), seed=st.integers(0, 2**32),
       steps=st.lists(ops, min_size=1, max_size=40))
def test_fast_and_layered_paths_agree(v6: bool, trusted: bool, seed: int,
                                      steps: list[Op]) -> None:
    run_pair(v6, trusted, seed, steps)


def _op(kind: str, size: int = 1448, **kw: object) -> Op:
    base: dict[str, object] = dict(kind=kind, size=size, ack_delta=0, window=4096,
                                   ts_kind="next", extra=17, flags=0, batch=False, dt=0.0,
                                   app_send=0)
    base.update(kw)
    return Op(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize("batch", [False, True])
def test_bulk_in_order_takes_the_fast_path(v6: bool, batch: bool) -> None:
    steps = [_op("inorder", flags=PSH if i % 3 == 0 else 0, batch=batch) for i in range(40)]
    fast, _ = run_pair(v6, False, 7, steps)
    assert fast.core.rx_fast_frames == 40
    assert len(fast.delivered) == 40 * 1448
    assert fast.conn.segments_in == 42  # SYN and ACK of the handshake went the layered way
    key = "ipv6" if v6 else "ipv4"
    assert fast.core.counters[f"{key}.rx_delivered"] == 42
    assert fast.core.counters["tcp.rx"] == 42


def test_pure_acks_of_our_data_take_the_fast_path() -> None:
    steps = [_op("pure_ack", size=0, app_send=20000 if i == 0 else 0, ack_delta=1448)
             for i in range(10)]
    fast, _ = run_pair(False, False, 3, steps)
    assert fast.core.rx_fast_frames == 10
    assert fast.conn.snd_una - fast.conn.iss - 1 == 10 * 1448


@pytest.mark.parametrize("kind", ["corrupt", "bad_ip", "ipopt", "frag", "vlan", "prio_tag",
                                  "mcast", "other_host", "truncate", "ooo", "dup", "sack",
                                  "ts_unaligned", "no_ts", "fin", "rst", "urg", "syn"])
def test_unusual_frames_take_the_layered_path(kind: str) -> None:
    steps = [_op("inorder"), _op(kind, extra=3000), _op("inorder")]
    fast, _ = run_pair(False, False, 11, steps)
    # the odd frame (and the fragments of "frag") never counts as a fast frame
    assert fast.core.rx_fast_frames <= 2


def test_corrupt_frames_are_counted_and_dropped_when_untrusted() -> None:
    steps = [_op("inorder"), _op("corrupt", extra=100), _op("bad_ip"), _op("inorder")]
    fast, _ = run_pair(False, False, 5, steps)
    assert fast.core.tcp.rx_errors == 1
    assert fast.core.counters["ipv4.rx_bad_checksum"] == 1
    assert len(fast.delivered) == 2 * 1448
    assert fast.core.rx_fast_frames == 2


def test_trusted_interface_skips_verification() -> None:
    # a corrupted payload byte with a stale checksum: a trusted plug vouches for it
    steps = [_op("inorder"), _op("corrupt", extra=100), _op("inorder")]
    fast, _ = run_pair(False, True, 5, steps)
    assert fast.core.tcp.rx_errors == 0
    assert fast.core.rx_fast_frames == 3
    assert len(fast.delivered) == 3 * 1448


@pytest.mark.parametrize("v6", [False, True])
def test_trusted_interface_layered_path_skips_verification(v6: bool) -> None:
    # the layered path (fast path off) also skips TCP (and IPv4 header) verification
    r = Rig(v6, False, True, 9)
    r.feed(r.frame(r.conn.rcv_nxt & MASK, (r.iss + 1) & MASK, ACK, 512, b"x" * 100,
                   wire_tcp.ts_option(r.peer_ts + 1, 0), corrupt=40))
    assert r.core.tcp.rx_errors == 0
    r.drain_app()
    assert len(r.delivered) == 100
    if not v6:
        r.feed(r.frame(r.conn.rcv_nxt & MASK, (r.iss + 1) & MASK, ACK, 512, b"y" * 10,
                       wire_tcp.ts_option(r.peer_ts + 2, 0), bad_ip_csum=True))
        assert r.core.counters["ipv4.rx_bad_checksum"] == 0
        r.drain_app()
        assert len(r.delivered) == 110


@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize("trusted", [False, True])
def test_held_frames_of_a_batch_match_frame_by_frame_input(v6: bool, trusted: bool) -> None:
    """Inside a batch the fused path holds frames back and sums their checksums together
    (StackCore.input_frames); 150 frames with ``now`` changing mid-batch, a corrupt one, an
    out-of-order one and a runt in the middle give what the layered path gives."""
    fast = Rig(v6, True, trusted, 4)
    slow = Rig(v6, False, trusted, 4)
    for r in (fast, slow):
        r.core.begin_batch()
        base = r.conn.rcv_nxt
        for i in range(150):
            seq = (base + i * 1000) & MASK
            kw: dict[str, int] = {}
            if i == 70:
                kw["corrupt"] = 300
            if i == 90:
                seq = (seq + 5000) & MASK
            f = r.frame(seq, (r.iss + 1) & MASK, ACK, 512, bytes([i]) * 1000,
                        wire_tcp.ts_option(r.peer_ts + 1 + i, r.a_tsval()), **kw)  # type: ignore[arg-type]
            r.feed(f)
            if i == 100:
                r.feed(f[:20])
            if i % 40 == 39:
                r.now += 0.001
        r.core.end_batch(r.now)
        r.drain_app()
    assert fast.sent() == slow.sent()
    assert snapshot(fast) == snapshot(slow)
    assert fast.core.rx_fast_frames > 50
    assert len(fast.delivered) >= 70 * 1000
    if trusted:
        assert fast.core.tcp.rx_errors == 0
    else:
        assert fast.core.tcp.rx_errors == 1


@pytest.mark.parametrize("v6", [False, True])
def test_checksums_verified_once_when_prediction_declines(v6: bool,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """An out-of-order segment of an established connection: the fused path verifies its
    checksums, header prediction declines it, and the layered path does not sum it again.
    A corrupt one is not vouched for: the layered path verifies, counts and drops it."""
    import ioth.stack.ipv4 as ipv4_mod
    import ioth.wire.tcp as wire_tcp_mod

    calls: list[str] = []
    real_parse = wire_tcp_mod.parse_fast
    real_verify = ipv4_mod.verify  # type: ignore[attr-defined]

    def counting_parse(buf: bytes | bytearray | memoryview, src: bytes, dst: bytes
                       ) -> tuple[int, int, int, int, int, int, int]:
        calls.append("tcp")
        return real_parse(buf, src, dst)

    def counting_verify(data: bytes | bytearray | memoryview, initial: int = 0) -> bool:
        calls.append("ip")
        ok: bool = real_verify(data, initial)
        return ok

    r = Rig(v6, True, False, 8)
    monkeypatch.setattr(wire_tcp_mod, "parse_fast", counting_parse)
    monkeypatch.setattr(ipv4_mod, "verify", counting_verify)
    rcv = r.conn.rcv_nxt
    ack = (r.iss + 1) & MASK
    r.feed(r.frame((rcv + 1000) & MASK, ack, ACK, 512, b"b" * 1000,
                   wire_tcp.ts_option(r.peer_ts + 1, 0)))
    assert calls == [] and r.conn._ooo and r.core.tcp.rx_errors == 0
    r.feed(r.frame((rcv + 3000) & MASK, ack, ACK, 512, b"c" * 1000,
                   wire_tcp.ts_option(r.peer_ts + 1, 0), corrupt=500))
    assert "tcp" in calls and r.core.tcp.rx_errors == 1
    r.feed(r.frame(rcv & MASK, ack, ACK, 512, b"a" * 1000,
                   wire_tcp.ts_option(r.peer_ts + 1, 0)))
    r.drain_app()
    assert bytes(r.delivered) == b"a" * 1000 + b"b" * 1000


@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize("sizes", [(0, 10, 0, 64, 0, 20), (1000,) * 6,
                                   (0, 1000, 64, 1000, 1000, 1000, 0), (1000, 1000, 1000, 0)])
def test_input_frames_matches_frame_by_frame(v6: bool, sizes: tuple[int, ...],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """StackCore.input_frames (one read's frames) gives what frame-by-frame input gives,
    whether its checksums are summed in one numpy pass (at least RX_BATCH_MIN long TCP
    frames) or one by one (short frames: ACKs, requests, handshakes)."""
    import ioth.stack.core as core_mod

    passes: list[int] = []
    real = core_mod.batch_partial_sums

    def counting(bufs: list[bytes], start: int, min_len: int = 0) -> list[int | None]:
        passes.append(len(bufs))
        return real(bufs, start, min_len)

    monkeypatch.setattr(core_mod, "batch_partial_sums", counting)
    batched = Rig(v6, True, False, 5)
    single = Rig(v6, True, False, 5)
    frames = []
    seq = batched.conn.rcv_nxt
    ack = (batched.iss + 1) & MASK
    for i, n in enumerate(sizes):
        frames.append(batched.frame(seq, ack, ACK, 512, bytes([i + 1]) * n,
                                    wire_tcp.ts_option(batched.peer_ts + 1 + i,
                                                       batched.a_tsval())))
        seq = (seq + n) & MASK
    batched.core.input_frames(batched.iface.index, frames, batched.now)
    for f in frames:
        single.feed(f)
    for r in (batched, single):
        r.drain_app()
    assert batched.sent() == single.sent()
    assert snapshot(batched) == snapshot(single)
    assert batched.delivered == single.delivered and len(batched.delivered) == sum(sizes)
    long_frames = sum(1 for n in sizes if n >= 256)
    assert bool(passes) == (long_frames >= core_mod.RX_BATCH_MIN)
