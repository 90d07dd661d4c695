"""Packet-level tests of the TCB on a virtual clock, one state at a time (smoltcp style).

Each test builds a :class:`TcpConnection` in a known state from templates, feeds segments with
:func:`send` and checks what :func:`recv` (the connection's ``dispatch``) emits.
"""

from __future__ import annotations

import errno
import random

import pytest

from ioth.stack.tcp import input as input_mod
from ioth.stack.tcp.connection import MASK, State, TcpConnection
from ioth.stack.tcp.isn import IsnGenerator
from ioth.stack.tcp.policy import TcpPolicy
from ioth.stack.tcp.segment import ACK, FIN, PSH, RST, SYN, Segment

LOCAL = (bytes([192, 0, 2, 1]), 80)
REMOTE = (bytes([192, 0, 2, 2]), 49152)
REMOTE_SEQ = 10_000
MSS = 1460
POLICY = TcpPolicy(time_wait=2.0, recv_buffer=64 * 1024, send_buffer=64 * 1024)


def tcb(policy: TcpPolicy = POLICY, mss: int = MSS) -> TcpConnection:
    return TcpConnection(policy, IsnGenerator(random.Random(5)), LOCAL, REMOTE, mss)


def seg(
    seq: int,
    ack: int | None = None,
    flags: int = 0,
    payload: bytes = b"",
    window: int = 65535,
    **opts: object,
) -> Segment:
    """A segment from the remote end; sequence numbers are relative to REMOTE_SEQ."""
    f = flags | (ACK if ack is not None else 0)
    s = Segment((REMOTE_SEQ + seq) & MASK, (ack or 0) & MASK, f, window, payload)
    for k, v in opts.items():
        setattr(s, k, v)
    return s


def recv(conn: TcpConnection, now: float = 0.0) -> list[Segment]:
    return conn.dispatch(now)


def only(segs: list[Segment]) -> Segment:
    assert len(segs) == 1, segs
    return segs[0]


def plain_policy(**kw: object) -> TcpPolicy:
    """No options: the arithmetic of the tests stays simple."""
    return POLICY.replace(window_scaling=False, timestamps=False, sack=False, **kw)


# ---------------------------------------------------------------------------- fixtures


def listening(policy: TcpPolicy = POLICY) -> TcpConnection:
    c = tcb(policy)
    c.listen()
    return c


def syn_received(policy: TcpPolicy = POLICY, **synopts: object) -> TcpConnection:
    c = listening(policy)
    c.process(seg(0, flags=SYN, **synopts), 0.0)
    out = only(recv(c))
    assert out.flags == SYN | ACK
    return c


def established(policy: TcpPolicy | None = None, **synopts: object) -> TcpConnection:
    c = syn_received(policy or plain_policy(), **synopts)
    c.process(seg(1, c.iss + 1), 0.0)
    assert c.state is State.ESTABLISHED
    assert recv(c) == []
    return c


# ---------------------------------------------------------------------------- LISTEN


def test_listen_syn_gets_synack_with_options() -> None:
    c = listening()
    c.process(seg(0, flags=SYN, mss=1400, wscale=7, sack_perm=True, tsval=1234), 0.0)
    assert c.state is State.SYN_RECEIVED
    out = only(recv(c))
    assert out.flags == SYN | ACK
    assert out.ack == REMOTE_SEQ + 1
    assert out.seq == c.iss & MASK
    assert out.mss == MSS and out.sack_perm and out.wscale == c.rcv_wscale and c.rcv_wscale > 0
    assert out.tsecr == 1234
    assert c.mss == 1400 - 12  # timestamps take 12 bytes of every segment
    assert c.snd_wscale == 7 and c.sack_ok and c.ts_ok


def test_listen_synack_omits_options_the_peer_did_not_offer() -> None:
    c = listening()
    c.process(seg(0, flags=SYN), 0.0)
    out = only(recv(c))
    assert out.wscale is None and not out.sack_perm and out.tsval is None
    assert c.mss == 536  # RFC 9293 3.7.1 default send MSS for IPv4
    assert c.rcv_wscale == 0


def test_listen_ignores_rst_and_resets_ack() -> None:
    c = listening()
    c.process(seg(0, flags=RST), 0.0)
    assert recv(c) == [] and c.state is State.LISTEN
    c.process(seg(0, 777), 0.0)
    out = only(recv(c))
    assert out.flags == RST and out.seq == 777
    assert c.state is State.LISTEN


# ---------------------------------------------------------------------------- SYN-RECEIVED


def test_syn_received_ack_establishes() -> None:
    c = syn_received()
    c.process(seg(1, c.iss + 1, window=100, tsval=5, tsecr=0), 0.0)
    assert c.state is State.ESTABLISHED
    assert c.snd_wnd == 100 << c.snd_wscale


