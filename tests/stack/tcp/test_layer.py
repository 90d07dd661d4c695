"""TcpLayer: demultiplexing, RSTs to nothing, backlog, SYN cookies, codec and checksums."""

from __future__ import annotations

import errno
import random

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6

from ioth.stack.tcp.connection import State
from ioth.stack.tcp.layer import EPHEMERAL_HIGH, EPHEMERAL_LOW, TcpLayer
from ioth.stack.tcp.policy import TcpPolicy
from ioth.stack.tcp.segment import ACK, RST, SYN, Segment, decode, encode
from tests.stack.tcp.harness import A4, A6, B4, B6, Link, Transfer

POLICY = TcpPolicy(time_wait=1.0)


def layer(**kw: object) -> TcpLayer:
    return TcpLayer(random.Random(1), POLICY, **kw)  # type: ignore[arg-type]


def syn_bytes(src: bytes, dst: bytes, sport: int, dport: int, seq: int = 1000) -> bytes:
    return encode(Segment(seq, 0, SYN, 65535, mss=1460), sport, dport, src, dst)


def test_segment_to_nothing_gets_rst() -> None:
    lay = layer()
    lay.input(B4, A4, syn_bytes(B4, A4, 5000, 81), 0.0)
    (src, dst, data), = lay.outbox
    assert (src, dst) == (A4, B4)
    sport, dport, seg = decode(data, src, dst)
    assert (sport, dport) == (81, 5000)
    assert seg.flags == RST | ACK and seg.ack == 1001 and seg.seq == 0
    lay.outbox.clear()
    ack = encode(Segment(1, 4242, ACK, 100), 5000, 81, B4, A4)
    lay.input(B4, A4, ack, 0.0)
    (_, _, data), = lay.outbox
    assert decode(data)[2].flags == RST and decode(data)[2].seq == 4242
    lay.outbox.clear()
    lay.input(B4, A4, encode(Segment(1, 0, RST, 0), 5000, 81, B4, A4), 0.0)
    assert lay.outbox == []  # never answer a RST
    assert lay.rx_no_socket == 3


def test_bad_segments_are_counted_and_dropped() -> None:
    lay = layer()
    good = syn_bytes(B4, A4, 5000, 81)
    bad = bytearray(good)
    bad[16] ^= 0xFF
    lay.input(B4, A4, bad, 0.0)
    lay.input(B4, A4, good[:10], 0.0)
    opts = bytearray(good)
    opts[22] = 200  # MSS option with a length running past the header
    lay.input(B4, A4, opts, 0.0)
    assert lay.rx_errors == 3 and lay.outbox == []


@pytest.mark.parametrize("v6", [False, True])
def test_checksum_matches_scapy(v6: bool) -> None:
    src, dst = (A6, B6) if v6 else (A4, B4)
    seg = Segment(123456, 654321, ACK, 512, b"payload bytes!!", tsval=1, tsecr=2,
                  sack=((5, 10),))
    data = bytes(encode(seg, 1234, 80, src, dst))
    ipcls = IPv6 if v6 else IP
    from ipaddress import ip_address

    pkt = ipcls(src=str(ip_address(src)), dst=str(ip_address(dst))) / TCP(data)
    mine = pkt[TCP].chksum
    del pkt[TCP].chksum
    rebuilt = ipcls(bytes(pkt))
    assert rebuilt[TCP].chksum == mine
    assert rebuilt[TCP].options[2][0] == "Timestamp"


def test_listen_twice_is_eaddrinuse() -> None:
    lay = layer()
    lay.listen(80)
    with pytest.raises(OSError, match="in use"):
        lay.listen(80)


def test_ephemeral_ports_are_distinct_and_in_range() -> None:
    lay = layer()
    ports = {lay.connect(A4, B4, 80, 0.0).local[1] for _ in range(200)}
    assert len(ports) == 200
    assert all(EPHEMERAL_LOW <= p <= EPHEMERAL_HIGH for p in ports)


def test_handshake_and_info_listing() -> None:
    link = Link(seed=3)
    client, server = link.connect()
    infos = link.a.info()
    assert len(infos) == 1
    info = infos[0]
    assert info.state is State.ESTABLISHED and info.sack and info.timestamps
    assert info.cwnd == 10 * client.mss and info.rto >= POLICY.min_rto
    assert server.info().remote == (link.addr_a, client.local[1])


def test_accept_queue_full_drops_syns() -> None:
    lay = layer()
    listener = lay.listen(80, backlog=1)
    synacks = []
    for port in (5000, 5001):
        lay.input(B4, A4, syn_bytes(B4, A4, port, 80), 0.0)
        synacks.append(decode(lay.outbox.pop()[2])[2])
    for port, synack in zip((5000, 5001), synacks, strict=True):
        ack = encode(Segment(1001, synack.seq + 1, ACK, 65535), port, 80, B4, A4)
        lay.input(B4, A4, ack, 0.0)
    assert len(listener.accept_queue) == 1
    assert listener.ack_dropped == 1  # second handshake stays half-open
    lay.input(B4, A4, syn_bytes(B4, A4, 5002, 80), 0.0)
    assert listener.syn_dropped == 1


