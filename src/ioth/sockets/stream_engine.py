"""The engine side of TCP sockets (see :mod:`ioth.sockets.stream` for the design).

:class:`TcpSockets` is the TCP part of one stack's socket layer: the handles by connection and
listener, the bound ports, the deferred delivery of changes to application threads, the
rendezvous listener that pairs descriptors, and the ``quiet`` eventfd that threads waiting on
unpaired sockets poll.  :class:`StreamHandle` moves a connection's bytes, end of stream and
errors between the :class:`~ioth.stack.tcp.connection.TcpConnection` and the engine end of the
application's AF_UNIX pair; :class:`ListenHandle` connects the stack's accepted connections to
the application's AF_UNIX listening socket.  Every method runs with the stack lock held unless
its docstring says otherwise.

Knobs (module attributes, read at each use: tests and ``BENCH_TCP_TWEAK`` set them here):
``CHUNK``, ``BUF``, ``MAX_ROUNDS``, ``ACCEPT_RETRY``, ``EPHEMERAL_LOW``/``EPHEMERAL_HIGH`` and
``NOTIFY_FAST``.  The application-side knobs (``LAZY_PAIR``, ``LAZY_FD``, ``DIRECT_ACCEPT``,
``CONNECT_SLICE``) are in :mod:`ioth.sockets.stream`, which reads them.
"""

from __future__ import annotations

import _socket as _csocket
import errno
import itertools
import os
import select
import socket as _socket
import struct
import threading
import weakref
from typing import TYPE_CHECKING, Any

from ioth.sockets.base import _Pid, oserror
from ioth.sockets.pump import ERR, HUP, IN, OUT, Pump
from ioth.stack.tcp.connection import State
from ioth.stack.tcp.layer import BIND_REUSE, BIND_REUSEPORT, BIND_TW, BIND_V6ONLY
from ioth.wire.ipv6 import unmap

if TYPE_CHECKING:
    from ioth.sockets.stream import StreamSocket
    from ioth.stack.stack import Stack
    from ioth.stack.tcp.connection import TcpConnection
    from ioth.stack.tcp.layer import Listener, TcpLayer

CHUNK = 1 << 18
BUF = 1 << 20
MAX_ROUNDS = 8
EPHEMERAL_LOW = 32768
EPHEMERAL_HIGH = 60999
ACCEPT_RETRY = 0.02
#: 1: TcpSockets.notify updates the engine end's interest itself when nothing else can have
#: changed for the socket (no bytes to move, no error, no end of stream), instead of running
#: StreamHandle.on_event/_update; 0: always through them
NOTIFY_FAST = 1
SO_SNDBUFFORCE = getattr(_socket, "SO_SNDBUFFORCE", 32)
SO_RCVBUFFORCE = getattr(_socket, "SO_RCVBUFFORCE", 33)
_CONNECTED = frozenset({State.ESTABLISHED, State.CLOSE_WAIT, State.FIN_WAIT_1, State.FIN_WAIT_2,
                        State.CLOSING, State.LAST_ACK, State.TIME_WAIT})
_CLOSED = State.CLOSED
# the peer's FIN has arrived (what is queued before it is all the stream has left)
_FIN_IN = frozenset({State.CLOSE_WAIT, State.LAST_ACK, State.CLOSING, State.TIME_WAIT,
                     State.CLOSED})
_NAME = struct.Struct("<BIQ")
_DONTWAIT = int(_socket.MSG_DONTWAIT)  # (plain ints: IntFlag operators cost a call each)
_OOB = int(_socket.MSG_OOB)
_get_ident = threading.get_ident
_AF_INET = int(_socket.AF_INET)
_AF_INET6 = int(_socket.AF_INET6)


class _Lazy:
    """The TCP socket layers of this process that may hold sockets without their AF_UNIX pair
    (see LAZY_PAIR): a fork makes their pairs first, so that a child inherits working
    descriptors."""

    layers: weakref.WeakSet[TcpSockets] = weakref.WeakSet()


def _bigbuf(s: Any, size: int = BUF) -> None:
    """A big send buffer for one end of an AF_UNIX stream (the sender's buffer is what limits
    an AF_UNIX stream: the receive buffer size is not used); ``size``: the application end of
    a socket whose SO_SNDBUF was set (what it may queue is bounded as on Linux)."""
    try:
        _csocket.socket.setsockopt(s, _socket.SOL_SOCKET, SO_SNDBUFFORCE, size)
    except OSError:
        try:
            _csocket.socket.setsockopt(s, _socket.SOL_SOCKET, _socket.SO_SNDBUF, size)
        except OSError:
            pass


def _nowait(eng: _csocket.socket) -> None:
    """An engine end never waits: every call on it says MSG_DONTWAIT, so a blocking
    descriptor needs no O_NONBLOCK (one ioctl less per connection); only a socket object
    with a timeout (socket.setdefaulttimeout) would wait in Python first: it gets none."""
    if eng.gettimeout() is not None:
        eng.setblocking(False)


def _unix(fd: int) -> _csocket.socket:
    """An AF_UNIX view of descriptor ``fd`` (detach it, do not close it).  Made with
    SOCK_NONBLOCK in its type, which gives the object a zero timeout without touching the
    descriptor: under socket.setdefaulttimeout() the constructor would otherwise set
    O_NONBLOCK on ``fd``, that is on the open file the application's socket shares (its
    blocking socket would turn non-blocking); the view's calls act as the descriptor's own
    mode says (connect and listen are all it is used for)."""
    return _csocket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_NONBLOCK, 0, fd)