def test_syn_received_bad_ack_gets_rst() -> None:
    c = syn_received()
    c.process(seg(1, c.iss + 5), 0.0)
    assert c.state is State.SYN_RECEIVED
    out = only(recv(c))
    assert out.flags == RST and out.seq == (c.iss + 5) & MASK


def test_syn_received_rst_closes_quietly() -> None:
    c = syn_received()
    c.process(seg(1, flags=RST), 0.0)
    assert c.state is State.CLOSED and c.error is None


def test_syn_received_retransmits_synack_then_gives_up() -> None:
    c = syn_received(POLICY.replace(synack_retries=2))
    now = 0.0
    for _ in range(2):
        now = c.poll_at() or 0.0
        assert only(recv(c, now)).flags == SYN | ACK
    now = c.poll_at() or 0.0
    assert recv(c, now) == []
    assert c.state is State.CLOSED


# ---------------------------------------------------------------------------- SYN-SENT


def syn_sent(policy: TcpPolicy = POLICY) -> tuple[TcpConnection, Segment]:
    c = tcb(policy)
    c.connect(0.0)
    out = only(recv(c))
    assert out.flags == SYN and c.state is State.SYN_SENT
    return c, out


def test_syn_sent_emits_syn_with_options() -> None:
    _, syn = syn_sent()
    assert syn.mss == MSS and syn.sack_perm and syn.wscale is not None and syn.tsval is not None
    assert syn.tsecr == 0


def test_syn_sent_synack_establishes() -> None:
    c, syn = syn_sent()
    c.process(seg(0, syn.seq + 1, SYN, mss=1000, wscale=2, sack_perm=True, tsval=9,
                  tsecr=syn.tsval), 0.0)
    assert c.state is State.ESTABLISHED
    out = only(recv(c))
    assert out.flags == ACK and out.ack == REMOTE_SEQ + 1 and out.tsecr == 9
    assert c.mss == 1000 - 12 and c.snd_wscale == 2


def test_syn_sent_bad_ack_resets() -> None:
    c, syn = syn_sent()
    c.process(seg(0, syn.seq + 10, SYN), 0.0)
    out = only(recv(c))
    assert out.flags == RST and out.seq == (syn.seq + 10) & MASK
    assert c.state is State.SYN_SENT


def test_syn_sent_rst_refuses() -> None:
    c, syn = syn_sent()
    c.process(seg(0, flags=RST), 0.0)  # no ACK: ignored (RFC 9293 3.10.7.3)
    assert c.state is State.SYN_SENT
    c.process(seg(0, syn.seq + 1, RST), 0.0)
    assert c.state is State.CLOSED
    with pytest.raises(ConnectionRefusedError):
        c.recv()


def test_syn_sent_times_out() -> None:
    c, _ = syn_sent(POLICY.replace(syn_retries=2, initial_rto=1.0))
    times = []
    for _ in range(3):
        now = c.poll_at()
        assert now is not None
        times.append(now)
        recv(c, now)
    assert times == [1.0, 3.0, 7.0]  # RFC 6298 5.5: back off the timer
    assert c.state is State.CLOSED and c.error == errno.ETIMEDOUT


def test_simultaneous_open() -> None:
    c, syn = syn_sent()
    c.process(seg(0, flags=SYN, mss=1200), 0.0)
    assert c.state is State.SYN_RECEIVED
    out = only(recv(c))
    assert out.flags == SYN | ACK and out.seq == syn.seq and out.ack == REMOTE_SEQ + 1
    c.process(seg(1, syn.seq + 1), 0.0)
    assert c.state is State.ESTABLISHED


# ---------------------------------------------------------------------------- ESTABLISHED


def test_established_delayed_ack() -> None:
    c = established()
    c.process(seg(1, c.iss + 1, payload=b"x" * 100), 0.0)
    assert recv(c, 0.0) == []
    assert c.poll_at() == pytest.approx(POLICY.delayed_ack)
    out = only(recv(c, POLICY.delayed_ack))
    assert out.ack == REMOTE_SEQ + 101
    assert c.recv() == b"x" * 100


def test_established_acks_every_second_full_segment() -> None:
    c = established(mss=1460)
    c.process(seg(1, c.iss + 1, payload=b"a" * 1460), 0.0)
    assert recv(c) == []
    c.process(seg(1461, c.iss + 1, payload=b"b" * 1460), 0.0)
    assert only(recv(c)).ack == REMOTE_SEQ + 2921


