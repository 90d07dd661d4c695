"""cmd:// and the stdin/stdout stream plug."""

from __future__ import annotations

import os
import select
import shlex
import sys
import time
from pathlib import Path

import pytest

from ioth.errors import PlugClosedError, VNLError
from ioth.net import stream
from ioth.net.plug import Plug
from ioth.net.plugs.cmd import CmdPlug
from ioth.net.plugs.ptp import PtpPlug
from ioth.net.plugs.stream_plug import StreamPlug
from ioth.net.registry import open_plug

FRAME = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + b"c" * 100


def _collect(plug: Plug, count: int, timeout: float = 10.0, writer: Plug | None = None
             ) -> list[bytes]:
    """Receive ``count`` frames from ``plug`` (letting ``writer`` flush its backlog)."""
    out: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        if plug.poll_at() is None:
            select.select(plug.filenos(), [], [], 0.01 if writer else 0.1)
        out.extend(plug.recv_frames())
        if writer is not None:
            writer.recv_frames()
    return out


def test_cmd_echo_child() -> None:
    plug = open_plug('cmd://"cat"')
    assert isinstance(plug, CmdPlug)
    frames = [FRAME + bytes([i]) * i for i in range(50)]
    for f in frames:
        assert plug.send(f)
    assert _collect(plug, 50) == frames
    assert plug.counters.tx_frames == plug.counters.rx_frames == 50
    pid = plug.pid
    plug.close()
    assert plug.proc.returncode is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_cmd_child_exit_is_closed() -> None:
    # the child writes one frame then exits
    script = f"import sys; sys.stdout.buffer.write({stream.encode(FRAME)!r})"
    plug = CmdPlug([sys.executable, "-c", script])
    got: list[bytes] = []
    with pytest.raises(PlugClosedError, match="status 0"):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            select.select([plug.fileno()], [], [], 0.5)
            got.extend(plug.recv_frames())
    assert got == [FRAME]
    plug.close()


def test_cmd_ioth_plug_child(tmp_path: Path) -> None:
    """cmd:// running `ioth plug ptp://PATH`: frames cross the child into a ptp cable."""
    path = str(tmp_path / "cable")
    ptp = PtpPlug(path)
    argv = [sys.executable, "-m", "ioth.cli.main", "plug", f"ptp://{path}"]
    plug = open_plug(f"cmd://{shlex.quote(shlex.join(argv))}")
    try:
        # wait for the child to open its end of the cable
        deadline = time.monotonic() + 10
        while not os.path.exists(path + "+") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert plug.send(FRAME)
        got = _collect(ptp, 1)
        assert got == [FRAME]
        assert ptp.send(FRAME[::-1])
        assert _collect(plug, 1) == [FRAME[::-1]]
    finally:
        plug.close()
        ptp.close()


def test_cmd_bad_vnl() -> None:
    with pytest.raises(VNLError):
        open_plug('cmd://"/nonexistent/program"')
    with pytest.raises(VNLError):
        open_plug("cmd://")


def test_stream_plug_pipes_roundtrip() -> None:
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    a = StreamPlug(r1, w2, own_fds=True)
    b = StreamPlug(r2, w1, own_fds=True)
    try:
        for i in range(100):
            assert a.send(FRAME + bytes([i]) * 500)
        got = _collect(b, 100, writer=a)
        assert len(got) == 100 and got[99] == FRAME + bytes([99]) * 500
        assert b.send(b"x" * 10)  # a runt: received and counted as an error
        assert b.send(FRAME)
        assert _collect(a, 1) == [FRAME]
        assert a.counters.rx_errors == 1
        assert not a.send(b"y" * (a.max_frame + 1))
    finally:
        a.close()
        b.close()


def test_stream_plug_backlog_and_eof() -> None:
    """A full pipe queues frames (bounded) instead of corrupting the stream; EOF closes."""
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    a = StreamPlug(r1, w2, mtu=9216)
    big = FRAME + b"z" * 9000
    sent = sum(a.send(big) for _ in range(300))  # ~2.7 MB into a 64 KiB pipe
    assert 0 < sent < 300
    assert a.counters.tx_dropped == 300 - sent
    assert a.poll_at() is not None and a.backlog > 0
    reader = StreamPlug(r2, w1)
    got: list[bytes] = []
    deadline = time.monotonic() + 20
    while len(got) < sent and time.monotonic() < deadline:
        a.recv_frames()  # flushes the backlog
        got.extend(reader.recv_frames(1000))
    assert len(got) == sent and all(f == big for f in got)
    assert reader.counters.rx_errors == 0
    os.close(w1)  # nobody writes to a's input any more
    with pytest.raises(PlugClosedError):
        _collect(a, 1, timeout=2)
    a.close()
    reader.close()
    for fd in (r1, r2, w2):
        os.close(fd)
