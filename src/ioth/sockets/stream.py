"""TCP sockets with a real descriptor.

The application's descriptor is an AF_UNIX SOCK_STREAM socket:

* connected sockets: one end of a connected pair; the engine end (``B``) is pumped to and from
  the :class:`~ioth.stack.tcp.connection.TcpConnection`.  Bytes the application writes are read
  from ``B`` only while the connection has send space (so the AF_UNIX buffer is the flow control
  of the application), received bytes are written into ``B`` only while it has room (so a slow
  reader closes the TCP window).  The peer's FIN is a ``shutdown(SHUT_WR)`` of ``B``; the end of
  the application's data (EOF on ``B``) is our FIN, a full close of every copy of the
  descriptor (EPOLLHUP) is a close, unread data at close is a reset, like Linux.
  Sends go straight into the connection under the stack lock (``direct_send``) once nothing
  written through the descriptor waits (once ``fileno()`` was taken, each one first looks
  at the engine end: bytes written there with ``os.write`` go first, as on Linux); a
  blocking ``recv``/``recv_into`` whose thread serves the plugs inline copies straight from
  the connection's receive queue while nothing waits unread in the descriptor
  (``StreamSocket._recv_direct``): the pair then only carries readiness and the bytes of
  every other reader (select/poll/asyncio, ssl, other processes).
* listening sockets: an AF_UNIX *listening* socket; each connection accepted by the stack is
  connected to it from a new engine end, so the descriptor is readable exactly when ``accept``
  has something and the kernel implements blocking, timeouts and non-blocking accepts.  A
  blocking ``accept`` whose thread serves the plugs inline takes the connections that arrive
  while it waits straight from the stack, on a fresh AF_UNIX pair
  (``StreamSocket._accept_direct``), once nothing waits in the descriptor.
* a non-blocking ``connect`` fills the application end's (shrunken) send buffer with bytes the
  pump discards when the handshake ends, so the descriptor turns writable exactly when the
  connection is established or failed (then ``SO_ERROR`` tells which), as asyncio expects.

Where these sockets differ from Linux's, deliberately:

* closing a socket from another thread wakes a thread blocked in its ``recv`` or ``accept``,
  which fails with EBADF, or in its ``connect``, which fails with ECONNABORTED (the attempt
  ends, nothing more is sent); the listener's port is freed and its connects refused at
  once.  Linux leaves the blocked call going (it keeps the file referenced): the read waits
  for the peer's next bytes, the accept takes the next client, the connect completes (and
  the connection is closed when it returns), possibly never.  Sessions 4 and 7 chose not to
  copy that: close() would then not free the port nor stop the attempt that the application
  asked to end, and ioth's waits poll the descriptor's number (a number reused after close
  would be watched), which parity would have to pay with a dup per blocking call.  No
  portable program relies on either (shutdown(SHUT_RD) wakes a blocked accept on both).
* the descriptor is the application's AF_UNIX end: ``socket.socket(fileno=s.detach())`` (or
  a descriptor handed to another process) is an AF_UNIX stream carrying the connection's
  bytes, end of stream and reset, with AF_UNIX names and options.  So are the socket objects
  that other code builds on ``fileno()``: ``socket.fromfd`` (a plain socket on a copy of the
  descriptor) and ssl's ``SSLContext.wrap_socket`` (its SSLSocket takes the descriptor and
  detaches the ioth socket): their ``getpeername``/``getsockname`` are the AF_UNIX pair's
  names, not the TCP addresses (family, type, timeout, bytes and TLS are the connection's).
  ioth cannot give them the TCP names without a kernel TCP socket or replacing ssl's
  socket class (``SSLContext.sslsocket_class``, process-wide): ask the ioth socket for
  its names before wrapping it.
* ``dup()`` works on a connected socket (the copies share the connection, which closes with
  the last of them); on a listening, connecting or unconnected one it is EOPNOTSUPP.
* after a refused non-blocking connect the socket's next connect gets a fresh descriptor of
  the same number (an AF_UNIX stream connects once): select and poll go on, an epoll
  registration made before is lost (a blocking connect's descriptor is kept).
* TCP_DEFER_ACCEPT: while a connection waits for its first data, the listener retransmits
  its SYN-ACK at each timeout (the peer's answering ACKs are dropped until the period ends)
  where Linux stays silent until the period's last timeout; the connection is accepted at
  the same moment.  A period longer than the policy's ``synack_retries`` also lets a
  half-open connection whose handshake ACK never came retry that long.
* urgent data (MSG_OOB): the connection's urgent byte goes into the descriptor as the
  AF_UNIX stream's own urgent byte, which has Linux's TCP semantics (POLLPRI, recv(MSG_OOB),
  ordinary reads stopping at the mark and skipping it, SIOCATMARK, SO_OOBINLINE, a newer one
  returning the older to the stream), except: while nothing but the urgent byte is queued
  (read or not) the descriptor also polls readable (POLLIN; Linux's TCP socket does not, and
  CPython's recv with a timeout then waits for POLLIN before its recv(MSG_OOB)); a
  recv(MSG_OOB) once the urgent pointer came but not yet its byte is EINVAL (Linux: EAGAIN);
  a newer urgent byte coming while the reader sits at an older one it did not take returns
  that one to the stream (Linux drops it); a connection that met urgent data reads through
  its descriptor from then on.  send(MSG_OOB)
  (also sendall, sendto, sendmsg without ancillary data) goes straight into the connection
  after what was written through the descriptor; a blocking one bigger than the buffers
  sends all but its last byte as ordinary data, then that byte urgent (Linux makes the last
  byte queued before each wait for room urgent too), and polls for room every few
  milliseconds when that byte finds the buffers full.  A byte sent with MSG_OOB through
  the descriptor by other code (a socket object built on ``fileno()``, another process)
  goes as an ordinary byte (the engine end reads it in line once ``fileno()`` was taken;
  after ``detach()`` alone its ordinary reads skip it), and a forked child's send(MSG_OOB)
  sends ordinary bytes.

The stack keeps only weak references to its TCP sockets (``_SockRef``): a socket or listener
the application drops without ``close()`` is closed when collected (``StreamSocket.__del__``,
with a ResourceWarning), as CPython's finalizer closes a kernel socket.

The code, by module: this one holds :class:`StreamSocket` (creation, addresses, listen and
accept, connect and pairing, close) and the knobs it reads (``LAZY_PAIR``, ``LAZY_FD``,
``DIRECT_ACCEPT``, ``CONNECT_SLICE``); its bases :class:`~ioth.sockets.stream_io.StreamIO`
(receiving, sending, shutdown) and :class:`~ioth.sockets.stream_options.StreamOptions`
(setsockopt/getsockopt, the socket's TCP policy); :mod:`ioth.sockets.stream_engine` is the
engine side (``TcpSockets``, ``StreamHandle``, ``ListenHandle``) with its own knobs
(``NOTIFY_FAST``, ``CHUNK``, ``BUF``, ...).  Each knob lives in the module that reads it: set
it there (``monkeypatch.setattr(module, NAME, v)``, ``BENCH_TCP_TWEAK=module:NAME=v``).
"""

