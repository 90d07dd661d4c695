"""libpcap capture files: a writer and a reader (LINKTYPE_ETHERNET).

The classic format (not pcapng): a 24-byte global header (magic 0xa1b2c3d4 for microsecond
timestamps, version 2.4, snaplen, link type 1) followed by records of a 16-byte header
(seconds, microseconds, captured length, original length) and the captured bytes.  The writer
uses the host's byte order like libpcap; the reader accepts both orders and nanosecond files.

Flush policy of :class:`PcapWriter`: records are buffered and written out when ``flush_bytes``
are buffered, when ``flush_interval`` seconds passed since the last flush (checked at each
record), on :meth:`PcapWriter.flush` and on close.  ``flush_bytes=0`` writes every record at once
(for ``tail -f`` style readers).
"""

from __future__ import annotations

import struct
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from ioth.errors import IothUserError

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
LINKTYPE_ETHERNET = 1
DEFAULT_SNAPLEN = 262144
_ENDIAN = "<" if sys.byteorder == "little" else ">"
_GLOBAL = struct.Struct(_ENDIAN + "IHHiIII")
_RECORD = struct.Struct(_ENDIAN + "IIII")


class PcapFormatError(IothUserError):
    """A file is not a pcap capture this module can read."""


@dataclass(frozen=True, slots=True)
class PcapRecord:
    """One captured frame: timestamp (seconds), captured bytes, original length."""

    timestamp: float
    data: bytes
    orig_len: int


class PcapWriter:
    """Append frames to a pcap file."""

    def __init__(self, path_or_file: str | BinaryIO, snaplen: int = DEFAULT_SNAPLEN,
                 flush_bytes: int = 65536, flush_interval: float = 1.0,
                 clock: Callable[[], float] = time.time) -> None:
        if isinstance(path_or_file, str):
            self._file: BinaryIO = open(path_or_file, "wb")  # noqa: SIM115
            self._owned = True
            self.name = path_or_file
        else:
            self._file = path_or_file
            self._owned = False
            self.name = str(getattr(path_or_file, "name", "<stream>"))
        self.snaplen = snaplen
        self.flush_bytes = flush_bytes
        self.flush_interval = flush_interval
        self.clock = clock
        self.count = 0
        self._buf: list[bytes] = []
        self._buffered = 0
        self._last_flush = clock()
        self.closed = False
        self._file.write(_GLOBAL.pack(PCAP_MAGIC_US, 2, 4, 0, 0, snaplen, LINKTYPE_ETHERNET))
        self._file.flush()

    def write(self, frame: bytes | bytearray | memoryview, timestamp: float | None = None
              ) -> None:
        """Record one frame (truncated to ``snaplen``) at ``timestamp`` (default: now)."""
        if self.closed:
            return
        now = self.clock()
        ts = now if timestamp is None else timestamp
        sec = int(ts)
        usec = int((ts - sec) * 1_000_000)
        orig = len(frame)
        data = bytes(frame[: self.snaplen])
        self._buf.append(_RECORD.pack(sec, usec, len(data), orig))
        self._buf.append(data)
        self._buffered += 16 + len(data)
        self.count += 1
        if self._buffered >= self.flush_bytes or now - self._last_flush >= self.flush_interval:
            self.flush()

    def flush(self) -> None:
        """Write buffered records to the file."""
        if self._buf:
            self._file.write(b"".join(self._buf))
            self._buf.clear()
            self._buffered = 0
        self._file.flush()
        self._last_flush = self.clock()

    def close(self) -> None:
        """Flush and close (the file is closed only if this writer opened it)."""
        if self.closed:
            return
        self.flush()
        self.closed = True
        if self._owned:
            self._file.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_pcap(path: str) -> Iterator[PcapRecord]:
    """The records of pcap file ``path`` (PcapFormatError if it is not one we read)."""
    with open(path, "rb") as f:
        head = f.read(24)
        if len(head) < 24:
            raise PcapFormatError(f"{path}: too short for a pcap header")
        for endian in ("<", ">"):
            magic = struct.unpack(endian + "I", head[:4])[0]
            if magic in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
                break
        else:
            raise PcapFormatError(f"{path}: not a pcap file (magic {head[:4].hex()})")
        scale = 1e-6 if magic == PCAP_MAGIC_US else 1e-9
        _, _, _, _, _, _, linktype = struct.unpack(endian + "IHHiIII", head)
        if linktype != LINKTYPE_ETHERNET:
            raise PcapFormatError(f"{path}: link type {linktype}, not Ethernet")
        rec = struct.Struct(endian + "IIII")
        while True:
            rh = f.read(16)
            if not rh:
                return
            if len(rh) < 16:
                raise PcapFormatError(f"{path}: truncated record header")
            sec, frac, incl, orig = rec.unpack(rh)
            data = f.read(incl)
            if len(data) < incl:
                raise PcapFormatError(f"{path}: truncated record")
            yield PcapRecord(sec + frac * scale, data, orig)
