"""D-SACK (RFC 2883) on both ends, and undo of spurious congestion reactions, on a virtual
clock: the receiver reports duplicate segments first in its SACK option; the sender counts
the retransmissions they prove unnecessary and undoes the cwnd/ssthresh reduction once every
retransmission of the episode was a duplicate (RFC 2883 5, Linux undo), or when the
timestamps show the originals arrived (Eifel, RFC 3522)."""

from __future__ import annotations

import random

import pytest

from ioth.stack.tcp.cc import Cubic, NewReno
from ioth.stack.tcp.connection import MASK, TcpConnection
from ioth.stack.tcp.segment import Segment
from tests.stack.tcp.harness import Impairment, Link, Transfer
from tests.stack.tcp.test_connection import POLICY, REMOTE_SEQ, established, only, recv, seg

SEG = 536


def _receiver(ts: bool = False) -> TcpConnection:
    policy = POLICY.replace(timestamps=ts, window_scaling=False)
    opts: dict[str, object] = {"sack_perm": True}
    if ts:
        opts["tsval"] = 1000
    return established(policy, **opts)


def _ts(s: Segment, tsval: int) -> Segment:
    s.tsval = tsval
    s.tsecr = 0
    return s


# ------------------------------------------------------------------------------- receiver


def test_old_duplicate_is_reported_by_a_dsack_block_once() -> None:
    c = _receiver()
    c.process(seg(1, c.iss + 1, payload=b"a" * 100), 0.0)
    c.process(seg(101, c.iss + 1, payload=b"b" * 100), 0.0)
    recv(c, 0.0)
    c.process(seg(1, c.iss + 1, payload=b"a" * 100), 0.01)  # a duplicate of the first
    ack = only(recv(c, 0.01))
    assert ack.ack == REMOTE_SEQ + 201
    assert ack.sack == ((REMOTE_SEQ + 1, REMOTE_SEQ + 101),)
    assert c.dsacks_sent == 1
    c.process(seg(201, c.iss + 1, payload=b"c" * 100), 0.02)
    c.process(seg(301, c.iss + 1, payload=b"d" * 100), 0.02)
    assert not only(recv(c, 0.1)).sack  # reported once only


def test_partial_duplicate_reports_the_old_part() -> None:
    """RFC 2883 4.1.1: a segment overlapping RCV.NXT: D-SACK for the part already received."""
    c = _receiver()
    c.process(seg(1, c.iss + 1, payload=b"a" * 100), 0.0)
    recv(c, 0.0)
    c.process(seg(51, c.iss + 1, payload=b"x" * 100), 0.1)
    c._ack_now = True
    ack = only(recv(c, 0.1))
    assert ack.ack == REMOTE_SEQ + 151
    assert ack.sack == ((REMOTE_SEQ + 51, REMOTE_SEQ + 101),)
    assert c.recv() == b"a" * 100 + b"x" * 50


def test_duplicate_of_an_out_of_order_piece_dsack_then_its_block() -> None:
    """RFC 2883 4.1.2: the D-SACK first, then the SACK block that contains it."""
    c = _receiver(ts=True)
    c.process(_ts(seg(1001, c.iss + 1, payload=b"p" * 200), 1001), 0.0)
    c.process(_ts(seg(2001, c.iss + 1, payload=b"q" * 200), 1002), 0.0)
    recv(c, 0.0)
    c.process(_ts(seg(1001, c.iss + 1, payload=b"p" * 100), 1003), 0.01)
    ack = only(recv(c, 0.01))
    assert ack.ack == REMOTE_SEQ + 1
    assert ack.sack == ((REMOTE_SEQ + 1001, REMOTE_SEQ + 1101),
                        (REMOTE_SEQ + 1001, REMOTE_SEQ + 1201),
                        (REMOTE_SEQ + 2001, REMOTE_SEQ + 2201))