def test_established_out_of_order_sacks_and_reassembles() -> None:
    c = established(POLICY.replace(timestamps=False, window_scaling=False), sack_perm=True)
    c.process(seg(101, c.iss + 1, payload=b"b" * 100), 0.0)
    out = only(recv(c))
    assert out.ack == REMOTE_SEQ + 1
    assert out.sack == ((REMOTE_SEQ + 101, REMOTE_SEQ + 201),)
    c.process(seg(1, c.iss + 1, payload=b"a" * 100), 0.0)
    out = only(recv(c))  # a filled hole is acknowledged at once
    assert out.ack == REMOTE_SEQ + 201 and not out.sack
    assert c.recv() == b"a" * 100 + b"b" * 100


def test_established_duplicate_and_overlapping_data() -> None:
    c = established()
    c.process(seg(1, c.iss + 1, payload=b"abcdef"), 0.0)
    c.process(seg(4, c.iss + 1, payload=b"defghi"), 0.0)
    assert c.recv() == b"abcdefghi"
    c.process(seg(1, c.iss + 1, payload=b"abc"), 0.0)  # old duplicate: ACK again
    assert only(recv(c)).ack == REMOTE_SEQ + 10


def test_established_rst_exact_resets() -> None:
    c = established()
    c.process(seg(1, flags=RST), 0.0)
    assert c.state is State.CLOSED
    with pytest.raises(ConnectionResetError):
        c.recv()
    with pytest.raises(BrokenPipeError):
        c.send(b"x")


def test_established_rst_in_window_gets_challenge_ack() -> None:
    c = established()
    c.process(seg(50, flags=RST), 0.0)  # RFC 5961 3.2
    assert c.state is State.ESTABLISHED
    out = only(recv(c))
    assert out.flags == ACK and out.ack == REMOTE_SEQ + 1
    assert c.challenge_acks == 1


def test_established_rst_out_of_window_is_dropped() -> None:
    c = established()
    c.process(seg(1 << 20, flags=RST), 0.0)
    assert c.state is State.ESTABLISHED and recv(c) == []


def test_established_syn_gets_challenge_ack() -> None:
    c = established()
    c.process(seg(1, flags=SYN), 0.0)  # RFC 5961 4.2
    assert c.state is State.ESTABLISHED
    assert only(recv(c)).flags == ACK


def test_challenge_acks_are_rate_limited() -> None:
    c = established(plain_policy(challenge_ack_limit=3))
    for _ in range(10):
        c.process(seg(1, flags=SYN), 0.0)
        recv(c)
    assert c.challenge_acks == 3


def test_established_ack_of_unsent_data_is_acked_and_dropped() -> None:
    c = established()
    c.process(seg(1, c.iss + 1000, payload=b"zz"), 0.0)
    out = only(recv(c))
    assert out.ack == REMOTE_SEQ + 1  # the data was not accepted
    assert c.recv_available == 0


def test_established_too_old_ack_gets_challenge_ack() -> None:
    c = established()
    c.process(seg(1, c.iss + 1 - 200_000), 0.0)  # RFC 5961 5.2
    assert only(recv(c)).flags == ACK
    assert c.challenge_acks == 1


def test_established_sends_and_is_acked() -> None:
    c = established()
    assert c.send(b"hello") == 5
    out = only(recv(c))
    assert out.payload == b"hello" and out.flags == ACK | PSH and out.seq == (c.iss + 1) & MASK
    c.process(seg(1, c.iss + 6), 0.0)
    assert c.snd_una == c.iss + 6 and c.send_queue == 0
    assert recv(c) == []
    assert c.poll_at() is None


def test_segments_respect_mss_and_window() -> None:
    c = established()
    c.process(seg(1, c.iss + 1, window=3000), 0.0)
    c.send(b"x" * 10_000)
    out = recv(c)
    assert [len(s.payload) for s in out] == [536, 536, 536, 536, 536]
    assert c.snd_nxt - c.snd_una == 2680


def test_nagle_and_nodelay() -> None:
    c = established()
    c.send(b"a")
    assert len(recv(c)) == 1
    c.send(b"b")
    assert recv(c) == []  # Nagle: small segment waits for the ACK
    c.process(seg(1, c.iss + 2), 0.0)
    assert only(recv(c)).payload == b"b"
    c.nodelay = True
    c.send(b"c")
    assert only(recv(c)).payload == b"c"
    c.send(b"d")
    assert only(recv(c)).payload == b"d"


def test_window_scaling_in_segments() -> None:
    policy = POLICY.replace(timestamps=False, sack=False, recv_buffer=1 << 20)
    c = syn_received(policy, wscale=3)
    assert c.rcv_wscale == 5
    c.process(seg(1, c.iss + 1, window=1000), 0.0)
    assert c.snd_wnd == 8000
    c.process(seg(1, c.iss + 1, payload=b"x" * 10), 0.0)
    out = only(recv(c, 1.0))
    assert out.window == ((1 << 20) - 10) >> 5


