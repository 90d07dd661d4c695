"""TapPlug against the Linux kernel stack, inside namespaces created by the tests.

The test process opens ``tap://IF[netns=NS/up]`` from the root namespace and acts as a minimal
peer built with scapy (198.51.100.2 / 2001:db8:1::2): it answers ARP, neighbour solicitations and
echo requests so that the kernel's ``ping`` works, completes TCP handshakes by hand so that the
kernel sends TSO super-frames, and sends a GSO super-frame that a forwarding kernel must segment
to pass it over a 1500-byte veth.
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
from dataclasses import dataclass

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6PacketTooBig,
    IPv6,
)
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet

from ioth.net.plugs.tap import TapPlug
from ioth.net.registry import open_plug
from tests.support.peers import Netns, netns, require_root, require_tools, run, stop_process

pytestmark = pytest.mark.interop

PEER_MAC = "02:10:20:30:40:02"


@dataclass(frozen=True)
class Family:
    """Addresses used for one IP version."""

    version: int
    kernel: str  # the kernel's address on the TAP
    peer: str  # our scapy peer behind the TAP
    prefix: int
    far_gw: str  # router side of the veth (GSO test)
    far: str  # server side of the veth

    def ip(self, src: str, dst: str) -> Packet:
        """An IP header of this family (IPv4 with DF)."""
        if self.version == 4:
            return IP(src=src, dst=dst, flags="DF")
        return IPv6(src=src, dst=dst)

    def add_addr(self, ns: Netns, addr: str, dev: str) -> None:
        """Add ``addr`` to ``dev`` in ``ns`` (IPv6 without duplicate address detection)."""
        extra = ["nodad"] if self.version == 6 else []
        ns.run(["ip", "addr", "add", f"{addr}/{self.prefix}", "dev", dev, *extra])

    def static_peer(self, ns: Netns, dev: str) -> None:
        """A permanent neighbour entry for the scapy peer."""
        ns.run(["ip", f"-{self.version}", "neigh", "replace", self.peer, "lladdr", PEER_MAC,
                "dev", dev, "nud", "permanent"])


V4 = Family(4, "198.51.100.1", "198.51.100.2", 24, "203.0.113.1", "203.0.113.2")
V6 = Family(6, "2001:db8:1::1", "2001:db8:1::2", 64, "2001:db8:2::1", "2001:db8:2::2")
FAMILIES = [pytest.param(V4, id="ipv4"), pytest.param(V6, id="ipv6")]


def ifname(prefix: str = "tk") -> str:
    """A random interface name."""
    return prefix + secrets.token_hex(4)


def open_tap(ns: Netns, offload: bool, fam: Family = V4) -> TapPlug:
    """A TAP inside ``ns``, up, with the kernel's address of ``fam`` on it."""
    name = ifname()
    plug = open_plug(f"tap://{name}[netns={ns.name}/up{'/offload' if offload else ''}]")
    assert isinstance(plug, TapPlug)
    fam.add_addr(ns, fam.kernel, name)
    return plug


def ip_len_ok(pkt: Packet, frame_len: int) -> bool:
    """The IP length field covers the whole frame (a super-frame stays one packet)."""
    if IP in pkt:
        return bool(pkt[IP].len == frame_len - 14)
    return bool(pkt[IPv6].plen == frame_len - 54)


def l4_checksum_ok(pkt: Packet, layer: type[Packet]) -> bool:
    """Recompute the TCP/UDP checksum with scapy and compare it with the one on the wire."""
    wire = pkt[layer].chksum
    clone = pkt.copy()
    del clone[layer].chksum
    return bool(Ether(bytes(clone))[layer].chksum == wire)


