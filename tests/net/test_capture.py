"""pcap writer/reader and the capture:// wrapper."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest

from ioth.errors import VNLError
from ioth.net.pcap import PcapFormatError, PcapWriter, read_pcap
from ioth.net.plugs.capture import CapturePlug
from ioth.net.registry import open_plug
from tests.net.memplug import MemPlug

F1 = bytes.fromhex("ffffffffffff020000000001") + b"\x08\x06" + bytes(46)
F2 = bytes.fromhex("020000000001020000000002") + b"\x86\xdd" + bytes(range(200))


def test_global_header_golden_bytes() -> None:
    buf = io.BytesIO()
    PcapWriter(buf, snaplen=65535).close()
    assert buf.getvalue() == struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)


def test_round_trip_and_snaplen(tmp_path: Path) -> None:
    path = str(tmp_path / "x.pcap")
    with PcapWriter(path, snaplen=100) as w:
        w.write(F1, 1700000000.25)
        w.write(F2, 1700000001.5)
    records = list(read_pcap(path))
    assert [r.data for r in records] == [F1, F2[:100]]
    assert [r.orig_len for r in records] == [len(F1), len(F2)]
    assert records[0].timestamp == pytest.approx(1700000000.25)


def test_flush_policy(tmp_path: Path) -> None:
    path = tmp_path / "f.pcap"
    clock = [0.0]
    w = PcapWriter(str(path), flush_bytes=10_000, flush_interval=1.0, clock=lambda: clock[0])
    w.write(F1)
    assert path.stat().st_size == 24  # buffered
    clock[0] = 1.5
    w.write(F1)  # the interval passed: both records are written
    assert path.stat().st_size == 24 + 2 * (16 + len(F1))
    w.close()
    eager = PcapWriter(str(tmp_path / "e.pcap"), flush_bytes=0)
    eager.write(F2)
    assert (tmp_path / "e.pcap").stat().st_size == 24 + 16 + len(F2)
    eager.close()


def test_reader_rejects_garbage(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"not a pcap file at all, no")
    with pytest.raises(PcapFormatError):
        list(read_pcap(str(bad)))
    good = tmp_path / "t.pcap"
    with PcapWriter(str(good)) as w:
        w.write(F2)
    good.write_bytes(good.read_bytes()[:-5])
    with pytest.raises(PcapFormatError, match="truncated"):
        list(read_pcap(str(good)))


def test_capture_plug_records_both_directions(tmp_path: Path) -> None:
    path = str(tmp_path / "c.pcap")
    from ioth.net.pcap import PcapWriter as W

    net = MemPlug()
    plug = CapturePlug(net, W(path))
    assert plug.send(F1)
    net.inject(F2)
    assert plug.recv_frames() == [F2]
    assert plug.captured == 2
    plug.close()
    assert [r.data for r in read_pcap(path)] == [F1, F2]
    assert net.sent == [F1]


def test_capture_vnl_errors(tmp_path: Path) -> None:
    with pytest.raises(VNLError, match="file name"):
        open_plug("capture://{null://}")
    with pytest.raises(VNLError, match="cannot write"):
        open_plug(f"capture://{tmp_path}/no/such/dir/x.pcap{{null://}}")
