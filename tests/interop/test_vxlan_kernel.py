"""VXLAN: a Linux ``vxlan`` device in one namespace and an ioth ``vxlan://`` VTEP in another.

The ioth side answers ARP and ping with frames built by scapy (the packet oracle) and pings the
kernel in turn: traffic goes both ways, through the group and unicast to learned VTEPs.
"""

from __future__ import annotations

import select
import subprocess
import time

import pytest

from ioth.net.plug import Plug
from ioth.net.plugs.vxlan import VxlanPlug
from ioth.net.registry import open_plug
from tests.net import nsutil
from tests.support.peers import require_tools, stop_process

pytestmark = pytest.mark.interop

MY_MAC = "02:00:00:00:77:01"
MY_IP = "203.0.113.2"
KERNEL_IP = "203.0.113.1"


def answer(plug: Plug, frame: bytes) -> str | None:
    """Reply to ARP requests for MY_IP and to pings; return what was answered."""
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import ARP, Ether

    pkt = Ether(frame)
    if ARP in pkt and pkt[ARP].op == 1 and pkt[ARP].pdst == MY_IP:
        reply = (Ether(dst=pkt.src, src=MY_MAC)
                 / ARP(op=2, hwsrc=MY_MAC, psrc=MY_IP, hwdst=pkt[ARP].hwsrc,
                       pdst=pkt[ARP].psrc))
        plug.send(bytes(reply))
        return "arp"
    if IP in pkt and ICMP in pkt and pkt[ICMP].type == 8 and pkt[IP].dst == MY_IP:
        reply = (Ether(dst=pkt.src, src=MY_MAC) / IP(src=MY_IP, dst=pkt[IP].src)
                 / ICMP(type=0, id=pkt[ICMP].id, seq=pkt[ICMP].seq) / bytes(pkt[ICMP].payload))
        plug.send(bytes(reply))
        return "echo"
    return None


def test_kernel_vxlan_and_ioth_vtep_ping_both_ways(make_netns: object) -> None:
    require_tools("ping")
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import ARP, Ether

    ns1, ns2 = make_netns(), make_netns()  # type: ignore[operator]
    nsutil.veth_between(ns1, ns2)
    ns1.sh("ip link add vx0 type vxlan id 42 group 239.1.2.4 dev va dstport 4789 && "
           f"ip addr add {KERNEL_IP}/24 dev vx0 && ip link set vx0 up")
    with nsutil.inside(ns2.name):
        plug = open_plug("vxlan://239.1.2.4/vni=42")
    assert isinstance(plug, VxlanPlug)
    try:
        # kernel -> ioth: ping answered by the ioth side
        ping = subprocess.Popen(ns1.argv(["ping", "-c", "3", "-i", "0.2", "-W", "2", MY_IP]),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        answered: list[str] = []
        deadline = time.monotonic() + 15
        try:
            while ping.poll() is None and time.monotonic() < deadline:
                r, _, _ = select.select(plug.filenos(), [], [], 0.1)
                if r:
                    for f in plug.recv_frames():
                        what = answer(plug, f)
                        if what:
                            answered.append(what)
            out = ping.communicate(timeout=5)[0].decode()
        finally:
            stop_process(ping)
        assert ping.returncode == 0, out
        assert "arp" in answered and answered.count("echo") >= 3
        assert plug.unicast_tx >= 3  # replies went unicast to the learned kernel VTEP
        assert plug.table.lookup(bytes.fromhex(ns1.sh("cat /sys/class/net/vx0/address")
                                               .stdout.strip().replace(":", "")),
                                 time.monotonic()) == ("198.18.0.1", 4789)

        # ioth -> kernel: ARP for the kernel address, then an echo request
        kernel_mac = None
        req = Ether(dst="ff:ff:ff:ff:ff:ff", src=MY_MAC) / ARP(
            op=1, hwsrc=MY_MAC, psrc=MY_IP, pdst=KERNEL_IP)
        echo_seen = False
        deadline = time.monotonic() + 10
        sent_echo = False
        plug.send(bytes(req))
        while time.monotonic() < deadline and not echo_seen:
            r, _, _ = select.select(plug.filenos(), [], [], 0.2)
            for f in plug.recv_frames() if r else []:
                pkt = Ether(f)
                if ARP in pkt and pkt[ARP].op == 2 and pkt[ARP].psrc == KERNEL_IP:
                    kernel_mac = pkt[ARP].hwsrc
                elif IP in pkt and ICMP in pkt and pkt[ICMP].type == 0 \
                        and pkt[ICMP].id == 0x1234:
                    echo_seen = True
                else:
                    answer(plug, f)
            if kernel_mac and not sent_echo:
                ping_req = (Ether(dst=kernel_mac, src=MY_MAC) / IP(src=MY_IP, dst=KERNEL_IP)
                            / ICMP(type=8, id=0x1234, seq=1) / b"ioth-vxlan")
                plug.send(bytes(ping_req))
                sent_echo = True
        assert kernel_mac is not None, "no ARP reply from the kernel"
        assert echo_seen, "no echo reply from the kernel"
    finally:
        plug.close()
