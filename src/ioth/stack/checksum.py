"""Internet checksum (RFC 1071) helpers for the stack.

The sum of 16-bit big-endian words modulo 0xffff equals the integer value of the buffer modulo
0xffff (because 2**16 == 1 mod 0xffff), so ``int.from_bytes`` does the work in C: no Python loop
over bytes.  (The ``ioth.wire.checksum`` module offers the same; this local copy keeps the stack's
hot path free of an extra call layer.)
"""

from __future__ import annotations

import struct

Buffer = bytes | bytearray | memoryview


def raw_sum(data: Buffer) -> int:
    """Unfolded sum of ``data`` as 16-bit big-endian words (odd length padded with a zero)."""
    value = int.from_bytes(data, "big")
    if len(data) & 1:
        value <<= 8
    return value


def fold(total: int) -> int:
    """Fold a raw sum into a 16-bit one's complement sum (0 only when ``total`` is 0)."""
    s = total % 0xFFFF
    if s == 0 and total:
        return 0xFFFF
    return s


def checksum(data: Buffer, initial: int = 0) -> int:
    """The Internet checksum of ``data`` plus ``initial`` (a raw pseudo-header sum)."""
    return (~fold(raw_sum(data) + initial)) & 0xFFFF


def verify(data: Buffer, initial: int = 0) -> bool:
    """True when ``data`` (checksum field included) plus ``initial`` sums to 0xffff."""
    return fold(raw_sum(data) + initial) == 0xFFFF


def pseudo4(src: bytes, dst: bytes, proto: int, length: int) -> int:
    """Raw sum of the IPv4 pseudo-header."""
    return raw_sum(src) + raw_sum(dst) + proto + length


def pseudo6(src: bytes, dst: bytes, proto: int, length: int) -> int:
    """Raw sum of the IPv6 pseudo-header."""
    return raw_sum(src) + raw_sum(dst) + proto + (length >> 16) + (length & 0xFFFF)


def set_checksum(buf: bytearray, offset: int, initial: int = 0, start: int = 0) -> None:
    """Compute the checksum of ``buf[start:]`` (field at ``offset`` zeroed first) and store it."""
    buf[offset : offset + 2] = b"\0\0"
    struct.pack_into("!H", buf, offset, checksum(memoryview(buf)[start:], initial))
