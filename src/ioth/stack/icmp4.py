"""ICMPv4 (RFC 792, RFC 1122 3.2.2, RFC 1812 4.3, RFC 1191): echo, errors, path MTU.

Message: type(1) code(1) checksum(2) rest-of-header(4) data.  Errors quote the offending IP
header and as much of its payload as fits in 576 bytes.
"""

from __future__ import annotations

import errno
import struct
from typing import TYPE_CHECKING

from ioth.stack.errors import Drop
from ioth.stack.interface import Interface
from ioth.wire.checksum import checksum, verify

if TYPE_CHECKING:
    from ioth.stack.core import StackCore

ECHO_REPLY = 0
DEST_UNREACH = 3
ECHO_REQUEST = 8
TIME_EXCEEDED = 11
PARAM_PROBLEM = 12
ERROR_TYPES = (DEST_UNREACH, 4, 5, TIME_EXCEEDED, PARAM_PROBLEM)
MAX_QUOTE = 576 - 20 - 8

#: destination unreachable code -> (errno, fatal): the errno of Linux icmp_err_convert.
#: ``fatal`` only decides whether a connected UDP or ping socket reports the error.  It
#: follows Linux's table except for net and host unreachable (codes 0 and 1), soft in Linux
#: (reported only with IP_RECVERR), which ioth reports to connected UDP sockets as RFC 1122
#: 4.1.3.3 allows (tests/stack/test_hostunreach.py).  TCP ignores ``fatal``: every code but
#: fragmentation needed aborts SYN-SENT with the errno and is soft otherwise (tcp_v4_err).
UNREACH_ERRNO = {
    0: (errno.ENETUNREACH, True), 1: (errno.EHOSTUNREACH, True),
    2: (errno.ENOPROTOOPT, True), 3: (errno.ECONNREFUSED, True),
    4: (errno.EMSGSIZE, False), 5: (errno.EOPNOTSUPP, False),
    6: (errno.ENETUNREACH, True), 7: (errno.EHOSTDOWN, True), 8: (errno.ENONET, True),
    9: (errno.ENETUNREACH, True), 10: (errno.EHOSTUNREACH, True),
    11: (errno.ENETUNREACH, False), 12: (errno.EHOSTUNREACH, False),
    13: (errno.EHOSTUNREACH, True), 14: (errno.EHOSTUNREACH, True),
    15: (errno.EHOSTUNREACH, True),
}
# RFC 1191 plateau table, for routers that send a next-hop MTU of zero
PLATEAUS = (32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296, 68)


