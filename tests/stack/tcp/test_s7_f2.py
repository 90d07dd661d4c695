"""Review s7 (tests/review_s7/) findings fixed by F2, on the virtual clock, each as Linux
does it: path MTU drops re-cut the whole flight at once (tcp_simple_retransmit) and the
RTO restarts after a tail loss probe (tcp_send_loss_probe)."""

from __future__ import annotations

import errno
import random

import pytest

from ioth.stack.tcp.connection import MASK, State, TcpConnection
from ioth.stack.tcp.layer import TcpLayer
from ioth.stack.tcp.policy import TcpPolicy
from ioth.stack.tcp.segment import ACK, RST, SYN, Segment, decode, encode
from tests.stack.tcp.harness import A4, A6, B4, B6
from tests.stack.tcp.test_connection import POLICY, established, only, recv, seg
from tests.stack.tcp.test_timewait import Setup, _restore, both  # noqa: F401

SEG = 536


def _sender() -> tuple[TcpConnection, int]:
    policy = POLICY.replace(timestamps=False, window_scaling=False, min_rto=1.0)
    c = established(policy, sack_perm=True)
    c.process(seg(1, c.iss + 1, window=60000), 0.0)
    c.srtt, c.rttvar, c.rto = 0.1, 0.05, 1.0
    return c, c.iss + 1


def test_path_mtu_drop_resends_the_flight_at_once_in_smaller_segments() -> None:
    """Fragmentation needed / packet too big with a flight out: everything in flight is
    sent again at once (no RTO wait), every segment the new size (review s7 path_mtu)."""
    c, base = _sender()
    c.send(b"p" * SEG * 4)
    assert [len(s.payload) for s in recv(c, 0.0)] == [SEG] * 4
    c.set_path_mtu(400)  # MSS 360
    out = recv(c, 0.01)
    assert [len(s.payload) for s in out] == [360] * 5 + [344]
    assert out[0].seq == base & MASK
    assert c.cc.cwnd >= 4 * SEG  # the congestion window is left alone
    c.process(seg(1, base + 4 * SEG, window=60000), 0.05)
    assert c.snd_una == c.snd_nxt == (base + 4 * SEG)


def test_path_mtu_drop_with_nothing_in_flight_sends_nothing() -> None:
    c, _ = _sender()
    c.set_path_mtu(400)
    assert recv(c, 0.01) == []
    c.send(b"q" * 700)
    assert [len(s.payload) for s in recv(c, 0.02)] == [360]  # Nagle holds the tail


def test_path_mtu_rise_does_not_resend() -> None:
    c, _ = _sender()
    c.set_path_mtu(400)
    c.send(b"r" * 720)
    assert len(recv(c, 0.0)) == 2
    c.set_path_mtu(1500)
    assert recv(c, 0.01) == [] and c.retransmissions == 0


def test_rto_restarts_after_a_tail_loss_probe() -> None:
    """RFC 8985 7.3: the probe re-arms the RTO from its own send time, so a later event
    (an ICMP, an ACK) is not overtaken by the original RTO."""
    c, base = _sender()
    c.send(b"t" * SEG * 3)
    assert len(recv(c, 0.0)) == 3
    assert c.poll_at() == pytest.approx(0.2)  # PTO = 2 * SRTT
    probe = only(recv(c, 0.2))
    assert probe.seq == (base + 2 * SEG) & MASK and c.tail_probes == 1
    assert c.poll_at() == pytest.approx(1.2)
    assert recv(c, 1.1) == []
    rtx = only(recv(c, 1.2))
    assert rtx.seq == base & MASK and c.rto_expirations == 1


def test_time_wait_syn_without_listener_gets_the_time_wait_ack() -> None:
    """A SYN that could reopen a TIME-WAIT 4-tuple (newer timestamp, higher sequence
    number) but no listener on the port: the TIME-WAIT's ACK, which stays (Linux
    tcp_v4_rcv: TCP_TW_SYN without a listener is TCP_TW_ACK; RFC 5961 4.2), compact and
    full TIME-WAIT alike (review s7 closing client_time_wait); with a listener it reopens."""
    def run(s: Setup) -> object:
        syn = Segment((s.rcv_nxt + 100_000) & MASK, 0, SYN, 65535, mss=1460,
                      tsval=s.ts(10_000), sack_perm=True, wscale=7)
        out = s.send(syn, s.t0 + 1.0)
        assert [(o.flags, o.seq, o.ack) for o in out] == [(ACK, s.snd_nxt, s.rcv_nxt)]
        assert out[0].tsecr == s.ts(0) and s.in_tw()
        assert s.link.b.tw_reused == 0
        s.link.b.listen(80)
        again = s.send(syn, s.t0 + 2.0)
        assert [o.flags for o in again] == [SYN | ACK] and not s.in_tw()
        return len(out)
    both(run)