def test_syn_cookies_when_syn_queue_is_full() -> None:
    lay = TcpLayer(random.Random(1), POLICY.replace(syn_backlog=4))
    listener = lay.listen(80)
    for port in range(6000, 6100):  # a flood that never completes
        lay.input(B4, A4, syn_bytes(B4, A4, port, 80, seq=port), 1.0)
    assert len(listener.syn_queue) == 4
    assert listener.cookies_sent == 96
    assert len(lay.connections) == 4
    # a cookie SYN-ACK, completed by the client, becomes an established connection
    lay.outbox.clear()
    lay.input(B4, A4, syn_bytes(B4, A4, 7000, 80, seq=77), 2.0)
    synack = decode(lay.outbox.pop()[2])[2]
    assert synack.flags == SYN | ACK and synack.mss == 1460 and synack.wscale is None
    ack = encode(Segment(78, synack.seq + 1, ACK, 1000, b"GET /"), 7000, 80, B4, A4)
    lay.input(B4, A4, ack, 3.0)
    assert listener.cookies_accepted == 1
    conn = listener.accept()
    assert conn is not None and conn.state is State.ESTABLISHED
    assert conn.recv() == b"GET /" and conn.mss == 1460
    # a forged cookie is refused with a RST
    forged = encode(Segment(5, 12345, ACK, 1000), 7001, 80, B4, A4)
    lay.input(B4, A4, forged, 3.0)
    assert listener.cookies_rejected == 1
    assert decode(lay.outbox.pop()[2])[2].flags == RST


def test_syn_flood_does_not_stop_legitimate_connections() -> None:
    link = Link(seed=4, policy=POLICY.replace(syn_backlog=8))
    listener = link.b.listen(80)
    attacker = bytes([198, 51, 100, 7])
    for port in range(1024, 3024):
        link.b.input(attacker, link.addr_b, syn_bytes(attacker, link.addr_b, port, 80), 0.0)
    client = link.a.connect(link.addr_a, link.addr_b, 80, link.now)
    link.run_until(lambda: bool(listener.accept_queue))
    assert listener.cookies_accepted == 1
    server = listener.accept()
    assert server is not None and server.state is State.ESTABLISHED
    client.send(b"ping")
    link.a.flush(client, link.now)
    link.run_until(lambda: server.recv_available == 4)
    assert server.recv() == b"ping"


def test_time_wait_is_reused_by_a_newer_syn() -> None:
    link = Link(seed=5, policy=TcpPolicy(time_wait=100.0))
    listener = link.b.listen(80)
    client = link.a.connect(link.addr_a, link.addr_b, 80, link.now, sport=40000)
    link.run_until(lambda: bool(listener.accept_queue))
    server = listener.accept()
    assert server is not None
    server.close()
    link.b.flush(server, link.now)
    link.run_until(lambda: client.state is State.CLOSE_WAIT)
    client.close()
    link.a.flush(client, link.now)
    key = (*server.local, *server.remote)
    link.run_until(lambda: key in link.b.time_wait and client.state is State.CLOSED)
    assert server.state is State.CLOSED and key not in link.b.connections  # compact TIME-WAIT
    # server side is in TIME-WAIT; the same client port connects again later
    link.now += 10.0
    again = link.a.connect(link.addr_a, link.addr_b, 80, link.now, sport=40000)
    link.run_until(lambda: bool(listener.accept_queue), limit=50.0)
    assert again.state is State.ESTABLISHED
    assert key not in link.b.time_wait and link.b.tw_reused == 1


def test_close_listener_resets_pending() -> None:
    lay = layer()
    listener = lay.listen(80)
    lay.input(B4, A4, syn_bytes(B4, A4, 5000, 80), 0.0)
    lay.outbox.clear()
    lay.close_listener(listener, 0.0)
    assert lay.connections == {}
    assert decode(lay.outbox.pop()[2])[2].flags & RST


def test_layer_timers_drive_retransmission() -> None:
    lay = layer()
    conn = lay.connect(A4, B4, 80, 0.0)
    assert len(lay.outbox) == 1
    t = lay.poll_at()
    assert t == POLICY.initial_rto
    lay.on_timer(t)
    assert len(lay.outbox) == 2 and conn.retransmissions == 1
    conn.abort()
    lay.flush(conn, t)
    assert lay.connections == {} and lay.poll_at() is None


def test_connection_refused_through_layers() -> None:
    link = Link(seed=6)
    client = link.a.connect(link.addr_a, link.addr_b, 9, link.now)
    link.run_until(lambda: client.state is State.CLOSED)
    with pytest.raises(ConnectionRefusedError):
        client.recv()
    assert link.a.connections == {}


