"""Routing tables with longest-prefix match (one table per address family).

Addresses are raw bytes (4 or 16); the table stores them as integers so a lookup is a few integer
operations per route.  Routes are kept sorted by prefix length (longest first) then metric, so the
first match wins.  Tables are small (a node has a handful of routes); the bound protects against a
misbehaving router advertisement flood.
"""

from __future__ import annotations

import errno
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ioth.stack.interface import Interface

MAX_ROUTES = 1024


@dataclass(frozen=True, slots=True)
class Route:
    """One route: ``dst/plen`` via ``gateway`` (None: on-link) out of ``ifindex``."""

    dst: bytes
    plen: int
    gateway: bytes | None
    ifindex: int
    metric: int = 0
    origin: str = "static"  # static, kernel (on-link from an address), ra (router advert)
    expires: float | None = None


class RouteTable:
    """Longest-prefix-match table for one family (``bits`` = 32 or 128)."""

    def __init__(self, bits: int) -> None:
        self.bits = bits
        self._routes: list[tuple[int, int, Route]] = []  # (mask, network, route)
        self.dropped = 0

    def _mask(self, plen: int) -> int:
        return ((1 << self.bits) - 1) ^ ((1 << (self.bits - plen)) - 1)

    def add(self, route: Route) -> bool:
        """Add (or replace an identical destination/gateway/ifindex) route; False if full."""
        mask = self._mask(route.plen)
        network = int.from_bytes(route.dst, "big") & mask
        route = Route(network.to_bytes(self.bits // 8, "big"), route.plen, route.gateway,
                      route.ifindex, route.metric, route.origin, route.expires)
        self._routes = [r for r in self._routes if not _same(r[2], route)]
        if len(self._routes) >= MAX_ROUTES:
            self.dropped += 1
            return False
        self._routes.append((mask, network, route))
        self._routes.sort(key=lambda r: (-r[2].plen, r[2].metric))
        return True

    def remove(self, dst: bytes, plen: int, gateway: bytes | None = None,
               ifindex: int = 0) -> int:
        """Remove matching routes (gateway/ifindex 0 or None match any); returns the count."""
        mask = self._mask(plen)
        network = int.from_bytes(dst, "big") & mask
        keep = []
        for entry in self._routes:
            r = entry[2]
            if (entry[1] == network and r.plen == plen
                    and (gateway is None or r.gateway == gateway)
                    and (not ifindex or r.ifindex == ifindex)):
                continue
            keep.append(entry)
        removed = len(self._routes) - len(keep)
        self._routes = keep
        return removed

    def remove_if(self, ifindex: int) -> None:
        """Remove every route through ``ifindex``."""
        self._routes = [e for e in self._routes if e[2].ifindex != ifindex]

    def expire(self, now: float) -> None:
        """Drop routes whose lifetime has ended."""
        self._routes = [e for e in self._routes
                        if e[2].expires is None or e[2].expires > now]

    def next_expiry(self) -> float | None:
        """Earliest route expiry time, if any."""
        times = [e[2].expires for e in self._routes if e[2].expires is not None]
        return min(times) if times else None

    def lookup(self, dst: bytes, ifindex: int = 0) -> Route | None:
        """Best route to ``dst`` (restricted to ``ifindex`` when given)."""
        value = int.from_bytes(dst, "big")
        for mask, network, route in self._routes:
            if value & mask == network and (not ifindex or route.ifindex == ifindex):
                return route
        return None

    def resolve(self, dst: bytes, ifindex: int, ifaces: Mapping[int, Interface]
                ) -> tuple[Interface, bytes]:
        """Outgoing interface and next hop for ``dst``; OSError(ENETUNREACH) with no route or
        with the route's interface down."""
        route = self.lookup(dst, ifindex)
        if route is None:
            raise OSError(errno.ENETUNREACH, "Network is unreachable")
        iface = ifaces[route.ifindex]
        if not iface.up:
            raise OSError(errno.ENETUNREACH, "Network is unreachable")
        return iface, route.gateway or dst

    def routes(self) -> list[Route]:
        """Every route, best first."""
        return [e[2] for e in self._routes]


def _same(a: Route, b: Route) -> bool:
    return (a.dst == b.dst and a.plen == b.plen and a.gateway == b.gateway
            and a.ifindex == b.ifindex)
