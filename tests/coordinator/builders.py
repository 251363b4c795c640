"""Small builders for safety-core snapshots, shared by the unit, property and simulation tests."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from coordinator.safety import Change, Snapshot, VMView
from registry.records import (
    AckRecord,
    AckState,
    DrainRecord,
    DrainStatus,
    DrainWant,
    EventType,
    Group,
    PlatformEvent,
    PlatformStatus,
    Policy,
)

NOW = 1_700_000_000.0


def grid(fds: int = 3, uds: int = 5, dead: Iterable[str] = ()) -> dict[str, VMView]:
    """One VM per (fd, ud): vm-0 .. vm-(fds*uds-1), VM i in UD i % uds and FD i // uds."""
    dead = set(dead)
    out = {}
    for i in range(fds * uds):
        name = f"vm-{i}"
        out[name] = VMView(name=name, fd=i // uds, ud=i % uds, live=name not in dead)
    return out


def group(name: str, *members: str, min_available: int | str = 2, gate: str = "") -> Group:
    return Group(name=name, members=list(members), min_available=min_available,
                 health_gate=gate)


def event(eid: str, resources: Sequence[str], *, status: PlatformStatus = PlatformStatus.SCHEDULED,
          not_before: float | None = NOW + 900, kind: EventType = EventType.REBOOT,
          seen_by: Sequence[str] | None = None, started_at: float | None = None,
          gone_at: float | None = None) -> PlatformEvent:
    return PlatformEvent(event_id=eid, event_type=kind, status=status,
                         resources=list(resources), not_before=not_before,
                         seen_by=list(resources if seen_by is None else seen_by),
                         started_at=started_at, gone_at=gone_at)


def snapshot(vms: dict[str, VMView], groups: Sequence[Group], events: Sequence[PlatformEvent],
             policy: Policy | None = None, now: float = NOW) -> Snapshot:
    return Snapshot(now=now, policy=policy or Policy(), vms=vms, groups=list(groups),
                    events={e.event_id: e for e in events})


def apply(snap: Snapshot, changes: Sequence[Change]) -> Snapshot:
    """The snapshot the next pass would read after the shell wrote `changes`."""
    decisions = dict(snap.decisions)
    drains = dict(snap.drains)
    for change in changes:
        decisions[change.decision.event_id] = change.decision
        for rec in change.drains:
            drains[rec.vm] = rec
    return replace(snap, decisions=decisions, drains=drains)


def agents_finish_drains(snap: Snapshot, status: DrainStatus | None = None) -> Snapshot:
    """Every pending drain or restore request completes (as live agents would do)."""
    drains = {}
    for vm, rec in snap.drains.items():
        view = snap.vms.get(vm)
        if rec.status in (DrainStatus.PENDING, DrainStatus.RUNNING) and view and view.live:
            done = status or (DrainStatus.DRAINED if rec.want is DrainWant.DRAINED
                              else DrainStatus.RESTORED)
            rec = rec.model_copy(update={"status": done})
        drains[vm] = rec
    return replace(snap, drains=drains)


def ack(snap: Snapshot, eid: str, state: AckState = AckState.ACCEPTED) -> Snapshot:
    decision = snap.decisions[eid]
    rec = AckRecord(event_id=eid, approval=decision.approval, vm=decision.acker or "?",
                    state=state, detail="stale incarnation" if state is AckState.REJECTED else "")
    return replace(snap, acks={**snap.acks, eid: rec})


def platform(snap: Snapshot, eid: str, status: PlatformStatus, *,
             confirmed: bool = True) -> Snapshot:
    """The platform moves the event; a Gone is `confirmed` by the event's own VMs over
    the grace period (as the relay reports it once they stop listing it)."""
    ev = snap.events[eid]
    update: dict[str, object] = {"status": status}
    if status is PlatformStatus.STARTED:
        update |= {"started_at": snap.now, "not_before": None}
    if status is PlatformStatus.GONE:
        grace = snap.policy.gone_grace_s if confirmed else 0.0
        update |= {"gone_at": snap.now - grace, "gone_by": list(ev.resources)}
    return replace(snap, events={**snap.events, eid: ev.model_copy(update=update)})


def at(snap: Snapshot, now: float) -> Snapshot:
    return replace(snap, now=now)


def set_live(snap: Snapshot, vm: str, live: bool) -> Snapshot:
    return replace(snap, vms={**snap.vms, vm: replace(snap.vms[vm], live=live)})


def drain_status(snap: Snapshot, vm: str) -> tuple[DrainWant, DrainStatus] | None:
    rec: DrainRecord | None = snap.drains.get(vm)
    return (rec.want, rec.status) if rec else None
