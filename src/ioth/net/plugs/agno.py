"""``agno://[KEYFILE][ethtype=TYPE]{nested}``: AES-128 encryption of frames (vdeplug_agno).

Wire format, compatible with ``libvdeplug_agno``::

    dst MAC | src MAC | type (0xa6de by default) |  16-byte header, AES-128-ECB  |
    payload, AES-128-CBC (IV = the plaintext 16-byte header), zero padded to 16 bytes

    header = orig ethertype (2) | padding length (1) | 0 (1) | 'agno' (4) |
             unix time, u32 big-endian (4) | 4 random bytes

A received frame is delivered only if its decrypted header carries the ``agno`` tag and its time
is within [-1, +2] s of ours (a replay window, as in the C module); anything else is dropped and
counted in ``counters.rx_dropped`` (``bad_tag``/``bad_time`` tell which).

``KEYFILE`` (default ``~/.vde_agno_key``; ``~`` expands to the home directory) holds 32 hex
digits, the 128-bit key; other characters are ignored.  The C module maps an upper-case ``A``
to the value 1 (a quirk of its parser); this plug does the same, so a key file means the same key
to both.  ``ethtype``: empty (0xa6de), a number 0x600..0xfffe, ``copy`` (keep the frame's
type), ``ipv4``, ``ipv6`` or ``rand`` (a random type per frame).
"""

from __future__ import annotations

import os
import random
import struct
import time
from collections.abc import Callable
from typing import Any, ClassVar

from ioth.errors import VNLError
from ioth.net.plug import ETH_HLEN, MIN_FRAME, Plug, WrapperPlug
from ioth.net.vnl import VNL, Style

AGNO_TYPE = 0xA6DE
AGNO_TAG = b"agno"
AGNO_HLEN = 16
#: how much bigger than its cleartext an agno frame can be (header + padding, rounded)
AGNO_GROWTH = 32
DEFAULT_KEYFILE = "~/.vde_agno_key"
#: accepted clock skew (receiver time - sender time), seconds
SKEW_MIN, SKEW_MAX = -1, 2

_HEX_VALUES = {c: int(c, 16) for c in "0123456789abcdef"}
_HEX_VALUES.update({c: int(c, 16) for c in "BCDEF"})
_HEX_VALUES["A"] = 1  # vdeplug_agno's parser: (c & 0xf) + (c > 'A' ? 9 : 0)


class AgnoKeyError(VNLError):
    """The agno key file is missing or unusable."""


def read_key(path: str | None) -> bytes:
    """The 16-byte key from key file ``path`` (default ``~/.vde_agno_key``)."""
    raw_path = path or DEFAULT_KEYFILE
    full = os.path.expanduser(raw_path)
    try:
        with open(full, encoding="latin-1") as f:
            text = f.read(4096)
    except FileNotFoundError:
        raise AgnoKeyError(f"agno key file {full!r} does not exist "
                           "(it must hold 32 hex digits)") from None
    except OSError as exc:
        raise AgnoKeyError(f"agno key file {full!r}: {exc.strerror}") from None
    digits = [_HEX_VALUES[c] for c in text if c in _HEX_VALUES][:32]
    if len(digits) < 32:
        raise AgnoKeyError(f"agno key file {full!r} holds {len(digits)} hex digits, "
                           "32 are needed (a 128-bit key)")
    return bytes((digits[i] << 4) | digits[i + 1] for i in range(0, 32, 2))


def parse_ethtype(text: str, vnl_text: str) -> int | None:
    """Outer ethertype: a number, or None for ``copy``, -1 for ``rand``."""
    text = text.strip().lower()
    named = {"": AGNO_TYPE, "copy": None, "ipv4": 0x0800, "ipv6": 0x86DD, "rand": -1}
    if text in named:
        return named[text]
    try:
        value = int(text, 0)
    except ValueError:
        raise VNLError(f"VNL {vnl_text!r}: ethtype={text!r} is not a number or "
                       "copy/ipv4/ipv6/rand") from None
    if value == 0:
        return AGNO_TYPE
    if not 0x600 <= value < 0xFFFF:
        raise VNLError(f"VNL {vnl_text!r}: ethtype={text} out of range 0x600..0xfffe")
    return value


