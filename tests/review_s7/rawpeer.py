"""Session 7 review: a raw packet peer for TCP on the wire, the Linux kernel as the oracle.

The peer is an AF_PACKET socket in the peer namespace of a review-s5 pair
(:func:`tests.support.referee.sides`: the DUT is a second namespace's kernel behind a veth,
or an ioth stack on a TAP).  It owns addresses no kernel holds (192.0.2.9 and 2001:db8::9,
its own MAC), answers ARP and neighbour solicitations for them itself, and crafts every TCP
segment it sends (:mod:`ioth.wire`), so the peer namespace's kernel never answers for it
(frames to the peer's MAC are "other host" frames there, dropped before IP).

A :class:`Flow` is one 4-tuple seen from the peer: it sends segments with sequence and
acknowledgment numbers relative to its own ISN and the DUT's, and renders what the DUT sends
back in a normal form (:meth:`Flow.norm`: relative numbers, options by name, the DUT's own
timestamps and ISN abstracted) that is the same for two correct TCPs.
"""

from __future__ import annotations

import contextlib
import errno
import secrets
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ioth.wire import icmpv4, icmpv6, ipv6
from ioth.wire import tcp as wt
from ioth.wire.icmpv6 import LinkAddrOption, NeighborAdvert, NeighborSolicit
from tests.net.nsutil import inside
from tests.support.referee import DUT_IP, DUT_IP6, Side, sides
from tests.support.twostacks import eth, ip4_packet, ip6_packet

ME4, ME6 = "192.0.2.9", "2001:db8::9"
MASK = 0xFFFFFFFF
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80
PACKET_OUTGOING = 4


def syn_opts(mss: int | None = 1460, sack: bool = True, ts: tuple[int, int] | None = (100, 0),
             ws: int | None = 7) -> bytes:
    """SYN options in Linux's layout (MSS, SACK-permitted + Timestamps, NOP + window
    scale), each left out when None/False, padded with NOPs to 4 bytes."""
    out = b""
    if mss is not None:
        out += struct.pack("!BBH", 2, 4, mss)
    if sack and ts is not None:
        out += struct.pack("!BBBBII", 4, 2, 8, 10, *ts)
    elif sack:
        out += b"\x01\x01\x04\x02"
    elif ts is not None:
        out += wt.ts_option(*ts)
    if ws is not None:
        out += bytes((1, 3, 3, ws))
    return out


def _nd(src: bytes, dst: bytes, msg: bytes) -> bytes:
    """An IPv6 packet with neighbour discovery's hop limit 255 around ``msg``."""
    pkt = bytearray(ip6_packet(src, dst, 58, msg))
    pkt[7] = 255
    return bytes(pkt)


_IDENTS = iter(range(0x1000 + secrets.randbelow(0x8000), 1 << 32))


@dataclass
class IpShape:
    """How the peer wraps a segment in IP: IPv4 ``options`` (a multiple of 4 bytes), an
    IPv6 Destination Options header before TCP (``dest_opts``), and fragments cut at
    ``cut`` bytes of the IP payload (a multiple of 8; IPv6: a Fragment header)."""

    options: bytes = b""
    dest_opts: bool = False
    cut: int | None = None

    def frames(self, v6: bool, src: bytes, dst: bytes, seg: bytes) -> list[bytes]:
        """The IP packets carrying ``seg`` (a fresh identification for fragments)."""
        ident = next(_IDENTS)
        if not v6:
            if self.cut is None:
                return [ip4_packet(src, dst, 6, seg, options=self.options)]
            a, b = seg[:self.cut], seg[self.cut:]
            return [ip4_packet(src, dst, 6, a, options=self.options, ident=ident & 0xFFFF,
                               frag=0x2000),
                    ip4_packet(src, dst, 6, b, ident=ident & 0xFFFF, frag=self.cut >> 3)]
        nh, body = 6, seg
        if self.dest_opts:
            body = ipv6.emit_options_header(6, [(0x1E, b"\0\0\0\0")]) + body  # (RFC 3692
            nh = 60  # experimental option type 0x1E: skip it when unknown)
        if self.cut is None:
            return [ip6_packet(src, dst, nh, body)]
        a, b = body[:self.cut], body[self.cut:]
        return [ip6_packet(src, dst, 44, ipv6.FragmentHeader(nh, 0, True, ident).emit() + a),
                ip6_packet(src, dst, 44, ipv6.FragmentHeader(nh, self.cut, False,
                                                             ident).emit() + b)]


