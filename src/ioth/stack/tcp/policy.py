"""Per-stack TCP policy (overridable per connection).

A :class:`TcpPolicy` is an immutable bundle of tunables.  A stack holds one as its default; a
connection may get its own copy with :meth:`TcpPolicy.replace` (the socket layer maps
``setsockopt`` calls such as ``TCP_NODELAY`` or ``SO_RCVBUF`` onto it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ioth.errors import ConfigError


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

    def replace(self, **changes: Any) -> TcpPolicy:
        """A copy with ``changes`` applied and validated."""
        policy = dataclasses.replace(self, **changes)
        policy.validate()
        return policy

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
        for name in ("syn_retries", "synack_retries", "retries", "challenge_ack_limit"):
            if getattr(self, name) < 0:
                raise ConfigError(f"tcp {name} must not be negative, got {getattr(self, name)}")
        times = ("min_rto", "max_rto", "initial_rto", "keepidle", "keepintvl")
        for name in times:
            if not getattr(self, name) > 0:
                raise ConfigError(f"tcp {name} must be positive, got {getattr(self, name)}")
        for name in ("delayed_ack", "time_wait", "fin_timeout"):
            if getattr(self, name) < 0:
                raise ConfigError(f"tcp {name} must not be negative, got {getattr(self, name)}")
        if self.min_rto > self.max_rto:
            raise ConfigError(f"tcp min_rto {self.min_rto} is above max_rto {self.max_rto}")
        if self.mss is not None and not 64 <= self.mss <= 65495:
            raise ConfigError(f"tcp mss must be in 64..65495, got {self.mss}")
