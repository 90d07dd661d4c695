"""Review s7 (tests/review_s7/test_wire_handshake.py, test_wire_closing.py) findings fixed
by F1, on the virtual clock, each as Linux does it: the peer's SYN-ACK completes a
simultaneous open in SYN-RECEIVED (RFC 9293 figure 8)."""

from __future__ import annotations

from ioth.stack.tcp.connection import MASK, State
from ioth.stack.tcp.segment import ACK, SYN
from tests.stack.tcp.test_connection import REMOTE_SEQ, only, recv, seg, syn_sent


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
