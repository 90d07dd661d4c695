"""Socket options of a TCP socket (:class:`StreamOptions`, a base of
:class:`~ioth.sockets.stream.StreamSocket`): ``setsockopt``/``getsockopt`` and the TCP policy a
socket's options give its connections.

Options with an effect (the value read back is what Linux reads back):

* SOL_SOCKET: SO_REUSEADDR, SO_REUSEPORT (separate flags; SO_REUSEPORT listeners of one port
  share its connections, see :meth:`ioth.stack.tcp.layer.TcpLayer.listen`), SO_KEEPALIVE,
  SO_LINGER (``{1, 0}``: close resets; ``{1, t}``: close waits up to t s for the data to be
  acknowledged), SO_SNDBUF/SO_RCVBUF (doubled and bounded as Linux: at least 4608 / 2304, at
  most twice the stack policy's ``wmem_max`` / ``rmem_max``; a fresh socket reads the stack
  policy's ``send_buffer`` / ``recv_buffer``: the buffers are per stack, not Linux's sysctls;
  a value set also sizes the AF_UNIX pair: what the application may queue, what waits for it
  unread), SO_RCVTIMEO/SO_SNDTIMEO (kept by the descriptor), SO_ERROR, SO_TYPE, SO_DOMAIN,
  SO_PROTOCOL, SO_ACCEPTCONN.
* IPPROTO_TCP: TCP_NODELAY, TCP_CONGESTION, TCP_KEEPIDLE/INTVL/CNT (Linux's ranges),
  TCP_MAXSEG (clamps the MSS advertised and used by the next connection), TCP_SYNCNT (the
  policy's ``syn_retries``), TCP_USER_TIMEOUT (the policy's ``user_timeout``: data
  unacknowledged that long ends the connection), TCP_INFO (Linux's ``struct tcp_info``),
  TCP_DEFER_ACCEPT (seconds rounded up to SYN-ACK retransmissions and read back as Linux:
  the listener leaves a connection half-open until its first data or FIN, or until the
  peer answers the SYN-ACK retransmitted at the end of that period; see
  :attr:`ioth.stack.tcp.layer.Listener.defer_accept`).
* IPPROTO_IP / IPPROTO_IPV6: IP_TTL, IP_TOS, IPV6_UNICAST_HOPS, IPV6_TCLASS (the policy's
  ``ttl``, ``tos``, ``hop_limit``, ``tclass``: in the headers of the connection's packets),
  IPV6_V6ONLY.

Also: IP_FREEBIND / IPV6_FREEBIND (bind may name an address the stack does not have),
SO_PEERCRED (Linux's answer for TCP: pid 0, uid and gid -1), IP_MTU / IPV6_MTU (the path MTU
of a connected socket, ENOTCONN before), SO_RCVLOWAT (the descriptor turns readable, and a
read returns, once that many bytes are there or the stream ends; bytes already in the
descriptor stay readable; see StreamSocket._set_lowat), SO_OOBINLINE (the descriptor's own:
its AF_UNIX stream keeps the connection's urgent byte in line; see StreamIO._send_urgent).

Accepted and read back as Linux, **without effect** in ioth: SO_BINDTODEVICE (ENODEV for a
name that is not one of the stack's interfaces),
SO_BROADCAST, SO_PRIORITY, SO_DONTROUTE, TCP_QUICKACK, TCP_CORK,
TCP_NOTSENT_LOWAT.  SO_SNDLOWAT cannot be set (ENOPROTOOPT, as Linux).
Other options are accepted and ignored.  A socket accepted from a listener starts with the
listener's options (Linux clones the listening socket).
"""

from __future__ import annotations

import _socket as _csocket
import errno
import socket as _socket
import struct
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ioth.sockets.base import SO_REUSEPORT, IothSocket, oserror
from ioth.sockets.stream_engine import _bigbuf
from ioth.stack.tcp.connection import State
from ioth.stack.tcp.info import LINUX_STATE, TCP_INFO_SIZE, pack_tcp_info
from ioth.stack.tcp.layer import BIND_REUSE, BIND_REUSEPORT, BIND_V6ONLY

