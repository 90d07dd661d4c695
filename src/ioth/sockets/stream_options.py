"""Socket options of a TCP socket (:class:`StreamOptions`, a base of
:class:`~ioth.sockets.stream.StreamSocket`): ``setsockopt``/``getsockopt`` and the TCP policy a
socket's options give its connections (SO_SNDBUF/SO_RCVBUF, TCP_CONGESTION, TCP_KEEP*).
"""

from __future__ import annotations

import _socket as _csocket
import errno
import socket as _socket
import struct
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ioth.sockets.base import SO_REUSEPORT, IothSocket, oserror
from ioth.stack.tcp.layer import BIND_REUSE, BIND_V6ONLY

if TYPE_CHECKING:
    from ioth.sockets.stream_engine import ListenHandle, StreamHandle, TcpSockets
    from ioth.stack.tcp.connection import TcpConnection
    from ioth.stack.tcp.policy import TcpPolicy

_TIMEVAL = struct.Struct("@ll")
TCP_CONGESTION = getattr(_socket, "TCP_CONGESTION", 13)
#: TCP socket options that set a keepalive field of the connection's policy
_KEEP_FIELDS = {getattr(_socket, "TCP_KEEPIDLE", 4): "keepidle",
                getattr(_socket, "TCP_KEEPINTVL", 5): "keepintvl",
                getattr(_socket, "TCP_KEEPCNT", 6): "keepcnt"}