def tcp_layer(stack: Stack) -> TcpLayer:
    """The stack's TCP layer; OSError(EPROTONOSUPPORT) while the stack has none."""
    tcp = getattr(stack.core, "tcp", None)
    if tcp is None:
        raise oserror(errno.EPROTONOSUPPORT, "this ioth stack has no TCP yet")
    return tcp  # type: ignore[no-any-return]


class TcpSockets:
    """TCP side of a stack's socket layer: handles by connection and listener, bound ports."""

    def __init__(self, stack: Stack, pump: Pump) -> None:
        self.stack = stack
        self.pump = pump
        self.layer = tcp_layer(stack)
        self.by_conn: dict[TcpConnection, StreamHandle] = {}
        self.by_listener: dict[Listener, ListenHandle] = {}
        self.pending: dict[bytes, StreamHandle] = {}
        # the sockets bound to each port (weak references: see stream._SockRef)
        self.bound: dict[int, list[weakref.ref[StreamSocket]]] = {}
        self.engine = stack.runtime.engine
        self.clock = stack.runtime.clock
        self.core = stack.core
        # handles whose connection changed while the engine thread held the stack lock: served
        # by _deliver once that lock is released, so an application thread woken by the
        # AF_UNIX write finds the lock free (no futex wait, no GIL ping-pong)
        self.deferred: dict[StreamHandle, None] = {}
        self.deliver_armed = False
        self.delivering = False
        # engine-end names: b"\0" + pid + a counter from a random start (13 bytes: accept on
        # a socket object of family AF_INET reports at most 14 bytes of an AF_UNIX path)
        self._names = itertools.count(int.from_bytes(os.urandom(6), "little"))
        self.deferred_listeners: dict[ListenHandle, None] = {}
        self.direct_reads = 0  # reads served straight from a connection (StreamSocket._take)
        # the listener that connects an application descriptor to its engine end (see pair)
        self._rdv: _csocket.socket | None = None
        self._rdv_name: Any = ""
        self._rdv_pid = 0
        self._rdv_lock = threading.Lock()
        # what a thread serving the plugs inline polls while it waits on an unpaired socket
        # (its own descriptor, unconnected, reports a hang-up): readable when another thread
        # changed that socket's connection (kick) and once the stack closes
        self.quiet = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        # the readers kicked and not yet out of their wait (thread idents): the eventfd is
        # readable while there is one; each reader consumes only its own kick (another
        # reader woken by the same eventfd must leave it readable for the others)
        self.kicked: set[int] = set()
        # threads inside a wait that polls ``quiet``: the stack's close leaves it open (and
        # readable) until the last one is out, so that none polls a number reused meanwhile
        self.quiet_users = 0
        self.quiet_closing = False
        self.pid = _Pid.value
        _Lazy.layers.add(self)
        self._chained = self.layer.notify
        self.layer.notify = self.notify
        stack.runtime.after_batch.append(self.deliver)
        stack._sockets.add(self)  # Stack.close() calls close()

    def close(self) -> None:
        """The stack is closing: release every engine end (stack lock held)."""
        if self.pid != _Pid.value:
            # a forked child closing its copy: its descriptors only (the pump's epoll set and
            # the quiet eventfd are the parent's files too: no epoll_ctl, no wake-up)
            for h in list(self.by_conn.values()) + list(self.pending.values()):
                if h.eng is not None:
                    h.eng.close()
                    h.eng = None
            if self._rdv is not None:
                self._rdv.close()
                self._rdv = None
            if self.quiet >= 0:
                os.close(self.quiet)
                self.quiet = -1
        for h in list(self.by_conn.values()):
            h._teardown()
        for h in list(self.pending.values()):
            h._teardown()
        self.by_conn.clear()
        self.pending.clear()
        self.by_listener.clear()
        self.deferred.clear()
        self.deferred_listeners.clear()
        if self._rdv is not None:
            with self._rdv_lock:
                if self._rdv is not None:
                    self._rdv.close()
                    self._rdv = None
        if self.quiet >= 0 and not self.quiet_closing:
            os.eventfd_write(self.quiet, 1)  # wakes the threads that wait on unpaired sockets
            self.quiet_closing = True
            self.quiet_done()
        _Lazy.layers.discard(self)
        hooks = self.stack.runtime.after_batch
        if self.deliver in hooks:
            hooks.remove(self.deliver)

    def notify(self, obj: Any) -> None:
        """TcpLayer callback (stack lock held): a connection or listener changed."""
        h = self.by_conn.get(obj)
        if h is not None:
            if h.lazy and not h.connecting:
                # unpaired: nothing to move or watch; the application's calls look at the
                # connection itself (a thread waiting in one asks it after each batch it
                # serves, and is kicked when another thread changed it)
                hold = h.hold
                if hold and hold != _get_ident() and (
                        obj.recv_available or obj.eof or obj.error is not None
                        or obj.state is _CLOSED):
                    self.kick(hold)  # (only what ends its wait: not send space, not ACKs)
                if self._chained is not None:
                    self._chained(obj)
                return
            engine = self.engine
            me = _get_ident()
            ident = engine._ident
            if not self.delivering and (me == ident if ident is not None
                                        else engine.in_engine_thread()):
                self.deferred[h] = None
                if not self.deliver_armed:
                    self.deliver_armed = True
                    # runs after the current engine callback returned (and released the lock);
                    # appended directly: the engine thread needs no wake-up pipe write
                    engine._pending.append(self._deliver)
            elif (NOTIFY_FAST and not h.busy and not h.connecting and not h.out
                  and h.eng is not None and obj.error is None and obj.state is not _CLOSED
                  and not obj.eof and (not obj.recv_available or h.hold == me)):
                # StreamHandle._update's outcome when no bytes are to move (or the waiting
                # reader on this thread takes them, see _recv_direct): only the interest in
                # the engine end may change (send space freed or used up)
                want = IN if not h.eof_in and not h.closing and obj.send_space > 0 else 0
                if want != h.events:
                    h.events = want
                    self.pump.watch(h.fd, want, h.on_pump)
            else:
                h.on_event()
        else:
            lh = self.by_listener.get(obj)
            if lh is not None:
                engine = self.engine
                ident = engine._ident
                if not self.delivering and (_get_ident() == ident if ident is not None
                                            else engine.in_engine_thread()):
                    # connecting to the application's listening socket wakes its accepting
                    # thread: do it once the stack's output is out (see deliver)
                    self.deferred_listeners[lh] = None
                    if not self.deliver_armed:
                        self.deliver_armed = True
                        engine._pending.append(self._deliver)
                else:
                    lh.on_event()
        if self._chained is not None:
            self._chained(obj)

    def kick(self, ident: int) -> None:
        """Stack lock held: another thread changed an unpaired socket whose reader (thread
        ``ident``, StreamSocket._recv_lazy) waits serving the plugs inline, or is about to:
        end its wait, it looks at the connection again.  The kick stays until that reader
        leaves its wait (:meth:`unkick`), whichever thread polls the eventfd meanwhile (the
        serving thread may be another reader, about to go back to its own wait)."""
        kicked = self.kicked
        if ident not in kicked and self.quiet >= 0:
            if not kicked:
                os.eventfd_write(self.quiet, 1)
            kicked.add(ident)

    def quiet_done(self) -> None:
        """Stack lock held: a wait on ``quiet`` ended (or the stack closed): close it once
        the stack is closed and nobody waits on it."""
        if self.quiet_closing and not self.quiet_users and self.quiet >= 0:
            os.close(self.quiet)
            self.quiet = -1

    def unkick(self, ident: int) -> None:
        """Stack lock held, reader ``ident`` left its wait on ``quiet`` (or did not get to
        wait): consume its kick; the eventfd stays readable while other readers' kicks
        are pending."""
        kicked = self.kicked
        if ident in kicked:
            kicked.discard(ident)
            if kicked:
                return
            if self.quiet >= 0 and not self.quiet_closing:  # (the close's wake-up stays)
                try:
                    os.eventfd_read(self.quiet)
                except OSError:
                    pass

    def deliver(self) -> None:
        """Engine thread, stack lock held, the stack's output flushed (a runtime after_batch
        hook): serve the connections and listeners that changed, waking their threads."""
        if not (self.deferred or self.deferred_listeners) or self.delivering:
            return
        stack = self.stack
        if stack.closed:
            self.deferred.clear()
            self.deferred_listeners.clear()
            return
        self.delivering = True  # changes made while serving them are served at once
        try:
            while self.deferred or self.deferred_listeners:
                handles = list(self.deferred)
                self.deferred.clear()
                for h in handles:
                    h.on_event()
                listeners = list(self.deferred_listeners)
                self.deferred_listeners.clear()
                for lh in listeners:
                    lh.on_event()
        finally:
            self.delivering = False
        stack.runtime.flush()

    def _deliver(self) -> None:
        """Engine thread, after a callback that changed connections without a runtime
        after_batch hook (pump, retries): serve them."""
        self.deliver_armed = False
        if not (self.deferred or self.deferred_listeners):
            return  # served by deliver() already
        with self.stack.lock:
            self.deliver()

    def pair(self, fd: int) -> _csocket.socket:
        """Connect the unconnected AF_UNIX stream ``fd`` to a new, non-blocking engine end
        through this layer's rendezvous listener (created once per process: no listener
        socket, bind, listen and close per connect).  Connects are serialised, so the one
        connection the listener accepts is the one just made."""
        with self._rdv_lock:
            lst = self._rdv
            if lst is None or self._rdv_pid != _Pid.value:
                lst = _csocket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
                try:
                    lst.bind("")
                    lst.listen(8)
                    name = lst.getsockname()
                except OSError:
                    lst.close()
                    raise
                self._rdv, self._rdv_name, self._rdv_pid = lst, name, _Pid.value
            view = _unix(fd)
            try:
                try:
                    view.connect(self._rdv_name)
                except BlockingIOError:  # (a non-blocking descriptor and a full queue)
                    blocking = os.get_blocking(fd)
                    os.set_blocking(fd, True)
                    try:
                        view.connect(self._rdv_name)
                    finally:
                        os.set_blocking(fd, blocking)
            finally:
                view.detach()
            try:
                efd, _ = lst._accept()  # type: ignore[attr-defined]
            except OSError:
                # the connection made stays queued: drop the listener so that no later
                # connect is handed this one
                self._rdv = None
                lst.close()
                raise
        eng = _csocket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, efd)
        _nowait(eng)
        return eng

    def next_name(self) -> bytes:
        """A fresh abstract AF_UNIX name for an engine end waiting in an accept queue (chosen
        here, so no ``getsockname`` call is needed to learn the name ``accept`` reports)."""
        return _NAME.pack(0, _Pid.value & 0xFFFFFFFF, next(self._names) & (1 << 64) - 1)

    def flush(self, conn: TcpConnection) -> None:
        """Let ``conn`` send what user calls queued (stack lock held)."""
        now = self.clock()
        self.layer.flush(conn, now)
        core = self.core
        if core.loopq:
            core.drain_loopback(now)

    # -- local ports ------------------------------------------------------------------------------
    def in_use(self, sock: StreamSocket, addr: bytes | None, port: int) -> bool:
        """Would binding ``sock`` to addr:port conflict (Linux rules, simplified)?"""
        for ref in self.bound.get(port, ()):
            other = ref()
            if other is None or other is sock:  # (None: collected, being closed)
                continue
            oaddr = other._bound[0] if other._bound else None
            if addr is not None and oaddr is not None and unmap(addr) != unmap(oaddr):
                continue
            if other.family != sock.family and (sock._v6only or other._v6only) and (
                    addr is None or oaddr is None):
                continue
            if sock._reuse and other._reuse and other._listen is None:
                continue
            if sock._reuseport and other._reuseport:
                continue  # (SO_REUSEPORT on both: Linux lets sockets of one user share a port)
            return True
        # connections, also those whose socket is gone (orphaned, TIME-WAIT): Linux keeps them
        # in the port's bind bucket (inet_csk_bind_conflict), never listening
        reuse = sock._reuse
        for laddr, flags in self.layer.port_owners(port, self.clock()):
            if (reuse and flags & BIND_REUSE) or (sock._reuseport and flags & BIND_REUSEPORT):
                continue
            if addr is not None:
                if unmap(addr) != laddr:
                    continue
            elif len(laddr) == 4:
                if sock._fam == _AF_INET6 and sock._v6only:
                    continue
            elif sock._fam == _AF_INET and flags & (BIND_V6ONLY | BIND_TW):
                continue  # (an IPv6 TIME-WAIT: Linux 6.x, whatever its IPV6_V6ONLY)
            return True
        return False

    def ephemeral(self, sock: StreamSocket, addr: bytes | None) -> int:
        """A free port for bind(port=0)."""
        rng = self.stack.core.rng
        span = EPHEMERAL_HIGH - EPHEMERAL_LOW + 1
        start = rng.randrange(span)
        listeners = self.layer.listeners
        used = self.layer.port_use
        # first a port without sockets or connections (no pass over the tables), then any
        # port the bind rules allow
        for avoid in (used, ()):
            for i in range(span):
                port = EPHEMERAL_LOW + (start + i) % span
                if port in self.bound or (b"", port) in listeners or port in avoid:
                    continue
                if not self.in_use(sock, addr, port):
                    return port
        raise oserror(errno.EADDRINUSE)


