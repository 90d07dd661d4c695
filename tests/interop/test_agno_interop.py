"""agno: ioth and Debian ``vde_plug agno://KEY{udp://...}`` (libvdeplug-agno) decrypt each other."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.interop.streams import StreamPeer
from tests.interop.test_vxvde_interop import (
    BCAST,
    MAC_DEB,
    MAC_IOTH,
    finish_ioth,
    frame,
    send_until,
    start_ioth,
)
from tests.support.peers import require_tools

pytestmark = pytest.mark.interop

# upper-case A on purpose: both implementations must read it the same (odd) way
KEY = "0123456789ABCDEF00112233445566aa\n"
OTHER_KEY = "ffeeddccbbaa99887766554433221100\n"


def test_agno_both_ways_and_wrong_key(make_netns: object, tmp_path: Path) -> None:
    require_tools("vde_plug")
    if not Path("/usr/lib/x86_64-linux-gnu/vdeplug/libvdeplug_agno.so").exists():
        require_tools("libvdeplug_agno (package libvdeplug-agno)")
    key, other = tmp_path / "key", tmp_path / "other"
    key.write_text(KEY)
    other.write_text(OTHER_KEY)
    ns = make_netns()  # type: ignore[operator]
    deb = StreamPeer(ns.popen(["vde_plug", f"agno://{key}{{udp://7002->127.0.0.1:7001}}"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE))
    io = start_ioth(ns, f"agno://{key}{{udp://7001->127.0.0.1:7002}}")
    for size in (60, 61, 77, 1514):
        f = frame(BCAST, MAC_IOTH, size & 0xFF, size)
        assert send_until(io, deb, f) == f
        g = frame(MAC_IOTH, MAC_DEB, (size + 1) & 0xFF, size)
        assert send_until(deb, io, g) == g
    stats = finish_ioth(io)
    assert stats["rx_dropped"] == 0 and stats["bad_tag"] == 0

    # Debian with another key: nothing is delivered either way, our drops are counted
    deb2 = StreamPeer(ns.popen(["vde_plug", f"agno://{other}{{udp://7004->127.0.0.1:7003}}"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE))
    io2 = start_ioth(ns, f"agno://{key}{{udp://7003->127.0.0.1:7004}}")
    for i in range(5):
        deb2.send(frame(MAC_IOTH, MAC_DEB, i))
        io2.send(frame(MAC_DEB, MAC_IOTH, i))
    assert io2.drain(1.0) == []
    assert deb2.drain(0.3) == []
    stats = finish_ioth(io2)
    assert stats["rx_frames"] == 0
    assert stats["rx_dropped"] == stats["bad_tag"] >= 1