def test_time_wait_syn_without_listener_no_timestamps() -> None:
    def run(s: Setup) -> object:
        out = s.send(Segment((s.rcv_nxt + 70000) & MASK, 0, SYN, 65535, mss=1460),
                     s.t0 + 1.0)
        assert [(o.flags, o.seq, o.ack) for o in out] == [(ACK, s.snd_nxt, s.rcv_nxt)]
        assert s.in_tw()
        return len(out)
    both(run, options=False)


@pytest.mark.parametrize(("v6", "drop", "keep"), [
    (False, (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EPROTO), (errno.ECONNREFUSED,)),
    (True, (errno.ECONNREFUSED, errno.EACCES, errno.EPROTO),
     (errno.EHOSTUNREACH, errno.ENETUNREACH)),
])
def test_icmp_error_about_a_synack(v6: bool, drop: tuple[int, ...],
                                   keep: tuple[int, ...]) -> None:
    """An ICMP error quoting a listener's SYN-ACK (Linux tcp_req_err): the errors that say
    the SYN's source is unreachable drop the half-open connection (its completing ACK then
    gets a reset), the others (and a quote with another sequence number) leave it (review
    s7 icmp unreachable_in_syn_received)."""
    local, remote = (A6, B6) if v6 else (A4, B4)
    lay = TcpLayer(random.Random(1), TcpPolicy(time_wait=1.0))
    listener = lay.listen(80, local)
    sport = 5000
    for err in keep + drop:
        sport += 1
        lay.outbox.clear()
        lay.input(remote, local, encode(Segment(1000, 0, SYN, 65535, mss=1400), sport, 80,
                                        remote, local), 0.0)
        (_, _, data), = lay.outbox
        synack = decode(data)[2]
        assert synack.flags == SYN | ACK
        key = (local, 80, remote, sport)
        conn = lay.connections[key]
        wrong = bytearray(data[:8])
        wrong[4:8] = ((synack.seq + 1) & MASK).to_bytes(4, "big")
        lay.icmp_error(local, remote, wrong, err, 0.1)
        assert lay.connections.get(key) is conn  # not the SYN-ACK's sequence number
        lay.icmp_error(local, remote, data[:8], err, 0.1)
        lay.outbox.clear()
        lay.input(remote, local, encode(Segment(1001, synack.seq + 1, ACK, 65535), sport, 80,
                                        remote, local), 0.2)
        if err in drop:
            assert key not in lay.connections and conn not in listener.syn_queue
            (_, _, data), = lay.outbox
            rst = decode(data)[2]
            assert rst.flags == RST and rst.seq == (synack.seq + 1) & MASK
        else:
            assert conn.state is State.ESTABLISHED and lay.outbox == []
    assert lay.icmp_req_drops == len(drop)
    assert len(listener.accept_queue) == len(keep)


def test_blind_fragmentation_needed_is_ignored() -> None:
    """An ICMP quoting a sequence number outside SND.UNA..SND.NXT changes nothing (Linux
    tcp_v4_err / tcp_v6_err: out-of-window ICMPs are dropped, RFC 5927): no smaller MSS,
    no resent flight; one quoting the flight re-cuts it."""
    lay = TcpLayer(random.Random(1), TcpPolicy(time_wait=1.0))
    conn = lay.connect(A4, B4, 80, 0.0)
    syn = decode(lay.outbox[0][2])[2]
    lay.outbox.clear()
    sport = conn.local[1]
    lay.input(B4, A4, encode(Segment(5000, syn.seq + 1, SYN | ACK, 65535, mss=1460), 80,
                             sport, B4, A4), 0.01)
    lay.outbox.clear()
    conn.send(b"b" * 4380)
    lay.flush(conn, 0.02)
    sent = [decode(d)[2] for _, _, d in lay.outbox]
    assert [len(s.payload) for s in sent] == [1460] * 3
    lay.outbox.clear()
    quote = bytearray(encode(sent[0], sport, 80, A4, B4)[:8])
    blind = bytearray(quote)
    blind[4:8] = ((sent[0].seq + 100_000) & MASK).to_bytes(4, "big")
    lay.icmp_error(A4, B4, blind, 0, 0.03, mtu=1200)
    assert conn.mss == 1460 and lay.outbox == []
    lay.icmp_error(A4, B4, quote, 0, 0.04, mtu=1200)
    assert conn.mss == 1160
    assert [len(decode(d)[2].payload) for _, _, d in lay.outbox] == [1160] * 3 + [900]
