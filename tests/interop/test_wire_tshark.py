"""ioth.wire against real peers.

* tshark: frames emitted by ioth.wire dissect cleanly, no malformed packet, no bad checksum; a
  negative control (the same frames with a corrupted byte each) proves the check can fail.
* the Linux kernel (in a test namespace, through a TAP): a responder built only from ioth.wire
  makes the kernel's ping, socat UDP and socat TCP exchanges succeed over IPv4 and IPv6, with
  fragmentation both ways; every frame the kernel sends parses with verified checksums.
"""

from __future__ import annotations

import secrets
import select
import struct
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ioth.net.plug import Plug
from ioth.net.registry import open_plug
from ioth.wire import arp, ethernet, icmpv4, icmpv6, ipv4, ipv6, tcp, udp
from ioth.wire.errors import WireError
from tests.support.peers import Netns, require_root, require_tools, stop_process

pytestmark = pytest.mark.interop

M1 = ethernet.str_to_mac("02:00:00:00:00:01")
M2 = ethernet.str_to_mac("02:00:00:00:00:02")
A1 = ipv4.str_to_addr("192.0.2.1")
A2 = ipv4.str_to_addr("192.0.2.2")
S6 = ipv6.str_to_addr("2001:db8::1")
D6 = ipv6.str_to_addr("2001:db8::2")
LL1 = ipv6.link_local_from_mac(M1)
LL2 = ipv6.link_local_from_mac(M2)

ETH4 = ethernet.EthernetHeader(M2, M1, ethernet.ETHERTYPE_IPV4).emit()
ETH6 = ethernet.EthernetHeader(M2, M1, ethernet.ETHERTYPE_IPV6).emit()

CHECKS = ["-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
          "-o", "tcp.check_checksum:TRUE"]
BAD = "_ws.malformed || _ws.expert.severity >= error || ip.checksum.status == 0 || " \
      "udp.checksum.status == 0 || tcp.checksum.status == 0 || icmp.checksum.status == 0 || " \
      "icmpv6.checksum.status == 0"


def v4(proto: int, l4: bytes, src: bytes = A1, dst: bytes = A2, **kw: object) -> bytes:
    hdr = ipv4.Ipv4Header(src, dst, proto, len(l4), **kw)  # type: ignore[arg-type]
    return ETH4 + hdr.emit() + l4


def v6(nh: int, l4: bytes, src: bytes = S6, dst: bytes = D6, hlim: int = 64,
       eth: bytes = ETH6) -> bytes:
    return eth + ipv6.Ipv6Header(src, dst, nh, len(l4), hlim).emit() + l4


def udp4(data: bytes, sport: int = 5000, dport: int = 7) -> bytes:
    return udp.UdpHeader(sport, dport).emit(data, A1, A2) + data


