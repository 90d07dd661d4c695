"""Stream framing codec: golden bytes, resynchronisation, chunking independence."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ioth.net import stream
from ioth.net.stream import StreamDecoder


def test_encode_golden() -> None:
    assert stream.encode(b"\x01\x02\x03") == b"\x00\x03\x01\x02\x03"
    assert stream.encode(b"x" * 0x1234)[:2] == b"\x12\x34"
    assert stream.header(9234) == b"\x24\x12"
    with pytest.raises(ValueError):
        stream.encode(b"x" * 65536)


def test_decode_golden_and_partial() -> None:
    dec = StreamDecoder()
    assert dec.feed(b"\x00\x03ab") == []
    assert dec.pending == 4
    assert dec.feed(b"c\x00\x00\x00\x02xy\x00") == [b"abc", b"xy"]
    assert dec.pending == 1
    assert dec.feed(b"\x01z") == [b"z"]
    assert dec.stats.frames == 3 and dec.stats.bytes == 6 and dec.stats.empty == 1
    assert dec.pending == 0


def test_limit_and_resync() -> None:
    dec = StreamDecoder(limit=100)
    good = b"G" * 20
    # bad length 0xffff, then garbage bytes that never form a plausible length, then a frame
    data = b"\xff\xff" + b"\xff\x00\x01" + stream.encode(good)
    assert dec.feed(data) == [good]
    assert dec.stats.framing_errors == 1
    assert dec.stats.skipped_bytes == 5
    assert not dec.hunting


def test_limit_boundaries() -> None:
    dec = StreamDecoder(limit=9234)
    assert dec.feed(stream.encode(b"a" * 9234)) == [b"a" * 9234]
    assert dec.feed(stream.encode(b"a" * 9235)) == []
    assert dec.stats.framing_errors == 1
    big = StreamDecoder(limit=65535)
    assert big.feed(stream.encode(b"b" * 65535)) == [b"b" * 65535]
    with pytest.raises(ValueError):
        StreamDecoder(limit=65536)
    with pytest.raises(ValueError):
        StreamDecoder(limit=0)


frames_st = st.lists(st.binary(min_size=0, max_size=300), max_size=30)


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@settings(max_examples=200, deadline=None)
@given(frames_st, st.lists(st.integers(min_value=0, max_value=10_000), max_size=40))
def test_random_chunking_same_frames(frames: list[bytes], cuts: list[int]) -> None:
    data = b"".join(stream.encode(f) for f in frames)
    dec = StreamDecoder(limit=300)
    out: list[bytes] = []
    for chunk in _chunks(data, cuts):
        out.extend(dec.feed(chunk))
    assert out == [f for f in frames if f]
    assert dec.pending == 0
    assert dec.stats.framing_errors == 0


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000), st.lists(st.integers(min_value=0, max_value=5000),
                                          max_size=40))
def test_garbage_chunking_independent(data: bytes, cuts: list[int]) -> None:
    """Whatever the bytes (even invalid), the frames do not depend on the chunking."""
    whole = StreamDecoder(limit=200)
    expected = whole.feed(data)
    dec = StreamDecoder(limit=200)
    out: list[bytes] = []
    for chunk in _chunks(data, cuts):
        out.extend(dec.feed(chunk))
    assert out == expected
    assert dec.stats == whole.stats
    assert all(0 < len(f) <= 200 for f in out)
