"""Initial sequence numbers (RFC 6528) and SYN cookies.

``ISN = M + F(localip, localport, remoteip, remoteport, secretkey)`` where ``M`` is a 4 us
clock and ``F`` a keyed BLAKE2s hash.  The secret comes from the stack's injected
``random.Random`` so runs are reproducible under test.

SYN cookie layout (used only when a listener's SYN queue is full)::

    bits 31..27  t mod 32, t = floor(now / 64)       (age check: the last 2 periods)
    bits 26..24  index into MSS_TABLE                (the MSS the client offered, rounded down)
    bits 23..0   BLAKE2s(secret, 4-tuple, client ISN, t) truncated to 24 bits
"""

from __future__ import annotations

import hashlib
import random
import struct

MSS_TABLE = (536, 1220, 1360, 1440, 1460, 4312, 8960, 65483)
_COOKIE_PERIOD = 64.0
_TUPLE = struct.Struct("!HH")


class IsnGenerator:
    """RFC 6528 ISN source and SYN-cookie codec keyed by secrets drawn from ``rng``."""

    def __init__(self, rng: random.Random) -> None:
        self._key = rng.getrandbits(256).to_bytes(32, "big")
        self._cookie_key = rng.getrandbits(256).to_bytes(32, "big")
        # the keyed state of _pair's hash, copied per connection (a keyed BLAKE2s set-up
        # hashes a whole key block: copying the state is ~0.3 us cheaper, same digests)
        self._pair_base = hashlib.blake2s(key=self._key, digest_size=8)

    def _f(
        self, key: bytes, laddr: bytes, lport: int, raddr: bytes, rport: int, extra: bytes
    ) -> int:
        h = hashlib.blake2s(laddr + raddr + _TUPLE.pack(lport, rport) + extra, key=key)
        return int.from_bytes(h.digest()[:4], "big")

    def isn(self, now: float, laddr: bytes, lport: int, raddr: bytes, rport: int) -> int:
        """The RFC 6528 ISN for this 4-tuple at time ``now``."""
        return self.isn_ts(now, laddr, lport, raddr, rport)[0]

    def ts_offset(self, laddr: bytes, lport: int, raddr: bytes, rport: int) -> int:
        """A per-connection timestamp clock offset (RFC 7323 7.1)."""
        return self._pair(laddr, lport, raddr, rport) & 0xFFFFFFFF

    def isn_ts(self, now: float, laddr: bytes, lport: int, raddr: bytes, rport: int
               ) -> tuple[int, int]:
        """:meth:`isn` and :meth:`ts_offset` from one keyed hash (one per new connection)."""
        v = self._pair(laddr, lport, raddr, rport)
        return (int(now * 250_000) + (v >> 32)) & 0xFFFFFFFF, v & 0xFFFFFFFF

    def _pair(self, laddr: bytes, lport: int, raddr: bytes, rport: int) -> int:
        # 64 bits of one keyed BLAKE2s: the ISN offset (high half), the TS offset (low half)
        h = self._pair_base.copy()
        h.update(laddr + raddr + _TUPLE.pack(lport, rport))
        return int.from_bytes(h.digest(), "big")

    def cookie(
        self,
        now: float,
        laddr: bytes,
        lport: int,
        raddr: bytes,
        rport: int,
        client_isn: int,
        mss: int,
    ) -> int:
        """The SYN-ACK sequence number that encodes a SYN cookie."""
        t = int(now / _COOKIE_PERIOD) & 0x1F
        idx = 0
        for i, value in enumerate(MSS_TABLE):
            if value <= mss:
                idx = i
        mac = self._mac(laddr, lport, raddr, rport, client_isn, t)
        return (t << 27) | (idx << 24) | mac

    def _mac(self, laddr: bytes, lport: int, raddr: bytes, rport: int, isn: int, t: int) -> int:
        extra = struct.pack("!IB", isn & 0xFFFFFFFF, t)
        return self._f(self._cookie_key, laddr, lport, raddr, rport, extra) & 0xFFFFFF

    def check_cookie(
        self,
        now: float,
        laddr: bytes,
        lport: int,
        raddr: bytes,
        rport: int,
        client_isn: int,
        cookie: int,
    ) -> int | None:
        """The MSS encoded in ``cookie`` if it is valid and fresh, else None."""
        t_now = int(now / _COOKIE_PERIOD) & 0x1F
        t = (cookie >> 27) & 0x1F
        if (t_now - t) & 0x1F > 1:
            return None
        if self._mac(laddr, lport, raddr, rport, client_isn, t) != cookie & 0xFFFFFF:
            return None
        return MSS_TABLE[(cookie >> 24) & 0x7]
