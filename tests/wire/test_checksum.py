"""Internet checksum: against scapy's reference, both summing paths, pseudo-headers, RFC 1624."""

from __future__ import annotations

import struct

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scapy.utils import checksum as scapy_checksum

from ioth.wire import checksum as C


def ref(data: bytes) -> int:
    """Straightforward RFC 1071 loop (test oracle)."""
    if len(data) & 1:
        data += b"\0"
    s: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def test_rfc1071_example() -> None:
    # RFC 1071 section 3 example: sum of 0001 f203 f4f5 f6f7 is ddf2 -> checksum 220d.
    assert C.checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


def test_all_zero_and_all_ones() -> None:
    assert C.checksum(b"") == 0xFFFF
    assert C.checksum(bytes(40)) == 0xFFFF
    assert C.checksum(bytes(4000)) == 0xFFFF
    assert C.checksum(b"\xff" * 40) == 0
    assert C.checksum(b"\xff" * 4000) == 0


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 63, C.NUMPY_THRESHOLD - 1, C.NUMPY_THRESHOLD,
                               C.NUMPY_THRESHOLD + 1, C.NUMPY_THRESHOLD + 2,
                               C.NUMPY_THRESHOLD + 3, 1500, 1501, C.DOT_LIMIT - 1,
                               C.DOT_LIMIT, C.DOT_LIMIT + 1, 9001, 65535])
def test_sizes_match_reference(n: int) -> None:
    data = bytes((i * 151 + 7) & 0xFF for i in range(n))
    assert C.checksum(data) == ref(data)
    assert C.checksum(memoryview(data)) == ref(data)
    if n:
        assert C.checksum(data) == scapy_checksum(data)


def test_unaligned_memoryview_big() -> None:
    data = bytes(range(256)) * 20
    mv = memoryview(data)[3:3 + 3001]
    assert C.checksum(mv) == ref(bytes(mv))


@settings(deadline=None)
@given(st.binary(max_size=3000))
def test_matches_reference(data: bytes) -> None:
    assert C.checksum(data) == ref(data)
    c = C.checksum(data)
    if len(data) % 2 == 0:
        assert C.verify(data + c.to_bytes(2, "big"))


def test_all_ones_words_at_every_path() -> None:
    # the biggest word values: float64 dot and uint64 reduce must stay exact
    for n in (C.NUMPY_THRESHOLD, 1448, C.DOT_LIMIT - 2, C.DOT_LIMIT, 65534):
        data = b"\xff" * n
        assert C.checksum(data) == ref(data) == 0
        assert C.fold(C.partial_sum(data)) == 0xFFFF


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=70000).flatmap(
    lambda b: st.tuples(st.just(b), st.integers(0, len(b) // 2).map(lambda i: 2 * i),
                        st.integers(0, len(b)))))
def test_partial_sum_at_matches_slice(case: tuple[bytes, int, int]) -> None:
    data, start, end = case
    if end < start:
        start, end = end & ~1, start
    got = C.partial_sum_at(data, start, end)
    want = C.partial_sum(data[start:end])
    assert (got == 0) == (want == 0)
    assert got % 0xFFFF == want % 0xFFFF
    piece = data[start:end]
    assert (~C.fold(got) & 0xFFFF) == ref(piece)


@settings(deadline=None)
@given(st.integers(C.NUMPY_THRESHOLD, 3 * C.DOT_LIMIT), st.integers(0, 255))
def test_numpy_paths_match_reference(n: int, seed: int) -> None:
    data = bytes((i * 151 + seed) & 0xFF for i in range(n))
    assert C.checksum(data) == ref(data)
    assert C.checksum(memoryview(b"x" + data)[1:]) == ref(data)


def test_pseudo_headers_equal_explicit_bytes() -> None:
    src, dst = bytes.fromhex("c0000201"), bytes.fromhex("c6336407")
    body = b"\x12\x34\x00\x35\x00\x0c\x00\x00abcd"
    explicit = src + dst + b"\x00\x11" + len(body).to_bytes(2, "big")
    assert C.checksum(body, C.pseudo_v4(src, dst, 17, len(body))) == ref(explicit + body)
    s6, d6 = bytes.fromhex("20010db8" + "00" * 11 + "01"), bytes.fromhex("fd00" + "00" * 13 + "02")
    explicit6 = s6 + d6 + len(body).to_bytes(4, "big") + b"\x00\x00\x00\x3a"
    assert C.checksum(body, C.pseudo_v6(s6, d6, 58, len(body))) == ref(explicit6 + body)
    assert C.pseudo(s6, d6, 58, 9) == C.pseudo_v6(s6, d6, 58, 9)


@settings(deadline=None)
@given(st.binary(min_size=20, max_size=20).map(lambda b: b[:10] + b"\0\0" + b[12:]),
       st.integers(0, 9), st.integers(0, 0xFFFF))
def test_update16_matches_recompute(hdr: bytes, word: int, new: int) -> None:
    c = C.checksum(hdr)
    full = hdr[:10] + c.to_bytes(2, "big") + hdr[12:]
    if word == 5:  # the checksum field itself
        return
    old = int.from_bytes(full[2 * word:2 * word + 2], "big")
    changed = full[:2 * word] + new.to_bytes(2, "big") + full[2 * word + 2:]
    c2 = C.update16(c, old, new)
    assume(any(changed[:10] + changed[12:]))  # all-zero data has no valid zero-sum encoding
    # The updated checksum verifies (0x0000 and 0xFFFF are both valid encodings of zero).
    patched = changed[:10] + c2.to_bytes(2, "big") + changed[12:]
    assert C.verify(patched)


@settings(deadline=None)
@given(st.binary(min_size=24, max_size=24), st.binary(min_size=4, max_size=4))
def test_update_address(data: bytes, new_addr: bytes) -> None:
    c = C.checksum(data)
    c2 = C.update(c, data[4:8], new_addr)
    new = data[:4] + new_addr + data[8:]
    assume(any(new))
    assert C.verify(new + c2.to_bytes(2, "big"))
    with pytest.raises(ValueError):
        C.update(c, b"\1\2\3", b"\1\2\3")


@settings(deadline=None, max_examples=200)
@given(st.lists(st.binary(max_size=1600), max_size=70), st.sampled_from([0, 2, 14, 34]),
       st.integers(0, 80))
def test_batch_partial_sums_match_one_by_one(bufs: list[bytes], start: int,
                                             min_len: int) -> None:
    got = C.batch_partial_sums(bufs, start, min_len)
    assert len(got) == len(bufs)
    for buf, v in zip(bufs, got, strict=True):
        if len(buf) < max(min_len, start + 2):
            assert v is None
            continue
        assert v is not None
        want = C.partial_sum(buf[start:])
        assert (v == 0) == (want == 0)
        assert v % 0xFFFF == want % 0xFFFF
        assert (~C.fold(v) & 0xFFFF) == ref(buf[start:])
