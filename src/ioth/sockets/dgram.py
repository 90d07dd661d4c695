"""UDP and ICMP echo ("ping") sockets with a real descriptor.

The application holds one end of an AF_UNIX SOCK_SEQPACKET pair; the engine end carries one
message per datagram, prefixed with :data:`HDR` (family, flags, port, ifindex, address).
Received datagrams are pushed to the engine end as they arrive (or when it is writable again),
so the application end is readable exactly when a datagram or an error is waiting.  Sends go
straight to the stack under its lock (errors such as EMSGSIZE, EACCES, ENETUNREACH are
immediate); messages written directly into the descriptor (by a child process, say) are sent by
the pump.
"""

from __future__ import annotations

import _socket as _csocket
import errno
import os
import socket as _socket
import struct
from typing import TYPE_CHECKING, Any

from ioth.sockets.addr import Address, format_address, parse_address
from ioth.sockets.base import (
    SO_BINDTODEVICE,
    SO_REUSEPORT,
    TYPE_MASK,
    IothSocket,
    layer_for,
    oserror,
)
from ioth.sockets.pump import HUP, IN, OUT, Pump
from ioth.stack.endpoints import Endpoint

if TYPE_CHECKING:
    from ioth.stack.stack import Stack

HDR = struct.Struct("!BBHI16s")
HDR_LEN = HDR.size
F_ERROR = 1  # flags: an error is pending (no payload)
MAX_PENDING_PUSH = 256


class DgramHandle:
    """Engine side of a datagram socket (all methods run with the stack lock held)."""

    __slots__ = ("closed", "eng", "ep", "fd", "groups4", "marker", "pump", "stack", "v",
                 "want_out")

    def __init__(self, stack: Stack, ep: Endpoint, eng: _socket.socket, pump: Pump) -> None:
        self.stack = stack
        self.ep = ep
        self.eng = eng
        self.fd = eng.fileno()
        self.pump = pump
        self.v = ep.family
        self.want_out = False
        self.marker = False
        self.closed = False
        self.groups4: list[tuple[int, bytes]] = []  # (ifindex, group) joined by this socket

    def push(self) -> None:
        """Move queued datagrams (and a pending error) into the engine end."""
        if self.closed:
            return
        ep = self.ep
        q = ep.rxq
        send = self.eng.sendmsg
        try:
            if ep.error and not self.marker:
                send([HDR.pack(0, F_ERROR, 0, 0, b"")])
                self.marker = True
            for _ in range(MAX_PENDING_PUSH):
                if not q:
                    break
                data, src, port, ifindex = q[0]
                send([HDR.pack(self.v, 0, port, ifindex, src), data])
                q.popleft()
                ep.rx_bytes -= len(data)
        except BlockingIOError:
            pass
        except OSError:
            self.close()
            return
        want = bool(q)
        if want != self.want_out:
            self.want_out = want
            self.pump.watch(self.fd, IN | OUT if want else IN, self.on_pump)

    def on_pump(self, events: int) -> None:
        """Engine thread: the engine end is readable/writable or hung up."""
        stack = self.stack
        with stack.lock:
            if self.closed:
                return
            if stack.closed:
                self.close()
                return
            if events & IN:
                self._send_written()
            if events & HUP and not self.closed:
                self.close()
                return
            if events & OUT:
                self.push()
            stack.runtime.flush()

    def _send_written(self) -> None:
        """Datagrams written into the descriptor by raw writers: HDR + payload each."""
        ep = self.ep
        udp = self.stack.core.udp
        for _ in range(64):
            try:
                msg = self.eng.recv(65536 + HDR_LEN)
            except BlockingIOError:
                return
            except OSError:
                self.close()
                return
            if not msg:
                self.close()
                return
            if len(msg) < HDR_LEN:
                continue
            fam, _, port, _, addr = HDR.unpack_from(msg)
            dst = None if fam == 0 else addr[:4] if fam == 4 else addr
            try:
                udp.sendto(ep, msg[HDR_LEN:], dst, port, self.stack.now())
            except OSError:
                ep.error = 0  # like a failed sendto of a raw writer: lost

    def close(self) -> None:
        """Release the endpoint and the engine end."""
        if self.closed:
            return
        self.closed = True
        core = self.stack.core
        for index, group in self.groups4:
            if index in core.ifaces:  # the last member leaving sends IGMP leave reports
                core.igmp.leave(core.ifaces[index], group, self.stack.now())
        if self.groups4 and not self.stack.closed:
            self.stack.runtime.flush()
        self.groups4.clear()
        self.stack.core.udp.close(self.ep)
        self.ep.on_event = None
        self.pump.forget(self.fd)
        self.eng.close()


