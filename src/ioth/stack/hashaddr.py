"""Hash-based IPv6 addresses, hash MAC addresses and EUI-64 interface identifiers.

Algorithms as in ``shared/specs/ioth.md`` section 3 (iothaddr of the VirtualSquare project).
"""

from __future__ import annotations

import hashlib
import ipaddress
import struct


def _digest(name: str, password: str | None, otiptime: int = 0) -> bytes:
    if name.endswith("."):
        name = name[:-1]
    h = hashlib.md5(name.encode())
    if password is not None:
        h.update(password.encode())
    if otiptime != 0:
        h.update(struct.pack("!I", otiptime & 0xFFFFFFFF))
    return h.digest()


def hash_address(base: str | bytes, name: str, password: str | None = None,
                 otiptime: int = 0) -> bytes:
    """The hash IPv6 address of ``name`` under ``base`` (16 bytes)."""
    raw = base if isinstance(base, bytes) else ipaddress.IPv6Address(base).packed
    if len(raw) != 16:
        raise ValueError("hash_address: base must be an IPv6 address")
    digest = _digest(name, password, otiptime)
    addr = bytearray(raw)
    for i in range(8):
        addr[8 + i] ^= digest[i]
    addr[8] &= ~3 & 0xFF
    return bytes(addr)


def hash_mac(name: str, password: str | None = None) -> bytes:
    """The locally administered unicast MAC derived from ``name`` (6 bytes)."""
    h = _digest(name, password)
    mac = bytearray((h[0], h[1], h[2], h[5], h[6], h[7]))
    mac[0] = (mac[0] | 0x02) & 0xFE
    return bytes(mac)


def eui64_iid(mac: bytes) -> bytes:
    """Modified EUI-64 interface identifier (8 bytes) of a 48-bit MAC."""
    return bytes((mac[0] ^ 0x02, mac[1], mac[2], 0xFF, 0xFE, mac[3], mac[4], mac[5]))


def mac_to_str(mac: bytes) -> str:
    """``aa:bb:cc:dd:ee:ff``."""
    return ":".join(f"{b:02x}" for b in mac)


def parse_mac(text: str | bytes) -> bytes:
    """A MAC from ``aa:bb:cc:dd:ee:ff`` (or ``-`` separated) text or 6 raw bytes."""
    if isinstance(text, bytes | bytearray):
        if len(text) != 6:
            raise ValueError(f"MAC address must be 6 bytes, got {len(text)}")
        return bytes(text)
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6:
        raise ValueError(f"bad MAC address {text!r}")
    try:
        values = [int(p, 16) for p in parts]
    except ValueError:
        raise ValueError(f"bad MAC address {text!r}") from None
    if any(not 0 <= v <= 255 or len(p) > 2 for v, p in zip(values, parts, strict=True)):
        raise ValueError(f"bad MAC address {text!r}")
    return bytes(values)