class StreamHandle:
    """Engine side of a connected TCP socket (methods run with the stack lock held)."""

    # the state's starting values, as class attributes (a connection sets the few it changes:
    # a handle costs 5 attribute stores instead of 30)
    junk = 0
    error = 0
    connect_error = 0
    failed = False
    established = False
    out = b""
    out_off = 0
    eof_in = False
    eof_out = False
    events = 0
    busy = False
    again = False
    name = b""  # the engine end's AF_UNIX name while it waits in an accept queue
    sink: ListenHandle | None = None  # ... and the listener whose queue that is
    bigbuf = False  # has the engine end got its big send buffer yet?
    closing = False  # the application is closing its descriptor (see closed_by_app)
    app_gone = False  # every copy of the application's descriptor is closed
    # may bytes written through the application's descriptor wait in the engine end?  Set
    # (under the stack lock) after every write through the descriptor and while the pump
    # leaves bytes there; cleared when a drain found the engine end empty.  Lets direct_send
    # skip a readiness syscall per send.
    dirty = False
    # the application took the descriptor itself (StreamSocket.fileno): it may write into it
    # behind the socket object's back (os.write, a C library), so ``dirty`` stays set and
    # every direct send first looks (this poll object: the engine end readable?) and drains
    # what waits there, to keep the call order; None: only the socket's own calls write
    peek: Any = None
    # bytes written into the engine end, plus one for its end of stream and one for its
    # close: an application thread serving the plugs inline learns from it that its
    # descriptor turned readable without polling it, and StreamSocket.recv (which counts the
    # bytes it read) that nothing can wait unread
    wrote = 0
    # the ident of an application thread that serves the plugs inline while it waits in recv
    # on this socket, with nothing unread in its descriptor: data that this thread brings
    # stays in the connection, and recv copies it from there (0: none)
    hold = 0
    # SO_RCVLOWAT: received bytes stay in the connection until this many are there (or the
    # stream ends or fails), so the descriptor turns readable only then (StreamSocket._set_lowat)
    lowat = 1
    # no engine end yet (LAZY_PAIR): the application's descriptor is not connected to
    # anything, its calls use the connection directly; StreamSocket._materialize pairs it
    lazy = False
    # the application shut the socket down for reading: bytes stay in the connection (its
    # window closes, as on Linux) and the engine end's write side is shut (readers see EOF)
    rd_shut = False
    _cond: threading.Condition | None = None  # made on first wait (see cond)
    # after a failed connect: the engine end, kept connected to the application's
    # descriptor for the socket's next connect (see _teardown)
    spare: _csocket.socket | None = None
    # a weak reference to the socket object whose descriptor is the application's end (set
    # while that object holds the handle, under the stack lock): see _poke
    app: Any = None
    # the flags of the engine end's sends of ``out``: with MSG_OOB while ``out`` is the
    # connection's urgent byte (see _urgent_piece)
    out_flags = _DONTWAIT

    def __init__(self, tcp: TcpSockets, conn: TcpConnection, eng: _csocket.socket | None,
                 connecting: bool = False) -> None:
        self.tcp = tcp
        self.conn = conn
        self.eng = eng
        self.fd = eng.fileno() if eng is not None else -1
        self.connecting = connecting

    @property
    def cond(self) -> threading.Condition:
        """The condition (on the stack lock) a blocking connect waits on; made on first use
        (an accepted connection never needs one)."""
        cond = self._cond
        if cond is None:
            cond = self._cond = threading.Condition(self.tcp.stack.lock)
        return cond

    def _wake_waiters(self) -> None:
        cond = self._cond
        if cond is not None:
            cond.notify_all()

    # -- events -----------------------------------------------------------------------------------
    def on_event(self) -> None:
        """The connection changed (state, data, window, error)."""
        if self.busy:
            self.again = True
            return
        self.busy = True
        try:
            for _ in range(MAX_ROUNDS):
                self.again = False
                self._update()
                if not self.again:
                    break
        finally:
            self.busy = False

    def on_pump(self, events: int) -> None:
        """Engine thread: the engine end is readable, writable, hung up or failed."""
        stack = self.tcp.stack
        with stack.lock:
            if self.eng is None:
                return
            if stack.closed:
                self._teardown()
                return
            if events & (IN | HUP | ERR) and not self.connecting:
                self.dirty = not self._read_app(events) or self.peek is not None
            self.on_event()
            stack.runtime.flush()

    def closed_by_app(self) -> None:
        """Application thread, stack lock held, just after this process closed its descriptor:
        if that was the last copy (the engine end hangs up) serve the close now, else let the
        pump watch the engine end again (another process or a dup still holds the socket)."""
        self.closing = False
        eng = self.eng
        if eng is None or self.eof_in or self.tcp.stack.closed:
            return
        p = select.poll()
        p.register(self.fd, select.POLLIN)
        ready = p.poll(0)
        events = ready[0][1] if ready else 0
        if events & select.POLLHUP:
            self.dirty = not self._read_app(HUP | IN)
        self.on_event()
        self.tcp.stack.runtime.flush()

    def _read_app(self, events: int) -> bool:
        """Move what the application wrote into the connection; True when ``B`` is empty."""
        conn = self.conn
        eng = self.eng
        assert eng is not None
        moved = False
        drained = False
        while not self.eof_in:
            space = conn.send_space
            if space <= 0:
                break
            try:
                data = eng.recv(min(space, CHUNK), _DONTWAIT)
            except BlockingIOError:
                drained = True
                break
            except OSError:  # ECONNRESET: the application closed with unread data
                conn.abort()
                moved = True
                self._teardown()
                break
            if not data:
                self.eof_in = True
                if events & HUP:
                    self.app_gone = True
                    conn.close()
                else:
                    conn.shutdown()
                moved = True
                break
            try:
                conn.send(data)
            except OSError as exc:
                if exc.errno != errno.EAGAIN:
                    self.error = self.error or (exc.errno or errno.EPIPE)
                    self._teardown()
                break
            moved = True
        if moved:
            if self.sink is not None:
                self._unsink()  # the application wrote: accepted (by another process)
            self.tcp.flush(conn)
        return drained

    def direct_send(self, view: memoryview) -> int:
        """Application thread, stack lock held: send straight into the connection (core
        locking) when nothing written through the descriptor is still queued; returns bytes
        taken (0: use the descriptor)."""
        if (self.eng is None and not self.lazy) or self.connecting or self.eof_in or self.error:
            return 0
        if self.dirty:
            peek = self.peek
            if (peek is None or peek.poll(0)) and (not self._read_app(0) or self.eng is None):
                return 0  # bytes written through the descriptor still wait: keep their order
            self.dirty = peek is not None
        conn = self.conn
        total = 0
        size = len(view)
        try:
            if conn.send_space > 0:
                total = conn.send(view)
                while total < size and conn.send_space > 0:
                    total += conn.send(view[total:])
        except BlockingIOError:
            pass
        except OSError:
            if not total:
                # the connection's error (reported once: ECONNRESET...) or EPIPE, as Linux's
                # send gives it (returning 0 would send through the descriptor, and an
                # unpaired socket's bytes would vanish into a fresh pair: a send "succeeded"
                # after the peer's reset)
                raise
        if total:
            self.tcp.flush(conn)
            self.tcp.stack.runtime.flush()
        return total

    def urgent_send(self, view: memoryview) -> int:
        """Application thread, stack lock held: send(MSG_OOB) straight into the connection
        (its last byte taken urgent: TcpConnection.send_urgent) once nothing written through
        the descriptor is still queued; bytes taken, 0 when none can be now (full, or
        descriptor bytes first), -1 when the descriptor must answer (shut down, failed)."""
        if self.connecting:
            return 0
        if self.eof_in or self.error or (self.eng is None and not self.lazy):
            return -1
        if self.dirty:  # (as direct_send)
            peek = self.peek
            if peek is None or peek.poll(0):
                if not self._read_app(0):
                    return 0 if self.eng is not None else -1
                if self.eng is None:
                    return -1
            self.dirty = peek is not None
        conn = self.conn
        if conn.send_space <= 0:
            return 0
        try:
            n = conn.send_urgent(view)
        except BlockingIOError:
            return 0
        if n:
            self.tcp.flush(conn)
            self.tcp.stack.runtime.flush()
        return n

    def shut_rd(self) -> None:
        """Stack lock held: the application shut its socket down for reading (SHUT_RD): a
        thread blocked reading its descriptor (in the kernel or serving inline) returns, the
        descriptor stays readable (EOF), and no more bytes are moved into it."""
        eng = self.eng
        if self.rd_shut or eng is None:
            return
        self.rd_shut = True
        self.out = b""
        self.out_off = 0
        self.wrote += 1
        try:
            eng.shutdown(_socket.SHUT_WR)
        except OSError:
            pass

    def expose(self) -> None:
        """Stack lock held, the handle paired: the application took the descriptor (see
        ``peek``); from now on a direct send drains what was written into it first."""
        if self.peek is None and self.eng is not None:
            peek = select.poll()
            peek.register(self.fd, select.POLLIN)
            self.peek = peek
            self.dirty = True
            # an urgent byte written through the descriptor by other code (send(MSG_OOB) on
            # a socket object built on it) would be skipped by the engine end's ordinary
            # reads: it goes as an ordinary byte instead (ioth's own send(MSG_OOB) does
            # not go through the descriptor)
            try:
                self.eng.setsockopt(_socket.SOL_SOCKET, _socket.SO_OOBINLINE, 1)
            except OSError:
                pass

    def attach(self, eng: _csocket.socket) -> None:
        """Stack lock held: an unpaired handle gets its engine end (StreamSocket._materialize):
        what the connection holds for the application goes to the descriptor now."""
        self.lazy = False
        self.eng = eng
        self.fd = eng.fileno()
        tcp = self.tcp
        if self.hold and self.hold != _get_ident():
            tcp.kick(self.hold)  # (its reader waits on the quiet descriptor: it reads the
            # pair now)
        if tcp.by_conn.get(self.conn) is None:
            tcp.by_conn[self.conn] = self
        self.on_event()
        tcp.stack.runtime.flush()

    def _update(self) -> None:
        conn = self.conn
        state = conn.state
        if not self.connecting:
            eng = self.eng
            if eng is None:
                return
            if not (self.out or conn.recv_available or conn.error is not None
                    or state is _CLOSED or conn.eof):  # fast path: only the interest may change
                want = IN if not self.eof_in and not self.closing and conn.send_space > 0 \
                    else 0
                if want != self.events:
                    self.events = want
                    self.tcp.pump.watch(self.fd, want, self.on_pump)
                return
        if not self.established and state in _CONNECTED:
            self.established = True  # even if a reset follows at once: connect succeeded
        if self.connecting and self.eng is None and not self.lazy:
            return  # the application end is not attached yet (_connect attaches it)
        if self.connecting:
            if self.established:
                self.connecting = False
                if self.junk:
                    self._drop_junk()
            elif conn.error is not None or state is _CLOSED:
                self.connecting = False
                self.connect_error = conn.error or errno.ECONNREFUSED
                self.failed = True
                conn.error = None
                if self.junk:
                    # non-blocking: the engine end closes with the junk unread, so the kernel
                    # marks the descriptor (ECONNRESET) and hangs it up: IN|OUT|ERR|HUP|RDHUP,
                    # as Linux's refused socket, ERR until the error is taken (SO_ERROR,
                    # connect); StreamSocket._unconnect gives it a fresh descriptor (the same
                    # number) for its next connect
                    self.junk = 0
                    self._teardown()
                else:
                    self._teardown(keep=True)
            if self._cond is not None:
                self._cond.notify_all()  # (_wake_waiters)
            if self.connecting:
                return
        eng = self.eng
        if eng is None:
            return
        received = False
        while True:
            if self.out:
                view = memoryview(self.out)[self.out_off:]
                try:
                    n = eng.send(view, self.out_flags)
                except BlockingIOError:
                    if self.bigbuf:
                        break
                    # sized lazily: the default buffer suits request/response traffic, a
                    # stream that fills it gets the big one (one setsockopt per connection)
                    self.bigbuf = True
                    _bigbuf(eng)
                    continue
                except OSError:  # the application closed: data after close resets (Linux)
                    conn.abort()
                    self.tcp.flush(conn)
                    self._teardown()
                    return
                self.out_off += n
                self.wrote += n
                if self.out_off < len(self.out):
                    continue
                self.out = b""
                self.out_off = 0
            if conn.recv_available and not self.rd_shut:
                hold = self.hold
                if hold and hold == _get_ident():
                    break  # (this thread's recv takes it: see StreamSocket._recv_direct)
                if self.lowat > conn.recv_available and state not in _FIN_IN \
                        and conn.error is None:
                    break  # (SO_RCVLOWAT: not enough yet)
                if conn.urgent_mode:  # (one attribute test per delivery: no call)
                    piece = self._urgent_piece(conn)
                    if piece is None:
                        break
                    self.out = piece
                else:
                    self.out = conn.recv(CHUNK)
                received = True
                continue
            break
        if received and conn.poll_at() == 0.0:  # a window update to send
            self.tcp.flush(conn)
        if not self.out and not self.eof_out:
            if conn.error is not None and not conn.recv_available:
                self.error = conn.error
                conn.error = None
                self._poke()
                self._teardown()
                return
            if conn.eof or (state is _CLOSED and not conn.recv_available):
                self.eof_out = True
                if not self.app_gone:  # (nobody would read the end of stream)
                    try:
                        eng.shutdown(_socket.SHUT_WR)
                    except OSError:
                        pass
                    self.wrote += 1
        if self.eof_in and self.eof_out and not self.out:
            self._teardown()
            return
        want = 0
        if not self.eof_in and not self.closing and conn.send_space > 0:
            want |= IN
        if self.out:
            want |= OUT
        if want != self.events:
            self.events = want
            self.tcp.pump.watch(self.fd, want, self.on_pump)

    def _urgent_piece(self, conn: TcpConnection) -> bytes | None:
        """What goes into the engine end next from a connection that met urgent data: its
        bytes up to the urgent mark, then the urgent byte itself, sent with MSG_OOB (the
        AF_UNIX stream's own urgent data has Linux's TCP semantics: the application end
        polls POLLPRI, its recv(MSG_OOB) takes the byte, ordinary reads stop at the mark and
        skip it, SIOCATMARK, SO_OOBINLINE on the descriptor keeps it inline, a newer one
        returns the older to the stream); None when nothing can move now."""
        self.out_flags = _DONTWAIT
        if conn.urgent_offset == 0:
            self._sync_oobinline()
            self.out_flags = _DONTWAIT | _OOB
            return conn.recv_urgent()
        conn.drop_mark()  # (the byte taken: the reader passes it)
        if not conn.recv_available:
            return None  # (it was all that was queued; a pending error stays for _update)
        return conn.recv(CHUNK)  # (stops at the next mark)

    def _sync_oobinline(self) -> None:
        """Before an urgent byte goes into the engine end: the application's descriptor
        has the socket's SO_OOBINLINE (an accepted socket inherits the listener's value,
        which its fresh descriptor does not have)."""
        ref = self.app
        app = ref() if ref is not None else None
        if app is None:
            return
        app._sync_oobinline()

    def _poke(self) -> None:
        """The connection failed (a reset...), the engine end is about to close: leave a byte
        unread in it, written through the application's descriptor, so that the kernel marks
        that descriptor with ECONNRESET when it closes (unix_release_sock): POLLERR until
        SO_ERROR or a read takes the error, as on Linux's TCP socket after a reset (the
        socket then reports its own error, see StreamIO._reset_error)."""
        ref = self.app
        app = ref() if ref is not None else None
        if app is None:
            return
        fd = _csocket.socket.fileno(app)
        if fd < 0:
            return
        view = _unix(fd)
        try:
            view.send(b"\0", _DONTWAIT)
        except OSError:  # (shut down for writing, full: its bytes wait unread already)
            pass
        finally:
            view.detach()

    def _drop_junk(self) -> None:
        eng = self.eng
        while self.junk and eng is not None:
            try:
                got = eng.recv(self.junk, _DONTWAIT)
            except OSError:
                break
            if not got:
                break
            self.junk -= len(got)

    def _teardown(self, keep: bool = False) -> None:
        """Forget the handle and close its engine end; ``keep`` (a connect that failed): the
        engine end stays connected to the application's descriptor as ``spare`` (the same
        open socket serves the next connect: registrations made on the descriptor stay
        valid, as on Linux), with one byte written into it so that the descriptor reads
        as readable as a refused kernel socket (StreamSocket reports b"" and EPIPE itself
        and drains the byte before a new connect)."""
        if self.connecting:  # the stack went away under a connect
            self.connecting = False
            self.failed = True
            self.connect_error = self.connect_error or errno.ECONNABORTED
            self._wake_waiters()
        eng = self.eng
        if eng is None:
            if self.lazy:  # (no engine end to close: only forget the handle)
                self.lazy = False
                if self.tcp.by_conn.get(self.conn) is self:
                    del self.tcp.by_conn[self.conn]
                self._wake_waiters()
            return
        self.eng = None
        self.wrote += 1
        self.tcp.pump.forget(self.fd)
        if keep and not self.tcp.stack.closed:
            self.spare = eng
            try:
                eng.send(b"\0", _DONTWAIT)
            except OSError:
                pass
        else:
            eng.close()
        if self.tcp.by_conn.get(self.conn) is self:
            del self.tcp.by_conn[self.conn]
        if self.name:
            sink = self.sink
            if self.error and sink is not None and not self.tcp.stack.closed:
                # reset before accept: Linux's accept still gives the connection, its first
                # read the error (kept for StreamSocket.accept until the listener closes)
                sink.dead[self.name] = None
            else:
                self.tcp.pending.pop(self.name, None)
        self._unsink()
        self._wake_waiters()

    def _unsink(self) -> None:
        """Out of its listener's AF_UNIX accept queue (accepted, or gone)."""
        sink = self.sink
        if sink is not None:
            self.sink = None
            if sink.in_sink > 0:  # (0: ListenHandle.recount counted it accepted already)
                sink.in_sink -= 1
                sink.listener.handed -= 1


