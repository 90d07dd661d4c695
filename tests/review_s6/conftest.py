"""The review's shared test environments: one kernel pair and one ioth stack per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.review_s6.oracle import Envs


@pytest.fixture(scope="module")
def envs() -> Iterator[Envs]:
    """Environments made on first use, torn down when the module's tests are done."""
    e = Envs()
    try:
        yield e
    finally:
        e.close()