class MiniPeer:
    """A scapy-built host: answers ARP, neighbour solicitations and echo requests."""

    def __init__(self, plug: TapPlug, fam: Family = V4) -> None:
        self.plug = plug
        self.fam = fam
        self.echo_replies = 0
        self.others: list[bytes] = []

    def handle(self, frame: bytes) -> None:
        """Answer ``frame`` if it is for us; keep everything else in :attr:`others`."""
        pkt = Ether(frame)
        peer = self.fam.peer
        reply: Packet | None = None
        if ARP in pkt and pkt[ARP].op == 1 and pkt[ARP].pdst == peer:
            reply = (Ether(src=PEER_MAC, dst=pkt.src)
                     / ARP(op=2, hwsrc=PEER_MAC, psrc=peer, hwdst=pkt[ARP].hwsrc,
                           pdst=pkt[ARP].psrc))
        elif ICMP in pkt and pkt[ICMP].type == 8 and pkt[IP].dst == peer:
            reply = (Ether(src=PEER_MAC, dst=pkt.src) / IP(src=peer, dst=pkt[IP].src)
                     / ICMP(type=0, id=pkt[ICMP].id, seq=pkt[ICMP].seq)
                     / bytes(pkt[ICMP].payload))
            self.echo_replies += 1
        elif ICMPv6ND_NS in pkt and pkt[ICMPv6ND_NS].tgt == peer:
            reply = (Ether(src=PEER_MAC, dst=pkt.src) / IPv6(src=peer, dst=pkt[IPv6].src)
                     / ICMPv6ND_NA(tgt=peer, R=0, S=1, O=1)
                     / ICMPv6NDOptDstLLAddr(lladdr=PEER_MAC))
        elif ICMPv6EchoRequest in pkt and pkt[IPv6].dst == peer:
            req = pkt[ICMPv6EchoRequest]
            reply = (Ether(src=PEER_MAC, dst=pkt.src) / IPv6(src=peer, dst=pkt[IPv6].src)
                     / ICMPv6EchoReply(id=req.id, seq=req.seq, data=req.data))
            self.echo_replies += 1
        else:
            self.others.append(frame)
        if reply is not None:
            assert self.plug.send(bytes(reply))

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


@pytest.mark.parametrize("fam", FAMILIES)
@pytest.mark.parametrize("offload", [False, True], ids=["plain", "offload"])
def test_kernel_ping_through_tap(ns: Netns, offload: bool, fam: Family) -> None:
    """The kernel's ping reaches our scapy peer (address resolution included) and back."""
    require_tools("ping")
    with open_tap(ns, offload, fam) as plug:
        peer = MiniPeer(plug, fam)
        done = threading.Event()
        result: list[int] = []

        def pinger() -> None:
            proc = ns.run(["ping", f"-{fam.version}", "-c", "2", "-i", "0.2", "-W", "2",
                           fam.peer], check=False)
            result.append(proc.returncode)
            done.set()

        thread = threading.Thread(target=pinger)
        thread.start()
        assert peer.pump(done.is_set, timeout=15)
        thread.join()
        assert result == [0]
        assert peer.echo_replies >= 2
        assert plug.counters.tx_dropped == 0


