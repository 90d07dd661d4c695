"""``capture://FILE.pcap[snaplen=N/flush=BYTES]{nested}``: record both directions to a pcap.

Every frame sent through the plug and every frame received from the nested plug is written to
``FILE.pcap`` (libpcap format, LINKTYPE_ETHERNET, see :mod:`ioth.net.pcap`) with its time.
``snaplen`` (default 262144) truncates records; ``flush`` (default 65536) is how many bytes are
buffered before they are written (0: write every frame at once); buffered records are also
written after one second and on close.  ``captured`` counts the records.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ioth.errors import VNLError
from ioth.net.pcap import DEFAULT_SNAPLEN, PcapWriter
from ioth.net.plug import Plug, WrapperPlug
from ioth.net.vnl import VNL, Style


class CapturePlug(WrapperPlug):
    """A wrapper that writes a copy of every frame, both ways, to a pcap file."""

    STYLE: ClassVar[Style] = "wrapper"
    KEYS: ClassVar[tuple[str, ...]] = ("snaplen", "flush")

    def __init__(self, inner: Plug, writer: PcapWriter, vnl: str = "") -> None:
        super().__init__(inner, vnl, inner.mtu)
        self.writer = writer

    @classmethod
    def from_vnl(cls, vnl: VNL, **kwargs: Any) -> CapturePlug:
        """Open ``capture://FILE{nested}``: the file first, then the nested plug."""
        from ioth.net.registry import open_plug

        if not vnl.address:
            raise VNLError(f"VNL {vnl.text!r}: capture:// needs a file name")
        snaplen = vnl.int_option("snaplen", DEFAULT_SNAPLEN)
        if snaplen < 14:
            raise VNLError(f"VNL {vnl.text!r}: snaplen={snaplen} is below 14")
        try:
            writer = PcapWriter(vnl.address, snaplen, vnl.int_option("flush", 65536))
        except OSError as exc:
            raise VNLError(f"VNL {vnl.text!r}: cannot write {vnl.address!r}: "
                           f"{exc.strerror}") from None
        assert vnl.nested is not None
        try:
            inner = open_plug(vnl.nested, **kwargs)
        except BaseException:
            writer.close()
            raise
        return cls(inner, writer, vnl.text)

    @property
    def captured(self) -> int:
        """Frames recorded so far."""
        return self.writer.count

    def send(self, frame: bytes | bytearray | memoryview) -> bool:
        """Record and send one frame."""
        ok = self.inner.send(frame)
        if ok:
            self.writer.write(frame)
            self.counters.tx_frames += 1
            self.counters.tx_bytes += len(frame)
        else:
            self.counters.tx_dropped += 1
        return ok

    def recv_frames(self, limit: int = 64) -> list[bytes]:
        """Frames of the nested plug, each recorded."""
        frames = self.inner.recv_frames(limit)
        write = self.writer.write
        for frame in frames:
            write(frame)
        self.counters.rx_frames += len(frames)
        self.counters.rx_bytes += sum(map(len, frames))
        return frames

    def close(self) -> None:
        if not self.closed:
            self.writer.close()
        super().close()

    def describe(self) -> str:
        return f"capture to {self.writer.name} over {self.inner.describe()}"
