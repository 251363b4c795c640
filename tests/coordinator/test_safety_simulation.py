"""The invariant under random interleavings: property-based and long seeded simulations."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.coordinator.world import run

SEEDS = int(os.environ.get("QG_SIM_SEEDS", "30"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_no_interleaving_breaks_the_invariant(seed: int) -> None:
    world = run(seed, steps=150)
    assert world.violations == [], world.violations[:5]
    assert all(n == 1 for n in world.acks_sent.values()), "one POST per approval"
    assert world.unfinished() == []


@pytest.mark.parametrize("seed", range(SEEDS))
def test_long_simulation(seed: int) -> None:
    world = run(seed, steps=1500)
    assert world.violations == [], world.violations[:5]
    assert world.unfinished() == [], world.unfinished()[:5]
    assert world.counts.get("events", 0) > 50


def test_the_simulation_exercises_what_it_claims() -> None:
    """Guard against a vacuous simulation: holds, forced starts, acks and crashes all occur."""
    totals: dict[str, int] = {}
    held = 0
    for seed in range(10):
        world = run(seed, steps=800)
        for key, value in world.counts.items():
            totals[key] = totals.get(key, 0) + value
        held += sum(1 for d in world.decisions.values()
                    if any(t.to.value == "held" for t in d.history))
    assert totals["acked"] > 50
    assert totals["forced"] > 5
    assert totals["crashes"] > 50
    assert held > 10
