"""Regression tests for bugs found while splitting the TCB into modules."""

from __future__ import annotations

import pytest

from ioth.stack.tcp.connection import MASK, TcpConnection
from tests.stack.tcp.test_connection import POLICY, established, only, recv, seg


def _after_tail_probe() -> tuple[TcpConnection, int]:
    """Three segments sent, the tail loss probe (RFC 8985 7.3) for the last one went out."""
    policy = POLICY.replace(timestamps=False, window_scaling=False, min_rto=1.0)
    c = established(policy, sack_perm=True)
    c.process(seg(1, c.iss + 1, window=60000), 0.0)
    c.srtt, c.rttvar, c.rto = 0.1, 0.05, 1.0
    c.send(b"t" * 536 * 3)
    assert len(recv(c, 0.0)) == 3
    only(recv(c, 0.2))
    assert c.tail_probes == 1
    return c, c.iss + 1


@pytest.mark.parametrize("with_data", [False, True])
def test_probe_acked_by_header_prediction_rearms_tail_loss_probe(with_data: bool) -> None:
    # The probe repaired the tail: one cumulative ACK (no SACK blocks), which takes the fast
    # path.  The TLP episode must end there as on the slow path, so the next flight gets a
    # probe timeout (PTO = 2 * SRTT after the send at 0.3) again instead of only the RTO at 1.3.
    c, base = _after_tail_probe()
    c.process(seg(1, base + 1608, window=60000, payload=b"x" if with_data else b""), 0.3)
    recv(c, 0.3)
    c.send(b"u" * 536 * 3)
    assert len(recv(c, 0.3)) == 3
    assert c.srtt is not None
    pto_at = 0.3 + 2 * c.srtt
    assert c.poll_at() == pytest.approx(pto_at) and pto_at < 1.3
    probe = only(recv(c, pto_at))
    assert probe.seq == (base + 1608 + 536 * 2) & 0xFFFFFFFF and c.tail_probes == 2


def test_dsack_for_a_probe_marks_it_spurious_and_lengthens_the_pto() -> None:
    """F4: the ACKs were only late; the peer reports the probe as a duplicate (D-SACK,
    RFC 2883).  The probe counts as spurious, the D-SACK is no duplicate ACK, and the next
    PTO waits one SRTT longer, so a host that reads its ACKs late stops probing in vain."""
    c, base = _after_tail_probe()
    # the late cumulative ACK covers everything, then the D-SACK for the probed segment
    c.process(seg(1, base + 1608, window=60000), 0.25)
    recv(c, 0.25)
    assert c.dsacks == 0 and c.spurious_probes == 0
    dsack = ((base + 1072) & MASK, (base + 1608) & MASK)
    c.process(seg(1, base + 1608, window=60000, sack=(dsack,)), 0.26)
    recv(c, 0.26)
    assert c.dsacks == 1 and c.spurious_probes == 1
    assert c._dupacks == 0 and c.fast_recoveries == 0
    info = c.info()
    assert info.tail_probes == 1 and info.dsacks == 1 and info.spurious_probes == 1
    c.send(b"u" * 536 * 3)
    assert len(recv(c, 0.3)) == 3
    assert c.srtt is not None
    assert c.poll_at() == pytest.approx(0.3 + 3 * c.srtt)
    # a D-SACK inside the second block (RFC 2883 4.2 case) counts too, not as a probe
    first = ((base + 1608) & MASK, (base + 1700) & MASK)
    second = ((base + 1608) & MASK, (base + 2144) & MASK)
    c.process(seg(1, base + 1608, window=60000, sack=(first, second)), 0.31)
    assert c.dsacks == 2 and c.spurious_probes == 1


def test_probe_that_finds_a_loss_is_not_spurious() -> None:
    """A SACK (not D-SACK) for the probe with a hole below: real loss, no PTO growth."""
    c, base = _after_tail_probe()
    c._pto_steps = 2
    block = ((base + 1072) & MASK, (base + 1608) & MASK)
    c.process(seg(1, base, window=60000, sack=(block,)), 0.3)
    recv(c, 0.3)
    assert c.dsacks == 0 and c.spurious_probes == 0
    assert c.fast_recoveries == 1 and c._pto_steps == 1
