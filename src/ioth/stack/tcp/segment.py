"""The TCP core's own segment type and its byte codec (header, options, checksum).

:class:`Segment` is what :class:`~ioth.stack.tcp.connection.TcpConnection` consumes and
produces: sequence/ack numbers as on the wire (32-bit), flags, the raw 16-bit window, decoded
options and the payload as a ``memoryview`` or ``bytes``.  :func:`decode` / :func:`encode` convert
to and from bytes, including the pseudo-header checksum (RFC 9293 3.1) for IPv4 and IPv6.

This is a thin adapter over :mod:`ioth.wire.tcp` (checksum, header and option parsing, emit).
The common data-path option layout ``NOP NOP TS`` (RFC 7323 appendix A) is decoded with one
``struct`` call; anything else goes through :func:`ioth.wire.tcp.parse_options`.
"""

from __future__ import annotations

import struct

from ioth.wire import tcp as wire_tcp
from ioth.wire.errors import SanityError, TruncatedError

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80

HEADER_LEN = 20
_HDR = struct.Struct("!HHIIBBHHH")
_TS_FAST = b"\x01\x01\x08\x0a"
_II = struct.Struct("!II")
_H = struct.Struct("!H")
# the SYN options of a stack with everything on, Linux's layout: MSS, SACK-permitted,
# Timestamps, NOP, window scale (20 bytes, no padding)
_SYN_ALL = struct.Struct("!HHHHIIBBBB")
_SYN_ALL_FIELDS = struct.Struct("!2xH4xII3xB")  # mss, tsval, tsecr, wscale of that layout
_SYN_MSS = b"\x02\x04"
_SYN_SACK_TS = b"\x04\x02\x08\x0a"
_SYN_WS = b"\x01\x03\x03"

Buffer = bytes | bytearray | memoryview


class Segment:
    """One TCP segment without addresses and ports (the layer owns those).

    The options may be passed by keyword or, on hot paths, positionally in the order of
    ``__init__`` (mss, wscale, sack_perm, tsval, tsecr, sack).

    ``urg``, the urgent pointer field (RFC 9293 3.1), is set only on segments whose flags
    have URG (:func:`decode`, the urgent-mode output of a connection): it is left unset on
    the others, so that a segment costs no extra store; read it through :func:`urgent`."""

    __slots__ = (
        "ack",
        "flags",
        "mss",
        "payload",
        "sack",
        "sack_perm",
        "seq",
        "tsecr",
        "tsval",
        "urg",
        "window",
        "wscale",
    )
    urg: int  # (declared for the type checker: not set by __init__)

    def __init__(
        self,
        seq: int = 0,
        ack: int = 0,
        flags: int = 0,
        window: int = 0,
        payload: Buffer = b"",
        mss: int | None = None,
        wscale: int | None = None,
        sack_perm: bool = False,
        tsval: int | None = None,
        tsecr: int = 0,
        sack: tuple[tuple[int, int], ...] | None = None,
    ) -> None:
        self.seq = seq
        self.ack = ack
        self.flags = flags
        self.window = window
        self.payload = payload
        self.mss = mss
        self.wscale = wscale
        self.sack_perm = sack_perm
        self.tsval = tsval
        self.tsecr = tsecr
        self.sack = sack

    def __len__(self) -> int:
        """Sequence space the segment occupies (payload plus SYN and FIN)."""
        return len(self.payload) + (self.flags & SYN and 1) + (self.flags & FIN and 1)

    def __repr__(self) -> str:
        names = "".join(c for bit, c in _FLAG_CHARS if self.flags & bit)
        text = f"<tcp [{names}] seq={self.seq} ack={self.ack} win={self.window}"
        if self.mss is not None:
            text += f" mss={self.mss}"
        if self.wscale is not None:
            text += f" ws={self.wscale}"
        if self.sack_perm:
            text += " sackOK"
        if self.tsval is not None:
            text += f" ts={self.tsval}/{self.tsecr}"
        if self.sack:
            text += " sack=" + ",".join(f"{a}-{b}" for a, b in self.sack)
        if self.flags & URG:
            text += f" urg={urgent(self)}"
        return text + f" len={len(self.payload)}>"


def urgent(seg: Segment) -> int:
    """The urgent pointer field of ``seg`` (0 when it was not set)."""
    return getattr(seg, "urg", 0) if seg.flags & URG else 0


