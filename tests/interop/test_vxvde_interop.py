"""vxvde: an ioth endpoint and Debian's ``vde_plug vxvde://`` in two namespaces joined by veth."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.interop.streams import StreamPeer
from tests.net import nsutil
from tests.support.peers import require_tools

pytestmark = pytest.mark.interop

PLUG_STDIO = str(Path(__file__).with_name("plug_stdio.py"))
BCAST = bytes.fromhex("ffffffffffff")
MAC_IOTH = bytes.fromhex("02000000a001")
MAC_DEB = bytes.fromhex("02000000d001")


def frame(dst: bytes, src: bytes, tag: int, size: int = 100) -> bytes:
    return dst + src + b"\x88\xb5" + bytes([tag]) * (size - 14)


def start_ioth(ns: object, vnl: str) -> StreamPeer:
    proc = ns.popen([sys.executable, PLUG_STDIO, vnl],  # type: ignore[attr-defined]
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert line == b"ready\n", line + proc.stderr.read()
    return StreamPeer(proc)


def finish_ioth(peer: StreamPeer) -> dict[str, int]:
    peer.close_stdin()
    peer.proc.wait(10)
    assert peer.proc.stderr is not None
    lines = peer.proc.stderr.read().decode().strip().splitlines()
    data: dict[str, int] = json.loads(lines[-1])
    return data


def send_until(sender: StreamPeer, receiver: StreamPeer, f: bytes, tries: int = 15) -> bytes:
    """Send ``f`` until the receiver gets it (the peer may still be starting)."""
    for _ in range(tries):
        sender.send(f)
        got = receiver.recv_matching(lambda g: g == f, timeout=0.3)
        if got is not None:
            return got
    pytest.fail("frame never arrived")


@pytest.mark.parametrize("family", ["v4", "v6", "grp"])
def test_ioth_and_debian_vxvde_exchange_and_learn(make_netns: object, family: str) -> None:
    require_tools("vde_plug")
    ns1, ns2 = make_netns(), make_netns()  # type: ignore[operator]
    nsutil.veth_between(ns1, ns2)
    if family == "v4":
        vnl_ioth = vnl_deb = "vxvde://239.1.2.3"
    elif family == "grp":  # group 66051: VNI 66051 and group address 239.1.2.3
        vnl_ioth = vnl_deb = "vxvde://239.0.0.0/grp=66051"
    else:
        ns1.sh("ip -6 addr add fd00:5::1/64 dev va nodad")
        ns2.sh("ip -6 addr add fd00:5::2/64 dev vb nodad")
        vnl_ioth, vnl_deb = "vxvde://ff05:56de::3/if=va", "vxvde://ff05:56de::3/if=vb"
    deb = StreamPeer(ns2.popen(["vde_plug", vnl_deb], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE))
    io = start_ioth(ns1, vnl_ioth)
    # ioth -> Debian, broadcast (to the group)
    send_until(io, deb, frame(BCAST, MAC_IOTH, 1))
    # Debian learned our MAC: its answer comes unicast
    reply = frame(MAC_IOTH, MAC_DEB, 2, 1514)
    deb.send(reply)
    assert io.recv_matching(lambda g: g == reply) == reply
    # we learned Debian's MAC: our frame goes unicast and Debian delivers it
    to_deb = frame(MAC_DEB, MAC_IOTH, 3, 60)
    io.send(to_deb)
    assert deb.recv_matching(lambda g: g == to_deb) == to_deb
    stats = finish_ioth(io)
    assert stats["unicast_tx"] >= 1, stats
    assert stats["unicast_rx"] >= 1, stats  # Debian's learning, seen from our side
    assert stats["echo_dropped"] >= 1, stats
    assert stats["rx_errors"] == 0


def test_ioth_plug_cli_cable_to_debian_vxvde(make_netns: object) -> None:
    """``ioth plug vxvde://...`` (stdin/stdout) against ``vde_plug vxvde://...``, through an
    impair:// wrapper that duplicates every frame we send."""
    require_tools("vde_plug")
    from tests.support.peers import ioth_cmd

    ns1, ns2 = make_netns(), make_netns()  # type: ignore[operator]
    nsutil.veth_between(ns1, ns2)
    deb = StreamPeer(ns2.popen(["vde_plug", "vxvde://239.1.2.6"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE))
    io = StreamPeer(ns1.popen(ioth_cmd("plug", "impair://dup=100:0{vxvde://239.1.2.6}"),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE))
    send_until(io, deb, frame(BCAST, MAC_IOTH, 9))
    deb.drain(0.3)
    once = frame(BCAST, MAC_IOTH, 11)
    io.send(once)
    assert deb.drain(0.5) == [once, once]  # duplicated by impair://dup=100
    reply = frame(MAC_IOTH, MAC_DEB, 10)
    deb.send(reply)
    assert io.recv_matching(lambda g: g == reply) == reply
    assert io.drain(0.3) == []  # no duplicates the other way (dup=100:0)


def test_debian_forgets_a_closed_ioth_endpoint(make_netns: object) -> None:
    """Our close packet (the bare header) makes vde_plug forget our MACs: its next frame to us
    goes to the group again, where another ioth endpoint sees it."""
    require_tools("vde_plug")
    ns1, ns2 = make_netns(), make_netns()  # type: ignore[operator]
    nsutil.veth_between(ns1, ns2)
    deb = StreamPeer(ns2.popen(["vde_plug", "vxvde://239.1.2.7"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE))
    io1 = start_ioth(ns1, "vxvde://239.1.2.7")
    io2 = start_ioth(ns1, "vxvde://239.1.2.7")
    send_until(io1, deb, frame(BCAST, MAC_IOTH, 1))
    io2.drain(0.3)
    to_io1 = frame(MAC_IOTH, MAC_DEB, 2)
    deb.send(to_io1)
    assert io1.recv_matching(lambda g: g == to_io1) == to_io1
    assert io2.drain(0.3) == []  # unicast to io1 only
    stats = finish_ioth(io1)  # closes the plug: the close packet goes to the group
    assert stats["unicast_rx"] >= 1
    again = frame(MAC_IOTH, MAC_DEB, 3)
    deb.send(again)
    assert io2.recv_matching(lambda g: g == again) == again
    finish_ioth(io2)
