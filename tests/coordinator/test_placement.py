"""Placement spreads replicas over fault and update domains; the audit finds bad groups."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.placement import MixedCluster, PlacementError, PlacementRequest, audit, place
from coordinator.safety import VMView
from quorumgate_testbed.rollout import demo_groups
from registry.domains import DomainMode
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
    assert bad.blocking[0].unit == "UD 0" and bad.maintenance_domain == "update_domain"
    assert bad.verdict.startswith("blocks a rollout: losing UD 0 (vm-10, vm-5)")
    assert bad.fix is not None and bad.fix.vm == "vm-5", "in both UD 0 and FD 2"
    assert bad.fix.reason.startswith("vm-5 shares UD 0 and FD 2 with other members; ")
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


# ---------------------------------------------------------------- maintenance domains


def zonal(zones: int = 3, fds: int = 2, per_fd: int = 2) -> dict[str, VMView]:
    """z<Z>-<F>-<i>: zone Z (1-based), FD F within it; IMDS reports no update domain."""
    return {f"z{z}-{f}-{i}": VMView(f"z{z}-{f}-{i}", fd=f, ud=None, live=True, zone=str(z))
            for z in range(1, zones + 1) for f in range(fds) for i in range(per_fd)}


def flex(fds: int = 3, per_fd: int = 3) -> dict[str, VMView]:
    """A regional Flexible scale set: a fault domain per instance, no update domain."""
    return {f"ss-{f}-{i}": VMView(f"ss-{f}-{i}", fd=f, ud=None, live=True, scale_set="ss")
            for f in range(fds) for i in range(per_fd)}


def test_zonal_placement_goes_over_zones_first_then_fds_within():
    vms = zonal()
    three = place(PlacementRequest(replicas=3), vms, [])
    assert sorted(vms[n].zone for n in three.vms) == ["1", "2", "3"]
    assert three.maintenance_domain == "zone" and three.maintenance_domains == 3
    assert three.spread == 3 and three.notes == [] and three.fault_domains == 3
    assert sorted(three.domains.values()) == ["zone 1", "zone 2", "zone 3"]
    assert all(three.faults[n] == f"FD {vms[n].fd} in zone {vms[n].zone}" for n in three.vms)
    # six replicas: two per zone, and the two in a zone in different FDs of that zone
    six = place(PlacementRequest(replicas=6), vms, [])
    assert six.maintenance_domains == 3 and six.fault_domains == 6
    assert {(vms[n].zone, vms[n].fd) for n in six.vms} == {
        (str(z), f) for z in (1, 2, 3) for f in (0, 1)}
    assert six.notes == ["only 3 distinct zones for 6 replicas"]


def test_zonal_placement_prefers_a_new_zone_over_a_new_fd():
    """Zone 3 has a single VM in FD 0 and it carries a load: a third zone still beats a
    fresh fault domain in zone 1 or 2."""
    vms = {**zonal(zones=2), "z3-0-0": VMView("z3-0-0", fd=0, ud=None, live=True, zone="3")}
    busy = [Group(name="other", members=["z3-0-0"])]
    result = place(PlacementRequest(replicas=3), vms, busy)
    assert {vms[n].zone for n in result.vms} == {"1", "2", "3"}


def test_flex_placement_spreads_over_fault_domains():
    vms = flex()
    result = place(PlacementRequest(replicas=3), vms, [])
    assert result.maintenance_domain == "fault_domain"
    assert sorted(result.domains.values()) == ["FD 0", "FD 1", "FD 2"]
    assert result.spread == 3 and result.notes == [] and result.update_domains == 0
    four = place(PlacementRequest(replicas=4), vms, [])
    assert four.notes == ["only 3 distinct fault domains for 4 replicas"]


def test_a_mixed_cluster_is_refused_until_the_policy_names_the_unit():
    vms = {**zonal(zones=2, fds=1, per_fd=1), **grid(fds=2, uds=2)}
    with pytest.raises(MixedCluster, match="mixes deployments .* maintenance_domain"):
        place(PlacementRequest(replicas=3), vms, [])
    with pytest.raises(MixedCluster):
        audit(vms, [Group(name="g", members=["vm-0", "vm-1"])])
    # the operator names the unit: by fault domain, everyone has one
    named = place(PlacementRequest(replicas=2), vms, [], DomainMode.FAULT_DOMAIN)
    assert named.maintenance_domain == "fault_domain" and named.spread == 2
    # by zone, the availability-set VMs report none: they spread nothing, and it says so
    by_zone = place(PlacementRequest(replicas=3, holding=["vm-0"]), vms, [], DomainMode.ZONE)
    assert by_zone.maintenance_domains == 2 and by_zone.domains["vm-0"] is None
    assert "vm-0 reports no zone: it spreads nothing" in by_zone.notes


def test_zonal_audit_names_the_zone_and_the_fd_in_it():
    vms = zonal()
    crowded = Group(name="crowded", members=["z1-0-0", "z1-1-0", "z2-0-0"], min_available=2)
    racked = Group(name="racked", members=["z1-0-0", "z1-0-1", "z2-0-0", "z3-0-0"],
                   min_available=3)
    spread = Group(name="spread", members=["z1-0-0", "z2-0-0", "z3-0-0"], min_available=2)
    report = {a.group: a for a in audit(vms, [crowded, racked, spread])}
    bad = report["crowded"]
    assert not bad.ud_safe and bad.fd_safe and bad.maintenance_domain == "zone"
    assert [(b.kind, b.unit, b.domain) for b in bad.blocking] == [("update", "zone 1", "1")]
    assert bad.verdict == ("blocks a rollout: losing zone 1 (z1-0-0, z1-1-0) leaves 1 of 3, "
                           "min 2")
    assert bad.fix is not None and bad.fix.reason.endswith("is in zone 3, FD 0")
    rack = report["racked"]  # FD 0 of zone 1 holds two of them; FD 0 elsewhere is not it
    assert [(b.kind, b.unit) for b in rack.blocking] == [("update", "zone 1"),
                                                         ("fault", "FD 0 in zone 1")]
    assert report["spread"].ud_safe and report["spread"].fd_safe
    assert report["spread"].verdict == "safe: any one zone or fault domain can go"


def test_flex_audit_names_the_fault_domain():
    vms = flex()
    bad = audit(vms, [Group(name="g", members=["ss-0-0", "ss-0-1", "ss-1-0"],
                            min_available=2)])[0]
    assert not bad.ud_safe and not bad.fd_safe
    assert [(b.kind, b.unit) for b in bad.blocking] == [("update", "FD 0"), ("fault", "FD 0")]
    assert bad.verdict.startswith("blocks a rollout: losing FD 0 (ss-0-0, ss-0-1)")
    assert bad.fix is not None and bad.fix.reason.endswith("is in FD 2")
