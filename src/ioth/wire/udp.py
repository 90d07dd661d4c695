"""UDP (RFC 768) over IPv4 and IPv6 (RFC 8200 section 8.1: checksum mandatory on IPv6).

::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |          Source Port          |       Destination Port        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |            Length             |           Checksum            |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                          Payload ...
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

The checksum covers a pseudo-header (source and destination addresses, protocol 17, UDP length),
the UDP header and the payload.  A transmitted zero checksum means "none" (IPv4 only); a computed
zero is sent as 0xFFFF.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ioth.wire.checksum import partial_sum
from ioth.wire.errors import ChecksumError, IntegrityError, TruncatedError

Buffer = bytes | bytearray | memoryview

SRC_PORT = 0
DST_PORT = 2
LENGTH = 4
CHECKSUM = 6
HEADER_LEN = 8
PROTO_UDP = 17

_HDR = struct.Struct("!HHHH")
_pack = _HDR.pack
_unpack = _HDR.unpack_from
_from_bytes = int.from_bytes


def _sum(src: bytes, dst: bytes, hdr: bytes, payload: Buffer, length: int) -> int:
    s = (_from_bytes(src, "big") + _from_bytes(dst, "big") + PROTO_UDP + length
         + _from_bytes(hdr, "big") + partial_sum(payload))
    return s


@dataclass(frozen=True, slots=True)
class UdpHeader:
    """A UDP header (see the module diagram); length and checksum are computed by :meth:`emit`."""

    src_port: int
    dst_port: int

    def emit(self, payload: Buffer, src: bytes, dst: bytes, checksum: bool = True) -> bytes:
        """The 8 header bytes for ``payload`` sent from ``src`` to ``dst`` (4 or 16 bytes each).

        ``checksum=False`` sends a zero checksum; it is only allowed over IPv4.
        """
        length = HEADER_LEN + len(payload)
        hdr = _pack(self.src_port, self.dst_port, length, 0)
        if not checksum:
            if len(src) != 4:
                raise ValueError("a zero UDP checksum is not allowed over IPv6")
            return hdr
        r = _sum(src, dst, hdr, payload, length) % 0xFFFF
        return hdr[:6] + (0xFFFF - r if r else 0xFFFF).to_bytes(2, "big")

    def __str__(self) -> str:
        """One-line pretty print."""
        return f"UDP {self.src_port} > {self.dst_port}"


def emit(src_port: int, dst_port: int, payload: Buffer, src: bytes, dst: bytes) -> bytes:
    """Fast emit: the 8 header bytes with checksum, without building a :class:`UdpHeader`."""
    length = HEADER_LEN + len(payload)
    hdr = _pack(src_port, dst_port, length, 0)
    r = _sum(src, dst, hdr, payload, length) % 0xFFFF
    return hdr[:6] + (0xFFFF - r if r else 0xFFFF).to_bytes(2, "big")


def checksum_ok(buf: Buffer, src: bytes, dst: bytes) -> bool:
    """True if the UDP datagram ``buf`` (cut at its Length) verifies against the addresses.

    A zero checksum field is accepted over IPv4 and rejected over IPv6.
    """
    if buf[6] == 0 and buf[7] == 0:
        return len(src) == 4
    s = (_from_bytes(src, "big") + _from_bytes(dst, "big") + PROTO_UDP + len(buf)
         + partial_sum(buf))
    return s % 0xFFFF == 0


def parse(buf: Buffer, src: bytes | None = None, dst: bytes | None = None
          ) -> tuple[UdpHeader, memoryview]:
    """Parse a UDP datagram (an IP payload); verify the checksum when ``src``/``dst`` are given.

    The payload is cut at the Length field.
    """
    mv = buf if isinstance(buf, memoryview) else memoryview(buf)
    n = len(mv)
    if n < HEADER_LEN:
        raise TruncatedError(f"UDP datagram of {n} bytes is shorter than {HEADER_LEN}")
    sport, dport, length, _ = _unpack(mv)
    if length < HEADER_LEN:
        raise IntegrityError(f"UDP length {length} is shorter than the header")
    if length > n:
        raise TruncatedError(f"UDP length {length} exceeds the {n} bytes received")
    if src is not None and dst is not None and not checksum_ok(mv[:length], src, dst):
        raise ChecksumError("bad UDP checksum" if mv[6] | mv[7] else "zero UDP checksum on IPv6")
    return UdpHeader(sport, dport), mv[HEADER_LEN:length]


def parse_fast(buf: Buffer, src: bytes, dst: bytes) -> tuple[int, int, int]:
    """Hot path: verify, return ``(src_port, dst_port, length)``; payload: ``buf[8:length]``."""
    n = len(buf)
    if n < HEADER_LEN:
        raise TruncatedError(f"UDP datagram of {n} bytes is shorter than {HEADER_LEN}")
    sport, dport, length, csum = _unpack(buf)
    if length < HEADER_LEN:
        raise IntegrityError(f"UDP length {length} is shorter than the header")
    if length > n:
        raise TruncatedError(f"UDP length {length} exceeds the {n} bytes received")
    if csum == 0:
        if len(src) != 4:
            raise ChecksumError("zero UDP checksum on IPv6")
    else:
        d = buf if length == n else buf[:length]
        s = (_from_bytes(src, "big") + _from_bytes(dst, "big") + PROTO_UDP + length
             + partial_sum(d))
        if s % 0xFFFF:
            raise ChecksumError("bad UDP checksum")
    return sport, dport, length
