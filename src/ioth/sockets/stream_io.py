"""The data paths of a TCP socket (:class:`StreamIO`, a base of
:class:`~ioth.sockets.stream.StreamSocket`): ``recv``/``recv_into`` and their variants, ``send``/
``sendall`` and theirs, ``shutdown``, and the reads and writes after a failed connect.

A send goes straight into the connection under the stack lock (``StreamHandle.direct_send``)
while nothing written through the descriptor waits; a blocking read whose thread may serve the
plugs inline copies straight from the connection (``_recv_direct``, or ``_recv_lazy`` for a
socket without its AF_UNIX pair) while nothing waits unread in the descriptor; everything else
goes through the descriptor (see :mod:`ioth.sockets.stream` for the design).
"""

from __future__ import annotations

import _socket as _csocket
import errno
import os
import select
import socket as _socket
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ioth.sockets.base import IothSocket, _Pid, oserror
from ioth.sockets.stream_engine import StreamHandle, _bigbuf
from ioth.stack.tcp.connection import State

if TYPE_CHECKING:
    from ioth.sockets.stream_engine import ListenHandle, TcpSockets

_CLOSED = State.CLOSED
_DONTWAIT = int(_socket.MSG_DONTWAIT)  # (plain ints: IntFlag operators cost a call each)
_PEEK = int(_socket.MSG_PEEK)
_OOB = int(_socket.MSG_OOB)
_get_ident = threading.get_ident
_fileno = _csocket.socket.fileno  # (the descriptor without StreamSocket.fileno's pairing)


