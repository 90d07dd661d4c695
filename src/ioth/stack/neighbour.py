"""Neighbour cache shared by ARP (IPv4) and NDP (IPv6): the RFC 4861 section 7.3 state machine.

States: INCOMPLETE (resolving, packets queued), REACHABLE (confirmed recently), STALE (usable,
unconfirmed), DELAY (used while stale; wait for an upper-layer hint), PROBE (unicast
solicitations), PERMANENT (static).  ARP uses the same machine, as Linux does.  Sans-IO: the
cache asks its protocol (``solicit``) to emit solicitations and schedules its timers through the
stack core.  The cache and every pending queue are bounded; drops are counted.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ioth.stack.core import StackCore
    from ioth.stack.interface import Interface

INCOMPLETE = "incomplete"
REACHABLE = "reachable"
STALE = "stale"
DELAY = "delay"
PROBE = "probe"
PERMANENT = "permanent"

MAX_MULTICAST_SOLICIT = 3
MAX_UNICAST_SOLICIT = 3
DELAY_FIRST_PROBE_TIME = 5.0
MAX_PENDING_PACKETS = 256
MAX_PENDING_BYTES = 256 * 1024


@dataclass(slots=True)
class Neighbour:
    """One cache entry."""

    ifindex: int
    ip: bytes
    mac: bytes | None
    state: str
    updated: float
    probes: int = 0
    gen: int = 0
    is_router: bool = False
    pending: deque[tuple[int, bytes]] = field(default_factory=deque)  # (ethertype, packet)
    pending_bytes: int = 0


Solicit = Callable[["Interface", Neighbour, bool, float], None]
Failed = Callable[["Interface", Neighbour, float], None]


class NeighbourCache:
    """A bounded neighbour cache for one address family."""

    def __init__(self, core: StackCore, name: str, solicit: Solicit, failed: Failed,
                 max_entries: int = 1024) -> None:
        self.core = core
        self.name = name  # "arp" or "ndp": counter prefix
        self.solicit = solicit
        self.failed = failed
        self.max_entries = max_entries
        self.entries: dict[tuple[int, bytes], Neighbour] = {}

    # -- helpers --------------------------------------------------------------------------
    def _count(self, what: str) -> None:
        self.core.counters[f"{self.name}.{what}"] += 1

    def _arm(self, n: Neighbour, when: float) -> None:
        n.gen += 1
        self.core.schedule(when, self._timer, (n.ifindex, n.ip), n.gen)

    def _new(self, ifindex: int, ip: bytes, mac: bytes | None, state: str,
             now: float) -> Neighbour | None:
        if len(self.entries) >= self.max_entries and not self._evict():
            self._count("cache_full_drops")
            return None
        n = Neighbour(ifindex, ip, mac, state, now)
        self.entries[(ifindex, ip)] = n
        return n

    def _evict(self) -> bool:
        # the least recently updated STALE entry; else any resolved, non-static one
        victims = [n for n in self.entries.values() if n.state == STALE] or [
            n for n in self.entries.values() if n.state not in (INCOMPLETE, PERMANENT)]
        if not victims:
            return False
        oldest = min(victims, key=lambda n: n.updated)
        del self.entries[(oldest.ifindex, oldest.ip)]
        self._count("evicted")
        return True

    def _reachable(self, iface: Interface, n: Neighbour, now: float) -> None:
        n.state = REACHABLE
        n.updated = now
        n.probes = 0
        rt = iface.reachable_time * self.core.rng.uniform(0.5, 1.5)
        self._arm(n, now + rt)

    def _flush(self, iface: Interface, n: Neighbour) -> None:
        mac = n.mac
        assert mac is not None
        while n.pending:
            etype, packet = n.pending.popleft()
            self.core.eth_output(iface, mac, etype, packet)
        n.pending_bytes = 0

    # -- entry points ---------------------------------------------------------------------
    def output(self, iface: Interface, ip: bytes, etype: int, packet: bytes, now: float) -> None:
        """Send ``packet`` to neighbour ``ip``: now if its MAC is known, else after resolving."""
        n = self.entries.get((iface.index, ip))
        if n is None:
            n = self._new(iface.index, ip, None, INCOMPLETE, now)
            if n is None:
                self.core.counters[f"{self.name}.unresolved_drops"] += 1
                return
            n.probes = 1
            self._count("tx_solicit")
            self.solicit(iface, n, False, now)
            self._arm(n, now + iface.retrans_timer)
        if n.state == INCOMPLETE:
            if (len(n.pending) >= MAX_PENDING_PACKETS
                    or n.pending_bytes + len(packet) > MAX_PENDING_BYTES):
                self._count("pending_drops")
                return
            n.pending.append((etype, packet))
            n.pending_bytes += len(packet)
            return
        if n.state == STALE:
            n.state = DELAY
            self._arm(n, now + DELAY_FIRST_PROBE_TIME)
        mac = n.mac
        assert mac is not None
        self.core.eth_output(iface, mac, etype, packet)

    def learn(self, iface: Interface, ip: bytes, mac: bytes, now: float, *, advert: bool,
              solicited: bool = False, override: bool = True,
              is_router: bool | None = None, create: bool = True) -> None:
        """Update the cache from a received solicitation (advert=False) or advertisement."""
        key = (iface.index, ip)
        n = self.entries.get(key)
        if n is None:
            if not create or (advert and not solicited and not override):
                return
            n = self._new(iface.index, ip, mac, STALE, now)
            if n is None:
                return
            if advert and solicited:
                self._reachable(iface, n, now)
        elif n.state == PERMANENT:
            return
        elif n.state == INCOMPLETE:
            n.mac = mac
            if advert and solicited:
                self._reachable(iface, n, now)
            else:
                n.state = STALE
                n.updated = now
                n.gen += 1
            self._flush(iface, n)
        elif not advert:
            if n.mac != mac:
                n.mac = mac
                n.state = STALE
                n.updated = now
                n.gen += 1
        else:
            changed = n.mac != mac
            if not override and changed:
                if n.state == REACHABLE:
                    n.state = STALE
                    n.gen += 1
            else:
                n.mac = mac
                if solicited:
                    self._reachable(iface, n, now)
                elif changed:
                    n.state = STALE
                    n.updated = now
                    n.gen += 1
        if is_router is not None:
            n.is_router = is_router

    def add_static(self, ifindex: int, ip: bytes, mac: bytes, now: float) -> None:
        """A permanent entry (like ``ip neigh add ... nud permanent``)."""
        self.entries[(ifindex, ip)] = Neighbour(ifindex, ip, mac, PERMANENT, now)

    def remove(self, ifindex: int, ip: bytes | None = None) -> None:
        """Forget an entry (or every entry of an interface)."""
        for key in list(self.entries):
            if key[0] == ifindex and (ip is None or key[1] == ip):
                del self.entries[key]

    def _timer(self, now: float, key: tuple[int, bytes], gen: int) -> None:
        n = self.entries.get(key)
        if n is None or n.gen != gen:
            return
        iface = self.core.ifaces.get(n.ifindex)
        if iface is None:
            del self.entries[key]
            return
        if n.state == INCOMPLETE:
            if n.probes < MAX_MULTICAST_SOLICIT:
                n.probes += 1
                self._count("tx_solicit")
                self.solicit(iface, n, False, now)
                self._arm(n, now + iface.retrans_timer)
            else:
                del self.entries[key]
                self._count("resolution_failed")
                self.failed(iface, n, now)
        elif n.state == REACHABLE:
            n.state = STALE
            n.gen += 1
        elif n.state in (DELAY, PROBE):
            if n.state == DELAY:
                n.state = PROBE
                n.probes = 0
            if n.probes < MAX_UNICAST_SOLICIT:
                n.probes += 1
                self._count("tx_probe")
                self.solicit(iface, n, True, now)
                self._arm(n, now + iface.retrans_timer)
            else:
                del self.entries[key]
                self._count("unreachable")
