"""Ethernet II frames with optional 802.1Q (C-tag) and 802.1ad (S-tag) VLAN tags; MAC helpers.

::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                    Destination MAC (48 bits)                  |
    +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                               |                               |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
    |                      Source MAC (48 bits)                     |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  [TPID 0x88a8/0x8100 | PCP |D|         VID         ] ...      |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |           EtherType           |  Payload ...
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Frames reach us without the FCS (as on TAP devices and VDE cables).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from ioth.wire.errors import AddressError, SanityError, TruncatedError

Buffer = bytes | bytearray | memoryview

# Field offsets
DST = slice(0, 6)
SRC = slice(6, 12)
ETHERTYPE_OFFSET = 12
HEADER_LEN = 14
TAG_LEN = 4
MIN_FRAME_LEN = 60
"""Minimum Ethernet frame length without FCS; shorter frames are padded by :func:`pad`."""
MAX_TAGS = 2

# EtherTypes
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_VLAN = 0x8100
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_QINQ = 0x88A8
ETHERTYPE_QINQ_OLD = 0x9100
TAG_TPIDS = frozenset((ETHERTYPE_VLAN, ETHERTYPE_QINQ, ETHERTYPE_QINQ_OLD))

BROADCAST = b"\xff\xff\xff\xff\xff\xff"
ZERO_MAC = b"\x00\x00\x00\x00\x00\x00"

_H = struct.Struct("!H")
_HDR = struct.Struct("!6s6sH")
_unpack_h = _H.unpack_from
_MAC_RE = re.compile(r"^[0-9a-fA-F]{1,2}([:-])[0-9a-fA-F]{1,2}(\1[0-9a-fA-F]{1,2}){4}$")
_MAC_PLAIN_RE = re.compile(r"^[0-9a-fA-F]{12}$")


def mac_to_str(mac: bytes) -> str:
    """``b'\\x02\\x00...'`` -> ``'02:00:...'`` (lower case, colon separated)."""
    return mac.hex(":")


def str_to_mac(text: str) -> bytes:
    """Parse ``'02:00:5e:10:00:01'``, ``'02-00-5e-10-00-01'`` or ``'02005e100001'``.

    Raises :class:`ioth.wire.errors.AddressError` naming ``text`` if it is not a MAC address.
    """
    t = text.strip()
    if _MAC_RE.match(t):
        return bytes(int(p, 16) for p in re.split("[:-]", t))
    if _MAC_PLAIN_RE.match(t):
        return bytes.fromhex(t)
    raise AddressError(f"invalid MAC address {text!r}")


def is_multicast(mac: bytes) -> bool:
    """True for group addresses (I/G bit set), broadcast included."""
    return bool(mac[0] & 1)


def is_broadcast(mac: bytes) -> bool:
    """True for ff:ff:ff:ff:ff:ff."""
    return mac == BROADCAST


def is_unicast(mac: bytes) -> bool:
    """True for individual addresses."""
    return not mac[0] & 1


def is_local(mac: bytes) -> bool:
    """True for locally administered addresses (U/L bit set)."""
    return bool(mac[0] & 2)


def ipv4_multicast_mac(group: bytes) -> bytes:
    """Ethernet address of an IPv4 multicast group (RFC 1112 6.4): 01:00:5e + low 23 bits."""
    return b"\x01\x00\x5e" + bytes((group[1] & 0x7F,)) + group[2:4]


def ipv6_multicast_mac(group: bytes) -> bytes:
    """Ethernet address of an IPv6 multicast group (RFC 2464 section 7): 33:33 + low 32 bits."""
    return b"\x33\x33" + group[12:16]


def pad(frame: bytes) -> bytes:
    """Pad ``frame`` with zeros to the 60-byte Ethernet minimum."""
    n = len(frame)
    return frame + bytes(MIN_FRAME_LEN - n) if n < MIN_FRAME_LEN else frame


@dataclass(frozen=True, slots=True)
class VlanTag:
    """One 802.1Q / 802.1ad tag::

        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        |              TPID             | PCP |D|          VID          |
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    """

    vid: int
    pcp: int = 0
    dei: bool = False
    tpid: int = ETHERTYPE_VLAN

    @property
    def tci(self) -> int:
        """The 16-bit Tag Control Information."""
        return (self.pcp << 13) | (int(self.dei) << 12) | self.vid

    def emit(self) -> bytes:
        """The 4 tag bytes."""
        return struct.pack("!HH", self.tpid, self.tci)

    def __str__(self) -> str:
        """One-line pretty print."""
        return f"VLAN tpid=0x{self.tpid:04x} vid={self.vid} pcp={self.pcp}" + (
            " dei" if self.dei else "")


@dataclass(frozen=True, slots=True)
class EthernetHeader:
    """An Ethernet II header; ``tags`` lists VLAN tags outermost first (see module diagram)."""

    dst: bytes
    src: bytes
    ethertype: int
    tags: tuple[VlanTag, ...] = ()

    @property
    def header_len(self) -> int:
        """Length of the emitted header, tags included."""
        return HEADER_LEN + TAG_LEN * len(self.tags)

    @property
    def vid(self) -> int | None:
        """VID of the innermost tag, or ``None`` when untagged."""
        return self.tags[-1].vid if self.tags else None

    def emit(self) -> bytes:
        """The header bytes (prepend to the payload)."""
        if not self.tags:
            return _HDR.pack(self.dst, self.src, self.ethertype)
        return b"".join((self.dst, self.src, *(t.emit() for t in self.tags),
                         _H.pack(self.ethertype)))

    def __str__(self) -> str:
        """One-line pretty print."""
        tags = "".join(f" [{t}]" for t in self.tags)
        return (f"Ethernet {mac_to_str(self.src)} > {mac_to_str(self.dst)}{tags} "
                f"type=0x{self.ethertype:04x}")


def emit_fast(dst: bytes, src: bytes, ethertype: int) -> bytes:
    """Hot path: an untagged 14-byte header from plain values."""
    return _HDR.pack(dst, src, ethertype)


def parse(buf: Buffer) -> tuple[EthernetHeader, memoryview]:
    """Parse an Ethernet frame (up to :data:`MAX_TAGS` VLAN tags); return header and payload."""
    mv = buf if isinstance(buf, memoryview) else memoryview(buf)
    n = len(mv)
    if n < HEADER_LEN:
        raise TruncatedError(f"Ethernet frame of {n} bytes is shorter than {HEADER_LEN}")
    dst, src, etype = _HDR.unpack_from(mv)
    if etype not in TAG_TPIDS:
        return EthernetHeader(dst, src, etype), mv[HEADER_LEN:]
    tags: list[VlanTag] = []
    off = ETHERTYPE_OFFSET
    while etype in TAG_TPIDS:
        if len(tags) == MAX_TAGS:
            raise SanityError(f"more than {MAX_TAGS} VLAN tags")
        if n < off + TAG_LEN + 2:
            raise TruncatedError("Ethernet frame truncated inside a VLAN tag")
        tci, etype = struct.unpack_from("!HH", mv, off + 2)
        tags.append(VlanTag(tci & 0x0FFF, tci >> 13, bool(tci & 0x1000), _unpack_h(mv, off)[0]))
        off += TAG_LEN
    return EthernetHeader(dst, src, etype, tuple(tags)), mv[off + 2:]


def parse_fast(buf: Buffer) -> tuple[bytes, bytes, int, int]:
    """Hot path: return ``(dst, src, ethertype, payload_offset)`` of an untagged frame.

    Tagged frames are handled too (the innermost EtherType is returned, the tags are skipped);
    use :func:`parse` to read them.
    """
    if len(buf) < HEADER_LEN:
        raise TruncatedError(f"Ethernet frame of {len(buf)} bytes is shorter than {HEADER_LEN}")
    dst, src, etype = _HDR.unpack_from(buf)
    if etype not in TAG_TPIDS:
        return dst, src, etype, HEADER_LEN
    hdr, payload = parse(buf)
    return dst, src, hdr.ethertype, len(buf) - len(payload)
