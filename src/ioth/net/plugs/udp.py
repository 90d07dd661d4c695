"""``udp://[src:]sport->dst:dport``: raw Ethernet frames as UDP payloads, no header.

Compatible with vdeplug4's ``udp`` module: the local socket is bound to ``src:sport`` (any address
when ``src`` is omitted) and every frame is sent to ``dst:dport``.  IPv6 addresses may be written
in brackets (``udp://[::1]:5000->[::1]:5001``).  Option ``mtu=N`` (default 1500, up to 65000)
sets the largest Ethernet payload.

The module also holds the small socket helpers shared by :mod:`~ioth.net.plugs.vxvde` and
:mod:`~ioth.net.plugs.vxlan`.
"""

from __future__ import annotations

import socket
from typing import Any, ClassVar

from ioth.errors import VNLError
from ioth.net.plug import MIN_FRAME, Plug
from ioth.net.vnl import VNL, Style

#: largest UDP payload over IPv4 (65535 - 20 - 8)
MAX_UDP_PAYLOAD = 65507
#: receive buffer size: any datagram fits
RECV_SIZE = 65536

SockAddr = tuple[Any, ...]


def strip_brackets(host: str) -> str:
    """``[::1]`` -> ``::1``; other strings unchanged."""
    if host.startswith("[") and host.endswith("]"):
        return host[1:-1]
    return host


def split_host_port(text: str, what: str, vnl_text: str) -> tuple[str | None, str]:
    """Split ``host:port`` at the last colon; ``port`` alone gives host None."""
    if ":" not in text:
        return None, text
    host, _, port = text.rpartition(":")
    if host == "":
        return None, port
    return strip_brackets(host), port


def parse_mtu(vnl: VNL, default: int, limit: int = 65000) -> int:
    """The ``mtu`` option of ``vnl`` checked against 68..``limit``."""
    mtu = vnl.int_option("mtu", default)
    if not 68 <= mtu <= limit:
        raise VNLError(f"VNL {vnl.text!r}: mtu={mtu} out of range 68..{limit}")
    return mtu


def plug_mtu(vnl: VNL, kwargs: dict[str, Any], default: int) -> int:
    """``kwargs['mtu']`` (removed from ``kwargs``) if given, else :func:`parse_mtu` of ``vnl``."""
    mtu = kwargs.pop("mtu", None)
    if mtu is None:
        mtu = parse_mtu(vnl, default)
    return int(mtu)


def wildcard(family: int) -> str:
    """The any-address of ``family`` (``::`` or ``0.0.0.0``)."""
    return "::" if family == socket.AF_INET6 else "0.0.0.0"


def resolve(host: str | None, port: str, family: int, passive: bool, what: str,
            vnl_text: str) -> tuple[int, SockAddr]:
    """getaddrinfo for a datagram socket; returns (family, sockaddr) of the first answer."""
    try:
        infos = socket.getaddrinfo(host, port, family, socket.SOCK_DGRAM, 0,
                                   socket.AI_PASSIVE if passive else 0)
    except (socket.gaierror, UnicodeError) as exc:
        raise VNLError(f"VNL {vnl_text!r}: cannot resolve {what} {host or ''}:{port}: {exc}"
                       ) from None
    fam, _, _, _, addr = infos[0]
    return int(fam), addr


class UdpPlug(Plug):
    """A point-to-point cable over one UDP socket."""

    STYLE: ClassVar[Style] = "slash"
    KEYS: ClassVar[tuple[str, ...]] = ("mtu",)

    def __init__(self, local: SockAddr, remote: SockAddr, family: int, vnl: str = "",
                 mtu: int | None = None) -> None:
        super().__init__(vnl, mtu)
        self.remote = remote
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self.sock.bind(local)
            self.sock.setblocking(False)
        except OSError:
            self.sock.close()
            raise
        self.local = self.sock.getsockname()

    @classmethod
    def from_vnl(cls, vnl: VNL, **kwargs: Any) -> UdpPlug:
        """Open ``udp://[src:]sport->dst:dport[/mtu=N]``."""
        src, arrow, dst = vnl.address.partition("->")
        if not arrow:
            raise VNLError(f"VNL {vnl.text!r}: udp:// needs [src:]sport->dst:dport")
        dhost, dport = split_host_port(dst, "destination", vnl.text)
        if dhost is None or not dport:
            raise VNLError(f"VNL {vnl.text!r}: destination {dst!r} needs host:port")
        shost, sport = split_host_port(src, "source", vnl.text)
        if not sport:
            raise VNLError(f"VNL {vnl.text!r}: missing source port before '->'")
        family, remote = resolve(dhost, dport, socket.AF_UNSPEC, False, "destination", vnl.text)
        _, local = resolve(shost, sport, family, True, "source", vnl.text)
        return cls(local, remote, family, vnl=vnl.text, mtu=plug_mtu(vnl, kwargs, cls.DEFAULT_MTU))

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, frame: bytes | bytearray | memoryview) -> bool:
        """Send one frame as one datagram."""
        n = len(frame)
        counters = self.counters
        if n < MIN_FRAME or n > self.max_frame or self.closed:
            counters.tx_dropped += 1
            return False
        try:
            self.sock.sendto(frame, self.remote)
        except OSError:
            counters.tx_dropped += 1
            return False
        counters.tx_frames += 1
        counters.tx_bytes += n
        return True

    def recv_frames(self, limit: int = 64) -> list[bytes]:
        """Read datagrams until EAGAIN or ``limit``."""
        out: list[bytes] = []
        if self.closed:
            return out
        recv = self.sock.recv
        counters = self.counters
        while len(out) < limit:
            try:
                data = recv(RECV_SIZE)
            except BlockingIOError:
                break
            except OSError:
                counters.rx_errors += 1  # e.g. a queued ICMP error
                break
            if len(data) < MIN_FRAME:
                counters.rx_errors += 1
                continue
            counters.rx_frames += 1
            counters.rx_bytes += len(data)
            out.append(data)
        return out

    def close(self) -> None:
        if not self.closed:
            self.sock.close()
        super().close()

    def describe(self) -> str:
        return f"udp {self.local[0]}:{self.local[1]} -> {self.remote[0]}:{self.remote[1]}"
