"""The Internet checksum (RFC 1071), pseudo-header sums and incremental update (RFC 1624).

The one's complement sum of 16-bit words is computed without a Python loop:

* small buffers: the whole buffer as one big-endian integer, reduced modulo ``0xFFFF`` (since
  ``2**16 == 1 (mod 0xFFFF)`` this is the one's complement sum of its 16-bit words);
* big buffers (``len >= NUMPY_THRESHOLD``): numpy views the buffer as native 32-bit words; the
  little-endian sum is the byte swap of the big-endian one, i.e. ``256 * s (mod 0xFFFF)``.  Up to
  ``DOT_LIMIT`` bytes the words are summed by a dot product with a read-only vector of ones in
  float64 (exact: below ``2**53``); numpy's cast + BLAS ``ddot`` costs less per call than
  ``np.add.reduce(..., dtype=uint64)``, which wins again on 64 KiB buffers.

The thresholds were chosen by measurement (``benchmarks/bench_wire.py`` prints the costs): on the
development machine big-int reduction costs ~0.35 us at 64 bytes, ~2.0 us at 896 and ~3.4 us at
1448 (``int.from_bytes`` plus a one-digit long division per 30 bits), the dot product a flat
~1.8 us plus ~0.15 us per KiB, the uint64 reduction ~2.1 us plus ~0.08 us per KiB.

A *partial sum* in this module is any non-negative ``int`` that is congruent (mod 0xFFFF) to the
one's complement sum of some words, and is zero only if all those words are zero.  Partial sums
add with ``+``; :func:`checksum` folds and complements.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

NUMPY_THRESHOLD = 896
"""Buffers at least this long are summed with numpy."""
DOT_LIMIT = 8192
"""Buffers below this many bytes are summed by the float64 dot product, longer ones by
``np.add.reduce`` into uint64."""

_U16 = np.dtype(np.uint16)
_U32 = np.dtype(np.uint32)
_U64 = np.dtype(np.uint64)
_add_reduce = np.add.reduce
_add_reduceat = np.add.reduceat
_frombuffer = np.frombuffer
_from_bytes = int.from_bytes
_ONES = np.ones(DOT_LIMIT >> 2, np.float64)
_ONES.flags.writeable = False

Buffer = bytes | bytearray | memoryview

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ICMPV6 = 58


def partial_sum(data: Buffer) -> int:
    """Return a partial one's complement sum of ``data`` (odd length: padded with a zero byte).

    ``data`` must start at an even offset of the checksummed region.
    """
    n = len(data)
    if n < NUMPY_THRESHOLD:
        v = _from_bytes(data, "big")
        return v << 8 if n & 1 else v
    return _numpy_sum(data, 0, n)


def partial_sum_at(buf: Buffer, start: int, end: int) -> int:
    """:func:`partial_sum` of ``buf[start:end]`` without slicing big buffers first.

    ``start`` must be an even offset of the checksummed region (e.g. the start of a TCP header
    inside a whole Ethernet frame); ``0 <= start <= end <= len(buf)``.
    """
    n = end - start
    if n < NUMPY_THRESHOLD:
        v = _from_bytes(buf[start:end], "big")
        return v << 8 if n & 1 else v
    return _numpy_sum(buf, start, n)


def _numpy_sum(buf: Buffer, start: int, n: int) -> int:
    words = n >> 2
    if n < DOT_LIMIT:
        # float64 is exact here: at most 2047 words below 2**32 each
        v = int(_frombuffer(buf, _U32, words, start).dot(_ONES[:words])) << 8
    else:
        v = int(_add_reduce(_frombuffer(buf, _U32, words, start), dtype=_U64)) << 8
    m = start + (n & ~3)
    if m != start + n:
        tail = _from_bytes(buf[m:start + n], "big")
        v += tail << 8 if n & 1 else tail
    return v


def batch_partial_sums(bufs: Sequence[Buffer], start: int, min_len: int = 0
                       ) -> list[int | None]:
    """:func:`partial_sum` of ``buf[start:]`` for every buffer of ``bufs``, in one numpy pass.

    ``start`` is even (e.g. 14: the IP packet inside an Ethernet frame).  Buffers shorter than
    ``max(min_len, start + 2)`` get ``None``.  The buffers are joined (an odd-length one padded
    with a zero byte, so every region starts on a 16-bit word), read as native 16-bit words and
    summed per region by ``np.add.reduceat`` into uint64: about 0.6 us per 1514-byte frame in
    a batch of 64, against 2-3 us for one :func:`partial_sum_at` call per frame.
    """
    least = max(min_len, start + 2)
    parts: list[Buffer] = []
    idx: list[int] = []
    which: list[int] = []
    g = 0
    for i, buf in enumerate(bufs):
        n = len(buf)
        if n < least:
            continue
        which.append(i)
        parts.append(buf)
        idx.append((g + start) >> 1)
        if n & 1:
            parts.append(b"\0")
            n += 1
        g += n
        idx.append(g >> 1)
    out: list[int | None] = [None] * len(bufs)
    if not which:
        return out
    idx.pop()  # the last region runs to the end
    words = _frombuffer(b"".join(parts), _U16)
    # native (little-endian) words: the sum is 256 * the big-endian one (mod 0xFFFF)
    sums = _add_reduceat(words, idx, dtype=_U64)[0::2].tolist()
    for i, v in zip(which, sums, strict=True):
        out[i] = v << 8
    return out


def fold(s: int) -> int:
    """Fold a partial sum into the 16-bit one's complement sum (0 only for all-zero input)."""
    r = s % 0xFFFF
    if r:
        return r
    return 0xFFFF if s else 0