from __future__ import annotations

import _socket as _csocket
import errno
import os
import select
import socket as _socket
import sys
import threading
import warnings
import weakref
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ioth.sockets.addr import Address, format_address, parse_address
from ioth.sockets.base import TYPE_MASK, SocketLayer, _Pid, layer_for, oserror
from ioth.sockets.stream_engine import BUF as _BUF
from ioth.sockets.stream_engine import (
    ListenHandle,
    StreamHandle,
    TcpSockets,
    _bigbuf,
    _Lazy,
    _nowait,
    _unix,
)
from ioth.sockets.stream_io import StreamIO
from ioth.sockets.stream_options import StreamOptions
from ioth.stack.tcp.connection import State
from ioth.stack.tcp.layer import BIND_REUSEPORT
from ioth.wire.ipv6 import unmap

if TYPE_CHECKING:
    from ioth.stack.stack import Stack

CONNECT_SLICE = 0.005  # longest inline wait of a blocking connect between checks
#: 1: a blocking accept whose thread serves the plugs inline takes the stack's new connection
#: straight from the listener's queue with a fresh AF_UNIX pair (no engine end connected to
#: the listening descriptor, no kernel accept, no readiness poll); 0: always through it
DIRECT_ACCEPT = 1
#: 1: a blocking connect and a direct accept give the application a descriptor of its own (an
#: unconnected AF_UNIX stream) and no engine end: sends go straight into the connection, reads
#: come straight from it and close closes it, with no AF_UNIX pair, no pump registration and no
#: engine-end close per connection; the pair is made (StreamSocket._materialize) the moment the
#: descriptor itself is needed: fileno(), detach(), a read or write that must use the kernel
#: (non-blocking, flags, a full send buffer, another thread serving), SO_ERROR after a failure,
#: shutdown(SHUT_WR), or a fork; 0: every connected socket gets its pair at once
LAZY_PAIR = 1
#: 1: a TCP socket made blocking (no SOCK_NONBLOCK, no default timeout) and not handed a
#: descriptor gets its AF_UNIX descriptor only when something needs it (fileno(), settimeout
#: or setblocking that change the mode, listen, pairing, detach, SO_RCVTIMEO/SO_SNDTIMEO, a
#: fork): a blocking connect or direct accept whose socket stays unpaired (LAZY_PAIR) costs no
#: socket() and close() syscalls and no C socket set-up; 0: every socket gets one at once
LAZY_FD = 1
_CLOSED = State.CLOSED
_SYN_SENT = State.SYN_SENT
_get_ident = threading.get_ident
_AF_INET = int(_socket.AF_INET)
_AF_INET6 = int(_socket.AF_INET6)
_FAMILIES = {_AF_INET: _socket.AF_INET, _AF_INET6: _socket.AF_INET6}
_fileno = _csocket.socket.fileno  # (the descriptor without StreamSocket.fileno's pairing)
# what a dup copies of its socket: the options (the descriptor's own are shared)
_DUP_STATE = ("_nodelay", "_keepalive", "_linger0", "_linger", "_sndbuf", "_rcvbuf",
              "_overrides", "_bufs_set", "_rcvtimeo", "_reuse", "_reuseport", "_v6only",
              "_rd_shut", "_accepted_plain")


def _pair_before_fork() -> None:
    """os.fork is about to run: give every unpaired socket of this process its AF_UNIX pair."""
    for tcp in list(_Lazy.layers):
        stack = tcp.stack
        if tcp.pid != _Pid.value:
            continue  # (a forked child's copy of its parent's layer: nothing to pair here)
        if stack.closed or not stack.lock.acquire(timeout=2.0):
            continue
        try:
            for ref in list(stack._sockets):
                s = ref() if isinstance(ref, _SockRef) else None
                if s is not None:
                    try:
                        s._materialize()
                    except OSError:
                        pass
        finally:
            stack.lock.release()


os.register_at_fork(before=_pair_before_fork)


def _no_direct(h: StreamHandle, buffer: Any, size: int) -> None:
    """StreamIO._recv_direct of a socket with SO_RCVLOWAT: read the descriptor."""
    return None


class _SockRef(weakref.ref):  # type: ignore[type-arg]
    """The stack's reference to one of its TCP sockets (in ``Stack._sockets``, a handle's
    ``app``, the bound ports): weak, so that a socket the application drops without
    ``close()`` is collected and closed (:meth:`StreamSocket.__del__`), as CPython does
    with a kernel socket."""

    __slots__ = ()

    def close(self) -> None:
        """Close the socket if it is still alive (``Stack.close``)."""
        s = self()
        if s is not None:
            s.close()


