"""What operators see, derived from one `ClusterView`. Pure: no I/O, no clock.

The REST API and the dashboard both render these rows, so a VM shows the same state
everywhere. Availability per group is computed by the safety core's own
`Availability`, so the numbers shown are the numbers the leader decides on.
"""

from __future__ import annotations

import functools
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from typing import TypeVar

from pydantic import BaseModel, Field

from coordinator.metrics import at_risk, was_forced
from coordinator.safety import Availability, Snapshot, Unreadable
from coordinator.store import ClusterView
from registry.domains import DomainMode, Where, domain_of, kind_of, resolve
from registry.records import (
    AckRecord,
    Decision,
    DecisionCode,
    DecisionState,
    DrainRecord,
    DrainStatus,
    DrainWant,
    EventType,
    Group,
    MinAvailable,
    Override,
    PlatformEvent,
    PlatformStatus,
    VMPlacement,
)

S = DecisionState
T = TypeVar("T")
_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders vm-2 before vm-10 (numbers compare as numbers)."""
    return tuple((0, int(part)) if part.isdigit() else (1, part)
                 for part in _DIGITS.split(name) if part)


class VMDisplayState(StrEnum):
    UP = "up"
    """Live, nothing asked of it (or restored)."""
    DRAINING = "draining"
    """Live, its drain hook was asked for or is running."""
    DRAIN_FAILED = "drain_failed"
    """Live, its drain hook failed: a human or the drain timeout must decide."""
    DRAINED = "drained"
    """Live and drained: waiting for the platform to take it down."""
    REBOOTING = "rebooting"
    """Not live while reserved by an event that has started: expected downtime."""
    RESTORING = "restoring"
    """Live again, its restore hook was asked for or is running."""
    LOST = "lost"
    """Not live, and no started event explains it: counts as unavailable."""


STARTED_STATES = frozenset({S.STARTED, S.FORCED, S.COMPLETED})


def event_started(event: PlatformEvent | None, decision: Decision | None) -> bool:
    """Has the platform started this event (whether it is over yet or not)?"""
    if decision is not None and decision.state in STARTED_STATES:
        return True
    if event is None:
        return False
    return event.status is PlatformStatus.STARTED or (
        event.status is PlatformStatus.GONE and event.started_at is not None)


def display_state(live: bool, drain: DrainRecord | None, reserving: Decision | None,
                  event: PlatformEvent | None) -> VMDisplayState:
    """One VM's state for display.

    `drain` is its `drain/<vm>` record, `reserving` the decision that reserves it (if
    any) and `event` that decision's platform event.
    """
    if not live:
        if reserving is not None and event_started(event, reserving):
            return VMDisplayState.REBOOTING
        return VMDisplayState.LOST
    if drain is None:
        return VMDisplayState.UP
    if drain.want is DrainWant.RESTORED:
        return (VMDisplayState.UP if drain.status is DrainStatus.RESTORED
                else VMDisplayState.RESTORING)
    if drain.status is DrainStatus.FAILED:
        return VMDisplayState.DRAIN_FAILED
    if drain.status is DrainStatus.DRAINED:
        return VMDisplayState.DRAINED
    return VMDisplayState.DRAINING


def reserving_decision(vm: str, decisions: Mapping[str, Decision],
                       events: Mapping[str, PlatformEvent],
                       by_vm: Mapping[str, list[Decision]] | None = None) -> Decision | None:
    """The decision holding `vm`: a started one first (it explains a VM that is down),
    then the lowest event id. `by_vm` (from `decisions_by_vm`) saves a scan per VM."""
    found = by_vm.get(vm, []) if by_vm is not None else [
        d for d in decisions.values() if vm in d.reserved]
    holders = sorted(found, key=lambda d: d.event_id)
    for d in holders:
        if event_started(events.get(d.event_id), d):
            return d
    return holders[0] if holders else None


# ---------------------------------------------------------------- VMs and topology


class VMRow(BaseModel):
    name: str
    fd: int | None
    ud: int | None
    zone: str = Field("", description="the availability zone IMDS reported (\"\" when none)")
    location: str = ""
    address: str = ""
    scale_set: str = ""
    live: bool
    groups: list[str]
    state: VMDisplayState
    reserved_by: str | None = None
    """The event whose decision reserves this VM, if any."""
    drain: DrainRecord | None = None
    kind: str = Field("availability set", description="how the VM was deployed, as far as "
                      "IMDS tells: `zonal` (a zone), `flexible scale set` (a scale set "
                      "without update domains) or `availability set`")
    maintenance_domain: str | None = Field(
        None, description="the VM's maintenance domain under the cluster's resolved unit "
        "(see GET /v1/topology `maintenance_domain`): \"UD 3\" (availability sets), "
        "\"zone 2\" (zonal), \"FD 1\" (Flexible scale sets); null when its VM did not "
        "report it, or when the cluster mixes deployments and the policy names no unit")


def where_of(info: VMPlacement) -> Where:
    return Where(fd=info.fd, ud=info.ud, zone=info.zone, scale_set=info.scale_set,
                 flexible=info.flexible)


def placements(view: ClusterView) -> dict[str, VMPlacement]:
    """Every known VM's placement: the live registration wins over the last known state."""
    return {**view.vm_states, **view.registrations}


