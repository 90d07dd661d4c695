"""``vxlan://[group][/v4/v6/port=4789/vni=1/ttl=1/if=IFNAME/hashsize=1024/expiretime=128]``.

RFC 7348 VXLAN, interoperable with a Linux ``vxlan`` device and with vdeplug4's ``vxlan`` module:

* one UDP socket bound to the wildcard address on ``port`` (4789), joined to ``group``, with
  multicast loopback off (so two VXLAN endpoints on one host do not see each other's multicast);
* every datagram is the 8-byte VXLAN header (flags 0x08 = "VNI valid", 24-bit VNI) and a frame;
  datagrams with other flags or another VNI are dropped;
* source MAC -> sender IP is learned; learned peers are always addressed at ``port`` (a Linux
  VTEP sends from a hashed ephemeral source port but listens on 4789);
* broadcast, multicast and unknown destinations go to the group.
"""

from __future__ import annotations

import socket
import time
from typing import Any, ClassVar

from ioth.net.plug import MIN_FRAME
from ioth.net.plugs.udp import RECV_SIZE, SockAddr, wildcard
from ioth.net.plugs.vxvde import (
    VX_FLAGS,
    VX_HLEN,
    VxPlug,
    join_group,
    resolve_group,
    set_multicast_out,
    vx_options,
)
from ioth.net.vnl import VNL, Style

VXLAN_PORT = 4789


class VxlanPlug(VxPlug):
    """A VXLAN tunnel endpoint (VTEP) carrying one VNI."""

    STYLE: ClassVar[Style] = "slash"
    KEYS: ClassVar[tuple[str, ...]] = ("v4", "v6", "port", "vni", "ttl", "if", "hashsize",
                                       "expiretime", "rcvbuf", "mtu")

    def __init__(self, group: SockAddr, family: int, vni: int = 1, ttl: int = 1,
                 ifindex: int = 0, hashsize: int = 1024, expiretime: float = 128.0,
                 rcvbuf: int = 0, vnl: str = "", mtu: int | None = None) -> None:
        super().__init__(group, family, vni, hashsize, expiretime, vnl, mtu)
        self.port = int(group[1])
        self.sock = self._tx = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if rcvbuf:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            set_multicast_out(self.sock, family, ttl, ifindex, loop=False)
            self.sock.bind((wildcard(family), self.port))
            join_group(self.sock, family, group[0], ifindex)
            self.sock.setblocking(False)
        except OSError:
            self.sock.close()
            raise

    @classmethod
    def from_vnl(cls, vnl: VNL, **kwargs: Any) -> VxlanPlug:
        """Open from ``vxlan://group/options``."""
        port = vnl.int_option("port", VXLAN_PORT)
        family, group = resolve_group(vnl, port)
        options = vx_options(vnl, kwargs, cls.DEFAULT_MTU)
        return cls(group, family, vni=vnl.int_option("vni", 1) & 0xFFFFFF, **options)

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv_frames(self, limit: int = 64) -> list[bytes]:
        """Read datagrams until EAGAIN or ``limit``; learn their senders."""
        out: list[bytes] = []
        if self.closed:
            return out
        counters = self.counters
        recvfrom = self.sock.recvfrom
        learn = self.table.learn
        vni_bytes = self.header[4:7]
        port = self.port
        now = time.monotonic()
        while len(out) < limit:
            try:
                data, sender = recvfrom(RECV_SIZE)
            except BlockingIOError:
                break
            except OSError:
                counters.rx_errors += 1
                break
            n = len(data) - VX_HLEN
            if n < MIN_FRAME:
                counters.rx_errors += 1
                continue
            # RFC 7348: the I flag must be set; reserved bits are ignored by receivers
            if data[0] != VX_FLAGS or data[4:7] != vni_bytes:
                counters.rx_dropped += 1
                continue
            frame = data[VX_HLEN:]
            learn(frame[6:12], (sender[0], port, *sender[2:]), now)
            counters.rx_frames += 1
            counters.rx_bytes += n
            out.append(frame)
        return out

    def close(self) -> None:
        if not self.closed:
            self.sock.close()
        super().close()

    def describe(self) -> str:
        return f"vxlan group {self.group[0]}:{self.port} vni {self.vni}"
