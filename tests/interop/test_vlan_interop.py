"""vlan: ioth and Debian ``vde_plug vlan://...{udp://...}`` (libvdeplug-vlan) agree on tags.

Differential test: the same frames go through both implementations, configured by the same VNL,
in both directions; what comes out must be the same frames (or the same drops).
"""

from __future__ import annotations

import struct
import subprocess
import time

import pytest

from ioth.net.plug import Plug
from ioth.net.registry import open_plug
from tests.interop.streams import StreamPeer
from tests.interop.test_vxvde_interop import start_ioth
from tests.net import nsutil
from tests.net.test_udp import recv_some
from tests.support.peers import require_tools, wait_for

pytestmark = pytest.mark.interop

DST = bytes.fromhex("020000000002")
SRC = bytes.fromhex("020000000001")


def probes() -> list[bytes]:
    """Untagged, 802.1Q (several VIDs), 802.1ad and double-tagged frames; id in the tail."""
    heads: list[bytes] = [b"\x08\x00"]
    heads += [struct.pack("!HHH", 0x8100, vid, 0x0800)
              for vid in (0, 1, 3, 4, 5, 7, 10, 11, 12, 100, 4095)]
    heads += [struct.pack("!HHH", 0x88A8, vid, 0x0800) for vid in (3, 5, 100)]
    heads += [struct.pack("!HHHHH", 0x88A8, 5, 0x8100, 4, 0x0800)]
    return [DST + SRC + h + bytes(40) + struct.pack("!I", 0xC0DE0000 + i)
            for i, h in enumerate(heads)]


MARK = b"\xc0\xde"


def cut(frame: bytes) -> bytes:
    """The frame up to its id.  libvdeplug_vlan returns its whole receive buffer (9234 bytes,
    the tail is stale memory) for frames it retags on receive; what precedes the id must match.
    """
    end = frame.find(MARK)
    return frame[: end + 4] if end >= 0 else frame


def ident(frame: bytes) -> int:
    end = frame.find(MARK)
    return int(struct.unpack_from("!I", frame, end)[0]) - 0xC0DE0000 if end >= 0 else -1


def drain_plug(plug: Plug, wait: float) -> list[bytes]:
    out: list[bytes] = []
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        got = recv_some(plug, 1, max(0.0, deadline - time.monotonic()))
        out.extend(got)
    return out


def exchange(peers: list[tuple[StreamPeer, Plug]], frames: list[bytes]
             ) -> list[tuple[dict[int, bytes], dict[int, bytes]]]:
    """Per (user side, network side): (what reached the network, what reached the user)."""
    for user, _ in peers:
        for f in frames:
            user.send(f)
    time.sleep(0.3)
    sent = [{ident(f): cut(f) for f in drain_plug(net, 0.2)} for _, net in peers]
    for _, net in peers:
        for f in frames:
            net.send(f)
    time.sleep(0.3)
    received = [{ident(f): cut(f) for f in user.drain(0.2)} for user, _ in peers]
    return list(zip(sent, received, strict=True))


# libvdeplug_vlan 0.1.0 (Debian) parses its options after a slash; the bracket form of its manual
# page leaves them in the VLAN number.  ioth accepts both forms; the comparison uses the slash one.
CONFIGS = ["3", "3/untag=7", "0/tag=10:11-12", "3/untag=4/trunk/tag=10:11-12:12-11",
           "0/trunk", "5/qinq", "4095", "0/untag=5/qinq", "7/t=9-8/u=3"]


@pytest.mark.parametrize("cfg", CONFIGS)
def test_vlan_same_tags_as_libvdeplug_vlan(make_netns: object, cfg: str) -> None:
    require_tools("vde_plug")
    ns = make_netns()  # type: ignore[operator]
    deb = StreamPeer(ns.popen(["vde_plug", f"vlan://{cfg}{{udp://7001->127.0.0.1:7002}}"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE))
    io = start_ioth(ns, f"vlan://{cfg}{{udp://7003->127.0.0.1:7004}}")
    with nsutil.inside(ns.name):
        deb_net = open_plug("udp://7002->127.0.0.1:7001")
        io_net = open_plug("udp://7004->127.0.0.1:7003")
    try:
        wait_for(lambda: ":7001 " in ns.run(["ss", "-Hunl"]).stdout, 5,
                 what="vde_plug udp socket")
        time.sleep(0.1)
        frames = probes()
        (deb_sent, deb_recv), (io_sent, io_recv) = exchange([(deb, deb_net), (io, io_net)],
                                                            frames)
        assert all(not any(len(f) > 1000 for f in d.values()) for d in (io_sent, io_recv))
        assert io_sent == deb_sent
        assert io_recv == deb_recv
        assert deb_sent or deb_recv  # each configuration passes something
    finally:
        deb_net.close()
        io_net.close()