@pytest.mark.parametrize("fam", FAMILIES)
@pytest.mark.parametrize("offload", [False, True], ids=["plain", "offload"])
def test_kernel_tcp_sender_frames(ns: Netns, offload: bool, fam: Family) -> None:
    """The kernel sends TCP data to a static neighbour whose handshake we complete by hand.

    With offloads the kernel hands over TSO super-frames (> 1514 bytes) with partial checksums;
    the plug must deliver them whole, with correct checksums and intact data.
    """
    require_tools("python3")
    nbytes, port = 200_000, 5001
    pattern = bytes(range(256)) * (nbytes // 256 + 1)
    with open_tap(ns, offload, fam) as plug:
        fam.static_peer(ns, plug.ifname)
        script = (
            "import socket,time\n"
            f"data=bytes(range(256))*({nbytes}//256+1)\n"
            f"s=socket.create_connection(('{fam.peer}',{port}),timeout=10)\n"
            f"s.sendall(data[:{nbytes}])\n"
            "time.sleep(10)\n"
        )
        ns.popen(["python3", "-c", script])
        isn = 1_000_000
        state: dict[str, int] = {"got": 0, "client_isn": -1}
        data_frames: list[bytes] = []

        def handle(frame: bytes) -> None:
            pkt = Ether(frame)
            if TCP not in pkt or pkt[TCP].dport != port:
                return
            tcp = pkt[TCP]
            src = pkt[IP].src if IP in pkt else pkt[IPv6].src
            base = Ether(src=PEER_MAC, dst=pkt.src) / fam.ip(fam.peer, src)
            if tcp.flags.S:
                state["client_isn"] = tcp.seq
                synack = base / TCP(sport=port, dport=tcp.sport, flags="SA", seq=isn,
                                    ack=tcp.seq + 1, window=65535,
                                    options=[("MSS", 1440), ("WScale", 7)])
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
            assert ip_len_ok(pkt, len(frame))
            assert l4_checksum_ok(pkt, TCP), f"bad TCP checksum in a {len(frame)}-byte frame"
        if offload:
            assert max(sizes) > 1514, f"no super-frame among sizes {sorted(set(sizes))}"
            assert plug.csum_completed >= len(data_frames)
        else:
            assert max(sizes) <= 1514
            assert plug.csum_completed == 0


@pytest.mark.parametrize("fam", FAMILIES)
def test_kernel_udp_partial_checksum_completed(ns: Netns, fam: Family) -> None:
    """With offloads the kernel leaves UDP checksums partial; the plug completes them."""
    require_tools("python3")
    with open_tap(ns, True, fam) as plug:
        fam.static_peer(ns, plug.ifname)
        sizes = [1, 2, 3, 100, 1001, 1400]
        script = (
            "import socket\n"
            f"s=socket.socket(socket.AF_INET{'6' if fam.version == 6 else ''},"
            "socket.SOCK_DGRAM)\n"
            f"for n in {sizes}:\n"
            f"    s.sendto(bytes([n % 256]) * n, ('{fam.peer}', 7777))\n"
        )
        ns.run(["python3", "-c", script])
        got: list[Packet] = []

        def enough() -> bool:
            for frame in plug.recv_frames():
                pkt = Ether(frame)
                if UDP in pkt and pkt[UDP].dport == 7777:
                    got.append(pkt)
            return len(got) == len(sizes)

        deadline = time.monotonic() + 10
        while not enough() and time.monotonic() < deadline:
            select.select([plug.fileno()], [], [], 0.05)
        assert [len(p[UDP].payload) for p in got] == sizes
        for pkt in got:
            assert l4_checksum_ok(pkt, UDP)
            assert pkt[UDP].chksum != 0
        assert plug.csum_completed >= len(sizes)


@pytest.mark.parametrize("fam", FAMILIES)
def test_gso_superframe_is_segmented_by_kernel(fam: Family) -> None:
    """A 30000-byte TCP segment sent with a GSO header is cut by the kernel into link-MTU
    segments and forwarded over a 1500-byte veth; the same frame without GSO is refused
    (ICMP "fragmentation needed" / ICMPv6 "packet too big")."""
    require_tools("python3")
    require_root()
    port, size = 5002, 30000
    with netns("iothtapr") as router, netns("iothtaps") as server:
        va, vb = ifname("va"), ifname("vb")
        run(["ip", "-n", router.name, "link", "add", va, "type", "veth", "peer", "name", vb,
             "netns", server.name])
        fam.add_addr(router, fam.far_gw, va)
        fam.add_addr(server, fam.far, vb)
        router.sh(f"ip link set {va} up && sysctl -qw net.ipv4.ip_forward=1 "
                  "net.ipv6.conf.all.forwarding=1")
        server.sh(f"ip link set {vb} up && ip -{fam.version} route add default via {fam.far_gw}")
        family = "socket.AF_INET6" if fam.version == 6 else "socket.AF_INET"
        script = (
            "import socket,hashlib\n"
            f"s=socket.socket({family}); s.bind(('{fam.far}',{port})); s.listen(1)\n"
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
            with open_tap(router, True, fam) as plug:
                fam.static_peer(router, plug.ifname)
                tap_mac = router.run(
                    ["cat", f"/sys/class/net/{plug.ifname}/address"]).stdout.strip()
                peer = MiniPeer(plug, fam)
                sport, isn = 40000, 7000
                base = Ether(src=PEER_MAC, dst=tap_mac) / fam.ip(fam.peer, fam.far)
                state: dict[str, int] = {}

                def got_synack() -> bool:
                    for frame in peer.others:
                        pkt = Ether(frame)
                        if TCP in pkt and pkt[TCP].flags.S and pkt[TCP].flags.A:
                            state["server_isn"] = pkt[TCP].seq
                            return True
                    return False

                syn = base / TCP(sport=sport, dport=port, flags="S", seq=isn,
                                 options=[("MSS", 1440)])
                assert plug.send(bytes(syn))
                assert peer.pump(got_synack, timeout=10), "no SYN-ACK from the far kernel"
                ack = base / TCP(sport=sport, dport=port, flags="A", seq=isn + 1,
                                 ack=state["server_isn"] + 1, window=65535)
                assert plug.send(bytes(ack))
                data = (bytes(range(256)) * (size // 256 + 1))[:size]
                big = bytes(base / TCP(sport=sport, dport=port, flags="PA", seq=isn + 1,
                                       ack=state["server_isn"] + 1, window=65535) / data)

                def refused() -> bool:
                    for frame in peer.others:
                        pkt = Ether(frame)
                        if ICMPv6PacketTooBig in pkt or (
                                ICMP in pkt and pkt[ICMP].type == 3 and pkt[ICMP].code == 4):
                            return True
                    return False

                # Control: without a GSO header the router must refuse it (MTU 1500).
                peer.others.clear()
                os.writev(plug.fileno(), [bytes(12), big])
                assert peer.pump(refused, timeout=10), "oversized frame was not refused"

                # The real thing: the plug adds the TCPV4/TCPV6 GSO header.
                assert plug.send(big)
                assert plug.gso_sent == 1
                assert listener.stdout.readline().split() == [
                    str(size).encode(), hashlib.sha256(data).hexdigest().encode()]
                # ... and the router accepted it as link-MTU segments: no new refusal.
                peer.others.clear()
                peer.pump(lambda: False, timeout=0.3)
                assert not refused()
                assert plug.counters.tx_dropped == 0
        finally:
            stop_process(listener)


def _bridge(a: TapPlug, b: TapPlug, stopping: threading.Event) -> None:
    """Move frames both ways between two plugs until ``stopping`` is set."""
    while not stopping.is_set():
        ready, _, _ = select.select([a.fileno(), b.fileno()], [], [], 0.05)
        for fd in ready:
            src, dst = (a, b) if fd == a.fileno() else (b, a)
            for frame in src.recv_frames():
                dst.send(frame)


@pytest.mark.parametrize("mode", ["plain", "offload", "mixed"])
def test_two_kernels_bridged_by_tap_plugs(mode: str) -> None:
    """Two kernels in two namespaces talk TCP through two TapPlugs bridged in this process.

    With offloads every super-frame crosses the bridge whole: received from one kernel (TSO,
    checksum completed by the plug) and handed to the other as GSO.  In ``mixed`` the sender's
    TAP offloads and the receiver's does not: its plug segments the super-frames in software.
    """
    offload = mode == "offload"
    require_tools("python3")
    require_root()
    size, port = 4_000_000, 5003
    with netns("iothtapa") as ns_a, netns("iothtapb") as ns_b:
        a = open_tap(ns_a, mode != "plain", Family(4, "198.18.0.1", "", 24, "", ""))
        b = open_tap(ns_b, offload, Family(4, "198.18.0.2", "", 24, "", ""))
        stopping = threading.Event()
        thread = threading.Thread(target=_bridge, args=(a, b, stopping), daemon=True)
        thread.start()
        script = (
            "import socket,hashlib\n"
            f"s=socket.socket(); s.bind(('198.18.0.2',{port})); s.listen(1)\n"
            "print('ready',flush=True)\n"
            "c,_=s.accept(); c.settimeout(10); h=hashlib.sha256(); n=0\n"
            "while True:\n"
            "    d=c.recv(1<<20)\n"
            "    if not d: break\n"
            "    h.update(d); n+=len(d)\n"
            "print(n,h.hexdigest(),flush=True)\n"
        )
        listener = ns_b.popen(["python3", "-c", script], stdout=subprocess.PIPE)
        try:
            assert listener.stdout is not None
            assert listener.stdout.readline().strip() == b"ready"
            data = secrets.token_bytes(size)
            sender = (
                "import socket,sys\n"
                "data=sys.stdin.buffer.read()\n"
                f"s=socket.create_connection(('198.18.0.2',{port}),timeout=10)\n"
                "s.sendall(data); s.close()\n"
            )
            subprocess.run(ns_a.argv(["python3", "-c", sender]), input=data, check=True,
                           timeout=25)
            assert listener.stdout.readline().split() == [
                str(size).encode(), hashlib.sha256(data).hexdigest().encode()]
        finally:
            stopping.set()
            thread.join()
            stop_process(listener)
            a.close()
            b.close()
        assert a.counters.tx_dropped == b.counters.tx_dropped == 0
        if mode != "plain":
            assert a.csum_completed > 0
            # the data side sent super-frames: its average frame is bigger than a 1500-MTU one
            assert a.counters.rx_bytes / a.counters.rx_frames > 1514
        if mode == "offload":
            assert b.gso_sent > 0 and b.segmented == 0
        elif mode == "mixed":
            assert b.gso_sent == 0 and b.segmented > 0
        else:
            assert a.csum_completed == b.gso_sent == b.segmented == 0
