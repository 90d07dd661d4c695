"""Two stack cores fed the same frames: the harness of the fused-versus-layered receive tests.

tests/stack/test_rx_fastpath.py, tests/review_s5/test_review_rx_plain.py and
tests/review_s5/test_review_rx_handshake.py build two :class:`ioth.stack.core.StackCore`
objects with the same seed and the same interface (vde0, MAC :data:`MAC_A`, address A, the
scripted peer B's MAC static), one with a receive short cut on and one with it off, feed both
the same frames and compare what they send and hold.  This module holds what they share: the
frame builders, :class:`CoreRig` (one core on the real ``input_frame`` path, a virtual
clock), :class:`Rig` (a :class:`CoreRig` with an established connection from B), the drawn
step :class:`Op` with :func:`build` (its frames) and :func:`snapshot` (what must agree), and
:func:`step_pair` (one step on both rigs, then the comparison).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import dataclass

from ioth.stack.core import StackCore
from ioth.stack.tcp.connection import State, TcpConnection
from ioth.wire import tcp as wire_tcp
from ioth.wire.checksum import checksum

MASK = 0xFFFFFFFF
MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")
A4, B4 = bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2])
A6 = bytes.fromhex("20010db8000000000000000000000001")
B6 = bytes.fromhex("20010db8000000000000000000000002")
PORT_A, PORT_B = 80, 40000
ACK, PSH, FIN, SYN, RST, URG, ECE, CWR = 0x10, 0x08, 0x01, 0x02, 0x04, 0x20, 0x40, 0x80


def ip4_packet(src: bytes, dst: bytes, proto: int, payload: bytes, *, options: bytes = b"",
               ident: int = 1, frag: int = 0x4000) -> bytes:
    """An IPv4 packet (TTL 64, header checksum right) around ``payload``."""
    ihl = 20 + len(options)
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x40 | (ihl >> 2), 0, ihl + len(payload), ident,
                                frag, 64, proto, 0, src, dst) + options)
    struct.pack_into("!H", hdr, 10, checksum(hdr))
    return bytes(hdr) + payload


def ip6_packet(src: bytes, dst: bytes, nh: int, payload: bytes) -> bytes:
    """An IPv6 packet (hop limit 64) around ``payload``."""
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), nh, 64, src, dst) + payload


def eth(dst: bytes, src: bytes, etype: int, payload: bytes, vlan: int | None = None) -> bytes:
    """An Ethernet frame, 802.1Q-tagged with ``vlan`` when given."""
    if vlan is not None:
        return dst + src + struct.pack("!HH", 0x8100, vlan) + etype.to_bytes(2, "big") + payload
    return dst + src + etype.to_bytes(2, "big") + payload


class CoreRig:
    """One stack core, seeded with ``seed``, on a virtual clock: interface vde0 (MAC_A) up
    with address A (A4/24 or A6/64, DAD done), the peer B's MAC (MAC_B) static.

    ``fast`` sets ``StackCore.rx_fastpath`` and ``trusted`` the interface's
    ``rx_csum_trusted`` (left as the core has them when None).  Frames the setup sent stay in
    the interface's queue (:meth:`sent` takes them)."""

    def __init__(self, v6: bool, seed: int, *, fast: bool | None = None,
                 trusted: bool | None = None) -> None:
        self.v6 = v6
        self.core = core = StackCore(random.Random(seed))
        if fast is not None:
            core.rx_fastpath = fast
        self.iface = iface = core.add_interface("vde0", MAC_A, 1500)
        if trusted is not None:
            iface.rx_csum_trusted = trusted
        core.set_up(iface.index, True, 0.0)
        self.now = 0.0
        if v6:
            core.ip6.add_addr(iface.index, A6, 64, 0.0)
            core.ip6.ndp.cache.add_static(iface.index, B6, MAC_B, 0.0)
            for _ in range(6):
                self.advance(1.0)  # DAD
            self.a, self.b = A6, B6
        else:
            core.add_addr4(iface.index, A4, 24, 0.0)
            core.arp.cache.add_static(iface.index, B4, MAC_B, 0.0)
            self.a, self.b = A4, B4

    def advance(self, dt: float) -> None:
        """Move the clock by ``dt`` and run the core's timers."""
        self.now += dt
        self.core.poll(self.now)

    def sent(self) -> list[bytes]:
        """The frames sent since the last call (the interface's queue, emptied)."""
        q = self.iface.txq
        out = [bytes(f) for f in q]
        q.clear()
        return out

    def feed(self, frame: bytes) -> None:
        """One frame in, as a plug delivers it."""
        self.core.input_frame(self.iface.index, frame, self.now)