_DIAG_REQ = struct.Struct("=IHHIIBBHIIIII")  # nlmsghdr + unix_diag_req


def _unix_waiting(ino: int) -> int | None:
    """Connections waiting in the listening AF_UNIX socket ``ino`` (sock_diag's
    UNIX_DIAG_RQLEN), None when the kernel does not tell."""
    try:
        nl = _csocket.socket(_socket.AF_NETLINK, _socket.SOCK_DGRAM, 4)  # NETLINK_SOCK_DIAG
    except OSError:
        return None
    try:
        # SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST; AF_UNIX, every state, UDIAG_SHOW_RQLEN, no cookie
        nl.send(_DIAG_REQ.pack(_DIAG_REQ.size, 20, 1, 1, 0, _socket.AF_UNIX, 0, 0,
                               0xFFFFFFFF, ino, 0x10, 0xFFFFFFFF, 0xFFFFFFFF))
        nl.settimeout(1.0)
        data = nl.recv(4096)
    except OSError:
        return None
    finally:
        nl.close()
    if len(data) < 32 or struct.unpack_from("=H", data, 4)[0] != 20:
        return None  # (an error message: no such socket, no unix_diag)
    end = min(len(data), struct.unpack_from("=I", data)[0])
    off = 32  # nlmsghdr (16) + unix_diag_msg (16)
    while off + 4 <= end:
        alen, atype = struct.unpack_from("=HH", data, off)
        if alen < 4:
            break
        if atype == 4 and off + 12 <= end:  # UNIX_DIAG_RQLEN: (rqueue, wqueue)
            return int(struct.unpack_from("=I", data, off + 4)[0])
        off += (alen + 3) & ~3
    return None


