"""A plug over a pair of byte-stream descriptors (stdin/stdout, pipes to a child, a socket),
framed with :mod:`ioth.net.stream` (2-byte big-endian length + frame, as ``vde_plug``).

Used by ``ioth plug VNL`` (one VNL: the other side is stdin/stdout) and by ``cmd://``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections import deque
from typing import Any, ClassVar

from ioth.errors import PlugClosedError, VNLError
from ioth.net import stream
from ioth.net.plug import ETH_HLEN, VLAN_HLEN, Plug
from ioth.net.vnl import VNL, Style

#: default MTU of a stream: vde_plug's limit of 9234-byte frames
STREAM_MTU = stream.DEFAULT_LIMIT - ETH_HLEN - VLAN_HLEN
#: largest MTU a 2-byte length allows
STREAM_MAX_MTU = stream.MAX_LIMIT - ETH_HLEN - VLAN_HLEN
READ_SIZE = 256 * 1024
#: bytes of frames queued while the writer is full before new frames are dropped
MAX_BACKLOG = 1024 * 1024
#: how soon to retry writing a backlog (the engine watches readers only)
FLUSH_DELAY = 0.001


class StreamPlug(Plug):
    """Frames over a read descriptor and a write descriptor (they may be the same).

    The descriptors are made non-blocking; their previous flags are restored by :meth:`close`,
    which closes them only if ``own_fds`` is true.  End of file on the read side raises
    :class:`PlugClosedError` once every frame read before it was returned; so does a broken
    pipe on the write side.
    """

    STYLE: ClassVar[Style] = "bracket"
    KEYS: ClassVar[tuple[str, ...]] = ("mtu",)
    DEFAULT_MTU: ClassVar[int] = STREAM_MTU

    def __init__(self, rfd: int, wfd: int, mtu: int | None = None, vnl: str = "stream://",
                 own_fds: bool = False) -> None:
        super().__init__(vnl, mtu)
        if not 68 <= self.mtu <= STREAM_MAX_MTU:
            raise VNLError(f"{vnl}: mtu={self.mtu} out of range 68..{STREAM_MAX_MTU}")
        self._max = self.mtu + ETH_HLEN + VLAN_HLEN
        self.decoder = stream.StreamDecoder(self._max)
        self._rfd = rfd
        self._wfd = wfd
        self._own = own_fds
        self._blocking = {fd: os.get_blocking(fd) for fd in {rfd, wfd}}
        for fd in self._blocking:
            os.set_blocking(fd, False)
        self._pending: deque[bytes] = deque()
        self._out = bytearray()
        self._eof = False
        self._gone = ""
        self._framing_seen = 0
        self.backlog_drops = 0

    @classmethod
    def from_vnl(cls, vnl: VNL, **kwargs: Any) -> StreamPlug:
        """Not a VNL scheme: use :class:`StreamPlug` directly (or ``cmd://``)."""
        raise VNLError(f"VNL {vnl.text!r}: a stream plug is made from descriptors, not a VNL")

    # -- reading -----------------------------------------------------------------------------
    def fileno(self) -> int:
        """The read descriptor."""
        return self._rfd

    def recv_frames(self, limit: int = 64) -> list[bytes]:
        """Read what is available and return up to ``limit`` decoded frames."""
        if self.closed:
            raise PlugClosedError(errno.EBADF, f"{self.vnl}: plug closed")
        if self._out:
            self._flush()
        pending = self._pending
        c = self.counters
        rfd = self._rfd
        while len(pending) < limit and not self._eof:
            try:
                data = os.read(rfd, READ_SIZE)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            except OSError as exc:
                self._eof = True
                self._gone = f"read error: {exc.strerror}"
                break
            if not data:
                self._eof = True
                if not self._gone:
                    self._gone = "end of stream"
                if self.decoder.pending:
                    c.rx_errors += 1  # a frame cut short
                break
            for frame in self.decoder.feed(data):
                if len(frame) < ETH_HLEN:
                    c.rx_errors += 1
                else:
                    pending.append(frame)
            errors = self.decoder.stats.framing_errors
            if errors != self._framing_seen:
                c.rx_errors += errors - self._framing_seen
                self._framing_seen = errors
        if not pending:
            if self._gone:
                raise PlugClosedError(errno.EPIPE, f"{self.vnl}: {self._gone}")
            return []
        if len(pending) <= limit:
            frames = list(pending)
            pending.clear()
        else:
            frames = [pending.popleft() for _ in range(limit)]
        c.rx_frames += len(frames)
        c.rx_bytes += sum(map(len, frames))
        return frames

    def poll_at(self) -> float | None:
        """Now, if decoded frames wait or the peer is gone; soon, if a backlog must be written."""
        if self._pending or self._gone:
            return 0.0
        if self._out:
            return time.monotonic() + FLUSH_DELAY
        return None

    # -- writing -----------------------------------------------------------------------------
    def _flush(self) -> bool:
        """Write as much of the backlog as the descriptor takes; True when it is empty."""
        out = self._out
        try:
            n = os.write(self._wfd, out)
        except BlockingIOError:
            return False
        except InterruptedError:
            return False
        except OSError as exc:
            self._broken(exc)
            return False
        del out[:n]
        return not out

    def _broken(self, exc: OSError) -> None:
        self._gone = f"write error: {exc.strerror}"
        self.counters.tx_dropped += len(self._out) > 0
        self._out.clear()

    def send(self, frame: bytes | bytearray | memoryview) -> bool:
        """Write one framed frame; queue what the descriptor does not take now (bounded)."""
        n = len(frame)
        c = self.counters
        if n > self._max or self.closed or self._gone:
            c.tx_dropped += 1
            return False
        hdr = n.to_bytes(2, "big")
        out = self._out
        if out and not self._flush():
            if self._gone or len(out) + n + 2 > MAX_BACKLOG:
                c.tx_dropped += 1
                self.backlog_drops += 1
                return False
            out += hdr
            out += frame
        else:
            try:
                written = os.writev(self._wfd, (hdr, frame))
            except (BlockingIOError, InterruptedError):
                written = 0
            except OSError as exc:
                self._broken(exc)
                c.tx_dropped += 1
                return False
            if written < n + 2:
                if written < 2:
                    out += hdr[written:]
                    out += frame
                else:
                    out += memoryview(frame)[written - 2:]
        c.tx_frames += 1
        c.tx_bytes += n
        return True

    @property
    def backlog(self) -> int:
        """Bytes waiting to be written."""
        return len(self._out)

    def flush(self, timeout: float = 1.0) -> bool:
        """Try for up to ``timeout`` seconds to write the backlog (used before closing)."""
        deadline = time.monotonic() + timeout
        while self._out and not self._gone:
            if self._flush():
                break
            if time.monotonic() >= deadline:
                break
            time.sleep(FLUSH_DELAY)
        return not self._out

    def close(self) -> None:
        """Restore the descriptors' blocking mode; close them if they are ours."""
        if not self.closed:
            for fd, blocking in self._blocking.items():
                with contextlib.suppress(OSError):
                    os.set_blocking(fd, blocking)
                if self._own:
                    with contextlib.suppress(OSError):
                        os.close(fd)
        super().close()
