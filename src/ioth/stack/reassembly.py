"""Bounded fragment reassembly for IPv4 (RFC 791/815) and IPv6 (RFC 8200, RFC 5722).

Each datagram in progress keeps its fragments as ``(start, data)`` pieces.  Limits: number of
datagrams in progress, total bytes held, and a timeout; when full, the oldest datagrams in
progress are evicted (counted) to make room.
With ``drop_overlaps`` (IPv6, RFC 5722) a fragment overlapping another abandons the whole datagram;
an exact duplicate is ignored.  IPv4 tolerates overlaps (later data wins).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

MAX_DATAGRAM = 65535


@dataclass(slots=True)
class _Datagram:
    expires: float
    pieces: dict[int, bytes] = field(default_factory=dict)  # start -> data
    total: int | None = None  # payload length once the last fragment arrived
    held: int = 0
    first: bytes | None = None  # header + start of fragment zero (for ICMP time exceeded)


class Reassembler:
    """Reassembly buffers of one family."""

    def __init__(self, timeout: float, drop_overlaps: bool, max_datagrams: int = 64,
                 max_bytes: int = 4 * 1024 * 1024) -> None:
        self.timeout = timeout
        self.drop_overlaps = drop_overlaps
        self.max_datagrams = max_datagrams
        self.max_bytes = max_bytes
        self.held = 0
        self._dgrams: dict[Hashable, _Datagram] = {}
        self.stats = {"fragments": 0, "reassembled": 0, "timeouts": 0, "overlaps": 0,
                      "duplicates": 0, "dropped_full": 0, "dropped_bad": 0,
                      "evicted": 0}

    def __len__(self) -> int:
        return len(self._dgrams)

    def add(self, key: Hashable, start: int, more: bool, data: bytes, now: float,
            first: bytes | None = None) -> tuple[bytes | None, float | None]:
        """Add one fragment.

        Returns ``(payload, new_deadline)``: the reassembled payload when complete (else None)
        and the expiry time of a newly created datagram (so the caller can arm a timer).
        """
        self.stats["fragments"] += 1
        end = start + len(data)
        if end > MAX_DATAGRAM or (more and len(data) % 8) or (not data and more):
            self.stats["dropped_bad"] += 1
            return None, None
        dg = self._dgrams.get(key)
        created = None
        if len(data) > self.max_bytes:
            self.stats["dropped_full"] += 1
            return None, None
        # full: the oldest datagrams in progress make room (as Linux does above its high
        # threshold), so a lossy link or a fragment flood cannot block reassembly until timeouts
        while self._dgrams and (self.held + len(data) > self.max_bytes or (
                dg is None and len(self._dgrams) >= self.max_datagrams)):
            oldest = next(iter(self._dgrams))
            if oldest == key:
                break
            self._drop(oldest, self._dgrams[oldest])
            self.stats["evicted"] += 1
        if dg is None:
            dg = _Datagram(now + self.timeout)
            self._dgrams[key] = dg
            created = dg.expires
        elif self.held + len(data) > self.max_bytes:
            self.stats["dropped_full"] += 1
            return None, None
        if not more:
            if (dg.total is not None and dg.total != end) or any(
                    s + len(d) > end for s, d in dg.pieces.items()):
                self._drop(key, dg)
                self.stats["dropped_bad"] += 1
                return None, created
            dg.total = end
        elif dg.total is not None and end > dg.total:
            self._drop(key, dg)
            self.stats["dropped_bad"] += 1
            return None, created
        old = dg.pieces.get(start)
        if old is not None and old == data:
            self.stats["duplicates"] += 1
            return None, created
        if self.drop_overlaps:
            for s, d in dg.pieces.items():
                if s < end and start < s + len(d):
                    self.stats["overlaps"] += 1
                    self._drop(key, dg)
                    return None, created
        elif old is not None:
            dg.held -= len(old)
            self.held -= len(old)
        dg.pieces[start] = data
        dg.held += len(data)
        self.held += len(data)
        if start == 0 and first is not None:
            dg.first = first
        if dg.total is None:
            return None, created
        # complete when the pieces cover [0, total)
        covered = 0
        for s in sorted(dg.pieces):
            if s > covered:
                return None, created
            covered = max(covered, s + len(dg.pieces[s]))
        if covered < dg.total:
            return None, created
        buf = bytearray(dg.total)
        for s, d in dg.pieces.items():
            buf[s : s + len(d)] = d
        self._drop(key, dg)
        self.stats["reassembled"] += 1
        return bytes(buf), created

    def _drop(self, key: Hashable, dg: _Datagram) -> None:
        self.held -= dg.held
        del self._dgrams[key]

    def next_expiry(self) -> float | None:
        """Earliest expiry of a datagram in progress."""
        return min((dg.expires for dg in self._dgrams.values()), default=None)

    def expire(self, now: float) -> list[bytes]:
        """Abandon timed-out datagrams; returns the saved starts of those that had fragment 0."""
        out = []
        for key, dg in list(self._dgrams.items()):
            if dg.expires <= now:
                self.stats["timeouts"] += 1
                if dg.first is not None:
                    out.append(dg.first)
                self._drop(key, dg)
        return out
