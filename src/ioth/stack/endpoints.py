"""Sans-IO datagram endpoints (UDP and ICMP echo "ping" sockets) held by the stack core.

An endpoint owns a bounded receive queue and a pending error; ``on_event`` (set by the socket
layer) is called whenever either changes, with the stack's lock held by the caller.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

DEFAULT_RCVBUF = 1024 * 1024

Datagram = tuple[bytes, bytes, int, int]  # (payload, source address, source port, ifindex)
# Family-6 endpoints hold 16-byte addresses only: IPv4 ones as IPv4-mapped (::ffff:a.b.c.d).


class Endpoint:
    """One datagram endpoint (the protocol half of a socket)."""

    __slots__ = ("broadcast", "closed", "error", "family", "hop_limit", "ifindex", "local_addr",
                 "local_port", "on_event", "proto", "rcvbuf", "remote_addr", "remote_port",
                 "reuse", "rx_bytes", "rx_drops", "rxq", "v6only")

    def __init__(self, family: int, proto: int) -> None:
        self.family = family  # 4 or 6
        self.proto = proto  # 17 (UDP), 1 or 58 (ICMP echo)
        self.local_addr: bytes | None = None  # None: wildcard
        self.local_port = 0  # UDP port or ICMP echo identifier
        self.remote_addr: bytes | None = None
        self.remote_port = 0
        self.ifindex = 0  # SO_BINDTODEVICE-like restriction
        self.rxq: deque[Datagram] = deque()
        self.rx_bytes = 0
        self.rcvbuf = DEFAULT_RCVBUF
        self.rx_drops = 0
        self.error = 0
        self.reuse = False
        self.v6only = False  # IPV6_V6ONLY: a family-6 UDP endpoint also serves IPv4 when False
        self.broadcast = False
        self.hop_limit: int | None = None
        self.closed = False
        self.on_event: Callable[[], None] | None = None

    def deliver(self, data: bytes, addr: bytes, port: int, ifindex: int) -> bool:
        """Queue a received datagram; False (and a counted drop) when the buffer is full."""
        if self.rx_bytes + len(data) > self.rcvbuf and self.rxq:
            self.rx_drops += 1
            return False
        self.rxq.append((data, addr, port, ifindex))
        self.rx_bytes += len(data)
        if self.on_event is not None:
            self.on_event()
        return True

    def pop(self) -> Datagram | None:
        """Take the oldest queued datagram."""
        if not self.rxq:
            return None
        item = self.rxq.popleft()
        self.rx_bytes -= len(item[0])
        return item

    def set_error(self, err: int) -> None:
        """Record an asynchronous error (reported by the next socket call)."""
        self.error = err
        if self.on_event is not None:
            self.on_event()

    def take_error(self) -> int:
        """Return and clear the pending error."""
        err, self.error = self.error, 0
        return err
