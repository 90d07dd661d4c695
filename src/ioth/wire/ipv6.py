"""IPv6 fixed header (RFC 8200) and the extension header chain walker.

::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |Version| Traffic Class |           Flow Label                  |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |         Payload Length        |  Next Header  |   Hop Limit   |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                                                               |
    +                         Source Address (128 bits)             +
    |                                                               |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                                                               |
    +                      Destination Address (128 bits)           +
    |                                                               |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Extension headers handled by :func:`walk`: Hop-by-Hop Options (0, only first), Routing (43),
Fragment (44), Destination Options (60).  Options use the RFC 8200 section 4.2 action bits of
unknown option types (00 skip, 01 discard, 10 discard + ICMP, 11 discard + ICMP unless the
destination is multicast).  Fragment header::

    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Next Header  |   Reserved    |      Fragment Offset    |Res|M|
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                         Identification                        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from ioth.wire.errors import (
    AddressError,
    ParameterProblemError,
    SanityError,
    TruncatedError,
)

Buffer = bytes | bytearray | memoryview

# Field offsets
VER_TC_FL = 0
PAYLOAD_LEN = 4
NEXT_HEADER = 6
HOP_LIMIT = 7
SRC = slice(8, 24)
DST = slice(24, 40)
HEADER_LEN = 40
MIN_MTU = 1280

# Next Header values
NH_HOPOPT = 0
NH_ICMP = 1
NH_TCP = 6
NH_UDP = 17
NH_IPV6 = 41
NH_ROUTING = 43
NH_FRAGMENT = 44
NH_ESP = 50
NH_AH = 51
NH_ICMPV6 = 58
NH_NONE = 59
NH_DSTOPTS = 60
EXTENSION_HEADERS = frozenset((NH_HOPOPT, NH_ROUTING, NH_FRAGMENT, NH_DSTOPTS))
FRAG_HEADER_LEN = 8

# Option types
OPT_PAD1 = 0
OPT_PADN = 1
OPT_ROUTER_ALERT = 5
ROUTER_ALERT_MLD = 0

# ICMPv6 Parameter Problem codes (RFC 4443 3.4)
PARAM_ERRONEOUS_FIELD = 0
PARAM_UNKNOWN_NEXT_HEADER = 1
PARAM_UNKNOWN_OPTION = 2

UNSPECIFIED = bytes(16)
LOOPBACK = bytes(15) + b"\x01"
ALL_NODES = bytes.fromhex("ff020000000000000000000000000001")
ALL_ROUTERS = bytes.fromhex("ff020000000000000000000000000002")
V4MAPPED = bytes(10) + b"\xff\xff"  # prefix of IPv4-mapped addresses, ::ffff:a.b.c.d


def unmap(addr: bytes) -> bytes:
    """The IPv4 address inside an IPv4-mapped IPv6 address, else ``addr``."""
    if len(addr) == 16 and addr[:12] == V4MAPPED:
        return addr[12:]
    return addr
ALL_MLDV2_ROUTERS = bytes.fromhex("ff020000000000000000000000000016")

_HDR = struct.Struct("!IHBB16s16s")
_FRAG = struct.Struct("!BxHI")
_unpack_hdr = _HDR.unpack_from


def addr_to_str(addr: bytes) -> str:
    """16 bytes -> the RFC 5952 text form (``'2001:db8::1'``)."""
    return socket.inet_ntop(socket.AF_INET6, addr)


def str_to_addr(text: str) -> bytes:
    """``'2001:db8::1'`` -> 16 bytes; raises :class:`AddressError` naming ``text`` if invalid."""
    try:
        return socket.inet_pton(socket.AF_INET6, text.strip())
    except (OSError, ValueError):
        raise AddressError(f"invalid IPv6 address {text!r}") from None


def is_multicast(addr: bytes) -> bool:
    """True for ff00::/8."""
    return addr[0] == 0xFF


def is_link_local(addr: bytes) -> bool:
    """True for fe80::/10."""
    return addr[0] == 0xFE and addr[1] & 0xC0 == 0x80


def is_unspecified(addr: bytes) -> bool:
    """True for ::."""
    return addr == UNSPECIFIED


def solicited_node(addr: bytes) -> bytes:
    """The solicited-node multicast group of ``addr`` (RFC 4291 2.7.1): ff02::1:ffXX:XXXX."""
    return b"\xff\x02" + bytes(9) + b"\x01\xff" + addr[13:16]


def interface_id_from_mac(mac: bytes) -> bytes:
    """Modified EUI-64 interface identifier of a MAC address (RFC 4291 appendix A)."""
    return bytes((mac[0] ^ 2,)) + mac[1:3] + b"\xff\xfe" + mac[3:6]


def link_local_from_mac(mac: bytes) -> bytes:
    """fe80::/64 + the modified EUI-64 of ``mac``."""
    return b"\xfe\x80" + bytes(6) + interface_id_from_mac(mac)


@dataclass(frozen=True, slots=True)
class Ipv6Header:
    """The IPv6 fixed header (see the module diagram)."""

    src: bytes
    dst: bytes
    next_header: int
    payload_len: int
    hop_limit: int = 64
    traffic_class: int = 0
    flow_label: int = 0

    def emit(self) -> bytes:
        """The 40 header bytes."""
        return _HDR.pack(0x60000000 | (self.traffic_class << 20) | self.flow_label,
                         self.payload_len, self.next_header, self.hop_limit, self.src, self.dst)

    def __str__(self) -> str:
        """One-line pretty print."""
        return (f"IPv6 {addr_to_str(self.src)} > {addr_to_str(self.dst)} nh={self.next_header} "
                f"len={self.payload_len} hlim={self.hop_limit}")


def emit_fast(src: bytes, dst: bytes, next_header: int, payload_len: int, hop_limit: int = 64,
              traffic_class: int = 0, flow_label: int = 0) -> bytes:
    """Hot path: the 40 header bytes from plain values, without building an object."""
    return _HDR.pack(0x60000000 | (traffic_class << 20) | flow_label, payload_len, next_header,
                     hop_limit, src, dst)


def parse(buf: Buffer) -> tuple[Ipv6Header, memoryview]:
    """Parse the fixed header; the payload is cut at Payload Length (link padding dropped)."""
    mv = buf if isinstance(buf, memoryview) else memoryview(buf)
    n = len(mv)
    if n < HEADER_LEN:
        raise TruncatedError(f"IPv6 packet of {n} bytes is shorter than {HEADER_LEN}")
    vtf, plen, nh, hlim, src, dst = _unpack_hdr(mv)
    if vtf >> 28 != 6:
        raise SanityError(f"IPv6 header with version {vtf >> 28}")
    if HEADER_LEN + plen > n:
        raise TruncatedError(f"IPv6 payload length {plen} exceeds the {n - HEADER_LEN} bytes "
                             "received")
    hdr = Ipv6Header(src, dst, nh, plen, hlim, (vtf >> 20) & 0xFF, vtf & 0xFFFFF)
    return hdr, mv[HEADER_LEN:HEADER_LEN + plen]


def parse_fast(buf: Buffer) -> tuple[int, bytes, bytes, int, int]:
    """Hot path: return ``(next_header, src, dst, payload_len, hop_limit)``; payload at 40."""
    n = len(buf)
    if n < HEADER_LEN:
        raise TruncatedError(f"IPv6 packet of {n} bytes is shorter than {HEADER_LEN}")
    vtf, plen, nh, hlim, src, dst = _unpack_hdr(buf)
    if vtf >> 28 != 6:
        raise SanityError(f"IPv6 header with version {vtf >> 28}")
    if HEADER_LEN + plen > n:
        raise TruncatedError(f"IPv6 payload length {plen} exceeds the {n - HEADER_LEN} bytes "
                             "received")
    return nh, src, dst, plen, hlim


def parse_quoted(buf: Buffer) -> tuple[Ipv6Header, memoryview]:
    """Leniently parse the packet quoted in an ICMPv6 error (Payload Length not checked)."""
    mv = buf if isinstance(buf, memoryview) else memoryview(buf)
    if len(mv) < HEADER_LEN:
        raise TruncatedError(f"quoted IPv6 header of {len(mv)} bytes is shorter than 40")
    vtf, plen, nh, hlim, src, dst = _unpack_hdr(mv)
    if vtf >> 28 != 6:
        raise SanityError(f"quoted IPv6 header with version {vtf >> 28}")
    hdr = Ipv6Header(src, dst, nh, plen, hlim, (vtf >> 20) & 0xFF, vtf & 0xFFFFF)
    return hdr, mv[HEADER_LEN:HEADER_LEN + plen]


@dataclass(frozen=True, slots=True)
class FragmentHeader:
    """The Fragment extension header (see the module diagram); ``offset`` is in bytes."""

    next_header: int
    offset: int
    more: bool
    ident: int

    def emit(self) -> bytes:
        """The 8 header bytes."""
        return _FRAG.pack(self.next_header, self.offset | int(self.more), self.ident)

    @property
    def is_atomic(self) -> bool:
        """True for an atomic fragment (offset 0, no more fragments; RFC 6946)."""
        return self.offset == 0 and not self.more

    def __str__(self) -> str:
        """One-line pretty print."""
        return (f"IPv6 fragment nh={self.next_header} off={self.offset}"
                f"{'+' if self.more else ''} id=0x{self.ident:08x}")


@dataclass(frozen=True, slots=True)
class ExtChain:
    """The result of :func:`walk`.

    ``proto`` is the upper-layer protocol (or the next header after a Fragment header, or
    ``NH_NONE``), ``offset`` is where it starts in the IPv6 payload, ``nh_pointer`` is the offset
    (from the start of the IPv6 header) of the byte that holds ``proto`` (the pointer of an ICMPv6
    "unrecognized Next Header" error), ``fragment`` the Fragment header if one was met (the walk
    stops right after it: the rest is fragment data), ``frag_offset`` its offset in the payload
    (-1 if none; the bytes before it are the unfragmentable part), ``router_alert`` the value of
    a Hop-by-Hop Router Alert option if present.
    """

    proto: int
    offset: int
    nh_pointer: int = NEXT_HEADER
    fragment: FragmentHeader | None = None
    frag_offset: int = -1
    router_alert: int | None = None


def _walk_options(mv: memoryview, start: int, end: int, base: int, dst_multicast: bool
                  ) -> int | None:
    """Check the TLV options in ``mv[start:end]``; return the Router Alert value if present."""
    alert: int | None = None
    i = start
    while i < end:
        t = mv[i]
        if t == OPT_PAD1:
            i += 1
            continue
        if i + 2 > end:
            raise TruncatedError("IPv6 option truncated")
        ln = mv[i + 1]
        if i + 2 + ln > end:
            raise TruncatedError("IPv6 option overruns its extension header")
        if t == OPT_ROUTER_ALERT and ln == 2:
            alert = (mv[i + 2] << 8) | mv[i + 3]
        elif t != OPT_PADN:
            action = t >> 6
            if action == 1:
                raise ParameterProblemError(f"unknown IPv6 option 0x{t:02x}", 2, base + i, False)
            if action == 2 or action == 3:
                raise ParameterProblemError(f"unknown IPv6 option 0x{t:02x}", 2, base + i,
                                            action == 2 or not dst_multicast)
        i += 2 + ln
    return alert


def walk(payload: Buffer, next_header: int, dst_multicast: bool = False) -> ExtChain:
    """Walk the extension header chain at the start of an IPv6 ``payload``.

    Raises :class:`TruncatedError` for headers cut short and :class:`ParameterProblemError`
    (with the ICMPv6 code and pointer) for headers that must be rejected: Hop-by-Hop not first,
    an unknown option whose action bits say discard, a Routing header with segments left.
    """
    if next_header not in EXTENSION_HEADERS:
        return ExtChain(next_header, 0)
    mv = payload if isinstance(payload, memoryview) else memoryview(payload)
    n = len(mv)
    nh = next_header
    off = 0
    nh_ptr = NEXT_HEADER
    alert: int | None = None
    while nh in EXTENSION_HEADERS:
        base = HEADER_LEN + off
        if nh == NH_HOPOPT and off != 0:
            raise ParameterProblemError("Hop-by-Hop header not first", PARAM_UNKNOWN_NEXT_HEADER,
                                        nh_ptr)
        if n < off + 8:
            raise TruncatedError("IPv6 extension header truncated")
        if nh == NH_FRAGMENT:
            fnh, fo, ident = _FRAG.unpack_from(mv, off)
            frag = FragmentHeader(fnh, fo & 0xFFF8, bool(fo & 1), ident)
            return ExtChain(fnh, off + FRAG_HEADER_LEN, base, frag, off, alert)
        hlen = (mv[off + 1] + 1) << 3
        if n < off + hlen:
            raise TruncatedError("IPv6 extension header overruns the payload")
        if nh == NH_ROUTING:
            if mv[off + 3] != 0:
                raise ParameterProblemError(
                    f"Routing header type {mv[off + 2]} with {mv[off + 3]} segments left",
                    PARAM_ERRONEOUS_FIELD, base + 2)
        else:
            a = _walk_options(mv, off + 2, off + hlen, base, dst_multicast)
            if nh == NH_HOPOPT:
                alert = a
        nh_ptr = base
        nh = mv[off]
        off += hlen
    return ExtChain(nh, off, nh_ptr, None, -1, alert)


def emit_options_header(next_header: int, options: list[tuple[int, bytes]]) -> bytes:
    """A Hop-by-Hop or Destination Options header with ``options`` ((type, data) pairs).

    PadN / Pad1 padding is added to reach a multiple of 8 bytes.
    """
    body = b"".join(bytes((t, len(d))) + d for t, d in options)
    total = (2 + len(body) + 7) & ~7
    pad = total - 2 - len(body)
    if pad == 1:
        body += b"\x00"
    elif pad:
        body += bytes((OPT_PADN, pad - 2)) + bytes(pad - 2)
    return bytes((next_header, (total >> 3) - 1)) + body


def router_alert_header(next_header: int, value: int = ROUTER_ALERT_MLD) -> bytes:
    """The Hop-by-Hop header carrying a Router Alert option (RFC 2711), as MLD requires."""
    return emit_options_header(next_header, [(OPT_ROUTER_ALERT, value.to_bytes(2, "big"))])


def fragment(hdr: Ipv6Header, payload: Buffer, mtu: int, ident: int) -> list[bytes]:
    """Split a packet without extension headers into fragments of at most ``mtu`` bytes.

    ``hdr.next_header`` is the upper-layer protocol of ``payload``; every fragment carries a
    Fragment header with identification ``ident``.  Returns the packet unchanged if it fits.
    """
    data = payload if isinstance(payload, memoryview) else memoryview(payload)
    n = len(data)
    if HEADER_LEN + n <= mtu:
        return [Ipv6Header(hdr.src, hdr.dst, hdr.next_header, n, hdr.hop_limit,
                           hdr.traffic_class, hdr.flow_label).emit() + bytes(data)]
    room = (mtu - HEADER_LEN - FRAG_HEADER_LEN) & ~7
    if room <= 0:
        raise ValueError(f"MTU {mtu} too small to fragment")
    out: list[bytes] = []
    off = 0
    while off < n:
        chunk = data[off:off + room]
        more = off + len(chunk) < n
        fh = FragmentHeader(hdr.next_header, off, more, ident)
        ih = Ipv6Header(hdr.src, hdr.dst, NH_FRAGMENT, FRAG_HEADER_LEN + len(chunk),
                        hdr.hop_limit, hdr.traffic_class, hdr.flow_label)
        out.append(ih.emit() + fh.emit() + bytes(chunk))
        off += len(chunk)
    return out
