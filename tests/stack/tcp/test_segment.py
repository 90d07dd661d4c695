"""Segment codec: golden bytes, round trips, random input only raises WireError."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ioth.stack.tcp.segment import ACK, FIN, PSH, SYN, Segment, decode, encode
from ioth.wire.errors import WireError

A4 = bytes([192, 0, 2, 1])
B4 = bytes([192, 0, 2, 2])


@given(st.integers(0, 0xFFFF), st.integers(0, 14), st.integers(0, 0xFFFFFFFF),
       st.integers(0, 0xFFFFFFFF))
def test_syn_options_all_on_layout(mss: int, ws: int, tsval: int, tsecr: int) -> None:
    """MSS, SACK-permitted, Timestamps and window scale together: Linux's 20-byte layout."""
    from ioth.stack.tcp.segment import options_bytes

    seg = Segment(1, 0, SYN, 1000, mss=mss, wscale=ws, sack_perm=True, tsval=tsval, tsecr=tsecr)
    assert options_bytes(seg) == (
        b"\x02\x04" + mss.to_bytes(2, "big") + b"\x04\x02\x08\x0a" + tsval.to_bytes(4, "big")
        + tsecr.to_bytes(4, "big") + b"\x01\x03\x03" + bytes((ws,))
    )
    _, _, back = decode(encode(seg, 1, 2, A4, B4), A4, B4)
    assert (back.mss, back.wscale, back.sack_perm, back.tsval, back.tsecr) == (
        mss, ws, True, tsval, tsecr)


def test_golden_syn() -> None:
    seg = Segment(0x01020304, 0, SYN, 65535, mss=1460, wscale=7, sack_perm=True, tsval=1,
                  tsecr=0)
    data = encode(seg, 1234, 80, A4, B4)
    assert data.hex() == (
        "04d200500102030400000000a002ffff" + data[16:18].hex() + "0000"
        "020405b40402080a000000010000000001030307"
    )
    sport, dport, back = decode(data, A4, B4)
    assert (sport, dport) == (1234, 80)
    assert (back.mss, back.wscale, back.sack_perm, back.tsval, back.tsecr) == (1460, 7, True, 1,
                                                                               0)
    assert repr(back) == "<tcp [S] seq=16909060 ack=0 win=65535 mss=1460 ws=7 sackOK ts=1/0 len=0>"


u32 = st.integers(0, 0xFFFFFFFF)


@given(
    seq=u32, ack=u32, flags=st.sampled_from([ACK, ACK | PSH, ACK | FIN, SYN, SYN | ACK]),
    window=st.integers(0, 0xFFFF), payload=st.binary(max_size=200),
    ts=st.one_of(st.none(), st.tuples(u32, u32)),
    sack=st.lists(st.tuples(u32, u32), max_size=3),
    v6=st.booleans(),
)
def test_round_trip(seq: int, ack: int, flags: int, window: int, payload: bytes,
                    ts: tuple[int, int] | None, sack: list[tuple[int, int]], v6: bool) -> None:
    src, dst = (A4, B4) if not v6 else (bytes(15) + b"\1", bytes(15) + b"\2")
    seg = Segment(seq, ack, flags, window, payload, sack=tuple(sack) or None)
    if ts is not None:
        seg.tsval, seg.tsecr = ts
    sport, dport, back = decode(encode(seg, 1, 2, src, dst), src, dst)
    assert (sport, dport, back.seq, back.ack, back.flags, back.window) == (1, 2, seq, ack,
                                                                          flags, window)
    assert bytes(back.payload) == payload
    assert (back.tsval, back.tsecr if ts else 0) == ((ts[0], ts[1]) if ts else (None, 0))
    assert (back.sack or ()) == tuple(sack)


@given(st.binary(max_size=120))
def test_random_bytes_only_raise_wire_errors(data: bytes) -> None:
    try:
        decode(data)
    except WireError:
        pass


def test_bad_checksum_is_rejected() -> None:
    data = bytearray(encode(Segment(1, 2, ACK, 3, b"x"), 1, 2, A4, B4))
    data[-1] ^= 1
    with pytest.raises(WireError):
        decode(bytes(data), A4, B4)
