"""Stream framing: Ethernet frames over a byte stream (pipes, ssh, ``cmd://``, ``vde_plug``).

Each frame is a 2-byte big-endian length followed by that many bytes of frame (the format of
``vde_plug`` on its stdin/stdout).  A length of 0 is skipped.  A length above ``limit`` is a
framing error (``limit`` is 9234 by default, the largest frame ``vde_plug`` accepts: 9216 bytes of
payload, Ethernet header and one VLAN tag; it can be raised up to 65535 when both ends agree).

This module is pure: no I/O, no clock.

Resynchronisation policy (a byte stream carries no frame markers, so after a bad length nothing
tells where the next frame starts): on a length above ``limit`` the decoder counts one framing
error and enters *hunting*: it drops bytes one at a time until the next two bytes form a plausible
length (``MIN_HUNT`` .. ``limit``) and resumes decoding there.  Lengths of 0 seen while hunting are
skipped like any other byte.  The decision depends only on the bytes of the stream, never on how
they were split into chunks, so the same stream always yields the same frames.  (``vde_plug``
instead throws away the rest of the read buffer, which depends on read sizes.)
"""

from __future__ import annotations

from dataclasses import dataclass

#: default largest frame (vde_plug's VDE_ETHBUFSIZE: 9216 + 14 + 4)
DEFAULT_LIMIT = 9234
#: largest frame a 2-byte length can describe
MAX_LIMIT = 65535
#: smallest length accepted as a resynchronisation point while hunting (an Ethernet header)
MIN_HUNT = 14
HEADER_LEN = 2


def check_limit(limit: int) -> int:
    """Validate a frame-size limit (1..65535); returns it."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"stream frame limit {limit} out of range 1..{MAX_LIMIT}")
    return limit


def encode(frame: bytes | bytearray | memoryview) -> bytes:
    """One frame with its 2-byte big-endian length (frames over 65535 bytes: ValueError)."""
    n = len(frame)
    if n > MAX_LIMIT:
        raise ValueError(f"frame of {n} bytes too long for stream framing (max {MAX_LIMIT})")
    return n.to_bytes(2, "big") + bytes(frame)


def header(length: int) -> bytes:
    """The 2-byte header for a frame of ``length`` bytes (for ``writev``: no frame copy)."""
    return length.to_bytes(2, "big")


@dataclass
class DecoderStats:
    """What the decoder has seen."""

    frames: int = 0
    bytes: int = 0  # bytes of frames delivered
    empty: int = 0  # zero-length records skipped
    framing_errors: int = 0  # lengths above the limit (each starts one hunt)
    skipped_bytes: int = 0  # bytes dropped while hunting


class StreamDecoder:
    """Incremental decoder: :meth:`feed` bytes, get the complete frames back.

    Partial frames are kept between calls (at most ``limit`` + 1 bytes).
    """

    __slots__ = ("_buf", "_hunting", "limit", "stats")

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = check_limit(limit)
        self.stats = DecoderStats()
        self._buf = bytearray()
        self._hunting = False

    @property
    def pending(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buf)

    @property
    def hunting(self) -> bool:
        """True while resynchronising after a framing error."""
        return self._hunting

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Decode ``data`` (appended to what is pending); returns the complete frames."""
        if self._buf:
            self._buf += data
            buf: bytes | bytearray = self._buf
        else:
            buf = data if isinstance(data, bytes) else bytes(data)
        frames: list[bytes] = []
        append = frames.append
        limit = self.limit
        stats = self.stats
        end = len(buf)
        pos = 0
        nbytes = 0
        while end - pos >= 2:
            n = (buf[pos] << 8) | buf[pos + 1]
            if self._hunting:
                if MIN_HUNT <= n <= limit:
                    self._hunting = False
                else:
                    pos += 1
                    stats.skipped_bytes += 1
                    continue
            if n > limit:
                stats.framing_errors += 1
                self._hunting = True
                pos += 2
                stats.skipped_bytes += 2
                continue
            if n == 0:
                stats.empty += 1
                pos += 2
                continue
            stop = pos + 2 + n
            if stop > end:
                break
            append(bytes(buf[pos + 2 : stop]))
            nbytes += n
            pos = stop
        if frames:
            stats.frames += len(frames)
            stats.bytes += nbytes
        if buf is self._buf:
            del self._buf[:pos]
        else:
            self._buf = bytearray(buf[pos:]) if pos < end else bytearray()
        return frames

    def reset(self) -> None:
        """Forget any partial frame and leave hunting mode."""
        self._buf = bytearray()
        self._hunting = False
