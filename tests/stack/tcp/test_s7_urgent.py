"""Urgent data (MSG_OOB) in the sans-IO TCP core, with Linux's semantics: the sender's SND.UP
and URG segments, the receiver's RCV.UP with the urgent byte held out of band (read with
``recv_urgent``, skipped by ordinary reads, which stop at the mark), SO_OOBINLINE, a newer
pointer replacing an older one; two layers back to back on a virtual clock
(:class:`LayerPair`), and a stack core (:class:`Rig`: the fused receive path, the fast
output) against scripted segments.  The kernel interop is tests/sockets/test_s7_urgent.py."""

from __future__ import annotations

import errno

import pytest

from ioth.stack.tcp.connection import State, TcpConnection, UrgentConnection
from ioth.stack.tcp.layer import TcpLayer
from ioth.stack.tcp.policy import TcpPolicy
from ioth.stack.tcp.segment import ACK, PSH, URG, Segment, decode, encode, urgent
from ioth.wire import tcp as wire_tcp
from tests.stack.harness import ip
from tests.stack.tcp.layerpair import LayerPair
from tests.support.twostacks import MAC_B, PORT_A, PORT_B, Rig, eth, ip4_packet, ip6_packet

CA, SA = ip("198.18.0.1"), ip("198.18.0.2")


class _Pair(LayerPair):
    """A connection between the layers, with every segment a sends recorded."""

    def __init__(self, policy: TcpPolicy | None = None) -> None:
        super().__init__(policy or TcpPolicy(nodelay=True))
        self.from_a: list[Segment] = []
        self.drop_next_data_from_a = 0

    def seen(self, src: TcpLayer, data: bytes) -> None:
        if src is self.a:
            _, _, seg = decode(bytes(data))
            self.from_a.append(seg)

    def connect(self) -> tuple[TcpConnection, TcpConnection]:
        listener = self.b.listen(80)
        c = self.a.connect(CA, SA, 80, self.now)
        self.run()
        s = listener.accept()
        assert s is not None and c.state is State.ESTABLISHED
        return c, s

    def push(self, conn: TcpConnection) -> None:
        layer = self.a if conn.local[0] == CA else self.b
        layer.flush(conn, self.now)
        self.run()


def _einval(fn: object) -> None:
    with pytest.raises(OSError) as info:
        fn()  # type: ignore[operator]
    assert info.value.errno == errno.EINVAL


def test_segment_codec_keeps_the_urgent_pointer() -> None:
    seg = Segment(1000, 2000, ACK | PSH | URG, 512, b"ab!")
    seg.urg = 3
    for raw in (encode(seg, 1, 2), encode(seg, 1, 2, CA, SA)):
        _, _, back = decode(raw, CA, SA) if raw[16:18] != b"\0\0" else decode(raw)
        assert back.flags & URG and urgent(back) == 3
        assert "urg=3" in repr(back)
    plain = Segment(1000, 2000, ACK, 512, b"x")
    assert urgent(plain) == 0
    _, _, back = decode(encode(plain, 1, 2))
    assert urgent(back) == 0 and not hasattr(back, "urg")


def test_urgent_byte_out_of_band() -> None:
    p = _Pair()
    c, s = p.connect()
    assert not c.urgent_mode and type(c) is TcpConnection
    c.send(b"ab")
    assert c.send_urgent(b"!") == 1
    c.send(b"cd")
    p.push(c)
    assert type(c) is UrgentConnection and type(s) is UrgentConnection
    # the segment with the urgent byte: URG, pointer one past it (BSD, Linux, RFC 6093)
    urg = [g for g in p.from_a if g.flags & URG]
    assert urg and all(bytes(g.payload).find(b"!") + 1 == urgent(g) for g in urg)
    assert not any(g.flags & URG for g in p.from_a if b"!" not in bytes(g.payload)
                   and g.seq != urg[0].seq)
    assert s.urgent_ready and not s.at_mark and s.urgent_offset == 2
    assert s.recv_urgent(peek=True) == b"!"
    assert s.recv(10) == b"ab"  # stops at the mark
    assert s.at_mark and s.urgent_offset == 0
    assert s.recv_urgent() == b"!"
    assert not s.urgent_ready and s.at_mark
    _einval(s.recv_urgent)  # read already
    assert s.recv(10) == b"cd"  # the urgent byte is skipped
    assert not s.at_mark
    _einval(s.recv_urgent)


def test_ordinary_reads_pass_the_unread_urgent_byte() -> None:
    p = _Pair()
    c, s = p.connect()
    c.send(b"ab")
    c.send_urgent(b"!")
    c.send(b"cd")
    p.push(c)
    buf = bytearray(10)
    assert s.recv_into(buf) == 2 and buf[:2] == b"ab"
    assert s.at_mark and s.urgent_ready
    assert s.recv(10) == b"cd"  # skipped: gone
    assert not s.urgent_ready
    _einval(s.recv_urgent)