class StreamOptions(IothSocket):
    """The options of a TCP socket (the socket's state and its other methods are
    :class:`~ioth.sockets.stream.StreamSocket`'s)."""

    # the socket's state used here (StreamSocket sets it and holds the defaults)
    _tcp: TcpSockets
    _h: StreamHandle | None
    _listen: ListenHandle | None
    _bound: tuple[bytes | None, int] | None
    _gone: bool
    _reuse: bool
    _v6only: bool
    _linger0: bool
    _nodelay: bool
    _keepalive: bool
    _overrides: Mapping[str, Any]
    _sndbuf: int
    _rcvbuf: int
    _bufs_set: bool
    _junked: bool
    _rcvtimeo: float

    if TYPE_CHECKING:
        def _ensure_fd(self) -> int: ...
        def _materialize(self) -> None: ...
        def _unjunk(self) -> None: ...

    # -- options ---------------------------------------------------------------------------------
    def _policy(self) -> TcpPolicy | None:
        """The stack's TCP policy with this socket's SO_SNDBUF/SO_RCVBUF, TCP_CONGESTION and
        TCP_KEEPIDLE/INTVL/CNT (None: the stack's policy unchanged)."""
        if not self._bufs_set and not self._overrides:
            return None
        fields = dict(self._overrides)
        if self._bufs_set:
            fields.update(send_buffer=max(4096, self._sndbuf), recv_buffer=max(4096, self._rcvbuf))
        return self._tcp.layer.policy.replace(**fields)

    def _override(self, field: str, value: Any) -> None:
        """Set one policy field for this socket (stack lock held); a live connection switches."""
        fields = {**self._overrides, field: value}
        self._tcp.layer.policy.replace(**fields)  # validates: a bad value raises ConfigError
        self._overrides = fields
        h = self._h
        policy = self._policy()
        if h is not None and policy is not None:
            h.conn.apply_policy(policy)
            h.conn.nodelay = self._nodelay  # the socket's own options stay in force
            h.conn.keepalive = self._keepalive

    def _bind_flags(self) -> int:
        """BIND_* flags of this socket for its connections (bind conflicts after it is gone)."""
        return (BIND_REUSE if self._reuse else 0) | (BIND_V6ONLY if self._v6only else 0)

    def _apply_options(self, conn: TcpConnection) -> None:
        conn.nodelay = self._nodelay
        conn.keepalive = self._keepalive

    def setsockopt(self, level: int, option: int, value: Any,
                   optlen: Any = None) -> None:
        """SO_REUSEADDR/PORT, SO_KEEPALIVE, SO_LINGER, SO_SNDBUF/RCVBUF, TCP_NODELAY,
        TCP_CONGESTION, TCP_KEEPIDLE/INTVL/CNT, IPV6_V6ONLY; other options are accepted and
        ignored."""
        if self._gone:
            raise oserror(errno.EBADF)
        ival = int.from_bytes(value[:4], "little") if isinstance(value, (bytes, bytearray)) \
            and option != _socket.SO_LINGER else value
        with self._stack.lock:
            h = self._h
            if level == _socket.SOL_SOCKET:
                if option in (_socket.SO_REUSEADDR, SO_REUSEPORT):
                    self._reuse = bool(ival)
                    if h is not None:
                        h.conn.bind_flags = self._bind_flags()
                elif option == _socket.SO_KEEPALIVE:
                    self._keepalive = bool(ival)
                    if h is not None:
                        h.conn.keepalive = self._keepalive
                elif option == _socket.SO_LINGER:
                    raw = bytes(value) if isinstance(value, (bytes, bytearray)) else b""
                    onoff = int.from_bytes(raw[:4], "little") if len(raw) >= 8 else 0
                    secs = int.from_bytes(raw[4:8], "little") if len(raw) >= 8 else 1
                    self._linger0 = bool(onoff) and secs == 0
                elif option == _socket.SO_SNDBUF:
                    self._sndbuf = int(ival) * 2
                    self._bufs_set = True
                elif option == _socket.SO_RCVBUF:
                    self._rcvbuf = int(ival) * 2
                    self._bufs_set = True
                elif option in (_socket.SO_RCVTIMEO, _socket.SO_SNDTIMEO):
                    self._ensure_fd()
                    _csocket.socket.setsockopt(self, level, option, value)
                    if option == _socket.SO_RCVTIMEO:  # (what the kernel keeps, rounded)
                        sec, usec = _TIMEVAL.unpack(_csocket.socket.getsockopt(
                            self, level, option, _TIMEVAL.size))
                        self._rcvtimeo = sec + usec / 1e6
            elif level == _socket.IPPROTO_TCP and option == _socket.TCP_NODELAY:
                self._nodelay = bool(ival)
                if h is not None:
                    h.conn.nodelay = self._nodelay
                    self._tcp.flush(h.conn)
                    self._stack.runtime.flush()
            elif level == _socket.IPPROTO_TCP and option == TCP_CONGESTION:
                cc_raw = value if isinstance(value, (bytes, bytearray, str)) else b""
                name = (cc_raw.encode() if isinstance(cc_raw, str) else bytes(cc_raw))
                name = name.split(b"\0")[0]
                try:
                    self._override("congestion_control", name.decode("ascii"))
                except (ValueError, UnicodeDecodeError):
                    raise oserror(errno.ENOENT) from None  # as Linux for an unknown algorithm
            elif level == _socket.IPPROTO_TCP and option in _KEEP_FIELDS:
                if int(ival) < 1:
                    raise oserror(errno.EINVAL)
                try:
                    self._override(_KEEP_FIELDS[option], int(ival))
                except ValueError:
                    raise oserror(errno.EINVAL) from None
            elif level == _socket.IPPROTO_IPV6 and option == _socket.IPV6_V6ONLY:
                if self.family != _socket.AF_INET6:
                    raise oserror(errno.ENOPROTOOPT)
                if self._bound is not None:
                    raise oserror(errno.EINVAL)
                self._v6only = bool(ival)

    def getsockopt(self, level: int, option: int, buflen: int = 0) -> Any:
        """SO_ERROR (clears it), SO_TYPE, SO_ACCEPTCONN, TCP_NODELAY, TCP_CONGESTION,
        TCP_KEEPIDLE/INTVL/CNT, IPV6_V6ONLY..."""
        if self._gone:
            raise oserror(errno.EBADF)
        if level == _socket.IPPROTO_TCP and option == TCP_CONGESTION:
            with self._stack.lock:
                name = self._overrides.get("congestion_control",
                                           self._tcp.layer.policy.congestion_control)
            raw = name.encode("ascii")
            return raw[:buflen].ljust(buflen, b"\0") if buflen else raw
        if level == _socket.IPPROTO_TCP and option in _KEEP_FIELDS:
            with self._stack.lock:
                field = _KEEP_FIELDS[option]
                value = int(self._overrides.get(field,
                                                getattr(self._tcp.layer.policy, field)))
            return value.to_bytes(4, "little")[:buflen] if buflen else value
        value = self._getopt(level, option)
        if buflen:
            return int(value).to_bytes(4, "little")[:buflen].ljust(min(buflen, 4), b"\0")
        return value

    def _getopt(self, level: int, option: int) -> int:
        with self._stack.lock:
            h = self._h
            if level == _socket.SOL_SOCKET:
                if option == _socket.SO_ERROR:
                    if h is None or h.connecting:
                        return 0
                    if h.lazy:
                        self._materialize()  # (an error waiting in the connection moves)
                    if self._junked:
                        self._unjunk()
                    if h.connect_error:
                        err, h.connect_error = h.connect_error, 0
                    else:
                        err, h.error = h.error, 0
                    return err
                if option == _socket.SO_TYPE:
                    return int(_socket.SOCK_STREAM)
                if option == _socket.SO_ACCEPTCONN:
                    return int(self._listen is not None)
                if option in (_socket.SO_REUSEADDR, SO_REUSEPORT):
                    return int(self._reuse)
                if option == _socket.SO_KEEPALIVE:
                    return int(self._keepalive)
                if option == _socket.SO_SNDBUF:
                    return self._sndbuf
                if option == _socket.SO_RCVBUF:
                    return self._rcvbuf
                if option == _socket.SO_DOMAIN:
                    return int(self.family)
                if option == _socket.SO_PROTOCOL:
                    return _socket.IPPROTO_TCP
                if option == _socket.SO_LINGER:
                    return 0
            if level == _socket.IPPROTO_TCP:
                if option == _socket.TCP_NODELAY:
                    return int(self._nodelay)
                if option == _socket.TCP_MAXSEG:
                    return h.conn.mss if h is not None else 536
            if level == _socket.IPPROTO_IPV6 and option == _socket.IPV6_V6ONLY:
                return int(self._v6only)
            if level == _socket.IPPROTO_IP and option == _socket.IP_TTL:
                return 64
        raise oserror(errno.ENOPROTOOPT)