class StreamSocket(StreamOptions, StreamIO):
    """A TCP socket of an ioth stack; an instance of ``socket.socket`` with a real descriptor."""

    # defaults of the per-socket state (set on the instance when they change)
    _listen: ListenHandle | None = None
    _bound: tuple[bytes | None, int] | None = None
    _reuse = False
    _v6only = False
    _linger0 = False
    _overrides: Mapping[str, Any] = MappingProxyType({})  # TCP_CONGESTION, TCP_KEEP*: fields
    _sndbuf = _BUF
    _rcvbuf = _BUF
    _junked = False
    _bufs_set = False
    _rd_shut = False
    _got = 0  # bytes read through recv/recv_into (see StreamHandle.wrote)
    _exposed = False  # fileno() was called before connect (the descriptor may be watched)
    _rcvtimeo = 0.0  # SO_RCVTIMEO in seconds (0: none); a blocking read's inline wait obeys it
    # a failed connect was reported and the socket is unconnected again (Linux): the next
    # connect starts afresh (see _connect)
    _refused = False
    # the engine end a failed connect left connected to the descriptor, for the next connect
    _spare: _csocket.socket | None = None
    _gone = False  # closed (the socket object's calls then fail with EBADF, as Linux's)
    # a non-blocking connect (or one whose timeout passed) is under way or ended unconfirmed:
    # Linux's next connect returns 0 once it is established (see _connect)
    _in_progress = False
    _lowat = 1  # SO_RCVLOWAT (see _set_lowat)
    # fileno() was called: the application may use the descriptor behind the object's back
    # (os.write between two sends, O_NONBLOCK set with fcntl)
    _fd_taken = False
    _auto_port = False  # the bound port was chosen by bind (port 0): a failed connect frees it
    _accepting = 0  # threads waiting in accept on the listening descriptor (not _accept_direct)
    _bound_h: StreamHandle | None = None  # the handle of a failed connect when bind was called

    def __init__(self, stack: Stack, family: int = _socket.AF_INET,
                 type: int = _socket.SOCK_STREAM, proto: int = 0, *,
                 _fileno: int | None = None, _handle: StreamHandle | None = None) -> None:
        if family not in (_socket.AF_INET, _socket.AF_INET6):
            raise oserror(errno.EAFNOSUPPORT)
        if type & TYPE_MASK != _socket.SOCK_STREAM or proto not in (0, _socket.IPPROTO_TCP):
            raise oserror(errno.EPROTONOSUPPORT)
        if stack.closed:
            raise oserror(errno.EBADF, "stack is closed")
        layer = layer_for(stack)
        tcp = layer.tcp
        if tcp is None:
            with stack.lock:
                if layer.tcp is None:
                    layer.tcp = TcpSockets(stack, layer.pump)
            tcp = layer.tcp
        self._tcp: TcpSockets = tcp
        self._layer: SocketLayer = layer
        accepted = _fileno is not None or _handle is not None
        # the socket object is what it holds, an AF_UNIX stream (made here: no descriptor
        # handed over, whose check costs a getsockname); family and proto are the TCP
        # socket's (properties below; the C methods that would read the object's own family
        # to parse an address, connect/bind/sendto/getsockname, are all replaced here)
        if LAZY_FD and _fileno is None and not type & _socket.SOCK_NONBLOCK \
                and _socket.getdefaulttimeout() is None:
            # no descriptor yet (see _ensure_fd): the C object says -1, blocking; this is
            # what socket.socket.__init__ sets besides the descriptor
            self._io_refs = 0
            self._closed = False
        else:
            super().__init__(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, _fileno)
        self._stack = stack
        self._fam = int(family)
        self._proto = int(proto)
        self._pid = _Pid.value
        self._h: StreamHandle | None = _handle
        ref = self._ref = _SockRef(self)
        if _handle is not None:
            _handle.app = ref
        policy = tcp.layer.policy  # the stack's defaults until setsockopt says otherwise
        self._nodelay = bool(policy.nodelay)
        self._keepalive = bool(policy.keepalive)
        self._accepted_plain = accepted  # an accepted stream (maybe of another process)
        with stack.lock:
            stack._sockets.add(ref)
        if type & _socket.SOCK_NONBLOCK:
            self.setblocking(False)

    @property
    def family(self) -> _socket.AddressFamily:
        """AF_INET or AF_INET6 (the descriptor itself is an AF_UNIX stream)."""
        return _FAMILIES[self._fam]

    @property
    def proto(self) -> int:
        """0 or IPPROTO_TCP, as given to the constructor."""
        return self._proto

    @property
    def type(self) -> _socket.SocketKind:
        """SOCK_STREAM (also before the socket has its descriptor, see LAZY_FD)."""
        return _socket.SOCK_STREAM

    def _ensure_fd(self) -> int:
        """The descriptor, made now if the socket has none yet (LAZY_FD): an unconnected
        AF_UNIX stream, blocking (a socket without a descriptor has no timeout: settimeout
        and setblocking make it first).  -1 once the socket is closed."""
        fd: int = _fileno(self)
        if fd < 0 and not self._closed:
            with self._stack.lock:
                fd = _fileno(self)
                if fd < 0 and not self._closed:
                    _csocket.socket.__init__(self, _socket.AF_UNIX, _socket.SOCK_STREAM, 0)
                    if _csocket.socket.gettimeout(self) is not None:
                        # (socket.setdefaulttimeout since the socket was made: it stays
                        # what it was, blocking)
                        _csocket.socket.settimeout(self, None)
                    fd = _fileno(self)
        return fd

    def settimeout(self, value: float | None) -> None:
        """Set the timeout (None: blocking, 0: non-blocking), as ``socket.settimeout``."""
        if value is None and _fileno(self) < 0 and not self._closed:
            return  # (no descriptor yet: blocking already, nothing to change)
        self._ensure_fd()
        super().settimeout(value)

    def setblocking(self, flag: bool) -> None:
        """Blocking or non-blocking mode, as ``socket.setblocking``."""
        if flag and _fileno(self) < 0 and not self._closed:
            return  # (no descriptor yet: blocking already)
        self._ensure_fd()
        super().setblocking(flag)

    # -- addresses -------------------------------------------------------------------------------
    def _v(self) -> int:
        return 4 if self._fam == _AF_INET else 6

    def bind(self, address: Any) -> None:
        """Reserve a local address and port (EADDRINUSE, EADDRNOTAVAIL, EINVAL like Linux)."""
        if self._gone:
            raise oserror(errno.EBADF)
        addr, port, _ = parse_address(self._stack, self.family, address, bind=True)
        stack = self._stack
        tcp = self._tcp
        with stack.lock:
            h = self._h
            # (after a failed connect Linux has released an automatic port, tcp_set_state's
            # inet_put_port: the socket binds again; a port bound before connect stays)
            if h is not None and not h.failed:
                raise oserror(errno.EINVAL)
            if self._bound is not None:
                if h is None or not self._auto_port or self._bound_h is h:
                    raise oserror(errno.EINVAL)  # (bound since that connect failed: kept)
                self._unbind()  # (its port was freed by the failed connect)
                self._bound = None
            if addr is not None:
                if self._v6only and len(addr) == 16 and addr != unmap(addr):
                    raise oserror(errno.EINVAL)  # (Linux: no IPv4 for a V6ONLY socket)
                plain = unmap(addr)
                if plain != b"\0" * len(plain) and not self._is_local(plain) \
                        and not self._freebind:  # (IP_FREEBIND: any address)
                    raise oserror(errno.EADDRNOTAVAIL)
                if plain == b"\0" * len(plain):
                    addr = None
            auto = port == 0
            if auto:
                port = tcp.ephemeral(self, addr)
            elif tcp.in_use(self, addr, port):
                raise oserror(errno.EADDRINUSE)
            self._bound = (addr, port)
            self._auto_port = auto
            if h is not None:
                self._bound_h = h
            tcp.bound.setdefault(port, []).append(self._ref)

    def _is_local(self, addr: bytes) -> bool:
        core = self._stack.core
        if len(addr) == 4:
            return addr in core.local4
        return bool(core.ip6.is_local(addr))

    def _unbind(self) -> None:
        if self._bound is None:
            return
        lst = self._tcp.bound.get(self._bound[1])
        if lst and self._ref in lst:
            lst.remove(self._ref)
            if not lst:
                del self._tcp.bound[self._bound[1]]

    def getsockname(self) -> Address:
        """Local (address, port)."""
        if self._gone:
            raise oserror(errno.EBADF)
        h = self._h
        if h is not None and h.failed:
            # a failed connect (Linux): the port bound since, else the connection's port
            # with the source address it had (a connect with a timeout, whose error came
            # from SO_ERROR) or the wildcard (the failure was reported: tcp_disconnect)
            if self._bound is not None:
                return format_address(self.family, self._bound[0], self._bound[1])
            if self._refused:
                return format_address(self.family, None, h.conn.local[1])
        if h is not None:
            la = h.conn.local[0]
            return format_address(self._fam, la, h.conn.local[1],
                                  self._scope(la) if la[0] == 0xFE else 0)
        if self._bound is not None:
            return format_address(self.family, self._bound[0], self._bound[1])
        return format_address(self.family, None, 0)

    def getpeername(self) -> Address:
        """The peer's (address, port); ENOTCONN before the connection is established."""
        h = self._h
        if h is None or h.connecting or h.failed or h.conn.state is _CLOSED:
            # (closed by a reset, say: Linux's TCP_CLOSE)
            raise oserror(errno.EBADF if self._gone else errno.ENOTCONN)
        ra = h.conn.remote[0]
        return format_address(self._fam, ra, h.conn.remote[1],
                              self._scope(h.conn.local[0]) if ra[0] == 0xFE else 0)

    def _scope(self, local: bytes) -> int:
        """The scope id of a link-local connection's names (Linux: the interface, its
        sk_bound_dev_if): the interface of its local address."""
        entry = self._stack.core.ip6.local.get(local)
        return entry[0] if entry is not None else 0

    # -- passive open ----------------------------------------------------------------------------
    def listen(self, backlog: int = 128) -> None:
        """Listen; the descriptor turns readable when connections wait for :meth:`accept`."""
        if self._gone:
            raise oserror(errno.EBADF)
        h = self._h
        if h is not None:
            if not (h.failed and self._refused):
                raise oserror(errno.EINVAL)
            # unconnected again after a failed connect whose error was reported (Linux:
            # SS_UNCONNECTED): it may listen, on an unconnected descriptor
            self._unconnect()
            spare = self._spare
            if spare is not None:
                self._spare = None
                spare.close()
                self._renew_fd()
            if self._bound is not None and self._auto_port and self._bound_h is not h:
                # (an automatic port, freed by the failed connect: listen picks a new one
                # on the same address, as Linux's inet_csk_listen_start)
                with self._stack.lock:
                    addr = self._bound[0]
                    self._unbind()
                    port = self._tcp.ephemeral(self, addr)
                    self._bound = (addr, port)
                    self._tcp.bound.setdefault(port, []).append(self._ref)
        if self._listen is not None:
            return
        if self._bound is None:
            self.bind(("", 0))
        assert self._bound is not None
        backlog = max(1, min(int(backlog), 4096))
        stack = self._stack
        tcp = self._tcp
        fd = self._ensure_fd()
        view = _unix(fd)
        try:
            view.bind("")
            view.listen(backlog)
            name = view.getsockname()
        finally:
            view.detach()
        ino = os.fstat(fd).st_ino
        addr, port = self._bound
        v = self._v()
        if addr is not None:
            key_addr = unmap(addr)
        else:  # the layer's wildcards: every IPv4 / every IPv6 / both families (dual-stack)
            key_addr = bytes(4) if v == 4 else bytes(16) if self._v6only else b""
        with stack.lock:
            layer = tcp.layer
            listener = layer.listeners.get((key_addr, port))
            lh = tcp.by_listener.get(listener) if listener is not None else None
            if listener is not None and not (
                    self._reuseport and listener.bind_flags & BIND_REUSEPORT):
                if lh is None or v in lh.sinks or (
                        4 in lh.sinks and v == 6 and not self._v6only) or (
                        6 in lh.sinks and v == 4 and not lh.sinks[6][1]):
                    raise oserror(errno.EADDRINUSE)
            else:
                # Linux's accept queue holds backlog + 1 (sk_acceptq_is_full: ">"); the
                # layer's backlog is its capacity (SO_REUSEPORT: one more of the group)
                listener = layer.listen(port, key_addr, backlog + 1, self._listen_policy(),
                                        reuseport=self._reuseport)
                listener.bind_flags = self._bind_flags()
                if self._opts:
                    listener.set_defer_accept(self._defer())  # (TCP_DEFER_ACCEPT)
                lh = ListenHandle(tcp, listener)
                tcp.by_listener[listener] = lh
            assert lh is not None
            lh.sinks[v] = (name, self._v6only)
            lh.inodes[v] = ino
            self._listen = lh
            lh.on_event()
            stack.runtime.flush()

    def _stop_listening(self, lh: ListenHandle) -> None:
        """Stack lock held: this socket stops listening; the stack's listener closes with
        its last sink (new connections are refused)."""
        self._listen = None
        lh.sinks.pop(self._v(), None)
        if not lh.sinks:
            tcp = self._tcp
            tcp.by_listener.pop(lh.listener, None)
            tcp.layer.close_listener(lh.listener, self._stack.now())
            for name in lh.dead:  # (reset before accept, never accepted)
                tcp.pending.pop(name, None)
            lh.dead.clear()

    def _shutdown_listener(self, how: int) -> None:
        """shutdown of a listening socket, as Linux's inet_shutdown: SHUT_WR does nothing;
        SHUT_RD and SHUT_RDWR stop listening (connects are refused, the port stays bound)
        and wake a blocked accept, which fails with EINVAL like every later one: the AF_UNIX
        listening descriptor is shut down for reading (unix_accept then says EINVAL, and
        polls readable, which ends a direct accept's wait too)."""
        if how not in (_socket.SHUT_RD, _socket.SHUT_WR, _socket.SHUT_RDWR):
            raise oserror(errno.EINVAL)
        if how == _socket.SHUT_WR:
            return
        stack = self._stack
        with stack.lock:
            lh = self._listen
            if lh is None:
                return
            self._stop_listening(lh)
            stack.runtime.flush()
        _csocket.socket.shutdown(self, _socket.SHUT_RD)

    def _accept(self) -> tuple[int, Any]:
        if self._listen is None:
            raise oserror(errno.EBADF if self._gone else errno.EINVAL)
        if self.gettimeout() == 0 or self._pid != _Pid.value:  # (never waits here)
            return _csocket.socket._accept(self)  # type: ignore[attr-defined, no-any-return]
        lock = self._stack.lock
        with lock:
            self._accepting += 1  # (a close from another thread wakes this wait: _real_close)
        try:
            if not (self._fd_taken and self._fcntl_nonblocking()):  # (then: the kernel's EAGAIN)
                self._serve_inline()
            return _csocket.socket._accept(self)  # type: ignore[attr-defined, no-any-return]
        except OSError:
            if self._gone:  # closed by another thread meanwhile (see _real_close)
                raise oserror(errno.EBADF) from None
            raise
        finally:
            with lock:
                self._accepting -= 1

    def accept(self) -> tuple[StreamSocket, Address]:
        """Wait for a connection (honours timeouts and non-blocking mode like the kernel)."""
        lh = self._listen
        if DIRECT_ACCEPT and lh is not None and self._pid == _Pid.value:
            timeout = self.gettimeout()
            if timeout != 0 and self._stack.runtime.can_serve() and not (
                    self._fd_taken and self._fcntl_nonblocking()):
                got = self._accept_direct(lh, timeout)
                if got is not None:
                    return got
        fd, name = self._accept()
        sock = StreamSocket(self._stack, self._fam, _socket.SOCK_STREAM, self.proto,
                            _fileno=fd)
        stack = self._stack
        with stack.lock:
            h = self._tcp.pending.pop(name, None)
            if h is not None:
                h.name = b""
                h._unsink()
                if h.eng is None and self._listen is not None:
                    self._listen.dead.pop(name, None)  # (reset before this accept)
        if h is None:  # accepted in another process (a pre-forked worker): a plain stream
            return sock, format_address(self.family, None, 0)
        sock._h = h
        h.app = sock._ref
        if self._inherit:  # (the listener's options: Linux clones the listening socket)
            sock.__dict__ |= self._inherit
            if self._timeo:
                sock._apply_timeo()
            if self._lowat > 1:
                with stack.lock:
                    sock._set_lowat(self._lowat)
            if self._bufs_set:
                _bigbuf(sock, sock._sndbuf)  # (SO_SNDBUF: what the application may queue)
                sock._fit_rcvbuf(h)
        if _socket.getdefaulttimeout() is None and self.gettimeout():
            sock.setblocking(True)
        conn = h.conn
        ra = conn.remote[0]
        return sock, format_address(self._fam, ra, conn.remote[1],
                                    self._scope(conn.local[0]) if ra[0] == 0xFE else 0)

    def _accept_direct(self, lh: ListenHandle, timeout: float | None
                       ) -> tuple[StreamSocket, Address] | None:
        """A blocking accept on a thread that may serve the plugs inline: wait (serving them)
        for the stack's next connection of this listener and hand it over on a fresh AF_UNIX
        pair, while no engine end waits in the listening descriptor (those come first, through
        the kernel's accept).  Connections that arrive while this thread waits stay in the
        stack's queue (ListenHandle.on_event leaves them to it); the others, and all of them
        if it stops waiting, go to the descriptor as usual.  None: use the descriptor."""
        stack = self._stack
        runtime = stack.runtime
        q = lh.listener.accept_queue
        me = _get_ident()
        with stack.lock:
            if lh.in_sink or lh.hold or lh.listener.closed or self._listen is not lh:
                return None
            if q:
                return self._take_accepted(lh)
            lh.hold = me
        got: bool | None = None
        try:
            deadline = None if timeout is None else runtime.clock() + timeout
            got = runtime.serve_until(_fileno(self), select.POLLIN, deadline, lambda: bool(q))
        finally:
            with stack.lock:
                if lh.hold == me:
                    lh.hold = 0
                taken = None
                if got is not None and q and not lh.in_sink and self._listen is lh:
                    taken = self._take_accepted(lh)
                if q:
                    lh.on_event()  # the others (or all: no wait, an error) to the descriptor
                    stack.runtime.flush()
                elif taken is not None and not (taken[0]._h is not None and taken[0]._h.lazy):
                    stack.runtime.flush()  # (an unpaired take queued nothing: no flush)
        if taken is not None:
            return taken
        if got is False:
            raise TimeoutError("timed out")
        return None

    def _take_accepted(self, lh: ListenHandle) -> tuple[StreamSocket, Address] | None:
        """Stack lock held: accept the first connection of the stack's queue if this socket
        is its sink, on a new AF_UNIX pair (None: leave it to ListenHandle.on_event)."""
        q = lh.listener.accept_queue
        conn = q[0]
        v = 4 if len(conn.local[0]) == 4 else 6
        sinks = lh.sinks
        sink = sinks.get(v)
        if sink is None and v == 4 and 6 in sinks and not sinks[6][1]:
            sink = sinks[6]
        mine = sinks.get(4 if self._fam == _AF_INET else 6)
        if sink is None or mine is None or sink[0] != mine[0]:
            return None
        eng: _csocket.socket | None = None
        fd: int | None = None  # (LAZY_PAIR: StreamSocket makes it; paired on demand)
        if not LAZY_PAIR:
            app, eng = _csocket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
            _nowait(eng)
            fd = app.detach()
        q.popleft()
        tcp = self._tcp
        h = StreamHandle(tcp, conn, eng)
        h.lazy = eng is None
        tcp.by_conn[conn] = h
        try:
            sock = StreamSocket(self._stack, self._fam, _socket.SOCK_STREAM, self._proto,
                                _fileno=fd, _handle=h)
        except BaseException:
            conn.abort()
            tcp.flush(conn)
            h._teardown()
            raise
        lh.direct += 1
        if self._inherit:  # (the listener's options: Linux clones the listening socket)
            sock.__dict__ |= self._inherit
            if self._timeo:
                sock._apply_timeo()
            if self._lowat > 1:
                sock._set_lowat(self._lowat)
        if not h.lazy:
            h.on_event()  # what arrived already goes to the descriptor (select, other readers)
        if _socket.getdefaulttimeout() is None and self.gettimeout():
            sock.setblocking(True)
        ra = conn.remote[0]
        return sock, format_address(self._fam, ra, conn.remote[1],
                                    self._scope(conn.local[0]) if ra[0] == 0xFE else 0)

    # -- active open -----------------------------------------------------------------------------
    def connect(self, address: Any) -> None:
        """Connect (blocking, with the socket's timeout, or non-blocking: EINPROGRESS)."""
        err = self._connect(address)
        if err:
            raise oserror(err)

    def connect_ex(self, address: Any) -> int:
        """:meth:`connect` returning an errno (EINPROGRESS when non-blocking)."""
        try:
            return self._connect(address)
        except TimeoutError:
            return errno.EAGAIN
        except _socket.gaierror:
            raise
        except OSError as exc:
            return exc.errno or errno.EINVAL

    def _connect(self, address: Any) -> int:
        if self._gone:
            return errno.EBADF
        stack = self._stack
        tcp = self._tcp
        if self._listen is not None:
            return errno.EISCONN  # (Linux: a listener is not SS_UNCONNECTED)
        h = self._h
        if h is not None:
            if h.connecting:
                return errno.EALREADY
            if h.failed:
                if not self._refused:
                    # Linux after a failed connect that left the socket connecting (one with
                    # a timeout or non-blocking: the error came from SO_ERROR or a later
                    # connect): this call reports the pending error, or ECONNABORTED, and
                    # leaves the socket unconnected (inet_stream_connect's sock_error)
                    with stack.lock:
                        err, h.connect_error = h.connect_error, 0
                    self._refused = True
                    self._kernel_error()  # (the descriptor's mark, see StreamHandle._update)
                    return err or errno.ECONNABORTED
                self._unconnect()  # unconnected: a new connect starts afresh
            elif h.connect_error:
                with stack.lock:
                    err, h.connect_error = h.connect_error, 0
                return err
            elif self._in_progress:
                # Linux: the socket stays SS_CONNECTING after a non-blocking connect (or one
                # whose timeout passed) until connect is called again: this one says 0
                self._in_progress = False
                return 0
            else:
                return errno.EISCONN
        dst, port, scope = parse_address(stack, self._fam, address)
        assert dst is not None
        dst = unmap(dst)
        if self._v6only and len(dst) == 4 and self._fam == _AF_INET6:
            return errno.ENETUNREACH
        if len(dst) == 4:
            if 224 <= dst[0] < 240 or dst == b"\xff\xff\xff\xff" or dst in stack.core.bcast4:
                return errno.ENETUNREACH  # (Linux: a multicast or broadcast route)
        elif dst[0] == 0xFF:
            return errno.ENETUNREACH  # (tcp_v6_connect: a multicast destination)
        elif dst[0] == 0xFE and dst[1] & 0xC0 == 0x80 and not scope:
            # tcp_v6_connect: a link-local destination needs the interface (the scope id,
            # or SO_BINDTODEVICE)
            if not self._device:
                return errno.EINVAL
            scope = stack.if_nametoindex(self._device.decode())
        timeout = self.gettimeout()
        with stack.lock:
            core = stack.core
            bound_addr, sport = self._bound if self._bound is not None else (None, 0)
            if bound_addr is not None:
                src = unmap(bound_addr)
                if len(src) != len(dst):
                    return errno.EINVAL
            elif len(dst) == 4:
                iface, nexthop = core.ip4.route(dst)
                src = core.ip4.source_for(iface, nexthop)
            else:
                iface, nexthop = core.ip6.route(dst, scope)
                src = core.ip6.source_for(iface, dst)
            now = stack.now()
            conn = tcp.layer.connect(src, dst, port, now, sport,
                                     self._policy() if self._bufs_set or self._overrides
                                     else None)
            if core.loopq:
                core.drain_loopback(now)
            conn.nodelay = self._nodelay  # (_apply_options)
            conn.keepalive = self._keepalive
            if self._reuse or self._v6only:
                conn.bind_flags = self._bind_flags()
            h = StreamHandle(tcp, conn, None, connecting=True)
            # a blocking connect leaves the descriptor unpaired (LAZY_PAIR); a non-blocking
            # one needs it at once (its writability tells the end of the handshake)
            lazy = h.lazy = bool(LAZY_PAIR) and timeout != 0.0 and not self._exposed \
                and self._pid == _Pid.value and self._spare is None
            tcp.by_conn[conn] = h
            self._h = h
            h.app = self._ref
            stack.runtime.flush()
            if lazy:
                if conn.state is not _SYN_SENT or conn.error is not None:
                    h.on_event()  # it connected (loopback) or failed already
                waiting = h.connecting
        if not lazy:
            eng = self._spare
            if eng is not None:  # (connected to the descriptor by a failed connect)
                self._spare = None
            else:
                eng = self._pair()
            with stack.lock:
                h.eng = eng
                h.fd = eng.fileno()
                if self._lowat > 1:
                    h.lowat = min(self._lowat, conn.policy.recv_buffer // 2)
                if self._bufs_set:
                    self._fit_rcvbuf(h)
                if timeout == 0.0:
                    h.junk = self._fill_junk()
                    self._junked = True
                if self._fd_taken:
                    h.expose()
                h.on_event()  # it may have connected (or failed) already
                if timeout == 0.0:
                    self._in_progress = True
                    return errno.EINPROGRESS  # like Linux, even when it is already decided
                waiting = h.connecting
        if waiting and self._pid == _Pid.value:  # (serve_until tells if it may serve inline)
            timeout = self._connect_inline(h, timeout)
        with stack.lock:
            if h.connecting:
                stack.runtime.end_lease()  # the engine brings the handshake: no lease delay
                ok = h.cond.wait_for(lambda: not h.connecting, timeout)
                if not ok:
                    # Linux: the attempt goes on (SS_CONNECTING): poll shows nothing, a new
                    # connect says EALREADY, the first one after the handshake 0
                    self._in_progress = True
                    if h.eng is not None and not self._junked:
                        h.junk = self._fill_junk()  # (unwritable until the handshake ends)
                        self._junked = True
                    raise TimeoutError("timed out")
            if h.connect_error:
                err, h.connect_error = h.connect_error, 0
                # (a blocking connect without a timeout: Linux's socket is unconnected again;
                # with one, Python's connect polls and reads SO_ERROR: still connecting)
                self._refused = timeout is None
                return err
        return 0

    def _unconnect(self) -> None:
        """After a failed connect was reported: make the socket unconnected again, as Linux
        does, so that the next connect starts afresh on the same descriptor (registrations
        made on it stay valid): no handle; a descriptor paired for the failed connect keeps
        its engine end for the next one (``_spare``), the byte that made it readable
        drained; an unpaired one was never connected."""
        stack = self._stack
        with stack.lock:
            h = self._h
            spare = h.spare if h is not None else None
            renew = h is not None and spare is None and h.fd >= 0
            if h is not None:
                h.spare = None
                h.app = None
            self._h = None
        if spare is not None:
            self._drain()
            if self._spare is not None:
                self._spare.close()
            self._spare = spare
        elif renew:
            self._renew_fd()
        self._refused = False
        self._in_progress = False
        self._got = 0
        self._rd_shut = False

    def _renew_fd(self) -> None:
        """The descriptor was paired and its engine end closed (a refused non-blocking
        connect, see StreamHandle._update): an AF_UNIX stream cannot connect twice, so a
        fresh one takes its number (select and poll users go on; an epoll registration
        is lost with the old file), in the socket's blocking mode."""
        fd = _fileno(self)
        if fd < 0:
            return
        fresh = _csocket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            for opt in (_socket.SO_RCVTIMEO, _socket.SO_SNDTIMEO):  # (kept by the descriptor)
                fresh.setsockopt(_socket.SOL_SOCKET, opt, _csocket.socket.getsockopt(
                    self, _socket.SOL_SOCKET, opt, 16))
            os.dup2(fresh.fileno(), fd, inheritable=False)
        finally:
            fresh.close()
        _csocket.socket.settimeout(self, _csocket.socket.gettimeout(self))
        self._junked = False

    def _drain(self) -> None:
        """Read and drop what waits in the descriptor, never waiting (a socket with a timeout
        would poll for its whole timeout in socket.recv first, MSG_DONTWAIT or not)."""
        fd = _fileno(self)
        if fd < 0:
            return
        p = select.poll()
        p.register(fd, select.POLLIN)
        while p.poll(0):
            try:
                if not os.read(fd, 4096):
                    return
            except OSError:
                return

    def _connect_inline(self, h: StreamHandle, timeout: float | None) -> float | None:
        """A blocking connect serves the stack's plugs on its own thread until the handshake
        ends (no hand-off to the engine thread and back); returns what is left of
        ``timeout``.  The wait is cut in short slices: the engine may have taken the answer
        just before this thread started serving (then ``connecting`` changed without any
        input for this thread), and the condition wait that follows covers what is left."""
        runtime = self._stack.runtime
        clock = runtime.clock
        deadline = None if timeout is None else clock() + timeout
        # (an unpaired descriptor reports a hang-up: poll the layer's quiet descriptor)
        fd = self._tcp.quiet if h.lazy else _fileno(self)
        if fd < 0:
            return timeout

        def ready() -> bool:
            return not h.connecting

        while h.connecting:
            until = clock() + CONNECT_SLICE
            if deadline is not None and deadline < until:
                until = deadline
            # (no events asked: the descriptor only reports a hang-up, when the connect failed)
            got = runtime.serve_until(fd, 0, until, ready)
            if got is None or (got and h.connecting):
                break  # cannot serve inline here: the condition wait does it
            if deadline is not None and clock() >= deadline:
                break
        return None if deadline is None else max(0.0, deadline - clock())

    def _pair(self) -> _csocket.socket:
        """Connect the application's own descriptor (the same open socket, so selector and
        epoll registrations made before ``connect`` stay valid, as with a kernel socket) to a
        new engine end, through the layer's abstract AF_UNIX rendezvous listener."""
        eng = self._tcp.pair(self._ensure_fd())
        _bigbuf(self, self._sndbuf)  # (the engine end is sized lazily, see StreamHandle._update)
        return eng

    def _set_lowat(self, n: int) -> None:
        """SO_RCVLOWAT ``n`` (stack lock held): the engine holds received bytes back in the
        connection until ``n`` are there (at most half the receive buffer, so the window
        stays open) or the stream ends or fails, so the descriptor polls readable and a
        read returns only then, as Linux's TCP socket.  A socket with ``n`` > 1 reads
        through its descriptor only: it is paired (now, and at once by a later connect)
        and never reads straight from the connection."""
        self._lowat = n
        if n > 1:
            self._exposed = True  # (a later connect pairs at once)
            self.__dict__["_recv_direct"] = _no_direct  # (no cost for other sockets)
            self._materialize()
        else:
            self.__dict__.pop("_recv_direct", None)
        h = self._h
        if h is not None:
            h.lowat = min(n, h.conn.policy.recv_buffer // 2) if n > 1 else 1
            h.on_event()
            self._tcp.flush(h.conn)
            self._stack.runtime.flush()

    def _materialize(self) -> None:
        """Give an unpaired socket (LAZY_PAIR) its engine end now: connect the descriptor to a
        new one (the same open socket: registrations stay valid) and let the pump carry what
        the connection holds for the application, as for a socket paired from the start."""
        if _fileno(self) < 0:
            self._ensure_fd()  # (also for a socket that is not connected: detach, recvmsg)
        h = self._h
        if h is None or not h.lazy or self._pid != _Pid.value:
            return
        stack = self._stack
        with stack.lock:
            if not h.lazy or stack.closed:
                return
            eng = self._tcp.pair(_fileno(self))
            if h.connecting:  # (a connect whose timeout passed: unwritable until it ends)
                h.junk = self._fill_junk()
                self._junked = True
            else:
                _bigbuf(self, self._sndbuf)
            if h.eof_in:  # shut down for writing while unpaired: the descriptor says so too
                _csocket.socket.shutdown(self, _socket.SHUT_WR)
            h.attach(eng)
            if self._bufs_set:
                self._fit_rcvbuf(h)
            if self._rd_shut:  # ... and for reading
                h.shut_rd()

    def fileno(self) -> int:
        """The descriptor (select, poll, asyncio, ssl, a child process): a real AF_UNIX
        stream whose readiness and bytes are the connection's.  Once taken, it may be used
        behind the object's back, as a kernel socket's: bytes written with ``os.write`` keep
        their place among the object's sends, and O_NONBLOCK set with ``fcntl`` makes the
        (blocking) object's recv and accept fail with EAGAIN instead of waiting."""
        h = self._h
        if h is None:
            if _fileno(self) < 0:
                self._ensure_fd()
            self._exposed = True  # (a registration made now must stay valid: connect pairs)
        elif h.lazy:
            self._materialize()
        elif _fileno(self) < 0:
            self._ensure_fd()  # (a failed connect's socket, never paired)
        self._fd_taken = True
        if h is not None and h.peek is None and h.eng is not None and self._pid == _Pid.value:
            with self._stack.lock:
                h.expose()  # (os.write may now come between two sends: see StreamHandle.peek)
        return _fileno(self)

    def detach(self) -> int:
        """Close the socket object without closing the descriptor, which is returned (paired
        first: it must go on working without this object)."""
        if self._gone:
            raise oserror(errno.EBADF)
        self._materialize()
        stack = self._stack
        with stack.lock:
            # the object lets go of the connection (or listener): its calls now fail with
            # EBADF, as Linux's, and its close leaves the descriptor's connection alone
            self._gone = True
            if self._h is not None and self._h.app is self._ref:
                self._h.app = None
            self._h = None
            self._listen = None
            stack._sockets.discard(self._ref)
        return super().detach()

    def dup(self) -> StreamSocket:
        """A second socket object on the same connection (``socket.dup``): a duplicate of
        the descriptor (paired first) sharing the connection's handle; the connection stays
        open until the last of them is closed, as Linux's.  A listening, connecting or
        unconnected socket: EOPNOTSUPP (the stack's listener and port belong to one
        object)."""
        if self._gone:
            raise oserror(errno.EBADF)
        h = self._h
        if h is None or h.connecting or h.failed or self._listen is not None \
                or self._pid != _Pid.value:
            raise OSError(errno.EOPNOTSUPP,
                          "dup() of an unconnected or listening ioth socket is not supported")
        self._materialize()
        fd = os.dup(_fileno(self))
        try:
            sock = StreamSocket(self._stack, self._fam, _socket.SOCK_STREAM, self._proto,
                                _fileno=fd, _handle=h)
        except BaseException:
            os.close(fd)
            raise
        own = self.__dict__
        for name in _DUP_STATE:
            if name in own:
                sock.__dict__[name] = own[name]
        sock.settimeout(self.gettimeout())
        return sock

    def _fill_junk(self) -> int:
        """Make the application end unwritable until the handshake ends; returns bytes written."""
        fd = _fileno(self)
        _csocket.socket.setsockopt(self, _socket.SOL_SOCKET, _socket.SO_SNDBUF, 1)
        blocking = os.get_blocking(fd)
        os.set_blocking(fd, False)
        total = 0
        junk = b"\0" * 4096
        try:
            while total < 1 << 22:
                total += os.write(fd, junk)
        except BlockingIOError:
            pass
        finally:
            os.set_blocking(fd, blocking)
        return total

    # -- closing ---------------------------------------------------------------------------------
    def _real_close(self, _ss: Any = _csocket.socket) -> None:
        stack = self._stack
        self._gone = True
        if self._pid != _Pid.value:  # a forked child: the stack lives in the parent
            _ss.close(self)
            return
        wake = False
        with stack.lock:
            lh = self._listen
            if lh is not None:
                self._stop_listening(lh)
                # a thread blocked in accept returns (EBADF), as it does from recv: a
                # documented difference (Linux's accept goes on with the next client)
                wake = bool(self._accepting or lh.hold)
            h = self._h
            inline = False
            hold = h.hold if h is not None else 0
            if hold and hold != _get_ident():
                # a thread blocked in recv on this socket: it must return (EBADF, as with a
                # kernel socket), not sit on a descriptor nobody will write to
                assert h is not None
                if h.lazy:
                    self._tcp.kick(hold)
                elif h.eng is not None and not h.eof_out:
                    h.eof_out = True
                    h.wrote += 1
                    try:
                        h.eng.shutdown(_socket.SHUT_WR)
                    except OSError:
                        pass
            if h is not None and h.lazy:
                # unpaired: close the connection itself (unread bytes reset it, like Linux)
                conn = h.conn
                h.app_gone = h.eof_in = True
                if h.connecting:
                    h._teardown()  # a connect waiting in another thread fails: ECONNABORTED
                    conn.abort()
                else:
                    h.lazy = False  # (_teardown: no waiter, no engine end)
                    self._tcp.by_conn.pop(conn, None)
                    if self._linger0:
                        conn.abort()
                    else:
                        try:
                            conn.close()
                        except OSError:
                            pass
                self._tcp.flush(conn)
            elif h is not None:
                if self._linger0 and h.eng is not None:
                    h.conn.abort()
                    self._tcp.flush(h.conn)
                    h._teardown()
                elif h.connecting:
                    h._teardown()  # a connect waiting in another thread fails: ECONNABORTED
                    h.conn.abort()
                    self._tcp.flush(h.conn)
                elif h.eng is not None and not h.eof_in:
                    # serve the close on this thread (below) rather than wake the engine for
                    # the engine end's hang-up: stop the pump from watching it meanwhile
                    inline = h.closing = True
                    if h.events:
                        h.events = 0
                        self._tcp.pump.watch(h.fd, 0, h.on_pump)
            if self._bound is not None:
                self._unbind()
            spare = self._spare
            if h is not None and h.spare is not None:
                h.spare.close()
                h.spare = None
            if spare is not None:
                self._spare = None
                spare.close()
            if h is not None and h.app is self._ref:
                h.app = None
            self._h = None  # (later calls: EBADF; a thread inside one keeps its handle)
            stack._sockets.discard(self._ref)
            if not inline:  # (inline: nothing was queued yet, closed_by_app flushes)
                stack.runtime.flush()
        if wake:  # (the AF_UNIX listening socket: its accept says EINVAL, turned into EBADF)
            try:
                _ss.shutdown(self, _socket.SHUT_RD)
            except OSError:
                pass
        _ss.close(self)
        if inline:
            assert h is not None
            with stack.lock:
                h.closed_by_app()
        if self._linger[0] and h is not None and not self._linger0 and not h.connecting:
            self._linger_wait(h.conn, self._linger[1])

    def __del__(self, _ss: Any = _csocket.socket, _warn: Any = warnings.warn) -> None:
        """Collected without ``close()``: close it as ``close()`` does (the peer gets the
        FIN, or a reset for unread bytes; a listener stops listening; the port is freed),
        with a ResourceWarning, as CPython's finalizer does for a kernel socket.  Every
        reference the stack keeps is weak (:class:`_SockRef`), so the application's last
        reference decides.  In a thread that holds the stack lock (the engine delivering,
        a cyclic collection inside the stack's code) or cannot take it at once, the close
        is left to the engine thread (the object lives until then); at interpreter
        shutdown only the descriptor is closed; a forked child closes its copy only."""
        if self._gone:
            return
        ref = self.__dict__.get("_ref")
        if ref is None:  # (the constructor failed: nothing of the stack's to release)
            if _ss.fileno(self) >= 0:
                _ss.close(self)
            return
        self._closed = True  # (socket.close's mark: file objects are gone too)
        stack = self._stack
        if sys.is_finalizing() or stack.closed:
            self._gone = True
            if _ss.fileno(self) >= 0:
                _ss.close(self)
            return
        try:
            _warn(f"unclosed ioth TCP socket (fd {_ss.fileno(self)})", ResourceWarning,
                  source=self)
        except Exception:  # (warnings as errors: an exception in __del__ is only printed)
            pass
        lock = stack.lock
        if self._pid == _Pid.value and (lock._is_owned() or  # type: ignore[attr-defined]
                                          not lock.acquire(False)):
            try:
                stack.runtime.engine.call_soon_threadsafe(self._real_close)
            except Exception:
                _ss.close(self)
            return
        try:
            self._real_close()
        finally:
            if self._pid == _Pid.value:
                lock.release()
