"""Placement spreads replicas over fault and update domains; the audit finds bad groups."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.placement import PlacementError, PlacementRequest, audit, place
from coordinator.safety import VMView
from quorumgate_testbed.rollout import demo_groups
from registry.records import Group
from tests.coordinator.builders import grid


def spread_of(names, vms):
    return len({vms[n].fd for n in names}), len({vms[n].ud for n in names})


def test_three_replicas_land_in_three_fds_and_three_uds():
    vms = grid()
    result = place(PlacementRequest(replicas=3), vms, [])
    assert spread_of(result.vms, vms) == (3, 3)
    assert result.spread == 3 and result.notes == []


def test_deterministic():
    vms = grid()
    a = place(PlacementRequest(replicas=4), vms, [])
    b = place(PlacementRequest(replicas=4), dict(reversed(list(vms.items()))), [])
    assert a == b


def test_dead_and_excluded_vms_are_never_chosen():
    vms = grid(dead=["vm-0", "vm-1"])
    result = place(PlacementRequest(replicas=3, exclude=["vm-2"]), vms, [])
    assert not {"vm-0", "vm-1", "vm-2"} & set(result.vms)
    assert spread_of(result.vms, vms) == (3, 3)


def test_holding_replicas_are_kept_and_the_rest_spread_around_them():
    vms = grid()
    result = place(PlacementRequest(replicas=3, holding=["vm-0"]), vms, [])
    assert result.vms[0] == "vm-0" and len(result.chosen) == 2
    assert spread_of(result.vms, vms) == (3, 3)


def test_load_is_balanced_across_groups():
    vms = grid()
    first = place(PlacementRequest(replicas=3), vms, [])
    taken = [Group(name="g1", members=first.vms)]
    second = place(PlacementRequest(replicas=3), vms, taken)
    assert not set(first.vms) & set(second.vms)
    assert spread_of(second.vms, vms) == (3, 3)


def test_uneven_cluster_with_missing_update_domains():
    vms = {n: v for n, v in grid(fds=3, uds=2).items()}
    result = place(PlacementRequest(replicas=3), vms, [])
    assert result.update_domains == 2 and result.fault_domains == 3
    assert result.notes == ["only 2 distinct update domains for 3 replicas"]


def test_not_enough_vms_is_a_clear_error():
    vms = grid(fds=1, uds=3, dead=["vm-2"])
    with pytest.raises(PlacementError, match="only 2 live VMs are eligible"):
        place(PlacementRequest(replicas=3), vms, [])
    with pytest.raises(PlacementError, match="unknown VMs: nope"):
        place(PlacementRequest(replicas=3, holding=["nope"]), vms, [])


@settings(max_examples=100, deadline=None)
@given(fds=st.integers(1, 5), uds=st.integers(1, 20), replicas=st.integers(1, 6))
def test_full_grid_always_reaches_the_best_spread(fds, uds, replicas):
    vms = grid(fds=fds, uds=uds)
    if replicas > len(vms):
        return
    result = place(PlacementRequest(replicas=replicas), vms, [])
    assert result.spread == min(replicas, fds, uds)
    assert len(set(result.vms)) == replicas


def azure_grid(fds: int = 3, uds: int = 5, count: int = 15) -> dict[str, VMView]:
    """Azure's round-robin placement, as in the emulator and the demo: FD i%fds, UD i%uds."""
    return {f"vm-{i}": VMView(f"vm-{i}", i % fds, i % uds, True) for i in range(count)}


def test_audit_finds_the_badly_placed_demo_group_and_a_fix_that_works():
    vms = azure_grid()
    groups = [Group(name=g.name, members=g.members, min_available=g.min_available)
              for g in demo_groups()]
    report = {a.group: a for a in audit(vms, groups)}
    assert [a.group for a in audit(vms, groups) if not a.ud_safe] == ["pg-bad"]
    bad = report["pg-bad"]
    assert bad.blocking[0].kind == "update" and bad.blocking[0].domain == 0
    assert bad.verdict.startswith("blocks a rollout: losing update domain 0 (vm-10, vm-5)")
    assert bad.fix is not None and bad.fix.vm == "vm-5", "in both UD 0 and FD 2"
    moved = [bad.fix.to if m == bad.fix.vm else m for m in bad.members]
    fixed = audit(vms, [Group(name="pg-bad", members=moved, min_available=2)])[0]
    assert fixed.ud_safe and fixed.fd_safe, fixed.verdict
    assert report["kafka-1"].ud_safe and report["kafka-1"].fd_safe


def test_audit_counts_dead_and_unknown_members_as_down():
    vms = grid(dead=["vm-1"])
    group = Group(name="g", members=["vm-0", "vm-1", "vm-2"], min_available=2)
    result = audit(vms, [group])[0]
    assert not result.ud_safe  # vm-1 is down already: losing UD 0 or UD 2 leaves 1
    ghost = Group(name="ghost", members=["vm-0", "vm-1", "never-seen"], min_available=2)
    assert "unknown members count as down: never-seen" in audit(grid(), [ghost])[0].verdict


def test_fault_domain_audit():
    vms = {"a": VMView("a", 0, 0, True), "b": VMView("b", 0, 1, True),
           "c": VMView("c", 1, 2, True)}
    result = audit(vms, [Group(name="g", members=["a", "b", "c"], min_available=2)])[0]
    assert result.ud_safe and not result.fd_safe
    assert result.verdict.startswith("loses quorum with a rack")