@dataclass
class Seg:
    """One TCP segment the DUT sent to the peer (options decoded)."""

    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    window: int
    payload: bytes
    mss: int | None = None
    ws: int | None = None
    sack_ok: bool = False
    ts: tuple[int, int] | None = None
    sack: tuple[tuple[int, int], ...] = ()
    v6: bool = False
    when: float = 0.0
    packet: bytes = b""  # (the whole IP packet, for ICMP errors quoting it)


@dataclass
class Wire:
    """The raw peer on the link of namespace ``ns_name``'s interface ``dev``."""

    ns_name: str
    dev: str
    mac: bytes = field(default_factory=lambda: b"\x02\x5e" + secrets.token_bytes(4))
    dut_mac: bytes | None = None
    segs: list[Seg] = field(default_factory=list)
    others: int = 0

    def __post_init__(self) -> None:
        with inside(self.ns_name):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
        self.sock.bind((self.dev, 0))
        self.sock.settimeout(0.1)
        self.me4 = socket.inet_aton(ME4)
        self.me6 = socket.inet_pton(socket.AF_INET6, ME6)
        #: more IPv4 addresses of the peer (192.0.2.10 to .25), for scenarios that need a
        #: source the DUT has no state about (a path MTU it learned, say)
        self.aliases4 = [socket.inet_aton(f"192.0.2.{i}") for i in range(10, 26)]
        self._mine4 = {self.me4, *self.aliases4}
        self.dut4 = socket.inet_aton(DUT_IP)
        self.dut6 = socket.inet_pton(socket.AF_INET6, DUT_IP6)
        self.cond = threading.Condition()
        self.stop = False
        self.thread = threading.Thread(target=self._reader, daemon=True)
        self.thread.start()
        self._learn_dut()

    def close(self) -> None:
        """Stop the reader and close the socket."""
        self.stop = True
        self.thread.join(2)
        self.sock.close()

    def _learn_dut(self) -> None:
        """ARP for the DUT (which learns us from the request) and wait for its answer;
        a neighbour solicitation for its IPv6 address too."""
        req = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, self.mac, self.me4,
                          b"\0" * 6, self.dut4)
        deadline = time.monotonic() + 5
        while self.dut_mac is None and time.monotonic() < deadline:
            self.sock.send(eth(b"\xff" * 6, self.mac, 0x0806, req).ljust(60, b"\0"))
            with self.cond:
                self.cond.wait_for(lambda: self.dut_mac is not None, 0.5)
        assert self.dut_mac is not None, "the DUT never answered ARP"
        sn = bytes.fromhex("ff0200000000000000000001ff") + self.dut6[13:]
        ns = NeighborSolicit(self.dut6, (LinkAddrOption(self.mac),)).emit(self.me6, sn)
        self.sock.send(eth(b"\x33\x33" + sn[12:], self.mac, 0x86DD, _nd(self.me6, sn, ns)))

    def _reader(self) -> None:
        while not self.stop:
            try:
                frame, addr = self.sock.recvfrom(65536)
            except (TimeoutError, OSError):
                continue
            if addr[2] == PACKET_OUTGOING or frame[6:12] == self.mac:
                continue
            with contextlib.suppress(Exception):
                self._handle(frame)

    def _handle(self, frame: bytes) -> None:
        etype = struct.unpack_from("!H", frame, 12)[0]
        if etype == 0x0806:
            op, sha, spa, tpa = struct.unpack_from("!6xH6s4s6x4s", frame, 14)
            if spa == self.dut4:
                with self.cond:
                    self.dut_mac = sha
                    self.cond.notify_all()
            if op == 1 and tpa in self._mine4:
                rep = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 2, self.mac, tpa,
                                  sha, spa)
                self.sock.send(eth(sha, self.mac, 0x0806, rep).ljust(60, b"\0"))
            return
        if etype == 0x86DD:
            nh, src, dst = frame[20], frame[22:38], frame[38:54]
            if nh == 58 and frame[54] == 135 and frame[62:78] == self.me6:
                na = NeighborAdvert(self.me6, solicited=True, override=True,
                                    options=(LinkAddrOption(self.mac, True),)).emit(self.me6,
                                                                                   src)
                self.sock.send(eth(frame[6:12], self.mac, 0x86DD, _nd(self.me6, src, na)))
                return
            if nh == 6 and dst == self.me6:
                end = 54 + struct.unpack_from("!H", frame, 18)[0]
                self._tcp(frame[54:end], True, frame[14:end])
            return
        if etype == 0x0800 and frame[23] == 6 and frame[30:34] in self._mine4:
            ihl = (frame[14] & 15) * 4
            total = struct.unpack_from("!H", frame, 16)[0]
            self._tcp(frame[14 + ihl:14 + total], False, frame[14:14 + total])

    def _tcp(self, seg: bytes, v6: bool, packet: bytes) -> None:
        h, payload = wt.parse(seg)
        s = Seg(h.src_port, h.dst_port, h.seq, h.ack, h.flags, h.window, bytes(payload),
                h.mss, h.wscale, h.sack_permitted, h.timestamps, h.sack_blocks, v6,
                time.monotonic(), packet)
        with self.cond:
            self.segs.append(s)
            self.cond.notify_all()

    def send(self, v6: bool, sport: int, dport: int, seq: int, ack: int, flags: int,
             window: int, data: bytes = b"", opts: bytes = b"", bad_sum: bool = False,
             ip: IpShape | None = None, src4: bytes | None = None) -> None:
        """Send one TCP segment from the peer to the DUT (``bad_sum``: a wrong checksum;
        ``ip``: IP options, IPv6 extension headers, fragments; ``src4``: another IPv4
        source of the peer's)."""
        assert self.dut_mac is not None
        src, dst = (self.me6, self.dut6) if v6 else (src4 or self.me4, self.dut4)
        hdr = wt.emit_fast(sport, dport, seq & MASK, ack & MASK, flags, window, data, src, dst,
                           opts)
        if bad_sum:
            hdr = hdr[:16] + bytes((hdr[16] ^ 0x5A, hdr[17])) + hdr[18:]
        for frame in (ip or IpShape()).frames(v6, src, dst, hdr + data):
            self.sock.send(eth(self.dut_mac, self.mac, 0x86DD if v6 else 0x0800,
                               frame).ljust(60, b"\0"))

    def too_big(self, seg: Seg, mtu: int) -> None:
        """An ICMP "fragmentation needed" (IPv4, RFC 1191) or "packet too big" (IPv6, RFC
        8201) with next-hop MTU ``mtu``, quoting the DUT's segment ``seg`` (as a router on
        the path would, from the peer's address)."""
        assert self.dut_mac is not None
        if seg.v6:
            msg = icmpv6.PacketTooBig(mtu).emit(self.me6, self.dut6, icmpv6.quote(seg.packet))
            frame = eth(self.dut_mac, self.mac, 0x86DD, ip6_packet(self.me6, self.dut6, 58, msg))
        else:
            msg = icmpv4.DestUnreachable(icmpv4.UNREACH_FRAG_NEEDED, mtu).emit(
                icmpv4.quote(seg.packet))
            frame = eth(self.dut_mac, self.mac, 0x0800, ip4_packet(self.me4, self.dut4, 1, msg))
        self.sock.send(frame.ljust(60, b"\0"))

    def unreachable(self, seg: Seg, code: int, seq_delta: int = 0) -> None:
        """An ICMP destination unreachable (IPv4 or IPv6 ``code``) quoting the DUT's
        segment ``seg``, its sequence number moved by ``seq_delta`` (a blind attacker's
        guess outside SND.UNA..SND.NXT)."""
        assert self.dut_mac is not None
        pkt = bytearray(seg.packet)
        off = 40 if seg.v6 else (pkt[0] & 15) * 4
        struct.pack_into("!I", pkt, off + 4, (seg.seq + seq_delta) & MASK)
        if seg.v6:
            msg = icmpv6.DestUnreachable(code).emit(self.me6, self.dut6, icmpv6.quote(pkt))
            frame = eth(self.dut_mac, self.mac, 0x86DD, ip6_packet(self.me6, self.dut6, 58, msg))
        else:
            msg = icmpv4.DestUnreachable(code).emit(icmpv4.quote(pkt))
            frame = eth(self.dut_mac, self.mac, 0x0800, ip4_packet(self.me4, self.dut4, 1, msg))
        self.sock.send(frame.ljust(60, b"\0"))

    def take(self, match: Callable[[Seg], bool], wait: float,
             until: Callable[[list[Seg]], bool] | None = None, settle: float = 0.1
             ) -> list[Seg]:
        """Remove and return the segments ``match`` accepts that came (or come) within
        ``wait`` s; with ``until``, stop waiting ``settle`` s after ``until`` accepts them."""
        deadline = time.monotonic() + wait
        got: list[Seg] = []
        done_at: float | None = None
        with self.cond:
            while True:
                keep: list[Seg] = []
                for s in self.segs:
                    (got if match(s) else keep).append(s)
                self.segs[:] = keep
                now = time.monotonic()
                if done_at is None and until is not None and until(got):
                    done_at = now + settle
                end = deadline if done_at is None else min(deadline, done_at)
                if now >= end:
                    return got
                self.cond.wait(end - now)