class DatagramSocket(IothSocket):
    """A UDP or ICMP echo socket of an ioth stack; an instance of ``socket.socket``."""

    _h: DgramHandle
    _v: int

    def __init__(self, stack: Stack, family: int = _socket.AF_INET,
                 type: int = _socket.SOCK_DGRAM, proto: int = 0) -> None:
        if family not in (_socket.AF_INET, _socket.AF_INET6):
            raise oserror(errno.EAFNOSUPPORT)
        base = type & TYPE_MASK
        if base != _socket.SOCK_DGRAM:
            raise oserror(errno.EPROTONOSUPPORT)
        v = 4 if family == _socket.AF_INET else 6
        if proto in (0, _socket.IPPROTO_UDP):
            nproto = 17
        elif (v, proto) in ((4, _socket.IPPROTO_ICMP), (6, _socket.IPPROTO_ICMPV6)):
            nproto = 1 if v == 4 else 58
        else:
            raise oserror(errno.EPROTONOSUPPORT)
        if stack.closed:
            raise oserror(errno.EBADF, "stack is closed")
        layer = layer_for(stack)
        app, eng = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        try:
            for s in (app, eng):
                try:
                    s.setsockopt(_socket.SOL_SOCKET, _socket.SO_SNDBUF, 1 << 20)
                    s.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF, 1 << 20)
                except OSError:
                    pass
            eng.setblocking(False)
            super().__init__(family, _socket.SOCK_DGRAM, proto, app.detach())
        except BaseException:
            app.close()
            eng.close()
            raise
        self._stack = stack
        self._pid = os.getpid()
        self._v = v
        with stack.lock:
            ep = stack.core.udp.open(v, nproto)
            h = DgramHandle(stack, ep, eng, layer.pump)
            ep.on_event = h.push
            self._h = h
            stack._sockets.add(self)
        layer.pump.watch(h.fd, IN, h.on_pump)
        if type & _socket.SOCK_NONBLOCK:
            self.setblocking(False)

    # -- helpers -----------------------------------------------------------------------------
    def _parse(self, address: Any, bind: bool = False) -> tuple[bytes | None, int, int]:
        addr, port, scope = parse_address(self._stack, self.family, address, bind)
        return addr, port, scope

    def _check(self) -> None:
        if self._h.closed:
            raise oserror(errno.EBADF)
        err = self._h.ep.take_error()
        if err:
            raise oserror(err)

    # -- addresses -----------------------------------------------------------------------------
    def bind(self, address: Any) -> None:
        """Bind to (host, port); host "" is any address."""
        addr, port, scope = self._parse(address, bind=True)
        stack = self._stack
        with stack.lock:
            if self._h.closed:
                raise oserror(errno.EBADF)
            if scope:
                self._h.ep.ifindex = scope
            stack.core.udp.bind(self._h.ep, addr, port)

    def connect(self, address: Any) -> None:
        """Fix the peer (then ICMP errors from it are reported: ECONNREFUSED...)."""
        stack = self._stack
        if isinstance(address, tuple) and address and address[0] is None:
            with stack.lock:
                stack.core.udp.disconnect(self._h.ep)
            return
        addr, port, scope = self._parse(address)
        assert addr is not None
        with stack.lock:
            if self._h.closed:
                raise oserror(errno.EBADF)
            if scope:
                self._h.ep.ifindex = scope
            stack.core.udp.connect(self._h.ep, addr, port)
            self._h.ep.error = 0

    def connect_ex(self, address: Any) -> int:
        """:meth:`connect` returning an errno instead of raising it."""
        try:
            self.connect(address)
        except OSError as exc:
            return exc.errno or errno.EINVAL
        return 0

    def getsockname(self) -> Address:
        """Local (address, port)."""
        ep = self._h.ep
        return format_address(self.family, ep.local_addr, ep.local_port, ep.ifindex)

    def getpeername(self) -> Address:
        """The connected peer; OSError(ENOTCONN) when there is none."""
        ep = self._h.ep
        if ep.remote_addr is None:
            raise oserror(errno.ENOTCONN)
        return format_address(self.family, ep.remote_addr, ep.remote_port, ep.ifindex)

    # -- sending -------------------------------------------------------------------------------
    def _send(self, data: Any, addr: bytes | None, port: int, scope: int) -> int:
        stack = self._stack
        payload = data if isinstance(data, bytes) else bytes(data)
        with stack.lock:
            self._check()
            ep = self._h.ep
            saved = ep.ifindex
            if scope:
                ep.ifindex = scope
            try:
                return stack.core.udp.sendto(ep, payload, addr, port, stack.now())
            finally:
                ep.ifindex = saved
                stack.runtime.flush()

    def sendto(self, data: Any, flags_or_addr: Any, address: Any = None) -> int:
        """Send one datagram: ``sendto(data, [flags,] address)``."""
        target = flags_or_addr if address is None else address
        addr, port, scope = self._parse(target)
        return self._send(data, addr, port, scope)

    def send(self, data: Any, flags: int = 0) -> int:
        """Send one datagram to the connected peer."""
        return self._send(data, None, 0, 0)

    def sendall(self, data: Any, flags: int = 0) -> None:
        """Same as :meth:`send` for datagrams."""
        self._send(data, None, 0, 0)

    def sendmsg(self, buffers: Any, ancdata: Any = (), flags: int = 0,
                address: Any = None) -> int:
        """Send the concatenation of ``buffers`` as one datagram (ancillary data ignored)."""
        data = b"".join(bytes(b) for b in buffers)
        if address is None:
            return self._send(data, None, 0, 0)
        addr, port, scope = self._parse(address)
        return self._send(data, addr, port, scope)

    # -- receiving -----------------------------------------------------------------------------
    def _source(self, hdr: bytes | bytearray | memoryview) -> Address | None:
        fam, flags, port, ifindex, addr = HDR.unpack_from(hdr)
        if flags & F_ERROR:
            stack = self._stack
            with stack.lock:
                self._h.marker = False
                err = self._h.ep.take_error()
            if err:
                raise oserror(err)
            return None
        if fam == 4:
            if self._v == 4:
                return (_socket.inet_ntop(_socket.AF_INET, addr[:4]), port)
            return format_address(_socket.AF_INET6, addr[:4], port)
        return format_address(_socket.AF_INET6, addr, port, ifindex)

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, Address]:
        """Receive one datagram (truncated to ``bufsize``) and its source address."""
        if bufsize < 0:
            raise ValueError("negative buffersize in recvfrom")
        while True:
            msg = super().recv(bufsize + HDR_LEN, flags)
            if len(msg) < HDR_LEN:
                raise oserror(errno.EBADF)
            src = self._source(msg)
            if src is not None:
                return msg[HDR_LEN:], src
            if flags & _socket.MSG_PEEK:
                super().recv(HDR_LEN, flags & ~_socket.MSG_PEEK)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """Receive one datagram (truncated to ``bufsize``)."""
        return self.recvfrom(bufsize, flags)[0]

    def recvfrom_into(self, buffer: Any, nbytes: int = 0,
                      flags: int = 0) -> tuple[int, Address]:
        """Receive into ``buffer``; returns (bytes stored, source address)."""
        view = memoryview(buffer).cast("B")
        if nbytes:
            view = view[:nbytes]
        hdr = bytearray(HDR_LEN)
        while True:
            n, _, _, _ = super().recvmsg_into([hdr, view], 0, flags)
            if n < HDR_LEN:
                raise oserror(errno.EBADF)
            src = self._source(hdr)
            if src is not None:
                return n - HDR_LEN, src

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """Receive one datagram into ``buffer``; returns the number of bytes stored."""
        return self.recvfrom_into(buffer, nbytes, flags)[0]

    def recvmsg(self, bufsize: int, ancbufsize: int = 0,
                flags: int = 0) -> tuple[bytes, list[Any], int, Address]:
        """Receive one datagram: (data, [], msg_flags, address)."""
        while True:
            msg, _, mflags, _ = super().recvmsg(bufsize + HDR_LEN, 0, flags)
            if len(msg) < HDR_LEN:
                raise oserror(errno.EBADF)
            src = self._source(msg)
            if src is not None:
                return msg[HDR_LEN:], [], mflags, src

    def recvmsg_into(self, buffers: Any, ancbufsize: int = 0,
                     flags: int = 0) -> tuple[int, list[Any], int, Address]:
        """Receive one datagram scattered into ``buffers``."""
        hdr = bytearray(HDR_LEN)
        while True:
            n, _, mflags, _ = super().recvmsg_into([hdr, *buffers], 0, flags)
            if n < HDR_LEN:
                raise oserror(errno.EBADF)
            src = self._source(hdr)
            if src is not None:
                return n - HDR_LEN, [], mflags, src

    # -- options -------------------------------------------------------------------------------
    def setsockopt(self, level: int, option: int, value: Any,
                   optlen: Any = None) -> None:
        """SO_REUSEADDR/PORT, SO_BROADCAST, SO_RCVBUF, SO_BINDTODEVICE, IP_TTL,
        IPV6_UNICAST_HOPS, IPV6_JOIN_GROUP/LEAVE_GROUP, IPV6_V6ONLY (before bind); other
        options are accepted."""
        stack = self._stack
        ep = self._h.ep
        with stack.lock:
            if level == _socket.SOL_SOCKET:
                if option in (_socket.SO_REUSEADDR, SO_REUSEPORT):
                    ep.reuse = bool(value)
                elif option == _socket.SO_BROADCAST:
                    ep.broadcast = bool(value)
                elif option == _socket.SO_RCVBUF and isinstance(value, int):
                    ep.rcvbuf = max(2048, min(value * 2, 64 * 1024 * 1024))
                elif option == SO_BINDTODEVICE:
                    name = value.rstrip(b"\0").decode() if isinstance(value, bytes) else ""
                    ep.ifindex = stack.if_nametoindex(name) if name else 0
            elif (level, option) in ((_socket.IPPROTO_IP, _socket.IP_TTL),
                                     (_socket.IPPROTO_IPV6, _socket.IPV6_UNICAST_HOPS)):
                if not isinstance(value, int) or not -1 <= value <= 255:
                    raise oserror(errno.EINVAL)
                ep.hop_limit = None if value == -1 else value
            elif level == _socket.IPPROTO_IPV6 and option in (_socket.IPV6_JOIN_GROUP,
                                                               _socket.IPV6_LEAVE_GROUP):
                group, ifindex = bytes(value[:16]), struct.unpack("I", bytes(value[16:20]))[0]
                self._mld(group, ifindex, option == _socket.IPV6_JOIN_GROUP)
            elif (level, option) == (_socket.IPPROTO_IPV6, _socket.IPV6_V6ONLY):
                if self.family != _socket.AF_INET6:
                    raise oserror(errno.ENOPROTOOPT)
                if ep.local_port:
                    raise oserror(errno.EINVAL)
                ep.v6only = bool(value)
            elif level == _socket.IPPROTO_IP and option in (_socket.IP_ADD_MEMBERSHIP,
                                                             _socket.IP_DROP_MEMBERSHIP):
                self._igmp(bytes(value), option == _socket.IP_ADD_MEMBERSHIP)

    def _igmp(self, mreq: bytes, join: bool) -> None:
        """ip_mreq (group, interface address) or ip_mreqn (group, address, ifindex)."""
        if len(mreq) < 8:
            raise oserror(errno.EINVAL)
        group, local = mreq[:4], mreq[4:8]
        ifindex = struct.unpack("i", mreq[8:12])[0] if len(mreq) >= 12 else 0
        if not 224 <= group[0] <= 239:
            raise oserror(errno.EINVAL)
        core = self._stack.core
        if not ifindex and local != b"\0\0\0\0":
            ifindex = core.local4.get(local, 0)
            if not ifindex:
                raise oserror(errno.ENODEV)
        if ifindex:
            if ifindex not in core.ifaces:
                raise oserror(errno.ENODEV)
            indexes = [ifindex]
        else:
            indexes = [i.index for i in core.ifaces.values() if not i.loopback]
        joined = self._h.groups4
        now = self._stack.now()
        for index in indexes:
            key = (index, group)
            if join:
                if key in joined:
                    raise oserror(errno.EADDRINUSE)
                joined.append(key)
                core.igmp.join(core.ifaces[index], group, now)  # IGMP reports a new group
            else:
                if key not in joined:
                    raise oserror(errno.EADDRNOTAVAIL)
                joined.remove(key)
                core.igmp.leave(core.ifaces[index], group, now)
        self._stack.runtime.flush()

    def _mld(self, group: bytes, ifindex: int, join: bool) -> None:
        core = self._stack.core
        if group[0] != 0xFF:
            raise oserror(errno.EINVAL)
        ifaces = [core.ifaces[ifindex]] if ifindex in core.ifaces else \
            [i for i in core.ifaces.values() if not i.loopback]
        if not ifaces:
            raise oserror(errno.ENODEV)
        for iface in ifaces:
            if join:
                core.ip6.mld.join(iface, group, self._stack.now())
            else:
                core.ip6.mld.leave(iface, group, self._stack.now())
        self._stack.runtime.flush()

    def getsockopt(self, level: int, option: int, buflen: int = 0) -> Any:
        """SO_ERROR (clears it), SO_TYPE, SO_RCVBUF, SO_REUSEADDR, SO_BROADCAST, IP_TTL..."""
        ep = self._h.ep
        with self._stack.lock:
            if level == _socket.SOL_SOCKET:
                if option == _socket.SO_ERROR:
                    return ep.take_error()
                if option == _socket.SO_TYPE:
                    return int(_socket.SOCK_DGRAM)
                if option == _socket.SO_RCVBUF:
                    return ep.rcvbuf
                if option in (_socket.SO_REUSEADDR, SO_REUSEPORT):
                    return int(ep.reuse)
                if option == _socket.SO_BROADCAST:
                    return int(ep.broadcast)
                if option == _socket.SO_DOMAIN:
                    return int(self.family)
                if option == _socket.SO_PROTOCOL:
                    return {17: 17, 1: 1, 58: 58}[ep.proto]
            if (level, option) in ((_socket.IPPROTO_IP, _socket.IP_TTL),
                                   (_socket.IPPROTO_IPV6, _socket.IPV6_UNICAST_HOPS)):
                return ep.hop_limit if ep.hop_limit is not None else 64
            if (level, option) == (_socket.IPPROTO_IPV6, _socket.IPV6_V6ONLY):
                if self.family != _socket.AF_INET6:
                    raise oserror(errno.EOPNOTSUPP)  # what Linux says for an AF_INET socket
                return int(ep.v6only)
        raise oserror(errno.ENOPROTOOPT)

    def listen(self, backlog: int = 0) -> None:
        """Datagram sockets do not listen (EOPNOTSUPP, like the kernel)."""
        raise oserror(errno.EOPNOTSUPP)

    def accept(self) -> tuple[Any, Any]:
        """Datagram sockets do not accept (EOPNOTSUPP, like the kernel)."""
        raise oserror(errno.EOPNOTSUPP)

    def shutdown(self, how: int) -> None:
        """Shut down the application end (reads then see end of data)."""
        super().shutdown(how)

    # -- closing -------------------------------------------------------------------------------
    def _real_close(self, _ss: Any = _csocket.socket) -> None:
        stack = self._stack
        if self._pid != os.getpid():  # a forked child: the stack lives in the parent
            _ss.close(self)
            return
        with stack.lock:
            self._h.close()
            stack._sockets.discard(self)
        _ss.close(self)

    def detach(self) -> int:
        """Give up the descriptor (the endpoint lives until the descriptor is closed)."""
        return super().detach()
