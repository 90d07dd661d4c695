"""capture: pcap files written by ``ioth capture`` and by ``capture://`` are read by tshark."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from ioth.net.pcap import read_pcap
from ioth.net.registry import open_plug
from tests.interop.streams import StreamPeer
from tests.net import nsutil
from tests.net.test_udp import recv_some
from tests.support.peers import ioth_cmd, require_tools, wait_for

pytestmark = pytest.mark.interop


def scapy_frames() -> list[bytes]:
    from scapy.layers.inet import ICMP, IP, UDP
    from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
    from scapy.layers.l2 import ARP, Ether

    mac = "02:00:00:00:c0:01"
    return [
        bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src=mac)
              / ARP(op=1, hwsrc=mac, psrc="198.51.100.1", pdst="198.51.100.2")),
        bytes(Ether(dst="02:00:00:00:c0:02", src=mac)
              / IP(src="198.51.100.1", dst="198.51.100.2") / ICMP(id=7, seq=1) / b"ioth"),
        bytes(Ether(dst="02:00:00:00:c0:02", src=mac)
              / IP(src="198.51.100.1", dst="198.51.100.2") / UDP(sport=5000, dport=53)
              / (b"x" * 1400)),
        bytes(Ether(dst="33:33:00:00:00:01", src=mac)
              / IPv6(src="2001:db8::1", dst="ff02::1") / ICMPv6EchoRequest(id=1, seq=2)),
    ]


def tshark_fields(path: str, *fields: str) -> list[str]:
    argv = ["tshark", "-r", path, "-T", "fields"]
    for f in fields:
        argv += ["-e", f]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "appears to be damaged" not in done.stderr and "cut short" not in done.stderr
    return done.stdout.strip().splitlines()


def test_ioth_capture_cli_on_a_vxvde_network(make_netns: object, tmp_path: Path) -> None:
    require_tools("tshark", "vde_plug")
    ns = make_netns()  # type: ignore[operator]
    nsutil.multicast_ready(ns)
    pcap = str(tmp_path / "net.pcap")
    cap = ns.popen([*ioth_cmd("capture", "vxvde://239.1.2.5", pcap, "--count", "4")],
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert cap.stderr is not None
    assert b"ioth capture:" in cap.stderr.readline()
    sender = StreamPeer(ns.popen(["vde_plug", "vxvde://239.1.2.5"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE))
    time.sleep(0.3)
    frames = scapy_frames()
    for f in frames:
        sender.send(f)
    out, _ = cap.communicate(timeout=15)
    assert cap.returncode == 0
    assert out.decode().strip() == "4 frames captured"
    assert [r.data for r in read_pcap(pcap)] == frames
    lines = tshark_fields(pcap, "frame.protocols", "ip.dst", "udp.dstport")
    assert len(lines) == 4
    assert lines[0].startswith("eth:ethertype:arp")
    assert "icmp" in lines[1] and "198.51.100.2" in lines[1]
    assert lines[2].split("\t")[1:] == ["198.51.100.2", "53"]
    assert "icmpv6" in lines[3]


def test_capture_wrapper_records_both_directions(make_netns: object, tmp_path: Path) -> None:
    require_tools("tshark")
    ns = make_netns()  # type: ignore[operator]
    pcap = str(tmp_path / "wrap.pcap")
    with nsutil.inside(ns.name):
        a = open_plug(f"capture://{pcap}[flush=0]{{udp://7001->127.0.0.1:7002}}")
        b = open_plug("udp://7002->127.0.0.1:7001")
    frames = scapy_frames()
    try:
        a.send(frames[0])
        assert recv_some(b) == [frames[0]]
        b.send(frames[1])
        assert recv_some(a) == [frames[1]]
        wait_for(lambda: len(list(read_pcap(pcap))) == 2, 5, what="two records")
        lines = tshark_fields(pcap, "eth.src", "arp.dst.proto_ipv4", "icmp.seq")
        assert lines == ["02:00:00:00:c0:01\t198.51.100.2\t", "02:00:00:00:c0:01\t\t1"]
    finally:
        a.close()
        b.close()
