"""Per-stack TCP policy (overridable per connection).

A :class:`TcpPolicy` is an immutable bundle of tunables.  A stack holds one as its default
(:class:`~ioth.stack.tcp.layer.TcpLayer` ``policy=``); a listener or connection may get its own
copy with :meth:`TcpPolicy.replace`, and a live connection switches with
``TcpConnection.apply_policy`` (the socket layer maps ``setsockopt`` onto it: ``TCP_NODELAY`` ->
``nodelay``, ``SO_KEEPALIVE``/``TCP_KEEPIDLE``/``TCP_KEEPINTVL``/``TCP_KEEPCNT`` ->
``keepalive``/``keepidle``/``keepintvl``/``keepcnt``, ``SO_SNDBUF``/``SO_RCVBUF`` ->
``send_buffer``/``recv_buffer``, ``TCP_CONGESTION`` -> ``congestion_control``).

Text form (for a stack configuration string or a CLI flag): :meth:`TcpPolicy.from_options`
takes ``{"congestion_control": "newreno", "min_rto": "0.3", "nodelay": "yes", ...}``; the keys
are the field names below, values are parsed by field type; errors name the key.

==================== ========= =====================================================
field                default   meaning
==================== ========= =====================================================
congestion_control   cubic     ``newreno``, ``cubic`` or any :func:`register_cc` name
initial_window       10        initial cwnd in segments (RFC 6928)
send_buffer          1 MiB     bytes queued by send() and not yet acknowledged
recv_buffer          1 MiB     receive window (window scale chosen from it)
min_rto / max_rto    0.2/120 s RTO bounds (RFC 6298 2.4/2.5)
initial_rto          1 s       RTO before an RTT sample
syn_retries          6         SYN retransmissions before ETIMEDOUT
synack_retries       5         SYN-ACK retransmissions of a half-open connection
retries              15        RTO expirations in a row before ETIMEDOUT
delayed_ack          0.04 s    delayed-ACK timer (ACK at least every 2nd full segment)
time_wait            60 s      TIME-WAIT (2*MSL)
max_tw_buckets       262144    compact TIME-WAIT entries of a stack (stack policy); beyond
                               it a closing connection skips TIME-WAIT (counted)
fin_timeout          60 s      FIN-WAIT-2 limit after close()
keepalive..keepcnt   off/2h/75s/9 keepalive defaults
nodelay              no        disable Nagle
window_scaling, timestamps, sack  yes  offer RFC 7323 / RFC 2018 options
mss                  (MTU)     clamp of the MSS
syn_backlog          256       half-open connections per listener before SYN cookies
challenge_ack_limit  1000      RFC 5961 challenge ACKs per second per connection
tail_loss_probe      yes       RFC 8985 tail loss probes (with SACK)
abc_limit            0         RFC 3465 L: slow-start growth per ACK in segments (0: none)
wmem_max / rmem_max  212992    largest SO_SNDBUF / SO_RCVBUF a socket may ask (doubled, as
                               Linux's net.core.wmem_max / rmem_max)
ttl, hop_limit       -1        IPv4 TTL / IPv6 hop limit of the packets (-1: the stack's)
tos, tclass          0         IPv4 TOS / IPv6 traffic class of the packets
user_timeout         0 s       TCP_USER_TIMEOUT: unacknowledged data this long ends it (0: off)
==================== ========= =====================================================
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ioth.errors import ConfigError

_BOOLS = {"1": True, "yes": True, "true": True, "on": True,
          "0": False, "no": False, "false": False, "off": False}


@dataclass(frozen=True, slots=True)
class TcpPolicy:
    """Tunables of a TCP stack or connection; times are seconds, sizes bytes."""

    congestion_control: str = "cubic"
    """Name of a registered congestion controller (``newreno``, ``cubic``, ...)."""
    initial_window: int = 10
    """Initial congestion window in segments (RFC 6928)."""
    send_buffer: int = 1 << 20
    """Send buffer capacity: :meth:`TcpConnection.send` accepts at most this much unacked data."""
    recv_buffer: int = 1 << 20
    """Receive buffer capacity; sets the advertised window and the window scale."""
    min_rto: float = 0.2
    """Lower bound of the retransmission timeout (RFC 6298 says 1 s; Linux uses 200 ms)."""
    max_rto: float = 120.0
    """Upper bound of the retransmission timeout (RFC 6298 2.5: at least 60 s)."""
    initial_rto: float = 1.0
    """RTO before the first RTT sample (RFC 6298 2.1)."""
    syn_retries: int = 6
    """SYN retransmissions before ETIMEDOUT (active open)."""
    synack_retries: int = 5
    """SYN-ACK retransmissions before a half-open connection is dropped."""
    retries: int = 15
    """Data retransmission timeouts in a row before ETIMEDOUT (like Linux tcp_retries2)."""
    delayed_ack: float = 0.04
    """Delayed-ACK time (RFC 9293 3.8.6.3: less than 0.5 s)."""
    time_wait: float = 60.0
    """TIME-WAIT length (2*MSL)."""
    max_tw_buckets: int = 262144
    """Like Linux ``tcp_max_tw_buckets``: at most this many connections of a stack wait in
    (compact) TIME-WAIT; beyond it a connection skips TIME-WAIT (``TcpLayer.tw_overflow``
    counts them).  Read from the stack's policy, not a connection's."""
    fin_timeout: float = 60.0
    """How long a closed (orphaned) connection may stay in FIN-WAIT-2."""
    keepalive: bool = False
    """SO_KEEPALIVE default."""
    keepidle: float = 7200.0
    """TCP_KEEPIDLE: idle time before the first keepalive probe."""
    keepintvl: float = 75.0
    """TCP_KEEPINTVL: time between unanswered keepalive probes."""
    keepcnt: int = 9
    """TCP_KEEPCNT: unanswered probes before ETIMEDOUT."""
    nodelay: bool = False
    """TCP_NODELAY: disable Nagle's algorithm."""
    window_scaling: bool = True
    """Offer the window scale option (RFC 7323)."""
    timestamps: bool = True
    """Offer the timestamps option (RFC 7323)."""
    sack: bool = True
    """Offer SACK-permitted (RFC 2018)."""
    mss: int | None = None
    """Clamp of the MSS we advertise and use (default: from the MTU)."""
    syn_backlog: int = 256
    """Half-open connections per listener before SYN cookies are used."""
    challenge_ack_limit: int = 1000
    """Challenge ACKs per second per connection (RFC 5961 section 7)."""
    tail_loss_probe: bool = True
    """Send a tail loss probe after 2*SRTT without ACKs (RFC 8985 7; SACK connections)."""
    abc_limit: int = 0
    """RFC 3465 appropriate byte counting limit L, in segments: in slow start one ACK grows
    cwnd by at most L*SMSS (RFC 3465 suggests 2).  0 (the default, as Linux) counts every
    acknowledged byte: receivers that coalesce ACKs (ioth's batched input ACKs once per
    wake-up, 100+ segments) would otherwise turn slow start into a crawl."""

    wmem_max: int = 212992
    """As Linux's ``net.core.wmem_max``: ``setsockopt(SO_SNDBUF, v)`` gives
    ``2 * min(v, wmem_max)`` (at least 4608, Linux's SOCK_MIN_SNDBUF)."""
    rmem_max: int = 212992
    """As Linux's ``net.core.rmem_max``: ``setsockopt(SO_RCVBUF, v)`` gives
    ``2 * min(v, rmem_max)`` (at least 2304, Linux's SOCK_MIN_RCVBUF)."""
    ttl: int = -1
    """IP_TTL: TTL of the connection's IPv4 packets (-1: the stack's default, 64)."""
    tos: int = 0
    """IP_TOS: TOS byte of the connection's IPv4 packets (the ECN bits are TCP's: 0)."""
    hop_limit: int = -1
    """IPV6_UNICAST_HOPS: hop limit of the connection's IPv6 packets (-1: the
    interface's, 64 unless a router advertisement said otherwise)."""
    tclass: int = 0
    """IPV6_TCLASS: traffic class of the connection's IPv6 packets (ECN bits 0)."""

    user_timeout: float = 0.0
    """TCP_USER_TIMEOUT (RFC 5482) in seconds: data still unacknowledged this long after it
    was sent, retransmissions going unanswered, ends the connection with ETIMEDOUT (the
    retransmission timer is cut to fire then); 0: only ``retries`` bounds them."""
    ip_header: bool = dataclasses.field(default=False, init=False, repr=False, compare=False)
    """Derived: the policy sets a TTL, hop limit, TOS or traffic class of its own (a plain
    field, read once per new connection)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "ip_header", self.ttl >= 0 or self.hop_limit >= 0
                           or bool(self.tos or self.tclass))

    def replace(self, **changes: Any) -> TcpPolicy:
        """A copy with ``changes`` applied and validated."""
        policy = dataclasses.replace(self, **changes)
        policy.validate()
        return policy

    @classmethod
    def from_options(cls, options: Mapping[str, str], base: TcpPolicy | None = None
                     ) -> TcpPolicy:
        """A policy from text ``key=value`` pairs on top of ``base`` (ConfigError names the key)."""
        base = base if base is not None else cls()
        types = {f.name: f.type for f in dataclasses.fields(cls) if f.init}
        changes: dict[str, Any] = {}
        for key, text in options.items():
            kind = types.get(key)
            if kind is None:
                raise ConfigError(f"unknown tcp option {key!r} (known: {', '.join(types)})")
            value = text.strip()
            try:
                if kind == "bool":
                    low = value.lower()
                    if low not in _BOOLS:
                        raise ValueError(value)
                    changes[key] = _BOOLS[low]
                elif kind == "int":
                    changes[key] = int(value, 0)
                elif kind == "int | None":
                    changes[key] = None if value.lower() in ("", "none", "auto") else int(value, 0)
                elif kind == "float":
                    changes[key] = float(value)
                else:
                    changes[key] = value
            except ValueError:
                raise ConfigError(f"tcp option {key}={text!r} is not a valid {kind}") from None
        return base.replace(**changes)

    def validate(self) -> None:
        """Raise :class:`ioth.errors.ConfigError` naming the first invalid field."""
        from ioth.stack.tcp.cc import cc_names

        if self.congestion_control not in cc_names():
            raise ConfigError(
                f"tcp congestion_control {self.congestion_control!r} is not one of "
                f"{', '.join(sorted(cc_names()))}"
            )
        positive = ("initial_window", "send_buffer", "recv_buffer", "keepcnt", "syn_backlog")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"tcp {name} must be at least 1, got {getattr(self, name)}")
        for name in ("syn_retries", "synack_retries", "retries", "challenge_ack_limit",
                     "abc_limit", "max_tw_buckets"):
            if getattr(self, name) < 0:
                raise ConfigError(f"tcp {name} must not be negative, got {getattr(self, name)}")
        times = ("min_rto", "max_rto", "initial_rto", "keepidle", "keepintvl")
        for name in times:
            if not getattr(self, name) > 0:
                raise ConfigError(f"tcp {name} must be positive, got {getattr(self, name)}")
        for name in ("delayed_ack", "time_wait", "fin_timeout", "user_timeout"):
            if getattr(self, name) < 0:
                raise ConfigError(f"tcp {name} must not be negative, got {getattr(self, name)}")
        if self.min_rto > self.max_rto:
            raise ConfigError(f"tcp min_rto {self.min_rto} is above max_rto {self.max_rto}")
        for name in ("wmem_max", "rmem_max"):
            if getattr(self, name) < 1:
                raise ConfigError(f"tcp {name} must be at least 1, got {getattr(self, name)}")
        for name, low in (("ttl", 1), ("hop_limit", 0), ("tos", 0), ("tclass", 0)):
            value = getattr(self, name)
            if not (low <= value <= 255 or (value == -1 and name in ("ttl", "hop_limit"))):
                also = " or -1" if name in ("ttl", "hop_limit") else ""
                raise ConfigError(f"tcp {name} must be in {low}..255{also}, got {value}")
        if self.mss is not None and not 64 <= self.mss <= 65495:
            raise ConfigError(f"tcp mss must be in 64..65495, got {self.mss}")
