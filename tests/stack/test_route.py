"""Longest-prefix match routing tables."""

from __future__ import annotations

from ioth.stack.route import MAX_ROUTES, Route, RouteTable
from tests.stack.harness import ip


def test_longest_prefix_wins_and_metric_breaks_ties() -> None:
    t = RouteTable(32)
    t.add(Route(ip("0.0.0.0"), 0, ip("192.0.2.1"), 2))
    t.add(Route(ip("198.51.100.0"), 24, None, 3))
    t.add(Route(ip("198.51.100.128"), 25, None, 4))
    t.add(Route(ip("203.0.113.0"), 24, ip("192.0.2.9"), 2, metric=5))
    t.add(Route(ip("203.0.113.0"), 24, ip("192.0.2.8"), 2, metric=1))
    assert t.lookup(ip("198.51.100.200")).ifindex == 4  # type: ignore[union-attr]
    assert t.lookup(ip("198.51.100.20")).ifindex == 3  # type: ignore[union-attr]
    assert t.lookup(ip("8.8.8.8")).gateway == ip("192.0.2.1")  # type: ignore[union-attr]
    assert t.lookup(ip("203.0.113.7")).gateway == ip("192.0.2.8")  # type: ignore[union-attr]
    assert t.lookup(ip("198.51.100.200"), ifindex=3).ifindex == 3  # type: ignore[union-attr]


def test_remove_expire_and_bound() -> None:
    t = RouteTable(128)
    t.add(Route(ip("2001:db8::"), 32, None, 2, expires=10.0))
    t.add(Route(ip("::"), 0, ip("fe80::1"), 2))
    assert t.lookup(ip("2001:db8::5")).plen == 32  # type: ignore[union-attr]
    t.expire(11.0)
    assert t.lookup(ip("2001:db8::5")).plen == 0  # type: ignore[union-attr]
    assert t.remove(ip("::"), 0) == 1 and t.lookup(ip("2001:db8::5")) is None
    for i in range(MAX_ROUTES + 5):
        t.add(Route(i.to_bytes(16, "big"), 128, None, 2))
    assert len(t.routes()) == MAX_ROUTES and t.dropped == 5