def frames() -> list[bytes]:
    """One frame per feature of the wire layer (kept in the order described in the comments)."""
    out: list[bytes] = []
    payload = bytes(range(256)) * 6 + b"odd"
    out.append(v4(17, udp4(b"hello ioth", 40000, 7), ident=1, df=True))
    out.append(v4(17, udp4(payload[:1472]), ident=2))  # numpy checksum path, 1500-byte packet
    out.append(v4(17, udp.UdpHeader(7, 7).emit(b"nocsum", A1, A2, checksum=False) + b"nocsum"))
    vlan = ethernet.EthernetHeader(ethernet.BROADCAST, M1, ethernet.ETHERTYPE_ARP,
                                   (ethernet.VlanTag(100, 3),))
    out.append(ethernet.pad(vlan.emit() + arp.request(M1, A1, A2).emit()))
    out.append(ethernet.pad(ethernet.EthernetHeader(M1, M2, ethernet.ETHERTYPE_ARP).emit()
                            + arp.reply(arp.request(M1, A1, A2), M2).emit()))
    qinq = ethernet.EthernetHeader(M2, M1, ethernet.ETHERTYPE_IPV4, (
        ethernet.VlanTag(10, 1, False, ethernet.ETHERTYPE_QINQ), ethernet.VlanTag(20)))
    echo = icmpv4.Echo(0x4242, 1).emit(b"abcdefgh" * 7)
    out.append(qinq.emit() + ipv4.Ipv4Header(A1, A2, 1, len(echo), ident=3).emit() + echo)
    out.append(v4(1, icmpv4.Echo(0x4242, 1, True).emit(b"abcdefgh" * 7), A2, A1))
    offending = ipv4.Ipv4Header(A1, A2, 17, 8 + 1472, ident=4, df=True).emit() + udp4(
        payload[:1472])
    out.append(v4(1, icmpv4.DestUnreachable(icmpv4.UNREACH_FRAG_NEEDED, 1400).emit(
        icmpv4.quote(offending)), A2, A1))
    out.append(v4(1, icmpv4.DestUnreachable(icmpv4.UNREACH_PORT).emit(icmpv4.quote(
        offending, 28)), A2, A1))
    out.append(v4(1, icmpv4.TimeExceeded().emit(icmpv4.quote(offending)), A2, A1))
    out.append(v4(1, icmpv4.ParamProblem(1).emit(icmpv4.quote(offending)), A2, A1))
    # IPv4 fragments of a 3000-byte UDP datagram, with a copied option (Router Alert)
    big = udp4(payload * 2)
    hdr = ipv4.Ipv4Header(A1, A2, 17, len(big), ident=5, options=b"\x94\x04\x00\x00")
    out.extend(ETH4 + f for f in ipv4.fragment(hdr, big, 1500))
    # TCP over IPv4: SYN, SYN-ACK, data with timestamps, SACK
    syn = tcp.TcpHeader(40000, 80, 1000, 0, tcp.SYN, 64240, mss=1460, wscale=7,
                        sack_permitted=True, timestamps=(100, 0))
    out.append(v4(6, syn.emit(b"", A1, A2), ident=6, df=True))
    synack = tcp.TcpHeader(80, 40000, 5000, 1001, tcp.SYN | tcp.ACK, 65160, mss=1460, wscale=7,
                           sack_permitted=True, timestamps=(200, 100))
    out.append(v4(6, synack.emit(b"", A2, A1), A2, A1, df=True))
    data = b"GET / HTTP/1.0\r\n\r\n"
    seg = tcp.emit_fast(40000, 80, 1001, 5001, tcp.PSH | tcp.ACK, 502, data, A1, A2,
                        tcp.ts_option(101, 200)) + data
    out.append(v4(6, seg, ident=7, df=True))
    sack = tcp.TcpHeader(80, 40000, 5001, 1001, tcp.ACK, 509, timestamps=(201, 101),
                         sack_blocks=((1101, 1201),))
    out.append(v4(6, sack.emit(b"", A2, A1), A2, A1, df=True))
    bulk = payload[:1448]
    seg = tcp.emit_fast(80, 40000, 5001, 1019, tcp.ACK, 509, bulk, A2, A1,
                        tcp.ts_option(202, 101)) + bulk
    out.append(v4(6, seg, A2, A1, df=True))
    # IPv6: UDP, TCP, echo, errors
    u6 = udp.UdpHeader(40001, 40002).emit(b"v6 data", S6, D6) + b"v6 data"
    out.append(v6(17, u6))
    syn6 = syn.emit(b"", S6, D6)
    out.append(v6(6, syn6))
    out.append(v6(58, icmpv6.Echo(7, 1).emit(S6, D6, b"ping6" * 10)))
    off6 = ipv6.Ipv6Header(D6, S6, 17, 1600).emit() + udp.UdpHeader(1, 2).emit(
        payload[:1592], D6, S6) + payload[:1592]
    for err in (icmpv6.DestUnreachable(icmpv6.UNREACH_PORT), icmpv6.PacketTooBig(1280),
                icmpv6.TimeExceeded(), icmpv6.ParamProblem(icmpv6.PARAM_UNKNOWN_NEXT_HEADER, 6)):
        out.append(v6(58, err.emit(S6, D6, icmpv6.quote(off6))))
    # NDP
    sn = ipv6.solicited_node(D6)
    e_sn = ethernet.EthernetHeader(ethernet.ipv6_multicast_mac(sn), M1,
                                   ethernet.ETHERTYPE_IPV6).emit()
    ns = icmpv6.NeighborSolicit(D6, (icmpv6.LinkAddrOption(M1),))
    out.append(v6(58, ns.emit(S6, sn), S6, sn, 255, e_sn))
    out.append(v6(58, icmpv6.NeighborSolicit(D6).emit(ipv6.UNSPECIFIED, sn),
                  ipv6.UNSPECIFIED, sn, 255, e_sn))
    na = icmpv6.NeighborAdvert(D6, False, True, True, (icmpv6.LinkAddrOption(M2, True),))
    out.append(v6(58, na.emit(D6, S6), D6, S6, 255))
    rs = icmpv6.RouterSolicit((icmpv6.LinkAddrOption(M1),))
    out.append(v6(58, rs.emit(LL1, ipv6.ALL_ROUTERS), LL1, ipv6.ALL_ROUTERS, 255))
    ra = icmpv6.RouterAdvert(64, False, True, 1800, 30000, 1000, (
        icmpv6.LinkAddrOption(M2), icmpv6.MtuOption(1500),
        icmpv6.PrefixInfoOption(64, ipv6.str_to_addr("2001:db8:1::"), 86400, 14400),
        icmpv6.RdnssOption(600, (ipv6.str_to_addr("2001:db8::53"),)),
        icmpv6.DnsslOption(600, ("example.com", "test.example"))))
    out.append(v6(58, ra.emit(LL2, ipv6.ALL_NODES), LL2, ipv6.ALL_NODES, 255))
    redirected = ipv6.Ipv6Header(S6, ipv6.str_to_addr("2001:db8:5::9"), 17, 8).emit() + \
        udp.UdpHeader(1, 2).emit(b"", S6, ipv6.str_to_addr("2001:db8:5::9"))
    rd = icmpv6.Redirect(LL2, ipv6.str_to_addr("2001:db8:5::9"), (
        icmpv6.LinkAddrOption(M2, True), icmpv6.RedirectedHeaderOption(redirected)))
    out.append(v6(58, rd.emit(LL2, S6), LL2, S6, 255))
    # MLDv2 report with Hop-by-Hop Router Alert, and a general query
    rep = icmpv6.MldReport((
        icmpv6.McastRecord(icmpv6.CHANGE_TO_EXCLUDE, sn),
        icmpv6.McastRecord(icmpv6.MODE_IS_INCLUDE, ipv6.str_to_addr("ff05::1:3"),
                           (S6, D6))))
    body = rep.emit(LL1, ipv6.ALL_MLDV2_ROUTERS)
    hbh = ipv6.router_alert_header(ipv6.NH_ICMPV6)
    out.append(v6(ipv6.NH_HOPOPT, hbh + body, LL1, ipv6.ALL_MLDV2_ROUTERS, 1))
    q = icmpv6.MldQuery(10000, ipv6.UNSPECIFIED, True, False, 2, 125)
    out.append(v6(ipv6.NH_HOPOPT, hbh + q.emit(LL2, ipv6.ALL_NODES), LL2, ipv6.ALL_NODES, 1))
    # IPv6 fragments of a 3000-byte UDP datagram
    big6 = udp.UdpHeader(9, 9).emit(payload * 2, S6, D6) + payload * 2
    out.extend(ETH6 + f for f in ipv6.fragment(ipv6.Ipv6Header(S6, D6, 17, 0), big6, 1500, 99))
    return out


