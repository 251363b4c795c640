"""The simulation's checkers must see the holes of issue 12: put each one back (in the core,
the acker, the provider or the shell the world models) and the same randomized worlds
must report violations. A checker that stays quiet here would prove nothing."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import pytest

import tests.coordinator.world as world_module
from agent import relay
from coordinator import safety
from registry.records import EventType, Policy
from tests.coordinator.world import TrueVM, World

SEEDS = range(30)
STEPS = 250


def sweep(prepare: Callable[[World], None] = lambda w: None, seeds: range = SEEDS,
          steps: int = STEPS) -> tuple[list[str], list[str]]:
    """(violations, unfinished) over `seeds` worlds, each prepared by `prepare`."""
    violations: list[str] = []
    unfinished: list[str] = []
    for seed in seeds:
        world = World.random(random.Random(seed))
        prepare(world)
        for _ in range(steps):
            world.step()
        world.heal()
        for _ in range(400):
            if not world.unfinished():
                break
            world.step(schedule_rate=0.0)
        violations += [f"seed {seed}: {v}" for v in world.violations]
        unfinished += [f"seed {seed}: {u}" for u in world.unfinished()]
    return violations, unfinished


@pytest.fixture
def patch() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_the_fixed_core_is_clean_on_the_same_worlds() -> None:
    worlds: list[World] = []
    violations, unfinished = sweep(worlds.append)
    misrecorded = [m for w in worlds for m in w.misrecorded()]
    assert violations == [] and unfinished == [] and misrecorded == [], (
        violations[:5], unfinished[:5], misrecorded[:5])


def test_sees_resources_that_grow_unreserved(patch: pytest.MonkeyPatch) -> None:
    """Hole 1: the core ignores newcomers in Resources and the acker does not compare."""
    patch.setattr(safety._EventPlanner, "unreserved", lambda self: [])

    def no_coverage_check(world: World) -> None:
        world.acker_checks_coverage = False

    violations, _ = sweep(no_coverage_check)
    assert any("undrained" in v or "leaving group" in v or "span" in v
               for v in violations), violations[:5]


def scripted_unknown_vms() -> World:
    """The review's case: UD 0 in maintenance, then an event listing only two VMs of UD 3
    that run no agent. Steps until both are over."""
    world = World.random(random.Random(7))
    world.topology = "availability-set"
    world.truth = {f"vm-{i}": TrueVM(f"vm-{i}", fd=i % 2, ud=i // 2) for i in range(8)}
    world.truth |= {g: TrueVM(g, fd=0, ud=3, agent=False) for g in ("ghost-a", "ghost-b")}
    world.incarnation = {n: 1 for n in world.truth}
    world.groups = world.stored_groups = {}
    world.provider_groups = set()
    world.policy = Policy(max_concurrent_uds=1, drain_timeout_s=600, ack_timeout_s=60,
                          gone_grace_s=0, best_effort_lead_s=0)
    world.platform_reshapes = False
    world.operators = lambda: None  # type: ignore[method-assign]  # no operator forces
    world.nemesis = lambda: None  # type: ignore[method-assign]
    world.add_event(EventType.REBOOT, ["vm-0", "vm-1"])
    for _ in range(3):
        world.step(schedule_rate=0.0)
    world.add_event(EventType.REBOOT, ["ghost-a", "ghost-b"])
    for _ in range(300):
        world.step(schedule_rate=0.0)
    return world


def test_scripted_unknown_vms_are_held_not_free() -> None:
    world = scripted_unknown_vms()
    assert world.violations == [] and world.events["E0002"].started_by_ack is False


def test_sees_unknown_vms_treated_as_free(patch: pytest.MonkeyPatch) -> None:
    """Hole 2: an unknown VM costs nothing (no domain, never newly taken)."""
    patch.setattr(safety.Availability, "outside", lambda self, vm: vm not in self.vms)
    world = scripted_unknown_vms()
    assert any("span" in v for v in world.violations), world.violations[:5]


def test_sees_providers_that_shrink_groups(patch: pytest.MonkeyPatch) -> None:
    """Hole 3: the provider publishes only the members whose sessions exist now."""
    patch.setattr(world_module, "durable_members",
                  lambda previous, listed, now, forget, who="": (list(listed), {}))

    def all_provided(world: World) -> None:
        world.provider_groups = set(world.groups)

    violations, _ = sweep(all_provided)
    assert any("leaving group" in v or "below its minimum" in v for v in violations), (
        violations[:5])


def test_sees_a_revocation_that_beats_a_claim() -> None:
    """Hole 4: the leader reads the acks from its lagging mirror."""
    def lagging_acks(world: World) -> None:
        world.acks_from_mirror = True

    violations, _ = sweep(lagging_acks)
    assert any("taken back while its acknowledgement was claimed" in v
               for v in violations), violations[:5]


def test_sees_records_that_fail_open() -> None:
    """Hole 5: a group that does not decode is skipped, so its constraint disappears."""
    def fail_open(world: World) -> None:
        world.fail_open_on_corrupt = True

    violations, _ = sweep(fail_open, seeds=range(60))
    assert any("leaving group" in v or "below its minimum" in v for v in violations), (
        violations[:5])


def test_sees_a_gone_taken_on_one_word(patch: pytest.MonkeyPatch) -> None:
    """Hole 6: Gone is final on any VM's first word (a flapping IMDS ends events early)."""
    patch.setattr(safety._EventPlanner, "gone_confirmed",
                  lambda self: self.event.gone_at is not None)
    patch.setattr(relay, "CLOCK_TOLERANCE_S", float("-inf"))  # no later sighting undoes it
    misrecorded = []

    def keep(world: World) -> None:
        worlds.append(world)

    worlds: list[World] = []
    violations, unfinished = sweep(keep)
    misrecorded = [m for w in worlds for m in w.misrecorded()]
    assert violations or unfinished or misrecorded, (
        "an event taken for over on one word, then started by the platform, must show")


