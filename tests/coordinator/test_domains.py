"""Maintenance domains: the unit the concurrency cap counts, for availability sets, zonal
VMs and Flexible scale sets, and the refusal of a cluster that mixes them."""

from __future__ import annotations

import pytest

from coordinator.safety import VMView, decide
from registry.domains import Domain, DomainMode, Where, domain_of, kind_of, resolve
from registry.records import DecisionCode, DecisionState, Policy
from tests.coordinator.builders import agents_finish_drains, apply, event, group, snapshot

S = DecisionState
C = DecisionCode


def zonal(zones: int = 3, per_zone: int = 2) -> dict[str, VMView]:
    """vm-<z>-<i>: zone z (1-based), FD i; IMDS reports no update domain."""
    return {f"vm-{z}-{i}": VMView(f"vm-{z}-{i}", fd=i, ud=None, live=True, zone=str(z))
            for z in range(1, zones + 1) for i in range(per_zone)}


def flex(fds: int = 3, per_fd: int = 2) -> dict[str, VMView]:
    """A regional Flexible scale set: a fault domain per instance, no update domain."""
    return {f"vm-{f}-{i}": VMView(f"vm-{f}-{i}", fd=f, ud=None, live=True, scale_set="ss")
            for f in range(fds) for i in range(per_fd)}


def step(snap):
    return apply(snap, decide(snap))


def test_auto_picks_the_unit_from_what_imds_reports() -> None:
    assert resolve(DomainMode.AUTO, [("a", Where(0, 3))]) == (DomainMode.UPDATE_DOMAIN, "")
    assert resolve(DomainMode.AUTO, [("a", Where(0, None, zone="2"))]) == (DomainMode.ZONE, "")
    assert resolve(DomainMode.AUTO, [("a", Where(1, None, scale_set="s"))]) == (
        DomainMode.FAULT_DOMAIN, "")
    assert resolve(DomainMode.AUTO, []) == (DomainMode.UPDATE_DOMAIN, "")
    mode, why = resolve(DomainMode.AUTO, [("a", Where(0, 1)), ("b", Where(0, None, zone="1"))])
    assert mode is None and "zonal: b" in why and "availability set: a" in why
    assert resolve(DomainMode.FAULT_DOMAIN, [("a", Where(0, 1)), ("b", Where(2, None, "1"))]) == (
        DomainMode.FAULT_DOMAIN, "")
    assert kind_of(Where(None, None)) == "availability set"  # no UD: held as unknown, not flex
    # IMDS may well show a Flexible VM's update domain as "0" (undocumented): the
    # virtualMachineScaleSet.id marker still makes it flex
    assert kind_of(Where(1, 0, scale_set="s", flexible=True)) == "flexible scale set"
    assert kind_of(Where(1, 0, zone="2", flexible=True)) == "zonal"
    assert domain_of(DomainMode.ZONE, Where(0, 0, zone="3")) == Domain("zone", "3")
    assert str(domain_of(DomainMode.FAULT_DOMAIN, Where(2, None))) == "FD 2"
    assert domain_of(DomainMode.ZONE, Where(0, 0)) is None
    assert domain_of(DomainMode.UPDATE_DOMAIN, Where(0, None)) is None


def test_zonal_cluster_takes_one_zone_at_a_time() -> None:
    vms = zonal()
    spread = group("g", "vm-1-0", "vm-2-0", "vm-3-0")
    snap = step(snapshot(vms, [spread], [event("E1", ["vm-1-0", "vm-1-1"]),
                                         event("E2", ["vm-2-1"])]))
    assert snap.decisions["E1"].state is S.DRAINING
    e2 = snap.decisions["E2"]
    assert e2.state is S.HELD and e2.code is C.WAITING_FOR_UD
    assert "waiting for zone 1 to finish: would make 2 zones unavailable" in e2.reason


def test_zonal_event_in_one_zone_is_approved_without_update_domains() -> None:
    snap = step(snapshot(zonal(), [group("g", "vm-1-0", "vm-2-0", "vm-3-0")],
                         [event("E1", ["vm-2-0", "vm-2-1"])]))
    snap = step(agents_finish_drains(snap))
    assert snap.decisions["E1"].state is S.APPROVED


def test_an_event_spanning_zones_is_held() -> None:
    snap = step(snapshot(zonal(), [], [event("E1", ["vm-1-0", "vm-3-1"])]))
    d = snap.decisions["E1"]
    assert d.state is S.HELD and d.code is C.UNSAFE_SPAN
    assert "event spans 2 zones (zone 1, zone 3; max 1 at once)" in d.reason


def test_flexible_scale_set_counts_fault_domains() -> None:
    snap = step(snapshot(flex(), [], [event("E1", ["vm-0-0"]), event("E2", ["vm-0-1"]),
                                      event("E3", ["vm-1-0"])]))
    assert snap.decisions["E1"].state is S.DRAINING
    assert snap.decisions["E2"].state is S.DRAINING, "same fault domain: same unit"
    e3 = snap.decisions["E3"]
    assert e3.state is S.HELD and "waiting for FD 0 to finish" in e3.reason


def test_a_mixed_cluster_is_held_until_the_operator_names_the_unit() -> None:
    vms = {**zonal(zones=1), "as-0": VMView("as-0", fd=0, ud=0, live=True)}
    snap = step(snapshot(vms, [], [event("E1", ["as-0"])]))
    d = snap.decisions["E1"]
    assert d.state is S.HELD and d.code is C.MIXED_TOPOLOGY
    assert "set policy maintenance_domain" in d.reason
    named = Policy(maintenance_domain=DomainMode.FAULT_DOMAIN)
    snap = step(snapshot(vms, [], [event("E1", ["as-0"])], policy=named))
    assert snap.decisions["E1"].state is S.DRAINING


@pytest.mark.parametrize("mode,missing", [(DomainMode.ZONE, "zone"),
                                          (DomainMode.UPDATE_DOMAIN, "update domain")])
def test_a_vm_without_the_unit_is_held(mode: DomainMode, missing: str) -> None:
    vms = {"vm-a": VMView("vm-a", fd=0, ud=None, live=True)}
    snap = step(snapshot(vms, [], [event("E1", ["vm-a"])],
                         policy=Policy(maintenance_domain=mode)))
    d = snap.decisions["E1"]
    assert d.state is S.HELD and d.code is C.UNKNOWN_DOMAIN
    assert f"vm-a reports no {missing}" in d.reason


def test_every_turn_of_the_timeline_carries_its_code() -> None:
    """Readers of the history (the rollout summary, the dashboard) branch on the code,
    never on the sentence."""
    snap = step(snapshot(zonal(), [], [event("E1", ["vm-1-0"]), event("E2", ["vm-2-0"])]))
    history = snap.decisions["E2"].history
    assert history and history[-1].code is C.WAITING_FOR_UD
    assert all(t.code is not None for d in snap.decisions.values() for t in d.history)
