"""DgramPlug.recv_frames(1), the quiet read (ONE_FAST): the same frames, counters, errors and
idle calls as the general loop, one datagram per call, nothing else read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ioth.net import dgram
from ioth.net.dgram import DgramPlug
from ioth.net.registry import open_plug


class _Plugs:
    def __init__(self, tmp_path: Path) -> None:
        path = tmp_path / "cable"
        a = open_plug(f"ptp://{path}")
        b = open_plug(f"ptp://{path}")
        assert isinstance(a, DgramPlug) and isinstance(b, DgramPlug)
        self.a, self.b = a, b
        self.idle = 0
        orig = b._idle

        def idle() -> None:
            self.idle += 1
            orig()

        b._idle = idle  # type: ignore[method-assign]


@pytest.fixture
def plugs(tmp_path: Path) -> Iterator[_Plugs]:
    p = _Plugs(tmp_path)
    try:
        yield p
    finally:
        p.a.close()
        p.b.close()


def _inject(p: _Plugs, data: bytes) -> None:
    """A raw datagram to b (bypassing a's size checks)."""
    assert p.a.send(b"\xff" * 14)  # (connects a's socket to b: the cable's lazy connect)
    assert p.b.recv_frames(64)
    p.a._sock.send(data)


def _sequence() -> list[bytes]:
    return [bytes([i]) * (14 + i * 50) for i in range(1, 6)]


@pytest.mark.parametrize("fast", [1, 0])
def test_one_frame_per_call_then_nothing(plugs: _Plugs, fast: int,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dgram, "ONE_FAST", fast)
    p = plugs
    frames = _sequence()
    for f in frames:
        assert p.a.send(f)
    got = []
    for _ in frames:
        one = p.b.recv_frames(1)
        assert len(one) == 1 and type(one[0]) is bytes
        got.append(one[0])
    assert got == frames
    assert p.idle == 0
    assert p.b.recv_frames(1) == []
    assert p.idle == 1
    c = p.b.counters
    assert (c.rx_frames, c.rx_bytes, c.rx_errors) == (5, sum(map(len, frames)), 0)


def test_both_paths_agree_on_frames_errors_and_counters(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Short and oversized datagrams between good ones: counted as errors and skipped by
    both paths the same way (a call goes on to the next datagram after a bad one)."""
    results = []
    for fast in (1, 0):
        monkeypatch.setattr(dgram, "ONE_FAST", fast)
        (tmp_path / f"f{fast}").mkdir()
        p = _Plugs(tmp_path / f"f{fast}")
        try:
            _inject(p, b"\x01" * 20)
            p.a._sock.send(b"short")  # < 14 bytes: an error
            p.a._sock.send(b"\x02" * 30)
            p.a._sock.send(b"\x03" * (len(p.b._buf) + 10))  # longer than the buffer
            p.a._sock.send(b"\x04" * 40)
            calls = [p.b.recv_frames(1) for _ in range(4)]
            c = p.b.counters
            results.append((calls, c.rx_frames, c.rx_bytes, c.rx_errors, p.idle))
        finally:
            p.a.close()
            p.b.close()
    fast_r, loop_r = results
    assert fast_r == loop_r
    calls, frames, nbytes, errors, idle = fast_r
    assert calls == [[b"\x01" * 20], [b"\x02" * 30], [b"\x04" * 40], []]
    assert (frames, errors, idle) == (4, 2, 1)  # (4: the connect frame of _inject too)
    assert nbytes == 14 + 20 + 30 + 40


@pytest.mark.parametrize("fast", [1, 0])
def test_a_closed_plug_raises(plugs: _Plugs, fast: int,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    from ioth.errors import PlugClosedError

    monkeypatch.setattr(dgram, "ONE_FAST", fast)
    plugs.b.close()
    with pytest.raises(PlugClosedError):
        plugs.b.recv_frames(1)


@pytest.mark.parametrize("fast", [1, 0])
def test_a_socket_error_is_counted_through_the_plug_hook(
        plugs: _Plugs, fast: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pending socket error ends the call through _recv_error (then _idle: no frame)."""
    monkeypatch.setattr(dgram, "ONE_FAST", fast)
    p = plugs
    seen: list[OSError] = []
    p.b._recv_error = seen.append  # type: ignore[method-assign, assignment]

    class Failing:
        def recv_into(self, *args: object) -> int:
            raise ConnectionResetError(104, "reset")

    real = p.b._sock
    p.b._sock = Failing()  # type: ignore[assignment]
    try:
        assert p.b.recv_frames(1) == []
    finally:
        p.b._sock = real
    assert len(seen) == 1 and isinstance(seen[0], ConnectionResetError)
    assert p.idle == 1



def test_datagram_plugs_declare_quiet_reads() -> None:
    """(The stack runtime reads only plugs declaring rx_quiet one frame at a time.)"""
    assert DgramPlug.rx_quiet is True