def test_paws_drops_old_timestamps() -> None:
    c = established(POLICY.replace(sack=False), tsval=1000)
    c.process(seg(1, c.iss + 1, payload=b"new", tsval=1001, tsecr=0), 0.0)
    assert c.ts_recent == 1001
    c.process(seg(4, c.iss + 1, payload=b"old", tsval=900, tsecr=0), 0.0)
    assert c.recv() == b"new"
    assert c.dropped == 1


# ---------------------------------------------------------------------------- retransmission


def test_rto_retransmits_backs_off_and_times_out() -> None:
    c = established(plain_policy(retries=3, initial_rto=1.0, min_rto=1.0))
    c.send(b"data")
    first = only(recv(c))
    times = []
    for _ in range(3):
        now = c.poll_at()
        assert now is not None
        times.append(now)
        out = only(recv(c, now))
        assert out.payload == first.payload and out.seq == first.seq
    assert times == [1.0, 3.0, 7.0]
    now = c.poll_at()
    assert now == 15.0
    assert recv(c, now) == []
    assert c.state is State.CLOSED
    with pytest.raises(TimeoutError):
        c.send(b"more")


def test_rtt_estimate_per_rfc6298() -> None:
    c = established()
    c.send(b"x")
    recv(c, 0.0)
    c.process(seg(1, c.iss + 2), 0.5)
    # the handshake measured 0 s; RFC 6298 2.3 with alpha 1/8, beta 1/4, then the RTO floor
    assert c.srtt == pytest.approx(0.0625) and c.rttvar == pytest.approx(0.125)
    assert c.rto == pytest.approx(0.5625)


def test_fast_retransmit_newreno() -> None:
    c = established(plain_policy(congestion_control="newreno"))
    c.process(seg(1, c.iss + 1, window=60000), 0.0)
    c.send(b"x" * 536 * 8)
    out = recv(c)
    assert len(out) == 8
    cwnd = c.cc.cwnd
    for _ in range(3):
        c.process(seg(1, c.iss + 1, window=60000), 0.01)
    rtx = recv(c, 0.01)
    assert rtx[0].seq == (c.iss + 1) & MASK and len(rtx[0].payload) == 536
    assert c.fast_recoveries == 1 and c.cc.ssthresh == 536 * 8 // 2  # FlightSize / 2
    assert cwnd > c.cc.ssthresh
    # partial ACK: retransmit the next hole at once (RFC 6582)
    c.process(seg(1, c.iss + 1 + 536 * 2, window=60000), 0.02)
    rtx = recv(c, 0.02)
    assert rtx and rtx[0].seq == (c.iss + 1 + 536 * 2) & MASK
    # full ACK ends recovery
    c.process(seg(1, c.iss + 1 + 536 * 8, window=60000), 0.03)
    assert not c._in_recovery


def test_sack_recovery_retransmits_only_holes() -> None:
    policy = POLICY.replace(timestamps=False, window_scaling=False)
    c = established(policy, sack_perm=True)
    c.process(seg(1, c.iss + 1, window=60000), 0.0)
    c.send(b"y" * 536 * 10)
    recv(c)
    base = c.iss + 1
    # segments 0 and 2 lost; 1, 3..9 arrive
    blocks = [((base + 536) & MASK, (base + 1072) & MASK)]
    for k in range(3, 10):
        blocks = [((base + 536 * 3) & MASK, (base + 536 * (k + 1)) & MASK),
                  ((base + 536) & MASK, (base + 1072) & MASK)]
        c.process(seg(1, base, window=60000, sack=tuple(blocks)), 0.01)
    out = recv(c, 0.01)
    seqs = [s.seq for s in out if s.seq < (base + 536 * 10) & MASK]
    assert (base & MASK) in seqs and ((base + 1072) & MASK) in seqs
    assert ((base + 536) & MASK) not in seqs
    assert c.fast_recoveries == 1


def test_zero_window_probe() -> None:
    c = established(plain_policy(initial_rto=1.0, min_rto=1.0))
    c.process(seg(1, c.iss + 1, window=0), 0.0)
    c.send(b"z" * 100)
    assert recv(c) == []
    t = c.poll_at()
    assert t == 1.0
    probe = only(recv(c, t))
    assert probe.payload == b"" and probe.seq == (c.iss) & MASK  # SND.UNA - 1
    t2 = c.poll_at()
    assert t2 == 3.0  # backed off
    c.process(seg(1, c.iss + 1, window=1000), 3.5)
    out = only(recv(c, 3.5))
    assert out.payload == b"z" * 100


