"""ARP for Ethernet / IPv4 (RFC 826).

::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |     Hardware type (1)         |     Protocol type (0x0800)    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  HLEN (6)     |  PLEN (4)     |          Operation            |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                  Sender hardware address (6)                  |
    +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                               | Sender protocol address (4)   |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
    |                               |                               |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
    |                  Target hardware address (6)                  |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                  Target protocol address (4)                  |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from ioth.wire.errors import SanityError, TruncatedError

Buffer = bytes | bytearray | memoryview

HEADER_LEN = 28
HTYPE_ETHERNET = 1
PTYPE_IPV4 = 0x0800
OP_REQUEST = 1
OP_REPLY = 2

_ARP = struct.Struct("!HHBBH6s4s6s4s")


@dataclass(frozen=True, slots=True)
class ArpPacket:
    """An Ethernet/IPv4 ARP packet (see the module diagram)."""

    op: int
    sha: bytes
    spa: bytes
    tha: bytes
    tpa: bytes

    @property
    def is_request(self) -> bool:
        """True for a request."""
        return self.op == OP_REQUEST

    @property
    def is_gratuitous(self) -> bool:
        """True when sender and target protocol addresses are equal (announcement / probe reply)."""
        return self.spa == self.tpa

    def emit(self) -> bytes:
        """The 28 packet bytes (pad the Ethernet frame with :func:`ioth.wire.ethernet.pad`)."""
        return _ARP.pack(HTYPE_ETHERNET, PTYPE_IPV4, 6, 4, self.op, self.sha, self.spa,
                         self.tha, self.tpa)

    def __str__(self) -> str:
        """One-line pretty print."""
        what = {OP_REQUEST: "request", OP_REPLY: "reply"}.get(self.op, f"op={self.op}")
        return (f"ARP {what} {self.sha.hex(':')} {socket.inet_ntoa(self.spa)} -> "
                f"{self.tha.hex(':')} {socket.inet_ntoa(self.tpa)}")


def request(sha: bytes, spa: bytes, tpa: bytes) -> ArpPacket:
    """A who-has request for ``tpa`` (target hardware address zero)."""
    return ArpPacket(OP_REQUEST, sha, spa, b"\x00" * 6, tpa)


def reply(req: ArpPacket, sha: bytes) -> ArpPacket:
    """The reply to ``req``: ``sha`` owns ``req.tpa``."""
    return ArpPacket(OP_REPLY, sha, req.tpa, req.sha, req.spa)


def parse(buf: Buffer) -> tuple[ArpPacket, memoryview]:
    """Parse an ARP packet; the returned payload is the trailing padding."""
    mv = buf if isinstance(buf, memoryview) else memoryview(buf)
    if len(mv) < HEADER_LEN:
        raise TruncatedError(f"ARP packet of {len(mv)} bytes is shorter than {HEADER_LEN}")
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(mv)
    if htype != HTYPE_ETHERNET or ptype != PTYPE_IPV4 or hlen != 6 or plen != 4:
        raise SanityError(f"unsupported ARP htype={htype} ptype=0x{ptype:04x} "
                          f"hlen={hlen} plen={plen}")
    if op not in (OP_REQUEST, OP_REPLY):
        raise SanityError(f"unsupported ARP operation {op}")
    return ArpPacket(op, sha, spa, tha, tpa), mv[HEADER_LEN:]