def test_in_order_segment_repeating_queued_data_is_dsacked() -> None:
    """A retransmission (say go-back-N after a timeout) fills the hole and repeats part of
    a piece already queued out of order: that part is reported."""
    c = _receiver()
    c.process(seg(101, c.iss + 1, payload=b"b" * 100), 0.0)
    recv(c, 0.0)
    c.process(seg(1, c.iss + 1, payload=b"a" * 100 + b"b" * 50), 0.1)
    ack = only(recv(c, 0.1))
    assert ack.ack == REMOTE_SEQ + 201
    assert ack.sack == ((REMOTE_SEQ + 101, REMOTE_SEQ + 151),) and c.dsacks_sent == 1
    assert c.recv() == b"a" * 100 + b"b" * 100


def test_paws_rejected_duplicate_is_dsacked_too() -> None:
    """An old duplicate whose timestamp PAWS rejects is still reported (Linux
    tcp_send_dupack)."""
    c = _receiver(ts=True)
    c.process(_ts(seg(1, c.iss + 1, payload=b"a" * 100), 1001), 0.0)
    recv(c, 0.1)  # the delayed ACK
    c.process(_ts(seg(101, c.iss + 1, payload=b"b" * 100), 1005), 0.1)
    recv(c, 0.2)
    assert c.ts_recent == 1005
    c.process(_ts(seg(1, c.iss + 1, payload=b"a" * 100), 1001), 0.2)  # fails PAWS
    ack = only(recv(c, 0.2))
    assert ack.sack == ((REMOTE_SEQ + 1, REMOTE_SEQ + 101),) and c.dsacks_sent == 1


def test_no_dsack_without_sack_permitted() -> None:
    c = established(POLICY.replace(timestamps=False, window_scaling=False))
    c.process(seg(1, c.iss + 1, payload=b"a" * 100), 0.0)
    recv(c, 0.0)
    c.process(seg(1, c.iss + 1, payload=b"a" * 100), 0.01)
    assert not only(recv(c, 0.01)).sack and c.dsacks_sent == 0


# --------------------------------------------------------------------------------- sender


def _sender(cc: str = "newreno", ts: bool = False) -> tuple[TcpConnection, int]:
    policy = POLICY.replace(timestamps=ts, window_scaling=False, min_rto=1.0,
                            congestion_control=cc, tail_loss_probe=False)
    opts: dict[str, object] = {"sack_perm": True}
    if ts:
        opts["tsval"] = 1000
    c = established(policy, **opts)
    c.process(_ts(seg(1, c.iss + 1, window=60000), 1000) if ts else seg(1, c.iss + 1,
                                                                       window=60000), 0.0)
    c.srtt, c.rttvar, c.rto = 0.1, 0.05, 1.0
    return c, c.iss + 1


def _sack(base: int, a: int, b: int) -> tuple[int, int]:
    return ((base + a * SEG) & MASK, (base + b * SEG) & MASK)


@pytest.mark.parametrize("cc", ["newreno", "cubic"])
def test_fast_retransmit_proven_spurious_by_dsack_is_undone(cc: str) -> None:
    """Reordering: three SACKs trigger fast retransmit of segment 0; then segment 0's
    original arrives, and the peer D-SACKs the retransmission: cwnd and ssthresh return."""
    c, base = _sender(cc)
    c.cc.cwnd = 10 * SEG
    c.send(b"z" * SEG * 8)
    assert len(recv(c, 0.0)) == 8
    before = (c.cc.cwnd, c.cc.ssthresh)
    for k in range(1, 4):
        c.process(seg(1, base, window=60000, sack=(_sack(base, 1, 1 + k),)), 0.1)
    out = recv(c, 0.1)
    assert c.fast_recoveries == 1 and out[0].seq == base & MASK and c.retransmissions == 1
    assert c.cc.cwnd < before[0]
    # the delayed original arrives: everything up to segment 4 is acked ...
    c.process(seg(1, base + 4 * SEG, window=60000), 0.11)
    # ... and the retransmission is reported as a duplicate
    c.process(seg(1, base + 4 * SEG, window=60000, sack=(_sack(base, 0, 1),)), 0.12)
    assert c.dsacks == 1 and c.spurious_retrans == 1 and c.undos == 1
    assert (c.cc.cwnd, c.cc.ssthresh) == before
    assert not c._in_recovery
    # the path reorders by 4 segments: DupThresh becomes 5 (Linux tp->reordering)
    assert c._reordering == 5
    info = c.info()
    assert info.undos == 1 and info.spurious_retrans == 1 and info.dsacks == 1
    # a second D-SACK changes nothing more
    c.process(seg(1, base + 4 * SEG, window=60000, sack=(_sack(base, 0, 1),)), 0.13)
    assert c.undos == 1 and c.dsacks == 2