_PORTS = iter(range(40000 + secrets.randbelow(10000), 65000))


class Flow:
    """One connection (4-tuple) from the peer's side: the peer's ISN is :attr:`iss`
    (relative 0), the DUT's :attr:`irs` once seen (relative 0 of the DUT's numbers)."""

    def __init__(self, wire: Wire, dport: int, v6: bool = False, sport: int | None = None,
                 iss: int = 0x10000000, tsval: int = 100) -> None:
        self.wire = wire
        self.v6 = v6
        self.dport = dport
        self.sport = next(_PORTS) if sport is None else sport
        self.iss = iss
        self.irs: int | None = None
        self.tsval = tsval
        self.ts_on = True
        self.their_ts: int | None = None
        self.their_ws = 0  # (the DUT's window scale, from its SYN or SYN-ACK)
        self.syn_seg: Seg | None = None  # (the DUT's SYN, when it connected)
        self.src4: bytes | None = None  # (another IPv4 source: one of Wire.aliases4)
        self.window = 512  # (the window field of every segment but the SYN, which has
        #                  65535: 64 kB with the SYN's window scale 7)
        self.nxt = 1  # (relative: the peer's next sequence number)
        self.ecr = True  # (False: :meth:`norm` leaves the echoed TSval out)
        self.sacks = True  # (False: :meth:`norm` leaves SACK blocks out)
        self.rcv = 1  # (relative: the next byte expected from the DUT; moves with what
        #               :meth:`recv` sees in order)

    # -- sending ---------------------------------------------------------------------------
    def send(self, flags: int, seq: int | None = None, ack: int | None = None,
             data: bytes = b"", opts: bytes | None = None, window: int | None = None,
             raw_ack: int | None = None, ts: tuple[int, int] | None = None,
             bad_sum: bool = False, ip: IpShape | None = None) -> None:
        """Send a segment; ``seq`` relative to :attr:`iss` (default :attr:`nxt`), ``ack``
        relative to :attr:`irs` (default :attr:`rcv`; ``raw_ack`` an absolute number);
        options: ``opts`` as given, else the timestamps when on (``ts`` or the next TSval
        and the DUT's last one)."""
        s = self.nxt if seq is None else seq
        if raw_ack is not None:
            a = raw_ack
        elif flags & ACK:
            assert self.irs is not None
            a = self.irs + (self.rcv if ack is None else ack)
        else:
            a = 0
        if opts is None:
            if self.ts_on:
                if ts is None:
                    self.tsval += 1
                    ts = (self.tsval, self.their_ts or 0)
                opts = wt.ts_option(ts[0] & MASK, ts[1] & MASK)
            else:
                opts = b""
        self.wire.send(self.v6, self.sport, self.dport, self.iss + s, a, flags,
                       self.window if window is None else window, data, opts, bad_sum, ip,
                       self.src4)

    def syn(self, opts: bytes | None = None, data: bytes = b"", flags: int = SYN) -> None:
        """Send the SYN (options: :func:`syn_opts` by default)."""
        self.tsval += 1
        self.send(flags, seq=0, data=data, window=65535,
                  opts=syn_opts(ts=(self.tsval & MASK, 0)) if opts is None else opts)

    def mine(self, s: Seg) -> bool:
        """True for segments of this flow."""
        return s.v6 == self.v6 and s.sport == self.dport and s.dport == self.sport

    def recv(self, wait: float = 1.0, until: Callable[[list[Seg]], bool] | None = None,
             settle: float = 0.1) -> list[Seg]:
        """The DUT's segments of this flow in ``wait`` s (see :meth:`Wire.take`); the DUT's
        ISN and last TSval are noted."""
        got = self.wire.take(self.mine, wait, until, settle)
        for s in got:
            if s.flags & RST:
                continue
            if s.flags & SYN and self.irs is None:
                self.irs = s.seq
                self.their_ws = s.ws or 0
            if s.ts is not None:
                self.their_ts = s.ts[0]
            start = self._rel(s.seq, self.irs) + (1 if s.flags & SYN else 0)
            if start == self.rcv:
                self.rcv += len(s.payload) + (1 if s.flags & FIN else 0)
        return got

    def recv_one(self, wait: float = 3.0) -> list[Seg]:
        """The DUT's segments, waiting for the first (then ``settle`` more)."""
        return self.recv(wait, until=bool)

    def quiet(self, wait: float = 0.5) -> list[str]:
        """What the DUT sends in ``wait`` s, normalised (a scenario expecting nothing)."""
        return [self.norm(s) for s in self.recv(wait)]

    def ask(self, wait: float = 3.0, settle: float = 0.1) -> list[str]:
        """The DUT's answer (the first segment then ``settle`` s more), normalised."""
        return [self.norm(s) for s in self.recv(wait, until=bool, settle=settle)]

    # -- normal form -----------------------------------------------------------------------
    @staticmethod
    def _rel(x: int, base: int | None) -> int:
        if base is None:
            return x
        d = (x - base) & MASK
        return d - (1 << 32) if d >= 1 << 31 else d

    def norm(self, s: Seg, window: bool = False) -> str:
        """``FLAGS seq=S ack=A [len=N] [w0] [opts]``: seq relative to the DUT's ISN (raw
        when unknown, as in a reset to a SYN; a reset's zero as it is), ack relative to the
        peer's ISN (only with ACK), PSH left out (when to set it is the sender's choice),
        window shown only when zero (or always with ``window``), timestamps as ``ts`` with
        the echoed value (unless :attr:`ecr` is False), SACK blocks relative to the peer's
        ISN (unless :attr:`sacks` is False)."""
        f = "".join(c for b, c in ((SYN, "S"), (FIN, "F"), (RST, "R"), (ACK, "A"), (URG, "U"),
                                   (ECE, "E"), (CWR, "W")) if s.flags & b)
        seq = 0 if s.flags & RST and s.seq == 0 else self._rel(s.seq, self.irs)
        out = [f or "-", f"seq={seq}"]
        if s.flags & ACK:
            out.append(f"ack={self._rel(s.ack, self.iss)}")
        if s.payload:
            out.append(f"len={len(s.payload)}")
        if window:
            out.append(f"win={s.window}")
        elif s.window == 0 and not s.flags & RST:
            out.append("w0")
        if s.mss is not None:
            out.append(f"mss={s.mss}")
        if s.sack_ok:
            out.append("sackok")
        if s.ws is not None:
            out.append("ws")
        if s.ts is not None:
            out.append(f"ts(ecr={s.ts[1]})" if self.ecr else "ts")
        if s.sack and self.sacks:
            blocks = ",".join(f"{self._rel(a, self.iss)}-{self._rel(b, self.iss)}"
                              for a, b in s.sack)
            out.append(f"sack={blocks}")
        return " ".join(out)

    # -- common openings -------------------------------------------------------------------
    @classmethod
    def incoming(cls, wire: Wire, port: int, v6: bool = False, wait: float = 3.0
                 ) -> tuple[Flow, list[str]]:
        """The flow of the DUT's connection to the peer's ``port`` (the DUT connects):
        waits for its SYN; returns the flow and the SYN normalised."""
        got = wire.take(lambda s: s.v6 == v6 and s.dport == port and bool(s.flags & SYN),
                        wait, until=bool, settle=0.05)
        assert got, "no SYN from the DUT"
        f = cls(wire, got[0].sport, v6, sport=port, iss=0x50000000)
        f.irs = got[0].seq
        f.their_ws = got[0].ws or 0
        f.syn_seg = got[0]
        f.their_ts = got[0].ts[0] if got[0].ts else None
        f.ts_on = got[0].ts is not None
        return f, [f.norm(s) for s in got]

    def connect(self, opts: bytes | None = None) -> list[str]:
        """The peer's three-way handshake to the DUT's listener: SYN, the SYN-ACK (noted),
        the ACK; returns the SYN-ACK normalised."""
        self.syn(opts)
        got = self.recv_one()
        assert got and got[0].flags & (SYN | ACK) == SYN | ACK, [self.norm(s) for s in got]
        if got[0].ts is None:
            self.ts_on = False
        self.send(ACK)
        return [self.norm(s) for s in got]

    def data(self, payload: bytes, flags: int = ACK | PSH) -> None:
        """Send ``payload`` at :attr:`nxt` (which moves on)."""
        self.send(flags, data=payload)
        self.nxt += len(payload) + (1 if flags & FIN else 0)


