"""Send and receive buffers: the SEND/RECEIVE user calls, in-order queueing of arriving text
with the ACK policy of RFC 5681 4.2, and reassembly of out-of-order pieces.

The send buffer ``_sbuf[_shead:]`` holds unacknowledged and unsent bytes starting at sequence
``_sseq``; the receive buffer is a list of chunks (``_rbuf[_rhead:]``, ``_roff`` bytes of the
first already read); ``_ooo`` is a sorted list of disjoint ``(seq, bytes)`` pieces.
"""

from __future__ import annotations

import bisect
import errno as _errno

from ioth.stack.tcp.state import (
    _CLOSED,
    _LISTEN,
    _RECV_DATA_STATES,
    _SEND_STATES,
    _oserror,
)
from ioth.stack.tcp.tcb import TcbBase


class BufferMixin(TcbBase):
    """The user's data: send/recv, queueing of arriving text, reassembly."""

    __slots__ = ()

    @property
    def send_space(self) -> int:
        """Bytes :meth:`send` would accept now."""
        return max(0, self.policy.send_buffer - (len(self._sbuf) - self._shead))

    @property
    def send_queue(self) -> int:
        """Bytes queued and not yet acknowledged."""
        return len(self._sbuf) - self._shead

    @property
    def recv_available(self) -> int:
        """Bytes :meth:`recv` can return now."""
        return self._rlen

    def send(self, data: bytes | bytearray | memoryview) -> int:
        """SEND (RFC 9293 3.10.2): queue up to :attr:`send_space` bytes; return how many.

        Raises BlockingIOError when the buffer is full, EPIPE after shutdown, the pending
        connection error (ECONNRESET, ETIMEDOUT, ECONNREFUSED) once, ENOTCONN before connect.
        """
        if self.error is not None:
            code, self.error = self.error, None
            self._error_reported = True
            raise _oserror(code)
        if self._fin_queued or self._error_reported:
            raise _oserror(_errno.EPIPE, "sending side is shut down")
        if self.state not in _SEND_STATES:
            if self.state is _CLOSED and self._had_connection:
                raise _oserror(_errno.EPIPE, "connection is closed")
            raise _oserror(_errno.ENOTCONN, f"connection is {self.state}")
        if not isinstance(data, bytes | bytearray):
            data = memoryview(data).cast("B")
        n = len(data)
        if not n:
            return 0
        space = self.policy.send_buffer - (len(self._sbuf) - self._shead)
        if space <= 0:
            raise BlockingIOError(_errno.EAGAIN, "send buffer full")
        if n > space:
            n = space
            data = memoryview(data)[:n]
        self._sbuf += data
        self._dirty = True
        return n

    def recv(self, max_bytes: int = 1 << 20) -> bytes:
        """RECEIVE (RFC 9293 3.10.3): up to ``max_bytes`` in-order bytes; b"" at end of stream.

        Raises BlockingIOError when nothing is available yet, the pending connection error once,
        ENOTCONN on a connection that was never opened.
        """
        if max_bytes < 0:
            raise ValueError("negative buffersize in recv")
        if self._rlen == 0:
            if self.error is not None:
                code, self.error = self.error, None
                self._error_reported = True
                raise _oserror(code)
            if self._rcv_eof or (self.state is _CLOSED and self._had_connection):
                return b""
            if self.state in (_CLOSED, _LISTEN):
                raise _oserror(_errno.ENOTCONN, f"connection is {self.state}")
            raise BlockingIOError(_errno.EAGAIN, "no data available")
        rbuf = self._rbuf
        i = self._rhead
        off = self._roff
        n = len(rbuf)
        first = rbuf[i]
        if off == 0 and i == n - 1 and len(first) <= max_bytes:
            out = first
            i = n
        else:
            parts: list[bytes] = []
            want = max_bytes
            while want and i < n:
                chunk = rbuf[i]
                avail = len(chunk) - off
                if avail <= want:
                    parts.append(chunk[off:] if off else chunk)
                    i += 1
                    want -= avail
                    off = 0
                else:
                    parts.append(chunk[off : off + want])
                    off += want
                    want = 0
            self._roff = off
            out = b"".join(parts)
        self._consumed(i, n, len(out))
        return out

    def recv_into(self, buffer: bytearray | memoryview) -> int:
        """Like :meth:`recv` but into ``buffer``, copied chunk by chunk (no joined copy);
        returns the byte count (0 at end of stream, or for an empty ``buffer``)."""
        mv = memoryview(buffer).cast("B")
        n = len(mv)
        if not n:
            return 0
        if self._rlen == 0:
            self.recv(n)  # raises (pending error, not connected, nothing yet) or b"": EOF
            return 0
        rbuf = self._rbuf
        i = self._rhead
        off = self._roff
        end = len(rbuf)
        got = 0
        while got < n and i < end:
            chunk = rbuf[i]
            avail = len(chunk) - off
            if avail <= n - got:
                mv[got : got + avail] = memoryview(chunk)[off:] if off else chunk
                got += avail
                i += 1
                off = 0
            else:
                take = n - got
                mv[got:n] = memoryview(chunk)[off : off + take]
                got = n
                off += take
        self._roff = off
        self._consumed(i, end, got)
        return got

    def _consumed(self, i: int, end: int, count: int) -> None:
        """The reader took ``count`` bytes, up to chunk ``i`` of the ``end`` queued: drop the
        chunks read (compacting the list once half of it is read) and open the window."""
        if i == end:
            self._rbuf.clear()
            i = 0
        elif i >= 64 and 2 * i >= end:
            del self._rbuf[:i]
            i = 0
        self._rhead = i
        self._rlen -= count
        self._window_update_check()

    def _receive(self, seq: int, payload: bytes | bytearray | memoryview, plen: int,
                 now: float) -> None:
        """Queue in-window text (RFC 9293 3.10.7.4 seventh), ACK policy of RFC 5681 4.2."""
        if plen > self._rcv_mss:
            self._rcv_mss = min(plen, self.mss_local)
        if seq == self.rcv_nxt:
            self._rbuf.append(bytes(payload))
            self._rlen += plen
            self.rcv_nxt = seq + plen
            if self._ooo or self._ooo_fin >= 0:
                self._ooo_pull()
                self._ack_now = True  # RFC 5681 4.2: ACK at once when a gap is filled
            self._unacked_rx += plen
            if self._unacked_rx >= 2 * self._rcv_mss:
                self._ack_now = True  # RFC 9293 3.8.6.3: at least every 2nd full segment
            elif self._ack_at is None:
                self._ack_at = now + self.policy.delayed_ack
        else:
            self._ooo_insert(seq, bytes(payload))
            self._ack_now = True  # RFC 5681 4.2: out-of-order data: immediate (dup) ACK
        # (no _dirty: poll_at() sees _ack_now, and _ack_at is a timer)

    def _ooo_insert(self, seq: int, data: bytes) -> None:
        end = seq + len(data)
        ooo = self._ooo
        if len(ooo) >= max(64, self.policy.recv_buffer >> 8):
            # Bounded reassembly queue: a flood of tiny out-of-order pieces is dropped
            # (the sender retransmits what matters).
            self.dropped += 1
            return
        self._sack_last = seq
        pos = seq
        pieces: list[tuple[int, bytes]] = []
        dup: tuple[int, int] | None = None
        i = bisect.bisect_right(ooo, seq, key=_first)
        for s, d in ooo[i - 1 if i else 0 :]:
            e = s + len(d)
            if e <= pos:
                continue
            if s >= end:
                break
            if dup is None:
                dup = (max(s, seq), min(e, end))  # RFC 2883 4.1.2: already queued
            if s > pos:
                pieces.append((pos, data[pos - seq : s - seq]))
            pos = e
            if pos >= end:
                break
        if pos < end:
            pieces.append((pos, data[pos - seq :] if pos > seq else data))
        for piece in pieces:
            bisect.insort(ooo, piece, key=_first)
        if dup is not None and self.sack_ok:
            self._dsack_pending = dup

    def _ooo_pull(self) -> None:
        ooo = self._ooo
        i = 0
        n = len(ooo)
        nxt = self.rcv_nxt
        if n and ooo[0][0] < nxt and self.sack_ok:
            # RFC 2883 4.1.3: the in-order segment repeated queued data: report that part
            self._dsack_pending = (ooo[0][0], min(ooo[0][0] + len(ooo[0][1]), nxt))
        while i < n and ooo[i][0] <= nxt:
            s, d = ooo[i]
            e = s + len(d)
            if e > nxt:
                piece = d[nxt - s :] if s < nxt else d
                self._rbuf.append(piece)
                self._rlen += len(piece)
                nxt = e
            i += 1
        if i:
            del ooo[:i]
        self.rcv_nxt = nxt
        if self._ooo_fin >= 0 and self._ooo_fin == nxt and self.state in _RECV_DATA_STATES:
            self._ooo_fin = -1
            self._on_fin(self._last_rx)


def _first(item: tuple[int, bytes]) -> int:
    return item[0]
