"""The review's environments: one kernel DUT and one ioth DUT (with the raw peer) per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.review_s7.rawpeer import Envs


@pytest.fixture(scope="module")
def envs() -> Iterator[Envs]:
    """Environments made on first use, torn down when the module's tests are done."""
    e = Envs()
    try:
        yield e
    finally:
        e.close()
