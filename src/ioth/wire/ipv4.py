"""IPv4 header (RFC 791): parse/emit with header checksum, options kept raw, fragmentation helper.

::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |Version|  IHL  |    DSCP   |ECN|          Total Length         |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |         Identification        |0|D|M|      Fragment Offset    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Time to Live |    Protocol   |         Header Checksum       |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                       Source Address                          |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                    Destination Address                        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                    Options                    |    Padding    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

``frag_offset`` is expressed in bytes (always a multiple of 8), not in 8-byte units.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, replace

from ioth.wire.errors import (
    AddressError,
    ChecksumError,
    IntegrityError,
    SanityError,
    TruncatedError,
)

Buffer = bytes | bytearray | memoryview

# Field offsets
VER_IHL = 0
TOS = 1
TOTAL_LEN = 2
IDENT = 4
FLAGS_FRAG = 6
TTL = 8
PROTOCOL = 9
CHECKSUM = 10
SRC = slice(12, 16)
DST = slice(16, 20)
HEADER_LEN = 20
MAX_HEADER_LEN = 60
MAX_PACKET_LEN = 65535
MIN_MTU = 68

FLAG_RESERVED = 0x8000
FLAG_DF = 0x4000
FLAG_MF = 0x2000
FRAG_OFFSET_MASK = 0x1FFF

# Protocol numbers
PROTO_ICMP = 1
PROTO_IGMP = 2
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_IPV6 = 41
PROTO_ICMPV6 = 58

# Option types
OPT_EOL = 0
OPT_NOP = 1
OPT_COPIED = 0x80
OPT_ROUTER_ALERT = 0x94

BROADCAST = b"\xff\xff\xff\xff"
ANY = b"\x00\x00\x00\x00"

_HDR = struct.Struct("!BBHHHBBH4s4s")
_unpack_hdr = _HDR.unpack_from
_pack_hdr = _HDR.pack
_from_bytes = int.from_bytes


def addr_to_str(addr: bytes) -> str:
    """``b'\\xc0\\x00\\x02\\x01'`` -> ``'192.0.2.1'``."""
    return socket.inet_ntoa(addr)


def str_to_addr(text: str) -> bytes:
    """``'192.0.2.1'`` -> 4 bytes; raises :class:`AddressError` naming ``text`` if invalid."""
    try:
        return socket.inet_pton(socket.AF_INET, text.strip())
    except (OSError, ValueError):
        raise AddressError(f"invalid IPv4 address {text!r}") from None


def is_multicast(addr: bytes) -> bool:
    """True for 224.0.0.0/4."""
    return addr[0] & 0xF0 == 0xE0


def is_broadcast(addr: bytes) -> bool:
    """True for the limited broadcast 255.255.255.255."""
    return addr == BROADCAST


def is_loopback(addr: bytes) -> bool:
    """True for 127.0.0.0/8."""
    return addr[0] == 127


def is_unspecified(addr: bytes) -> bool:
    """True for 0.0.0.0."""
    return addr == ANY


@dataclass(frozen=True, slots=True)
class Ipv4Header:
    """An IPv4 header (see the module diagram); the checksum is computed by :meth:`emit`.

    ``payload_len`` is the number of bytes after the header (total length minus header length);
    ``options`` are the raw option bytes (a multiple of 4 long; :meth:`emit` pads with EOL).
    """

    src: bytes
    dst: bytes
    proto: int
    payload_len: int
    ttl: int = 64
    ident: int = 0
    df: bool = False
    mf: bool = False
    frag_offset: int = 0
    dscp: int = 0
    ecn: int = 0
    options: bytes = b""

    @property
    def header_len(self) -> int:
        """Header length in bytes (options and padding included)."""
        return HEADER_LEN + ((len(self.options) + 3) & ~3)

    @property
    def total_len(self) -> int:
        """The Total Length field."""
        return self.header_len + self.payload_len

    @property
    def is_fragment(self) -> bool:
        """True if this datagram is a fragment (MF set or a non-zero offset)."""
        return self.mf or self.frag_offset != 0

    def emit(self) -> bytes:
        """The header bytes with a valid checksum."""
        opts = self.options
        if len(opts) & 3:
            opts = opts + bytes(4 - (len(opts) & 3))
        hlen = HEADER_LEN + len(opts)
        frag = (self.frag_offset >> 3) | (FLAG_DF if self.df else 0) | (FLAG_MF if self.mf else 0)
        hdr = _pack_hdr(0x40 | (hlen >> 2), (self.dscp << 2) | self.ecn, hlen + self.payload_len,
                        self.ident, frag, self.ttl, self.proto, 0, self.src, self.dst)
        if opts:
            hdr += opts
        r = _from_bytes(hdr, "big") % 0xFFFF
        c = 0xFFFF - r if r else 0
        return hdr[:10] + c.to_bytes(2, "big") + hdr[12:]

    def __str__(self) -> str:
        """One-line pretty print."""
        frag = ""
        if self.df:
            frag += " DF"
        if self.is_fragment:
            frag += f" frag={self.frag_offset}{'+' if self.mf else ''}"
        opts = f" opts={self.options.hex()}" if self.options else ""
        return (f"IPv4 {addr_to_str(self.src)} > {addr_to_str(self.dst)} proto={self.proto} "
                f"len={self.payload_len} ttl={self.ttl} id={self.ident}{frag}{opts}")


def emit_fast(src: bytes, dst: bytes, proto: int, payload_len: int, ttl: int = 64,
              ident: int = 0, flags_frag: int = 0, tos: int = 0) -> bytes:
    """Hot path: a 20-byte header (no options) from plain values, without building an object.

    ``flags_frag`` is the raw flags/fragment-offset word (e.g. :data:`FLAG_DF`).
    """
    hdr = _pack_hdr(0x45, tos, HEADER_LEN + payload_len, ident, flags_frag, ttl, proto, 0,
                    src, dst)
    r = _from_bytes(hdr, "big") % 0xFFFF
    return _pack_hdr(0x45, tos, HEADER_LEN + payload_len, ident, flags_frag, ttl, proto,
                     0xFFFF - r if r else 0, src, dst)


def header_checksum_ok(buf: Buffer, header_len: int = HEADER_LEN) -> bool:
    """True if the first ``header_len`` bytes of ``buf`` carry a valid header checksum."""
    return _from_bytes(buf[:header_len], "big") % 0xFFFF == 0


def parse(buf: Buffer, verify_checksum: bool = True) -> tuple[Ipv4Header, memoryview]:
    """Parse an IPv4 datagram; the payload is cut at Total Length (link padding dropped)."""
    mv = buf if isinstance(buf, memoryview) else memoryview(buf)
    n = len(mv)
    if n < HEADER_LEN:
        raise TruncatedError(f"IPv4 packet of {n} bytes is shorter than {HEADER_LEN}")
    vi, tos, tlen, ident, frag, ttl, proto, _, src, dst = _unpack_hdr(mv)
    if vi >> 4 != 4:
        raise SanityError(f"IPv4 header with version {vi >> 4}")
    hlen = (vi & 0x0F) << 2
    if hlen < HEADER_LEN:
        raise IntegrityError(f"IPv4 header length {hlen} is shorter than {HEADER_LEN}")
    if tlen < hlen:
        raise IntegrityError(f"IPv4 total length {tlen} is shorter than the header ({hlen})")
    if tlen > n:
        raise TruncatedError(f"IPv4 total length {tlen} exceeds the {n} bytes received")
    if verify_checksum and _from_bytes(mv[:hlen], "big") % 0xFFFF:
        raise ChecksumError("bad IPv4 header checksum")
    hdr = Ipv4Header(src, dst, proto, tlen - hlen, ttl, ident, bool(frag & FLAG_DF),
                     bool(frag & FLAG_MF), (frag & FRAG_OFFSET_MASK) << 3, tos >> 2, tos & 3,
                     bytes(mv[HEADER_LEN:hlen]) if hlen > HEADER_LEN else b"")
    return hdr, mv[hlen:tlen]


def parse_fast(buf: Buffer) -> tuple[int, bytes, bytes, int, int, int, int]:
    """Hot path: validate the header and return the fields the receive path needs.

    Returns ``(proto, src, dst, header_len, total_len, flags_frag, ttl)`` where ``flags_frag`` is
    the raw 16-bit flags/fragment-offset word (``flags_frag & 0x3FFF`` is non-zero for fragments).
    Raises the same errors as :func:`parse`.
    """
    n = len(buf)
    if n < HEADER_LEN:
        raise TruncatedError(f"IPv4 packet of {n} bytes is shorter than {HEADER_LEN}")
    vi, _, tlen, _, frag, ttl, proto, _, src, dst = _unpack_hdr(buf)
    hlen = (vi & 0x0F) << 2
    if vi >> 4 != 4:
        raise SanityError(f"IPv4 header with version {vi >> 4}")
    if hlen < HEADER_LEN or tlen < hlen:
        raise IntegrityError(f"IPv4 header length {hlen} / total length {tlen} inconsistent")
    if tlen > n:
        raise TruncatedError(f"IPv4 total length {tlen} exceeds the {n} bytes received")
    if _from_bytes(buf[:hlen], "big") % 0xFFFF:
        raise ChecksumError("bad IPv4 header checksum")
    return proto, src, dst, hlen, tlen, frag, ttl


def copied_options(options: bytes) -> bytes:
    """The options that must be copied into every fragment (copied flag set), padded to 4."""
    out = bytearray()
    i, n = 0, len(options)
    while i < n:
        t = options[i]
        if t == OPT_EOL:
            break
        if t == OPT_NOP:
            i += 1
            continue
        if i + 1 >= n or options[i + 1] < 2 or i + options[i + 1] > n:
            raise SanityError("malformed IPv4 option list")
        ln = options[i + 1]
        if t & OPT_COPIED:
            out += options[i:i + ln]
        i += ln
    if len(out) & 3:
        out += bytes(4 - (len(out) & 3))
    return bytes(out)


def fragment(hdr: Ipv4Header, payload: Buffer, mtu: int) -> list[bytes]:
    """Split a datagram into IPv4 datagrams of at most ``mtu`` bytes (RFC 791 section 3.2).

    Returns the whole datagram unchanged (one element) if it fits.  The first fragment keeps all
    options, the others only the copied ones.  An already fragmented ``hdr`` is refragmented
    (offsets are relative to its ``frag_offset``; the last piece keeps its MF flag).  Raises
    ``ValueError`` if ``hdr.df`` is set and the datagram does not fit, or if the MTU is too small.
    """
    data = payload if isinstance(payload, memoryview) else memoryview(payload)
    if hdr.payload_len != len(data):
        hdr = replace(hdr, payload_len=len(data))
    if hdr.total_len <= mtu:
        return [hdr.emit() + bytes(data)]
    if hdr.df:
        raise ValueError(f"datagram of {hdr.total_len} bytes has DF set and exceeds MTU {mtu}")
    later_opts = copied_options(hdr.options) if hdr.options else b""
    out: list[bytes] = []
    off = 0
    n = len(data)
    opts = hdr.options
    while off < n:
        hlen = HEADER_LEN + ((len(opts) + 3) & ~3)
        room = (mtu - hlen) & ~7
        if room <= 0:
            raise ValueError(f"MTU {mtu} too small to fragment")
        chunk = data[off:off + room]
        last = off + len(chunk) >= n
        fh = replace(hdr, payload_len=len(chunk), options=opts, frag_offset=hdr.frag_offset + off,
                     mf=hdr.mf if last else True)
        out.append(fh.emit() + bytes(chunk))
        off += len(chunk)
        opts = later_opts
    return out


def parse_quoted(buf: Buffer) -> tuple[Ipv4Header, memoryview]:
    """Leniently parse the datagram quoted inside an ICMP error.

    The quote is usually cut, so Total Length is not checked against the buffer and the header
    checksum is not verified; the returned payload is whatever follows the header (at most Total
    Length), typically the first 8 bytes of the transport header.
    """
    mv = buf if isinstance(buf, memoryview) else memoryview(buf)
    n = len(mv)
    if n < HEADER_LEN:
        raise TruncatedError(f"quoted IPv4 header of {n} bytes is shorter than {HEADER_LEN}")
    vi, tos, tlen, ident, frag, ttl, proto, _, src, dst = _unpack_hdr(mv)
    if vi >> 4 != 4:
        raise SanityError(f"quoted IPv4 header with version {vi >> 4}")
    hlen = (vi & 0x0F) << 2
    if hlen < HEADER_LEN or tlen < hlen:
        raise IntegrityError(f"quoted IPv4 header length {hlen} / total {tlen} inconsistent")
    if n < hlen:
        raise TruncatedError("quoted IPv4 header is cut inside its options")
    hdr = Ipv4Header(src, dst, proto, tlen - hlen, ttl, ident, bool(frag & FLAG_DF),
                     bool(frag & FLAG_MF), (frag & FRAG_OFFSET_MASK) << 3, tos >> 2, tos & 3,
                     bytes(mv[HEADER_LEN:hlen]) if hlen > HEADER_LEN else b"")
    return hdr, mv[hlen:min(tlen, n)]
