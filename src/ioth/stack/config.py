"""iothconf configuration strings (``shared/specs/ioth.md`` section 2).

Options are separated by commas, semicolons, spaces or newlines; tags are case-insensitive; a
leading ``-`` undoes a tag (``-ip=192.0.2.1`` removes an address, ``-eth`` brings the link down).
An unknown tag is a :class:`~ioth.errors.ConfigError` naming it.  This module only parses; the
stack applies the result (:meth:`ioth.stack.stack.Stack.config`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from ioth.errors import ConfigError
from ioth.stack.hashaddr import parse_mac

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

#: autoconfiguration tags and what they stand for
AUTOCONF_TAGS: dict[str, tuple[str, ...]] = {
    "dhcp": ("dhcp",), "dhcp4": ("dhcp",), "dhcpv4": ("dhcp",),
    "dhcp6": ("dhcp6",), "dhcpv6": ("dhcp6",),
    "rd": ("rd",), "rd6": ("rd",), "slaac": ("slaac",),
    "auto": ("dhcp", "dhcp6", "rd"), "auto4": ("dhcp",), "auto6": ("dhcp6", "rd"),
}
_AUTO_ETH = {"auto", "auto4", "auto6"}
_FLAG_TAGS = {"eth", "debug", "forward", "forwarding"} | set(AUTOCONF_TAGS)
_VALUE_TAGS = {"stack", "vnl", "iface", "ifindex", "mac", "macaddr", "fqdn", "ip", "gw", "dns",
               "domain", "mtu", "password"}
_SPLIT = re.compile(r"[,;\s]+")


@dataclass
class Config:
    """A parsed configuration string.  ``None`` means "not mentioned"."""

    stack: str | None = None
    vnl: list[str] = field(default_factory=list)
    iface: str | None = None
    ifindex: int | None = None
    eth: bool | None = None
    mac: bytes | None = None
    fqdn: str | None = None
    password: str | None = None
    ips: list[tuple[bool, IPInterface]] = field(default_factory=list)  # (remove?, address)
    gws: list[tuple[bool, IPAddress]] = field(default_factory=list)
    dns: list[tuple[bool, IPAddress]] = field(default_factory=list)
    domain: str | None = None
    mtu: int | None = None
    debug: bool | None = None
    forward: bool | None = None
    autoconf: list[str] = field(default_factory=list)  # requested autoconfiguration methods


def _address(tag: str, value: str) -> IPAddress:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise ConfigError(f"config {tag}={value!r}: not an IPv4 or IPv6 address") from None


def _interface(value: str) -> IPInterface:
    addr_text, slash, plen = value.partition("/")
    addr = _address("ip", addr_text)
    if not slash:
        plen = "24" if addr.version == 4 else "64"
    try:
        n = int(plen)
    except ValueError:
        raise ConfigError(f"config ip={value!r}: bad prefix length {plen!r}") from None
    if not 0 <= n <= addr.max_prefixlen:
        raise ConfigError(f"config ip={value!r}: prefix length {n} out of range")
    return ipaddress.ip_interface(f"{addr}/{n}")


def parse_config(text: str) -> Config:
    """Parse an iothconf string; raises ConfigError naming the offending option."""
    cfg = Config()
    for token in _SPLIT.split(text.strip()):
        if not token:
            continue
        negate = token.startswith("-")
        body = token[1:] if negate else token
        tag, eq, value = body.partition("=")
        tag = tag.lower()
        if tag in _FLAG_TAGS:
            if eq:
                raise ConfigError(f"config option {tag!r} takes no value (got {token!r})")
        elif tag in _VALUE_TAGS:
            if not eq or (value == "" and not negate):
                raise ConfigError(f"config option {tag!r} needs a value ({tag}=...)")
        else:
            raise ConfigError(f"unknown config option {tag!r} in {token!r}")
        _apply_token(cfg, tag, value, negate, token)
    return cfg


def _apply_token(cfg: Config, tag: str, value: str, negate: bool, token: str) -> None:
    if tag == "eth":
        cfg.eth = not negate
    elif tag in ("debug",):
        cfg.debug = not negate
    elif tag in ("forward", "forwarding"):
        cfg.forward = not negate
    elif tag in AUTOCONF_TAGS:
        if not negate:
            cfg.autoconf.extend(m for m in AUTOCONF_TAGS[tag] if m not in cfg.autoconf)
            if tag in _AUTO_ETH:
                cfg.eth = True
    elif tag == "stack":
        cfg.stack = None if negate else value
    elif tag == "vnl":
        if not negate:
            cfg.vnl.append(value)
    elif tag == "iface":
        cfg.iface = value
    elif tag == "ifindex":
        try:
            cfg.ifindex = int(value)
        except ValueError:
            raise ConfigError(f"config {token!r}: ifindex must be an integer") from None
    elif tag in ("mac", "macaddr"):
        if negate:
            cfg.mac = None
        else:
            try:
                cfg.mac = parse_mac(value)
            except ValueError as exc:
                raise ConfigError(f"config {token!r}: {exc}") from None
            if cfg.mac[0] & 1:
                raise ConfigError(f"config {token!r}: a multicast MAC cannot name an interface")
    elif tag == "fqdn":
        cfg.fqdn = None if negate else value
    elif tag == "password":
        cfg.password = None if negate else value
    elif tag == "ip":
        cfg.ips.append((negate, _interface(value)))
    elif tag == "gw":
        cfg.gws.append((negate, _address(tag, value)))
    elif tag == "dns":
        cfg.dns.append((negate, _address(tag, value)))
    elif tag == "domain":
        cfg.domain = None if negate else value
    elif tag == "mtu":
        if negate:
            cfg.mtu = None
            return
        try:
            mtu = int(value)
        except ValueError:
            raise ConfigError(f"config {token!r}: mtu must be an integer") from None
        if not 68 <= mtu <= 65535:
            raise ConfigError(f"config {token!r}: mtu must be between 68 and 65535")
        cfg.mtu = mtu
