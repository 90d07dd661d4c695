"""agno:// encryption: codec round trip, wrong key, replay window, key files, plug."""

from __future__ import annotations

import os
import random
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ioth.errors import VNLError
from ioth.net.plugs.agno import (
    AGNO_TYPE,
    AgnoCodec,
    AgnoKeyError,
    AgnoPlug,
    parse_ethtype,
    read_key,
)
from tests.net.memplug import MemPlug

KEY = bytes(range(16))
FRAME = bytes.fromhex("ffffffffffff020000000001") + b"\x08\x00" + bytes(range(200))


@pytest.mark.parametrize("size", [14, 15, 29, 30, 31, 46, 60, 1514])
def test_round_trip_sizes(size: int) -> None:
    codec = AgnoCodec(KEY, rng=random.Random(1))
    frame = FRAME[:size] if size <= len(FRAME) else FRAME + bytes(size - len(FRAME))
    wire = codec.encrypt(frame, 1_700_000_000.5)
    assert (len(wire) - 14) % 16 == 0 and len(wire) >= len(frame) + 16
    assert wire[:12] == frame[:12]
    assert struct.unpack_from("!H", wire, 12)[0] == AGNO_TYPE
    assert size < 20 or frame[14:] not in wire  # payload is not in clear
    assert codec.decrypt(wire, 1_700_000_001.0) == frame


def test_wrong_key_is_dropped_and_counted() -> None:
    wire = AgnoCodec(KEY).encrypt(FRAME, 1000)
    other = AgnoCodec(bytes(16))
    assert other.decrypt(wire, 1000) is None
    assert other.bad_tag == 1


def test_replay_window_is_minus1_plus2_seconds() -> None:
    codec = AgnoCodec(KEY)
    wire = codec.encrypt(FRAME, 5000)
    accepted = [now for now in range(4995, 5006) if codec.decrypt(wire, now) is not None]
    assert accepted == [4999, 5000, 5001, 5002]
    assert codec.bad_time == 11 - 4


def test_header_layout_decrypts_to_agno_tag() -> None:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    wire = AgnoCodec(KEY).encrypt(FRAME, 0x12345678)
    dec = Cipher(algorithms.AES(KEY), modes.ECB()).decryptor()
    header = dec.update(wire[14:30]) + dec.finalize()
    assert header[0:2] == b"\x08\x00"
    assert header[2] == (-(len(FRAME) - 14)) % 16 and header[3] == 0
    assert header[4:8] == b"agno" and header[8:12] == bytes.fromhex("12345678")


def test_ethtype_options() -> None:
    assert parse_ethtype("", "") == AGNO_TYPE
    assert parse_ethtype("copy", "") is None
    assert parse_ethtype("0x0800", "") == 0x0800
    with pytest.raises(VNLError):
        parse_ethtype("0x500", "")
    codec = AgnoCodec(KEY, ethtype=None)
    assert codec.encrypt(FRAME, 0)[12:14] == b"\x08\x00"
    rnd = AgnoCodec(KEY, ethtype=-1)
    types = {struct.unpack_from("!H", rnd.encrypt(FRAME, 0), 12)[0] for _ in range(20)}
    assert len(types) > 1 and all(0x600 <= t < 0xFFFF for t in types)


def test_key_file_parsing(tmp_path: Path) -> None:
    good = tmp_path / "k"
    good.write_text("00112233 44556677 8899aabb ccddeeff\n")
    assert read_key(str(good)) == bytes.fromhex("00112233445566778899aabbccddeeff")
    upper = tmp_path / "u"
    upper.write_text("A" * 32)  # vdeplug_agno reads upper-case A as 1
    assert read_key(str(upper)) == bytes([0x11]) * 16
    short = tmp_path / "s"
    short.write_text("abcd")
    with pytest.raises(AgnoKeyError, match=str(short)):
        read_key(str(short))
    with pytest.raises(AgnoKeyError, match="does not exist"):
        read_key(str(tmp_path / "missing"))


def test_default_key_file_is_in_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(AgnoKeyError, match=r"\.vde_agno_key"):
        read_key(None)
    (tmp_path / ".vde_agno_key").write_text("f" * 32)
    assert read_key(None) == b"\xff" * 16


def test_plug_round_trip_and_drops() -> None:
    now = [1000.0]
    a_net, b_net = MemPlug(), MemPlug()
    a = AgnoPlug(a_net, KEY, clock=lambda: now[0])
    b = AgnoPlug(b_net, KEY, clock=lambda: now[0])
    evil = AgnoPlug(MemPlug(), bytes(16), clock=lambda: now[0])
    assert a.send(FRAME)
    b_net.inject(*a_net.sent)
    assert b.recv_frames() == [FRAME]
    evil.inner.inject(*a_net.sent)  # type: ignore[attr-defined]
    assert evil.recv_frames() == [] and evil.counters.rx_dropped == 1
    now[0] += 10  # a replayed old frame
    b_net.inject(*a_net.sent)
    assert b.recv_frames() == []
    assert b.counters.rx_dropped == 1 and b.codec.bad_time == 1
    b_net.inject(os.urandom(100))
    assert b.recv_frames() == [] and b.counters.rx_dropped == 2


@settings(max_examples=300, deadline=None)
@given(data=st.binary(min_size=0, max_size=200), now=st.integers(0, 2**32))
def test_random_bytes_never_raise(data: bytes, now: int) -> None:
    codec = AgnoCodec(KEY)
    out = codec.decrypt(data, now)
    assert out is None or len(out) >= 14


@settings(max_examples=200, deadline=None)
@given(frame=st.binary(min_size=14, max_size=1514), now=st.integers(0, 2**32 - 3))
def test_round_trip_property(frame: bytes, now: int) -> None:
    codec = AgnoCodec(KEY)
    assert codec.decrypt(codec.encrypt(frame, now), now + 1) == frame
