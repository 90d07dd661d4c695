"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

from tests.support.peers import Netns, netns


@pytest.fixture
def make_netns() -> Iterator[Callable[[], Netns]]:
    """Factory of network namespaces that are deleted at the end of the test."""
    with ExitStack() as stack:
        yield lambda: stack.enter_context(netns())
