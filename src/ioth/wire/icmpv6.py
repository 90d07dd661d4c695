"""ICMPv6 (RFC 4443), Neighbor Discovery (RFC 4861, RFC 8106 options) and MLDv2 (RFC 3810).

::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |     Type      |     Code      |          Checksum             |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                         Message Body                          |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

The checksum covers the IPv6 pseudo-header, so ``emit`` and ``parse`` take the source and
destination addresses.  Each message kind is a frozen dataclass; ``parse`` returns
``(message, data)`` where ``data`` is the echo data or the quoted packet of an error (empty for
NDP and MLD, whose options / records are decoded into the message).  ``message.emit(src, dst,
data)`` returns the whole ICMPv6 message.

NDP options (type, length in units of 8 bytes, value)::

    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |     Type      |    Length     |              ...              |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

MLDv2 multicast address record::

    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Record Type  |  Aux Data Len |     Number of Sources (N)     |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                 Multicast Address (128 bits)                  |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |            Source Address [1..N] (128 bits each)              |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                        Auxiliary Data                         |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ioth.wire.checksum import partial_sum
from ioth.wire.errors import ChecksumError, SanityError, TruncatedError
from ioth.wire.ipv6 import addr_to_str

Buffer = bytes | bytearray | memoryview

HEADER_LEN = 8
PROTO_ICMPV6 = 58

TYPE_DEST_UNREACHABLE = 1
TYPE_PACKET_TOO_BIG = 2
TYPE_TIME_EXCEEDED = 3
TYPE_PARAM_PROBLEM = 4
TYPE_ECHO_REQUEST = 128
TYPE_ECHO_REPLY = 129
TYPE_MLD_QUERY = 130
TYPE_MLDV1_REPORT = 131
TYPE_MLDV1_DONE = 132
TYPE_ROUTER_SOLICIT = 133
TYPE_ROUTER_ADVERT = 134
TYPE_NEIGHBOR_SOLICIT = 135
TYPE_NEIGHBOR_ADVERT = 136
TYPE_REDIRECT = 137
TYPE_MLDV2_REPORT = 143

# Destination unreachable codes
UNREACH_NO_ROUTE = 0
UNREACH_ADMIN = 1
UNREACH_BEYOND_SCOPE = 2
UNREACH_ADDRESS = 3
UNREACH_PORT = 4
UNREACH_POLICY = 5
UNREACH_REJECT_ROUTE = 6
# Time exceeded codes
EXCEEDED_HOP_LIMIT = 0
EXCEEDED_REASSEMBLY = 1
# Parameter problem codes
PARAM_ERRONEOUS_FIELD = 0
PARAM_UNKNOWN_NEXT_HEADER = 1
PARAM_UNKNOWN_OPTION = 2

# NDP option types
OPT_SOURCE_LLADDR = 1
OPT_TARGET_LLADDR = 2
OPT_PREFIX_INFO = 3
OPT_REDIRECTED_HEADER = 4
OPT_MTU = 5
OPT_RDNSS = 25
OPT_DNSSL = 31

# MLDv2 record types
MODE_IS_INCLUDE = 1
MODE_IS_EXCLUDE = 2
CHANGE_TO_INCLUDE = 3
CHANGE_TO_EXCLUDE = 4
ALLOW_NEW_SOURCES = 5
BLOCK_OLD_SOURCES = 6

MAX_QUOTE = 1280 - 40 - HEADER_LEN
"""Quote at most this much of the invoking packet so the error fits the IPv6 minimum MTU."""

INFINITY = 0xFFFFFFFF

_U16 = struct.Struct("!H")
_HDR = struct.Struct("!BBHI")
_pack_hdr = _HDR.pack
_from_bytes = int.from_bytes


def _csum(src: bytes, dst: bytes, msg: bytes) -> bytes:
    s = (_from_bytes(src, "big") + _from_bytes(dst, "big") + PROTO_ICMPV6 + len(msg)
         + partial_sum(msg))
    r = s % 0xFFFF
    c = 0xFFFF - r if r else 0
    return msg[:2] + c.to_bytes(2, "big") + msg[4:]


def checksum_ok(buf: Buffer, src: bytes, dst: bytes) -> bool:
    """True if the ICMPv6 message ``buf`` verifies against the pseudo-header."""
    s = (_from_bytes(src, "big") + _from_bytes(dst, "big") + PROTO_ICMPV6 + len(buf)
         + partial_sum(buf))
    return s % 0xFFFF == 0


# ---------------------------------------------------------------------------------------------
# NDP options


@dataclass(frozen=True, slots=True)
class LinkAddrOption:
    """Source (type 1) or Target (type 2) Link-layer Address option."""

    mac: bytes
    target: bool = False

    def emit(self) -> bytes:
        """The option bytes (padded to 8 for a 6-byte MAC)."""
        body = self.mac
        total = (2 + len(body) + 7) & ~7
        return (bytes((OPT_TARGET_LLADDR if self.target else OPT_SOURCE_LLADDR, total >> 3))
                + body + bytes(total - 2 - len(body)))

    def __str__(self) -> str:
        """One-line pretty print."""
        return f"{'tlla' if self.target else 'slla'} {self.mac.hex(':')}"


@dataclass(frozen=True, slots=True)
class PrefixInfoOption:
    """Prefix Information option (type 3, RFC 4861 4.6.2)."""

    prefix_len: int
    prefix: bytes
    valid_lifetime: int
    preferred_lifetime: int
    on_link: bool = True
    autonomous: bool = True

    def emit(self) -> bytes:
        """The 32 option bytes."""
        flags = (0x80 if self.on_link else 0) | (0x40 if self.autonomous else 0)
        return struct.pack("!BBBBIII16s", OPT_PREFIX_INFO, 4, self.prefix_len, flags,
                           self.valid_lifetime, self.preferred_lifetime, 0, self.prefix)

    def __str__(self) -> str:
        """One-line pretty print."""
        return (f"prefix {addr_to_str(self.prefix)}/{self.prefix_len}"
                f"{' L' if self.on_link else ''}{' A' if self.autonomous else ''} "
                f"valid={self.valid_lifetime} preferred={self.preferred_lifetime}")


@dataclass(frozen=True, slots=True)
class MtuOption:
    """MTU option (type 5)."""

    mtu: int

    def emit(self) -> bytes:
        """The 8 option bytes."""
        return struct.pack("!BBHI", OPT_MTU, 1, 0, self.mtu)

    def __str__(self) -> str:
        """One-line pretty print."""
        return f"mtu {self.mtu}"


@dataclass(frozen=True, slots=True)
class RdnssOption:
    """Recursive DNS Server option (type 25, RFC 8106)."""

    lifetime: int
    servers: tuple[bytes, ...]

    def emit(self) -> bytes:
        """The option bytes."""
        return (struct.pack("!BBHI", OPT_RDNSS, 1 + 2 * len(self.servers), 0, self.lifetime)
                + b"".join(self.servers))

    def __str__(self) -> str:
        """One-line pretty print."""
        return f"rdnss {','.join(addr_to_str(s) for s in self.servers)} lifetime={self.lifetime}"


def _encode_domain(name: str) -> bytes:
    out = bytearray()
    for label in name.strip(".").split("."):
        raw = label.encode("ascii")
        if not raw or len(raw) > 63:
            raise ValueError(f"invalid DNS label in {name!r}")
        out += bytes((len(raw),)) + raw
    return bytes(out) + b"\x00"


def _decode_domains(data: memoryview) -> tuple[str, ...]:
    names: list[str] = []
    i, n = 0, len(data)
    labels: list[str] = []
    while i < n:
        ln = data[i]
        if ln == 0:
            if labels:
                names.append(".".join(labels))
                labels = []
            i += 1
            continue
        if ln > 63 or i + 1 + ln > n:
            raise SanityError("malformed domain name in DNSSL option")
        try:
            labels.append(bytes(data[i + 1:i + 1 + ln]).decode("ascii"))
        except UnicodeDecodeError:
            raise SanityError("non-ASCII domain name in DNSSL option") from None
        i += 1 + ln
    if labels:
        raise SanityError("unterminated domain name in DNSSL option")
    return tuple(names)


@dataclass(frozen=True, slots=True)
class DnsslOption:
    """DNS Search List option (type 31, RFC 8106)."""

    lifetime: int
    domains: tuple[str, ...]

    def emit(self) -> bytes:
        """The option bytes (names padded with zeros to a multiple of 8)."""
        names = b"".join(_encode_domain(d) for d in self.domains)
        total = (8 + len(names) + 7) & ~7
        return (struct.pack("!BBHI", OPT_DNSSL, total >> 3, 0, self.lifetime) + names
                + bytes(total - 8 - len(names)))

    def __str__(self) -> str:
        """One-line pretty print."""
        return f"dnssl {','.join(self.domains)} lifetime={self.lifetime}"


@dataclass(frozen=True, slots=True)
class RedirectedHeaderOption:
    """Redirected Header option (type 4): as much of the redirected packet as fits."""

    data: bytes

    def emit(self) -> bytes:
        """The option bytes (padded to a multiple of 8)."""
        total = (8 + len(self.data) + 7) & ~7
        return (bytes((OPT_REDIRECTED_HEADER, total >> 3)) + bytes(6) + self.data
                + bytes(total - 8 - len(self.data)))

    def __str__(self) -> str:
        """One-line pretty print."""
        return f"redirected-header {len(self.data)} bytes"


@dataclass(frozen=True, slots=True)
class UnknownOption:
    """Any other option, kept raw (``data`` excludes type and length; ignored per RFC 4861)."""

    type: int
    data: bytes

    def emit(self) -> bytes:
        """The option bytes; ``data`` must make the option a multiple of 8 long."""
        return bytes((self.type, (2 + len(self.data)) >> 3)) + self.data

    def __str__(self) -> str:
        """One-line pretty print."""
        return f"option {self.type} {self.data.hex()}"


NdpOption = (LinkAddrOption | PrefixInfoOption | MtuOption | RdnssOption | DnsslOption
             | RedirectedHeaderOption | UnknownOption)


def parse_options(buf: Buffer) -> tuple[NdpOption, ...]:
    """Decode a list of NDP options; a zero-length option is an error (RFC 4861 4.6)."""
    mv = buf if isinstance(buf, memoryview) else memoryview(buf)
    out: list[NdpOption] = []
    i, n = 0, len(mv)
    while i < n:
        if i + 2 > n:
            raise TruncatedError("NDP option truncated")
        t, ln = mv[i], mv[i + 1] << 3
        if ln == 0:
            raise SanityError("NDP option with length zero")
        if i + ln > n:
            raise TruncatedError(f"NDP option {t} overruns the message")
        body = mv[i + 2:i + ln]
        opt: NdpOption
        if t in (OPT_SOURCE_LLADDR, OPT_TARGET_LLADDR) and ln == 8:
            opt = LinkAddrOption(bytes(body[:6]), t == OPT_TARGET_LLADDR)
        elif t == OPT_PREFIX_INFO:
            if ln != 32:
                raise SanityError(f"Prefix Information option of length {ln}")
            plen, flags, valid, pref, _, prefix = struct.unpack_from("!BBIII16s", body)
            opt = PrefixInfoOption(plen, prefix, valid, pref, bool(flags & 0x80),
                                   bool(flags & 0x40))
        elif t == OPT_MTU:
            if ln != 8:
                raise SanityError(f"MTU option of length {ln}")
            opt = MtuOption(struct.unpack_from("!I", body, 2)[0])
        elif t == OPT_RDNSS:
            if ln < 24 or (ln - 8) % 16:
                raise SanityError(f"RDNSS option of length {ln}")
            lifetime = struct.unpack_from("!I", body, 2)[0]
            opt = RdnssOption(lifetime, tuple(bytes(body[k:k + 16]) for k in range(6, ln - 2, 16)))
        elif t == OPT_DNSSL:
            if ln < 16:
                raise SanityError(f"DNSSL option of length {ln}")
            lifetime = struct.unpack_from("!I", body, 2)[0]
            opt = DnsslOption(lifetime, _decode_domains(body[6:]))
        elif t == OPT_REDIRECTED_HEADER:
            opt = RedirectedHeaderOption(bytes(body[6:]))
        else:
            opt = UnknownOption(t, bytes(body))
        out.append(opt)
        i += ln
    return tuple(out)


def _emit_options(options: tuple[NdpOption, ...]) -> bytes:
    return b"".join(o.emit() for o in options)


def _find(options: tuple[NdpOption, ...], target: bool) -> bytes | None:
    for o in options:
        if isinstance(o, LinkAddrOption) and o.target is target:
            return o.mac
    return None


def _opts_str(options: tuple[NdpOption, ...]) -> str:
    return "".join(f" [{o}]" for o in options)


# ---------------------------------------------------------------------------------------------
# Messages


@dataclass(frozen=True, slots=True)
class Echo:
    """Echo Request (128) or Echo Reply (129)."""

    ident: int
    seq: int
    reply: bool = False

    @property
    def type(self) -> int:
        """The ICMPv6 type."""
        return TYPE_ECHO_REPLY if self.reply else TYPE_ECHO_REQUEST

    def make_reply(self) -> Echo:
        """The reply to this request."""
        return Echo(self.ident, self.seq, True)

    def emit(self, src: bytes, dst: bytes, data: Buffer = b"") -> bytes:
        """The whole message with checksum."""
        return _csum(src, dst, _pack_hdr(self.type, 0, 0, (self.ident << 16) | self.seq)
                     + bytes(data))

    def __str__(self) -> str:
        """One-line pretty print."""
        return f"ICMPv6 echo {'reply' if self.reply else 'request'} id={self.ident} seq={self.seq}"


@dataclass(frozen=True, slots=True)
class DestUnreachable:
    """Destination Unreachable (type 1); ``data`` is the quoted packet."""

    code: int

    type = TYPE_DEST_UNREACHABLE

    def emit(self, src: bytes, dst: bytes, data: Buffer = b"") -> bytes:
        """The whole message with checksum."""
        return _csum(src, dst, _pack_hdr(TYPE_DEST_UNREACHABLE, self.code, 0, 0) + bytes(data))

    def __str__(self) -> str:
        """One-line pretty print."""
        return f"ICMPv6 destination unreachable code={self.code}"


@dataclass(frozen=True, slots=True)
class PacketTooBig:
    """Packet Too Big (type 2) with the MTU of the next hop."""

    mtu: int

    type = TYPE_PACKET_TOO_BIG

    def emit(self, src: bytes, dst: bytes, data: Buffer = b"") -> bytes:
        """The whole message with checksum."""
        return _csum(src, dst, _pack_hdr(TYPE_PACKET_TOO_BIG, 0, 0, self.mtu) + bytes(data))

    def __str__(self) -> str:
        """One-line pretty print."""
        return f"ICMPv6 packet too big mtu={self.mtu}"


@dataclass(frozen=True, slots=True)
class TimeExceeded:
    """Time Exceeded (type 3): code 0 hop limit, 1 fragment reassembly."""

    code: int = EXCEEDED_HOP_LIMIT

    type = TYPE_TIME_EXCEEDED

    def emit(self, src: bytes, dst: bytes, data: Buffer = b"") -> bytes:
        """The whole message with checksum."""
        return _csum(src, dst, _pack_hdr(TYPE_TIME_EXCEEDED, self.code, 0, 0) + bytes(data))

    def __str__(self) -> str:
        """One-line pretty print."""
        return f"ICMPv6 time exceeded code={self.code}"


@dataclass(frozen=True, slots=True)
class ParamProblem:
    """Parameter Problem (type 4); ``pointer`` is the offending offset in the quoted packet."""

    code: int
    pointer: int

    type = TYPE_PARAM_PROBLEM

    def emit(self, src: bytes, dst: bytes, data: Buffer = b"") -> bytes:
        """The whole message with checksum."""
        return _csum(src, dst, _pack_hdr(TYPE_PARAM_PROBLEM, self.code, 0, self.pointer)
                     + bytes(data))

    def __str__(self) -> str:
        """One-line pretty print."""
        return f"ICMPv6 parameter problem code={self.code} pointer={self.pointer}"


@dataclass(frozen=True, slots=True)
class RouterSolicit:
    """Router Solicitation (type 133)."""

    options: tuple[NdpOption, ...] = ()

    type = TYPE_ROUTER_SOLICIT

    @property
    def source_lladdr(self) -> bytes | None:
        """The Source Link-layer Address option, if any."""
        return _find(self.options, False)

    def emit(self, src: bytes, dst: bytes, data: Buffer = b"") -> bytes:
        """The whole message with checksum."""
        return _csum(src, dst, _pack_hdr(TYPE_ROUTER_SOLICIT, 0, 0, 0)
                     + _emit_options(self.options) + bytes(data))

    def __str__(self) -> str:
        """One-line pretty print."""
        return "ICMPv6 router solicitation" + _opts_str(self.options)


@dataclass(frozen=True, slots=True)
class RouterAdvert:
    """Router Advertisement (type 134)."""

    cur_hop_limit: int = 64
    managed: bool = False
    other: bool = False
    router_lifetime: int = 1800
    reachable_time: int = 0
    retrans_timer: int = 0
    options: tuple[NdpOption, ...] = ()
    flags_extra: int = 0
    """The remaining 6 flag bits (e.g. H, Prf, P), kept raw."""

    type = TYPE_ROUTER_ADVERT

    @property
    def source_lladdr(self) -> bytes | None:
        """The Source Link-layer Address option, if any."""
        return _find(self.options, False)

    def emit(self, src: bytes, dst: bytes, data: Buffer = b"") -> bytes:
        """The whole message with checksum."""
        flags = (0x80 if self.managed else 0) | (0x40 if self.other else 0) | self.flags_extra
        body = struct.pack("!BBHBBHII", TYPE_ROUTER_ADVERT, 0, 0, self.cur_hop_limit, flags,
                           self.router_lifetime, self.reachable_time, self.retrans_timer)
        return _csum(src, dst, body + _emit_options(self.options) + bytes(data))

    def __str__(self) -> str:
        """One-line pretty print."""
        return (f"ICMPv6 router advertisement hlim={self.cur_hop_limit}"
                f"{' M' if self.managed else ''}{' O' if self.other else ''} "
                f"lifetime={self.router_lifetime}" + _opts_str(self.options))


@dataclass(frozen=True, slots=True)
class NeighborSolicit:
    """Neighbor Solicitation (type 135)."""

    target: bytes
    options: tuple[NdpOption, ...] = ()

    type = TYPE_NEIGHBOR_SOLICIT

    @property
    def source_lladdr(self) -> bytes | None:
        """The Source Link-layer Address option, if any."""
        return _find(self.options, False)

    def emit(self, src: bytes, dst: bytes, data: Buffer = b"") -> bytes:
        """The whole message with checksum."""
        return _csum(src, dst, _pack_hdr(TYPE_NEIGHBOR_SOLICIT, 0, 0, 0) + self.target
                     + _emit_options(self.options) + bytes(data))

    def __str__(self) -> str:
        """One-line pretty print."""
        return f"ICMPv6 neighbor solicitation {addr_to_str(self.target)}" + _opts_str(
            self.options)


@dataclass(frozen=True, slots=True)
class NeighborAdvert:
    """Neighbor Advertisement (type 136): flags Router, Solicited, Override."""

    target: bytes
    router: bool = False
    solicited: bool = False
    override: bool = False
    options: tuple[NdpOption, ...] = ()

    type = TYPE_NEIGHBOR_ADVERT

    @property
    def target_lladdr(self) -> bytes | None:
        """The Target Link-layer Address option, if any."""
        return _find(self.options, True)

    def emit(self, src: bytes, dst: bytes, data: Buffer = b"") -> bytes:
        """The whole message with checksum."""
        flags = ((0x80000000 if self.router else 0) | (0x40000000 if self.solicited else 0)
                 | (0x20000000 if self.override else 0))
        return _csum(src, dst, _pack_hdr(TYPE_NEIGHBOR_ADVERT, 0, 0, flags) + self.target
                     + _emit_options(self.options) + bytes(data))

    def __str__(self) -> str:
        """One-line pretty print."""
        flags = "".join(f for f, on in (("R", self.router), ("S", self.solicited),
                                         ("O", self.override)) if on)
        return (f"ICMPv6 neighbor advertisement {addr_to_str(self.target)} [{flags}]"
                + _opts_str(self.options))


@dataclass(frozen=True, slots=True)
class Redirect:
    """Redirect (type 137): ``target`` is the better first hop for ``destination``."""

    target: bytes
    destination: bytes
    options: tuple[NdpOption, ...] = ()

    type = TYPE_REDIRECT

    def emit(self, src: bytes, dst: bytes, data: Buffer = b"") -> bytes:
        """The whole message with checksum."""
        return _csum(src, dst, _pack_hdr(TYPE_REDIRECT, 0, 0, 0) + self.target + self.destination
                     + _emit_options(self.options) + bytes(data))

    def __str__(self) -> str:
        """One-line pretty print."""
        return (f"ICMPv6 redirect {addr_to_str(self.destination)} via "
                f"{addr_to_str(self.target)}" + _opts_str(self.options))


@dataclass(frozen=True, slots=True)
class McastRecord:
    """One MLDv2 Multicast Address Record (see the module diagram)."""

    record_type: int
    mcast: bytes
    sources: tuple[bytes, ...] = ()
    aux: bytes = b""

    def emit(self) -> bytes:
        """The record bytes (``aux`` must be a multiple of 4 long)."""
        return (struct.pack("!BBH16s", self.record_type, len(self.aux) >> 2, len(self.sources),
                            self.mcast) + b"".join(self.sources) + self.aux)

    def __str__(self) -> str:
        """One-line pretty print."""
        srcs = ",".join(addr_to_str(s) for s in self.sources)
        return f"{self.record_type}:{addr_to_str(self.mcast)}" + (f"({srcs})" if srcs else "")


@dataclass(frozen=True, slots=True)
class MldReport:
    """MLDv2 Listener Report (type 143, RFC 3810 5.2)."""

    records: tuple[McastRecord, ...]

    type = TYPE_MLDV2_REPORT

    def emit(self, src: bytes, dst: bytes, data: Buffer = b"") -> bytes:
        """The whole message with checksum."""
        return _csum(src, dst, _pack_hdr(TYPE_MLDV2_REPORT, 0, 0, len(self.records))
                     + b"".join(r.emit() for r in self.records) + bytes(data))

    def __str__(self) -> str:
        """One-line pretty print."""
        return "ICMPv6 MLDv2 report " + " ".join(str(r) for r in self.records)


@dataclass(frozen=True, slots=True)
class MldQuery:
    """Multicast Listener Query (type 130): MLDv1 (24 bytes) or MLDv2 (RFC 3810 5.1).

    ``mcast`` is unspecified for a general query.  ``max_resp_code`` is in milliseconds for v1
    and the encoded Maximum Response Code for v2 (see :meth:`max_response_ms`).
    """

    max_resp_code: int
    mcast: bytes
    v2: bool = True
    suppress: bool = False
    qrv: int = 0
    qqic: int = 0
    sources: tuple[bytes, ...] = ()

    type = TYPE_MLD_QUERY

    @property
    def max_response_ms(self) -> int:
        """The decoded Maximum Response Delay in milliseconds (RFC 3810 5.1.3)."""
        c = self.max_resp_code
        if not self.v2 or c < 0x8000:
            return c
        return ((c & 0x0FFF) | 0x1000) << (((c >> 12) & 7) + 3)

    def emit(self, src: bytes, dst: bytes, data: Buffer = b"") -> bytes:
        """The whole message with checksum."""
        body = _pack_hdr(TYPE_MLD_QUERY, 0, 0, self.max_resp_code << 16) + self.mcast
        if self.v2:
            body += struct.pack("!BBH", (0x08 if self.suppress else 0) | (self.qrv & 7),
                                self.qqic, len(self.sources)) + b"".join(self.sources)
        return _csum(src, dst, body + bytes(data))

    def __str__(self) -> str:
        """One-line pretty print."""
        return (f"ICMPv6 MLDv{2 if self.v2 else 1} query {addr_to_str(self.mcast)} "
                f"max_resp={self.max_response_ms}ms")


@dataclass(frozen=True, slots=True)
class Other:
    """Any other message: type, code and the raw 32-bit word after the checksum."""

    type: int
    code: int
    rest: int = 0

    def emit(self, src: bytes, dst: bytes, data: Buffer = b"") -> bytes:
        """The whole message with checksum."""
        return _csum(src, dst, _pack_hdr(self.type, self.code, 0, self.rest) + bytes(data))

    def __str__(self) -> str:
        """One-line pretty print."""
        return f"ICMPv6 type={self.type} code={self.code} rest=0x{self.rest:08x}"


Icmpv6Message = (Echo | DestUnreachable | PacketTooBig | TimeExceeded | ParamProblem
                 | RouterSolicit | RouterAdvert | NeighborSolicit | NeighborAdvert | Redirect
                 | MldReport | MldQuery | Other)


def is_error(msg: Icmpv6Message) -> bool:
    """True for error messages (types below 128)."""
    return msg.type < 128


def quote(packet: Buffer, limit: int = MAX_QUOTE) -> bytes:
    """The part of an invoking packet to carry in an error (RFC 4443 2.4 (c))."""
    return bytes(packet[:limit])


def _parse_records(mv: memoryview, count: int) -> tuple[McastRecord, ...]:
    out: list[McastRecord] = []
    i, n = 0, len(mv)
    for _ in range(count):
        if i + 20 > n:
            raise TruncatedError("MLDv2 record truncated")
        rtype, auxlen, nsrc, mcast = struct.unpack_from("!BBH16s", mv, i)
        end = i + 20 + 16 * nsrc + 4 * auxlen
        if end > n:
            raise TruncatedError("MLDv2 record overruns the message")
        j = i + 20
        srcs = tuple(bytes(mv[k:k + 16]) for k in range(j, j + 16 * nsrc, 16))
        out.append(McastRecord(rtype, mcast, srcs, bytes(mv[j + 16 * nsrc:end])))
        i = end
    return tuple(out)


_EMPTY = memoryview(b"")


def parse(buf: Buffer, src: bytes | None = None, dst: bytes | None = None
          ) -> tuple[Icmpv6Message, memoryview]:
    """Parse an ICMPv6 message (the upper-layer payload); verify the checksum when addresses
    are given.  NDP messages with a non-zero code or malformed options raise :class:`WireError`.
    """
    mv = buf if isinstance(buf, memoryview) else memoryview(buf)
    n = len(mv)
    if n < HEADER_LEN:
        raise TruncatedError(f"ICMPv6 message of {n} bytes is shorter than {HEADER_LEN}")
    if src is not None and dst is not None and not checksum_ok(mv, src, dst):
        raise ChecksumError("bad ICMPv6 checksum")
    typ, code, _, rest = _HDR.unpack_from(mv)
    data = mv[HEADER_LEN:]
    if typ in (TYPE_ECHO_REQUEST, TYPE_ECHO_REPLY):
        if code:
            return Other(typ, code, rest), data
        return Echo(rest >> 16, rest & 0xFFFF, typ == TYPE_ECHO_REPLY), data
    if typ < 128:
        if typ == TYPE_DEST_UNREACHABLE:
            return DestUnreachable(code), data
        if typ == TYPE_PACKET_TOO_BIG:
            return PacketTooBig(rest), data
        if typ == TYPE_TIME_EXCEEDED:
            return TimeExceeded(code), data
        if typ == TYPE_PARAM_PROBLEM:
            return ParamProblem(code, rest), data
        return Other(typ, code, rest), data
    if TYPE_ROUTER_SOLICIT <= typ <= TYPE_REDIRECT:
        return _parse_ndp(mv, typ, code, rest), _EMPTY
    if typ == TYPE_MLDV2_REPORT:
        if code:
            raise SanityError(f"MLDv2 report with code {code}")
        return MldReport(_parse_records(mv[HEADER_LEN:], rest & 0xFFFF)), _EMPTY
    if typ == TYPE_MLD_QUERY:
        if n < 24:
            raise TruncatedError(f"MLD query of {n} bytes")
        mcast = bytes(mv[8:24])
        if n == 24:
            return MldQuery(rest >> 16, mcast, v2=False), _EMPTY
        if n < 28:
            raise SanityError(f"MLD query of {n} bytes is neither v1 nor v2")
        sqrv, qqic, nsrc = struct.unpack_from("!BBH", mv, 24)
        if 28 + 16 * nsrc > n:
            raise TruncatedError("MLDv2 query sources overrun the message")
        srcs = tuple(bytes(mv[k:k + 16]) for k in range(28, 28 + 16 * nsrc, 16))
        return MldQuery(rest >> 16, mcast, True, bool(sqrv & 8), sqrv & 7, qqic, srcs), _EMPTY
    return Other(typ, code, rest), data


def _parse_ndp(mv: memoryview, typ: int, code: int, rest: int) -> Icmpv6Message:
    if code:
        raise SanityError(f"NDP message type {typ} with code {code}")
    n = len(mv)
    if typ == TYPE_ROUTER_SOLICIT:
        return RouterSolicit(parse_options(mv[8:]))
    if typ == TYPE_ROUTER_ADVERT:
        if n < 16:
            raise TruncatedError("Router Advertisement truncated")
        hlim, flags, life = rest >> 24, (rest >> 16) & 0xFF, rest & 0xFFFF
        reach, retrans = struct.unpack_from("!II", mv, 8)
        return RouterAdvert(hlim, bool(flags & 0x80), bool(flags & 0x40), life, reach, retrans,
                            parse_options(mv[16:]), flags & 0x3F)
    if typ == TYPE_NEIGHBOR_SOLICIT:
        if n < 24:
            raise TruncatedError("Neighbor Solicitation truncated")
        return NeighborSolicit(bytes(mv[8:24]), parse_options(mv[24:]))
    if typ == TYPE_NEIGHBOR_ADVERT:
        if n < 24:
            raise TruncatedError("Neighbor Advertisement truncated")
        return NeighborAdvert(bytes(mv[8:24]), bool(rest & 0x80000000),
                              bool(rest & 0x40000000), bool(rest & 0x20000000),
                              parse_options(mv[24:]))
    if n < 40:
        raise TruncatedError("Redirect truncated")
    return Redirect(bytes(mv[8:24]), bytes(mv[24:40]), parse_options(mv[40:]))