def test_receiver_window_update_after_read() -> None:
    policy = plain_policy(recv_buffer=4096)
    c = established(policy)
    c.process(seg(1, c.iss + 1, payload=b"q" * 536), 0.0)
    c.process(seg(537, c.iss + 1, payload=b"q" * 536), 0.0)
    assert only(recv(c)).window < 4096
    for k in range(2, 7):
        c.process(seg(1 + 536 * k, c.iss + 1, payload=b"q" * 536), 0.0)
    recv(c, 1.0)
    assert c.recv(10_000) == b"q" * 536 * 7
    out = only(recv(c, 1.0))  # window update
    assert out.window == 4096


def test_keepalive_probes_then_times_out() -> None:
    c = established(plain_policy(keepalive=True, keepidle=10.0, keepintvl=1.0, keepcnt=2))
    assert c.poll_at() == 10.0
    probe = only(recv(c, 10.0))
    assert probe.seq == c.iss & MASK and probe.payload == b""
    c.process(seg(1, c.iss + 1), 10.5)  # answered: idle timer restarts
    assert c.poll_at() == 20.5
    only(recv(c, 20.5))
    only(recv(c, 21.5))
    rst = only(recv(c, 22.5))  # as Linux: the peer, if still there, learns it is over
    assert rst.flags == RST | ACK and rst.seq == (c.iss + 1) & MASK
    assert rst.ack == (REMOTE_SEQ + 1) & MASK
    assert c.state is State.CLOSED and c.error == errno.ETIMEDOUT


# ---------------------------------------------------------------------------- closing


def test_active_close_to_time_wait() -> None:
    c = established()
    c.shutdown()
    assert c.state is State.FIN_WAIT_1
    fin = only(recv(c))
    assert fin.flags & FIN and fin.seq == (c.iss + 1) & MASK
    c.process(seg(1, c.iss + 2), 0.0)
    assert c.state is State.FIN_WAIT_2
    c.process(seg(1, c.iss + 2, payload=b"late"), 0.0)  # half-close: still receiving
    c.process(seg(5, c.iss + 2, FIN), 0.0)
    assert c.state is State.TIME_WAIT
    assert only(recv(c)).ack == REMOTE_SEQ + 6
    assert c.recv() == b"late" and c.recv() == b""
    # retransmitted FIN in TIME-WAIT: ACK again, restart 2MSL
    c.process(seg(5, c.iss + 2, FIN), 1.0)
    assert only(recv(c, 1.0)).ack == REMOTE_SEQ + 6
    assert c.poll_at() == 3.0
    recv(c, 3.0)
    assert c.state is State.CLOSED and c.error is None


def test_fin_with_ack_from_fin_wait_1_goes_to_time_wait() -> None:
    c = established()
    c.shutdown()
    recv(c)
    c.process(seg(1, c.iss + 2, FIN), 0.0)
    assert c.state is State.TIME_WAIT


def test_simultaneous_close() -> None:
    c = established()
    c.shutdown()
    recv(c)
    c.process(seg(1, c.iss + 1, FIN), 0.0)  # their FIN does not ack ours
    assert c.state is State.CLOSING
    recv(c)
    c.process(seg(2, c.iss + 2), 0.0)
    assert c.state is State.TIME_WAIT


@pytest.mark.parametrize("delayed", [True, False])
def test_passive_close(monkeypatch: pytest.MonkeyPatch, delayed: bool) -> None:
    monkeypatch.setattr(input_mod, "DELAYED_FIN_ACK", delayed)
    c = established()
    c.process(seg(1, c.iss + 1, FIN, payload=b"bye"), 0.0)
    assert c.state is State.CLOSE_WAIT
    if delayed:  # as Linux: the FIN's ACK waits for our answer (delayed-ACK timer)
        assert recv(c) == [] and c.poll_at() == c.policy.delayed_ack
    else:
        assert only(recv(c)).ack == REMOTE_SEQ + 5
    assert c.recv() == b"bye" and c.recv() == b""
    c.send(b"reply")  # half-open: we may still send
    c.shutdown()
    assert c.state is State.LAST_ACK
    out = only(recv(c))
    assert out.payload == b"reply" and out.flags & FIN and out.ack == REMOTE_SEQ + 5
    c.process(seg(5, c.iss + 7), 0.0)
    assert c.state is State.CLOSED and c.error is None


def test_delayed_fin_ack_goes_at_the_timer_without_an_answer() -> None:
    c = established()
    c.process(seg(1, c.iss + 1, FIN), 0.0)
    assert c.state is State.CLOSE_WAIT and recv(c) == []
    assert recv(c, c.policy.delayed_ack / 2) == []
    out = only(recv(c, c.policy.delayed_ack))
    assert out.flags == ACK and out.ack == REMOTE_SEQ + 2
    assert c.poll_at() is None


def test_fin_in_fin_wait_states_is_acknowledged_at_once() -> None:
    c = established()
    c.shutdown()
    fin = only(recv(c))
    assert fin.flags & FIN and c.state is State.FIN_WAIT_1
    c.process(seg(1, c.iss + 2, FIN), 0.0)  # acks our FIN and carries the peer's
    assert c.state is State.TIME_WAIT
    assert only(recv(c)).ack == REMOTE_SEQ + 2


