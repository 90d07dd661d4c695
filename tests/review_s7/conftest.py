"""The review's environments: one kernel DUT and one ioth DUT (with the raw peer) per module."""

from __future__ import annotations

from tests.review_s6.oracle import module_envs
from tests.review_s7.rawpeer import Envs

envs = module_envs(Envs)