def test_no_undo_while_a_retransmission_is_not_reported_duplicate() -> None:
    """Two holes retransmitted, only one D-SACKed: the reduction stays (a real loss)."""
    c, base = _sender()
    c.cc.cwnd = 10 * SEG
    c.send(b"y" * SEG * 8)
    recv(c, 0.0)
    reduced: tuple[int, int] | None = None
    for k in range(1, 4):  # holes at 0 and 2
        c.process(seg(1, base, window=60000, sack=(_sack(base, 3, 3 + k), _sack(base, 1, 2))),
                  0.1)
    recv(c, 0.1)
    reduced = (c.cc.cwnd, c.cc.ssthresh)
    c.process(seg(1, base + 2 * SEG, window=60000, sack=(_sack(base, 3, 6),)), 0.11)
    recv(c, 0.11)
    assert c.retransmissions == 2
    c.process(seg(1, base + 2 * SEG, window=60000, sack=(_sack(base, 0, 1), _sack(base, 3, 6))),
              0.12)
    assert c.dsacks == 1 and c.spurious_retrans == 1 and c.undos == 0
    assert c.cc.ssthresh == reduced[1]


def test_rto_proven_spurious_by_dsacks_is_undone() -> None:
    """A spurious timeout (the ACKs were only delayed): the go-back-N retransmissions all come
    back D-SACKed; cwnd returns from one segment to its earlier size."""
    c, base = _sender()
    c.cc.cwnd = 10 * SEG
    c.send(b"w" * SEG * 2)
    assert len(recv(c, 0.0)) == 2
    before = (c.cc.cwnd, c.cc.ssthresh)
    rtx = only(recv(c, 1.0))  # RTO: cwnd one segment, segment 0 again
    assert c.rto_expirations == 1 and rtx.seq == base & MASK and c.cc.cwnd == SEG
    c.process(seg(1, base + 2 * SEG, window=60000), 1.05)  # the late ACK of both originals
    c.process(seg(1, base + 2 * SEG, window=60000, sack=(_sack(base, 0, 1),)), 1.06)
    assert c.undos == 1 and c.cc.cwnd >= before[0] and c.cc.ssthresh == before[1]


def test_eifel_timestamps_undo_a_spurious_timeout() -> None:
    """RFC 3522: the ACK ending the episode echoes a timestamp older than the first
    retransmission: the original was delivered, the timeout was spurious."""
    c, _ = _sender(ts=True)
    c.cc.cwnd = 10 * SEG
    c.send(b"v" * SEG * 2)
    first = recv(c, 0.0)
    assert len(first) == 2 and first[0].tsval is not None
    before = (c.cc.cwnd, c.cc.ssthresh)
    rtx = only(recv(c, 1.0))
    assert rtx.tsval is not None and rtx.tsval != first[0].tsval
    ack = _ts(seg(1, c.snd_nxt, window=60000), 1001)
    ack.tsecr = first[1].tsval  # echoes the original transmission, not the retransmission
    c.process(ack, 1.05)
    recv(c, 1.05)
    assert c.undos == 1 and c.spurious_retrans == 1
    assert c.cc.cwnd >= before[0] and c.cc.ssthresh == before[1]