def test_out_of_order_fin() -> None:
    c = established()
    c.process(seg(4, c.iss + 1, FIN, payload=b"def"), 0.0)
    assert c.state is State.ESTABLISHED
    c.process(seg(1, c.iss + 1, payload=b"abc"), 0.0)
    assert c.state is State.CLOSE_WAIT
    assert c.recv() == b"abcdef" and c.recv() == b""


def test_send_after_shutdown_is_epipe() -> None:
    c = established()
    c.shutdown()
    with pytest.raises(BrokenPipeError):
        c.send(b"x")


def test_close_with_unread_data_resets() -> None:
    c = established()
    c.process(seg(1, c.iss + 1, payload=b"unread"), 0.0)
    recv(c)
    c.close()
    out = only(recv(c))
    assert out.flags & RST and c.state is State.CLOSED


def test_data_after_close_resets() -> None:
    c = established()
    c.close()
    recv(c)
    c.process(seg(1, c.iss + 2, payload=b"more"), 0.0)
    assert only(recv(c)).flags & RST
    assert c.state is State.CLOSED


def test_orphaned_fin_wait_2_times_out() -> None:
    c = established(plain_policy(fin_timeout=5.0))
    c.close()
    recv(c)
    c.process(seg(1, c.iss + 2), 1.0)
    assert c.state is State.FIN_WAIT_2
    recv(c, 1.0)
    assert c.poll_at() == 6.0
    recv(c, 6.0)
    assert c.state is State.CLOSED


def test_abort_sends_rst() -> None:
    c = established()
    c.abort()
    out = only(recv(c))
    assert out.flags & RST and c.state is State.CLOSED
    assert c.recv() == b""


def test_closed_tcb_answers_with_rst() -> None:
    c = tcb()
    c.process(seg(5, flags=SYN), 0.0)
    out = only(recv(c))
    assert out.flags == RST | ACK and out.ack == REMOTE_SEQ + 6


def test_user_errors() -> None:
    c = tcb()
    with pytest.raises(OSError) as e:
        c.recv()
    assert e.value.errno == errno.ENOTCONN
    with pytest.raises(OSError) as e:
        c.send(b"x")
    assert e.value.errno == errno.ENOTCONN
    c.connect(0.0)
    with pytest.raises(OSError) as e:
        c.connect(0.0)
    assert e.value.errno == errno.EISCONN
    c2 = established()
    with pytest.raises(BlockingIOError):
        c2.recv()
    c2.send(b"x" * POLICY.send_buffer)
    with pytest.raises(BlockingIOError):
        c2.send(b"y")


def test_keepalive_enabled_after_establishment() -> None:
    c = established(plain_policy(keepidle=10.0, keepintvl=1.0, keepcnt=1))
    assert c.poll_at() is None
    c.keepalive = True
    assert recv(c, 2.0) == []
    assert c.poll_at() == 12.0
    c.keepalive = False
    recv(c, 3.0)
    assert c.poll_at() is None


def test_path_mtu_shrinks_segments() -> None:
    c = established(plain_policy())
    c.process(seg(1, c.iss + 1, window=60000), 0.0)
    assert c.mss == 536  # the peer offered no MSS
    c.set_path_mtu(400)
    assert c.mss == 360
    c.send(b"m" * 1000)
    assert [len(s.payload) for s in recv(c)] == [360, 360]  # Nagle holds the 280-byte tail
    c.set_path_mtu(9000)  # never above what the peer allows
    assert c.mss == 536


def test_icmp_port_unreachable_refuses_syn_sent() -> None:
    c, syn = syn_sent()
    c.icmp_error(syn.seq + 5, errno.ECONNREFUSED, 0.1)  # quote outside SND.UNA..SND.NXT
    assert c.state is State.SYN_SENT
    c.icmp_error(syn.seq, 0, 0.1)  # no error (fragmentation needed): ignored
    assert c.state is State.SYN_SENT
    c.icmp_error(syn.seq, errno.ECONNREFUSED, 0.1)
    assert c.state is State.CLOSED and c.error == errno.ECONNREFUSED


@pytest.mark.parametrize("err", [errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EACCES])
def test_icmp_error_aborts_syn_sent_with_its_errno(err: int) -> None:
    c, syn = syn_sent()
    c.icmp_error(syn.seq, err, 0.1)
    assert c.state is State.CLOSED and c.error == err
    with pytest.raises(OSError) as exc:
        c.recv()
    assert exc.value.errno == err


