"""Event relay: many agents, one record; status only moves forward."""

from __future__ import annotations

from kazoo.client import KazooClient

from agent.relay import SPARE_OBSERVERS
from imds_sim.testing import Emulator
from registry.codec import encode
from registry.layout import Layout
from registry.records import EventType, PlatformEvent, PlatformStatus
from tests.helpers import wait_until

from .conftest import SPEED, AgentFactory, record


def _event(zk: KazooClient, layout: Layout, event_id: str) -> PlatformEvent | None:
    return record(zk, layout.event(event_id), PlatformEvent)


def test_observers_converge_on_one_record(zk: KazooClient, zk_layout: Layout,
                                          emulator: Emulator, make_agent: AgentFactory) -> None:
    names = [f"vm-{i}" for i in range(6)]
    for name in names:
        make_agent(name, wait=False)
    event = emulator.schedule(ud=2, type="Freeze", description="host update")
    eid = event["event_id"]

    def all_seen() -> PlatformEvent | None:
        rec = _event(zk, zk_layout, eid)
        return rec if rec is not None and {"vm-2", "vm-5"} <= set(rec.seen_by) and len(
            rec.seen_by) == 2 + SPARE_OBSERVERS else None

    rec = wait_until(all_seen, 20, message="the Resources' agents and the spares to report")
    # Resources name only UD 2; every VM of the set sees the event, but beyond the
    # Resources' own agents only SPARE_OBSERVERS list themselves (no herd on one record)
    assert sorted(rec.resources) == ["vm-2", "vm-5"]
    assert set(rec.seen_by) <= set(names)
    assert rec.event_type == EventType.FREEZE and rec.status == PlatformStatus.SCHEDULED
    assert rec.not_before == event["not_before"] and rec.description == "host update"
    assert rec.duration_s == event["duration_s"]
    assert zk.get_children(zk_layout.events) == [eid]


def test_life_cycle_scheduled_started_gone(zk: KazooClient, zk_layout: Layout,
                                          emulator: Emulator, make_agent: AgentFactory) -> None:
    make_agent("vm-0")
    make_agent("vm-1")
    # vm-1 and vm-4 go down for 60 virtual seconds (1 s real) once started
    event = emulator.schedule(ud=1, type="Reboot", downtime_s=60, notice_s=60)
    eid = event["event_id"]
    first = wait_until(lambda: _event(zk, zk_layout, eid), 10)
    assert first.status == PlatformStatus.SCHEDULED and first.started_at is None
    started = wait_until(
        lambda: (r := _event(zk, zk_layout, eid)) and r.status == PlatformStatus.STARTED and r,
        60 / SPEED + 10, message="the event to start at NotBefore")
    assert started.not_before is None and started.started_at is not None
    assert started.incarnation > first.incarnation
    gone = wait_until(
        lambda: (r := _event(zk, zk_layout, eid)) and r.status == PlatformStatus.GONE and r,
        15, message="the event to be marked Gone")
    assert gone.gone_at is not None and gone.gone_at >= gone.started_at
    assert emulator.event(eid)["status"] == "Completed"


def test_status_never_goes_backwards(zk: KazooClient, zk_layout: Layout, emulator: Emulator,
                                     make_agent: AgentFactory) -> None:
    started = emulator.schedule(ud=0, type="Freeze")
    gone = emulator.schedule(ud=0, type="Reboot")
    back = emulator.schedule(ud=0, type="Redeploy")
    later = emulator.clock.now() + 3600
    # Other agents already saw these further along than this VM's document shows: one
    # Started, one Gone after any document vm-0 can fetch now, and one Gone before it
    for eid, status, gone_at in ((started["event_id"], PlatformStatus.STARTED, None),
                                 (gone["event_id"], PlatformStatus.GONE, later),
                                 (back["event_id"], PlatformStatus.GONE, 1.0)):
        zk.create(zk_layout.event(eid), encode(PlatformEvent(
            event_id=eid, event_type=EventType.FREEZE, status=status, resources=["vm-0"],
            incarnation=1, seen_by=["vm-9"], started_at=1.0 if status is PlatformStatus.STARTED
            else None, gone_at=gone_at, gone_by=["vm-9"] if gone_at else [])),
            makepath=True)
    make_agent("vm-0")

    def merged() -> bool:
        recs = [_event(zk, zk_layout, e["event_id"]) for e in (started, gone, back)]
        return all(r is not None and "vm-0" in r.seen_by for r in recs)

    wait_until(merged, 10, message="vm-0 to merge its view")
    a = _event(zk, zk_layout, started["event_id"])
    b = _event(zk, zk_layout, gone["event_id"])
    c = _event(zk, zk_layout, back["event_id"])
    assert a.status == PlatformStatus.STARTED and a.started_at == 1.0
    assert b.status == PlatformStatus.GONE, "a document older than the Gone proves nothing"
    assert c.status == PlatformStatus.SCHEDULED and c.gone_at is None, (
        "listed in a document fetched after the Gone: it was never over")


def test_restarted_agent_marks_events_that_ended_while_it_was_away(
        zk: KazooClient, zk_layout: Layout, emulator: Emulator,
        make_agent: AgentFactory) -> None:
    agent = make_agent("vm-1")
    event = emulator.schedule(ud=1, type="Reboot", downtime_s=30)
    eid = event["event_id"]
    wait_until(lambda: _event(zk, zk_layout, eid), 10)
    agent.stop()
    emulator.control.delete(f"/events/{eid}").raise_for_status()  # cancelled meanwhile
    make_agent("vm-1")
    rec = wait_until(
        lambda: (r := _event(zk, zk_layout, eid)) and r.status == PlatformStatus.GONE and r, 10)
    assert rec.started_at is None  # gone without starting: cancelled


def test_returning_vm_confirms_a_gone_that_observers_reported_while_it_was_down(
        zk: KazooClient, zk_layout: Layout, emulator: Emulator,
        make_agent: AgentFactory) -> None:
    """The coordinator waits for the event's own VMs to confirm Gone; a VM that was down
    while spare observers reported it must still add its word when it comes back."""
    zk.create(zk_layout.event("E0"), encode(PlatformEvent(
        event_id="E0", event_type=EventType.REBOOT, status=PlatformStatus.GONE,
        resources=["vm-0", "vm-3"], seen_by=["vm-1"], started_at=1.0, gone_at=2.0,
        gone_by=["vm-1"])), makepath=True)
    make_agent("vm-0")
    rec = wait_until(lambda: (r := _event(zk, zk_layout, "E0")) and "vm-0" in r.gone_by
                     and r, 10, message="vm-0 to confirm the Gone")
    assert rec.status == PlatformStatus.GONE and rec.gone_at == 2.0
