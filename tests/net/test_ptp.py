"""ptp:// pairs in one process."""

from __future__ import annotations

import os
import select
from pathlib import Path

import pytest

from ioth.errors import VNLError
from ioth.net.plugs.ptp import PtpPlug
from ioth.net.registry import open_plug

FRAME = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + b"a" * 100


def _recv(plug: PtpPlug, timeout: float = 2.0) -> list[bytes]:
    r, _, _ = select.select([plug.fileno()], [], [], timeout)
    return plug.recv_frames() if r else []


def test_pair_both_ways(tmp_path: Path) -> None:
    path = str(tmp_path / "cable")
    a = open_plug(f"ptp://{path}")
    b = open_plug(f"ptp://{path}")
    assert isinstance(a, PtpPlug) and isinstance(b, PtpPlug)
    assert a.first and not b.first
    assert os.path.exists(path) and os.path.exists(path + "+")
    assert b.send(FRAME)
    assert _recv(a) == [FRAME]
    assert a.send(FRAME[::-1])
    assert _recv(b) == [FRAME[::-1]]
    # a burst is drained in one call up to the limit
    for i in range(10):
        assert a.send(FRAME + bytes([i]))
    got = b.recv_frames(limit=4)
    assert len(got) == 4 and got[0] == FRAME + b"\0"
    assert len(b.recv_frames()) == 6
    assert b.counters.rx_frames == 11
    # a third plug is refused
    with pytest.raises(OSError):
        open_plug(f"ptp://{path}")
    a.close()
    b.close()
    assert not os.path.exists(path) and not os.path.exists(path + "+")


def test_runt_and_oversize(tmp_path: Path) -> None:
    path = str(tmp_path / "c")
    a = PtpPlug(path)
    b = PtpPlug(path, mtu=9000)
    assert b.send(b"short")  # the sender does not judge; the receiver counts it
    assert _recv(a) == []
    assert a.counters.rx_errors == 1
    assert not a.send(b"x" * 1519)
    assert a.counters.tx_dropped == 1
    big = FRAME + b"j" * 8900
    assert b.send(big)
    assert _recv(a) == [big]  # receivers take any size
    a.close()
    b.close()


def test_peer_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "c")
    a = PtpPlug(path)
    b = PtpPlug(path)
    assert a.send(FRAME) and _recv(b) == [FRAME]
    b.close()
    assert not a.send(FRAME)  # peer gone: dropped and counted
    assert a.counters.tx_dropped == 1
    b2 = PtpPlug(path)
    assert not b2.first
    assert b2.send(FRAME) and _recv(a) == [FRAME]
    assert a.send(FRAME) and _recv(b2) == [FRAME]
    a.close()
    b2.close()


def test_stale_socket_is_replaced(tmp_path: Path) -> None:
    import socket
    path = str(tmp_path / "c")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.close()  # leaves a stale socket file
    a = PtpPlug(path)
    assert a.first
    a.close()


def test_bad_vnl() -> None:
    with pytest.raises(VNLError):
        open_plug("ptp://")
    with pytest.raises(VNLError):
        open_plug("ptp:///tmp/x[mtu=70000]")


def test_jumbo_64k_frames(tmp_path: Path) -> None:
    path = str(tmp_path / "j")
    a = PtpPlug(path, mtu=65535)
    b = PtpPlug(path, mtu=65535)
    big = FRAME[:14] + os.urandom(65535 + 4)  # mtu + header + one VLAN tag
    assert len(big) == a.max_frame == 65553
    assert a.send(big)
    assert _recv(b) == [big]
    assert not a.send(big + b"!")
    a.close()
    b.close()