if TYPE_CHECKING:
    from ioth.sockets.stream_engine import ListenHandle, StreamHandle, TcpSockets
    from ioth.stack.tcp.connection import TcpConnection
    from ioth.stack.tcp.policy import TcpPolicy

_TIMEVAL = struct.Struct("@ll")
TCP_CONGESTION = getattr(_socket, "TCP_CONGESTION", 13)
TCP_DEFER_ACCEPT = getattr(_socket, "TCP_DEFER_ACCEPT", 9)
#: TCP socket options that set a keepalive field of the connection's policy
_KEEP_FIELDS = {getattr(_socket, "TCP_KEEPIDLE", 4): "keepidle",
                getattr(_socket, "TCP_KEEPINTVL", 5): "keepintvl",
                getattr(_socket, "TCP_KEEPCNT", 6): "keepcnt"}
#: their largest values (Linux MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL, MAX_TCP_KEEPCNT)
_KEEP_MAX = {"keepidle": 32767, "keepintvl": 32767, "keepcnt": 127}
SOL, TCP, IP, IP6 = _socket.SOL_SOCKET, _socket.IPPROTO_TCP, _socket.IPPROTO_IP, \
    _socket.IPPROTO_IPV6
TCP_INFO = getattr(_socket, "TCP_INFO", 11)
SOCK_MIN_SNDBUF = 4608  # Linux's bounds of SO_SNDBUF / SO_RCVBUF (2 x wmem_max above)
SOCK_MIN_RCVBUF = 2304
#: options kept for getsockopt only (no effect in ioth): (level, option) -> Linux's default
_STORED: dict[tuple[int, int], int] = {
    (SOL, _socket.SO_RCVLOWAT): 1, (SOL, _socket.SO_SNDLOWAT): 1,
    (SOL, _socket.SO_OOBINLINE): 0, (SOL, _socket.SO_BROADCAST): 0,
    (SOL, _socket.SO_PRIORITY): 0, (SOL, _socket.SO_DONTROUTE): 0,
    (TCP, getattr(_socket, "TCP_USER_TIMEOUT", 18)): 0,
    (TCP, getattr(_socket, "TCP_QUICKACK", 12)): 1, (TCP, getattr(_socket, "TCP_CORK", 3)): 0,
    (TCP, getattr(_socket, "TCP_DEFER_ACCEPT", 9)): 0,
    (TCP, getattr(_socket, "TCP_NOTSENT_LOWAT", 25)): 0,
    (IP, _socket.IP_TOS): 0, (IP6, getattr(_socket, "IPV6_TCLASS", 67)): 0,
    (IP, _socket.IP_TTL): -1, (IP6, _socket.IPV6_UNICAST_HOPS): -1,
    (TCP, _socket.TCP_MAXSEG): 0,
}
_BOOL_OPTS = frozenset(((SOL, _socket.SO_OOBINLINE), (SOL, _socket.SO_BROADCAST),
                        (SOL, _socket.SO_DONTROUTE), (TCP, getattr(_socket, "TCP_QUICKACK", 12)),
                        (TCP, getattr(_socket, "TCP_CORK", 3))))
#: IP header options -> the policy field they set
_IP_FIELDS = {(IP, _socket.IP_TTL): "ttl", (IP, _socket.IP_TOS): "tos",
              (IP6, _socket.IPV6_UNICAST_HOPS): "hop_limit",
              (IP6, getattr(_socket, "IPV6_TCLASS", 67)): "tclass"}
SO_BINDTODEVICE = getattr(_socket, "SO_BINDTODEVICE", 25)
IP_FREEBIND = getattr(_socket, "IP_FREEBIND", 15)
IPV6_FREEBIND = 78
IP_MTU = getattr(_socket, "IP_MTU", 14)
IPV6_MTU = getattr(_socket, "IPV6_MTU", 24)
#: what an accepted socket takes from its listener (the attributes set on the listener)
_INHERITED = ("_nodelay", "_keepalive", "_overrides", "_sndbuf", "_rcvbuf", "_bufs_set",
              "_linger", "_linger0", "_reuse", "_reuseport", "_opts", "_timeo", "_rcvtimeo",
              "_freebind", "_device", "_v6only")