def test_eifel_keeps_the_reduction_when_the_retransmission_was_needed() -> None:
    c, _ = _sender(ts=True)
    c.cc.cwnd = 10 * SEG
    c.send(b"u" * SEG * 2)
    recv(c, 0.0)
    rtx = only(recv(c, 1.0))
    ack = _ts(seg(1, c.snd_nxt, window=60000), 1001)
    assert rtx.tsval is not None
    ack.tsecr = rtx.tsval
    c.process(ack, 1.05)
    recv(c, 1.05)
    assert c.undos == 0 and c.cc.cwnd < 10 * SEG


@pytest.mark.parametrize("cls", [NewReno, Cubic])
def test_controller_undo_restores_the_snapshot(cls: type[NewReno] | type[Cubic]) -> None:
    cc = cls(1000, 10)
    cc.on_ack(40_000, 0.0, 0.05, 0)
    cc.on_congestion(0.5, 50_000)
    cc.on_ack(5_000, 0.6, 0.05, 0)
    snap = cc.snapshot()
    cc.on_congestion(1.0, 60_000)
    cc.on_rto(1.1, 60_000)
    cc.undo(snap)
    assert cc.cwnd == snap.cwnd and cc.ssthresh >= snap.ssthresh  # max, as Linux


# ----------------------------------------------------------------------------- end to end


def test_reordering_link_dsacks_undo_spurious_recoveries() -> None:
    """A loss-free link that reorders 3 % of the packets: both ends see SHA-256-exact data,
    the receiver D-SACKs the needless retransmissions and the sender undoes the reductions."""
    imp = Impairment(reorder=0.03, reorder_delay=0.02, delay=0.005)
    link = Link(seed=31, impairment=imp, policy=POLICY.replace(time_wait=1.0, recv_buffer=1 << 20,
                                                               send_buffer=1 << 20))
    client, server = link.connect()
    rng = random.Random(31)
    t = Transfer(link, client, server, rng.randbytes(3_000_000), rng.randbytes(300_000))
    link.run_until(t.done, limit=300.0, pump=t.pump)
    t.check()
    assert link.lost == 0
    assert client.retransmissions > 0
    assert server.dsacks_sent > 0 and client.dsacks > 0
    assert client.spurious_retrans > 0 and client.undos > 0
    assert client.dsacks <= server.dsacks_sent
    assert client._reordering > 3  # learnt from the undone fast retransmits


def test_a_raised_dupthresh_delays_fast_retransmit_and_a_timeout_resets_it() -> None:
    c, base = _sender()
    c._reordering = 6
    c.cc.cwnd = 20 * SEG
    c.send(b"r" * SEG * 12)
    recv(c, 0.0)
    for k in range(1, 6):  # five segments SACKed above the hole: not enough for 6
        c.process(seg(1, base, window=60000, sack=(_sack(base, 1, 1 + k),)), 0.1)
    assert c.fast_recoveries == 0
    c.process(seg(1, base, window=60000, sack=(_sack(base, 1, 7),)), 0.1)
    assert c.fast_recoveries == 1
    c._rto_at = 0.5
    recv(c, 0.5)  # a timeout with plenty SACKed: the degree was overestimated
    assert c.rto_expirations == 1 and c._reordering == 3


def test_reordered_old_ack_is_not_taken_for_a_dsack() -> None:
    """RFC 2883 4: a D-SACK block lies below the ACK field of its own segment; an old ACK
    overtaken by a newer one carries ordinary SACK blocks below SND.UNA, not D-SACKs."""
    c, base = _sender()
    c.send(b"o" * SEG * 6)
    recv(c, 0.0)
    c.process(seg(1, base + 4 * SEG, window=60000), 0.1)
    c.process(seg(1, base + SEG, window=60000, sack=(_sack(base, 2, 3),)), 0.1)  # late
    assert c.dsacks == 0 and c.undos == 0
