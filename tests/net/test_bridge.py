"""The two-plug bridge on an engine."""

from __future__ import annotations

import os
import select
import threading
import time
from pathlib import Path

from ioth.net import stream
from ioth.net.bridge import Bridge
from ioth.net.plug import Plug
from ioth.net.plugs.ptp import PtpPlug
from ioth.net.plugs.stream_plug import StreamPlug
from ioth.runtime.engine import Engine

FRAME = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + b"b" * 80


def _send(plug: Plug, data: bytes, timeout: float = 5.0) -> None:
    """Send, retrying while the receiver's queue is full (AF_UNIX datagram queues hold 10)."""
    deadline = time.monotonic() + timeout
    while not plug.send(data):
        assert time.monotonic() < deadline, "receiver never drained its queue"
        time.sleep(0.001)


def _collect(plug: Plug, count: int, timeout: float = 5.0) -> list[bytes]:
    out: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        select.select([plug.fileno()], [], [], 0.1)
        out.extend(plug.recv_frames())
    return out


def test_bridge_two_ptp_cables(tmp_path: Path) -> None:
    a1, a2 = PtpPlug(str(tmp_path / "a")), PtpPlug(str(tmp_path / "a"))
    b1, b2 = PtpPlug(str(tmp_path / "b")), PtpPlug(str(tmp_path / "b"))
    with Engine() as engine:
        bridge = Bridge(engine, a2, b1).start()
        frames = [FRAME + bytes([i]) for i in range(20)]
        got: list[bytes] = []
        for i in range(0, 20, 5):  # bursts shorter than a datagram queue (10)
            for f in frames[i:i + 5]:
                _send(a1, f)
            got += _collect(b2, 5)
        assert got == frames
        for f in frames[:5]:
            _send(b2, f[::-1])
        assert _collect(a1, 5) == [f[::-1] for f in frames[:5]]
        # the bridge counts a batch after sending it: the last batch may still be counting
        deadline = time.monotonic() + 5
        while (bridge.a_to_b.frames + bridge.a_to_b.dropped < 20
               or bridge.b_to_a.frames < 5) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert bridge.a_to_b.frames + bridge.a_to_b.dropped == 20
        assert bridge.b_to_a.frames == 5
        assert bridge.a_to_b.bytes == sum(map(len, frames))
        # frames too big for the other side are dropped and counted
        assert a1.send(FRAME + b"j" * 3000) is False  # a1 refuses it itself (mtu 1500)
        big = PtpPlug(str(tmp_path / "c"), mtu=9000)
        big_a2 = PtpPlug(str(tmp_path / "c"), mtu=9000)
        bridge.stop()
        bridge2 = Bridge(engine, big_a2, b1).start()
        assert big.send(FRAME + b"j" * 3000)
        deadline = time.monotonic() + 5
        while bridge2.a_to_b.dropped == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert bridge2.a_to_b.dropped == 1
        bridge2.stop()
        for p in (a1, a2, b1, b2, big, big_a2):
            p.close()


def test_bridge_honours_poll_at_and_stops_on_close() -> None:
    """A stream that decodes more frames than one batch is drained through poll_at();
    EOF on the stream stops the bridge and reports which side closed."""
    in_r, in_w = os.pipe()  # test -> src
    back_r, back_w = os.pipe()  # src -> test
    mid_r, mid_w = os.pipe()  # dst -> test
    dst_in_r, dst_in_w = os.pipe()  # test -> dst
    src = StreamPlug(in_r, back_w)
    dst = StreamPlug(dst_in_r, mid_w)
    closed = threading.Event()
    with Engine() as engine:
        bridge = Bridge(engine, src, dst, on_close=lambda b: closed.set(), batch=4).start()
        frames = [FRAME + bytes([i]) for i in range(40)]
        os.write(in_w, b"".join(stream.encode(f) for f in frames))  # one write, 40 frames
        assert _read_frames(mid_r, 40) == frames
        # the bridge counts a batch after sending it: the last batch may still be counting
        deadline = time.monotonic() + 5
        while bridge.a_to_b.frames < 40 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert bridge.a_to_b.frames == 40 and bridge.a_to_b.dropped == 0
        os.write(dst_in_w, stream.encode(FRAME))
        assert _read_frames(back_r, 1) == [FRAME]
        os.close(in_w)
        assert closed.wait(5)
        assert bridge.closed_by is src
        assert not bridge.running
        assert bridge.wait(0)
        assert "40 frames" in bridge.summary()
    for p in (src, dst):
        p.close()
    for fd in (in_r, back_r, back_w, mid_r, mid_w, dst_in_r, dst_in_w):
        os.close(fd)


def _read_frames(fd: int, count: int, timeout: float = 5.0) -> list[bytes]:
    dec = stream.StreamDecoder()
    out: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            out += dec.feed(os.read(fd, 65536))
    return out