def write_pcap(path: Path, pkts: list[bytes]) -> None:
    """Minimal classic pcap writer (LINKTYPE_ETHERNET)."""
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, p in enumerate(pkts):
            f.write(struct.pack("<IIII", 1_700_000_000 + i, 0, len(p), len(p)))
            f.write(p)


def tshark(*args: str) -> str:
    res = subprocess.run(["tshark", *args], capture_output=True, text=True, timeout=60,
                         check=False)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_emitted_frames_dissect_cleanly(tmp_path: Path) -> None:
    require_tools("tshark")
    pkts = frames()
    pcap = tmp_path / "wire.pcap"
    write_pcap(pcap, pkts)
    # every frame is dissected down to the expected protocol
    protos = tshark("-r", str(pcap), *CHECKS, "-T", "fields", "-e", "frame.protocols")
    lines = protos.splitlines()
    assert len(lines) == len(pkts)
    joined = "\n".join(lines)
    for needle in ("eth:ethertype:ip:udp", "vlan:ethertype:arp", "ip:icmp:ip:udp", "ip:tcp",
                   "ieee8021ad:ethertype:vlan:ethertype:ip:icmp", "ipv6:udp", "ipv6:tcp",
                   "ipv6:icmpv6", "ipv6:ipv6.hopopts:icmpv6", "ipv6.fraghdr:udp"):
        assert needle in joined, f"{needle} not dissected:\n{joined}"
    # checksums are verified (status 1 = good) and nothing is malformed or an error
    bad = tshark("-r", str(pcap), *CHECKS, "-Y", BAD)
    assert bad == "", bad
    good = tshark("-r", str(pcap), *CHECKS, "-Y", "ip.checksum.status == 1 && "
                  "(udp.checksum.status == 1 || tcp.checksum.status == 1 || "
                  "icmp.checksum.status == 1)", "-T", "fields", "-e", "frame.number")
    assert len(good.split()) >= 14
    unverified = tshark("-r", str(pcap), *CHECKS, "-Y", "(ip && !(ip.checksum.status == 1)) || "
                        "(icmpv6 && !(icmpv6.checksum.status == 1))")
    assert unverified == "", unverified
    good6 = tshark("-r", str(pcap), *CHECKS, "-Y", "icmpv6.checksum.status == 1",
                   "-T", "fields", "-e", "frame.number")
    assert len(good6.split()) >= 12


