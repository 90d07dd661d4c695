"""The Internet checksum (RFC 1071), pseudo-header sums and incremental update (RFC 1624).

The one's complement sum of 16-bit words is computed without a Python loop:

* small buffers: the whole buffer as one big-endian integer, reduced modulo ``0xFFFF`` (since
  ``2**16 == 1 (mod 0xFFFF)`` this is the one's complement sum of its 16-bit words);
* big buffers (``len >= NUMPY_THRESHOLD``): numpy sums native 32-bit words into a ``uint64``; the
  little-endian sum is the byte swap of the big-endian one, i.e. ``256 * s (mod 0xFFFF)``.

The threshold was chosen by measurement (``benchmarks/bench_wire.py`` prints both costs): on the
development machine big-int reduction costs ~0.4 us at 64 bytes and ~2.6 us at 1 KiB, numpy a flat
~2.2 us plus a little per KiB.

A *partial sum* in this module is any non-negative ``int`` that is congruent (mod 0xFFFF) to the
one's complement sum of some words, and is zero only if all those words are zero.  Partial sums
add with ``+``; :func:`checksum` folds and complements.
"""

from __future__ import annotations

import struct

import numpy as np

NUMPY_THRESHOLD = 896
"""Buffers at least this long are summed with numpy."""

_U32 = np.dtype(np.uint32)
_U64 = np.dtype(np.uint64)
_add_reduce = np.add.reduce
_frombuffer = np.frombuffer
_from_bytes = int.from_bytes

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
    m = n & ~3
    v = int(_add_reduce(_frombuffer(data, _U32, m >> 2), dtype=_U64)) << 8
    if m != n:
        tail = _from_bytes(data[m:], "big")
        v += tail << 8 if n & 1 else tail
    return v


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