def test_only_the_urgent_byte_queued() -> None:
    p = _Pair()
    c, s = p.connect()
    c.send_urgent(b"!")
    p.push(c)
    assert s.at_mark and s.urgent_ready and s.recv_available == 1
    with pytest.raises(BlockingIOError):
        s.recv(10)  # skips it: nothing else (Linux: EAGAIN)
    _einval(s.recv_urgent)


def test_drop_mark_keeps_a_pending_error() -> None:
    """The urgent byte, taken out of band, is all that is queued when a reset comes: a
    read would skip it and raise the error; drop_mark only skips it."""
    p = _Pair()
    c, s = p.connect()
    c.send_urgent(b"!")
    p.push(c)
    assert s.recv_urgent() == b"!"
    assert not TcpConnection.drop_mark(c)  # (a plain connection: nothing to drop)
    c.abort()
    p.push(c)
    assert s.error is not None and s.recv_available == 1
    assert s.drop_mark() and not s.drop_mark()
    assert s.recv_available == 0 and s.error is not None
    with pytest.raises(ConnectionResetError):
        s.recv(10)


def test_oob_inline() -> None:
    p = _Pair()
    c, s = p.connect()
    s.oob_inline = True
    assert s.oob_inline and type(s) is UrgentConnection
    c.send(b"ab")
    c.send_urgent(b"!")
    c.send(b"cd")
    p.push(c)
    assert s.urgent_ready and s.urgent_offset == -1
    _einval(s.recv_urgent)
    assert s.recv(10) == b"ab"
    assert s.at_mark
    assert s.recv(10) == b"!cd"
    assert not s.at_mark and not s.urgent_ready


def test_newer_urgent_pointer_replaces_the_older() -> None:
    p = _Pair()
    c, s = p.connect()
    c.send(b"ab")
    c.send_urgent(b"XY")  # only the last byte is urgent
    c.send(b"cd")
    p.push(c)
    c.send_urgent(b"Z")
    c.send(b"ef")
    p.push(c)
    assert s.recv_urgent() == b"Z"
    assert s.recv(100) == b"abXYcd"  # Y went back to the stream
    assert s.at_mark
    assert s.recv(100) == b"ef"


def test_reader_at_the_older_urgent_byte_loses_it() -> None:
    """Linux tcp_check_urg: a new pointer while the reader sits at the older urgent byte
    drops that byte (copied_seq++)."""
    p = _Pair()
    c, s = p.connect()
    c.send(b"ab")
    c.send_urgent(b"X")
    p.push(c)
    assert s.recv(10) == b"ab" and s.at_mark
    c.send(b"cd")
    c.send_urgent(b"Z")
    p.push(c)
    assert s.recv_urgent() == b"Z"
    assert s.recv(10) == b"cd"


def test_long_urgent_send_points_ahead_and_waits_for_its_byte() -> None:
    """A send_urgent of several segments: each carries URG with the pointer to the end of
    the send (beyond the segment); the receiver knows the pointer before the byte (EAGAIN)."""
    p = _Pair(TcpPolicy(nodelay=True))
    c, s = p.connect()
    held: list[tuple[bytes, bytes, bytes]] = []
    data = bytes(range(256)) * 20  # 5120 bytes: several segments

    c.send_urgent(data)
    p.a.flush(c, p.now)
    out = list(p.a.outbox)
    p.a.outbox.clear()
    assert len(out) >= 3
    held.append(out.pop())  # the last segment (with the urgent byte) waits
    for src, dst, raw in out:
        _, _, g = decode(bytes(raw))
        assert g.flags & URG and urgent(g) > len(g.payload)  # (the byte is further on)
        p.b.input(src, dst, raw, p.now)
    assert s.urgent_offset == -1 and not s.urgent_ready
    with pytest.raises(BlockingIOError):
        s.recv_urgent()  # the pointer is known, its byte not here yet
    for src, dst, raw in held:
        p.b.input(src, dst, raw, p.now)
    p.run()
    assert s.urgent_ready and s.recv_urgent() == data[-1:]
    assert s.recv(1 << 20) == data[:-1]


def test_urgent_pointer_of_each_segment() -> None:
    p = _Pair(TcpPolicy(nodelay=True))
    c, s = p.connect()
    data = b"u" * 5000
    c.send_urgent(data)
    up = c._sseq + len(data)  # SND.UP (unwrapped)
    p.push(c)
    segs = [g for g in p.from_a if g.payload]
    assert len(segs) >= 3
    for g in segs:
        assert g.flags & URG and urgent(g) == (up - g.seq) & 0xFFFFFFFF
    assert s.recv_urgent() == b"u"
    # everything acknowledged: SND.UP is behind SND.UNA, no more URG
    p.from_a.clear()
    c.send(b"more")
    p.push(c)
    assert p.from_a and not any(g.flags & URG for g in p.from_a)
    assert s.recv(1 << 20) == b"u" * 4999  # up to the mark
    assert s.recv(1 << 20) == b"more"