class ICMPv4:
    """ICMPv4 handling of one stack."""

    def __init__(self, core: StackCore) -> None:
        self.core = core
        self.echo_ignore_broadcasts = True

    def input(self, iface: Interface, src: bytes, dst: bytes, msg: memoryview, orig: memoryview,
              now: float, broadcast: bool, *, trusted: bool | None = None) -> None:
        """Process a received ICMP message (``trusted``: skip the checksum check; default: the
        interface's ``rx_csum_trusted``)."""
        core = self.core
        counters = core.counters
        if len(msg) < 8:
            raise Drop("icmp4.rx_truncated")
        if not (iface.rx_csum_trusted if trusted is None else trusted) and not verify(msg):
            raise Drop("icmp4.rx_bad_checksum")
        icmp_type = msg[0]
        counters["icmp4.rx"] += 1
        if icmp_type == ECHO_REQUEST:
            counters["icmp4.rx_echo_request"] += 1
            if broadcast and self.echo_ignore_broadcasts:
                counters["icmp4.rx_echo_broadcast_ignored"] += 1
                return
            reply = bytearray(msg)
            reply[0] = ECHO_REPLY
            reply[2:4] = b"\0\0"
            struct.pack_into("!H", reply, 2, checksum(reply))
            try:
                core.ip4.output(dst, src, 1, bytes(reply), now, tos=orig[1])
                counters["icmp4.tx_echo_reply"] += 1
            except OSError:
                counters["icmp4.tx_echo_reply_failed"] += 1
        elif icmp_type == ECHO_REPLY:
            counters["icmp4.rx_echo_reply"] += 1
            ident = (msg[4] << 8) | msg[5]
            core.udp.ping_reply(4, src, dst, ident, bytes(msg))
        elif icmp_type in ERROR_TYPES:
            self._error_input(icmp_type, msg, now)
        else:
            counters["icmp4.rx_other"] += 1

    def _error_input(self, icmp_type: int, msg: memoryview, now: float) -> None:
        core = self.core
        counters = core.counters
        code = msg[1]
        counters[f"icmp4.rx_error_{icmp_type}_{code}"] += 1
        inner = msg[8:]
        if len(inner) < 28 or inner[0] >> 4 != 4:
            raise Drop("icmp4.rx_error_truncated")
        ihl = (inner[0] & 15) << 2
        if ihl < 20 or len(inner) < ihl + 8:
            raise Drop("icmp4.rx_error_truncated")
        proto = inner[9]
        isrc = bytes(inner[12:16])
        idst = bytes(inner[16:20])
        if isrc not in core.local4:
            counters["icmp4.rx_error_not_ours"] += 1
            return
        err, fatal = errno.EHOSTUNREACH, False
        tcp_err = 0  # what TCP sees (tcp_v4_err): none for source quench and redirects
        if icmp_type == DEST_UNREACH:
            err, fatal = UNREACH_ERRNO.get(code, (errno.EHOSTUNREACH, False))
            if code == 4:
                self._frag_needed(idst, (msg[6] << 8) | msg[7], (inner[2] << 8) | inner[3], now)
            elif code in UNREACH_ERRNO:
                tcp_err = err
        elif icmp_type == PARAM_PROBLEM:
            err, fatal = errno.EPROTO, True
            tcp_err = err
        elif icmp_type == TIME_EXCEEDED:
            tcp_err = err
        sport, dport = struct.unpack_from("!HH", inner, ihl)
        if proto == 17:
            core.udp.icmp_error(4, isrc, sport, idst, dport, err, fatal)
        elif proto == 6:
            core.tcp_icmp_error(isrc, idst, inner[ihl:], tcp_err, now)
        elif proto == 1 and inner[ihl] == ECHO_REQUEST:
            core.udp.ping_error(4, isrc, (inner[ihl + 4] << 8) | inner[ihl + 5], idst, err, fatal)

    def _frag_needed(self, dst: bytes, mtu: int, orig_len: int, now: float) -> None:
        if mtu < 68:
            mtu = next((p for p in PLATEAUS if p < orig_len), 68)
        if mtu >= 68:
            current = self.core.pmtu_get(dst, now)
            if current is None or mtu < current:
                self.core.pmtu_set(dst, mtu, now)

    def send_error(self, icmp_type: int, code: int, orig: memoryview, now: float, *,
                   extra: int = 0, in_iface: Interface | None = None) -> None:
        """Send an ICMP error about ``orig`` (a whole IP packet) to its source, if allowed.

        RFC 1122 3.2.2: never about an ICMP error, a broadcast/multicast destination, a
        non-initial fragment, or a source that does not name a single host.
        """
        core = self.core
        counters = core.counters
        if len(orig) < 20:
            return
        ihl = (orig[0] & 15) << 2
        src = bytes(orig[12:16])
        dst = bytes(orig[16:20])
        frag = (orig[6] << 8) | orig[7]
        if (frag & 0x1FFF or src == b"\0\0\0\0" or src in core.bcast4 or src[0] >= 224
                or dst in core.bcast4 or dst[0] & 0xF0 == 0xE0):
            counters["icmp4.tx_error_suppressed"] += 1
            return
        if orig[9] == 1 and len(orig) > ihl and orig[ihl] in ERROR_TYPES:
            counters["icmp4.tx_error_suppressed"] += 1
            return
        if not core.icmp_error_allowed(now):
            return
        if dst in core.local4:
            me: bytes | None = dst
        elif in_iface is not None:
            me = in_iface.addr4_for(src)
        else:
            me = None
        rest = extra & 0xFFFF if icmp_type == DEST_UNREACH else extra
        body = bytearray(struct.pack("!BBHI", icmp_type, code, 0, rest)) + orig[:MAX_QUOTE]
        struct.pack_into("!H", body, 2, checksum(body))
        try:
            core.ip4.output(me, src, 1, bytes(body), now, tos=0xC0)
            counters[f"icmp4.tx_error_{icmp_type}_{code}"] += 1
        except OSError:
            counters["icmp4.tx_error_failed"] += 1
