"""ICMPv6 (RFC 4443): echo, errors, packet too big (path MTU, RFC 8201); dispatch of NDP and MLD.

Message: type(1) code(1) checksum(2) body; the checksum covers the IPv6 pseudo-header.
"""

from __future__ import annotations

import errno
import struct
from typing import TYPE_CHECKING

from ioth.stack.errors import Drop
from ioth.stack.interface import Interface
from ioth.wire.checksum import checksum, pseudo_v6, verify

if TYPE_CHECKING:
    from ioth.stack.core import StackCore

DEST_UNREACH = 1
PACKET_TOO_BIG = 2
TIME_EXCEEDED = 3
PARAM_PROBLEM = 4
ECHO_REQUEST = 128
ECHO_REPLY = 129
MLD_QUERY = 130
MLD_REPORT_V1 = 131
MLD_DONE = 132
MLD_REPORT_V2 = 143
ND_RS, ND_RA, ND_NS, ND_NA, ND_REDIRECT = 133, 134, 135, 136, 137
MAX_QUOTE = 1280 - 40 - 8

#: destination unreachable code -> (errno, fatal), the errno of Linux icmpv6_err_convert
#: (other codes: EPROTO).  ``fatal`` only decides whether a connected UDP or ping socket
#: reports it (no route, beyond scope and address unreachable are soft in Linux; ioth reports
#: them, as for ICMPv4 net/host unreachable).  TCP ignores it: every error but packet too big
#: aborts SYN-SENT with the errno and is soft otherwise (tcp_v6_err).
UNREACH_ERRNO = {0: (errno.ENETUNREACH, True), 1: (errno.EACCES, True),
                 2: (errno.EHOSTUNREACH, True), 3: (errno.EHOSTUNREACH, True),
                 4: (errno.ECONNREFUSED, True), 5: (errno.EACCES, True),
                 6: (errno.EACCES, True)}


def icmp6_message(src: bytes, dst: bytes, body: bytes | bytearray) -> bytes:
    """``body`` (type, code, 2 zero bytes, rest) with its checksum filled in."""
    msg = bytearray(body)
    msg[2:4] = b"\0\0"
    struct.pack_into("!H", msg, 2, checksum(msg, pseudo_v6(src, dst, 58, len(msg))))
    return bytes(msg)


