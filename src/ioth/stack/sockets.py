"""Socket objects of a stack for UDP and ICMP echo (Linux "ping socket" semantics).

A socket is small: the core endpoint, and a condition on the stack's lock that protocol code
notifies when a datagram or an error arrives.  Errors are ``OSError`` with the errno Linux gives.
The full Berkeley surface with real file descriptors comes with :mod:`ioth.sockets`.
"""

from __future__ import annotations

import errno
import ipaddress
import socket as _socket
import threading
import time
from typing import TYPE_CHECKING, Any

from ioth.stack.endpoints import Endpoint

if TYPE_CHECKING:
    from ioth.stack.stack import Stack

_TYPE_MASK = ~(_socket.SOCK_NONBLOCK | _socket.SOCK_CLOEXEC)

Address = tuple[Any, ...]


class DatagramSocket:
    """A UDP or ICMP-echo socket on an ioth stack (``socket.socket``-like API)."""

    def __init__(self, stack: Stack, family: int, type: int, proto: int = 0) -> None:
        if family not in (_socket.AF_INET, _socket.AF_INET6):
            raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")
        base = type & _TYPE_MASK
        if base != _socket.SOCK_DGRAM:
            raise OSError(errno.EPROTONOSUPPORT,
                          "only SOCK_DGRAM (UDP, ICMP echo) sockets exist on this stack so far")
        v = 4 if family == _socket.AF_INET else 6
        if proto in (0, _socket.IPPROTO_UDP):
            nproto = 17
        elif (v == 4 and proto == _socket.IPPROTO_ICMP) or (
                v == 6 and proto == _socket.IPPROTO_ICMPV6):
            nproto = 1 if v == 4 else 58
        else:
            raise OSError(errno.EPROTONOSUPPORT, "Protocol not supported")
        self._stack = stack
        self.family = _socket.AddressFamily(family)
        self.type = _socket.SocketKind(base)
        self.proto = proto
        self._v = v
        self._cond = threading.Condition(stack.lock)
        with stack.lock:
            self._ep: Endpoint = stack.core.udp.open(v, nproto)
        self._ep.on_event = self._cond.notify_all
        self._timeout: float | None = 0.0 if type & _socket.SOCK_NONBLOCK else None
        stack._sockets.add(self)

    # -- addresses ------------------------------------------------------------------------
    def _parse(self, address: Address, bind: bool = False) -> tuple[bytes | None, int, int]:
        if not isinstance(address, tuple) or len(address) < 2:
            raise TypeError(f"{self.family.name} address must be a tuple (host, port)")
        host, port = address[0], address[1]
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise OverflowError("port must be 0-65535.")
        scope = 0
        if self._v == 4:
            if host in ("", "0.0.0.0") and bind:
                return None, port, 0
            if host == "<broadcast>":
                return b"\xff\xff\xff\xff", port, 0
            try:
                return ipaddress.IPv4Address(host).packed, port, 0
            except ValueError:
                raise _socket.gaierror(_socket.EAI_NONAME,
                                       f"{host!r} is not an IPv4 address") from None
        if len(address) >= 4:
            scope = int(address[3])
        text = str(host)
        if "%" in text:
            text, _, zone = text.partition("%")
            scope = int(zone) if zone.isdigit() else self._stack.if_nametoindex(zone)
        if text in ("", "::") and bind:
            return None, port, scope
        try:
            return ipaddress.IPv6Address(text).packed, port, scope
        except ValueError:
            raise _socket.gaierror(_socket.EAI_NONAME,
                                   f"{host!r} is not an IPv6 address") from None

    def _format(self, addr: bytes | None, port: int, scope: int = 0) -> Address:
        if self._v == 4:
            return (str(ipaddress.IPv4Address(addr or b"\0\0\0\0")), port)
        return (str(ipaddress.IPv6Address(addr or b"\0" * 16)), port, 0,
                scope if addr is not None and addr[:2] == b"\xfe\x80" else 0)

    # -- calls ----------------------------------------------------------------------------
    def _check(self) -> None:
        if self._ep.closed:
            raise OSError(errno.EBADF, "Bad file descriptor")
        err = self._ep.take_error()
        if err:
            raise OSError(err, _strerror(err))

    def bind(self, address: Address) -> None:
        """Bind to (host, port); host "" is any address."""
        addr, port, scope = self._parse(address, bind=True)
        stack = self._stack
        with stack.lock:
            self._check()
            if scope:
                self._ep.ifindex = scope
            stack.core.udp.bind(self._ep, addr, port)

    def connect(self, address: Address) -> None:
        """Fix the peer of this socket (errors from it are then reported: ECONNREFUSED...)."""
        addr, port, scope = self._parse(address)
        assert addr is not None
        stack = self._stack
        with stack.lock:
            if self._ep.closed:
                raise OSError(errno.EBADF, "Bad file descriptor")
            if scope:
                self._ep.ifindex = scope
            stack.core.udp.connect(self._ep, addr, port)
            self._ep.error = 0

    def connect_ex(self, address: Address) -> int:
        """:meth:`connect` returning an errno instead of raising."""
        try:
            self.connect(address)
        except OSError as exc:
            return exc.errno or errno.EINVAL
        return 0

    def sendto(self, data: bytes | bytearray | memoryview, *args: Any) -> int:
        """Send one datagram to ``address`` (``sendto(data, [flags,] address)``)."""
        address = args[-1]
        addr, port, scope = self._parse(address)
        return self._send(bytes(data), addr, port, scope)

    def send(self, data: bytes | bytearray | memoryview, flags: int = 0) -> int:
        """Send one datagram to the connected peer."""
        return self._send(bytes(data), None, 0, 0)

    def sendall(self, data: bytes | bytearray | memoryview, flags: int = 0) -> None:
        """Same as :meth:`send` for datagrams."""
        self.send(data)

    def _send(self, data: bytes, addr: bytes | None, port: int, scope: int) -> int:
        stack = self._stack
        with stack.lock:
            self._check()
            ep = self._ep
            saved = ep.ifindex
            if scope:
                ep.ifindex = scope
            try:
                n = stack.core.udp.sendto(ep, data, addr, port, stack.now())
            finally:
                ep.ifindex = saved
                stack.runtime.flush()
            return n

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, Address]:
        """Receive one datagram (truncated to ``bufsize``) and its source address."""
        if bufsize < 0:
            raise ValueError("negative buffersize in recvfrom")
        peek = bool(flags & _socket.MSG_PEEK)
        nowait = bool(flags & _socket.MSG_DONTWAIT) or self._timeout == 0.0
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        with self._cond:
            while True:
                self._check()
                ep = self._ep
                if ep.rxq:
                    item = ep.rxq[0] if peek else ep.pop()
                    assert item is not None
                    data, src, port, ifindex = item
                    return data[:bufsize], self._format(src, port, ifindex)
                if nowait:
                    raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
                if deadline is None:
                    self._cond.wait()
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError("timed out")
                    self._cond.wait(left)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """Receive one datagram (truncated to ``bufsize``)."""
        return self.recvfrom(bufsize, flags)[0]

    def recv_into(self, buffer: bytearray | memoryview, nbytes: int = 0, flags: int = 0) -> int:
        """Receive into ``buffer``; returns the number of bytes stored."""
        data = self.recv(nbytes or len(buffer), flags)
        memoryview(buffer)[: len(data)] = data
        return len(data)

    def recvfrom_into(self, buffer: bytearray | memoryview, nbytes: int = 0,
                      flags: int = 0) -> tuple[int, Address]:
        """Receive into ``buffer``; returns (bytes stored, source address)."""
        data, addr = self.recvfrom(nbytes or len(buffer), flags)
        memoryview(buffer)[: len(data)] = data
        return len(data), addr

    # -- options and state ----------------------------------------------------------------
    def settimeout(self, value: float | None) -> None:
        """Blocking with a timeout (None: block forever; 0: non-blocking)."""
        if value is not None and value < 0:
            raise ValueError("Timeout value out of range")
        self._timeout = value

    def gettimeout(self) -> float | None:
        """Current timeout."""
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        """Blocking (True) or non-blocking (False)."""
        self._timeout = None if flag else 0.0

    def getblocking(self) -> bool:
        """True unless non-blocking."""
        return self._timeout != 0.0

    def getsockname(self) -> Address:
        """Local (address, port)."""
        ep = self._ep
        return self._format(ep.local_addr, ep.local_port, ep.ifindex)

    def getpeername(self) -> Address:
        """Connected peer; OSError(ENOTCONN) if none."""
        ep = self._ep
        if ep.remote_addr is None:
            raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")
        return self._format(ep.remote_addr, ep.remote_port, ep.ifindex)

    def setsockopt(self, level: int, option: int, value: int | bytes) -> None:
        """SO_REUSEADDR/SO_REUSEPORT, SO_BROADCAST, SO_RCVBUF, SO_BINDTODEVICE, IP_TTL,
        IPV6_UNICAST_HOPS; other options are accepted and ignored."""
        ep = self._ep
        with self._stack.lock:
            if level == _socket.SOL_SOCKET:
                if option in (_socket.SO_REUSEADDR, getattr(_socket, "SO_REUSEPORT", -1)):
                    ep.reuse = bool(value)
                elif option == _socket.SO_BROADCAST:
                    ep.broadcast = bool(value)
                elif option == _socket.SO_RCVBUF and isinstance(value, int):
                    ep.rcvbuf = max(2048, min(value * 2, 64 * 1024 * 1024))
                elif option == getattr(_socket, "SO_BINDTODEVICE", 25):
                    name = value.rstrip(b"\0").decode() if isinstance(value, bytes) else ""
                    ep.ifindex = self._stack.if_nametoindex(name) if name else 0
            elif (level, option) in ((_socket.IPPROTO_IP, _socket.IP_TTL),
                                     (_socket.IPPROTO_IPV6, _socket.IPV6_UNICAST_HOPS)):
                if not isinstance(value, int) or not -1 <= value <= 255:
                    raise OSError(errno.EINVAL, "Invalid argument")
                ep.hop_limit = None if value == -1 else value

    def getsockopt(self, level: int, option: int, buflen: int = 0) -> int:
        """SO_ERROR (clears the pending error), SO_TYPE, SO_RCVBUF, SO_REUSEADDR, SO_BROADCAST."""
        ep = self._ep
        with self._stack.lock:
            if level == _socket.SOL_SOCKET:
                if option == _socket.SO_ERROR:
                    return ep.take_error()
                if option == _socket.SO_TYPE:
                    return int(self.type)
                if option == _socket.SO_RCVBUF:
                    return ep.rcvbuf
                if option == _socket.SO_REUSEADDR:
                    return int(ep.reuse)
                if option == _socket.SO_BROADCAST:
                    return int(ep.broadcast)
            if (level, option) in ((_socket.IPPROTO_IP, _socket.IP_TTL),
                                   (_socket.IPPROTO_IPV6, _socket.IPV6_UNICAST_HOPS)):
                return ep.hop_limit if ep.hop_limit is not None else 64
        raise OSError(errno.ENOPROTOOPT, "Protocol not available")

    def fileno(self) -> int:
        """Real descriptors come with the full socket layer; -1 here, like a closed socket."""
        return -1

    def close(self) -> None:
        """Release the port; blocked receivers get EBADF."""
        stack = self._stack
        with stack.lock:
            if not self._ep.closed:
                stack.core.udp.close(self._ep)
                self._cond.notify_all()
            stack._sockets.discard(self)

    def __enter__(self) -> DatagramSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._ep.closed else f"laddr={self.getsockname()}"
        return f"<ioth DatagramSocket {self.family.name} {state}>"


def _strerror(err: int) -> str:
    import os

    return os.strerror(err)