def test_layer_icmp_errors() -> None:
    lay = layer()
    conn = lay.connect(A4, B4, 80, 0.0)
    syn = decode(lay.outbox[0][2])[2]
    quoted = lay.outbox[0][2][:8]
    lay.icmp_error(A4, B4, quoted[:4], errno.ECONNREFUSED, 0.1)
    assert lay.rx_errors == 1
    lay.icmp_error(A4, B4, quoted, 0, 0.1, mtu=576)
    assert conn.mss == 576 - 40 and conn.state is State.SYN_SENT
    lay.icmp_error(A4, B4, quoted, errno.ENETUNREACH, 0.2)
    assert conn.state is State.CLOSED and lay.connections == {}
    assert conn.error == errno.ENETUNREACH
    assert syn.flags == SYN


def test_info_pretty_line() -> None:
    link = Link(seed=3, v6=True)
    client, _ = link.connect()
    line = str(client.info())
    assert line.startswith("ESTABLISHED 0 0 [2001:db8::1]:")
    assert "[2001:db8::2]:80 ts sack cubic wscale:5,5" in line and "mss:1428" in line


def test_family_wildcards_and_listing() -> None:
    lay = layer()
    l4 = lay.listen(80, bytes(4))
    l6 = lay.listen(80, bytes(16))
    lay.input(B4, A4, syn_bytes(B4, A4, 5000, 80), 0.0)
    lay.input(B6, A6, syn_bytes(B6, A6, 5000, 80), 0.0)
    assert len(l4.syn_queue) == 1 and len(l6.syn_queue) == 1
    lines = lay.listing()
    assert lines[0].startswith("LISTEN 0 128 0.0.0.0:80 syn_queue:1")
    assert lines[1].startswith("LISTEN 0 128 [::]:80")
    assert any(line.startswith("SYN-RECEIVED") for line in lines[2:])


def test_connect_argument_errors() -> None:
    lay = layer()
    with pytest.raises(OSError, match="different families"):
        lay.connect(A4, B6, 80, 0.0)
    with pytest.raises(OSError, match="bad port 65536"):
        lay.connect(A4, B4, 65536, 0.0)
    lay.connect(A4, B4, 0, 0.0)  # (port 0: the SYN goes out, as Linux's; the peer refuses)
    lay.connect(A4, B4, 80, 0.0, sport=4000)
    with pytest.raises(OSError, match="in use"):
        lay.connect(A4, B4, 80, 0.0, sport=4000)


def test_syn_cookies_keep_options_in_timestamps() -> None:
    lay = TcpLayer(random.Random(1), POLICY.replace(syn_backlog=1))
    lay.listen(80)
    lay.input(B4, A4, syn_bytes(B4, A4, 6000, 80), 1.0)  # fills the SYN queue
    lay.outbox.clear()
    syn = Segment(500, 0, SYN, 65535, mss=1460, wscale=9, sack_perm=True, tsval=777, tsecr=0)
    lay.input(B4, A4, encode(syn, 7000, 80, B4, A4), 2.0)
    synack = decode(lay.outbox.pop()[2])[2]
    assert synack.flags == SYN | ACK and synack.sack_perm and synack.wscale == 5
    assert synack.tsecr == 777 and synack.tsval is not None and synack.tsval & 0x3F == 0x3A
    ack = Segment(501, synack.seq + 1, ACK, 100, b"hi", tsval=778, tsecr=synack.tsval)
    lay.input(B4, A4, encode(ack, 7000, 80, B4, A4), 2.5)
    conn = lay.listeners[(b"", 80)].accept()
    assert conn is not None and conn.state is State.ESTABLISHED
    assert conn.ts_ok and conn.sack_ok and conn.snd_wscale == 9 and conn.rcv_wscale == 5
    assert conn.snd_wnd == 100 << 9 and conn.mss == 1460 - 12 and conn.recv() == b"hi"
    lay.on_timer(3.0)  # the delayed ACK
    out = decode(lay.outbox[-1][2])[2]
    assert out.tsval is not None and out.tsval >= synack.tsval  # our clock never goes back


@pytest.mark.parametrize("every", [2, 16, 64])
def test_batched_receiver_bounds_stretch_acks(every: int) -> None:
    """F2: inside one input batch the receiver ACKs at least every ``batch_ack_segments``
    full-sized segments (RFC 5681 4.2 asks for 2) instead of once per batch (stretch ACKs of
    100+ segments were seen)."""
    link = Link(seed=9, policy=POLICY.replace(recv_buffer=1 << 20), batch=True)
    if every == 64:
        assert link.b.batch_ack_segments == 64  # the default
    link.b.batch_ack_segments = every
    client, server = link.connect()
    counts = {"data": 0, "acks": 0}
    mss = client.mss

    def tap(src: bytes, dst: bytes, data: bytes) -> bool:
        plen = len(data) - (data[12] >> 4) * 4
        if src == link.addr_a and plen == mss:
            counts["data"] += 1
        elif src == link.addr_b and plen == 0:
            counts["acks"] += 1
        return True

    link.tap = tap
    t = Transfer(link, client, server, random.Random(9).randbytes(1_000_000), b"")
    link.run_until(t.done, limit=120.0, pump=t.pump)
    t.check()
    assert counts["data"] > 500
    assert every * counts["acks"] >= counts["data"], counts

