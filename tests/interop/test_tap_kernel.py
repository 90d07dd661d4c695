"""TapPlug against the Linux kernel stack, inside namespaces created by the tests.

The test process opens ``tap://IF[netns=NS/up]`` from the root namespace and acts as a minimal
peer (198.51.100.2) built with scapy: it answers ARP and ICMP echo so that the kernel's ``ping``
works, completes TCP handshakes by hand to make the kernel send TSO super-frames, and sends a GSO
super-frame that the kernel must segment to forward it over a 1500-byte veth.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import select
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet

from ioth.net.plugs.tap import TapPlug
from ioth.net.registry import open_plug
from tests.support.peers import Netns, netns, require_root, require_tools, run, stop_process

pytestmark = pytest.mark.interop

KERNEL_IP = "198.51.100.1"
PEER_IP = "198.51.100.2"
PEER_MAC = "02:10:20:30:40:02"
FAR_IP = "203.0.113.2"


def ifname(prefix: str = "tk") -> str:
    """A random interface name."""
    return prefix + secrets.token_hex(4)


def open_tap(ns: Netns, offload: bool) -> TapPlug:
    """A TAP inside ``ns``, up, with the kernel side at 198.51.100.1/24."""
    name = ifname()
    plug = open_plug(f"tap://{name}[netns={ns.name}/up{'/offload' if offload else ''}]")
    assert isinstance(plug, TapPlug)
    ns.run(["ip", "addr", "add", f"{KERNEL_IP}/24", "dev", name])
    return plug


def tcp_checksum_ok(pkt: Packet) -> bool:
    """Recompute the TCP checksum with scapy and compare it with the one on the wire."""
    wire = pkt[TCP].chksum
    clone = pkt.copy()
    del clone[TCP].chksum
    return bool(Ether(bytes(clone))[TCP].chksum == wire)


class MiniPeer:
    """A scapy-built host at ``PEER_IP``: answers ARP requests and ICMP echo requests."""

    def __init__(self, plug: TapPlug) -> None:
        self.plug = plug
        self.echo_replies = 0
        self.others: list[bytes] = []

    def handle(self, frame: bytes) -> None:
        """Answer ``frame`` if it is for us; keep everything else in :attr:`others`."""
        pkt = Ether(frame)
        if ARP in pkt and pkt[ARP].op == 1 and pkt[ARP].pdst == PEER_IP:
            reply = (Ether(src=PEER_MAC, dst=pkt.src)
                     / ARP(op=2, hwsrc=PEER_MAC, psrc=PEER_IP, hwdst=pkt[ARP].hwsrc,
                           pdst=pkt[ARP].psrc))
            assert self.plug.send(bytes(reply))
        elif ICMP in pkt and pkt[ICMP].type == 8 and pkt[IP].dst == PEER_IP:
            reply = (Ether(src=PEER_MAC, dst=pkt.src)
                     / IP(src=PEER_IP, dst=pkt[IP].src)
                     / ICMP(type=0, id=pkt[ICMP].id, seq=pkt[ICMP].seq)
                     / bytes(pkt[ICMP].payload))
            assert self.plug.send(bytes(reply))
            self.echo_replies += 1
        else:
            self.others.append(frame)

    def pump(self, until: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Serve frames until ``until()`` is true (True) or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        while not until():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            select.select([self.plug.fileno()], [], [], min(left, 0.05))
            for frame in self.plug.recv_frames():
                self.handle(frame)
        return True


@pytest.fixture
def ns() -> Iterator[Netns]:
    """One namespace for the kernel side."""
    with netns("iothtap") as space:
        yield space


@pytest.mark.parametrize("offload", [False, True], ids=["plain", "offload"])
def test_kernel_ping_through_tap(ns: Netns, offload: bool) -> None:
    require_tools("ping")
    with open_tap(ns, offload) as plug:
        peer = MiniPeer(plug)
        done = threading.Event()
        result: list[int] = []

        def pinger() -> None:
            proc = ns.run(["ping", "-c", "2", "-i", "0.2", "-W", "2", PEER_IP], check=False)
            result.append(proc.returncode)
            done.set()

        thread = threading.Thread(target=pinger)
        thread.start()
        assert peer.pump(done.is_set, timeout=15)
        thread.join()
        assert result == [0]
        assert peer.echo_replies >= 2
        assert plug.counters.tx_dropped == 0


def run_tcp_sender(ns: Netns, nbytes: int, port: int) -> None:
    """Start a kernel TCP client in ``ns`` that sends ``nbytes`` of a known pattern."""
    script = (
        "import socket,sys\n"
        f"data=bytes(range(256))*({nbytes}//256+1)\n"
        f"s=socket.create_connection(('{PEER_IP}',{port}),timeout=10)\n"
        f"s.sendall(data[:{nbytes}])\n"
        "import time; time.sleep(10)\n"
    )
    ns.popen(["python3", "-c", script])


@pytest.mark.parametrize("offload", [False, True], ids=["plain", "offload"])
def test_kernel_tcp_sender_frames(ns: Netns, offload: bool) -> None:
    """The kernel sends TCP data to a static neighbour whose handshake we complete by hand.

    With offloads the kernel hands over TSO super-frames (> 1514 bytes) with partial checksums;
    the plug must deliver them whole, with correct checksums and intact data.
    """
    require_tools("python3")
    nbytes, port = 200_000, 5001
    pattern = bytes(range(256)) * (nbytes // 256 + 1)
    with open_tap(ns, offload) as plug:
        ns.run(["ip", "neigh", "replace", PEER_IP, "lladdr", PEER_MAC, "dev", plug.ifname,
                "nud", "permanent"])
        run_tcp_sender(ns, nbytes, port)
        isn = 1_000_000
        state: dict[str, int] = {"got": 0, "client_isn": -1}
        data_frames: list[bytes] = []

        def handle(frame: bytes) -> None:
            pkt = Ether(frame)
            if TCP not in pkt or pkt[TCP].dport != port:
                return
            tcp = pkt[TCP]
            base = (Ether(src=PEER_MAC, dst=pkt.src) / IP(src=PEER_IP, dst=pkt[IP].src))
            if tcp.flags.S:
                state["client_isn"] = tcp.seq
                synack = base / TCP(sport=port, dport=tcp.sport, flags="SA", seq=isn,
                                    ack=tcp.seq + 1, window=65535,
                                    options=[("MSS", 1460), ("WScale", 7)])
                assert plug.send(bytes(synack))
                return
            payload = bytes(tcp.payload)
            if not payload:
                return
            data_frames.append(frame)
            offset = tcp.seq - state["client_isn"] - 1
            assert payload == pattern[offset: offset + len(payload)], "data corrupted"
            state["got"] = max(state["got"], offset + len(payload))
            ack = base / TCP(sport=port, dport=tcp.sport, flags="A", seq=isn + 1,
                             ack=state["client_isn"] + 1 + state["got"], window=4096)
            assert plug.send(bytes(ack))

        deadline = time.monotonic() + 15
        while state["got"] < nbytes and time.monotonic() < deadline:
            select.select([plug.fileno()], [], [], 0.05)
            for frame in plug.recv_frames():
                handle(frame)
        assert state["got"] == nbytes, f"received {state['got']} of {nbytes} bytes"
        sizes = [len(f) for f in data_frames]
        for frame in data_frames:
            pkt = Ether(frame)
            assert pkt[IP].len == len(frame) - 14
            assert tcp_checksum_ok(pkt), f"bad TCP checksum in a {len(frame)}-byte frame"
        if offload:
            assert max(sizes) > 1514, f"no super-frame among sizes {sorted(set(sizes))}"
        else:
            assert max(sizes) <= 1514


def test_gso_superframe_is_segmented_by_kernel() -> None:
    """A 30000-byte TCP segment sent with a GSO header is cut by the kernel into link-MTU
    segments and forwarded over a 1500-byte veth; the same frame without GSO is refused with
    ICMP "fragmentation needed"."""
    require_tools("python3")
    require_root()
    port, size = 5002, 30000
    with netns("iothtapr") as router, netns("iothtaps") as server:
        va, vb = ifname("va"), ifname("vb")
        run(["ip", "-n", router.name, "link", "add", va, "type", "veth", "peer", "name", vb,
             "netns", server.name])
        router.sh(f"ip addr add 203.0.113.1/24 dev {va} && ip link set {va} up && "
                  "sysctl -qw net.ipv4.ip_forward=1")
        server.sh(f"ip addr add {FAR_IP}/24 dev {vb} && ip link set {vb} up && "
                  "ip route add default via 203.0.113.1")
        script = (
            "import socket,hashlib,sys\n"
            f"s=socket.socket(); s.bind(('{FAR_IP}',{port})); s.listen(1)\n"
            "print('ready',flush=True)\n"
            "c,_=s.accept(); c.settimeout(8); buf=b''\n"
            f"while len(buf)<{size}:\n"
            "    d=c.recv(65536)\n"
            "    if not d: break\n"
            "    buf+=d\n"
            "print(len(buf),hashlib.sha256(buf).hexdigest(),flush=True)\n"
        )
        listener = server.popen(["python3", "-c", script], stdout=subprocess.PIPE)
        try:
            assert listener.stdout is not None
            assert listener.stdout.readline().strip() == b"ready"
            with open_tap(router, offload=True) as plug:
                router.run(["ip", "neigh", "replace", PEER_IP, "lladdr", PEER_MAC, "dev",
                            plug.ifname, "nud", "permanent"])
                peer = MiniPeer(plug)
                sport, isn = 40000, 7000
                tap_mac = router.run(
                    ["cat", f"/sys/class/net/{plug.ifname}/address"]).stdout.strip()
                base = Ether(src=PEER_MAC, dst=tap_mac) / IP(
                    src=PEER_IP, dst=FAR_IP, flags="DF")

                def got_synack() -> bool:
                    for frame in peer.others:
                        pkt = Ether(frame)
                        if TCP in pkt and pkt[TCP].flags.S and pkt[TCP].flags.A:
                            state["server_isn"] = pkt[TCP].seq
                            return True
                    return False

                state: dict[str, int] = {}
                syn = base / TCP(sport=sport, dport=port, flags="S", seq=isn,
                                 options=[("MSS", 1460)])
                assert plug.send(bytes(syn))
                assert peer.pump(got_synack, timeout=10), "no SYN-ACK from the far kernel"
                ack = base / TCP(sport=sport, dport=port, flags="A", seq=isn + 1,
                                 ack=state["server_isn"] + 1, window=65535)
                assert plug.send(bytes(ack))
                data = bytes(range(256)) * (size // 256 + 1)
                data = data[:size]
                big = bytes(base / TCP(sport=sport, dport=port, flags="PA", seq=isn + 1,
                                       ack=state["server_isn"] + 1, window=65535) / data)
                assert len(big) == size + 54

                # Control: without a GSO header the router must refuse it (DF, MTU 1500).
                os.writev(plug.fileno(), [bytes(12), big])
                peer.others.clear()

                def frag_needed() -> bool:
                    return any(ICMP in Ether(f) and Ether(f)[ICMP].type == 3
                               and Ether(f)[ICMP].code == 4 for f in peer.others)

                assert peer.pump(frag_needed, timeout=10), "oversized frame was not refused"

                # The real thing: the plug adds the TCPV4 GSO header.
                assert plug.send(big)
                assert listener.stdout.readline().split() == [
                    str(size).encode(), hashlib.sha256(data).hexdigest().encode()]
                # ... and the router accepted it as link-MTU segments: no new "frag needed".
                peer.others.clear()
                peer.pump(lambda: False, timeout=0.3)
                assert not frag_needed()
                assert plug.counters.tx_dropped == 0
        finally:
            stop_process(listener)
