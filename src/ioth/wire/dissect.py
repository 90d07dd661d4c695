"""One-line dissection of a whole Ethernet frame, for logs, captures and debugging.

:func:`summary` never raises: a layer that does not parse is shown as ``[malformed: reason]``.
Checksums are verified (a bad one is reported, the frame is still described).
"""

from __future__ import annotations

from ioth.wire import arp, ethernet, icmpv4, icmpv6, ipv4, ipv6, tcp, udp
from ioth.wire.errors import ChecksumError, WireError

Buffer = bytes | bytearray | memoryview


def _l4(proto: int, body: memoryview, src: bytes, dst: bytes, whole: bool) -> list[str]:
    if not whole:
        return [f"fragment data {len(body)} bytes"]
    parts: list[str] = []
    try:
        if proto == ipv4.PROTO_UDP:
            uh, data = udp.parse(body)
            parts.append(f"{uh} len={len(data)}")
            if not udp.checksum_ok(body[:8 + len(data)], src, dst):
                parts.append("[bad checksum]")
        elif proto == ipv4.PROTO_TCP:
            th, data = tcp.parse(body)
            parts.append(f"{th} len={len(data)}")
            if not tcp.checksum_ok(body, src, dst):
                parts.append("[bad checksum]")
        elif proto == ipv4.PROTO_ICMP and len(src) == 4:
            try:
                m4, data = icmpv4.parse(body)
            except ChecksumError:
                m4, data = icmpv4.parse(body, verify_checksum=False)
                parts.append("[bad checksum]")
            parts.insert(0, f"{m4} len={len(data)}")
        elif proto == ipv6.NH_ICMPV6 and len(src) == 16:
            if not icmpv6.checksum_ok(body, src, dst):
                parts.append("[bad checksum]")
            m6, data = icmpv6.parse(body)
            parts.insert(0, f"{m6}" + (f" len={len(data)}" if len(data) else ""))
        else:
            parts.append(f"proto {proto} {len(body)} bytes")
    except WireError as e:
        parts.append(f"[malformed: {e}]")
    return parts


def summary(frame: Buffer) -> str:
    """Describe ``frame`` on one line, layer by layer, separated by `` | ``."""
    parts: list[str] = []
    try:
        eth, payload = ethernet.parse(frame)
        parts.append(str(eth))
        if eth.ethertype == ethernet.ETHERTYPE_ARP:
            parts.append(str(arp.parse(payload)[0]))
        elif eth.ethertype == ethernet.ETHERTYPE_IPV4:
            try:
                ih, body = ipv4.parse(payload)
            except ChecksumError:
                ih, body = ipv4.parse(payload, verify_checksum=False)
                parts.append("[bad IPv4 header checksum]")
            parts.append(str(ih))
            parts.extend(_l4(ih.proto, body, ih.src, ih.dst, not ih.is_fragment))
        elif eth.ethertype == ethernet.ETHERTYPE_IPV6:
            h6, body = ipv6.parse(payload)
            parts.append(str(h6))
            chain = ipv6.walk(body, h6.next_header, ipv6.is_multicast(h6.dst))
            whole = True
            if chain.fragment is not None:
                parts.append(str(chain.fragment))
                whole = chain.fragment.is_atomic
            parts.extend(_l4(chain.proto, body[chain.offset:], h6.src, h6.dst, whole))
        else:
            parts.append(f"{len(payload)} bytes")
    except WireError as e:
        parts.append(f"[malformed: {e}]")
    return " | ".join(parts)