class Rig(CoreRig):
    """A :class:`CoreRig` with an established connection from a scripted peer (B, port
    :data:`PORT_B`) to it (A, listening on :data:`PORT_A`), window scale, SACK and
    timestamps negotiated; ``fast`` turns the fused receive path on or off."""

    def __init__(self, v6: bool, fast: bool, trusted: bool, seed: int) -> None:
        super().__init__(v6, seed, fast=fast, trusted=trusted)
        core = self.core
        self.iface.txq.clear()
        listener = core.tcp.listen(PORT_A)
        self.peer_ts = 1000
        self.snd = 5000  # the peer's next sequence number
        syn_opts = wire_tcp.TcpHeader(0, 0, 0, 0, 0, 0, mss=1460, wscale=7, sack_permitted=True,
                                      timestamps=(self.peer_ts, 0)).options_bytes()
        self.feed(self.frame(self.snd, 0, SYN, 65535, b"", syn_opts))
        synack = self.sent()[-1]
        off = 54 if v6 else 34
        self.iss = int.from_bytes(synack[off + 4:off + 8], "big")
        self.snd = (self.snd + 1) & MASK
        self.peer_ts += 1
        self.feed(self.frame(self.snd, (self.iss + 1) & MASK, ACK, 512, b"",
                             wire_tcp.ts_option(self.peer_ts, 0)))
        conn = listener.accept()
        assert conn is not None and conn.state is State.ESTABLISHED
        self.conn: TcpConnection = conn
        self.delivered = bytearray()

    def drain_app(self) -> None:
        """The application reads everything the connection holds (into :attr:`delivered`)."""
        while True:
            try:
                chunk = self.conn.recv(1 << 20)
            except (BlockingIOError, OSError):
                return
            if not chunk:
                return
            self.delivered += chunk

    def a_tsval(self) -> int:
        """The timestamp A sends now."""
        return (int(self.now * 1000) + self.conn._ts_offset) & MASK

    def frame(self, seq: int, ack: int, flags: int, window: int, payload: bytes,
              opts: bytes = b"", *, corrupt: int = 0, ip_options: bytes = b"",
              fragment: bool = False, vlan: int | None = None, dst_mac: bytes = MAC_A,
              truncate: int = 0, pad: int = 0, bad_ip_csum: bool = False) -> bytes:
        """Frames from the peer; ``fragment`` returns both IPv4 fragments joined by a
        separator the caller splits on (see :func:`frames_of`)."""
        hdr = wire_tcp.emit_fast(PORT_B, PORT_A, seq, ack, flags, window, payload, self.b,
                                 self.a, opts)
        seg = bytearray(hdr + payload)
        if corrupt:
            seg[corrupt % len(seg)] ^= 0x5A
        if self.v6:
            out = eth(dst_mac, MAC_B, 0x86DD, ip6_packet(self.b, self.a, 6, bytes(seg)), vlan)
        elif fragment:
            cut = max(8, (len(seg) // 2) & ~7)
            f1 = ip4_packet(self.b, self.a, 6, bytes(seg[:cut]), frag=0x2000, ident=7)
            f2 = ip4_packet(self.b, self.a, 6, bytes(seg[cut:]), frag=cut >> 3, ident=7)
            return eth(dst_mac, MAC_B, 0x0800, f1, vlan) + SPLIT + eth(dst_mac, MAC_B, 0x0800,
                                                                        f2, vlan)
        else:
            pkt = bytearray(ip4_packet(self.b, self.a, 6, bytes(seg), options=ip_options))
            if bad_ip_csum:
                pkt[10] ^= 0x01
            out = eth(dst_mac, MAC_B, 0x0800, bytes(pkt), vlan)
        if truncate:
            out = out[:max(0, len(out) - truncate)]
        return out + bytes(pad)


SPLIT = b"--fragment-split--"


def frames_of(blob: bytes) -> list[bytes]:
    """The frames of :meth:`Rig.frame`'s result (two for ``fragment``)."""
    return blob.split(SPLIT)


@dataclass
class Op:
    """One drawn input step (interpreted against the live state of the rig)."""

    kind: str
    size: int
    ack_delta: int
    window: int
    ts_kind: str
    extra: int
    flags: int
    batch: bool
    dt: float
    app_send: int


#: the kinds of :class:`Op` (:func:`build`), in-order data and pure ACKs most frequent
KINDS = ["inorder"] * 85 + ["pure_ack"] * 15 + [
    "ooo", "dup", "partial_dup", "corrupt", "bad_ip", "sack", "ts_unaligned", "no_ts", "fin",
    "rst", "urg", "syn", "ipopt", "frag", "vlan", "prio_tag", "mcast", "other_host",
    "truncate", "runt", "pad", "future", "beyond_window", "ece"]


def build(r: Rig, op: Op) -> list[bytes]:
    """Frames for ``op`` from the state of ``r`` (the fast rig; both rigs agree so far)."""
    c = r.conn
    rcv = c.rcv_nxt & MASK
    una, nxt = c.snd_una, c.snd_nxt
    if op.ack_delta >= 0:
        ack = (una + min(op.ack_delta, nxt - una)) & MASK
    else:
        ack = (una + op.ack_delta) & MASK
    if op.ts_kind == "next":
        r.peer_ts += 1
    ts = r.peer_ts - (50 if op.ts_kind == "old" else 0)
    ecr = 0 if op.ts_kind == "zero_ecr" else r.a_tsval()
    opts = wire_tcp.ts_option(ts & MASK, ecr)
    if not c.ts_ok:
        opts = b""
    payload = bytes((i * 7 + op.extra) & 0xFF for i in range(op.size))
    flags = ACK | op.flags
    seq = rcv
    kw: dict[str, object] = {}
    k = op.kind
    if k == "pure_ack":
        payload = b""
    elif k == "ooo":
        seq = (rcv + op.extra) & MASK
    elif k == "dup":
        seq = (rcv - max(1, len(payload))) & MASK
    elif k == "partial_dup":
        seq = (rcv - op.extra % 700) & MASK
    elif k == "corrupt":
        kw["corrupt"] = op.extra
    elif k == "bad_ip":
        kw["bad_ip_csum"] = True
    elif k == "sack":
        block = ((rcv + 2000) & MASK, (rcv + 3000) & MASK)
        opts = wire_tcp.TcpHeader(0, 0, 0, 0, 0, 0, timestamps=(ts & MASK, ecr),
                                  sack_blocks=(block,)).options_bytes()
    elif k == "ts_unaligned":
        opts = b"\x08\x0a" + struct.pack("!II", ts & MASK, ecr) + b"\x01\x00"
    elif k == "no_ts":
        opts = b""
    elif k == "fin":
        flags |= FIN
    elif k == "rst":
        flags = RST | ACK
        payload = b""
    elif k == "urg":
        flags |= URG
    elif k == "syn":
        flags = SYN
        payload = b""
    elif k == "ece":
        flags |= 0xC0
    elif k == "ipopt":
        kw["ip_options"] = b"\x01\x01\x01\x00"  # NOP NOP NOP EOL
    elif k == "frag":
        kw["fragment"] = True
    elif k == "vlan":
        kw["vlan"] = 5
    elif k == "prio_tag":
        kw["vlan"] = 0
    elif k == "mcast":
        kw["dst_mac"] = bytes.fromhex("01005e000001")
    elif k == "other_host":
        kw["dst_mac"] = bytes.fromhex("020000000099")
    elif k == "truncate":
        kw["truncate"] = 1 + op.extra % 40
    elif k == "runt":
        kw["truncate"] = 1400 + op.extra  # down to a few bytes, or nothing
    elif k == "pad":
        kw["pad"] = 1 + op.extra % 30
    elif k == "future":
        ack = (nxt + op.extra) & MASK
    elif k == "beyond_window":
        seq = (rcv + (c._rcv_adv - c.rcv_nxt) - 10) & MASK
    if r.v6 and k in ("ipopt", "frag", "bad_ip"):
        kw.pop("ip_options", None)
        kw.pop("fragment", None)
        kw.pop("bad_ip_csum", None)
    blob = r.frame(seq, ack, flags, op.window, payload, opts, **kw)  # type: ignore[arg-type]
    return frames_of(blob)


def snapshot(r: Rig) -> tuple[object, ...]:
    """Everything observable of ``r`` that the fused and layered paths must agree on."""
    c = r.conn
    core = r.core
    return (
        c.state, c.rcv_nxt, c._rcv_adv, c.snd_una, c.snd_nxt, c.snd_wnd, c.max_snd_wnd,
        c.snd_wl1, c.snd_wl2, c.ts_recent, c._last_ack_sent, c.segments_in, c.segments_out,
        c.dropped, c._rlen, c.srtt, c.rttvar, c.rto, c.cc.cwnd, c.cc.ssthresh, c._dupacks,
        c._unacked_rx, c._ack_now, c._ack_at, c._ooo, c._ooo_fin, c.poll_at(),
        c.challenge_acks, c.error, str(c.info()), bytes(r.delivered),
        sorted(core.counters.items()), r.iface.rx_frames, r.iface.tx_frames,
        core.tcp.rx_segments, core.tcp.rx_errors, core.tcp.rx_no_socket, core.tcp.listing(),
        core.next_deadline(),
    )


def step_pair(fast: Rig, slow: Rig, op: Op, *, app: Callable[[Rig], None] | None = None,
              snap: Callable[[Rig], tuple[object, ...]] = snapshot,
              label: object = None) -> None:
    """One step on both rigs: ``app`` (an application call, if any) and ``op.app_send`` bytes
    sent, then ``op``'s frames (built from ``fast``) fed, inside a batch if ``op.batch``, the
    application reads, the clock moves by ``op.dt``; then both must have sent the same frames
    and agree on ``snap`` (failures name ``label``, by default ``op``)."""
    for r in (fast, slow):
        if app is not None:
            app(r)
        if op.app_send:
            try:
                r.conn.send(bytes(op.app_send))
                r.core.tcp.flush(r.conn, r.now)
            except OSError:
                pass
    frames = build(fast, op)
    for r in (fast, slow):
        if op.batch:
            r.core.begin_batch()
        for f in frames:
            r.feed(f)
        if op.batch:
            r.core.end_batch(r.now)
        r.drain_app()
        if op.dt:
            r.advance(op.dt)
    why = op if label is None else label
    assert fast.sent() == slow.sent(), why
    assert snap(fast) == snap(slow), why
