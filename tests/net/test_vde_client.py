"""vde:// client: the exact bytes of the connection request, against a minimal switch written
in the test with plain sockets (the real vde_switch is in tests/interop)."""

from __future__ import annotations

import os
import select
import socket
import struct
import threading
from pathlib import Path
from typing import Any

import pytest

from ioth.errors import PlugClosedError, VNLError
from ioth.net.dgram import DgramPlug
from ioth.net.plugs import vde as vdemod
from ioth.net.plugs.vde import VdePlug
from ioth.net.registry import open_plug
from ioth.net.vnl import VNL

FRAME = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + b"v" * 60


class MiniSwitch:
    """Accepts one client on DIR/ctl (or DIR/NAME), records its request, answers like
    vde_switch with a datagram socket DIR/001.N."""

    def __init__(self, directory: Path, ctl_name: str = "ctl") -> None:
        self.dir = directory
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(directory / ctl_name))
        self.listener.listen(4)
        self.request = b""
        self.conn: socket.socket | None = None
        self.data = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.data_path = str(directory / "001.9")
        self.data.bind(self.data_path)
        self.client_path_existed_after = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        self.conn = conn
        self.request = conn.recv(256)
        path = self.request[14:122].split(b"\0", 1)[0].decode()
        self.client_path = path
        self.data.connect(path)
        conn.sendall(vdemod.pack_sockaddr_un(self.data_path))

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.listener.close()
        self.data.close()


def test_request_golden(tmp_path: Path) -> None:
    sw = MiniSwitch(tmp_path)
    plug = open_plug(f"vde://{tmp_path}[7/mtu=9000]")
    sw.thread.join(5)
    req = sw.request
    magic, version, rtype = struct.unpack_from("<III", req)
    assert (magic, version, rtype) == (0xFEEDFACE, 3, 7 << 8)
    assert struct.unpack_from("<H", req, 12)[0] == socket.AF_UNIX
    path = req[14:122].rstrip(b"\0").decode()
    assert path == f"{os.path.realpath(tmp_path)}/.{os.getpid():05d}-00000"
    descr = req[122:].decode()
    assert descr.startswith("ioth: user=") and f"pid={os.getpid()}" in descr
    assert descr.endswith(" mtu=9000")
    assert len(req) == 122 + len(descr)
    assert not os.path.exists(path)  # unlinked after connecting
    # data both ways
    assert plug.send(FRAME)
    assert sw.data.recv(65536) == FRAME
    sw.data.send(FRAME[::-1])
    select.select([plug.fileno()], [], [], 2)
    assert plug.recv_frames() == [FRAME[::-1]]
    sw.data.send(b"runt")
    select.select([plug.fileno()], [], [], 2)
    assert plug.recv_frames() == []
    assert plug.counters.rx_errors == 1
    # mtu: 9018 bytes pass, 9019 do not
    assert plug.send(FRAME[:14] + b"m" * 9004)
    assert not plug.send(FRAME[:14] + b"m" * 9005)
    assert plug.counters.tx_dropped == 1
    # switch gone: EOF on ctl
    sw.close()
    r, _, _ = select.select(plug.filenos(), [], [], 2)
    assert r
    with pytest.raises(PlugClosedError):
        plug.recv_frames()
    plug.close()


@pytest.mark.parametrize(("vnl", "rtype"), [
    ("vde://{d}", 0), ("vde://{d}[0]", 1), ("vde://{d}[port=12]", 12 << 8),
    ("vde://{d}[portgroup=31]", 31 << 8), ("{d}", 0),
])
def test_request_types(tmp_path: Path, vnl: str, rtype: int) -> None:
    sw = MiniSwitch(tmp_path)
    plug = open_plug(vnl.format(d=tmp_path))
    sw.thread.join(5)
    assert struct.unpack_from("<I", sw.request, 8)[0] == rtype
    assert sw.request[122:].endswith(b" mtu=1500")
    plug.close()
    sw.close()


