"""iothconf configuration strings (``shared/specs/ioth.md`` section 2).

Options are separated by commas, semicolons, spaces or newlines; tags are case-insensitive; a
leading ``-`` undoes a tag (``-ip=192.0.2.1`` removes an address, ``-eth`` brings the link down).
An unknown tag is a :class:`~ioth.errors.ConfigError` naming it.  This module only parses; the
stack applies the result (:meth:`ioth.stack.stack.Stack.config`).

``tcp_*`` tags set the stack's TCP policy (:class:`~ioth.stack.tcp.policy.TcpPolicy`): the short
names of :data:`TCP_TAGS` (``tcp_cc=newreno``, ``tcp_iw=10``, ``tcp_rmem=262144``...) or
``tcp_<field>`` for any policy field (``tcp_syn_backlog=64``).  Boolean fields also work as flags
(``tcp_nodelay``, ``-tcp_sack``); ``-tcp_cc`` (any other negated tag) restores the default.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass, field

from ioth.errors import ConfigError
from ioth.stack.hashaddr import parse_mac
from ioth.stack.tcp.policy import TcpPolicy

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

#: short ``tcp_*`` configuration tags and the :class:`TcpPolicy` field each one sets
TCP_TAGS: dict[str, str] = {
    "tcp_cc": "congestion_control", "tcp_iw": "initial_window",
    "tcp_rmem": "recv_buffer", "tcp_wmem": "send_buffer",
    "tcp_rto_min": "min_rto", "tcp_rto_max": "max_rto", "tcp_rto_init": "initial_rto",
    "tcp_retries": "retries", "tcp_synretries": "syn_retries",
    "tcp_synackretries": "synack_retries", "tcp_delack": "delayed_ack",
    "tcp_timewait": "time_wait", "tcp_fintimeout": "fin_timeout",
    "tcp_keepalive": "keepalive", "tcp_keepidle": "keepidle", "tcp_keepintvl": "keepintvl",
    "tcp_keepcnt": "keepcnt", "tcp_nodelay": "nodelay", "tcp_wscale": "window_scaling",
    "tcp_timestamps": "timestamps", "tcp_sack": "sack", "tcp_mss": "mss",
    "tcp_synbacklog": "syn_backlog", "tcp_tlp": "tail_loss_probe",
}
_DEFAULT_POLICY = TcpPolicy()
_WIDE_RTO = TcpPolicy(min_rto=1e-9, max_rto=1e9)
_TCP_FIELDS: dict[str, str] = {f.name: str(f.type) for f in dataclasses.fields(TcpPolicy)}


def tcp_field(tag: str) -> str | None:
    """The :class:`TcpPolicy` field a (lower-case) ``tcp_*`` tag sets, or None."""
    if tag in TCP_TAGS:
        return TCP_TAGS[tag]
    if tag.startswith("tcp_") and tag[4:] in _TCP_FIELDS:
        return tag[4:]
    return None


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
    tcp: dict[str, str | None] = field(default_factory=dict)
    """TCP policy changes: field name -> text value (None: back to the default)."""
    tcp_tags: dict[str, str] = field(default_factory=dict)
    """The tag that set each field of :attr:`tcp` (for error messages)."""


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
        if tag.startswith("tcp_"):
            _tcp_token(cfg, tag, value, eq, negate, token)
            continue
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


def _tcp_token(cfg: Config, tag: str, value: str, eq: str, negate: bool, token: str) -> None:
    name = tcp_field(tag)
    if name is None:
        known = ", ".join(sorted(TCP_TAGS))
        raise ConfigError(f"unknown config option {tag!r} in {token!r} (TCP tags: {known}, "
                          f"or tcp_<TcpPolicy field>)")
    is_bool = _TCP_FIELDS[name] == "bool"
    text: str | None
    if negate:
        if eq:
            raise ConfigError(f"config option {token!r}: a negated tcp tag takes no value")
        text = "no" if is_bool else None
    elif not eq:
        if not is_bool:
            raise ConfigError(f"config option {tag!r} needs a value ({tag}=...)")
        text = "yes"
    else:
        if value == "":
            raise ConfigError(f"config option {tag!r} needs a value ({tag}=...)")
        text = value
    if text is not None:
        # the value alone is checked here (min_rto <= max_rto when the stack applies it)
        base = _WIDE_RTO if name in ("min_rto", "max_rto") else _DEFAULT_POLICY
        try:
            TcpPolicy.from_options({name: text}, base)
        except ConfigError as exc:
            raise ConfigError(f"config {token!r}: {exc}") from None
    cfg.tcp[name] = text
    cfg.tcp_tags[name] = tag


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