_LINGER_DONE = frozenset((State.FIN_WAIT_2, State.TIME_WAIT, State.CLOSED))


def _defer_retrans(seconds: int) -> tuple[int, int]:
    """TCP_DEFER_ACCEPT as Linux keeps it (secs_to_retrans): ``seconds`` rounded up to a
    whole number of SYN-ACK retransmissions (1 s doubling up to 120 s); returns (that
    number, the seconds Linux reads back: retrans_to_secs).  (0, 0) for 0 or less."""
    if seconds <= 0:
        return 0, 0
    retrans, timeout, period = 1, 1, 1
    while seconds > period and retrans < 255:
        retrans += 1
        timeout = min(timeout * 2, 120)
        period += timeout
    return retrans, period


def _defer_secs(seconds: int) -> int:
    """TCP_DEFER_ACCEPT as Linux reads it back (see :func:`_defer_retrans`)."""
    return _defer_retrans(seconds)[1]


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
        def _set_lowat(self, n: int) -> None: ...
        def _sync_oobinline(self) -> None: ...
        def _kernel_error(self) -> None: ...
        def _unjunk(self) -> None: ...

    # -- options ---------------------------------------------------------------------------------
    _reuseport = False
    _linger = (0, 0)  # struct linger as set (l_onoff, l_linger)
    _opts: Mapping[tuple[int, int], int] = MappingProxyType({})  # values of _STORED options
    _inherit: dict[str, Any] | None = None  # what an accepted socket takes (_INHERITED)
    _timeo: Mapping[int, bytes] = MappingProxyType({})  # SO_RCVTIMEO/SO_SNDTIMEO as kept
    _freebind = False  # IP_FREEBIND / IPV6_FREEBIND: bind may name an address not ours
    _device = b""  # SO_BINDTODEVICE: an interface of the stack (kept, no effect on routing)

    def _fit_rcvbuf(self, h: StreamHandle) -> None:
        """SO_RCVBUF set: the engine end's send buffer (what waits in the AF_UNIX pair for
        the application) is the socket's receive buffer, so that a reader that does not read
        closes the TCP window as on Linux (instead of the pair's big buffer)."""
        eng = h.eng
        if eng is not None and "_rcvbuf" in self.__dict__:
            _bigbuf(eng, self._rcvbuf)
            h.bigbuf = True  # (StreamHandle._update does not make it big later)

    def _apply_timeo(self) -> None:
        """An accepted socket: the listener's SO_RCVTIMEO/SO_SNDTIMEO (in ``_timeo``, taken
        with the other options) on this socket's descriptor, as Linux's clone has them."""
        self._ensure_fd()
        for option, value in self._timeo.items():
            _csocket.socket.setsockopt(self, SOL, option, value)

    def _policy(self) -> TcpPolicy | None:
        """The stack's TCP policy with this socket's SO_SNDBUF/SO_RCVBUF, TCP_CONGESTION,
        TCP_KEEPIDLE/INTVL/CNT, TCP_MAXSEG, TCP_SYNCNT and IP header options (None: the
        stack's policy unchanged)."""
        if not self._bufs_set and not self._overrides:
            return None
        fields = dict(self._overrides)
        own = self.__dict__
        if "_sndbuf" in own:
            fields["send_buffer"] = max(4096, self._sndbuf)
        if "_rcvbuf" in own:
            fields["recv_buffer"] = max(4096, self._rcvbuf)
        return self._tcp.layer.policy.replace(**fields)

    def _listen_policy(self) -> TcpPolicy | None:
        """The policy of this socket's listener: :meth:`_policy` with TCP_NODELAY and
        SO_KEEPALIVE, which its connections start with (None: the stack's)."""
        stack_policy = self._tcp.layer.policy
        extra: dict[str, Any] = {}
        if self._nodelay != stack_policy.nodelay:
            extra["nodelay"] = self._nodelay
        if self._keepalive != stack_policy.keepalive:
            extra["keepalive"] = self._keepalive
        defer = self._defer()
        if defer > stack_policy.synack_retries:
            # (TCP_DEFER_ACCEPT: the half-open connection lives through its period, as
            # Linux's request whose ACK came: syn_ack_recalc)
            extra["synack_retries"] = defer
        policy = self._policy()
        if not extra:
            return policy
        return (policy or stack_policy).replace(**extra)

    def _defer(self) -> int:
        """TCP_DEFER_ACCEPT in SYN-ACK retransmissions (0: off)."""
        secs = self._opts.get((TCP, TCP_DEFER_ACCEPT))
        return _defer_retrans(secs)[0] if secs else 0

    def _changed(self) -> None:
        """Stack lock held, an option changed: what accepted sockets take, and the listener's
        policy for the connections still to come."""
        own = self.__dict__
        inherit = {k: own[k] for k in _INHERITED if k in own}
        opts = inherit.get("_opts")
        if opts and (SOL, _socket.SO_PRIORITY) in opts:  # (Linux: the SYN's, not inherited)
            inherit["_opts"] = {k: v for k, v in opts.items() if k != (SOL, _socket.SO_PRIORITY)}
        self._inherit = inherit
        lh = self._listen
        if lh is not None:
            lh.listener.policy = self._listen_policy() or self._tcp.layer.policy
            lh.listener.bind_flags = self._bind_flags()
            lh.listener.set_defer_accept(self._defer())

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
            if field in ("ttl", "tos", "hop_limit", "tclass"):
                h.conn.tx_route = None  # (the fast output makes the headers again)
            self._tcp.flush(h.conn)  # (new timers: keepalive, RTO bounds)
            self._stack.runtime.flush()

    def _bind_flags(self) -> int:
        """BIND_* flags of this socket for its connections (bind conflicts after it is gone)."""
        return (BIND_REUSE if self._reuse else 0) | (BIND_V6ONLY if self._v6only else 0) | (
            BIND_REUSEPORT if self._reuseport else 0)

    def _apply_options(self, conn: TcpConnection) -> None:
        conn.nodelay = self._nodelay
        conn.keepalive = self._keepalive

    def setsockopt(self, level: int, option: int, value: Any,
                   optlen: Any = None) -> None:
        """Set an option (the module docstring lists them and their effect); errors as
        Linux's (EINVAL for a value out of range, ENOPROTOOPT for SO_SNDLOWAT)."""
        if self._gone:
            raise oserror(errno.EBADF)
        if isinstance(value, (bytes, bytearray, memoryview)):
            raw = bytes(value)
            ival = int.from_bytes(raw[:4], "little", signed=True) if len(raw) >= 4 else \
                raw[0] if raw else 0
        else:
            raw = b""
            ival = value if value is not None else 0
        with self._stack.lock:
            self._setopt(level, option, value, raw, ival)
            if self._h is None:  # (a listener, or a socket still to connect or listen)
                self._changed()

    def _setopt(self, level: int, option: int, value: Any, raw: bytes, ival: int) -> None:
        h = self._h
        key = (level, option)
        if level == SOL:
            if option == _socket.SO_REUSEADDR:
                self._reuse = bool(ival)
                if h is not None:
                    h.conn.bind_flags = self._bind_flags()
            elif option == SO_REUSEPORT:
                self._reuseport = bool(ival)
                if h is not None:
                    h.conn.bind_flags = self._bind_flags()
            elif option == _socket.SO_KEEPALIVE:
                self._keepalive = bool(ival)
                if h is not None:
                    h.conn.keepalive = self._keepalive
                    self._tcp.flush(h.conn)  # (the layer re-arms the connection's timer)
                    self._stack.runtime.flush()
            elif option == _socket.SO_LINGER:
                if len(raw) < 8:
                    raise oserror(errno.EINVAL)  # (an int: Linux wants a struct linger)
                onoff, secs = struct.unpack_from("=ii", raw)
                self._linger = (1, secs) if onoff else (0, self._linger[1])
                self._linger0 = bool(onoff) and secs == 0
            elif option in (_socket.SO_SNDBUF, _socket.SO_RCVBUF):
                policy = self._tcp.layer.policy
                snd = option == _socket.SO_SNDBUF
                top = policy.wmem_max if snd else policy.rmem_max
                n = top if ival < 0 or ival > top else int(ival)
                size = max(2 * n, SOCK_MIN_SNDBUF if snd else SOCK_MIN_RCVBUF)
                if snd:
                    self._sndbuf = size
                    if h is not None and not h.lazy and not self._junked \
                            and _csocket.socket.fileno(self) >= 0:
                        _bigbuf(self, size)  # (what the application may queue, as Linux)
                else:
                    self._rcvbuf = size
                    if h is not None:
                        self._fit_rcvbuf(h)
                self._bufs_set = True
            elif option in (_socket.SO_RCVTIMEO, _socket.SO_SNDTIMEO):
                self._ensure_fd()
                _csocket.socket.setsockopt(self, level, option, value)
                kept = _csocket.socket.getsockopt(self, level, option, _TIMEVAL.size)
                self._timeo = {**self._timeo, option: kept}  # (for accepted sockets)
                if option == _socket.SO_RCVTIMEO:  # (what the kernel keeps, rounded)
                    sec, usec = _TIMEVAL.unpack(kept)
                    self._rcvtimeo = sec + usec / 1e6
            elif option == _socket.SO_SNDLOWAT:
                raise oserror(errno.ENOPROTOOPT)
            elif option == SO_BINDTODEVICE:
                name = (value.encode() if isinstance(value, str) else raw).split(b"\0")[0]
                ifaces = self._stack.core.ifaces.values()
                if name and not any(i.name.encode() == name for i in ifaces):
                    raise oserror(errno.ENODEV)
                self._device = name
            elif key in _STORED:
                if option == _socket.SO_RCVLOWAT:
                    ival = (0x7FFFFFFF if ival < 0 else ival) or 1
                self._store(key, int(bool(ival)) if key in _BOOL_OPTS else int(ival))
                if option == _socket.SO_OOBINLINE:
                    self._sync_oobinline()  # (its effect: StreamIO)
                if option == _socket.SO_RCVLOWAT:
                    self._set_lowat(int(ival))  # (its effect: see StreamSocket._set_lowat)
        elif level == TCP:
            if option == _socket.TCP_NODELAY:
                self._nodelay = bool(ival)
                if h is not None:
                    h.conn.nodelay = self._nodelay
                    self._tcp.flush(h.conn)
                    self._stack.runtime.flush()
            elif option == TCP_CONGESTION:
                cc_raw = value if isinstance(value, (bytes, bytearray, str)) else b""
                name = (cc_raw.encode() if isinstance(cc_raw, str) else bytes(cc_raw))
                name = name.split(b"\0")[0]
                try:
                    self._override("congestion_control", name.decode("ascii"))
                except (ValueError, UnicodeDecodeError):
                    raise oserror(errno.ENOENT) from None  # as Linux for an unknown algorithm
            elif option in _KEEP_FIELDS:
                field = _KEEP_FIELDS[option]
                if not 1 <= ival <= _KEEP_MAX[field]:
                    raise oserror(errno.EINVAL)
                self._override(field, int(ival))
            elif option == _socket.TCP_MAXSEG:
                if ival and not 88 <= ival <= 32767:  # (Linux TCP_MIN_MSS, MAX_TCP_WINDOW)
                    raise oserror(errno.EINVAL)
                self._store(key, int(ival))
                self._override("mss", int(ival) or None)
            elif option == getattr(_socket, "TCP_SYNCNT", 7):
                if not 1 <= ival <= 127:  # (Linux MAX_TCP_SYNCNT)
                    raise oserror(errno.EINVAL)
                self._override("syn_retries", int(ival))
            elif option == getattr(_socket, "TCP_USER_TIMEOUT", 18):
                if ival < 0:
                    raise oserror(errno.EINVAL)
                self._store(key, int(ival))
                self._override("user_timeout", ival / 1000.0)
            elif option == getattr(_socket, "TCP_DEFER_ACCEPT", 9):
                self._store(key, _defer_secs(int(ival)))
            elif key in _STORED:
                self._store(key, int(bool(ival)) if key in _BOOL_OPTS else int(ival))
        elif level == IP6 and self.family != _socket.AF_INET6:
            raise oserror(errno.ENOPROTOOPT)
        elif key in ((IP, IP_FREEBIND), (IP6, IPV6_FREEBIND)):
            self._freebind = bool(ival)
        elif key in _IP_FIELDS:
            field = _IP_FIELDS[key]
            if field in ("tos", "tclass"):
                if field == "tclass" and not -1 <= ival <= 255:
                    raise oserror(errno.EINVAL)
                v = 0 if field == "tclass" and ival == -1 else ival & 0xFC  # (ECN: TCP's)
            elif ival == -1:
                v = -1
            elif not (1 if field == "ttl" else 0) <= ival <= 255:
                raise oserror(errno.EINVAL)
            else:
                v = int(ival)
            self._store(key, v)
            self._override(field, v)
        elif level == IP6 and option == _socket.IPV6_V6ONLY:
            if self._bound is not None:
                raise oserror(errno.EINVAL)
            self._v6only = bool(ival)

    def _store(self, key: tuple[int, int], value: int) -> None:
        self._opts = {**self._opts, key: value}

    def getsockopt(self, level: int, option: int, buflen: int = 0) -> Any:
        """Read an option (the module docstring lists them): an int, or ``buflen`` bytes of
        it (struct linger, struct timeval, struct tcp_info and the congestion control's name
        as such)."""
        if self._gone:
            raise oserror(errno.EBADF)
        if level == TCP and option == TCP_CONGESTION:
            with self._stack.lock:
                name = self._overrides.get("congestion_control",
                                           self._tcp.layer.policy.congestion_control)
            raw = name.encode("ascii")
            return raw[:buflen].ljust(buflen, b"\0") if buflen else raw
        if level == TCP and option == TCP_INFO:
            return self._tcp_info(buflen)
        if level == SOL and option == _socket.SO_LINGER:
            data = struct.pack("=ii", *self._linger)
            return data[:buflen] if buflen else self._linger[0]
        if level == SOL and option == SO_BINDTODEVICE:
            if not self._device:
                return b"" if buflen else 0
            if buflen < 16:  # (Linux: IFNAMSIZ at least)
                raise oserror(errno.EINVAL)
            return self._device + b"\0"
        if level == SOL and option == _socket.SO_PEERCRED:
            data = struct.pack("=iii", 0, -1, -1)  # (Linux: no credentials for TCP)
            return data[:buflen] if buflen else 0
        if level == SOL and option in (_socket.SO_RCVTIMEO, _socket.SO_SNDTIMEO):
            if _csocket.socket.fileno(self) < 0:
                data = bytes(_TIMEVAL.size)  # (no descriptor yet: none was set)
                return data[:buflen] if buflen else 0
            return _csocket.socket.getsockopt(self, level, option, buflen)
        value = self._getopt(level, option)
        if buflen:
            return int(value).to_bytes(4, "little", signed=True)[:buflen]
        return value

    def _tcp_info(self, buflen: int) -> Any:
        with self._stack.lock:
            h = self._h
            lh = self._listen
            if h is not None:
                data = pack_tcp_info(h.conn)
            elif lh is not None:
                lst = lh.listener
                data = pack_tcp_info(None, LINUX_STATE[State.LISTEN],
                                     (len(lst.accept_queue) + lst.handed, lst.backlog - 1))
            else:
                data = pack_tcp_info(None)
        if not buflen:
            return data[0]
        return data[:min(buflen, TCP_INFO_SIZE)]

    def _getopt(self, level: int, option: int) -> int:
        with self._stack.lock:
            h = self._h
            key = (level, option)
            if level == SOL:
                if option == _socket.SO_ERROR:
                    if h is None or h.connecting:
                        return 0
                    if h.lazy:
                        self._materialize()  # (an error waiting in the connection moves)
                    if self._junked:
                        self._unjunk()
                    if h.connect_error:
                        err, h.connect_error = h.connect_error, 0
                        self._kernel_error()  # (the descriptor's mark: StreamIO)
                    else:
                        err, h.error = h.error, 0
                        if err:
                            self._kernel_error()  # (the descriptor's mark: StreamIO)
                    return err
                if option == _socket.SO_TYPE:
                    return int(_socket.SOCK_STREAM)
                if option == _socket.SO_ACCEPTCONN:
                    return int(self._listen is not None)
                if option == _socket.SO_REUSEADDR:
                    return int(self._reuse)
                if option == SO_REUSEPORT:
                    return int(self._reuseport)
                if option == _socket.SO_KEEPALIVE:
                    return int(self._keepalive)
                if option == _socket.SO_SNDBUF:
                    return int(self.__dict__.get("_sndbuf", 0)
                               or self._tcp.layer.policy.send_buffer)
                if option == _socket.SO_RCVBUF:
                    return int(self.__dict__.get("_rcvbuf", 0)
                               or self._tcp.layer.policy.recv_buffer)
                if option == _socket.SO_DOMAIN:
                    return int(self.family)
                if option == _socket.SO_PROTOCOL:
                    return _socket.IPPROTO_TCP
            elif level == TCP:
                if option == _socket.TCP_NODELAY:
                    return int(self._nodelay)
                if option in _KEEP_FIELDS:
                    field = _KEEP_FIELDS[option]
                    return int(self._overrides.get(field, getattr(self._tcp.layer.policy,
                                                                  field)))
                if option == _socket.TCP_MAXSEG:
                    user = self._opts.get(key, 0)
                    if h is not None and h.conn.state not in (State.CLOSED, State.LISTEN):
                        return int(h.conn.mss)
                    return user or (int(h.conn.mss) if h is not None else 536)
                if option == getattr(_socket, "TCP_SYNCNT", 7):
                    return int(self._overrides.get("syn_retries",
                                                   self._tcp.layer.policy.syn_retries))
            if key in ((IP, IP_MTU), (IP6, IPV6_MTU)):
                if h is None or h.connecting or h.conn.state in (State.CLOSED, State.LISTEN):
                    raise oserror(errno.ENOTCONN)
                remote = h.conn.remote[0]
                return int(self._tcp.layer.mss_for(remote) + (60 if len(remote) == 16 else 40))
            if key in ((IP, IP_FREEBIND), (IP6, IPV6_FREEBIND)):
                return int(self._freebind)
            if level == IP6:
                if self.family != _socket.AF_INET6:
                    raise oserror(errno.EOPNOTSUPP)
                if option == _socket.IPV6_V6ONLY:
                    return int(self._v6only)
                if option == _socket.IPV6_UNICAST_HOPS:
                    hops = self._opts.get(key, -1)
                    return hops if hops >= 0 else self._default_hops()
            elif level == IP and option == _socket.IP_TTL:
                ttl = self._opts.get(key, -1)
                return ttl if ttl >= 0 else int(self._stack.core.ip4.default_ttl)
            if key in _STORED:
                return self._opts.get(key, _STORED[key])
        raise oserror(errno.ENOPROTOOPT)

    def _linger_wait(self, conn: TcpConnection, secs: int) -> None:
        """SO_LINGER ``{1, secs}``, after the close: wait up to ``secs`` s until the data
        and the FIN are acknowledged (Linux's ``sk_stream_wait_close``: the connection is out
        of FIN-WAIT-1, CLOSING and LAST-ACK), serving the plugs on this thread when it may;
        at the deadline return (the data still goes out, as on Linux)."""
        runtime = self._stack.runtime
        clock = runtime.clock
        deadline = clock() + secs
        stack = self._stack

        def done() -> bool:
            return conn.state in _LINGER_DONE or stack.closed

        while not done():
            left = deadline - clock()
            if left <= 0:
                return
            got = runtime.serve_until(self._tcp.quiet, 0, min(deadline, clock() + 0.02), done)
            if got is None:
                time.sleep(min(left, 0.005))  # (the engine thread serves: look again soon)

    def _default_hops(self) -> int:
        """The hop limit of the interface towards the peer (or the first one), 64 without."""
        core = self._stack.core
        h = self._h
        try:
            if h is not None and len(h.conn.remote[0]) == 16:
                return int(core.ip6.route(h.conn.remote[0])[0].hop_limit)
        except OSError:
            pass
        return 64