def test_urgent_send_is_not_held_by_nagle() -> None:
    p = _Pair(TcpPolicy(nodelay=False))
    c, s = p.connect()
    c.send(b"ab")
    p.a.flush(c, p.now)
    first = list(p.a.outbox)
    p.a.outbox.clear()
    assert len(first) == 1  # 'ab' in flight, unacknowledged
    c.send(b"c")
    p.a.flush(c, p.now)
    assert not p.a.outbox  # Nagle holds a small segment back
    c.send_urgent(b"!")
    p.a.flush(c, p.now)
    assert len(p.a.outbox) == 1  # urgent: no Nagle
    _, _, g = decode(bytes(p.a.outbox[0][2]))
    assert bytes(g.payload) == b"c!" and g.flags & URG and urgent(g) == 2
    for src, dst, raw in first:
        p.b.input(src, dst, raw, p.now)
    p.run()
    assert s.recv_urgent() == b"!" and s.recv(10) == b"abc"


def test_pointer_to_received_data_is_ignored() -> None:
    p = _Pair()
    c, s = p.connect()
    c.send(b"abcd")
    p.push(c)
    # a segment repeating 'cd' with URG naming 'c' (received already): ignored
    seg = Segment((c.snd_nxt - 2) & 0xFFFFFFFF, s.snd_nxt & 0xFFFFFFFF, ACK | URG, 1000,
                  b"cd")
    seg.urg = 1
    s.process(seg, p.now)
    assert not s.urgent_ready and s.urgent_offset == -1
    assert s.recv(10) == b"abcd"


def test_empty_urgent_send_and_plain_connection() -> None:
    p = _Pair()
    c, s = p.connect()
    assert c.send_urgent(b"") == 0 and type(c) is TcpConnection
    _einval(s.recv_urgent)
    assert not s.at_mark and not s.urgent_ready and s.urgent_offset == -1
    assert not s.oob_inline
    s.oob_inline = False
    assert type(s) is TcpConnection


# -- through a stack core: the fused receive path and the fast output -------------------------

def _urg_frame(r: Rig, seq: int, ack: int, flags: int, payload: bytes, up: int) -> bytes:
    opts = wire_tcp.ts_option(r.peer_ts, r.a_tsval())
    hdr = wire_tcp.emit_fast(PORT_B, PORT_A, seq, ack, flags, 512, payload, r.b, r.a, opts, up)
    seg = hdr + payload
    if r.v6:
        return eth(r.iface.mac, MAC_B, 0x86DD, ip6_packet(r.b, r.a, 6, seg))
    return eth(r.iface.mac, MAC_B, 0x0800, ip4_packet(r.b, r.a, 6, seg))


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("fast", [True, False], ids=["fused", "layered"])
def test_stack_core_receives_and_sends_urgent(v6: bool, fast: bool) -> None:
    r = Rig(v6, fast, False, 7)
    ack = (r.iss + 1) & 0xFFFFFFFF
    r.peer_ts += 1
    r.feed(r.frame(r.snd, ack, ACK | PSH, 512, b"ab", wire_tcp.ts_option(r.peer_ts,
                                                                          r.a_tsval())))
    r.snd += 2
    r.peer_ts += 1
    r.feed(_urg_frame(r, r.snd, ack, ACK | PSH | URG, b"!", 1))
    r.snd += 1
    r.peer_ts += 1
    r.feed(r.frame(r.snd, ack, ACK | PSH, 512, b"cd", wire_tcp.ts_option(r.peer_ts,
                                                                          r.a_tsval())))
    r.snd += 2
    conn = r.conn
    assert conn.urgent_ready and conn.urgent_offset == 2
    assert conn.recv(10) == b"ab" and conn.recv_urgent() == b"!" and conn.recv(10) == b"cd"
    # the send side: the URG segment leaves by the general output with its pointer
    r.sent()
    conn.send(b"xy")
    conn.send_urgent(b"Z")
    r.core.tcp.flush(conn, r.now)
    frames = r.sent()
    l4 = 54 if v6 else 34
    got = []
    for f in frames:
        h, payload = wire_tcp.parse(memoryview(f)[l4:], r.a, r.b)
        if payload:
            got.append((bytes(payload), h.flags & URG, h.urgent))
    data = b"".join(p for p, _, _ in got)
    assert data == b"xyZ"
    assert got[-1][1] and got[-1][2] == len(got[-1][0])  # one past 'Z'
