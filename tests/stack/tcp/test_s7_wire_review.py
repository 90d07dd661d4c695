"""Review s7 findings on the virtual clock: TS.Recent moves only with acceptable segments
(RFC 7323 4.3, as Linux); a zero-window probe draws an ACK; a malformed option ends the
options, not the segment.

Review s7 (tests/review_s7/test_wire_established.py, blind_ack_moves_ts_recent) found that a
segment dropped for its ACK still set TS.Recent from its TSval, so PAWS then dropped the real
peer's segments and the connection stalled.  Here on the virtual clock, for both reasons a
synchronized connection drops a segment for its ACK (RFC 9293 3.10.7.4 fifth: an ACK of data
never sent; RFC 5961 5.2: too old an ACK).
"""

from __future__ import annotations

import pytest

from ioth.stack.tcp.connection import MASK, TcpConnection
from ioth.stack.tcp.segment import ACK, FIN, SYN, decode
from ioth.wire import tcp as wire_tcp
from ioth.wire.errors import SanityError
from tests.stack.tcp.harness import A4, B4
from tests.stack.tcp.test_connection import POLICY, REMOTE_SEQ, established, recv, seg

TS0 = 1000


def _ts_established() -> TcpConnection:
    c = established(POLICY.replace(sack=False, window_scaling=False), tsval=TS0)
    assert c.ts_ok and c.ts_recent == TS0
    return c


@pytest.mark.parametrize("offset", [5, -200_000], ids=["unsent", "too_old"])
def test_segment_dropped_for_its_ack_leaves_ts_recent(offset: int) -> None:
    c = _ts_established()
    una = c.iss + 1
    # a blind segment: in-window sequence number, a far newer timestamp, an unacceptable ACK
    c.process(seg(1, una + offset, tsval=TS0 + 1_000_000, tsecr=0), 0.0)
    answer = recv(c)
    assert [s.payload for s in answer] == [b""]  # an ACK (a challenge ACK for too_old)
    assert c.ts_recent == TS0
    # the real peer's next segment (its clock barely moved) is not taken for an old one
    c.process(seg(1, una, payload=b"data", tsval=TS0 + 1, tsecr=0), 0.0)
    assert c.recv_available == 4
    assert c.ts_recent == TS0 + 1


def test_acceptable_segment_moves_ts_recent() -> None:
    c = _ts_established()
    c.process(seg(1, c.iss + 1, payload=b"x", tsval=TS0 + 7, tsecr=0), 0.0)
    assert c.recv_available == 1 and c.ts_recent == TS0 + 7


def test_zero_window_probe_is_acked() -> None:
    """A zero-window probe (one byte at RCV.NXT while the window is zero) is not taken but
    draws an ACK at once, window zero (RFC 9293 3.8.6.1; Linux): review s7 flow
    zero_window_receiver; an empty segment at RCV.NXT (an ACK) still draws nothing."""
    c = established(POLICY.replace(sack=False, window_scaling=False, timestamps=False,
                                   recv_buffer=1000))
    una = c.iss + 1
    c.process(seg(1, una, payload=b"f" * 1000), 0.0)
    assert c.recv_available == 1000
    assert [s.window for s in recv(c, 1.0)] == [0]  # (the delayed ACK)
    c.process(seg(1001, una), 1.1)  # a plain ACK: acceptable, nothing to answer
    assert recv(c, 1.1) == []
    c.process(seg(1001, una, payload=b"P"), 1.2)
    ack = recv(c, 1.2)  # at once
    assert [(s.ack, s.window, s.payload) for s in ack] == [((REMOTE_SEQ + 1001) & MASK, 0, b"")]
    assert c.recv_available == 1000


@pytest.mark.parametrize("bad", [b"\x05\x01", b"\x05\x20", b"\xfe"],
                         ids=["short", "overrun", "cut"])
def test_malformed_option_ends_the_options_not_the_segment(bad: bytes) -> None:
    """A malformed option (a length below 2, overrunning the header, cut by its end) ends
    the options the stack reads and the segment still counts, as Linux's
    tcp_parse_options (review s7 more: syn_malformed_options, data_malformed_options); the
    wire parser stays strict (tests/wire/test_tcp.py)."""
    opts = b"\x02\x04\x05\xb4" + bad  # MSS 1460, then the malformed option
    opts += b"\x00" * (-len(opts) % 4)
    raw = wire_tcp.emit_fast(1, 2, 3, 4, SYN, 5, b"data", A4, B4, opts) + b"data"
    sport, dport, s = decode(raw, A4, B4)
    assert (sport, dport, s.flags, s.mss, bytes(s.payload)) == (1, 2, SYN, 1460, b"data")
    with pytest.raises(SanityError):
        wire_tcp.parse(raw)


def test_sack_block_of_out_of_order_data_covers_its_fin() -> None:
    """Data with a FIN ahead of a hole: the SACK block ends after the FIN (the segment's
    end_seq, as Linux; review s7 more fin_out_of_order)."""
    c = established(POLICY.replace(window_scaling=False, timestamps=False), sack_perm=True)
    assert c.sack_ok
    c.process(seg(6, c.iss + 1, FIN | ACK, payload=b"world"), 0.0)
    ack = recv(c, 0.0)
    r = REMOTE_SEQ
    block = ((r + 6) & MASK, (r + 12) & MASK)
    assert [(s.ack, s.sack) for s in ack] == [((r + 1) & MASK, (block,))]
