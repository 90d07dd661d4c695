"""TCP header (RFC 9293) with options MSS, Window Scale, SACK-permitted, SACK (RFC 2018),
Timestamps (RFC 7323), NOP and EOL.

::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |          Source Port          |       Destination Port        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                        Sequence Number                        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                    Acknowledgment Number                      |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Data |       |C|E|U|A|P|R|S|F|                               |
    | Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
    |       |       |R|E|G|K|H|T|N|N|                               |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |           Checksum            |         Urgent Pointer        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                           Options                             |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Two APIs: :class:`TcpHeader` with :func:`parse` / :meth:`TcpHeader.emit` (options decoded into
fields), and a data-path fast path without objects: :func:`parse_fast` returns a tuple of the
hot fields, :func:`timestamps` reads the Timestamps option, :func:`emit_fast` builds a header from
plain values and pre-encoded option bytes (:func:`ts_option`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ioth.wire.checksum import partial_sum
from ioth.wire.errors import ChecksumError, IntegrityError, SanityError, TruncatedError

Buffer = bytes | bytearray | memoryview

# Field offsets
SRC_PORT = 0
DST_PORT = 2
SEQ_NUM = 4
ACK_NUM = 8
OFFSET_FLAGS = 12
WINDOW = 14
CHECKSUM = 16
URGENT = 18
HEADER_LEN = 20
MAX_HEADER_LEN = 60
MAX_OPTIONS_LEN = 40
PROTO_TCP = 6

# Flags
FIN = 0x001
SYN = 0x002
RST = 0x004
PSH = 0x008
ACK = 0x010
URG = 0x020
ECE = 0x040
CWR = 0x080
AE = 0x100
"""Accurate ECN (formerly NS), the lowest reserved bit."""
FLAGS_MASK = 0x0FFF

# Option kinds
OPT_EOL = 0
OPT_NOP = 1
OPT_MSS = 2
OPT_WSCALE = 3
OPT_SACK_PERMITTED = 4
OPT_SACK = 5
OPT_TIMESTAMPS = 8
MAX_WSCALE = 14

_HDR = struct.Struct("!HHIIHHHH")
_pack = _HDR.pack
_unpack = _HDR.unpack_from
_TS = struct.Struct("!II")
_TS_ALIGNED = b"\x01\x01\x08\x0a"
_from_bytes = int.from_bytes

_FLAG_CHARS = ((FIN, "F"), (SYN, "S"), (RST, "R"), (PSH, "P"), (ACK, "."), (URG, "U"),
               (ECE, "E"), (CWR, "W"), (AE, "A"))


def flags_to_str(flags: int) -> str:
    """tcpdump-style flags: ``'S.'`` for SYN+ACK."""
    return "".join(c for f, c in _FLAG_CHARS if flags & f) or "none"


def ts_option(tsval: int, tsecr: int) -> bytes:
    """NOP NOP Timestamps: the 12 option bytes sent on every segment of a timestamped flow."""
    return _TS_ALIGNED + _TS.pack(tsval, tsecr)


def sack_option(blocks: tuple[tuple[int, int], ...]) -> bytes:
    """NOP NOP SACK with ``blocks`` (left, right) edges (at most 4, or 3 with timestamps)."""
    return (bytes((OPT_NOP, OPT_NOP, OPT_SACK, 2 + 8 * len(blocks)))
            + b"".join(_TS.pack(a, b) for a, b in blocks))


@dataclass(frozen=True, slots=True)
class TcpHeader:
    """A TCP header (see the module diagram) with decoded options.

    ``flags`` holds the 12 bits after the data offset (``SYN | ACK`` ...).  Options are
    emitted in the Linux order: MSS, SACK-permitted + Timestamps, NOP + Window Scale, SACK
    blocks, then ``other_options`` (kind, data) verbatim, padded with EOL to 4 bytes.
    """

    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: int
    window: int
    urgent: int = 0
    mss: int | None = None
    wscale: int | None = None
    sack_permitted: bool = False
    sack_blocks: tuple[tuple[int, int], ...] = ()
    timestamps: tuple[int, int] | None = None
    other_options: tuple[tuple[int, bytes], ...] = ()

    def options_bytes(self) -> bytes:
        """The encoded options, padded to a multiple of 4 (at most 40 bytes)."""
        out = bytearray()
        if self.mss is not None:
            out += struct.pack("!BBH", OPT_MSS, 4, self.mss)
        if self.timestamps is not None:
            out += b"\x04\x02" if self.sack_permitted else b"\x01\x01"
            out += b"\x08\x0a" + _TS.pack(*self.timestamps)
        elif self.sack_permitted:
            out += b"\x01\x01\x04\x02"
        if self.wscale is not None:
            out += bytes((OPT_NOP, OPT_WSCALE, 3, self.wscale))
        if self.sack_blocks:
            out += sack_option(self.sack_blocks)
        for kind, data in self.other_options:
            out += bytes((kind, 2 + len(data))) + data
        if len(out) & 3:
            out += bytes(4 - (len(out) & 3))
        if len(out) > MAX_OPTIONS_LEN:
            raise ValueError(f"TCP options need {len(out)} bytes, more than {MAX_OPTIONS_LEN}")
        return bytes(out)

    @property
    def header_len(self) -> int:
        """Length of the emitted header, options included."""
        return HEADER_LEN + len(self.options_bytes())

    def emit(self, payload: Buffer, src: bytes, dst: bytes) -> bytes:
        """The header bytes (options included) with the checksum over ``payload``."""
        return emit_fast(self.src_port, self.dst_port, self.seq, self.ack, self.flags,
                         self.window, payload, src, dst, self.options_bytes(), self.urgent)

    def __str__(self) -> str:
        """One-line pretty print."""
        opts = []
        if self.mss is not None:
            opts.append(f"mss {self.mss}")
        if self.sack_permitted:
            opts.append("sackOK")
        if self.timestamps is not None:
            opts.append(f"TS val {self.timestamps[0]} ecr {self.timestamps[1]}")
        if self.wscale is not None:
            opts.append(f"wscale {self.wscale}")
        if self.sack_blocks:
            opts.append("sack " + " ".join(f"{a}:{b}" for a, b in self.sack_blocks))
        opts.extend(f"opt{k}" for k, _ in self.other_options)
        o = f" [{', '.join(opts)}]" if opts else ""
        return (f"TCP {self.src_port} > {self.dst_port} [{flags_to_str(self.flags)}] "
                f"seq={self.seq} ack={self.ack} win={self.window}{o}")


def emit_fast(src_port: int, dst_port: int, seq: int, ack: int, flags: int, window: int,
              payload: Buffer, src: bytes, dst: bytes, options: bytes = b"",
              urgent: int = 0) -> bytes:
    """Build a header from plain values; ``options`` are encoded bytes (a multiple of 4)."""
    hlen = HEADER_LEN + len(options)
    hdr = _pack(src_port, dst_port, seq, ack, (hlen << 10) | flags, window, 0, urgent)
    if options:
        hdr += options
    length = hlen + len(payload)
    s = (_from_bytes(src, "big") + _from_bytes(dst, "big") + PROTO_TCP + length
         + _from_bytes(hdr, "big") + partial_sum(payload))
    r = s % 0xFFFF
    c = 0xFFFF - r if r else 0
    return hdr[:16] + c.to_bytes(2, "big") + hdr[18:]


def checksum_ok(buf: Buffer, src: bytes, dst: bytes) -> bool:
    """True if the segment ``buf`` (header and payload) verifies against the pseudo-header."""
    s = (_from_bytes(src, "big") + _from_bytes(dst, "big") + PROTO_TCP + len(buf)
         + partial_sum(buf))
    return s % 0xFFFF == 0


def _parse_options(opts: memoryview, strict: bool = True
                   ) -> tuple[int | None, int | None, bool, tuple[tuple[int, int], ...],
                              tuple[int, int] | None, tuple[tuple[int, bytes], ...]]:
    mss: int | None = None
    wscale: int | None = None
    sack_ok = False
    sack: tuple[tuple[int, int], ...] = ()
    ts: tuple[int, int] | None = None
    other: list[tuple[int, bytes]] = []
    i, n = 0, len(opts)
    while i < n:
        kind = opts[i]
        if kind == OPT_EOL:
            break
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= n:
            if strict:
                raise SanityError(f"TCP option {kind} truncated")
            break
        ln = opts[i + 1]
        if ln < 2 or i + ln > n:
            if strict:
                raise SanityError(f"TCP option {kind} with bad length {ln}")
            break
        if kind == OPT_MSS and ln == 4:
            mss = (opts[i + 2] << 8) | opts[i + 3]
        elif kind == OPT_WSCALE and ln == 3:
            wscale = opts[i + 2]
        elif kind == OPT_SACK_PERMITTED and ln == 2:
            sack_ok = True
        elif kind == OPT_TIMESTAMPS and ln == 10:
            ts = _TS.unpack_from(opts, i + 2)
        elif kind == OPT_SACK and ln >= 10 and (ln - 2) % 8 == 0:
            sack = tuple(_TS.unpack_from(opts, j) for j in range(i + 2, i + ln, 8))
        else:
            other.append((kind, bytes(opts[i + 2:i + ln])))
        i += ln
    return mss, wscale, sack_ok, sack, ts, tuple(other)


def parse(buf: Buffer, src: bytes | None = None, dst: bytes | None = None
          ) -> tuple[TcpHeader, memoryview]:
    """Parse a TCP segment (an IP payload); verify the checksum when ``src``/``dst`` are given.

    Malformed options (length below 2 or overrunning the header) raise :class:`SanityError`;
    known options with an unexpected length are kept in ``other_options``.
    """
    mv = buf if isinstance(buf, memoryview) else memoryview(buf)
    n = len(mv)
    if n < HEADER_LEN:
        raise TruncatedError(f"TCP segment of {n} bytes is shorter than {HEADER_LEN}")
    sport, dport, seq, ack, off_flags, window, _, urgent = _unpack(mv)
    hlen = (off_flags >> 12) << 2
    if hlen < HEADER_LEN:
        raise IntegrityError(f"TCP data offset {hlen} is shorter than {HEADER_LEN}")
    if hlen > n:
        raise TruncatedError(f"TCP header of {hlen} bytes exceeds the {n} bytes received")
    if src is not None and dst is not None and not checksum_ok(mv, src, dst):
        raise ChecksumError("bad TCP checksum")
    if hlen == HEADER_LEN:
        return TcpHeader(sport, dport, seq, ack, off_flags & FLAGS_MASK, window, urgent), mv[20:]
    mss, ws, sack_ok, sack, ts, other = _parse_options(mv[HEADER_LEN:hlen])
    return TcpHeader(sport, dport, seq, ack, off_flags & FLAGS_MASK, window, urgent, mss, ws,
                     sack_ok, sack, ts, other), mv[hlen:]


def parse_fast(buf: Buffer, src: bytes, dst: bytes
               ) -> tuple[int, int, int, int, int, int, int]:
    """Hot path: verify the checksum and return ``(src_port, dst_port, seq, ack, flags, window,
    header_len)``; the payload is ``buf[header_len:]`` and the options ``buf[20:header_len]``.
    """
    n = len(buf)
    if n < HEADER_LEN:
        raise TruncatedError(f"TCP segment of {n} bytes is shorter than {HEADER_LEN}")
    sport, dport, seq, ack, off_flags, window, _, _ = _unpack(buf)
    hlen = (off_flags >> 12) << 2
    if hlen < HEADER_LEN:
        raise IntegrityError(f"TCP data offset {hlen} is shorter than {HEADER_LEN}")
    if hlen > n:
        raise TruncatedError(f"TCP header of {hlen} bytes exceeds the {n} bytes received")
    s = (_from_bytes(src, "big") + _from_bytes(dst, "big") + PROTO_TCP + n + partial_sum(buf))
    if s % 0xFFFF:
        raise ChecksumError("bad TCP checksum")
    return sport, dport, seq, ack, off_flags & FLAGS_MASK, window, hlen


def timestamps(buf: Buffer, header_len: int) -> tuple[int, int] | None:
    """The (TSval, TSecr) of a segment, or ``None``; fast for the aligned NOP NOP TS layout."""
    if header_len == 32 and buf[20:24] == _TS_ALIGNED:
        r: tuple[int, int] = _TS.unpack_from(buf, 24)
        return r
    if header_len <= HEADER_LEN:
        return None
    mv = buf if isinstance(buf, memoryview) else memoryview(buf)
    return _parse_options(mv[HEADER_LEN:header_len])[4]


def parse_options(buf: Buffer, strict: bool = True) -> TcpHeader:
    """Decode an options area into a :class:`TcpHeader` with zero fixed fields (for the slow
    path after :func:`parse_fast`, e.g. SYN segments).

    A malformed option (a length below 2, or overrunning the area) raises
    :class:`SanityError`; with ``strict=False`` it ends the parse instead and the options
    before it count (as Linux's ``tcp_parse_options``, which still processes the segment)."""
    mv = buf if isinstance(buf, memoryview) else memoryview(buf)
    mss, ws, sack_ok, sack, ts, other = _parse_options(mv, strict)
    return TcpHeader(0, 0, 0, 0, 0, 0, 0, mss, ws, sack_ok, sack, ts, other)