def test_sees_terminated_vms_that_hold_a_domain_forever(patch: pytest.MonkeyPatch) -> None:
    """Hole 7: a Terminate/Preempt VM that never returns keeps its event unfinished."""
    patch.setattr(safety, "UNDELAYABLE", frozenset())
    _, unfinished = sweep()
    assert any("waiting for" in u for u in unfinished), unfinished[:5]



def test_sees_acknowledgements_it_missed(patch: pytest.MonkeyPatch) -> None:
    """The liveness measure: a core that holds everything is safe and must show as
    missing what ground truth says was safe to acknowledge."""
    patch.setattr(world_module, "decide", lambda snap: [])
    worlds = [world_module.run(seed, steps=400, drain_steps=0) for seed in range(10)]
    assert sum(w.counts["acked"] for w in worlds) == 0
    assert sum(w.counts["missed"] for w in worlds) > 5, [w.counts for w in worlds]


@pytest.mark.slow
def test_a_cluster_cap_that_counts_deleted_vms_misses_acknowledgements(
        patch: pytest.MonkeyPatch) -> None:
    """The liveness measure found this one: VMs a Terminate took for good counted as
    unavailable members of the cluster, so the cap closed a little with every deletion
    (a quarter to a half of the acknowledgements of a 10-seed run were lost to it)."""
    def totals() -> tuple[int, int]:
        worlds = [world_module.run(seed, steps=800) for seed in range(10)]
        return (sum(w.counts["missed"] for w in worlds),
                sum(w.counts["acked"] for w in worlds))

    missed, acked = totals()
    patch.setattr(safety.Availability, "cluster_size", lambda self: len(self.vms))
    patch.setattr(safety.Availability, "unavailable_known",
                  lambda self: sum(1 for vm in self.vms if self.down(vm)))
    missed_with_hole, acked_with_hole = totals()
    assert missed_with_hole > missed, (missed_with_hole, missed)
    assert acked_with_hole < 0.85 * acked, (acked_with_hole, acked)
