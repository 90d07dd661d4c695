"""ICMP for IPv4 (RFC 792, RFC 1191, RFC 1812): echo, destination unreachable, time exceeded,
parameter problem.

::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |     Type      |     Code      |          Checksum             |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  echo: Identifier | Sequence; frag-needed: unused | Next-hop  |
    |  MTU; parameter problem: Pointer | unused; others: unused     |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  echo: data; errors: offending IP header + at least 8 bytes   |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Each message kind is a frozen dataclass; ``parse`` returns ``(message, data)`` and
``message.emit(data)`` returns the whole ICMP message with its checksum.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ioth.wire.checksum import checksum as _checksum
from ioth.wire.checksum import verify as _verify
from ioth.wire.errors import ChecksumError, TruncatedError

Buffer = bytes | bytearray | memoryview

HEADER_LEN = 8
TYPE = 0
CODE = 1
CHECKSUM = 2

TYPE_ECHO_REPLY = 0
TYPE_DEST_UNREACHABLE = 3
TYPE_SOURCE_QUENCH = 4
TYPE_REDIRECT = 5
TYPE_ECHO_REQUEST = 8
TYPE_TIME_EXCEEDED = 11
TYPE_PARAM_PROBLEM = 12

# Destination unreachable codes
UNREACH_NET = 0
UNREACH_HOST = 1
UNREACH_PROTOCOL = 2
UNREACH_PORT = 3
UNREACH_FRAG_NEEDED = 4
UNREACH_SOURCE_ROUTE = 5
UNREACH_NET_UNKNOWN = 6
UNREACH_HOST_UNKNOWN = 7
UNREACH_NET_PROHIBITED = 9
UNREACH_HOST_PROHIBITED = 10
UNREACH_ADMIN_PROHIBITED = 13

# Time exceeded codes
EXCEEDED_TTL = 0
EXCEEDED_REASSEMBLY = 1

# Parameter problem codes
PARAM_POINTER = 0
PARAM_MISSING_OPTION = 1
PARAM_BAD_LENGTH = 2

ERROR_TYPES = frozenset((TYPE_DEST_UNREACHABLE, TYPE_SOURCE_QUENCH, TYPE_REDIRECT,
                         TYPE_TIME_EXCEEDED, TYPE_PARAM_PROBLEM))

MAX_QUOTE = 576 - 20 - HEADER_LEN
"""Quote at most this much of the offending datagram so the error fits 576 bytes (RFC 1812)."""

_HDR = struct.Struct("!BBHI")
_ECHO = struct.Struct("!BBHHH")
_pack = _HDR.pack


def _finish(hdr: bytes, data: Buffer) -> bytes:
    msg = hdr + bytes(data)
    c = _checksum(msg)
    return msg[:2] + c.to_bytes(2, "big") + msg[4:]


@dataclass(frozen=True, slots=True)
class Echo:
    """Echo request (type 8) or echo reply (type 0)."""

    ident: int
    seq: int
    reply: bool = False

    @property
    def type(self) -> int:
        """The ICMP type."""
        return TYPE_ECHO_REPLY if self.reply else TYPE_ECHO_REQUEST

    def make_reply(self) -> Echo:
        """The reply to this request (same identifier and sequence number)."""
        return Echo(self.ident, self.seq, True)

    def emit(self, data: Buffer = b"") -> bytes:
        """The whole ICMP message with checksum."""
        return _finish(_ECHO.pack(self.type, 0, 0, self.ident, self.seq), data)

    def __str__(self) -> str:
        """One-line pretty print."""
        return f"ICMPv4 echo {'reply' if self.reply else 'request'} id={self.ident} seq={self.seq}"


@dataclass(frozen=True, slots=True)
class DestUnreachable:
    """Destination unreachable (type 3); ``mtu`` is the next-hop MTU of code 4 (RFC 1191)."""

    code: int
    mtu: int = 0

    type = TYPE_DEST_UNREACHABLE

    def emit(self, data: Buffer = b"") -> bytes:
        """The whole ICMP message; ``data`` is the quoted datagram (see :func:`quote`)."""
        return _finish(_pack(TYPE_DEST_UNREACHABLE, self.code, 0, self.mtu & 0xFFFF), data)

    def __str__(self) -> str:
        """One-line pretty print."""
        mtu = f" mtu={self.mtu}" if self.code == UNREACH_FRAG_NEEDED else ""
        return f"ICMPv4 destination unreachable code={self.code}{mtu}"


@dataclass(frozen=True, slots=True)
class TimeExceeded:
    """Time exceeded (type 11): code 0 TTL exceeded in transit, 1 reassembly time exceeded."""

    code: int = EXCEEDED_TTL

    type = TYPE_TIME_EXCEEDED

    def emit(self, data: Buffer = b"") -> bytes:
        """The whole ICMP message; ``data`` is the quoted datagram."""
        return _finish(_pack(TYPE_TIME_EXCEEDED, self.code, 0, 0), data)

    def __str__(self) -> str:
        """One-line pretty print."""
        return f"ICMPv4 time exceeded code={self.code}"


@dataclass(frozen=True, slots=True)
class ParamProblem:
    """Parameter problem (type 12); ``pointer`` is the offset of the offending octet."""

    pointer: int
    code: int = PARAM_POINTER

    type = TYPE_PARAM_PROBLEM

    def emit(self, data: Buffer = b"") -> bytes:
        """The whole ICMP message; ``data`` is the quoted datagram."""
        return _finish(_pack(TYPE_PARAM_PROBLEM, self.code, 0, self.pointer << 24), data)

    def __str__(self) -> str:
        """One-line pretty print."""
        return f"ICMPv4 parameter problem code={self.code} pointer={self.pointer}"


@dataclass(frozen=True, slots=True)
class Other:
    """Any other ICMP message: type, code and the raw 32-bit rest-of-header word."""

    type: int
    code: int
    rest: int = 0

    def emit(self, data: Buffer = b"") -> bytes:
        """The whole ICMP message with checksum."""
        return _finish(_pack(self.type, self.code, 0, self.rest), data)

    def __str__(self) -> str:
        """One-line pretty print."""
        return f"ICMPv4 type={self.type} code={self.code} rest=0x{self.rest:08x}"


Icmpv4Message = Echo | DestUnreachable | TimeExceeded | ParamProblem | Other


def is_error(msg: Icmpv4Message) -> bool:
    """True for error messages (which quote an offending datagram)."""
    return msg.type in ERROR_TYPES


def quote(datagram: Buffer, limit: int = MAX_QUOTE) -> bytes:
    """The part of an offending datagram to carry in an error: as much as fits in ``limit``.

    RFC 792 requires the IP header plus 8 bytes; RFC 1812 allows up to 576 bytes in total.
    """
    return bytes(datagram[:limit])


def parse(buf: Buffer, verify_checksum: bool = True) -> tuple[Icmpv4Message, memoryview]:
    """Parse an ICMPv4 message (``buf`` is the IPv4 payload); return message and data."""
    mv = buf if isinstance(buf, memoryview) else memoryview(buf)
    if len(mv) < HEADER_LEN:
        raise TruncatedError(f"ICMPv4 message of {len(mv)} bytes is shorter than {HEADER_LEN}")
    if verify_checksum and not _verify(mv):
        raise ChecksumError("bad ICMPv4 checksum")
    typ, code, _, rest = _HDR.unpack_from(mv)
    msg: Icmpv4Message
    if typ in (TYPE_ECHO_REQUEST, TYPE_ECHO_REPLY):
        msg = Echo(rest >> 16, rest & 0xFFFF, typ == TYPE_ECHO_REPLY)
        if code:
            msg = Other(typ, code, rest)
    elif typ == TYPE_DEST_UNREACHABLE:
        msg = DestUnreachable(code, rest & 0xFFFF)
    elif typ == TYPE_TIME_EXCEEDED:
        msg = TimeExceeded(code)
    elif typ == TYPE_PARAM_PROBLEM:
        msg = ParamProblem(rest >> 24, code)
    else:
        msg = Other(typ, code, rest)
    return msg, mv[HEADER_LEN:]