@dataclass
class Env:
    """One environment: the raw peer's :class:`Wire` and the DUT (a
    :class:`~tests.support.referee.Side`: socket factory and state query)."""

    wire: Wire
    dut: Side
    kind: str

    def listener(self, v6: bool = False, backlog: int = 8, rcvbuf: int | None = None) -> Any:
        """A DUT listener on an ephemeral port (timeout 5 s; SO_RCVBUF ``rcvbuf``)."""
        fam = socket.AF_INET6 if v6 else socket.AF_INET
        lst = self.dut(fam)
        if rcvbuf is not None:
            lst.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        lst.bind((DUT_IP6 if v6 else DUT_IP, 0))
        lst.listen(backlog)
        lst.settimeout(5)
        return lst

    def accepted(self, v6: bool = False, opts: bytes | None = None, rcvbuf: int | None = None
                 ) -> tuple[Any, Any, Flow, list[str]]:
        """(listener, accepted DUT socket, the peer's flow, the SYN-ACK normalised)."""
        lst = self.listener(v6, rcvbuf=rcvbuf)
        f = Flow(self.wire, lst.getsockname()[1], v6)
        synack = f.connect(opts)
        d, _ = lst.accept()
        d.settimeout(5)
        return lst, d, f, synack

    def dial(self, v6: bool = False) -> tuple[Any, Flow, list[str]]:
        """A non-blocking DUT socket connecting to the peer (a fresh port): (the socket, the
        peer's flow of it, the DUT's SYN normalised)."""
        port = next(_PORTS)
        d = self.dut(socket.AF_INET6 if v6 else socket.AF_INET)
        d.setblocking(False)
        d.connect_ex((ME6 if v6 else ME4, port))
        f, syn = Flow.incoming(self.wire, port, v6)
        return d, f, syn

    def states(self, f: Flow) -> list[str]:
        """The DUT's TCP states of flow ``f``."""
        return self.dut.states(f.dport, f.sport)


