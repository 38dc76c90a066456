"""Cheap argon2 parameters exist for the test environment only."""

from __future__ import annotations

import pytest

from core.identity.passwords import PRODUCTION_MIN_MEMORY_KIB, hasher_for


@pytest.mark.parametrize("env", ["production", "development", "PRODUCTION", ""])
def test_every_environment_but_test_hashes_at_full_cost(env: str) -> None:
    hasher = hasher_for(env)
    assert hasher.memory_cost >= PRODUCTION_MIN_MEMORY_KIB
    assert hasher.time_cost >= 3


def test_cheap_test_hashes_verify_under_full_cost_and_back() -> None:
    cheap, full = hasher_for("test"), hasher_for("production")
    assert cheap.memory_cost < PRODUCTION_MIN_MEMORY_KIB
    assert full.verify(cheap.hash("a long password"), "a long password")
    assert cheap.verify(full.hash("a long password"), "a long password")
