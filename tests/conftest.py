"""Shared fixtures, and a guard that keeps scapy off the machine's real network."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any, NoReturn

import pytest

from tests.support.peers import Netns, netns


def _guard_scapy() -> None:
    """scapy is our packet oracle only: it must never resolve MACs or send by itself.

    ``Ether()`` without ``dst`` makes scapy ARP for the destination (or the default gateway) on the
    host's real interface; its send/receive helpers write to real interfaces.  Both raise here, so
    a test that forgets to set MACs fails loudly instead of leaking traffic.
    """
    try:
        import scapy.all
        import scapy.config
        import scapy.sendrecv
    except ImportError:
        return

    def refuse(*_: Any, **__: Any) -> NoReturn:
        raise RuntimeError("scapy tried to resolve a MAC or send on a real interface: "
                           "set Ether(src=..., dst=...) explicitly; never use scapy to send")

    scapy.config.conf.neighbor.resolve = refuse  # type: ignore[method-assign]
    for name in ("send", "sendp", "sr", "sr1", "srp", "srp1", "sendpfast", "sniff", "srloop",
                 "srploop"):
        if hasattr(scapy.sendrecv, name):
            setattr(scapy.sendrecv, name, refuse)
    for name in ("send", "sendp", "sr", "sr1", "srp", "srp1", "sendpfast", "sniff"):
        if hasattr(scapy.all, name):
            setattr(scapy.all, name, refuse)


_guard_scapy()


@pytest.fixture
def make_netns() -> Iterator[Callable[[], Netns]]:
    """Factory of network namespaces that are deleted at the end of the test."""
    with ExitStack() as stack:
        yield lambda: stack.enter_context(netns())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/interop/ carries the ``interop`` marker."""
    for item in items:
        if "/tests/interop/" in str(item.path):
            item.add_marker(pytest.mark.interop)
