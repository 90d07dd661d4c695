"""The fused TCP receive path of StackCore (``_rx_fast``) against the layered path.

Two identical stack cores (same seed, same interface, same connection) receive the same
frames; one tries the fused path first, the other has it turned off.  After every frame the
two must agree on everything observable: frames sent (ACKs, data, RSTs, byte for byte), bytes
delivered to the application, the TCB, counters and ``tcp`` introspection.  Hypothesis draws
the frame sequences: in-order data, out-of-order, duplicates, corrupt checksums, segments with
options (SACK, unaligned timestamps, none), old timestamps, FIN/RST/URG/SYN, window changes,
IPv4 options, fragments, VLAN tags, multicast and foreign MACs, truncation and padding, over
IPv4 and IPv6, with and without a batch, with trusted and untrusted checksums.  The rigs,
the frame builders and the step are in tests/support/twostacks.py (shared with review s5's
rx_plain and rx_handshake tests).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ioth.wire import tcp as wire_tcp
from tests.support.twostacks import (
    ACK,
    KINDS,
    MASK,
    PSH,
    Op,
    Rig,
    snapshot,
    step_pair,
)

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


def run_pair(v6: bool, trusted: bool, seed: int, steps: list[Op]) -> tuple[Rig, Rig]:
    fast = Rig(v6, True, trusted, seed)
    slow = Rig(v6, False, trusted, seed)
    assert fast.sent() == slow.sent()
    assert snapshot(fast) == snapshot(slow)
    for op in steps:
        step_pair(fast, slow, op)
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
