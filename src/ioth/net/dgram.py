"""What the plugs moving one frame per datagram on one socket share (``ptp://``, ``vde://``,
``switch://``/``hub://``): socket buffer setup, the send that counts its drops, and the receive
loop that drains a non-blocking socket into a preallocated buffer until EAGAIN.

The loops live in :class:`DgramPlug`'s own ``send`` and ``recv_frames`` (no extra call per
frame); the plugs differ only in what an error means, which they say in
:meth:`DgramPlug._send_error` and :meth:`DgramPlug._recv_error` (called on the error path only).
"""

from __future__ import annotations

import errno
import fcntl
import socket
import termios

from ioth.errors import PlugClosedError
from ioth.net.plug import ETH_HLEN, VLAN_HLEN, Plug

#: socket buffer size asked for (the kernel caps it at net.core.[rw]mem_max)
SOCKBUF = 4 * 1024 * 1024
#: default receive buffer: any datagram of a 65535-byte MTU plug fits, longer ones show
RECV_BUF = 65536 + 256
#: 1: ``recv_frames(1)`` takes its own short path (0: the general loop; A/B knob, both give
#: the same frames and counters)
ONE_FAST = 1
_FIONREAD = termios.FIONREAD
_TRUNC = socket.MSG_TRUNC
_NOTHING = b"\0\0\0\0"


def set_bufs(sock: socket.socket, size: int = SOCKBUF) -> None:
    """Ask for large socket buffers so 64 KiB frames fit (the kernel may cap the size)."""
    for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, size)
        except OSError:
            pass


class DgramPlug(Plug):
    """A plug carrying one frame per datagram on one non-blocking socket (``self._sock``).

    Subclasses call :meth:`_init_buffer` and :meth:`_set_socket` from ``__init__``.  ``send``
    refuses frames longer than ``mtu`` + 18 and counts every drop; ``recv_frames`` reads with
    ``MSG_TRUNC`` into a preallocated buffer, so a datagram longer than the buffer is seen as
    such and counted as an error, like one shorter than an Ethernet header.
    """

    #: ``recv_frames(1)`` reads one datagram and holds nothing back (what is left keeps the
    #: socket readable): owners polling level-triggered may read one frame per wake-up (the
    #: stack runtime's quiet mode) and skip the probe for a second one
    rx_quiet = True

    _sock: socket.socket
    _fd: int
    _max: int
    _buf: bytearray
    _view: memoryview
    _next: bytearray

    def _init_buffer(self, size: int | None = None) -> None:
        """Set the largest frame sent (``mtu`` + 18) and allocate a receive buffer of ``size``
        bytes (default: :data:`RECV_BUF`, or more for a larger frame)."""
        self._max = self.mtu + ETH_HLEN + VLAN_HLEN
        self._buf = bytearray(size if size is not None else max(RECV_BUF, self._max + 1))
        self._view = memoryview(self._buf)
        self._next = bytearray(4)  # FIONREAD answer (an int)

    def _set_socket(self, sock: socket.socket) -> None:
        """Make ``sock`` the plug's data socket: large buffers, non-blocking."""
        set_bufs(sock)
        sock.setblocking(False)
        self._sock = sock
        self._fd = sock.fileno()

    def fileno(self) -> int:
        """The data socket."""
        return self._fd

    def send(self, frame: bytes | bytearray | memoryview) -> bool:
        """Send one frame as one datagram; False (counted) on EAGAIN/ENOBUFS/too big/closed."""
        n = len(frame)
        if n > self._max or self.closed:
            self.counters.tx_dropped += 1
            return False
        try:
            self._sock.send(frame)
        except OSError as exc:
            if not self._send_error(frame, exc):
                self.counters.tx_dropped += 1
                return False
        c = self.counters
        c.tx_frames += 1
        c.tx_bytes += n
        return True

    def _send_error(self, frame: bytes | bytearray | memoryview, exc: OSError) -> bool:
        """``send`` of ``frame`` failed with ``exc``: True if it was sent after all.

        The default drops it (EAGAIN/ENOBUFS: slow peer; ECONNREFUSED: peer gone).
        """
        return False

    def recv_frames(self, limit: int = 64) -> list[bytes]:
        """Drain up to ``limit`` datagrams (stopping at EAGAIN or at a socket error).

        After the first frame a ``FIONREAD`` ioctl (the size of the next datagram, 0 when
        none) tells whether to go on: at low rates that replaces the failing ``recv`` that
        would end the drain, which costs a syscall plus an exception.  A queued empty
        datagram also reads 0: it waits for the next call (the socket stays readable).
        ``limit`` 1 (a quiet read) takes a shorter path with the same outcome.
        """
        if self.closed:
            raise PlugClosedError(errno.EBADF, f"{self.vnl}: plug closed")
        if limit == 1 and ONE_FAST:
            while True:
                try:
                    n = self._sock.recv_into(self._view, 0, _TRUNC)
                except BlockingIOError:
                    break
                except InterruptedError:
                    continue
                except OSError as exc:
                    self._recv_error(exc)
                    break
                if ETH_HLEN <= n <= len(self._buf):
                    c = self.counters
                    c.rx_frames += 1
                    c.rx_bytes += n
                    return [bytes(self._view[:n])]
                self.counters.rx_errors += 1
            self._idle()
            return []
        frames: list[bytes] = []
        append = frames.append
        recv_into = self._sock.recv_into
        view = self._view
        size = len(self._buf)
        c = self.counters
        nbytes = 0
        trunc = socket.MSG_TRUNC
        probe = limit > 1
        while len(frames) < limit:
            try:
                n = recv_into(view, size, trunc)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            except OSError as exc:
                self._recv_error(exc)
                break
            if n < ETH_HLEN or n > size:
                c.rx_errors += 1
                continue
            append(bytes(view[:n]))
            nbytes += n
            if probe:
                probe = False
                nxt = self._next
                try:
                    fcntl.ioctl(self._fd, _FIONREAD, nxt, True)
                except OSError:
                    continue  # no answer: find out by reading
                if nxt == _NOTHING:
                    break
        if frames:
            c.rx_frames += len(frames)
            c.rx_bytes += nbytes
        else:
            self._idle()
        return frames

    def _idle(self) -> None:
        """``recv_frames`` found nothing to read (a readiness event for another descriptor,
        say, or a spurious one).  The default does nothing; it may raise PlugClosedError."""

    def _recv_error(self, exc: OSError) -> None:
        """A receive failed with ``exc`` (a pending socket error); the default counts it."""
        self.counters.rx_errors += 1