def test_tshark_reads_the_values_we_emitted(tmp_path: Path) -> None:
    require_tools("tshark")
    pcap = tmp_path / "wire.pcap"
    write_pcap(pcap, frames())

    def fields(filt: str, *names: str) -> list[list[str]]:
        argv = ["-r", str(pcap), "-o", "tcp.relative_sequence_numbers:FALSE", "-Y", filt,
                "-T", "fields"]
        for n in names:
            argv += ["-e", n]
        return [line.split("\t") for line in tshark(*argv).splitlines()]

    assert fields("icmpv6.type == 134", "icmpv6.opt.prefix", "icmpv6.opt.prefix.length",
                  "icmpv6.opt.prefix.valid_lifetime", "icmpv6.opt.rdnss", "icmpv6.opt.dnssl",
                  "icmpv6.opt.mtu", "icmpv6.opt.src_linkaddr", "icmpv6.nd.ra.router_lifetime") == [
        ["2001:db8:1::", "64", "86400", "2001:db8::53", "example.com,test.example", "1500",
         "02:00:00:00:00:02", "1800"]]
    assert fields("icmpv6.type == 136", "icmpv6.nd.na.target_address",
                  "icmpv6.opt.target_linkaddr", "icmpv6.nd.na.flag.s", "icmpv6.nd.na.flag.o") == [
        ["2001:db8::2", "02:00:00:00:00:02", "1", "1"]]
    assert fields("icmpv6.type == 143", "icmpv6.mldr.nb_mcast_records",
                  "icmpv6.mldr.mar.multicast_address") == [["2", "ff02::1:ff00:2,ff05::1:3"]]
    assert fields("icmpv6.type == 130", "icmpv6.mld.maximum_response_code",
                  "icmpv6.mld.qqi") == [["10000", "125"]]
    assert fields("icmpv6.type == 2", "icmpv6.mtu") == [["1280"]]
    assert fields("tcp.flags.syn == 1 && ip", "tcp.options.mss_val", "tcp.options.wscale.shift",
                  "tcp.options.timestamp.tsval") == [["1460", "7", "100"], ["1460", "7", "200"]]
    assert fields("tcp.options.sack_le", "tcp.options.sack_le", "tcp.options.sack_re") == [
        ["1101", "1201"]]
    assert fields("icmp.type == 3 && icmp.code == 4", "icmp.mtu") == [["1400"]]
    assert fields("vlan", "vlan.id", "vlan.priority", "ieee8021ad.id") == [
        ["100", "3", ""], ["20", "0", "10"]]
    # fragment offsets in 8-byte units; the Router Alert option (148) is copied to every fragment
    assert fields("ip.flags.mf == 1 || ip.frag_offset > 0", "ip.frag_offset", "ip.opt.type") == [
        ["0", "148"], ["184", "148"], ["368", "148"]]