def read(d: Any, timeout: float = 5.0, n: int = 100) -> Any:
    """``d.recv(n)`` with ``timeout`` (the result, or the errno's or exception's name)."""
    d.settimeout(timeout)
    try:
        return d.recv(n)
    except OSError as exc:
        if exc.errno:
            return errno.errorcode.get(exc.errno, str(exc))
        return type(exc).__name__
    finally:
        with contextlib.suppress(OSError):
            d.settimeout(5)


def read_all(d: Any, size: int, chunk: int = 8192) -> bytes:
    """What ``d`` gives until ``size`` bytes came, the end of the stream, or no byte for 2 s
    (each read: :func:`read`)."""
    got = b""
    while len(got) < size:
        more = read(d, 2, chunk)
        if not isinstance(more, bytes) or not more:
            break
        got += more
    return got


def _peer_dev(ns_name: str) -> str:
    with inside(ns_name):
        names = [n for _, n in socket.if_nameindex() if n != "lo"]
    assert len(names) == 1, names
    return names[0]


@contextlib.contextmanager
def environment(kind: str) -> Iterator[Env]:
    """An :class:`Env` of ``kind`` ("kernel" or "ioth"), IPv4 and IPv6."""
    with sides(kind, "r7i" if kind == "ioth" else "r7", v6=True) as (peer, dut):
        assert peer.ns_name is not None
        if kind == "kernel":
            # (no GSO on the DUT's veth: the peer captures segments as they are on a wire)
            assert dut.ns_name is not None
            subprocess.run(["ip", "netns", "exec", dut.ns_name, "ip", "link", "set", "vb",
                            "gso_max_segs", "1"], check=True)
        wire = Wire(peer.ns_name, _peer_dev(peer.ns_name))
        try:
            yield Env(wire, dut, kind)
        finally:
            wire.close()