class ICMPv6:
    """ICMPv6 handling of one stack."""

    def __init__(self, core: StackCore) -> None:
        self.core = core

    def input(self, iface: Interface, src: bytes, dst: bytes, hlim: int, msg: memoryview,
              orig: memoryview, now: float, multicast: bool, tentative: bool, *,
              trusted: bool | None = None) -> None:
        """Process a received ICMPv6 message (``trusted``: skip the checksum check; default:
        the interface's ``rx_csum_trusted``)."""
        core = self.core
        counters = core.counters
        if len(msg) < 4:
            raise Drop("icmp6.rx_truncated")
        if trusted is None:
            trusted = iface.rx_csum_trusted
        if not trusted and not verify(msg, pseudo_v6(src, dst, 58, len(msg))):
            raise Drop("icmp6.rx_bad_checksum")
        icmp_type = msg[0]
        counters["icmp6.rx"] += 1
        if tentative and icmp_type not in (ND_NS, ND_NA):
            counters["icmp6.rx_to_tentative"] += 1
            return
        ip6 = core.ip6
        if icmp_type == ECHO_REQUEST:
            counters["icmp6.rx_echo_request"] += 1
            if len(msg) < 8:
                raise Drop("icmp6.rx_truncated")
            me = dst if not multicast else ip6.source_for(iface, src)
            reply = bytearray(msg)
            reply[0] = ECHO_REPLY
            try:
                ip6.output(me, src, 58, icmp6_message(me, src, reply), now,
                           ifindex=iface.index if src[0] == 0xFE and not iface.loopback
                           else 0)
                counters["icmp6.tx_echo_reply"] += 1
            except OSError:
                counters["icmp6.tx_echo_reply_failed"] += 1
        elif icmp_type == ECHO_REPLY:
            counters["icmp6.rx_echo_reply"] += 1
            if len(msg) < 8:
                raise Drop("icmp6.rx_truncated")
            core.udp.ping_reply(6, src, dst, (msg[4] << 8) | msg[5], bytes(msg))
        elif icmp_type in (ND_RS, ND_RA, ND_NS, ND_NA, ND_REDIRECT):
            ip6.ndp.input(iface, icmp_type, src, dst, hlim, msg, now)
        elif icmp_type in (MLD_QUERY, MLD_REPORT_V1, MLD_DONE, MLD_REPORT_V2):
            ip6.mld.input(iface, icmp_type, src, dst, msg, now)
        elif icmp_type < 128:
            self._error_input(icmp_type, msg, now)
        else:
            counters["icmp6.rx_other"] += 1

    def _error_input(self, icmp_type: int, msg: memoryview, now: float) -> None:
        core = self.core
        counters = core.counters
        code = msg[1]
        counters[f"icmp6.rx_error_{icmp_type}_{code}"] += 1
        inner = msg[8:]
        if len(inner) < 40 or inner[0] >> 4 != 6:
            raise Drop("icmp6.rx_error_truncated")
        isrc = bytes(inner[8:24])
        idst = bytes(inner[24:40])
        if isrc not in core.ip6.local:
            counters["icmp6.rx_error_not_ours"] += 1
            return
        err, fatal = errno.EHOSTUNREACH, False
        if icmp_type == DEST_UNREACH:
            err, fatal = UNREACH_ERRNO.get(code, (errno.EPROTO, True))
        elif icmp_type == PACKET_TOO_BIG:
            mtu = struct.unpack_from("!I", msg, 4)[0]
            mtu = max(1280, min(mtu, 65535))
            current = core.pmtu_get(idst, now)
            if current is None or mtu < current:
                core.pmtu_set(idst, mtu, now)
            err, fatal = errno.EMSGSIZE, False
        elif icmp_type == PARAM_PROBLEM:
            err, fatal = errno.EPROTO, True
        # skip a fragment header to find the transport header
        nh = inner[6]
        off = 40
        if nh == 44 and len(inner) >= 48:
            nh = inner[40]
            off = 48
        if len(inner) < off + 8:
            return
        if nh == 17:
            sport, dport = struct.unpack_from("!HH", inner, off)
            core.udp.icmp_error(6, isrc, sport, idst, dport, err, fatal)
        elif nh == 6:
            # what TCP sees (tcp_v6_err): packet too big only changes the path MTU
            tcp_err = 0 if icmp_type == PACKET_TOO_BIG else err
            core.tcp_icmp_error(isrc, idst, inner[off:], tcp_err, now)
        elif nh == 58 and inner[off] == ECHO_REQUEST:
            core.udp.ping_error(6, isrc, (inner[off + 4] << 8) | inner[off + 5], idst, err,
                                fatal)

    def send_error(self, icmp_type: int, code: int, orig: memoryview, now: float, *,
                   extra: int = 0, in_iface: Interface | None = None,
                   to_multicast: bool = False) -> None:
        """Send an ICMPv6 error about ``orig`` to its source, following RFC 4443 2.4(e)."""
        core = self.core
        counters = core.counters
        if len(orig) < 40:
            return
        src = bytes(orig[8:24])
        dst = bytes(orig[24:40])
        if src == b"\0" * 16 or src[0] == 0xFF or (dst[0] == 0xFF and not to_multicast):
            counters["icmp6.tx_error_suppressed"] += 1
            return
        if orig[6] == 58 and len(orig) > 40 and orig[40] < 128:
            counters["icmp6.tx_error_suppressed"] += 1
            return
        if not core.icmp_error_allowed(now):
            return
        ip6 = core.ip6
        if ip6.is_local(dst):
            me = dst
        else:
            try:
                iface, _ = ip6.route(src, in_iface.index if in_iface is not None and
                                     src[0] == 0xFE else 0)
            except OSError:
                counters["icmp6.tx_error_failed"] += 1
                return
            me = ip6.source_for(in_iface if in_iface is not None else iface, src)
        body = struct.pack("!BBHI", icmp_type, code, 0, extra) + orig[:MAX_QUOTE]
        try:
            ip6.output(me, src, 58, icmp6_message(me, src, body), now,
                       ifindex=in_iface.index if in_iface is not None and src[0] == 0xFE else 0)
            counters[f"icmp6.tx_error_{icmp_type}_{code}"] += 1
        except OSError:
            counters["icmp6.tx_error_failed"] += 1