def test_icmp_error_is_soft_when_established_and_reported_on_timeout() -> None:
    c = established()
    c.send(b"x" * 100)
    (data,) = recv(c)
    c.icmp_error(data.seq, errno.EHOSTUNREACH, 0.1)
    c.icmp_error(data.seq, errno.ECONNREFUSED, 0.1)  # hard codes are soft here too
    assert c.state is State.ESTABLISHED and c.error is None
    now = 0.0
    while c.state is not State.CLOSED:  # retransmit until retries run out
        at = c.poll_at()
        assert at is not None
        now = max(now, at)
        c.dispatch(now)
    assert c.error == errno.ECONNREFUSED  # the latest soft error, not ETIMEDOUT


def test_apply_policy_on_a_live_connection() -> None:
    c = established(plain_policy(congestion_control="newreno"))
    c.cc.cwnd = 12345
    c.apply_policy(c.policy.replace(congestion_control="cubic", nodelay=True, keepalive=True,
                                    min_rto=2.0))
    assert c.cc.name == "cubic" and c.cc.cwnd == 12345
    assert c.nodelay and c.keepalive and c.rto == 2.0
    recv(c, 1.0)
    assert c.poll_at() == 1.0 + c.policy.keepidle


def test_retransmitted_syn_gets_synack_again() -> None:
    c = syn_received()
    c.process(seg(0, flags=SYN), 0.5)
    out = only(recv(c, 0.5))
    assert out.flags == SYN | ACK and out.seq == c.iss & MASK
    assert c.state is State.SYN_RECEIVED


def test_early_retransmit_with_small_flight() -> None:
    c = established(plain_policy(congestion_control="newreno"))
    c.process(seg(1, c.iss + 1, window=60000), 0.0)
    c.nodelay = True
    c.send(b"r" * 536 * 3)
    assert len(recv(c)) == 3
    # first segment lost; two dupacks (one per later segment) trigger RFC 5827 early rtx
    c.process(seg(1, c.iss + 1, window=60000), 0.01)
    assert recv(c, 0.01) == []
    c.process(seg(1, c.iss + 1, window=60000), 0.01)
    out = only(recv(c, 0.01))
    assert out.seq == (c.iss + 1) & MASK and c.fast_recoveries == 1


def test_zero_window_probes_give_up_on_a_silent_peer() -> None:
    c = established(plain_policy(initial_rto=1.0, min_rto=1.0, max_rto=4.0, retries=3))
    c.process(seg(1, c.iss + 1, window=0), 0.0)
    c.send(b"z")
    recv(c)
    probes = 0
    while c.state is State.ESTABLISHED:
        t = c.poll_at()
        assert t is not None
        probes += len(recv(c, t))
    assert probes == 3 and c.error == errno.ETIMEDOUT


def test_zero_window_answered_probes_keep_the_connection() -> None:
    c = established(plain_policy(initial_rto=1.0, min_rto=1.0, max_rto=4.0, retries=3))
    c.process(seg(1, c.iss + 1, window=0), 0.0)
    c.send(b"z")
    recv(c)
    for _ in range(10):
        t = c.poll_at()
        assert t is not None
        assert only(recv(c, t)).payload == b""
        c.process(seg(1, c.iss + 1, window=0), t + 0.01)  # the peer answers: window still 0
    assert c.state is State.ESTABLISHED


def test_lost_retransmission_is_detected_without_rto() -> None:
    policy = POLICY.replace(timestamps=False, window_scaling=False, initial_window=20,
                            min_rto=1.0)
    c = established(policy, sack_perm=True)
    c.process(seg(1, c.iss + 1, window=60000), 0.0)
    c.send(b"y" * 536 * 30)
    first = recv(c)
    assert len(first) == 20
    base = c.iss + 1

    def sack_upto(k: int, now: float) -> None:
        block = ((base + 536) & MASK, (base + 536 * k) & MASK)
        c.process(seg(1, base, window=60000, sack=(block,)), now)

    for k in range(2, 6):  # segment 0 lost; 1.. delivered
        sack_upto(k, 0.1)
    rtx = recv(c, 0.1)
    assert rtx[0].seq == base & MASK  # fast retransmit of segment 0
    new_after = [s for s in rtx if s.seq != base & MASK]
    for k in range(6, 21):
        sack_upto(k, 0.2)
    more = recv(c, 0.2)
    new_after += more
    assert new_after, "no new data went out after the retransmission"
    # data sent after the retransmission is SACKed, segment 0 still missing, RTT passed
    sack_upto(22, 0.5)
    again = recv(c, 0.5)
    assert again and again[0].seq == base & MASK
    assert c.rto_expirations == 0


def test_recv_into() -> None:
    c = established()
    c.process(seg(1, c.iss + 1, payload=b"abc"), 0.0)
    c.process(seg(4, c.iss + 1, payload=b"defgh"), 0.0)
    buf = bytearray(6)
    assert c.recv_into(buf) == 6 and buf == b"abcdef"
    assert c.recv_into(buf) == 2 and buf[:2] == b"gh"
    with pytest.raises(BlockingIOError):
        c.recv_into(buf)


