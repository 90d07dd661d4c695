"""Interfaces of a stack and their addresses (plain state, no behaviour)."""

from __future__ import annotations

import ipaddress
from collections import deque
from dataclasses import dataclass, field

BROADCAST_MAC = b"\xff" * 6

#: IPv6 address states (RFC 4862)
TENTATIVE = "tentative"
PREFERRED = "preferred"
DUPLICATE = "duplicate"


@dataclass(slots=True)
class Addr4:
    """An IPv4 address on an interface."""

    addr: bytes
    plen: int
    broadcast: bytes

    def __str__(self) -> str:
        return f"{ipaddress.IPv4Address(self.addr)}/{self.plen}"


@dataclass(slots=True)
class Addr6:
    """An IPv6 address on an interface with its DAD state."""

    addr: bytes
    plen: int
    state: str = PREFERRED
    dad_left: int = 0  # DAD probes still to send
    origin: str = "static"  # static, link (link-local), ra

    def __str__(self) -> str:
        return f"{ipaddress.IPv6Address(self.addr)}/{self.plen}"


@dataclass(slots=True)
class Interface:
    """One interface: link state, addresses, joined groups and the frames waiting to go out.

    ``txq`` holds complete Ethernet frames (for the loopback interface: IP packets) that the
    runtime hands to the interface's plug.
    """

    index: int
    name: str
    mac: bytes
    mtu: int = 1500
    up: bool = False
    loopback: bool = False
    vnl: str = ""
    addrs4: list[Addr4] = field(default_factory=list)
    addrs6: list[Addr6] = field(default_factory=list)
    groups6: dict[bytes, int] = field(default_factory=dict)  # group -> join count
    groups4: dict[bytes, int] = field(default_factory=dict)  # IPv4 groups joined by sockets
    mcast_macs: set[bytes] = field(default_factory=set)  # 33:33:xx MACs of joined groups
    txq: deque[bytes | bytearray] = field(default_factory=deque)
    hop_limit: int = 64
    reachable_time: float = 30.0
    retrans_timer: float = 1.0
    #: the plug vouches for received checksums (:attr:`ioth.net.plug.Plug.rx_csum_trusted`)
    rx_csum_trusted: bool = False
    #: transmit offloads of the plug (:attr:`ioth.net.plug.Plug.gso_max_size` and
    #: ``tx_csum_offload``): TCP may hand this interface super-segments up to this IP packet
    #: size (0: none) and partial checksums, as :class:`ioth.net.plug.OffloadFrame` frames
    gso_max_size: int = 0
    tx_csum_offload: bool = False
    rx_frames: int = 0
    tx_frames: int = 0
    tx_dropped: int = 0

    def addr4_for(self, dst: bytes) -> bytes | None:
        """Address of this interface on the same subnet as ``dst`` (else the first one)."""
        if not self.addrs4:
            return None
        value = int.from_bytes(dst, "big")
        for a in self.addrs4:
            shift = 32 - a.plen
            if (int.from_bytes(a.addr, "big") >> shift) == (value >> shift):
                return a.addr
        return self.addrs4[0].addr

    def link_local6(self) -> bytes | None:
        """The preferred link-local address of this interface, if any."""
        for a in self.addrs6:
            if a.state == PREFERRED and a.addr[:2] == b"\xfe\x80":
                return a.addr
        return None
