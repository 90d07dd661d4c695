"""``null://``: a plug that drops every frame sent to it and never receives one."""

from __future__ import annotations

import os
from typing import Any, ClassVar

from ioth.net.plug import Plug
from ioth.net.vnl import VNL, Style


class NullPlug(Plug):
    """Drops everything sent (counted as transmitted, like vdeplug's null module); its
    descriptor is an eventfd nobody writes, so it is never readable."""

    STYLE: ClassVar[Style] = "bracket"
    KEYS: ClassVar[tuple[str, ...]] = ("mtu",)
    DEFAULT_MTU: ClassVar[int] = 65535 - 18

    def __init__(self, vnl: str = "null://", mtu: int | None = None) -> None:
        super().__init__(vnl, mtu)
        self._fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)

    @classmethod
    def from_vnl(cls, vnl: VNL, **kwargs: Any) -> NullPlug:
        """Open from ``null://`` (option ``mtu=N``)."""
        mtu = kwargs.pop("mtu", None)
        if "mtu" in vnl.options:
            mtu = vnl.int_option("mtu", cls.DEFAULT_MTU)
        return cls(vnl.text or "null://", mtu=mtu, **kwargs)

    def fileno(self) -> int:
        """The never-readable eventfd."""
        return self._fd

    def send(self, frame: bytes | bytearray | memoryview) -> bool:
        """Count the frame and drop it."""
        if self.closed:
            self.counters.tx_dropped += 1
            return False
        self.counters.tx_frames += 1
        self.counters.tx_bytes += len(frame)
        return True

    def recv_frames(self, limit: int = 64) -> list[bytes]:
        """Nothing ever arrives."""
        return []

    def close(self) -> None:
        """Release the eventfd."""
        if not self.closed:
            os.close(self._fd)
        super().close()
