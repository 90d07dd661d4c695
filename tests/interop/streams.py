"""Test helper: drive a process that speaks VDE stream framing on stdin/stdout."""

from __future__ import annotations

import os
import queue
import struct
import subprocess
import threading
import time


class StreamPeer:
    """Frames to a process's stdin and from its stdout (2-byte BE length + frame)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.frames: queue.Queue[bytes] = queue.Queue()
        self._thread = threading.Thread(target=self._reader, daemon=True)
        self._thread.start()

    def _reader(self) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        buf = b""
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while len(buf) >= 2:
                (n,) = struct.unpack_from("!H", buf)
                if len(buf) < 2 + n:
                    break
                self.frames.put(buf[2:2 + n])
                buf = buf[2 + n:]

    def send(self, frame: bytes) -> None:
        """Write one frame to the process."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(struct.pack("!H", len(frame)) + frame)
        self.proc.stdin.flush()

    def recv(self, timeout: float = 2.0) -> bytes | None:
        """The next frame from the process, or None after ``timeout``."""
        try:
            return self.frames.get(timeout=timeout)
        except queue.Empty:
            return None

    def drain(self, wait: float = 0.3) -> list[bytes]:
        """Every frame that arrives within ``wait`` seconds."""
        out: list[bytes] = []
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return out
            got = self.recv(left)
            if got is not None:
                out.append(got)

    def recv_matching(self, predicate: object, timeout: float = 3.0) -> bytes | None:
        """The first frame for which ``predicate(frame)`` is true, within ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            got = self.recv(left)
            if got is not None and predicate(got):  # type: ignore[operator]
                return got

    def close_stdin(self) -> None:
        """EOF on the process's stdin."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
