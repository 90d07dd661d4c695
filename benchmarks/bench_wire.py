"""Wire-layer micro-benchmarks: per-frame cost of parse + emit of a 1500-byte UDP/IPv4 frame.

Prints microseconds per operation for ioth.wire (fast path and dataclass API) and, measured in the
same run, scapy dissect/build of the same frame (the reference peer), with the ratio; then the
checksum cost per buffer size for the three summing strategies (the basis of NUMPY_THRESHOLD and
DOT_LIMIT in ioth.wire.checksum).

Run: python benchmarks/bench_wire.py [--quick]
"""

from __future__ import annotations

import sys
import timeit
from collections.abc import Callable

import numpy as np

from ioth.wire import checksum, ethernet, ipv4, tcp, udp

M1 = bytes.fromhex("020000000001")
M2 = bytes.fromhex("020000000002")
A1 = bytes([192, 0, 2, 1])
A2 = bytes([192, 0, 2, 2])
PAYLOAD = bytes(range(256)) * 5 + bytes(192)  # 1472 bytes: a 1500-byte IP packet
ETH = ethernet.EthernetHeader(M2, M1, ethernet.ETHERTYPE_IPV4).emit()


def per_call_us(fn: Callable[[], object], number: int) -> float:
    """Best of 3 runs, microseconds per call."""
    return min(timeit.repeat(fn, number=number, repeat=3)) / number * 1e6


def emit_fast() -> bytes:
    """Fast path: plain values in, frame out."""
    u = udp.emit(5000, 7, PAYLOAD, A1, A2)
    ip = ipv4.emit_fast(A1, A2, 17, 8 + len(PAYLOAD), 64, 1, ipv4.FLAG_DF)
    return b"".join((ETH, ip, u, PAYLOAD))


FRAME = emit_fast()


def parse_fast() -> tuple[int, int, int]:
    """Fast path: tuples of hot fields, checksums verified."""
    mv = memoryview(FRAME)
    _, _, _etype, off = ethernet.parse_fast(mv)
    _, src, dst, hlen, tlen, _, _ = ipv4.parse_fast(mv[off:])
    return udp.parse_fast(mv[off + hlen:off + tlen], src, dst)


def emit_objects() -> bytes:
    """Dataclass API."""
    eth = ethernet.EthernetHeader(M2, M1, ethernet.ETHERTYPE_IPV4)
    ip = ipv4.Ipv4Header(A1, A2, 17, 8 + len(PAYLOAD), ident=1, df=True)
    u = udp.UdpHeader(5000, 7)
    return b"".join((eth.emit(), ip.emit(), u.emit(PAYLOAD, A1, A2), PAYLOAD))


def parse_objects() -> object:
    """Dataclass API."""
    _eh, p = ethernet.parse(FRAME)
    ih, p = ipv4.parse(p)
    return udp.parse(p, ih.src, ih.dst)


def tcp_round() -> object:
    """A 1448-byte TCP data segment with timestamps: emit then fast parse."""
    data = PAYLOAD[:1448]
    seg = tcp.emit_fast(80, 40000, 1, 2, tcp.ACK, 509, data, A1, A2, tcp.ts_option(1, 2))
    raw = seg + data
    r = tcp.parse_fast(raw, A1, A2)
    return tcp.timestamps(raw, r[6])


def main() -> None:
    quick = "--quick" in sys.argv
    n = 2000 if quick else 20000
    assert emit_objects() == FRAME and parse_fast() == (5000, 7, 1480)
    rows: list[tuple[str, float]] = [
        ("ioth fast path: parse (eth+ipv4+udp, checksums verified)", per_call_us(parse_fast, n)),
        ("ioth fast path: emit (eth+ipv4+udp, checksums computed)", per_call_us(emit_fast, n)),
        ("ioth dataclass API: parse", per_call_us(parse_objects, n)),
        ("ioth dataclass API: emit", per_call_us(emit_objects, n)),
        ("ioth TCP 1448-byte segment: emit + parse_fast + timestamps", per_call_us(tcp_round, n)),
    ]
    fast_total = rows[0][1] + rows[1][1]
    try:
        from scapy.layers.inet import IP, UDP
        from scapy.layers.l2 import Ether
        m = max(n // 20, 100)
        sc_parse = per_call_us(lambda: Ether(FRAME)[UDP].dport, m)
        sc_emit = per_call_us(lambda: bytes(Ether(dst="02:00:00:00:00:02", src="02:00:00:00:00:01")
                                            / IP(src="192.0.2.1", dst="192.0.2.2", id=1,
                                                 flags="DF") / UDP(sport=5000, dport=7)
                                            / PAYLOAD), m)
        rows += [("scapy (peer): dissect", sc_parse), ("scapy (peer): build", sc_emit)]
    except ImportError:
        sc_parse = sc_emit = float("nan")
    print(f"{'1500-byte UDP/IPv4 frame':62s} {'us/op':>8s}")
    for name, us in rows:
        print(f"{name:62s} {us:8.2f}")
    print(f"{'ioth fast path parse+emit per frame':62s} {fast_total:8.2f}")
    print(f"{'ratio scapy/ioth (parse+emit)':62s} {(sc_parse + sc_emit) / fast_total:8.1f}x")
    print()
    print(f"{'checksum bytes':>14s} {'int.from_bytes':>15s} {'numpy reduce':>13s} "
          f"{'numpy dot':>10s} {'partial_sum':>12s}  chosen")
    u32, u64 = np.dtype(np.uint32), np.dtype(np.uint64)
    ones = np.ones(1 << 15, np.float64)
    rng = np.random.default_rng(1)
    for size in (64, 256, 512, 640, 768, 896, 1024, 1448, 1500, 4096, 8192, 9000, 65535):
        buf = memoryview(rng.bytes(size))
        m = size & ~3

        def by_int(b: memoryview = buf) -> int:
            return int.from_bytes(b, "big") % 0xFFFF

        def by_reduce(b: memoryview = buf, m: int = m) -> int:
            return int(np.add.reduce(np.frombuffer(b, u32, m >> 2), dtype=u64)) % 0xFFFF

        def by_dot(b: memoryview = buf, m: int = m) -> int:
            return int(np.frombuffer(b, u32, m >> 2).dot(ones[:m >> 2])) % 0xFFFF

        def chosen_fn(b: memoryview = buf) -> int:
            return checksum.partial_sum(b) % 0xFFFF

        t_int = per_call_us(by_int, n // 4)
        t_red = per_call_us(by_reduce, n // 4)
        t_dot = per_call_us(by_dot, n // 4)
        t_chosen = per_call_us(chosen_fn, n // 4)
        if size < checksum.NUMPY_THRESHOLD:
            chosen = "int"
        else:
            chosen = "dot" if size < checksum.DOT_LIMIT else "reduce"
        print(f"{size:14d} {t_int:15.2f} {t_red:13.2f} {t_dot:10.2f} {t_chosen:12.2f}  {chosen}")

if __name__ == "__main__":
    main()
