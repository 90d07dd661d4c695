"""UDP (RFC 768, RFC 8200 8.1) and the ICMP echo endpoints, for IPv4 and IPv6.

Header: sport(2) dport(2) length(2) checksum(2).  Over IPv4 a zero checksum means "none"; over
IPv6 a zero checksum is invalid and the datagram is dropped.  Demultiplexing prefers a connected
endpoint, then one bound to the destination address, then a wildcard one.

Dual stack (Linux semantics): a family-6 UDP endpoint without ``v6only`` also receives IPv4
datagrams (addresses reported IPv4-mapped, ``::ffff:a.b.c.d``), sends to IPv4-mapped
destinations as IPv4 and may bind an IPv4-mapped address.  An IPv4 datagram goes to a family-4
endpoint in preference to an equally specific dual-stack one.  Port conflicts between the two
families follow the kernel's ``inet_rcv_saddr_equal``.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ioth.stack.endpoints import Endpoint
from ioth.stack.errors import Drop
from ioth.stack.interface import Interface
from ioth.wire.checksum import fold, partial_sum, pseudo_v4, pseudo_v6, verify
from ioth.wire.ipv6 import V4MAPPED, unmap

if TYPE_CHECKING:
    from ioth.stack.core import StackCore

HDR = struct.Struct("!HHHH")
EPHEMERAL_LOW = 32768
EPHEMERAL_HIGH = 60999
MAX_ENDPOINTS = 65536
ANY4 = bytes(4)
ANY6 = bytes(16)
MAPPED_ANY = V4MAPPED + ANY4  # ::ffff:0.0.0.0: every IPv4 address, no IPv6 one


def _faces(ep: Endpoint, addr: bytes | None) -> tuple[bytes | None, bytes | None, bool]:
    """(IPv6 bound address or None for an IPv4 endpoint, IPv4 bound address or None for an
    IPv6 one, v6only) of ``ep`` bound to ``addr``."""
    if ep.family == 4:
        return None, addr or ANY4, False
    a6 = addr or ANY6
    if a6 == ANY6:
        a4 = ANY4
    elif a6[:12] == V4MAPPED:
        a4 = a6[12:]
    else:
        a4 = None
    return a6, a4, ep.v6only


def _saddr_equal(ep: Endpoint, addr: bytes | None, other: Endpoint) -> bool:
    """Would ``ep`` bound to ``addr`` and ``other`` share a local address (the kernel's
    inet_rcv_saddr_equal with wildcards matching)?"""
    a6, a4, only = _faces(ep, addr)
    b6, b4, other_only = _faces(other, other.local_addr)
    if a6 is None:  # an IPv4 endpoint: IPv6-bound and IPv6-only ones never conflict
        return b4 is not None and not other_only and (a4 in (b4, ANY4) or b4 == ANY4)
    mapped = a6[:12] == V4MAPPED
    mapped2 = b6 is None or b6[:12] == V4MAPPED
    if mapped and mapped2:
        return not other_only and (a4 in (b4, ANY4) or b4 == ANY4)
    if a6 == ANY6 and b6 == ANY6:
        return True
    if b6 == ANY6 and not (other_only and mapped):
        return True
    if a6 == ANY6 and not (only and mapped2):
        return True
    return b6 is not None and a6 == b6


class Udp:
    """UDP and ping endpoint tables of one stack."""

    def __init__(self, core: StackCore) -> None:
        self.core = core
        self.ports: dict[tuple[int, int, int], list[Endpoint]] = {}

    # -- endpoint management --------------------------------------------------------------
    def open(self, family: int, proto: int) -> Endpoint:
        """A new unbound endpoint (proto 17 UDP, 1/58 ICMP echo)."""
        return Endpoint(family, proto)

    def _conflict(self, ep: Endpoint, addr: bytes | None, port: int) -> bool:
        if ep.proto == 17:  # one port space for both families (dual-stack endpoints)
            for fam in (4, 6):
                for other in self.ports.get((fam, 17, port), ()):
                    if other is not ep and not (ep.reuse and other.reuse) and \
                            _saddr_equal(ep, addr, other):
                        return True
            return False
        for other in self.ports.get((ep.family, ep.proto, port), ()):
            if other is ep:
                continue
            if ep.reuse and other.reuse:
                continue
            if addr is None or other.local_addr is None or other.local_addr == addr:
                return True
        return False

    def bind(self, ep: Endpoint, addr: bytes | None, port: int) -> None:
        """Bind to ``addr`` (None: any) and ``port`` (0: ephemeral)."""
        if ep.local_port:
            raise OSError(errno.EINVAL, "Invalid argument")
        if addr is not None and ep.family == 6 and addr[:12] == V4MAPPED:
            if ep.v6only or ep.proto != 17:
                raise OSError(errno.EINVAL, "Invalid argument")
            if addr[12:] != ANY4 and not self._is_local(4, addr[12:]):
                raise OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")
        elif addr is not None and not self._is_local(ep.family, addr):
            raise OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")
        if port == 0:
            port = self._ephemeral(ep, addr)
        elif self._conflict(ep, addr, port):
            raise OSError(errno.EADDRINUSE, "Address already in use")
        ep.local_addr = addr
        ep.local_port = port
        self.ports.setdefault((ep.family, ep.proto, port), []).append(ep)

    def _is_local(self, family: int, addr: bytes) -> bool:
        if family == 4:
            return addr in self.core.local4 or addr[0] >= 224 or addr[0] == 127
        return self.core.ip6.is_local(addr) or addr[0] == 0xFF

    def _ephemeral(self, ep: Endpoint, addr: bytes | None) -> int:
        rng = self.core.rng
        span = EPHEMERAL_HIGH - EPHEMERAL_LOW + 1
        start = rng.randrange(span)
        for i in range(span):
            port = EPHEMERAL_LOW + (start + i) % span
            if not self._conflict(ep, addr, port):
                return port
        raise OSError(errno.EADDRINUSE, "Address already in use")

    def _target(self, ep: Endpoint, addr: bytes) -> bytes:
        """The address to route to: the IPv4 address of an IPv4-mapped destination of a
        dual-stack endpoint (ENETUNREACH when IPv6-only or bound to an IPv6 address;
        EAFNOSUPPORT for an IPv6 destination of an endpoint bound to an IPv4-mapped one)."""
        if ep.family == 6 and addr[:12] == V4MAPPED:
            local = ep.local_addr
            if ep.v6only or ep.proto != 17 or (local is not None and local[:12] != V4MAPPED):
                raise OSError(errno.ENETUNREACH, "Network is unreachable")
            return addr[12:]
        if ep.family == 6 and ep.local_addr is not None and ep.local_addr[:12] == V4MAPPED:
            raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")
        return addr

    def connect(self, ep: Endpoint, addr: bytes, port: int) -> None:
        """Fix the peer; check there is a route to it."""
        self._route(ep, self._target(ep, addr))
        if not ep.local_port:
            self.bind(ep, None, 0)
        ep.remote_addr = addr
        ep.remote_port = port

    def disconnect(self, ep: Endpoint) -> None:
        """Forget the peer (connect to AF_UNSPEC)."""
        ep.remote_addr = None
        ep.remote_port = 0

    def close(self, ep: Endpoint) -> None:
        """Release the endpoint's port."""
        ep.closed = True
        key = (ep.family, ep.proto, ep.local_port)
        lst = self.ports.get(key)
        if lst and ep in lst:
            lst.remove(ep)
            if not lst:
                del self.ports[key]

    def _route(self, ep: Endpoint, dst: bytes) -> tuple[Interface, bytes, bytes]:
        """(interface, next hop, source address) for sending from ``ep`` to ``dst`` (4 bytes:
        IPv4, also for a dual-stack endpoint; the source is then 4 bytes too)."""
        if len(dst) == 4:
            local = ep.local_addr
            if local is not None and len(local) == 16:
                local = local[12:] if local[:12] == V4MAPPED else None
                if local == ANY4:
                    local = None
            iface, nexthop = self.core.ip4.route(dst, ep.ifindex)
            src = local if local is not None and local[0] < 224 \
                else self.core.ip4.source_for(iface, nexthop)
        else:
            iface, nexthop = self.core.ip6.route(dst, ep.ifindex)
            src = ep.local_addr if ep.local_addr is not None and ep.local_addr[0] != 0xFF \
                else self.core.ip6.source_for(iface, dst)
        return iface, nexthop, src

    # -- sending --------------------------------------------------------------------------
    def sendto(self, ep: Endpoint, data: bytes, addr: bytes | None, port: int,
               now: float) -> int:
        """Send one datagram; returns its length.  OSError on failure (with errno)."""
        if addr is None:
            if ep.remote_addr is None:
                raise OSError(errno.EDESTADDRREQ, "Destination address required")
            addr, port = ep.remote_addr, ep.remote_port
        core = self.core
        dst = self._target(ep, addr) if ep.family == 6 else addr
        v = 4 if len(dst) == 4 else 6
        if ep.proto == 17:
            if not 0 < port < 65536:
                raise OSError(errno.EINVAL, "Invalid argument")
            max_payload = 65535 - 8 - (20 if v == 4 else 0)
            if len(data) > max_payload:
                raise OSError(errno.EMSGSIZE, "Message too long")
            if v == 4 and (dst in core.bcast4) and not ep.broadcast:
                raise OSError(errno.EACCES, "Permission denied")
        iface, nexthop, src = self._route(ep, dst)
        if not ep.local_port:
            self.bind(ep, None, 0)
        if ep.proto == 17:
            length = 8 + len(data)
            pseudo = pseudo_v4(src, dst, 17, length) if v == 4 else \
                pseudo_v6(src, dst, 17, length)
            csum = (~fold(partial_sum(data) + pseudo + ep.local_port + port + length)) & 0xFFFF
            segment = HDR.pack(ep.local_port, port, length, csum or 0xFFFF) + data
            proto = 17
        else:
            echo_type = 8 if ep.family == 4 else 128
            if len(data) < 8 or data[0] != echo_type or data[1] != 0:
                raise OSError(errno.EINVAL, "Invalid argument")
            msg = bytearray(data)
            struct.pack_into("!HH", msg, 2, 0, ep.local_port)
            initial = 0 if ep.family == 4 else pseudo_v6(src, dst, 58, len(msg))
            struct.pack_into("!H", msg, 2, (~fold(partial_sum(msg) + initial)) & 0xFFFF)
            segment = bytes(msg)
            proto = 1 if ep.family == 4 else 58
            core.counters[f"icmp{ep.family}.tx_echo_request"] += 1
        if v == 4:
            df = False
            core.ip4.output(src, dst, proto, segment, now, ttl=ep.hop_limit, df=df,
                            via=(iface, nexthop))
        else:
            core.ip6.output(src, dst, proto, segment, now, hop_limit=ep.hop_limit,
                            via=(iface, nexthop))
        if proto == 17:
            core.counters["udp.tx"] += 1
        core.drain_loopback(now)
        return len(data)

    # -- receiving ------------------------------------------------------------------------
    def _lookup(self, family: int, proto: int, dst: bytes, dport: int, src: bytes, sport: int,
                ifindex: int) -> Endpoint | None:
        best, score = _best_match(self.ports.get((family, proto, dport), ()), None, -1, dst, src,
                                  sport, ifindex, None, False)
        if family == 4 and proto == 17:
            dual = self.ports.get((6, 17, dport))
            if dual:
                # continue over the port's dual-stack IPv6 endpoints, with IPv4-mapped addresses;
                # an IPv4 endpoint wins a tie, like Linux
                best, score = _best_match(dual, best, score, V4MAPPED + dst, V4MAPPED + src,
                                          sport, ifindex, MAPPED_ANY, True)
        return best

    def input(self, family: int, iface: Interface, src: bytes, dst: bytes, seg: memoryview,
              orig: memoryview, now: float, multicast: bool, *,
              trusted: bool | None = None) -> None:
        """Process a received UDP datagram (``trusted``: skip the checksum check; default:
        the interface's :attr:`~ioth.stack.interface.Interface.rx_csum_trusted`)."""
        core = self.core
        counters = core.counters
        if len(seg) < 8:
            raise Drop("udp.rx_truncated")
        sport, dport, length, csum = HDR.unpack_from(seg)
        if length < 8 or length > len(seg):
            raise Drop("udp.rx_bad_length")
        if length != len(seg):
            seg = seg[:length]
        # frames from an interface whose plug vouches for their checksums are not verified
        if trusted is None:
            trusted = iface.rx_csum_trusted
        if family == 4:
            if csum and not trusted and not verify(
                    seg, pseudo_v4(src, dst, 17, length)):
                raise Drop("udp.rx_bad_checksum")
        else:
            if csum == 0:
                raise Drop("udp.rx_zero_checksum_v6")
            if not trusted and not verify(seg, pseudo_v6(src, dst, 17, length)):
                raise Drop("udp.rx_bad_checksum")
        counters["udp.rx"] += 1
        ep = self._lookup(family, 17, dst, dport, src, sport, iface.index)
        if ep is None:
            counters["udp.rx_no_port"] += 1
            if not multicast:
                if family == 4:
                    core.icmp4.send_error(3, 3, orig, now, in_iface=iface)
                else:
                    core.ip6.icmp.send_error(1, 4, orig, now, in_iface=iface)
            return
        if ep.family != family:
            src = V4MAPPED + src
        if not ep.deliver(bytes(seg[8:]), src, sport, iface.index):
            counters["udp.rx_buffer_drops"] += 1

    def ping_reply(self, family: int, src: bytes, dst: bytes, ident: int, msg: bytes) -> None:
        """Deliver an ICMP echo reply to the ping endpoint owning ``ident``."""
        proto = 1 if family == 4 else 58
        ep = self._lookup(family, proto, dst, ident, src, 0, 0)
        if ep is None:
            self.core.counters[f"icmp{family}.rx_echo_reply_no_socket"] += 1
            return
        ep.deliver(msg, src, 0, 0)

    def icmp_error(self, family: int, lsrc: bytes, sport: int, rdst: bytes, dport: int,
                   err: int, fatal: bool) -> None:
        """Report an ICMP error about a datagram we sent to the connected endpoint that sent it."""
        ep = self._lookup(family, 17, lsrc, sport, rdst, dport, 0)
        if ep is not None and ep.family == 6 and family == 4 and \
                ep.remote_addr is not None and unmap(ep.remote_addr) != rdst:
            ep = None
        if ep is None or ep.remote_addr is None or not fatal:
            self.core.counters["udp.icmp_errors_ignored"] += 1
            return
        self.core.counters["udp.icmp_errors_reported"] += 1
        ep.set_error(err)

    def ping_error(self, family: int, lsrc: bytes, ident: int, rdst: bytes, err: int,
                   fatal: bool) -> None:
        """Report an ICMP error about an echo request to a connected ping endpoint."""
        proto = 1 if family == 4 else 58
        ep = self._lookup(family, proto, lsrc, ident, rdst, 0, 0)
        if ep is not None and ep.remote_addr is not None and fatal:
            ep.set_error(err)

    def endpoints(self) -> list[Endpoint]:
        """Every bound endpoint."""
        return [ep for lst in self.ports.values() for ep in lst]


def _best_match(endpoints: Iterable[Endpoint], best: Endpoint | None, best_score: int,
                dst: bytes, src: bytes, sport: int, ifindex: int, wildcard: bytes | None,
                skip_v6only: bool) -> tuple[Endpoint | None, int]:
    """The most specific endpoint for a datagram (remote 4 + local address 2 + interface 1),
    starting from ``best``; ``wildcard`` is a local address that matches any destination."""
    for ep in endpoints:
        if skip_v6only and ep.v6only:
            continue
        score = 0
        local = ep.local_addr
        if local is not None and local != wildcard:
            if local != dst:
                continue
            score += 2
        if ep.remote_addr is not None:
            if ep.remote_addr != src or (ep.remote_port and ep.remote_port != sport):
                continue
            score += 4
        if ep.ifindex:
            if ep.ifindex != ifindex:
                continue
            score += 1
        if score > best_score:
            best, best_score = ep, score
    return best, best_score