def test_negative_control_bad_checksums_are_flagged(tmp_path: Path) -> None:
    require_tools("tshark")
    pkts = frames()
    corrupted = []
    for p in pkts:
        b = bytearray(p)
        b[-1] ^= 0x01  # last payload byte: breaks the L4 checksum (or ARP padding: harmless)
        corrupted.append(bytes(b))
    pcap = tmp_path / "bad.pcap"
    write_pcap(pcap, corrupted)
    flagged = tshark("-r", str(pcap), *CHECKS, "-Y", BAD, "-T", "fields", "-e", "frame.number")
    # not flagged: the zero-checksum UDP frame, 2 ARP paddings, 4 non-final fragments
    assert len(flagged.split()) >= len(pkts) - 7


# -- the Linux kernel as the peer: a minimal responder built only from ioth.wire ------------------
#
# The test opens ``tap://IF[netns=NS/up]`` (no offload: the kernel completes every checksum) and
# answers with frames emitted by ioth.wire.  The kernel's ping (fragmented both ways), a socat UDP
# exchange and a socat TCP exchange only succeed if the kernel accepts what we emit; every frame the
# kernel sends must parse with verified checksums.

PEER_MAC = ethernet.str_to_mac("02:00:00:00:77:02")
K4, P4 = ipv4.str_to_addr("198.18.77.1"), ipv4.str_to_addr("198.18.77.2")
K6, P6 = ipv6.str_to_addr("fd00:77::1"), ipv6.str_to_addr("fd00:77::2")
ISS = 0x7FFFFFF0  # our initial sequence number (wraps during the exchange)
TSVAL = 424242


