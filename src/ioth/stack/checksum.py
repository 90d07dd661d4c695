"""Internet checksum helpers for the stack: thin names over :mod:`ioth.wire.checksum`.

``raw_sum`` is a partial one's complement sum (big-int reduction for small buffers, numpy for big
ones); sums add with ``+`` and :func:`fold` reduces them to 16 bits.
"""

from __future__ import annotations

import struct

from ioth.wire.checksum import checksum, fold, partial_sum, pseudo_v4, pseudo_v6, verify

Buffer = bytes | bytearray | memoryview

raw_sum = partial_sum
pseudo4 = pseudo_v4
pseudo6 = pseudo_v6

__all__ = ["checksum", "fold", "pseudo4", "pseudo6", "raw_sum", "set_checksum", "verify"]


def set_checksum(buf: bytearray, offset: int, initial: int = 0, start: int = 0) -> None:
    """Compute the checksum of ``buf[start:]`` (field at ``offset`` zeroed first) and store it."""
    buf[offset : offset + 2] = b"\0\0"
    struct.pack_into("!H", buf, offset, checksum(memoryview(buf)[start:], initial))
