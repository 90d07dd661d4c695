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
  written through the descriptor waits; a blocking ``recv``/``recv_into`` whose thread serves
  the plugs inline copies straight from the connection's receive queue while nothing waits
  unread in the descriptor (``StreamSocket._recv_direct``): the pair then only carries
  readiness and the bytes of every other reader (select/poll/asyncio, ssl, other processes).
* listening sockets: an AF_UNIX *listening* socket; each connection accepted by the stack is
  connected to it from a new engine end, so the descriptor is readable exactly when ``accept``
  has something and the kernel implements blocking, timeouts and non-blocking accepts.  A
  blocking ``accept`` whose thread serves the plugs inline takes the connections that arrive
  while it waits straight from the stack, on a fresh AF_UNIX pair
  (``StreamSocket._accept_direct``), once nothing waits in the descriptor.
* a non-blocking ``connect`` fills the application end's (shrunken) send buffer with bytes the
  pump discards when the handshake ends, so the descriptor turns writable exactly when the
  connection is established or failed (then ``SO_ERROR`` tells which), as asyncio expects.
"""

from __future__ import annotations

import _socket as _csocket
import errno
import os
import select
import socket as _socket
import struct
import threading
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ioth.sockets.addr import Address, format_address, parse_address
from ioth.sockets.base import (
    SO_REUSEPORT,
    TYPE_MASK,
    IothSocket,
    SocketLayer,
    _Pid,
    layer_for,
    oserror,
)
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
from ioth.stack.tcp.connection import State
from ioth.stack.tcp.layer import BIND_REUSE, BIND_V6ONLY
from ioth.wire.ipv6 import unmap

if TYPE_CHECKING:
    from ioth.stack.stack import Stack
    from ioth.stack.tcp.connection import TcpConnection
    from ioth.stack.tcp.policy import TcpPolicy

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
_TIMEVAL = struct.Struct("@ll")
_DONTWAIT = int(_socket.MSG_DONTWAIT)  # (plain ints: IntFlag operators cost a call each)
_PEEK = int(_socket.MSG_PEEK)
_get_ident = threading.get_ident
_AF_INET = int(_socket.AF_INET)
_AF_INET6 = int(_socket.AF_INET6)
_FAMILIES = {_AF_INET: _socket.AF_INET, _AF_INET6: _socket.AF_INET6}
_fileno = _csocket.socket.fileno  # (the descriptor without StreamSocket.fileno's pairing)


def _pair_before_fork() -> None:
    """os.fork is about to run: give every unpaired socket of this process its AF_UNIX pair."""
    for tcp in list(_Lazy.layers):
        stack = tcp.stack
        if tcp.pid != _Pid.value:
            continue  # (a forked child's copy of its parent's layer: nothing to pair here)
        if stack.closed or not stack.lock.acquire(timeout=2.0):
            continue
        try:
            for s in list(stack._sockets):
                if isinstance(s, StreamSocket):
                    try:
                        s._materialize()
                    except OSError:
                        pass
        finally:
            stack.lock.release()


os.register_at_fork(before=_pair_before_fork)

TCP_CONGESTION = getattr(_socket, "TCP_CONGESTION", 13)
#: TCP socket options that set a keepalive field of the connection's policy
_KEEP_FIELDS = {getattr(_socket, "TCP_KEEPIDLE", 4): "keepidle",
                getattr(_socket, "TCP_KEEPINTVL", 5): "keepintvl",
                getattr(_socket, "TCP_KEEPCNT", 6): "keepcnt"}

class StreamSocket(IothSocket):
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
        policy = tcp.layer.policy  # the stack's defaults until setsockopt says otherwise
        self._nodelay = bool(policy.nodelay)
        self._keepalive = bool(policy.keepalive)
        self._accepted_plain = accepted  # an accepted stream (maybe of another process)
        with stack.lock:
            stack._sockets.add(self)
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
            if self._bound is not None or self._h is not None:
                raise oserror(errno.EINVAL)
            if addr is not None:
                plain = unmap(addr)
                if plain != b"\0" * len(plain) and not self._is_local(plain):
                    raise oserror(errno.EADDRNOTAVAIL)
                if plain == b"\0" * len(plain):
                    addr = None
            if port == 0:
                port = tcp.ephemeral(self, addr)
            elif tcp.in_use(self, addr, port):
                raise oserror(errno.EADDRINUSE)
            self._bound = (addr, port)
            tcp.bound.setdefault(port, []).append(self)

    def _is_local(self, addr: bytes) -> bool:
        core = self._stack.core
        if len(addr) == 4:
            return addr in core.local4
        return bool(core.ip6.is_local(addr))

    def _unbind(self) -> None:
        if self._bound is None:
            return
        lst = self._tcp.bound.get(self._bound[1])
        if lst and self in lst:
            lst.remove(self)
            if not lst:
                del self._tcp.bound[self._bound[1]]

    def getsockname(self) -> Address:
        """Local (address, port)."""
        if self._gone:
            raise oserror(errno.EBADF)
        h = self._h
        if h is not None:
            return format_address(self._fam, h.conn.local[0], h.conn.local[1])
        if self._bound is not None:
            return format_address(self.family, self._bound[0], self._bound[1])
        return format_address(self.family, None, 0)

    def getpeername(self) -> Address:
        """The peer's (address, port); ENOTCONN before the connection is established."""
        h = self._h
        if h is None or h.connecting or h.failed or h.conn.state is _CLOSED:
            # (closed by a reset, say: Linux's TCP_CLOSE)
            raise oserror(errno.EBADF if self._gone else errno.ENOTCONN)
        return format_address(self._fam, h.conn.remote[0], h.conn.remote[1])

    # -- passive open ----------------------------------------------------------------------------
    def listen(self, backlog: int = 128) -> None:
        """Listen; the descriptor turns readable when connections wait for :meth:`accept`."""
        if self._gone:
            raise oserror(errno.EBADF)
        if self._h is not None:
            raise oserror(errno.EINVAL)
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
            if listener is not None:
                if lh is None or v in lh.sinks or (
                        4 in lh.sinks and v == 6 and not self._v6only) or (
                        6 in lh.sinks and v == 4 and not lh.sinks[6][1]):
                    raise oserror(errno.EADDRINUSE)
            else:
                # Linux's accept queue holds backlog + 1 (sk_acceptq_is_full: ">"); the
                # layer's backlog is its capacity
                listener = layer.listen(port, key_addr, backlog + 1, self._policy())
                listener.bind_flags = self._bind_flags()
                lh = ListenHandle(tcp, listener)
                tcp.by_listener[listener] = lh
            assert lh is not None
            lh.sinks[v] = (name, self._v6only)
            lh.inodes[v] = ino
            self._listen = lh
            lh.on_event()
            stack.runtime.flush()

    def _accept(self) -> tuple[int, Any]:
        if self._listen is None:
            raise oserror(errno.EBADF if self._gone else errno.EINVAL)
        if self._pid == _Pid.value and self.gettimeout() != 0:
            self._serve_inline()
        return _csocket.socket._accept(self)  # type: ignore[attr-defined, no-any-return]

    def accept(self) -> tuple[StreamSocket, Address]:
        """Wait for a connection (honours timeouts and non-blocking mode like the kernel)."""
        lh = self._listen
        if DIRECT_ACCEPT and lh is not None and self._pid == _Pid.value:
            timeout = self.gettimeout()
            if timeout != 0 and self._stack.runtime.can_serve():
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
        if h is None:  # accepted in another process (a pre-forked worker): a plain stream
            return sock, format_address(self.family, None, 0)
        sock._h = h
        if _socket.getdefaulttimeout() is None and self.gettimeout():
            sock.setblocking(True)
        conn = h.conn
        return sock, format_address(self._fam, conn.remote[0], conn.remote[1])

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
        if not h.lazy:
            h.on_event()  # what arrived already goes to the descriptor (select, other readers)
        if _socket.getdefaulttimeout() is None and self.gettimeout():
            sock.setblocking(True)
        return sock, format_address(self._fam, conn.remote[0], conn.remote[1])

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
            return errno.EINVAL
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
                    return err or errno.ECONNABORTED
                self._unconnect()  # unconnected: a new connect starts afresh
            elif h.connect_error:
                with stack.lock:
                    err, h.connect_error = h.connect_error, 0
                return err
            else:
                return errno.EISCONN
        dst, port, scope = parse_address(stack, self._fam, address)
        assert dst is not None
        dst = unmap(dst)
        if self._v6only and len(dst) == 4 and self._fam == _AF_INET6:
            return errno.ENETUNREACH
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
                if timeout == 0.0:
                    h.junk = self._fill_junk()
                    self._junked = True
                h.on_event()  # it may have connected (or failed) already
                if timeout == 0.0:
                    return errno.EINPROGRESS  # like Linux, even when it is already decided
                waiting = h.connecting
        if waiting and self._pid == _Pid.value:  # (serve_until tells if it may serve inline)
            timeout = self._connect_inline(h, timeout)
        with stack.lock:
            if h.connecting:
                stack.runtime.end_lease()  # the engine brings the handshake: no lease delay
                ok = h.cond.wait_for(lambda: not h.connecting, timeout)
                if not ok:
                    h.connecting = False
                    conn.abort()
                    tcp.flush(conn)
                    h._teardown()
                    stack.runtime.flush()
                    self._h = None
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
            if h is not None:
                h.spare = None
            self._h = None
        if spare is not None:
            self._drain()
            if self._spare is not None:
                self._spare.close()
            self._spare = spare
        self._refused = False
        self._got = 0
        self._rd_shut = False

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
        _bigbuf(self)  # (the engine end is sized lazily, see StreamHandle._update)
        return eng

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
            _bigbuf(self)
            if h.eof_in:  # shut down for writing while unpaired: the descriptor says so too
                _csocket.socket.shutdown(self, _socket.SHUT_WR)
            h.attach(eng)
            if self._rd_shut:  # ... and for reading
                h.shut_rd()

    def fileno(self) -> int:
        """The descriptor (select, poll, asyncio, ssl, a child process): a real AF_UNIX
        stream whose readiness and bytes are the connection's."""
        h = self._h
        if h is None:
            if _fileno(self) < 0:
                self._ensure_fd()
            self._exposed = True  # (a registration made now must stay valid: connect pairs)
        elif h.lazy:
            self._materialize()
        elif _fileno(self) < 0:
            self._ensure_fd()  # (a failed connect's socket, never paired)
        return _fileno(self)

    def detach(self) -> int:
        """Close the socket object without closing the descriptor, which is returned (paired
        first: it must go on working without this object)."""
        if self._gone:
            raise oserror(errno.EBADF)
        self._materialize()
        return super().detach()

    def _before_recvmsg(self) -> bool:
        """recvmsg/recvmsg_into's checks; True: the connection failed (its error raised, or
        end of stream), else the descriptor is paired and ready to read."""
        if self._gone:
            raise oserror(errno.EBADF)
        h = self._h
        if h is None and self._accepted_plain is False:
            raise oserror(errno.ENOTCONN)  # (as recv: unconnected, Linux)
        if h is not None and h.failed:
            self._failed_io(h)
            return True
        self._materialize()
        return False

    def recvmsg(self, bufsize: int, ancbufsize: int = 0,
                flags: int = 0) -> tuple[bytes, list[tuple[int, int, bytes]], int, Any]:
        """Receive through the descriptor."""
        if self._before_recvmsg():
            return b"", [], 0, None
        return super().recvmsg(bufsize, ancbufsize, flags)

    def recvmsg_into(self, buffers: Any, ancbufsize: int = 0,
                     flags: int = 0) -> tuple[int, list[tuple[int, int, bytes]], int, Any]:
        """Receive through the descriptor."""
        if self._before_recvmsg():
            return 0, [], 0, None
        return super().recvmsg_into(buffers, ancbufsize, flags)

    def _failed_io(self, h: StreamHandle, write: bool = False) -> None:
        """A read or write after a failed connect: the connect's error if nobody took it
        yet, then (a write) EPIPE; a read returns end of stream, or ENOTCONN once the socket
        is unconnected again (Linux; the descriptor itself is no guide here: it may hold the
        engine end kept for the next connect)."""
        with self._stack.lock:
            err, h.connect_error = h.connect_error, 0
        if err:
            raise oserror(err)
        if write:
            raise oserror(errno.EPIPE)
        if self._refused:  # (unconnected again: Linux's tcp_disconnect cleared SOCK_DONE)
            raise oserror(errno.ENOTCONN)

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

    def _unjunk(self) -> None:
        """Give the application end its big send buffer back once the handshake ended."""
        h = self._h
        if h is not None and not h.connecting:
            self._junked = False
            _bigbuf(self)

    # -- data ------------------------------------------------------------------------------------
    def _pending_error(self) -> int:
        h = self._h
        if h is None or not h.error or h.connecting:
            return 0
        with self._stack.lock:
            err, h.error = h.error, 0
        return err

    def _read_limit(self, timeout: float | None) -> float | None:
        """How long a blocking read may wait: the socket's timeout, or for a socket without
        one its SO_RCVTIMEO (as the kernel, which then fails with EAGAIN: see _expired)."""
        if timeout is None and self._rcvtimeo:
            return self._rcvtimeo
        return timeout

    def _expired(self) -> OSError:
        """The error of a read whose wait ran out (TimeoutError, or EAGAIN for SO_RCVTIMEO)."""
        if self.gettimeout() is None and self._rcvtimeo:
            return BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))
        return TimeoutError("timed out")

    def _serve_inline(self, h: StreamHandle | None = None) -> None:
        """About to block until the descriptor is readable: serve the stack's input on this
        thread meanwhile (run to completion, see StackRuntime.serve_until); TimeoutError when
        the socket's timeout passes first (EAGAIN for SO_RCVTIMEO).  With the connection's
        handle ``h``, a write into its engine end made while this thread serves ends the wait
        without a poll."""
        runtime = self._stack.runtime
        timeout = self._read_limit(self.gettimeout())
        deadline = None if timeout is None else runtime.clock() + timeout
        ready = None
        if h is not None:
            seen = h.wrote
            conn = h.conn

            def ready() -> bool:
                return h.wrote != seen or conn.recv_available > 0

        fd = _fileno(self)
        if fd < 0:  # (closed by another thread meanwhile)
            raise oserror(errno.EBADF)
        if runtime.serve_until(fd, select.POLLIN, deadline, ready) is False:
            raise self._expired()

    def _take(self, h: StreamHandle, buffer: Any, size: int) -> Any:
        """Stack lock held: up to ``size`` bytes straight from the connection (into
        ``buffer`` when given: returns the count), or None when bytes still wait in the
        descriptor (they come first) or the connection has none."""
        conn = h.conn
        if h.out or h.wrote != self._got or (h.eng is None and not h.lazy) \
                or not conn.recv_available:
            return None
        if buffer is None:
            got: Any = conn.recv(size)
        else:
            view = memoryview(buffer).cast("B")
            got = conn.recv_into(view[:size] if size else view)
        self._tcp.direct_reads += 1
        if conn.poll_at() == 0.0:  # a window update to send
            self._tcp.flush(conn)
            self._stack.runtime.flush()
        if not h.lazy and (conn.recv_available or conn.error is not None or conn.eof
                           or conn.state is _CLOSED):
            # the rest goes to the descriptor (readiness for others), and the end of stream
            # or error that the taken bytes were hiding is served now
            h.on_event()
            self._stack.runtime.flush()
        return got

    def _recv_direct(self, h: StreamHandle, buffer: Any, size: int) -> Any:
        """Copy-free receive of a blocking read that may serve the plugs inline: bytes
        straight from the connection's receive queue while nothing waits unread in the
        descriptor (which stays for readiness: select, poll, asyncio, ssl, other processes).
        Waits (serving the plugs) when nothing is queued at all.  None: read the descriptor."""
        lock = self._stack.lock
        me = _get_ident()
        with lock:
            if h.out or h.wrote != self._got or h.eng is None:
                return None  # bytes wait in the descriptor: they come first
            if h.conn.recv_available or h.hold:  # (another thread holds: use the descriptor)
                return self._take(h, buffer, size)
            h.hold = me
        try:
            self._serve_inline(h)
        except BaseException:
            with lock:
                if h.hold == me:
                    h.hold = 0
                if h.conn.recv_available:
                    h.on_event()
                    self._stack.runtime.flush()
            raise
        with lock:
            if h.hold == me:
                h.hold = 0
            got = self._take(h, buffer, size)
            if got is None and h.conn.recv_available:
                h.on_event()
                self._stack.runtime.flush()
        return got

    def _recv_lazy(self, h: StreamHandle, buffer: Any, size: int,
                   timeout: float | None) -> Any:
        """A blocking read of an unpaired socket (LAZY_PAIR): bytes straight from the
        connection, waiting for them (serving the plugs inline) when none are queued; b""
        (0 with ``buffer``) at the end of the stream.  None: use the descriptor (paired
        meanwhile, an error or a reset to report, no inline serving possible)."""
        stack = self._stack
        lock = stack.lock
        runtime = stack.runtime
        conn = h.conn
        deadline = None

        def ready() -> bool:
            return conn.recv_available > 0 or conn.eof or conn.error is not None \
                or conn.state is _CLOSED or not h.lazy

        tcp = self._tcp
        me = _get_ident()
        while True:
            with lock:
                if stack.closed or self._rd_shut:
                    return b"" if buffer is None else 0
                if not h.lazy:
                    return None
                if conn.recv_available:
                    return self._take(h, buffer, size)
                if conn.error is not None or conn.state is _CLOSED:
                    return None  # (the pair reports it, as for a paired socket)
                if conn.eof:
                    return b"" if buffer is None else 0
                quiet = tcp.quiet
                if quiet < 0 or tcp.quiet_closing:
                    return b"" if buffer is None else 0
                if h.hold:
                    return None  # (another thread waits on it: this one uses the pair)
                # from here on a change made by another thread kicks this one (notify), also
                # one made between this look and the poll below
                h.hold = me
                tcp.quiet_users += 1
            got: bool | None = None
            try:
                if deadline is None:
                    limit = timeout if timeout is not None or not self._rcvtimeo \
                        else self._rcvtimeo  # (_read_limit)
                    if limit is not None:
                        deadline = runtime.clock() + limit
                got = runtime.serve_until(quiet, select.POLLIN, deadline, ready)
            finally:
                with lock:
                    if h.hold == me:
                        h.hold = 0
                    tcp.quiet_users -= 1
                    if tcp.quiet_closing:
                        tcp.quiet_done()
                    elif tcp.kicked:  # (its own kick only: see TcpSockets.kick)
                        tcp.unkick(me)
            if got is None:
                return None
            if got is False:
                raise self._expired()

    def _read_shut(self, buffer: Any, size: int, flags: int) -> Any:
        """A read after shutdown(SHUT_RD): what is queued, the descriptor's bytes first, then
        the connection's (bytes keep arriving there), never waiting; b"" (0) when nothing is
        (Linux: SHUT_RD only makes an empty read return at once)."""
        h = self._h
        if h is None or not h.lazy:
            try:
                if buffer is None:
                    data = _csocket.socket.recv(self, size, flags | _DONTWAIT)
                    if data:
                        if not flags & _PEEK:
                            self._got += len(data)
                        return data
                else:
                    n = _csocket.socket.recv_into(self, buffer, size, flags | _DONTWAIT)
                    if n:
                        if not flags & _PEEK:
                            self._got += n
                        return n
            except OSError:  # (EAGAIN; a never-paired or dead descriptor)
                pass
        if h is not None and not flags and size >= 0 and self._pid == _Pid.value:
            with self._stack.lock:
                conn = h.conn
                if conn.recv_available and (h.lazy or h.rd_shut):
                    if buffer is None:
                        got: Any = conn.recv(size)
                    else:
                        view = memoryview(buffer).cast("B")
                        got = conn.recv_into(view[:size] if size else view)
                    if conn.poll_at() == 0.0:  # a window update to send
                        self._tcp.flush(conn)
                        self._stack.runtime.flush()
                    return got
        return b"" if buffer is None else 0

    def _inline_ok(self, timeout: float | None, flags: int) -> bool:
        """May a blocking read of this thread serve the stack's plugs while it waits?"""
        return timeout != 0 and (not flags or (timeout is None and not flags & _DONTWAIT)) \
            and self._pid == _Pid.value and self._stack.runtime.can_serve()

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """Receive up to ``bufsize`` bytes; b"" at end of stream; ECONNRESET after a reset."""
        h = self._h
        if h is None and self._accepted_plain is False:
            raise oserror(errno.EBADF if self._gone else errno.ENOTCONN)
        if h is not None and h.failed:
            self._failed_io(h)
            return b""
        if self._rd_shut:
            got: bytes = self._read_shut(None, bufsize, flags)
            return got
        timeout = self.gettimeout()
        if h is not None and h.lazy:
            # (serve_until tells whether this thread may serve the plugs: _inline_ok's
            # can_serve is not asked first, so queued bytes are taken even when it may not)
            if not flags and bufsize > 0 and timeout != 0 and self._pid == _Pid.value:
                lazy: bytes | None = self._recv_lazy(h, None, bufsize, timeout)
                if lazy is not None:
                    return lazy
            self._materialize()
        if self._inline_ok(timeout, flags):
            if h is not None and not flags and bufsize > 0:
                direct: bytes | None = self._recv_direct(h, None, bufsize)
                if direct is not None:
                    return direct
            data: bytes | None = None
            if h is None or h.wrote != self._got:
                # bytes may wait unread: a first attempt that does not block (a socket with a
                # timeout has a non-blocking descriptor, and socket.recv would poll first:
                # plain read)
                try:
                    if timeout is None:
                        data = _csocket.socket.recv(self, bufsize, flags | _DONTWAIT)
                    else:
                        data = os.read(_fileno(self), bufsize)
                except BlockingIOError:
                    pass
            if data is None:  # (the wait polls the descriptor first: no read needed)
                self._serve_inline(h)
                data = super().recv(bufsize, flags)
        else:
            data = super().recv(bufsize, flags)
        if not flags & _PEEK:
            self._got += len(data)
        if not data and bufsize:
            err = self._pending_error()
            if err:
                raise oserror(err)
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """Receive into ``buffer``; 0 at end of stream."""
        h = self._h
        if h is None and self._accepted_plain is False:
            raise oserror(errno.EBADF if self._gone else errno.ENOTCONN)
        if h is not None and h.failed:
            self._failed_io(h)
            return 0
        if self._rd_shut:
            n: int = self._read_shut(buffer, nbytes, flags)
            return n
        timeout = self.gettimeout()
        mv = memoryview(buffer)
        if mv.readonly or not mv.c_contiguous or not 0 <= nbytes <= mv.nbytes:
            self._materialize()
            n = super().recv_into(buffer, nbytes, flags)  # (or raises the kernel's error)
            if not flags & _PEEK:
                self._got += n
            return n
        if h is not None and h.lazy:
            if not flags and (nbytes or mv.nbytes) and timeout != 0 \
                    and self._pid == _Pid.value:
                lazy: int | None = self._recv_lazy(h, buffer, nbytes, timeout)
                if lazy is not None:
                    return lazy
            self._materialize()
        if self._inline_ok(timeout, flags):
            if h is not None and not flags and (nbytes or mv.nbytes):
                got: int | None = self._recv_direct(h, buffer, nbytes)
                if got is not None:
                    return got
            n = -1
            if h is None or h.wrote != self._got:  # a first attempt that does not block
                try:
                    if timeout is None:
                        n = _csocket.socket.recv_into(self, buffer, nbytes, flags | _DONTWAIT)
                    else:
                        view = memoryview(buffer).cast("B")
                        n = os.readv(_fileno(self), [view[:nbytes] if nbytes else view])
                except BlockingIOError:
                    pass
            if n < 0:
                self._serve_inline(h)
                n = super().recv_into(buffer, nbytes, flags)
        else:
            n = super().recv_into(buffer, nbytes, flags)
        if not flags & _PEEK:
            self._got += n
        if not n and (nbytes or len(memoryview(buffer))):
            err = self._pending_error()
            if err:
                raise oserror(err)
        return n

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, None]:
        """Like :meth:`recv`; the address is None for a stream."""
        return self.recv(bufsize, flags), None

    def recvfrom_into(self, buffer: Any, nbytes: int = 0,
                      flags: int = 0) -> tuple[int, None]:
        """Like :meth:`recv_into`; the address is None for a stream."""
        return self.recv_into(buffer, nbytes, flags), None

    def _direct(self, data: Any) -> int:
        h = self._h
        if h is None or (h.eng is None and not h.lazy) or self._junked \
                or self._pid != _Pid.value:
            return 0  # (in a forked child the stack and its lock belong to the parent)
        view = memoryview(data).cast("B")
        with self._stack.lock:
            return h.direct_send(view)

    def _mark_dirty(self) -> None:
        """Bytes went through the descriptor: direct sends must drain the engine end first.

        Always under the lock, even when ``dirty`` already looks set: the engine thread may be
        between draining the engine end and clearing ``dirty`` (``on_pump``), and these bytes
        arrived after its drain; an unlocked "already set" test would let the next direct send
        overtake them."""
        h = self._h
        if h is not None and self._pid == _Pid.value:
            with self._stack.lock:
                h.dirty = True

    def send(self, data: Any, flags: int = 0) -> int:
        """Send some of ``data``; EPIPE after shutdown, the connection's error after a reset."""
        if self._h is None and self._accepted_plain is False:
            raise oserror(errno.EBADF if self._gone else errno.EPIPE)
        if self._h is not None and self._h.failed:
            self._failed_io(self._h, True)
        if self._junked:
            self._unjunk()
        if not flags:
            n = self._direct(data)
            if n:
                return n
        self._materialize()
        if self._pid == _Pid.value:  # (a forked child must not touch the parent's runtime)
            self._stack.runtime.end_lease()  # the engine pumps the descriptor (may wait for ACKs)
        try:
            n = super().send(data, flags)
        except BrokenPipeError:
            err = self._pending_error()
            if err:
                raise oserror(err) from None
            raise
        self._mark_dirty()
        return n

    def sendmsg(self, buffers: Any, ancdata: Any = (), flags: int = 0,
                address: Any = None) -> int:
        """Send through the descriptor."""
        if self._gone:
            raise oserror(errno.EBADF)
        if self._h is None and self._accepted_plain is False:
            raise oserror(errno.EPIPE)  # (as send: unconnected, Linux)
        if self._h is not None and self._h.failed:
            self._failed_io(self._h, True)
        self._materialize()
        try:
            if address is None:
                return super().sendmsg(buffers, ancdata, flags)
            return super().sendmsg(buffers, ancdata, flags, address)
        finally:
            self._mark_dirty()

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        """Send a file's bytes through the descriptor (``os.sendfile``)."""
        if self._gone:
            raise oserror(errno.EBADF)
        if self._h is not None and self._h.failed:
            self._failed_io(self._h, True)
        self._materialize()
        try:
            return super().sendfile(file, offset, count)
        finally:
            self._mark_dirty()

    def sendall(self, data: Any, flags: int = 0) -> None:
        """Send all of ``data`` (honours the socket's timeout)."""
        if self._h is None and self._accepted_plain is False:
            raise oserror(errno.EBADF if self._gone else errno.EPIPE)
        if self._h is not None and self._h.failed:
            self._failed_io(self._h, True)
        if self._junked:
            self._unjunk()
        h = self._h
        if not flags and h is not None and (h.eng is not None or h.lazy) \
                and self._pid == _Pid.value:  # (_direct inlined)
            view = memoryview(data).cast("B")
            with self._stack.lock:
                n = h.direct_send(view)
            if n:
                if n == len(view):
                    return
                data = view[n:]
        self._materialize()
        if self._pid == _Pid.value:  # (a forked child must not touch the parent's runtime)
            self._stack.runtime.end_lease()  # the engine pumps the descriptor (may wait for ACKs)
        try:
            super().sendall(data, flags)
        except BrokenPipeError:
            err = self._pending_error()
            if err:
                raise oserror(err) from None
            raise
        finally:
            self._mark_dirty()

    def sendto(self, data: Any, flags_or_addr: Any, address: Any = None) -> int:
        """On a connected stream the address is ignored (EISCONN if it differs is not checked)."""
        flags = flags_or_addr if address is not None else 0
        return self.send(data, flags)

    def shutdown(self, how: int) -> None:
        """Half-close: SHUT_WR sends FIN after the queued data; SHUT_RD stops reading."""
        if self._h is None:
            raise oserror(errno.EBADF if self._gone else errno.ENOTCONN)
        if how not in (_socket.SHUT_RD, _socket.SHUT_WR, _socket.SHUT_RDWR):
            raise oserror(errno.EINVAL)
        if not self._h.connecting and self._h.conn.state is _CLOSED:
            # reset, refused or fully closed: Linux's inet_shutdown in TCP_CLOSE
            raise oserror(errno.ENOTCONN)
        if how != _socket.SHUT_WR:
            # SHUT_RD of the AF_UNIX end would make the pump's writes fail (and reset the
            # connection); Linux only stops returning data, so reads end here instead.
            self._rd_shut = True
            h = self._h
            if self._pid == _Pid.value:
                with self._stack.lock:  # a reader blocked on the socket returns b"" (Linux)
                    if h.lazy:
                        if h.hold and h.hold != _get_ident():
                            self._tcp.kick(h.hold)
                    else:
                        h.shut_rd()
        if how != _socket.SHUT_RD:
            h = self._h
            if h.lazy and not h.connecting and self._pid == _Pid.value:
                stack = self._stack
                with stack.lock:
                    if h.lazy:  # unpaired: the FIN goes straight into the connection
                        if not h.eof_in:
                            h.eof_in = True  # (later sends: EPIPE, see _materialize)
                            h.conn.shutdown()
                            self._tcp.flush(h.conn)
                            stack.runtime.flush()
                        return
            self._materialize()
            super().shutdown(_socket.SHUT_WR)
            if h.eng is not None and self._pid == _Pid.value:
                with self._stack.lock:
                    h.dirty = True  # (a direct send reads the end of stream first: EPIPE)

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

    # -- closing ---------------------------------------------------------------------------------
    def _real_close(self, _ss: Any = _csocket.socket) -> None:
        stack = self._stack
        self._gone = True
        if self._pid != _Pid.value:  # a forked child: the stack lives in the parent
            _ss.close(self)
            return
        with stack.lock:
            lh = self._listen
            if lh is not None:
                self._listen = None
                lh.sinks.pop(self._v(), None)
                if not lh.sinks:
                    self._tcp.by_listener.pop(lh.listener, None)
                    self._tcp.layer.close_listener(lh.listener, stack.now())
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
            self._h = None  # (later calls: EBADF; a thread inside one keeps its handle)
            stack._sockets.discard(self)
            if not inline:  # (inline: nothing was queued yet, closed_by_app flushes)
                stack.runtime.flush()
        _ss.close(self)
        if inline:
            assert h is not None
            with stack.lock:
                h.closed_by_app()