class ListenHandle:
    """A stack listener feeding one or two AF_UNIX listening sockets (IPv4 and IPv6 sinks)."""

    def __init__(self, tcp: TcpSockets, listener: Listener) -> None:
        self.tcp = tcp
        self.listener = listener
        self.sinks: dict[int, tuple[bytes, bool]] = {}  # family (4/6) -> (unix name, v6only)
        self.retry_armed = False
        self.dropped = 0
        # engine ends connected to a sink and not accepted here yet (accepts of other
        # processes are not seen: those count until the connection goes)
        self.in_sink = 0
        # the ident of a thread blocked in accept that serves the plugs inline and takes new
        # connections straight from the stack's accept queue (StreamSocket._accept_direct)
        self.hold = 0
        self.direct = 0  # connections accepted that way
        self.inodes: dict[int, int] = {}  # family (4/6) -> inode of the listening descriptor
        # names of engine ends reset before accept, kept in TcpSockets.pending (see
        # StreamHandle._teardown) until accepted or the listener closes
        self.dead: dict[bytes, None] = {}
        listener.recount = self.recount

    def recount(self) -> None:
        """Stack lock held, the backlog looks full: ask the kernel how many connections wait
        in the listening descriptors; fewer than ``in_sink``: the others were accepted where
        this process does not see it (a pre-forked worker), they stop counting."""
        total = 0
        for ino in set(self.inodes.values()):
            waiting = _unix_waiting(ino)
            if waiting is None:
                return
            total += waiting
        gone = self.in_sink - total
        if gone > 0:
            self.in_sink -= gone
            self.listener.handed -= gone

    def on_event(self) -> None:
        """Connections are waiting in the stack's accept queue: connect them to the sinks."""
        hold = self.hold
        if hold and hold == _get_ident():
            return  # this thread is the accepting one: it takes them (_accept_direct)
        tcp = self.tcp
        q = self.listener.accept_queue
        while q:
            conn = q[0]
            v = 4 if len(conn.local[0]) == 4 else 6
            sink = self.sinks.get(v)
            if sink is None and v == 4 and 6 in self.sinks and not self.sinks[6][1]:
                sink = self.sinks[6]
            if sink is None:
                q.popleft()
                self.dropped += 1
                conn.abort()
                tcp.flush(conn)
                continue
            eng = _csocket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_NONBLOCK)
            name = tcp.next_name()
            try:
                try:
                    eng.bind(name)
                except OSError:  # taken (not by this process): let the kernel pick one
                    eng.bind("")
                    name = eng.getsockname()
                eng.connect(sink[0])
            except BlockingIOError:  # the application's accept backlog is full: retry later
                eng.close()
                if not self.retry_armed:
                    self.retry_armed = True
                    tcp.stack.runtime.engine.call_later(ACCEPT_RETRY, self._retry)
                return
            except OSError:
                eng.close()
                q.popleft()
                conn.abort()
                tcp.flush(conn)
                continue
            q.popleft()
            h = StreamHandle(tcp, conn, eng)
            tcp.by_conn[conn] = h
            h.name = name
            tcp.pending[name] = h
            h.sink = self
            self.in_sink += 1
            self.listener.handed += 1  # (still against the backlog until accepted)
            h.on_event()

    def _retry(self) -> None:
        with self.tcp.stack.lock:
            self.retry_armed = False
            if not self.listener.closed:
                self.on_event()
                self.tcp.stack.runtime.flush()
