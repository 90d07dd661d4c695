"""Review s7 (tests/review_s7/test_wire_handshake.py, test_wire_closing.py) findings fixed
by F1, on the virtual clock, each as Linux does it: the peer's SYN-ACK completes a
simultaneous open in SYN-RECEIVED (RFC 9293 figure 8); a SYN with a new sequence number resets
a passive open's SYN-RECEIVED."""

from __future__ import annotations

from ioth.stack.tcp.connection import MASK, State
from ioth.stack.tcp.segment import ACK, FIN, RST, SYN
from tests.stack.tcp.test_connection import (
    POLICY,
    REMOTE_SEQ,
    established,
    only,
    plain_policy,
    recv,
    seg,
    syn_received,
    syn_sent,
)


def test_simultaneous_open_synack_completes() -> None:
    """SYN-SENT, the peer's SYN crosses ours: SYN-ACK (our ISN again); then the peer's
    SYN-ACK (its ISN again, acking our SYN): ESTABLISHED at once and an ACK of it
    (review s7 handshake simultaneous_open)."""
    c, syn = syn_sent()
    c.process(seg(0, flags=SYN, mss=1200), 0.0)
    assert c.state is State.SYN_RECEIVED
    out = only(recv(c))
    assert out.flags == SYN | ACK and out.seq == syn.seq
    c.process(seg(0, syn.seq + 1, SYN, mss=1200), 0.1)
    assert c.state is State.ESTABLISHED
    ack = only(recv(c, 0.1))
    assert ack.flags == ACK
    assert (ack.seq, ack.ack) == ((syn.seq + 1) & MASK, (REMOTE_SEQ + 1) & MASK)
    c.process(seg(1, syn.seq + 1, payload=b"both"), 0.2)
    assert c.recv() == b"both"


def test_simultaneous_open_synack_with_wrong_ack_is_not_taken() -> None:
    """A SYN-ACK whose ACK is not SND.NXT stays an unacceptable duplicate: an ACK, still
    SYN-RECEIVED."""
    c, syn = syn_sent()
    c.process(seg(0, flags=SYN), 0.0)
    recv(c)
    c.process(seg(0, syn.seq, SYN), 0.1)
    assert c.state is State.SYN_RECEIVED
    assert [s.flags for s in recv(c, 0.1)] == [ACK]


def test_new_syn_in_passive_syn_received_resets() -> None:
    """Passive SYN-RECEIVED: the same SYN again draws the SYN-ACK again; a SYN with a new
    sequence number in the window: <SEQ=0><ACK=SEG.SEQ+1><CTL=RST,ACK> and the half-open
    connection is gone (Linux tcp_check_req; review s7 handshake
    syn_again_in_syn_received)."""
    c = syn_received(plain_policy())
    c.process(seg(0, flags=SYN), 0.1)
    assert [s.flags for s in recv(c, 0.1)] == [SYN | ACK]
    c.process(seg(50, flags=SYN), 0.2)
    rst = only(recv(c, 0.2))
    assert (rst.flags, rst.seq, rst.ack) == (RST | ACK, 0, (REMOTE_SEQ + 51) & MASK)
    assert c.state is State.CLOSED and c.error is None


def test_syn_with_wrong_ack_in_passive_syn_received_keeps_it() -> None:
    """A SYN-ACK in the window whose ACK is not SND.NXT: <SEQ=SEG.ACK><CTL=RST> (Linux: the
    listener's answer to a bad ACK), the half-open connection stays; the right ACK then
    completes it."""
    c = syn_received(plain_policy())
    c.process(seg(50, c.iss + 7, SYN), 0.1)
    rst = only(recv(c, 0.1))
    assert (rst.flags, rst.seq) == (RST, (c.iss + 7) & MASK)
    assert c.state is State.SYN_RECEIVED
    c.process(seg(1, c.iss + 1), 0.2)
    assert c.state is State.ESTABLISHED


def test_syn_in_active_syn_received_still_gets_a_challenge_ack() -> None:
    """Active open turned simultaneous: a SYN with a new sequence number is not reset
    (Linux: a full socket, tcp_validate_incoming's challenge ACK)."""
    c, _ = syn_sent()
    c.process(seg(0, flags=SYN), 0.0)
    recv(c)
    c.process(seg(50, flags=SYN), 0.1)
    assert [s.flags for s in recv(c, 0.1)] == [ACK]
    assert c.state is State.SYN_RECEIVED


def test_data_after_close_resets_at_seg_ack() -> None:
    """Data after close(): <SEQ=SEG.ACK><CTL=RST> as Linux, in FIN-WAIT-1 (the peer has not
    seen our FIN: SEG.ACK is SND.NXT - 1, the peer's RCV.NXT) and FIN-WAIT-2 (review s7
    closing fin_wait_1_segments, fin_wait_2_segments)."""
    for acked in (False, True):
        c = established()
        c.close()
        fin = only(recv(c))
        assert fin.flags & FIN and c.state is State.FIN_WAIT_1
        ack = c.iss + 1
        if acked:
            c.process(seg(1, c.iss + 2), 0.0)
            assert c.state is State.FIN_WAIT_2
            ack = c.iss + 2
        c.process(seg(1, ack, payload=b"more"), 0.1)
        rst = only(recv(c, 0.1))
        assert (rst.flags, rst.seq) == (RST, ack & MASK)
        assert c.state is State.CLOSED


def test_data_in_close_wait_is_dropped_silently() -> None:
    """CLOSE-WAIT: text at RCV.NXT (after the peer's FIN) is ignored without an answer,
    a FIN on it too (Linux; review s7 closing close_wait_data); the connection stays."""
    c = established()
    c.process(seg(1, c.iss + 1, FIN), 0.0)
    assert c.state is State.CLOSE_WAIT
    recv(c, 1.0)  # (the delayed ACK of the FIN)
    for flags in (0, FIN):
        c.process(seg(2, c.iss + 1, flags, payload=b"late"), 1.1)
        assert recv(c, 1.1) == []
        assert c.state is State.CLOSE_WAIT and c.poll_at() is None
    assert c.recv() == b""


def test_duplicate_fin_ack_carries_dsack() -> None:
    """CLOSE-WAIT: the peer's FIN again: the ACK carries a D-SACK block of the FIN's
    sequence space (RFC 2883 4.1.1; Linux tcp_send_dupack; review s7 closing
    duplicate_fin)."""
    c = established(POLICY.replace(timestamps=False), sack_perm=True)
    assert c.sack_ok
    c.process(seg(1, c.iss + 1, FIN), 0.0)
    recv(c, 1.0)
    c.process(seg(1, c.iss + 1, FIN), 1.1)
    ack = only(recv(c, 1.1))
    fin = (REMOTE_SEQ + 1) & MASK
    assert (ack.flags, ack.ack) == (ACK, (fin + 1) & MASK)
    assert list(ack.sack) == [(fin, (fin + 1) & MASK)]


def test_old_syn_ack_carries_no_dsack() -> None:
    """ESTABLISHED: an old SYN (its sequence number IRS) draws an ACK without a D-SACK
    block (Linux: a challenge ACK, not tcp_send_dupack; review s7 established
    syn_in_established)."""
    c = established(POLICY.replace(timestamps=False), sack_perm=True)
    c.process(seg(0, flags=SYN, sack_perm=True), 0.0)
    ack = only(recv(c))
    assert ack.flags == ACK and not ack.sack