_FLAG_CHARS = ((SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P"), (ACK, "."), (URG, "U"))


def decode(
    data: Buffer, src: bytes | None = None, dst: bytes | None = None
) -> tuple[int, int, Segment]:
    """Parse ``data`` into ``(src_port, dst_port, segment)``; the payload is a memoryview slice.

    With ``src``/``dst`` (raw 4- or 16-byte addresses) the checksum is verified (through
    :func:`ioth.wire.tcp.parse_fast`).  Raises :class:`~ioth.wire.errors.WireError`
    subclasses on bad input.
    """
    mv = data if isinstance(data, memoryview) else memoryview(data)
    if src is not None and dst is not None:
        sport, dport, seq, ack, flags, window, hlen = wire_tcp.parse_fast(mv, src, dst)
    else:
        n = len(mv)
        if n < HEADER_LEN:
            raise TruncatedError(f"tcp segment of {n} bytes is shorter than the 20-byte header")
        sport, dport, seq, ack, off, flags, window, _csum, _urg = _HDR.unpack_from(mv, 0)
        hlen = (off >> 4) * 4
        if hlen < HEADER_LEN:
            raise SanityError(f"tcp data offset {hlen} is below 20")
        if hlen > n:
            raise TruncatedError(f"tcp header length {hlen} exceeds the segment ({n} bytes)")
    seg = Segment(seq, ack, flags & 0xFF, window, mv[hlen:])
    if flags & URG:
        seg.urg = _H.unpack_from(mv, 18)[0]
    if hlen == 32 and mv[20:24] == _TS_FAST:
        seg.tsval, seg.tsecr = _II.unpack_from(mv, 24)
    elif (hlen == 40 and mv[20:22] == _SYN_MSS and mv[24:28] == _SYN_SACK_TS
          and mv[36:39] == _SYN_WS):
        # the SYN options of a Linux-like stack (see options_bytes): what parse_options gives
        seg.mss, seg.tsval, seg.tsecr, seg.wscale = _SYN_ALL_FIELDS.unpack_from(mv, 20)
        seg.sack_perm = True
    elif hlen > HEADER_LEN:
        # (a malformed option ends the options, the segment counts: as Linux)
        hdr = wire_tcp.parse_options(mv[HEADER_LEN:hlen], False)
        seg.mss = hdr.mss
        seg.wscale = hdr.wscale
        seg.sack_perm = hdr.sack_permitted
        if hdr.timestamps is not None:
            seg.tsval, seg.tsecr = hdr.timestamps
        if hdr.sack_blocks:
            seg.sack = hdr.sack_blocks
    return sport, dport, seg


def options_bytes(seg: Segment) -> bytes:
    """The options of ``seg`` laid out like Linux does, padded to a multiple of 4."""
    if seg.mss is None and seg.wscale is None and not seg.sack_perm and not seg.sack:
        if seg.tsval is None:
            return b""
        return _TS_FAST + _II.pack(seg.tsval, seg.tsecr)
    if (seg.mss is not None and seg.sack_perm and seg.tsval is not None
            and seg.wscale is not None and not seg.sack):
        return _SYN_ALL.pack(0x0204, seg.mss, 0x0402, 0x080A, seg.tsval, seg.tsecr,
                             1, 3, 3, seg.wscale)
    parts: list[bytes] = []
    if seg.mss is not None:
        parts.append(b"\x02\x04" + _H.pack(seg.mss))
    if seg.sack_perm:
        parts.append(b"\x04\x02" if seg.tsval is not None else b"\x01\x01\x04\x02")
    if seg.tsval is not None:
        ts = b"\x08\x0a" + _II.pack(seg.tsval, seg.tsecr)
        parts.append(ts if seg.sack_perm else b"\x01\x01" + ts)
    if seg.wscale is not None:
        parts.append(b"\x01\x03\x03" + bytes((seg.wscale,)))
    if seg.sack:
        blocks = seg.sack
        parts.append(
            b"\x01\x01\x05"
            + bytes((2 + 8 * len(blocks),))
            + struct.pack(f"!{2 * len(blocks)}I", *(v for block in blocks for v in block))
        )
    opts = b"".join(parts)
    pad = -len(opts) % 4
    return opts + b"\x00" * pad if pad else opts


def encode(
    seg: Segment,
    sport: int,
    dport: int,
    src: bytes | None = None,
    dst: bytes | None = None,
) -> bytes:
    """Emit ``seg`` as bytes; with ``src``/``dst`` the checksum field is filled in
    (through :func:`ioth.wire.tcp.emit_fast`)."""
    opts = options_bytes(seg)
    payload = seg.payload
    urg = getattr(seg, "urg", 0) if seg.flags & URG else 0
    if src is not None and dst is not None:
        hdr = wire_tcp.emit_fast(
            sport, dport, seg.seq, seg.ack, seg.flags, seg.window, payload, src, dst, opts, urg
        )
    else:
        hlen = HEADER_LEN + len(opts)
        hdr = _HDR.pack(
            sport, dport, seg.seq, seg.ack, (hlen >> 2) << 4, seg.flags, seg.window, 0, urg
        ) + opts
    return hdr + payload if payload else hdr