class AgnoCodec:
    """Sans-IO encryption and decryption of agno frames (``now`` in unix seconds)."""

    def __init__(self, key: bytes, ethtype: int | None = AGNO_TYPE,
                 rng: random.Random | None = None) -> None:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        if len(key) != 16:
            raise ValueError("agno keys are 16 bytes")
        self._aes = algorithms.AES(key)
        self._ecb = Cipher(self._aes, modes.ECB())
        self._cbc: Callable[[bytes], Cipher[modes.CBC]] = (
            lambda iv: Cipher(self._aes, modes.CBC(iv)))
        self.ethtype = ethtype
        self._rng = rng or random.SystemRandom()
        self.bad_tag = 0
        self.bad_time = 0
        self.bad_length = 0

    def encrypt(self, frame: bytes | bytearray | memoryview, now: float) -> bytes:
        """The agno frame carrying ``frame``."""
        frame = bytes(frame)
        body = frame[ETH_HLEN:]
        pad = -len(body) % 16
        rand4 = self._rng.getrandbits(32).to_bytes(4, "big")
        header = (frame[12:14] + bytes((pad, 0)) + AGNO_TAG
                  + struct.pack("!I", int(now) & 0xFFFFFFFF) + rand4)
        enc = self._ecb.encryptor()
        enc_header = enc.update(header) + enc.finalize()
        cbc = self._cbc(header).encryptor()
        enc_body = cbc.update(body + bytes(pad)) + cbc.finalize()
        if self.ethtype is None:
            outer = frame[12:14]
        elif self.ethtype < 0:
            outer = struct.pack("!H", 0x600 + self._rng.randrange(0xF9FF))
        else:
            outer = struct.pack("!H", self.ethtype)
        return b"".join((frame[:12], outer, enc_header, enc_body))

    def decrypt(self, data: bytes, now: float) -> bytes | None:
        """The cleartext frame, or None (counted) if the tag or the time is wrong."""
        n = len(data)
        if n < ETH_HLEN + AGNO_HLEN or (n - ETH_HLEN) % 16:
            self.bad_length += 1
            return None
        dec = self._ecb.decryptor()
        header = dec.update(data[ETH_HLEN:ETH_HLEN + AGNO_HLEN]) + dec.finalize()
        if header[4:8] != AGNO_TAG:
            self.bad_tag += 1
            return None
        sent = struct.unpack_from("!I", header, 8)[0]
        skew = (int(now) - sent + 0x80000000) % 0x100000000 - 0x80000000
        if not SKEW_MIN <= skew <= SKEW_MAX:
            self.bad_time += 1
            return None
        pad = header[2] & 0x0F
        cbc = self._cbc(header).decryptor()
        body = cbc.update(data[ETH_HLEN + AGNO_HLEN:]) + cbc.finalize()
        end = len(body) - pad
        if end < 0:
            self.bad_length += 1
            return None
        return b"".join((data[:12], header[0:2], body[:end]))


class AgnoPlug(WrapperPlug):
    """Encrypting wrapper: cleartext on this side, agno frames on the nested plug."""

    STYLE: ClassVar[Style] = "wrapper"
    KEYS: ClassVar[tuple[str, ...]] = ("ethtype",)

    def __init__(self, inner: Plug, key: bytes, ethtype: int | None = AGNO_TYPE,
                 vnl: str = "", clock: Callable[[], float] = time.time,
                 mtu: int | None = None) -> None:
        # the agno header and padding take up to 31 bytes of the nested plug's frames
        super().__init__(inner, vnl, mtu if mtu is not None else max(68, inner.mtu - AGNO_GROWTH))
        self.codec = AgnoCodec(key, ethtype)
        self.clock = clock

    @classmethod
    def from_vnl(cls, vnl: VNL, **kwargs: Any) -> AgnoPlug:
        """Open ``agno://KEYFILE[ethtype=T]{nested}``; the key is read before the nested plug."""
        from ioth.net.registry import open_plug

        key = read_key(vnl.address or None)
        ethtype = parse_ethtype(vnl.get("ethtype", "") or "", vnl.text)
        assert vnl.nested is not None
        # the nested plug is opened for frames AGNO_GROWTH bytes bigger, so that full-size
        # frames fit once encrypted (as with the C module over udp:// or vxvde://)
        mtu = int(kwargs.pop("mtu", None) or cls.DEFAULT_MTU)
        inner = open_plug(vnl.nested, mtu=mtu + AGNO_GROWTH, **kwargs)
        return cls(inner, key, ethtype, vnl.text, mtu=mtu)

    def send(self, frame: bytes | bytearray | memoryview) -> bool:
        """Encrypt and send one frame."""
        n = len(frame)
        if n < MIN_FRAME or n > self.max_frame or self.closed:
            self.counters.tx_dropped += 1
            return False
        if not self.inner.send(self.codec.encrypt(frame, self.clock())):
            self.counters.tx_dropped += 1
            return False
        self.counters.tx_frames += 1
        self.counters.tx_bytes += n
        return True

    def recv_frames(self, limit: int = 64) -> list[bytes]:
        """Decrypt frames of the nested plug; frames failing the checks are dropped."""
        out: list[bytes] = []
        frames = self.inner.recv_frames(limit)
        if not frames:
            return out
        now = self.clock()
        decrypt = self.codec.decrypt
        counters = self.counters
        for data in frames:
            frame = decrypt(data, now)
            if frame is None or len(frame) < MIN_FRAME:
                counters.rx_dropped += 1
                continue
            counters.rx_frames += 1
            counters.rx_bytes += len(frame)
            out.append(frame)
        return out

    def describe(self) -> str:
        return f"agno over {self.inner.describe()}"