def test_out_of_order_queue_is_bounded() -> None:
    c = established(plain_policy(recv_buffer=64 * 1024))
    for k in range(1000):  # 1-byte pieces with gaps: a reassembly-queue flood
        c.process(seg(2 + 2 * k, c.iss + 1, payload=b"x"), 0.0)
    assert len(c._ooo) == 256 and c.dropped == 1000 - 256
    c.process(seg(1, c.iss + 1, payload=b"y"), 0.0)
    assert c.recv() == b"yx"  # the first stored piece follows; the next gap stops it


def test_tail_loss_probe_then_recovery_without_rto() -> None:
    policy = POLICY.replace(timestamps=False, window_scaling=False, min_rto=1.0)
    c = established(policy, sack_perm=True)
    c.process(seg(1, c.iss + 1, window=60000), 0.0)
    c.srtt, c.rttvar, c.rto = 0.1, 0.05, 1.0
    c.send(b"t" * 536 * 3)
    assert len(recv(c, 0.0)) == 3
    base = c.iss + 1
    assert c.poll_at() == pytest.approx(0.2)  # PTO = 2 * SRTT, before the RTO at 1.0
    probe = only(recv(c, 0.2))
    assert probe.seq == (base + 536 * 2) & MASK and c.tail_probes == 1
    # the probe arrives: SACK for the last segment, the first two are still missing
    block = ((base + 1072) & MASK, (base + 1608) & MASK)
    c.process(seg(1, base, window=60000, sack=(block,)), 0.3)
    out = recv(c, 0.3)
    assert [s.seq for s in out][:1] == [base & MASK]
    assert c.fast_recoveries == 1 and c.rto_expirations == 0


def test_send_accepts_any_buffer_as_bytes() -> None:
    import array

    c = established()
    words = array.array("I", [1, 2, 3])
    assert c.send(words) == 12
    assert only(recv(c)).payload == words.tobytes()
    with pytest.raises(ValueError):
        c.recv(-1)


def test_cwnd_restarts_after_idle() -> None:
    c = established(plain_policy(initial_window=2, min_rto=1.0))
    c.process(seg(1, c.iss + 1, window=60000), 0.0)
    c.cc.cwnd = 20 * 536
    c.send(b"a" * 536)
    recv(c, 0.0)
    c.process(seg(1, c.iss + 1 + 536, window=60000), 0.1)
    c.send(b"b" * 536 * 10)
    assert len(recv(c, 0.2)) == 10  # not idle: the whole window goes
    c.process(seg(1, c.iss + 1 + 536 * 11, window=60000), 0.3)
    c.send(b"c" * 536 * 10)
    assert len(recv(c, 10.0)) == 2  # idle for longer than the RTO: restart window = IW


def test_apply_policy_overrides_options_set_on_the_connection() -> None:
    """F5: nodelay/keepalive set directly (the socket layer does) are compared with the
    connection's current value, not with the previous policy's."""
    c = established(plain_policy(keepalive=False, nodelay=False))
    c.keepalive = True
    c.nodelay = True
    c.apply_policy(c.policy.replace(min_rto=0.3))  # same keepalive/nodelay as before
    assert not c.keepalive and not c.nodelay
    recv(c, 1.0)
    assert c.poll_at() is None  # no keepalive timer left behind
    c.keepalive = False
    c.apply_policy(c.policy.replace(keepalive=True, keepidle=5.0))
    assert c.keepalive
    recv(c, 2.0)
    assert c.poll_at() == 2.0 + 5.0
    # new keepalive times re-arm a running idle timer
    c.apply_policy(c.policy.replace(keepidle=3.0))
    recv(c, 2.5)
    assert c.poll_at() == 2.5 + 3.0


def test_isn_and_ts_offset_from_one_hash() -> None:
    """isn_ts (used by new connections) agrees with isn() and ts_offset() (SYN cookies)."""
    import random as _random

    from ioth.stack.tcp.isn import IsnGenerator

    gen = IsnGenerator(_random.Random(3))
    a, b = bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2])
    iss, ts = gen.isn_ts(12.5, a, 4000, b, 80)
    assert iss == gen.isn(12.5, a, 4000, b, 80) and ts == gen.ts_offset(a, 4000, b, 80)
    assert gen.isn(12.5, a, 4001, b, 80) != iss  # keyed by the 4-tuple
    assert gen.ts_offset(a, 4001, b, 80) != ts
    assert gen.isn(13.5, a, 4000, b, 80) == (iss + 250_000) & 0xFFFFFFFF  # RFC 6528 clock
