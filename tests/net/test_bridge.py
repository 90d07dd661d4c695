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
        for f in frames:
            assert a1.send(f)
        assert _collect(b2, 20) == frames
        for f in frames[:5]:
            assert b2.send(f[::-1])
        assert _collect(a1, 5) == [f[::-1] for f in frames[:5]]
        assert bridge.a_to_b.frames == 20
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


def test_bridge_honours_poll_at_and_stops_on_close(tmp_path: Path) -> None:
    """A stream that decodes more frames than one batch is drained through poll_at();
    EOF on the stream stops the bridge and reports which side closed."""
    r, w = os.pipe()
    out_r, out_w = os.pipe()
    src = StreamPlug(r, out_w)
    p1, p2 = PtpPlug(str(tmp_path / "p")), PtpPlug(str(tmp_path / "p"))
    closed = threading.Event()
    with Engine() as engine:
        bridge = Bridge(engine, src, p1, on_close=lambda b: closed.set(), batch=4).start()
        frames = [FRAME + bytes([i]) for i in range(40)]
        os.write(w, b"".join(stream.encode(f) for f in frames))  # one write, 40 frames
        assert _collect(p2, 40) == frames
        assert p2.send(FRAME)
        deadline = time.monotonic() + 5
        got = b""
        while len(got) < len(FRAME) + 2 and time.monotonic() < deadline:
            select.select([out_r], [], [], 0.1)
            got += os.read(out_r, 65536)
        assert got == stream.encode(FRAME)
        os.close(w)
        assert closed.wait(5)
        assert bridge.closed_by is src
        assert not bridge.running
        assert bridge.wait(0)
        assert "40 frames" in bridge.summary()
    for p in (src, p1, p2):
        p.close()
    for fd in (r, out_r, out_w):
        os.close(fd)
