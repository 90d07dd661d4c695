"""TCP segmentation offload (TSO) and partial checksums on output, on a virtual clock.

A stack whose interface has ``gso_max_size``/``tx_csum_offload`` (what an offloading TAP gives
it) sends TCP super-segments as :class:`~ioth.net.plug.OffloadFrame` frames.  Here the hub
plays the kernel's part: it completes partial checksums and cuts super-segments at their
``gso_size`` with the TAP plug's own helpers (``finish_checksum``, ``segment_tcp``), then the
cut segments cross an in-memory hub (with loss where a test wants it) to a plain stack.
"""

from __future__ import annotations

import hashlib
import random
import struct

import pytest

from ioth.net.plug import OffloadFrame
from ioth.net.plugs.tap import checksums_ok, finish_checksum, segment_tcp
from ioth.stack.core import StackCore
from ioth.stack.interface import Interface
from ioth.stack.neighbour import STALE
from ioth.stack.route import Route
from ioth.stack.tcp.connection import State, TcpConnection
from ioth.stack.tcp.segment import ACK, FIN, decode
from ioth.wire.checksum import partial_sum
from tests.stack.harness import VirtualNet, ip
from tests.stack.tcp.harness import Link


class TsoNet(VirtualNet):
    """A VirtualNet whose hubs emulate the kernel behind an offloading TAP."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self.super_frames: list[tuple[int, int]] = []  # (frame length, gso_size)
        self.partial = 0
        self.wire: list[bytes] = []

    def pump(self) -> None:
        for core in self.cores:
            for iface in core.ifaces.values():
                q = iface.txq
                out: list[bytes | bytearray] = []
                while q:
                    frame = q.popleft()
                    out.extend(self._offload(iface, frame))
                q.extend(out)
        super().pump()

    def _offload(self, iface: Interface, frame: bytes | bytearray) -> list[bytes]:
        if not isinstance(frame, OffloadFrame):
            assert type(frame) is bytes
            self.wire.append(frame)
            return [frame]
        assert iface.tx_csum_offload or iface.gso_max_size
        buf = bytearray(frame)
        if frame.csum_start:
            self.partial += 1
            finish_checksum(buf, frame.csum_start, len(buf), frame.csum_offset)
        if frame.gso_size and len(buf) > iface.mtu + 14:
            l3 = 14
            iphl = 40 if buf[12] == 0x86 else 20
            tcphl = (buf[l3 + iphl + 12] >> 4) * 4
            self.super_frames.append((len(buf), frame.gso_size))
            pieces = segment_tcp(buf, frame.gso_size + iphl + tcphl)
            assert pieces is not None
            self.wire.extend(pieces)
            return pieces
        self.wire.append(bytes(buf))
        return [bytes(buf)]


def _setup(net: VirtualNet, v6: bool, offload: bool, loss: float = 0.0
           ) -> tuple[StackCore, StackCore, bytes, bytes, Interface]:
    hub = net.hub(loss=loss, delay=0.0005)
    a, b = net.stack(), net.stack()
    ia, ib = net.attach(a, hub), net.attach(b, hub)
    if offload:
        ia.gso_max_size = 65535
        ia.tx_csum_offload = True
    if v6:
        a.ip6.add_addr(ia.index, ip("2001:db8::a"), 64, 0)
        b.ip6.add_addr(ib.index, ip("2001:db8::b"), 64, 0)
        net.run(3.0)  # DAD
        return a, b, ip("2001:db8::a"), ip("2001:db8::b"), ia
    a.add_addr4(ia.index, ip("192.0.2.1"), 24, 0)
    b.add_addr4(ib.index, ip("192.0.2.2"), 24, 0)
    return a, b, ip("192.0.2.1"), ip("192.0.2.2"), ia


def _transfer(net: VirtualNet, a: StackCore, b: StackCore, sa: bytes, sb: bytes,
              size: int, seed: int = 1, on_step: object = None
              ) -> tuple[TcpConnection, TcpConnection]:
    listener = b.tcp.listen(80)
    ca = a.tcp.connect(sa, sb, 80, net.now)
    for _ in range(400):
        net.run(0.01)
        if listener.accept_queue:
            break
    cb = listener.accept()
    assert cb is not None and ca.state is State.ESTABLISHED
    data = random.Random(seed).randbytes(size)
    got = bytearray()
    sent = 0
    steps = 0
    while not (cb.eof and sent == len(data)):
        steps += 1
        assert steps < 100000, f"stalled at {len(got)}/{size} bytes, t={net.now:.2f}"
        if sent < len(data) and ca.state is State.ESTABLISHED and ca.send_space > 0:
            sent += ca.send(data[sent:sent + 256 * 1024])
            if sent == len(data):
                ca.shutdown()
            a.tcp.flush(ca, net.now)
        while True:
            try:
                chunk = cb.recv(1 << 20)
            except BlockingIOError:
                break
            if not chunk:
                break
            got += chunk
        b.tcp.flush(cb, net.now)
        if callable(on_step):
            on_step()
        net.run(0.002)
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    return ca, cb


def _syn_mss(frames: list[bytes], v6: bool) -> int | None:
    for f in frames:
        l4 = 14 + (40 if v6 else 20)
        if f[12:14] != (b"\x86\xdd" if v6 else b"\x08\x00") or f[l4 - (34 if v6 else 11)] != 6:
            continue
        _, _, seg = decode(memoryview(f)[l4:])
        if seg.mss is not None and not seg.flags & ACK:
            return seg.mss
    return None


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_super_segments_cut_by_the_interface(v6: bool) -> None:
    net = TsoNet(3)
    a, b, sa, sb, _ = _setup(net, v6, offload=True)
    ca, cb = _transfer(net, a, b, sa, sb, 1_500_000)
    hdr = 60 if v6 else 40
    # the MSS advertised and the MSS used stay link-based; super-segments are cut at it
    assert _syn_mss(net.wire, v6) == 1500 - hdr
    assert ca.mss == cb.mss == 1500 - hdr - 12
    assert a.tcp.tx_super > 0 and ca.tso_segments > 0 and net.super_frames
    assert all(gso == ca.mss for _, gso in net.super_frames)
    assert max(n for n, _ in net.super_frames) > 32 * ca.mss
    assert all(n - 14 <= 65535 for n, _ in net.super_frames)
    # every checksum was left to the "kernel", and everything on the wire fits the link
    assert net.partial > 0 and all(len(f) <= 1514 for f in net.wire)
    assert all(checksums_ok(f) for f in net.wire)
    assert a.tcp.tx_super_split == 0


def test_plain_interface_sends_plain_segments() -> None:
    net = TsoNet(4)
    a, b, sa, sb, _ = _setup(net, False, offload=False)
    ca, _ = _transfer(net, a, b, sa, sb, 300_000)
    assert ca.tso_max == 0 and ca.tso_segments == 0 and a.tcp.tx_super == 0
    assert a.tcp.tx_fast > 100  # header templates, full checksums
    assert not net.super_frames and net.partial == 0
    assert all(len(f) <= 1514 for f in net.wire)
    assert all(checksums_ok(f) for f in net.wire)


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_header_templates_follow_neighbour_and_route_changes(v6: bool) -> None:
    """The fast output keeps working, with the right headers, when the neighbour's MAC
    changes (gratuitous ARP / unsolicited NA: STALE, general path, then DELAY) and when the
    routing table changes."""
    net = TsoNet(10)
    a, b, sa, sb, ia = _setup(net, v6, offload=False)
    ib = next(i for i in b.ifaces.values() if not i.loopback)
    new_mac = b"\x02\x00\x00\x00\xbb\xbb"
    state = {"n": 0, "mark": 0}
    routes: list[object] = []

    def meddle() -> None:
        state["n"] += 1
        conn = next(iter(a.tcp.connections.values()))
        if state["n"] == 2:
            routes.append(conn.tx_route)
            ib.mac = new_mac
            if v6:
                # an unsolicited NA with the override flag, as B would send
                a.ip6.ndp.cache.learn(ia, sb, new_mac, net.now, advert=True, override=True)
            else:
                b.arp.announce(ib, sb)
            state["mark"] = len(net.wire)
        if state["n"] == 4:
            a.routes6.add(Route(sb, 128, None, ia.index)) if v6 else \
                a.routes4.add(Route(sb, 32, None, ia.index))

    ca, _ = _transfer(net, a, b, sa, sb, 3_000_000, on_step=meddle)
    routes.append(ca.tx_route)
    assert a.tcp.tx_fast > 100
    assert routes[0] is not None and routes[1] is not None and routes[0] is not routes[1]
    late = [f for f in net.wire[state["mark"] + 50:] if f[6:12] == ia.mac and len(f) > 1000]
    assert late and all(f[:6] == new_mac for f in late)
    assert all(checksums_ok(f) for f in net.wire)


def test_retransmissions_of_super_segments_under_loss() -> None:
    net = TsoNet(5)
    a, b, sa, sb, _ = _setup(net, False, offload=True, loss=0.02)
    ca, _ = _transfer(net, a, b, sa, sb, 1_500_000, seed=2)
    assert ca.retransmissions > 0
    assert a.tcp.tx_super > 0
    assert all(len(f) <= 1514 for f in net.wire)


def test_super_segment_split_when_the_fast_path_declines() -> None:
    """A STALE neighbour and a cached path MTU send a super-segment through the general
    output, cut in software into MSS-sized segments (the path MTU ones into smaller ones)."""
    net = TsoNet(6)
    a, b, sa, sb, _ = _setup(net, False, offload=True)
    state = {"n": 0}

    def meddle() -> None:
        state["n"] += 1
        if state["n"] == 2:
            for n in a.arp.cache.entries.values():
                n.state = STALE
                n.gen += 1
        if state["n"] == 4:
            a.pmtu_set(sb, 1400, net.now)
            a.tcp.pmtu_update(sb, 1400)

    ca, _ = _transfer(net, a, b, sa, sb, 1_500_000, on_step=meddle)
    assert a.tcp.tx_super_split > 0
    assert ca.mss == 1400 - 40 - 12
    assert all(len(f) <= 1514 for f in net.wire)
    late = [f for f in net.wire[-200:] if len(f) > 200]
    assert late and all(len(f) <= 1414 for f in late)


# -- sizing rules on one connection (the layer's software cut, no stack) --------------------

def _established(nodelay: bool) -> tuple[Link, TcpConnection, TcpConnection]:
    link = Link(seed=7)
    link.a._gso = lambda remote: 65535  # an interface with TSO towards B
    client, server = link.connect()
    client.nodelay = nodelay
    assert client.tso_max == 65535 - 20 - 60
    client.cc.cwnd = 10 << 20
    return link, client, server


def test_nagle_holds_the_partial_tail_of_a_super_segment() -> None:
    link, c, _ = _established(nodelay=False)
    mss = c.mss
    c.send(bytes(10 * mss + 100))
    segs = c.dispatch(link.now)
    assert [len(s.payload) for s in segs] == [10 * mss]  # the 100-byte tail waits (Nagle)
    assert c.tso_cut == mss and c.tso_segments == 1


def test_nodelay_and_fin_let_the_tail_go_in_the_super_segment() -> None:
    link, c, _ = _established(nodelay=True)
    mss = c.mss
    c.send(bytes(10 * mss + 100))
    c.shutdown()
    segs = c.dispatch(link.now)
    assert [len(s.payload) for s in segs] == [10 * mss + 100]
    assert segs[0].flags & FIN  # piggybacked on the super-segment


def test_window_limits_super_segments_to_whole_segments() -> None:
    link, c, _ = _established(nodelay=True)
    mss = c.mss
    c.snd_wnd = 7 * mss + 500
    c.send(bytes(40 * mss))
    segs = c.dispatch(link.now)
    assert [len(s.payload) for s in segs] == [7 * mss]


def test_super_segments_are_bounded_by_the_gso_size() -> None:
    link, c, _ = _established(nodelay=True)
    mss = c.mss
    c.snd_wnd = 1 << 22
    c.send(bytes(200_000))
    sizes = [len(s.payload) for s in c.dispatch(link.now)]
    assert sum(sizes) == 200_000
    assert all(n <= c.tso_max and n % mss == 0 for n in sizes[:-1])
    assert max(sizes) == (c.tso_max // mss) * mss


def test_layer_cuts_super_segments_without_a_fast_output() -> None:
    """No fast output (a bare TcpLayer): super-segments are cut into tso_cut pieces with
    FIN/PSH on the last one only, and the data arrives whole."""
    link, c, s = _established(nodelay=True)
    seen: list[tuple[int, int]] = []

    def tap(src: bytes, dst: bytes, data: bytes) -> bool:
        if src == link.addr_a:
            _, _, seg = decode(data, src, dst)
            seen.append((len(seg.payload), seg.flags))
        return True

    link.tap = tap
    data = random.Random(3).randbytes(300_000)
    c.send(data)
    c.shutdown()
    link.a.flush(c, link.now)
    got = bytearray()

    def pump() -> None:
        while True:
            try:
                chunk = s.recv(1 << 20)
            except BlockingIOError:
                return
            if not chunk:
                return
            got.extend(chunk)

    link.run_until(lambda: s.eof, pump=pump)
    pump()
    assert bytes(got) == data
    assert link.a.tx_super_split > 0
    data_segs = [(n, f) for n, f in seen if n]
    assert all(n <= c.mss for n, _ in data_segs)
    assert sum(1 for _, f in data_segs if f & FIN) == 1


def test_offload_frame_checksum_is_the_pseudo_header_sum() -> None:
    net = TsoNet(8)
    a, b, sa, sb, _ = _setup(net, False, offload=True)
    frames: list[OffloadFrame] = []
    orig = net._offload

    def keep(iface: Interface, frame: bytes | bytearray) -> list[bytes]:
        if isinstance(frame, OffloadFrame) and frame.csum_start:
            frames.append(OffloadFrame(frame, frame.csum_start, frame.csum_offset,
                                       frame.gso_size))
        return orig(iface, frame)

    net._offload = keep  # type: ignore[method-assign]
    _transfer(net, a, b, sa, sb, 100_000)
    assert frames
    for f in frames:
        assert f.csum_start == 34 and f.csum_offset == 16
        tcp_len = len(f) - 34
        pseudo = partial_sum(f[26:34]) + 6 + tcp_len
        field = struct.unpack_from("!H", f, 34 + 16)[0]
        assert field % 0xFFFF == pseudo % 0xFFFF


def test_batch_payload_sums_match_one_by_one() -> None:
    """The fast output sums a batch of payloads with one numpy reduction (equal or mixed
    lengths, empty and odd ones): the same partial sums as one call per payload."""
    from ioth.stack.tcp.segment import Segment
    from ioth.stack.tcp.stackhook import _payload_sums

    rng = random.Random(11)
    for _ in range(200):
        lens = [rng.choice([0, 1448, 1448, 2 * rng.randint(0, 800), rng.randint(0, 1500)])
                for _ in range(rng.randint(1, 30))]
        segs = [Segment(0, 0, 0, 0, bytearray(rng.randbytes(n))) for n in lens]
        got = [v % 0xFFFF for v in _payload_sums(segs)]
        assert got == [partial_sum(s.payload) % 0xFFFF for s in segs], lens
