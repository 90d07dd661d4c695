"""The TCP core's own segment type and its byte codec (header, options, checksum).

:class:`Segment` is what :class:`~ioth.stack.tcp.connection.TcpConnection` consumes and
produces: sequence/ack numbers as on the wire (32-bit), flags, the raw 16-bit window, decoded
options and the payload as a ``memoryview`` or ``bytes``.  :func:`decode` / :func:`encode` convert
to and from bytes, including the pseudo-header checksum (RFC 9293 3.1) for IPv4 and IPv6.

Options (RFC 9293 3.2, RFC 7323, RFC 2018): the common data-path layout ``NOP NOP TS`` is parsed
with one ``struct`` call; anything else goes through a small loop over the options.
"""

from __future__ import annotations

import struct

from ioth.wire.checksum import IPPROTO_TCP, checksum, pseudo, verify
from ioth.wire.errors import ChecksumError, SanityError, TruncatedError

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

Buffer = bytes | bytearray | memoryview


class Segment:
    """One TCP segment without addresses and ports (the layer owns those)."""

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
        "window",
        "wscale",
    )

    def __init__(
        self,
        seq: int = 0,
        ack: int = 0,
        flags: int = 0,
        window: int = 0,
        payload: Buffer = b"",
        *,
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
        return text + f" len={len(self.payload)}>"


_FLAG_CHARS = ((SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P"), (ACK, "."), (URG, "U"))


def _options(seg: Segment, buf: Buffer, start: int, end: int) -> None:
    """Decode the options in ``buf[start:end]`` into ``seg`` (RFC 9293 3.2)."""
    if end - start == 12 and buf[start : start + 4] == _TS_FAST:
        seg.tsval, seg.tsecr = _II.unpack_from(buf, start + 4)
        return
    i = start
    while i < end:
        kind = buf[i]
        if kind == 0:  # End of Option List
            return
        if kind == 1:  # NOP
            i += 1
            continue
        if i + 1 >= end:
            raise TruncatedError(f"tcp option {kind} has no length byte")
        length = buf[i + 1]
        if length < 2 or i + length > end:
            raise SanityError(f"tcp option {kind} has bad length {length}")
        if kind == 2 and length == 4:
            seg.mss = _H.unpack_from(buf, i + 2)[0]
        elif kind == 3 and length == 3:
            seg.wscale = buf[i + 2]
        elif kind == 4 and length == 2:
            seg.sack_perm = True
        elif kind == 8 and length == 10:
            seg.tsval, seg.tsecr = _II.unpack_from(buf, i + 2)
        elif kind == 5 and (length - 2) % 8 == 0 and length > 2:
            n = (length - 2) // 8
            vals = struct.unpack_from(f"!{2 * n}I", buf, i + 2)
            seg.sack = tuple(zip(vals[0::2], vals[1::2], strict=True))
        i += length


def decode(
    data: Buffer, src: bytes | None = None, dst: bytes | None = None
) -> tuple[int, int, Segment]:
    """Parse ``data`` into ``(src_port, dst_port, segment)``; the payload is a memoryview slice.

    With ``src``/``dst`` (raw 4- or 16-byte addresses) the checksum is verified.  Raises
    :class:`~ioth.wire.errors.WireError` subclasses on bad input.
    """
    n = len(data)
    if n < HEADER_LEN:
        raise TruncatedError(f"tcp segment of {n} bytes is shorter than the 20-byte header")
    sport, dport, seq, ack, off, flags, window, _csum, _urg = _HDR.unpack_from(data, 0)
    hlen = (off >> 4) * 4
    if hlen < HEADER_LEN:
        raise SanityError(f"tcp data offset {hlen} is below 20")
    if hlen > n:
        raise TruncatedError(f"tcp header length {hlen} exceeds the segment ({n} bytes)")
    if src is not None and dst is not None and not verify(data, pseudo(src, dst, IPPROTO_TCP, n)):
        raise ChecksumError("tcp checksum does not verify")
    mv = data if isinstance(data, memoryview) else memoryview(data)
    seg = Segment(seq, ack, flags, window, mv[hlen:])
    if hlen > HEADER_LEN:
        _options(seg, data, HEADER_LEN, hlen)
    return sport, dport, seg


def options_bytes(seg: Segment) -> bytes:
    """The options of ``seg`` laid out like Linux does, padded to a multiple of 4."""
    if seg.mss is None and seg.wscale is None and not seg.sack_perm and not seg.sack:
        if seg.tsval is None:
            return b""
        return _TS_FAST + _II.pack(seg.tsval, seg.tsecr)
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
) -> bytearray:
    """Emit ``seg`` as bytes; with ``src``/``dst`` the checksum field is filled in."""
    opts = options_bytes(seg)
    hlen = HEADER_LEN + len(opts)
    payload = seg.payload
    out = bytearray(hlen + len(payload))
    _HDR.pack_into(
        out, 0, sport, dport, seg.seq, seg.ack, (hlen >> 2) << 4, seg.flags, seg.window, 0, 0
    )
    if opts:
        out[HEADER_LEN:hlen] = opts
    if payload:
        out[hlen:] = payload
    if src is not None and dst is not None:
        _H.pack_into(out, 16, checksum(out, pseudo(src, dst, IPPROTO_TCP, len(out))))
    return out