class StreamIO(IothSocket):
    """Receiving, sending and shutting down a TCP socket (the socket's state and its other
    methods are :class:`~ioth.sockets.stream.StreamSocket`'s)."""

    # the socket's state used here (StreamSocket sets it and holds the defaults)
    _tcp: TcpSockets
    _h: StreamHandle | None
    _pid: int
    _accepted_plain: bool
    _gone: bool
    _refused: bool
    _junked: bool
    _rd_shut: bool
    _got: int
    _rcvtimeo: float
    _sndbuf: int
    _listen: ListenHandle | None
    _opts: Mapping[tuple[int, int], int]
    _oob_inline = 0  # the SO_OOBINLINE given to the descriptor (see _sync_oobinline)
    _fd_taken: bool

    if TYPE_CHECKING:
        def _materialize(self) -> None: ...
        def _shutdown_listener(self, how: int) -> None: ...

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
        try:
            data, anc, mflags, _ = super().recvmsg(bufsize, ancbufsize, flags)
        except ConnectionResetError:
            raise self._reset_error() from None
        return data, anc, mflags, None  # (a stream has no source address: not the pair's)

    def recvmsg_into(self, buffers: Any, ancbufsize: int = 0,
                     flags: int = 0) -> tuple[int, list[tuple[int, int, bytes]], int, Any]:
        """Receive through the descriptor."""
        if self._before_recvmsg():
            return 0, [], 0, None
        try:
            n, anc, mflags, _ = super().recvmsg_into(buffers, ancbufsize, flags)
        except ConnectionResetError:
            raise self._reset_error() from None
        return n, anc, mflags, None  # (a stream has no source address: not the pair's)

    def _failed_io(self, h: StreamHandle, write: bool = False) -> None:
        """A read or write after a failed connect: the connect's error if nobody took it
        yet, then (a write) EPIPE; a read returns end of stream, or ENOTCONN once the socket
        is unconnected again (Linux; the descriptor itself is no guide here: it may hold the
        engine end kept for the next connect)."""
        with self._stack.lock:
            err, h.connect_error = h.connect_error, 0
        if err:
            self._kernel_error()  # (the descriptor's mark of a refusal, see _reset_error)
            raise oserror(err)
        if write:
            raise oserror(errno.EPIPE)
        if self._refused:  # (unconnected again: Linux's tcp_disconnect cleared SOCK_DONE)
            raise oserror(errno.ENOTCONN)

    def _unjunk(self) -> None:
        """Give the application end its big send buffer back once the handshake ended."""
        h = self._h
        if h is not None and not h.connecting:
            self._junked = False
            _bigbuf(self, self._sndbuf)

    # -- data ------------------------------------------------------------------------------------
    def _pending_error(self) -> int:
        h = self._h
        if h is None or not h.error or h.connecting:
            return 0
        with self._stack.lock:
            err, h.error = h.error, 0
        self._kernel_error()
        return err

    def _kernel_error(self) -> None:
        """Clear the descriptor's own pending error, the kernel's mark of the engine end's
        close after a reset (StreamHandle._poke): the socket's error was just reported."""
        if _fileno(self) >= 0:
            try:
                _csocket.socket.getsockopt(self, _socket.SOL_SOCKET, _socket.SO_ERROR)
            except OSError:
                pass

    def _reset_error(self) -> OSError:
        """A read of the descriptor said ECONNRESET (the kernel's mark, see
        StreamHandle._poke, which that read took): the socket's own error, taken now."""
        return oserror(self._pending_error() or errno.ECONNRESET)

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
        if self._fd_taken and self._fcntl_nonblocking():
            raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))
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

    def _fcntl_nonblocking(self) -> bool:
        """Was O_NONBLOCK set with fcntl on the descriptor of this blocking socket object
        (no timeout) behind its back?  Asked (only of a socket whose fileno() was taken)
        before a wait: CPython's blocking socket on such a kernel descriptor does not wait,
        its call fails with EAGAIN, so ioth's must not wait either."""
        fd = _fileno(self)
        return fd >= 0 and self.gettimeout() is None and not os.get_blocking(fd)

    def _take(self, h: StreamHandle, buffer: Any, size: int) -> Any:
        """Stack lock held: up to ``size`` bytes straight from the connection (into
        ``buffer`` when given: returns the count), or None when bytes still wait in the
        descriptor (they come first) or the connection has none."""
        conn = h.conn
        if h.out or h.wrote != self._got or (h.eng is None and not h.lazy) \
                or not conn.recv_available or conn.urgent_mode:
            return None  # (urgent data: through the descriptor, see StreamHandle)
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

    def _recv_nothing(self, bufsize: int) -> bytes:
        """recv of a size below 1: ValueError for a negative one (CPython's check, before
        any I/O); b"" at once for 0, whatever the connection's state (Linux's tcp_recvmsg
        copies nothing and returns), except on a listening socket (ENOTCONN)."""
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        if self._gone:
            raise oserror(errno.EBADF)
        if self._listen is not None:
            raise oserror(errno.ENOTCONN)
        return b""

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """Receive up to ``bufsize`` bytes; b"" at end of stream; ECONNRESET after a reset."""
        if bufsize <= 0:
            return self._recv_nothing(bufsize)
        h = self._h
        if h is None and self._accepted_plain is False:
            raise oserror(errno.EBADF if self._gone else errno.ENOTCONN)
        if h is not None and h.failed:
            self._failed_io(h)
            return b""
        if self._rd_shut:
            got: bytes = self._read_shut(None, bufsize, flags)
            return got
        if flags & _OOB and h is not None:
            self._urgent_closed(h)
        timeout = self.gettimeout()
        if h is not None and h.lazy:
            # (serve_until tells whether this thread may serve the plugs: _inline_ok's
            # can_serve is not asked first, so queued bytes are taken even when it may not)
            if not flags and bufsize > 0 and timeout != 0 and self._pid == _Pid.value:
                lazy: bytes | None = self._recv_lazy(h, None, bufsize, timeout)
                if lazy is not None:
                    return lazy
            self._materialize()
        try:
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
        except ConnectionResetError:
            raise self._reset_error() from None
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
        if flags & _OOB and h is not None:
            self._urgent_closed(h)
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
        try:
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
        except ConnectionResetError:
            raise self._reset_error() from None
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
        elif flags & _OOB:
            return self._send_urgent(data, flags)
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
        if flags & _OOB and not ancdata:  # (urgent data: see _send_urgent)
            return self._send_urgent(b"".join(memoryview(b).cast("B") for b in buffers), flags)
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
        if flags & _OOB:
            view = memoryview(data).cast("B")
            while view:
                view = view[self._send_urgent(view, flags):]
            return
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

    # -- urgent data (MSG_OOB) ---------------------------------------------------------------
    def _send_urgent(self, data: Any, flags: int) -> int:
        """send(MSG_OOB): the bytes go straight into the connection, the last one taken
        urgent (TcpConnection.send_urgent: the URG flag and urgent pointer of Linux's
        segments), after whatever was written through the descriptor (the engine end drains
        it first).  A blocking socket sends everything before its last byte as ordinary
        data first (as Linux's send, which queues it all and marks the last byte), then
        waits for room for that byte (its timeout, SO_SNDTIMEO as EAGAIN); a non-blocking
        one sends what fits, the last byte sent urgent (EAGAIN when nothing fits)."""
        view = memoryview(data).cast("B")
        h = self._h
        if not view:
            return 0  # (Linux: 0, nothing marked)
        if h is None or self._pid != _Pid.value:
            # (no connection: the descriptor's send reports it; a forked child's urgent
            # byte goes as an ordinary one, see ioth.sockets.stream)
            self._materialize()
            return super().send(data, flags & ~_OOB)
        timeout = self.gettimeout()
        wait = not flags & _DONTWAIT and timeout != 0
        if wait and len(view) > 1:
            self.sendall(view[:-1], flags & ~_OOB)
            sent = len(view) - 1
            view = view[-1:]
        else:
            sent = 0
        lock = self._stack.lock
        deadline = None
        pause = 0.0005
        while True:
            with lock:
                n = h.urgent_send(view)
            if n > 0:
                return sent + n
            if n < 0:  # (the connection failed or was shut down: the descriptor says how)
                self._materialize()
                return sent + super().send(view, flags & ~_OOB)
            if not wait:
                raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))
            if deadline is None:
                limit = timeout if timeout is not None else self._sndtimeo()
                deadline = None if not limit else time.monotonic() + limit
                if deadline is None:
                    deadline = -1.0
            elif deadline > 0 and time.monotonic() >= deadline:
                if timeout is None:
                    raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))
                raise TimeoutError("timed out")
            # (the connection's send buffer is full, or bytes written through the
            # descriptor wait: the engine thread moves them as ACKs arrive)
            time.sleep(pause)
            pause = min(pause * 2, 0.01)

    def _urgent_closed(self, h: StreamHandle) -> None:
        """recv(MSG_OOB) on a connection that was reset (closed without the peer's FIN):
        ENOTCONN while an urgent byte waits (Linux tcp_recv_urg), where the descriptor
        would still give it."""
        conn = h.conn
        if conn.state is not _CLOSED or conn.eof or h.connecting:
            return
        if h.lazy:  # (unpaired: the byte is still in the connection)
            if conn.urgent_ready:
                raise oserror(errno.ENOTCONN)
            return
        if _fileno(self) < 0:
            return
        try:
            _csocket.socket.recv(self, 1, _OOB | _PEEK | _DONTWAIT)
        except OSError:
            return  # (none: EINVAL from the descriptor, as Linux)
        raise oserror(errno.ENOTCONN)

    def _sndtimeo(self) -> float:
        """SO_SNDTIMEO in seconds (0: none)."""
        if _fileno(self) < 0:
            return 0.0
        raw = _csocket.socket.getsockopt(self, _socket.SOL_SOCKET, _socket.SO_SNDTIMEO, 16)
        sec = int.from_bytes(raw[:8], "little", signed=True)
        usec = int.from_bytes(raw[8:16], "little", signed=True)
        return sec + usec / 1e6

    def _sync_oobinline(self) -> None:
        """Give the descriptor the socket's SO_OOBINLINE (setsockopt, and before an urgent
        byte goes into the engine end): the AF_UNIX stream then keeps its urgent byte in
        line, as Linux's TCP socket with that option."""
        on = 1 if self._opts.get((_socket.SOL_SOCKET, _socket.SO_OOBINLINE)) else 0
        if on != self._oob_inline and _fileno(self) >= 0:
            try:
                _csocket.socket.setsockopt(self, _socket.SOL_SOCKET, _socket.SO_OOBINLINE, on)
            except OSError:
                return
            self._oob_inline = on

    def sendto(self, data: Any, flags_or_addr: Any, address: Any = None) -> int:
        """On a connected stream the address is ignored (EISCONN if it differs is not checked)."""
        flags = flags_or_addr if address is not None else 0
        return self.send(data, flags)

    def shutdown(self, how: int) -> None:
        """Half-close: SHUT_WR sends FIN after the queued data; SHUT_RD stops reading."""
        if self._listen is not None:
            self._shutdown_listener(how)
            return
        if self._h is None:
            raise oserror(errno.EBADF if self._gone else errno.ENOTCONN)
        if how not in (_socket.SHUT_RD, _socket.SHUT_WR, _socket.SHUT_RDWR):
            raise oserror(errno.EINVAL)
        if self._h.connecting and self._pid == _Pid.value:
            # Linux's inet_shutdown in SYN_SENT: the attempt is dropped (no segment), a
            # connect waiting for it fails with ECONNRESET, the socket is unconnected
            h = self._h
            with self._stack.lock:
                if h.connecting:
                    h.connect_error = errno.ECONNRESET
                    h._teardown()
                    h.conn.abort()
                    self._tcp.flush(h.conn)
                    return
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