Scenario = Callable[[Env], list[Any]]


class Envs:
    """The module's two environments, made on first use, closed at the end."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._made: dict[str, Env] = {}
        self.oracle: dict[str, list[Any]] = {}

    def get(self, kind: str) -> Env:
        """The :class:`Env` of ``kind``."""
        if kind not in self._made:
            self._made[kind] = self._stack.enter_context(environment(kind))
        return self._made[kind]

    def close(self) -> None:
        """Tear both down."""
        self._stack.close()


def run(scenario: Scenario, kind: str, envs: Envs) -> None:
    """Run ``scenario`` against ``kind``: the kernel's run is the oracle, ioth's must be
    equal."""
    key = f"{scenario.__module__}.{scenario.__name__}"
    if key not in envs.oracle:
        envs.oracle[key] = scenario(envs.get("kernel"))
    if kind == "kernel":
        return
    got = scenario(envs.get("ioth"))
    want = envs.oracle[key]
    diff = [f"  [{i}] kernel {w!r}\n      ioth   {g!r}"
            for i, (w, g) in enumerate(zip(want, got, strict=False)) if w != g]
    if len(want) != len(got):
        diff.append(f"  lengths: kernel {len(want)} ioth {len(got)}")
    assert got == want, "ioth differs from the kernel:\n" + "\n".join(diff)