class KernelPeer:
    """Answers ARP/NS, echo requests, UDP to port 4000 and TCP to port 8000."""

    def __init__(self, plug: Plug) -> None:
        self.plug = plug
        self.kernel_mac = b""
        self.seen: set[str] = set()
        self.errors: list[str] = []
        self.frags: dict[tuple[int, bytes, int], list[tuple[int, bytes, bool]]] = {}
        self.syn: tcp.TcpHeader | None = None
        self.tcp_tsecr: list[int] = []
        self.replied = False

    # sending
    def send(self, ethertype: int, packet: bytes) -> None:
        frame = ethernet.pad(ethernet.emit_fast(self.kernel_mac, PEER_MAC, ethertype) + packet)
        assert self.plug.send(frame)

    def send_ip(self, v6: bool, proto: int, l4: bytes) -> None:
        if v6:
            for f in ipv6.fragment(ipv6.Ipv6Header(P6, K6, proto, 0), l4, 1500, 0x77):
                self.send(ethernet.ETHERTYPE_IPV6, f)
        else:
            for f in ipv4.fragment(ipv4.Ipv4Header(P4, K4, proto, len(l4), ident=0x77), l4,
                                   1500):
                self.send(ethernet.ETHERTYPE_IPV4, f)

    # receiving
    def pump(self, done: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            select.select([self.plug.fileno()], [], [], 0.05)
            for frame in self.plug.recv_frames(64):
                try:
                    self.handle(frame)
                except WireError as e:
                    self.errors.append(f"{type(e).__name__}: {e}: {frame.hex()}")

    def reassemble(self, key: tuple[int, bytes, int], off: int, data: bytes, more: bool
                   ) -> bytes | None:
        pieces = self.frags.setdefault(key, [])
        pieces.append((off, data, more))
        pieces.sort()
        out = b""
        for o, d, _ in pieces:
            if o != len(out):
                return None
            out += d
        if pieces[-1][2]:
            return None
        del self.frags[key]
        self.seen.add("reassembled")
        return out

    def handle(self, frame: bytes) -> None:
        eth, payload = ethernet.parse(frame)
        self.kernel_mac = self.kernel_mac or eth.src
        if eth.ethertype == ethernet.ETHERTYPE_ARP:
            req, _ = arp.parse(payload)
            self.seen.add("arp")
            if req.is_request and req.tpa == P4:
                self.send(ethernet.ETHERTYPE_ARP, arp.reply(req, PEER_MAC).emit())
        elif eth.ethertype == ethernet.ETHERTYPE_IPV4:
            ih, body = ipv4.parse(payload)
            if ih.is_fragment:
                self.seen.add("ipv4-fragment")
                whole = self.reassemble((4, ih.src, ih.ident), ih.frag_offset, bytes(body),
                                        ih.mf)
                if whole is None:
                    return
                body = memoryview(whole)
            self.upper(False, ih.proto, ih.src, ih.dst, body)
        elif eth.ethertype == ethernet.ETHERTYPE_IPV6:
            h6, body = ipv6.parse(payload)
            chain = ipv6.walk(body, h6.next_header, ipv6.is_multicast(h6.dst))
            data = body[chain.offset:]
            if chain.fragment is not None:
                self.seen.add("ipv6-fragment")
                whole = self.reassemble((6, h6.src, chain.fragment.ident),
                                        chain.fragment.offset, bytes(data), chain.fragment.more)
                if whole is None:
                    return
                data = memoryview(whole)
            self.upper(True, chain.proto, h6.src, h6.dst, data)

    def upper(self, v6: bool, proto: int, src: bytes, dst: bytes, body: memoryview) -> None:
        if proto == 1:
            msg, data = icmpv4.parse(body)
            self.seen.add("icmpv4")
            if isinstance(msg, icmpv4.Echo) and not msg.reply and dst == P4:
                self.send_ip(False, 1, msg.make_reply().emit(data))
        elif proto == 58:
            m6, data = icmpv6.parse(body, src, dst)
            self.seen.add(type(m6).__name__)
            if isinstance(m6, icmpv6.NeighborSolicit) and m6.target == P6:
                na = icmpv6.NeighborAdvert(P6, False, True, True,
                                           (icmpv6.LinkAddrOption(PEER_MAC, True),))
                self.send(ethernet.ETHERTYPE_IPV6, ipv6.Ipv6Header(
                    P6, src, 58, 32, 255).emit() + na.emit(P6, src))
            elif isinstance(m6, icmpv6.Echo) and not m6.reply and dst == P6:
                self.send_ip(True, 58, m6.make_reply().emit(P6, src, data))
        elif proto == 17:
            uh, data = udp.parse(body, src, dst)
            self.seen.add("udp")
            if uh.dst_port == 4000:
                answer = b"pong:" + bytes(data)
                us, ud = (P6, K6) if v6 else (P4, K4)
                self.send_ip(v6, 17, udp.UdpHeader(4000, uh.src_port).emit(answer, us, ud)
                             + answer)
        elif proto == 6:
            self.tcp(v6, src, dst, body)

    def tcp(self, v6: bool, src: bytes, dst: bytes, body: memoryview) -> None:
        th, data = tcp.parse(body, src, dst)
        self.seen.add("tcp")
        if th.dst_port != 8000:
            return
        us, ud = (P6, K6) if v6 else (P4, K4)

        def reply(seq: int, ack: int, flags: int, payload: bytes = b"", **opts: object) -> None:
            hdr = tcp.TcpHeader(8000, th.src_port, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, flags,
                                65535, **opts)  # type: ignore[arg-type]
            self.send_ip(v6, 6, hdr.emit(payload, us, ud) + payload)

        if th.flags & tcp.SYN:
            self.syn = th
            self.replied = False
            reply(ISS, th.seq + 1, tcp.SYN | tcp.ACK, mss=1400, wscale=7, sack_permitted=True,
                  timestamps=(TSVAL, th.timestamps[0] if th.timestamps else 0))
            return
        if th.timestamps:
            self.tcp_tsecr.append(th.timestamps[1])
        fin = 1 if th.flags & tcp.FIN else 0
        if not data and not fin:
            return
        rcv_nxt = th.seq + len(data) + fin
        ts = (TSVAL + 1, th.timestamps[0] if th.timestamps else 0)
        if not self.replied:
            self.replied = True
            self.seen.add("tcp-data:" + bytes(data).decode())
            reply(ISS + 1, rcv_nxt, tcp.ACK | tcp.PSH | tcp.FIN, b"world\n", timestamps=ts)
        else:
            reply(ISS + 8, rcv_nxt, tcp.ACK, timestamps=ts)


def test_kernel_accepts_what_wire_emits(make_netns: Callable[[], Netns]) -> None:
    require_root()
    require_tools("ping", "socat")
    ns = make_netns()
    name = "tw" + secrets.token_hex(4)
    with open_plug(f"tap://{name}[netns={ns.name}/up]") as plug:
        ns.sh(f"ip addr add 198.18.77.1/24 dev {name} && "
              f"ip -6 addr add fd00:77::1/64 dev {name} nodad")
        peer = KernelPeer(plug)

        def run(argv: list[str], stdin: bytes = b"") -> tuple[int, bytes]:
            proc = ns.popen(argv, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(stdin)
            proc.stdin.close()
            try:
                peer.pump(lambda: proc.poll() is not None, 15)
            finally:
                stop_process(proc)
            return proc.returncode, proc.stdout.read()

        rc, out = run(["ping", "-4", "-c", "2", "-i", "0.2", "-w", "8", "-s", "2500",
                       "198.18.77.2"])
        assert rc == 0, out
        rc, out = run(["socat", "-t", "1", "-T", "5", "-", "UDP4:198.18.77.2:4000"],
                      b"hello-udp4")
        assert out == b"pong:hello-udp4", (rc, out)
        rc, out = run(["socat", "-t", "3", "-T", "5", "-", "TCP4:198.18.77.2:8000"], b"hello4")
        assert out == b"world\n", (rc, out)
        assert peer.syn is not None and peer.syn.mss == 1460 and peer.syn.sack_permitted
        assert peer.syn.wscale is not None and peer.syn.timestamps is not None
        assert TSVAL in peer.tcp_tsecr  # the kernel understood our Timestamps option
        rc, out = run(["ping", "-6", "-c", "2", "-i", "0.2", "-w", "8", "-s", "2500",
                       "fd00:77::2"])
        assert rc == 0, out
        rc, out = run(["socat", "-t", "1", "-T", "5", "-", "UDP6:[fd00:77::2]:4000"],
                      b"hello-udp6")
        assert out == b"pong:hello-udp6", (rc, out)
        rc, out = run(["socat", "-t", "3", "-T", "5", "-", "TCP6:[fd00:77::2]:8000"], b"hello6")
        assert out == b"world\n", (rc, out)
        assert TSVAL in peer.tcp_tsecr
    assert peer.errors == []
    for kind in ("arp", "ipv4-fragment", "ipv6-fragment", "reassembled", "icmpv4", "udp", "tcp",
                 "NeighborSolicit", "Echo", "MldReport", "tcp-data:hello4", "tcp-data:hello6"):
        assert kind in peer.seen, (kind, sorted(peer.seen))