def test_port_group_socket(tmp_path: Path) -> None:
    sw = MiniSwitch(tmp_path, ctl_name="blue")
    plug = open_plug(f"vde://{tmp_path}[blue]")
    sw.thread.join(5)
    assert struct.unpack_from("<I", sw.request, 8)[0] == 0
    plug.close()
    sw.close()


def test_mode_and_errors(tmp_path: Path) -> None:
    with pytest.raises(VNLError, match="unknown key"):
        open_plug(f"vde://{tmp_path}[colour=red]")
    with pytest.raises(VNLError, match="mtu"):
        open_plug(f"vde://{tmp_path}[mtu=65536]")
    with pytest.raises(VNLError, match="octal"):
        open_plug(f"vde://{tmp_path}[mode=9]")
    with pytest.raises(OSError):
        open_plug(f"vde://{tmp_path}/nothing-here")
    with pytest.raises(OSError):
        VdePlug(str(tmp_path))  # a directory without a switch


def test_sockaddr_roundtrip() -> None:
    raw = vdemod.pack_sockaddr_un("/tmp/sw/001.5")
    assert len(raw) == 110 and raw[:2] == b"\x01\x00"
    assert vdemod.unpack_sockaddr_un(raw) == "/tmp/sw/001.5"
    with pytest.raises(OSError):
        vdemod.unpack_sockaddr_un(raw[:100])


def test_default_directory_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a directory the plug tries each default in turn (vdeplug4's order)."""
    sw = MiniSwitch(tmp_path)
    monkeypatch.setattr(vdemod, "FALLBACK_DIRS", (str(tmp_path / "absent"), str(tmp_path)))
    plug = open_plug("vde://")
    sw.thread.join(5)
    assert isinstance(plug, VdePlug)
    assert plug.directory == str(tmp_path)
    assert sw.request[:4] == b"\xce\xfa\xed\xfe"
    plug.close()
    sw.close()


def test_jumbo_frames_to_a_switch_that_takes_them(tmp_path: Path) -> None:
    sw = MiniSwitch(tmp_path)
    plug = open_plug(f"vde://{tmp_path}[mtu=65535]")
    sw.thread.join(5)
    big = FRAME[:14] + os.urandom(65535 + 4)
    assert plug.send(big)
    assert sw.data.recv(70000) == big
    sw.data.send(big)
    select.select([plug.fileno()], [], [], 2)
    assert plug.recv_frames() == [big]
    plug.close()
    sw.close()


class _PairPlug(DgramPlug):
    """A datagram plug on one end of a socketpair (what ``switch://`` uses)."""

    @classmethod
    def from_vnl(cls, vnl: VNL, **kwargs: Any) -> _PairPlug:
        raise NotImplementedError

    def __init__(self, sock: socket.socket) -> None:
        super().__init__("pair://", 1500)
        self._init_buffer()
        self._set_socket(sock)


def test_dgram_drain_stops_on_fionread_and_reads_empty_datagrams_later() -> None:
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    plug = _PairPlug(mine)
    try:
        frames = [bytes([i]) * 60 for i in range(1, 6)]
        for f in frames:
            theirs.send(f)
        assert plug.recv_frames(64) == frames  # one call, however many are queued
        assert plug.recv_frames(64) == []
        theirs.send(frames[0])
        theirs.send(b"")  # FIONREAD says 0 for it, like for an empty queue
        theirs.send(frames[1])
        assert plug.recv_frames(64) == [frames[0]]
        assert select.select([mine], [], [], 0)[0]  # still readable: the engine comes back
        assert plug.recv_frames(64) == [frames[1]]
        assert plug.counters.rx_errors == 1
        assert plug.counters.rx_frames == 7
        for f in frames:
            theirs.send(f)
        assert plug.recv_frames(2) == frames[:2]  # the limit holds
        assert plug.recv_frames(1) == frames[2:3]
        assert plug.recv_frames(64) == frames[3:]
    finally:
        plug.close()
        mine.close()
        theirs.close()
