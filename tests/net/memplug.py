"""Test helper: an in-memory plug whose sent frames are kept and whose input is injected."""

from __future__ import annotations

import os
import weakref
from typing import Any

from ioth.net.plug import Plug
from ioth.net.vnl import VNL


class MemPlug(Plug):
    """``sent`` holds what was sent; :meth:`inject` queues frames for ``recv_frames``."""

    def __init__(self, mtu: int = 1500) -> None:
        super().__init__("mem://", mtu)
        self.sent: list[bytes] = []
        self.inbox: list[bytes] = []
        self._r, self._w = os.pipe()
        # the pipe is closed when the plug is closed or garbage collected (tests forget)
        self._finalizer = weakref.finalize(self, _close_pair, self._r, self._w)

    @classmethod
    def from_vnl(cls, vnl: VNL, **kwargs: Any) -> MemPlug:
        return cls()

    def fileno(self) -> int:
        return self._r

    def send(self, frame: bytes | bytearray | memoryview) -> bool:
        self.sent.append(bytes(frame))
        self.counters.tx_frames += 1
        return True

    def inject(self, *frames: bytes) -> None:
        self.inbox.extend(frames)

    def recv_frames(self, limit: int = 64) -> list[bytes]:
        out, self.inbox = self.inbox[:limit], self.inbox[limit:]
        return out

    def close(self) -> None:
        self._finalizer()
        super().close()


def _close_pair(r: int, w: int) -> None:
    os.close(r)
    os.close(w)
