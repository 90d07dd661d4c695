"""The review's shared test environments: one kernel pair and one ioth stack per module."""

from __future__ import annotations

from tests.review_s6.oracle import Envs, module_envs

envs = module_envs(Envs)