def groups_by_vm(groups: Iterable[Group]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for group in sorted(groups, key=lambda g: g.name):
        for vm in dict.fromkeys(group.members):
            out.setdefault(vm, []).append(group.name)
    return out


def decisions_by_vm(decisions: Mapping[str, Decision]) -> dict[str, list[Decision]]:
    out: dict[str, list[Decision]] = {}
    for d in decisions.values():
        for vm in d.reserved:
            out.setdefault(vm, []).append(d)
    return out


def per_view(fn: Callable[[ClusterView], T]) -> Callable[[ClusterView], T]:
    """Memoize a derivation for the latest mirror generation of each mirror: readers
    (dashboards, scripts, 50 clients at once) share one computation per change."""
    last: dict[int, tuple[int, T]] = {}
    lock = threading.Lock()

    @functools.wraps(fn)
    def cached(view: ClusterView) -> T:
        if not view.source:
            return fn(view)
        with lock:
            hit = last.get(view.source)
        if hit is not None and hit[0] == view.generation:
            return hit[1]
        value = fn(view)
        with lock:
            last[view.source] = (view.generation, value)
        return value

    return cached


@per_view
def cluster_domains(view: ClusterView) -> tuple[DomainMode | None, str]:
    """The cluster's maintenance unit under its policy, as the safety core resolves it
    (the mirror's own, kept per change of VMs or policy; else resolved over every known
    VM); (None, why) for a cluster that mixes deployments."""
    if view.domains is not None:
        return view.domains
    return resolve(view.policy.maintenance_domain,
                   ((name, where_of(info)) for name, info in placements(view).items()))


@per_view
def vm_rows(view: ClusterView) -> list[VMRow]:
    """Every known VM (last known state ∪ live registrations), sorted by name."""
    regs, states = view.registrations, view.vm_states
    decisions, events, drains = view.decisions, view.events, view.drains
    member_of = groups_by_vm(view.groups.values())
    by_vm = decisions_by_vm(decisions)
    mode, _ = cluster_domains(view)
    rows = []
    for name in sorted(set(regs) | set(states), key=natural_key):
        info = regs.get(name) or states[name]
        reserving = reserving_decision(name, decisions, events, by_vm)
        event = events.get(reserving.event_id) if reserving else None
        live = name in regs
        where = where_of(info)
        domain = domain_of(mode, where) if mode is not None else None
        rows.append(VMRow(
            name=name, fd=info.fd, ud=info.ud, zone=info.zone, location=info.location,
            address=info.address,
            scale_set=info.scale_set, live=live, groups=member_of.get(name, []),
            state=display_state(live, drains.get(name), reserving, event),
            reserved_by=reserving.event_id if reserving else None, drain=drains.get(name),
            kind=kind_of(where), maintenance_domain=str(domain) if domain else None))
    return rows


class CellVM(BaseModel):
    name: str
    state: VMDisplayState
    reserved_by: str | None = None
    zone: str = Field("", description="the VM's availability zone (\"\" when none)")
    kind: str = Field("", description="how the VM was deployed: zonal, flexible scale set "
                                      "or availability set")
    maintenance_domain: str | None = Field(
        None, description="the VM's maintenance domain (\"UD 3\", \"zone 2\", \"FD 1\"; "
                          "null when unknown), as in GET /v1/vms")


def cell_vm(row: VMRow) -> CellVM:
    return CellVM(name=row.name, state=row.state, reserved_by=row.reserved_by, zone=row.zone,
                  kind=row.kind, maintenance_domain=row.maintenance_domain)


class Cell(BaseModel):
    fd: int
    ud: int
    vms: list[CellVM]


class DomainCell(BaseModel):
    row: str
    """The row label: "FD 1" (or the scale set of a Flexible scale set)."""
    column: str
    """The maintenance domain: "UD 3", "zone 2", "FD 1"."""
    vms: list[CellVM]


class Topology(BaseModel):
    fds: list[int]
    uds: list[int]
    cells: list[Cell]
    """Every (fd, ud) pair of the grid, row by row (fd, then ud); empty cells included."""
    unplaced: list[CellVM] = []
    """VMs without a known fault or update domain."""
    maintenance_domain: DomainMode | None = Field(
        None, description="the cluster's maintenance domain: update_domain (availability "
        "sets), zone (zonal VMs) or fault_domain (regional Flexible scale sets), from the "
        "policy or, when it says auto, from the VMs; null when the cluster mixes "
        "deployments (see `maintenance_domain_problem`)")
    maintenance_domain_policy: DomainMode = Field(
        DomainMode.AUTO, description="the policy's `maintenance_domain` (auto or a unit)")
    maintenance_domain_problem: str = Field(
        "", description="why `maintenance_domain` is null: which VMs mix which deployments, "
        "and what to set; every admission is held meanwhile")
    columns: list[str] = Field(
        default_factory=list, description="the domain grid's columns: the maintenance "
        "domains (\"UD 3\", \"zone 2\", \"FD 1\"); in a mixed cluster each VM's own")
    rows: list[str] = Field(
        default_factory=list, description="the domain grid's rows: fault domains (\"FD 0\"; "
        "in a zonal cluster a cell is that FD within the column's zone), or for a Flexible "
        "scale set, whose columns are its FDs, the scale sets")
    grid: list[DomainCell] = Field(
        default_factory=list, description="every (row, column) cell of the domain grid, row "
        "by row; empty cells included; a VM whose fault domain is unknown is in row \"FD ?\"")
    grid_unplaced: list[CellVM] = Field(
        default_factory=list, description="VMs without a known maintenance domain (no "
                                          "column in the domain grid)")


def _natural_mode(where: Where) -> DomainMode:
    mode, _ = resolve(DomainMode.AUTO, [("", where)])
    return mode or DomainMode.UPDATE_DOMAIN


def _grid_place(row: VMRow, mode: DomainMode | None) -> tuple[str, str] | None:
    """(row, column) of a VM in the domain grid ("FD ?" when only its fault domain is
    unknown), or None when its maintenance domain is."""
    where = Where(fd=row.fd, ud=row.ud, zone=row.zone, scale_set=row.scale_set,
                  flexible=row.kind == "flexible scale set")
    unit = mode or _natural_mode(where)
    column = domain_of(unit, where)
    if column is None:
        return None
    if unit is DomainMode.FAULT_DOMAIN and mode is not None:
        return (row.scale_set or "no scale set"), str(column)
    return f"FD {row.fd if row.fd is not None else '?'}", str(column)


def topology(rows: Iterable[VMRow], mode: DomainMode | None = DomainMode.UPDATE_DOMAIN,
             problem: str = "", policy: DomainMode = DomainMode.AUTO) -> Topology:
    """The FD x UD grid (`fds`, `uds`, `cells`: kept as it was) and the domain grid
    (`columns` the maintenance domains of the resolved `mode`, `rows` the fault domains,
    or the scale sets when the fault domains are the columns)."""
    rows = list(rows)
    placed = [r for r in rows if r.fd is not None and r.ud is not None]
    fds = sorted({r.fd for r in placed if r.fd is not None})
    uds = sorted({r.ud for r in placed if r.ud is not None})
    grid: dict[tuple[int, int], list[CellVM]] = {(fd, ud): [] for fd in fds for ud in uds}
    for r in placed:
        assert r.fd is not None and r.ud is not None
        grid[(r.fd, r.ud)].append(cell_vm(r))
    where = {r.name: _grid_place(r, mode) for r in rows}
    labels = [p for p in where.values() if p is not None]
    row_labels = sorted({p[0] for p in labels}, key=natural_key)
    columns = sorted({p[1] for p in labels}, key=natural_key)
    domain_grid: dict[tuple[str, str], list[CellVM]] = {
        (row, column): [] for row in row_labels for column in columns}
    for r in rows:
        if (at := where[r.name]) is not None:
            domain_grid[at].append(cell_vm(r))
    return Topology(
        fds=fds, uds=uds,
        cells=[Cell(fd=fd, ud=ud, vms=vms) for (fd, ud), vms in grid.items()],
        unplaced=[cell_vm(r) for r in rows if r.fd is None or r.ud is None],
        maintenance_domain=mode, maintenance_domain_policy=policy,
        maintenance_domain_problem=problem, columns=columns, rows=row_labels,
        grid=[DomainCell(row=row, column=column, vms=vms)
              for (row, column), vms in domain_grid.items()],
        grid_unplaced=[cell_vm(r) for r in rows if where[r.name] is None])


@per_view
def topology_of(view: ClusterView) -> Topology:
    """The grids of GET /v1/topology and the dashboard, under the cluster's policy."""
    mode, problem = cluster_domains(view)
    return topology(vm_rows(view), mode, problem, view.policy.maintenance_domain)


# ---------------------------------------------------------------- groups


class GroupRow(BaseModel):
    name: str
    members: list[str]
    min_available: MinAvailable
    required: int
    """How many members must stay available (`min_available` resolved)."""
    live: int
    """Members whose agent is registered."""
    available: int
    """Members live, not drained and not reserved by an event: what the core counts."""
    ok: bool
    """available >= required."""
    unavailable: list[str]
    health_gate: str = ""
    source: str = ""


@per_view
def group_rows(view: ClusterView) -> list[GroupRow]:
    groups = sorted(view.groups.values(), key=lambda g: g.name)
    snap = Snapshot(now=0.0, policy=view.policy, vms=view.vm_views(), groups=groups,
                    events={}, decisions=view.decisions, drains=view.drains,
                    unreadable=Unreadable(drains=view.unreadable("drain")),
                    index=view.group_index)
    avail = Availability(snap)
    regs = view.registrations
    out = []
    for g in groups:
        members = list(dict.fromkeys(g.members))
        available = avail.available(g.name)
        out.append(GroupRow(
            name=g.name, members=members, min_available=g.min_available,
            required=g.required(), live=sum(1 for vm in members if vm in regs),
            available=available, ok=available >= g.required(),
            unavailable=[vm for vm in members if avail.down(vm)],
            health_gate=g.health_gate, source=g.source))
    return out


# ---------------------------------------------------------------- events


class EventRow(BaseModel):
    event_id: str
    state: DecisionState
    """Our decision's state; `new` while the leader has not decided yet."""
    active: bool
    """Not over yet: not restored, not cancelled with its VMs released."""
    reason: str = ""
    code: DecisionCode | None = None
    """The decision's stable code (what alerts and scripts branch on); None before the
    leader decided."""
    dry_run: bool = False
    """Decided under the dry-run policy: nothing was drained nor acknowledged."""
    forced: bool = False
    """The platform started it without our acknowledgement (kept after the event ends)."""
    at_risk: bool = False
    """Cannot finish before its NotBefore without help: failed, or held for a reason that
    is not our own budget, while the platform has not started it."""
    event_type: EventType | None = None
    status: PlatformStatus | None = None
    resources: list[str] = []
    not_before: float | None = None
    operator_hold: str = ""
    """The operator's hold reason (from the override, even before the leader applies it)."""
    hold_by: str = ""
    """Who placed the operator hold (audit name), when there is one."""
    hold_at: float | None = None
    force_reason: str = ""
    force_skip_drain: bool = False
    """The operator's force also skips the drain."""
    retries: int = 0
    """Drain retries so far (automatic and operator)."""
    retry_pending: bool = False
    """An operator retry was asked for and the leader has not acted on it yet."""
    event: PlatformEvent | None = None
    decision: Decision | None = None
    ack: AckRecord | None = None
    override: Override | None = None


def is_active(event: PlatformEvent | None, decision: Decision | None) -> bool:
    if decision is None:
        return event is not None and event.status is not PlatformStatus.GONE
    if decision.state is S.RESTORED:
        return False
    return not (decision.state is S.CANCELLED and not decision.reserved)


def event_row(event_id: str, view: ClusterView) -> EventRow | None:
    event = view.events.get(event_id)
    decision = view.decisions.get(event_id)
    if event is None and decision is None:
        return None
    override = view.overrides.get(event_id)
    hold = override.hold if override else (decision.operator_hold if decision else "")
    force = override.force if override else (decision.force_reason if decision else "")
    return EventRow(
        event_id=event_id, state=decision.state if decision else S.NEW,
        active=is_active(event, decision),
        reason=decision.reason if decision else "",
        code=decision.code if decision else None,
        dry_run=bool(decision and decision.dry_run),
        forced=bool(decision and was_forced(decision)),
        at_risk=bool(decision and at_risk(decision, event)),
        event_type=event.event_type if event else None,
        status=event.status if event else None,
        resources=list(event.resources) if event else list(decision.reserved if decision
                                                            else []),
        not_before=event.not_before if event else None,
        operator_hold=hold,
        hold_by=(override.by if override and override.hold else "") if hold else "",
        hold_at=(override.at if override and override.hold else None) if hold else None,
        force_reason=force,
        force_skip_drain=bool(force) and (override.skip_drain if override and override.force
                                          else bool(decision and decision.force_skip_drain)),
        retries=decision.retries if decision else 0,
        retry_pending=bool(override and decision and override.retry > decision.retry_seen),
        event=event, decision=decision, ack=view.acks.get(event_id), override=override)


@per_view
def event_rows(view: ClusterView) -> list[EventRow]:
    """Every event we know (platform view ∪ decisions), oldest sighting first."""
    rows = [row for eid in set(view.events) | set(view.decisions)
            if (row := event_row(eid, view)) is not None]

    def key(row: EventRow) -> tuple[float, str]:
        first = row.event.first_seen if row.event else 0.0
        return (first or (row.decision.state_since if row.decision else 0.0), row.event_id)

    return sorted(rows, key=key)


def state_counts(decisions: Iterable[Decision]) -> dict[str, int]:
    tally = Counter(d.state for d in decisions)
    return {state.value: tally.get(state, 0) for state in DecisionState}