def checksum(data: Buffer, initial: int = 0) -> int:
    """Return the Internet checksum of ``data`` plus the partial sum ``initial``.

    ``initial`` is typically a pseudo-header sum from :func:`pseudo_v4` / :func:`pseudo_v6`.
    The result is ready to be stored in the checksum field (which must be zero in ``data``).
    """
    s = partial_sum(data) + initial
    r = s % 0xFFFF
    if r:
        return 0xFFFF - r
    return 0 if s else 0xFFFF


def verify(data: Buffer, initial: int = 0) -> bool:
    """True if ``data`` (checksum field included) plus ``initial`` sums to one's complement zero."""
    s = partial_sum(data) + initial
    return s != 0 and s % 0xFFFF == 0


def pseudo_v4(src: bytes, dst: bytes, proto: int, length: int) -> int:
    """Partial sum of the IPv4 pseudo-header (RFC 768 / RFC 793): addresses, protocol, length."""
    return _from_bytes(src, "big") + _from_bytes(dst, "big") + proto + length


def pseudo_v6(src: bytes, dst: bytes, next_header: int, length: int) -> int:
    """Partial sum of the IPv6 pseudo-header (RFC 8200 section 8.1)."""
    return _from_bytes(src, "big") + _from_bytes(dst, "big") + next_header + length


def pseudo(src: bytes, dst: bytes, proto: int, length: int) -> int:
    """Pseudo-header partial sum for IPv4 (4-byte addresses) or IPv6 (16-byte addresses)."""
    # Both pseudo-headers sum to the same value: the address words, the protocol and the length.
    return _from_bytes(src, "big") + _from_bytes(dst, "big") + proto + length


def update16(old_checksum: int, old_word: int, new_word: int) -> int:
    """Incrementally update a checksum after one 16-bit word changed (RFC 1624 equation 3).

    ``HC' = ~(~HC + ~m + m')``.
    """
    s = (~old_checksum & 0xFFFF) + (~old_word & 0xFFFF) + new_word
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def update(old_checksum: int, old: bytes, new: bytes) -> int:
    """Incrementally update a checksum after the even-aligned field ``old`` became ``new``.

    ``old`` and ``new`` have the same even length (e.g. an address rewritten by NAT).
    """
    if len(old) != len(new) or len(old) & 1:
        raise ValueError("update() needs two fields of the same even length")
    n = len(old) // 2
    s = ~old_checksum & 0xFFFF
    fmt = f"!{n}H"
    for m, m2 in zip(struct.unpack(fmt, old), struct.unpack(fmt, new), strict=True):
        s += (~m & 0xFFFF) + m2
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF
