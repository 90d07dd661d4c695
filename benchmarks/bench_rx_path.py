"""Receive-path micro-benchmark: CPU per TCP segment through ``StackCore.input_frame``.

One stack core with an established connection (timestamps on, as with Linux peers) gets
1514-byte frames of in-order data in batches of 64 (``begin_batch``/``end_batch``, as the
runtime feeds them; built untimed just before each batch, so they are in the cache like frames
just read from a plug), and the application reads the data after each batch.  No plugs, no
kernel, no threads: what is measured is the stack's own work per segment (Ethernet, IP, TCP,
queueing, the ACK per batch, the application's read), the part of the sink cost that
TCP_PROFILE.md attributes to Python.

Prints microseconds per segment for: the fused receive path (``StackCore.rx_fastpath``), the
layered path (fast path off), and both on an interface whose plug vouches for checksums
(``rx_csum_trusted``).  Run it against another tree with PYTHONPATH=/other/src to compare.

Run: python benchmarks/bench_rx_path.py [--segments N] [--v6]
"""

from __future__ import annotations

import argparse
import random
import struct
import time

from ioth.stack.core import StackCore
from ioth.wire import tcp as wire_tcp
from ioth.wire.checksum import checksum

MASK = 0xFFFFFFFF
MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")
A4, B4 = bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2])
A6 = bytes.fromhex("20010db8000000000000000000000001")
B6 = bytes.fromhex("20010db8000000000000000000000002")
ACK, SYN = 0x10, 0x02
BATCH = 64


def _frame(v6: bool, seq: int, ack: int, flags: int, payload: bytes, opts: bytes) -> bytes:
    src, dst = (B6, A6) if v6 else (B4, A4)
    seg = wire_tcp.emit_fast(40000, 80, seq, ack, flags, 65535, payload, src, dst, opts) + payload
    if v6:
        pkt = struct.pack("!IHBB16s16s", 6 << 28, len(seg), 6, 64, src, dst) + seg
        return MAC_A + MAC_B + b"\x86\xdd" + pkt
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(seg), 1, 0x4000, 64, 6, 0,
                                src, dst))
    struct.pack_into("!H", hdr, 10, checksum(hdr))
    return MAC_A + MAC_B + b"\x08\x00" + bytes(hdr) + seg


def run(v6: bool, fast: bool, trusted: bool, segments: int) -> float:
    """Microseconds of CPU per 1448-byte segment."""
    core = StackCore(random.Random(1))
    core.rx_fastpath = fast  # (ignored by trees without the fused path)
    iface = core.add_interface("vde0", MAC_A, 1500)
    if trusted:
        iface.rx_csum_trusted = True
    core.set_up(iface.index, True, 0.0)
    now = 0.0
    if v6:
        core.ip6.add_addr(iface.index, A6, 64, 0.0)
        core.ip6.ndp.cache.add_static(iface.index, B6, MAC_B, 0.0)
        for _ in range(6):
            now += 1.0
            core.poll(now)
    else:
        core.add_addr4(iface.index, A4, 24, 0.0)
        core.arp.cache.add_static(iface.index, B4, MAC_B, 0.0)
    iface.txq.clear()
    listener = core.tcp.listen(80)
    ts = 1000
    seq = 5000
    syn_opts = wire_tcp.TcpHeader(0, 0, 0, 0, 0, 0, mss=1460, wscale=7, sack_permitted=True,
                                  timestamps=(ts, 0)).options_bytes()
    core.input_frame(iface.index, _frame(v6, seq, 0, SYN, b"", syn_opts), now)
    synack = iface.txq.pop()
    off = 54 if v6 else 34
    iss = int.from_bytes(synack[off + 4:off + 8], "big")
    seq += 1
    ack = (iss + 1) & MASK
    core.input_frame(iface.index, _frame(v6, seq, ack, ACK, b"", wire_tcp.ts_option(ts, 0)), now)
    conn = listener.accept()
    assert conn is not None
    payload = random.Random(2).randbytes(1448)

    def build(first: int, count: int) -> list[bytes]:
        return [_frame(v6, (seq + i * 1448) & MASK, ack, ACK, payload,
                       wire_tcp.ts_option(ts + 1 + i // BATCH, 0))
                for i in range(first, first + count)]

    # warm-up inside the initial 64 KiB window; reading opens the window (scaled) to 1 MiB
    warm = 40
    core.begin_batch()
    for f in build(0, warm):
        core.input_frame(iface.index, f, now)
    core.end_batch(now)
    got = len(conn.recv(1 << 22))
    iface.txq.clear()
    elapsed = 0.0
    clock = time.process_time
    for i in range(warm, segments, BATCH):
        # frames are built per batch (untimed), so they are in the cache like frames just read
        # from a plug
        batch = build(i, min(BATCH, segments - i))
        now += 0.0005
        t0 = clock()
        core.begin_batch()
        for f in batch:
            core.input_frame(iface.index, f, now)
        core.end_batch(now)
        iface.txq.clear()
        got += len(conn.recv(1 << 22))
        elapsed += clock() - t0
    assert got == segments * 1448, (got, segments * 1448)
    return elapsed / (segments - warm) * 1e6


def main() -> None:
    """Print the per-segment cost of each path."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--segments", type=int, default=20000)
    ap.add_argument("--v6", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    probe = StackCore(random.Random(0))
    has_fast = hasattr(probe, "rx_fastpath")
    has_trust = hasattr(probe.ifaces[1], "rx_csum_trusted")
    print(f"receive path, 1448-byte segments over {'IPv6' if args.v6 else 'IPv4'}, "
          f"batches of {BATCH}: best of {args.repeat}, us of CPU per segment")
    for name, fast, trusted in (("fused path, checksums verified", True, False),
                                ("layered path, checksums verified", False, False),
                                ("fused path, trusted interface", True, True),
                                ("layered path, trusted interface", False, True)):
        if (fast and not has_fast) or (trusted and not has_trust):
            continue
        best = min(run(args.v6, fast, trusted, args.segments) for _ in range(args.repeat))
        print(f"  {name:40s} {best:7.2f}")


if __name__ == "__main__":
    main()
