"""Acknowledgements: approved → acks/<id> claim → POST StartRequests → outcome; once."""

from __future__ import annotations

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError

from agent.ack import Acknowledger
from agent.imds import ImdsClient
from imds_sim.testing import Emulator
from registry.codec import encode
from registry.layout import Layout
from registry.records import (
    AckRecord,
    AckState,
    Decision,
    DecisionState,
    PlatformEvent,
    PlatformStatus,
)
from tests.helpers import wait_until

from .conftest import AgentFactory, record


def _approve(zk: KazooClient, layout: Layout, event_id: str, acker: str, approval: int,
             approved: list[str] | None = None) -> None:
    """The leader's approval, covering `approved` (default: the relayed Resources)."""
    if approved is None:
        event = record(zk, layout.event(event_id), PlatformEvent)
        approved = list(event.resources) if event else [acker]
    data = encode(Decision(event_id=event_id, state=DecisionState.APPROVED, acker=acker,
                           approval=approval, reserved=list(approved), approved=approved))
    path = layout.decision(event_id)
    if zk.exists(path):
        zk.set(path, data)
    else:
        zk.create(path, data, makepath=True)


def _ack(zk: KazooClient, layout: Layout, event_id: str) -> AckRecord | None:
    return record(zk, layout.ack(event_id), AckRecord)


def test_ack_starts_event_for_all_resources(zk: KazooClient, zk_layout: Layout,
                                            emulator: Emulator,
                                            make_agent: AgentFactory) -> None:
    make_agent("vm-0")  # an observer in the same availability set, not affected
    acker = make_agent("vm-1")
    make_agent("vm-4")
    event = emulator.schedule(ud=1, type="Reboot", downtime_s=600, impact_delay_s=0)
    eid = event["event_id"]
    wait_until(lambda: record(zk, zk_layout.event(eid), PlatformEvent), 10)
    # drained and ready, but not approved: nothing is sent
    zk.create(zk_layout.decision(eid), encode(Decision(event_id=eid, state=DecisionState.READY,
                                                       acker="vm-1", approval=1)), makepath=True)
    wait_until(lambda: acker.metrics.value("quorumgate_agent_polls_total") >= 4, 10)
    assert emulator.event(eid)["acks"] == []

    _approve(zk, zk_layout, eid, "vm-1", 1)
    ack = wait_until(lambda: (a := _ack(zk, zk_layout, eid)) and a.state != AckState.SENDING
                     and a, 10, message="the acknowledgement outcome")
    assert (ack.state, ack.approval, ack.vm) == (AckState.ACCEPTED, 1, "vm-1")
    view = emulator.event(eid)
    assert view["status"] == "Started" and view["start_cause"] == "ack"
    assert [a["vm"] for a in view["acks"]] == ["vm-1"] and view["acks"][0]["effective"]
    assert ack.incarnation == view["acks"][0]["incarnation"]
    for vm in event["resources"]:  # both VMs of UD 1 went down, not only the acker
        assert emulator.vm(vm)["state"] == "down"
    rec = wait_until(lambda: (r := record(zk, zk_layout.event(eid), PlatformEvent))
                     and r.status == PlatformStatus.STARTED and r, 10)
    assert rec.started_at is not None
    assert acker.metrics.value("quorumgate_agent_acks_total", {"result": "accepted"}) == 1


def test_at_most_once_per_approval_across_restarts(zk: KazooClient, zk_layout: Layout,
                                                   emulator: Emulator,
                                                   make_agent: AgentFactory) -> None:
    agent = make_agent("vm-2")
    eid = emulator.schedule(ud=2, type="Freeze", downtime_s=1)["event_id"]
    wait_until(lambda: record(zk, zk_layout.event(eid), PlatformEvent), 10)
    # A previous process of this agent claimed approval 1 and died (maybe mid-POST)
    zk.create(zk_layout.ack(eid), encode(AckRecord(event_id=eid, approval=1, vm="vm-2",
                                                   state=AckState.SENDING)), makepath=True)
    _approve(zk, zk_layout, eid, "vm-2", 1)
    polls = agent.metrics.value("quorumgate_agent_polls_total")
    wait_until(lambda: agent.metrics.value("quorumgate_agent_polls_total") >= polls + 4, 10)
    assert emulator.event(eid)["acks"] == [] and emulator.event(eid)["status"] == "Scheduled"

    # The leader renews the approval: exactly one acknowledgement for approval 2
    _approve(zk, zk_layout, eid, "vm-2", 2)
    wait_until(lambda: (a := _ack(zk, zk_layout, eid)) and a.approval == 2
               and a.state == AckState.ACCEPTED, 10)
    assert len(emulator.event(eid)["acks"]) == 1

    # Restart the agent once its VM is back: the claim for approval 2 stands
    agent.stop()
    wait_until(lambda: emulator.vm("vm-2")["state"] == "up", 10)
    agent = make_agent("vm-2")
    wait_until(lambda: agent.metrics.value("quorumgate_agent_polls_total") >= 4, 10)
    assert len(emulator.event(eid)["acks"]) == 1

    # Even a second acker instance asked to send approval 2 directly refuses
    imds = ImdsClient(emulator.vm_url("vm-2"))
    twin = Acknowledger(zk, zk_layout, "vm-2", imds, emulator.clock)
    assert twin.acknowledge(eid, 2, imds.scheduled_events().incarnation) is None
    assert len(emulator.event(eid)["acks"]) == 1


def test_stale_incarnation_is_refetched_and_retried(zk: KazooClient, zk_layout: Layout,
                                                    emulator: Emulator) -> None:
    emulator.control.patch("/settings", json={"strict_incarnation": True}).raise_for_status()
    eid = emulator.schedule(ud=0, type="Reboot")["event_id"]
    imds = ImdsClient(emulator.vm_url("vm-0"))
    doc = imds.scheduled_events()
    emulator.schedule(ud=0, type="Freeze")  # the document moves on under the acker
    results: list[str] = []
    acker = Acknowledger(zk, zk_layout, "vm-0", imds, emulator.clock, retries=2,
                         on_ack=results.append)
    ack = acker.acknowledge(eid, 1, doc.incarnation)
    assert ack is not None and ack.state == AckState.ACCEPTED
    assert ack.incarnation > doc.incarnation and results == ["accepted"]
    assert [a["incarnation"] for a in emulator.event(eid)["acks"]] == [ack.incarnation]


def test_a_refused_post_is_not_retried_for_resources_the_approval_does_not_cover(
        zk: KazooClient, zk_layout: Layout, emulator: Emulator) -> None:
    """Issue 12.1 at the retry: the platform grew the event between the acker's fetch and
    its POST and refuses the stale incarnation; the retry would start vm-3 undrained."""
    emulator.control.patch("/settings", json={"strict_incarnation": True}).raise_for_status()
    eid = emulator.schedule(vms=["vm-0"], type="Reboot")["event_id"]
    imds = ImdsClient(emulator.vm_url("vm-0"))
    doc = imds.scheduled_events()
    emulator.reshape(eid, ["vm-0", "vm-3"])
    results: list[str] = []
    acker = Acknowledger(zk, zk_layout, "vm-0", imds, emulator.clock, retries=2,
                         on_ack=results.append)
    _approve(zk, zk_layout, eid, "vm-0", 1, approved=["vm-0"])
    acker.check(doc)  # the document it fetched before the platform changed the event
    ack = _ack(zk, zk_layout, eid)
    assert ack is not None and ack.state == AckState.REJECTED, ack
    assert "vm-3" in ack.detail and "does not cover" in ack.detail
    assert results == ["rejected"]
    assert emulator.event(eid)["acks"] == []  # the refused POST started nothing
    assert emulator.event(eid)["status"] == "Scheduled"


def test_rejection_is_recorded_with_reason(zk: KazooClient, zk_layout: Layout,
                                           emulator: Emulator) -> None:
    eid = emulator.schedule(ud=0, type="Reboot")["event_id"]
    imds = ImdsClient(emulator.vm_url("vm-1"))
    emulator.fault(kind="status", status=400, vm="vm-1", method="POST")
    acker = Acknowledger(zk, zk_layout, "vm-1", imds, emulator.clock, retries=1)
    ack = acker.acknowledge(eid, 1, imds.scheduled_events().incarnation)
    assert ack is not None and ack.state == AckState.REJECTED and "HTTP 400" in ack.detail
    assert emulator.event(eid)["status"] == "Scheduled"
    assert acker.acknowledge(eid, 1, 0) is None  # never twice for one approval


def test_claim_and_revocation_cannot_both_land(zk: KazooClient, zk_layout: Layout,
                                               emulator: Emulator) -> None:
    eid = emulator.schedule(ud=0, type="Reboot")["event_id"]
    imds = ImdsClient(emulator.vm_url("vm-0"))
    incarnation = imds.scheduled_events().incarnation
    acker = Acknowledger(zk, zk_layout, "vm-0", imds, emulator.clock)
    path = zk_layout.decision(eid)
    revoked = encode(Decision(event_id=eid, state=DecisionState.READY, approval=1))

    # the leader revokes after the agent read the approval: the claim fails, nothing sent
    _approve(zk, zk_layout, eid, "vm-0", 1)
    data, stat = zk.get(path)
    zk.set(path, revoked, version=stat.version)
    assert acker.acknowledge(eid, 1, incarnation, decision_read=(data, stat.version)) is None
    assert zk.exists(zk_layout.ack(eid)) is None and emulator.event(eid)["acks"] == []

    # the agent claims first: the leader's revocation from its older view fails
    _approve(zk, zk_layout, eid, "vm-0", 2)
    data, stat = zk.get(path)
    ack = acker.acknowledge(eid, 2, incarnation, decision_read=(data, stat.version))
    assert ack is not None and ack.state == AckState.ACCEPTED
    with pytest.raises(BadVersionError):
        zk.set(path, revoked, version=stat.version)
    assert zk.get(path)[0] == data  # the claim rewrote the decision unchanged


def test_no_acknowledgement_while_imds_lists_a_vm_the_approval_does_not_cover(
        zk: KazooClient, zk_layout: Layout, emulator: Emulator,
        make_agent: AgentFactory) -> None:
    """Issue 12.1: the approval covered what was reserved and drained; Resources grew."""
    acker = make_agent("vm-1")
    event = emulator.schedule(ud=1, type="Reboot", downtime_s=60)
    eid = event["event_id"]
    assert sorted(event["resources"]) == ["vm-1", "vm-4"]
    wait_until(lambda: record(zk, zk_layout.event(eid), PlatformEvent), 10)
    _approve(zk, zk_layout, eid, "vm-1", 1, approved=["vm-1"])
    polls = acker.metrics.value("quorumgate_agent_polls_total")
    wait_until(lambda: acker.metrics.value("quorumgate_agent_polls_total") >= polls + 4, 10)
    assert emulator.event(eid)["acks"] == [] and _ack(zk, zk_layout, eid) is None
    _approve(zk, zk_layout, eid, "vm-1", 2, approved=["VM-1", "vm-4"])  # any case
    ack = wait_until(lambda: (a := _ack(zk, zk_layout, eid)) and a.state != AckState.SENDING
                     and a, 10, message="the acknowledgement of the covering approval")
    assert (ack.state, ack.approval) == (AckState.ACCEPTED, 2)
    assert len(emulator.event(eid)["acks"]) == 1


def test_a_claim_without_outcome_is_resolved_from_imds(zk: KazooClient, zk_layout: Layout,
                                                       emulator: Emulator,
                                                       make_agent: AgentFactory) -> None:
    """Issue 12.7: a claim whose commit answer was lost stays `sending` forever no more."""
    still = emulator.schedule(ud=2, type="Freeze", downtime_s=1)["event_id"]
    ran = emulator.schedule(ud=0, type="Freeze", downtime_s=600, notice_s=900)["event_id"]
    now = emulator.clock.now()
    # vm-1 acks UD 0's event as an observer (its own VM stays up through the event)
    for eid, vm in ((still, "vm-2"), (ran, "vm-1")):
        zk.create(zk_layout.ack(eid), encode(AckRecord(event_id=eid, approval=1, vm=vm,
                                                       state=AckState.SENDING, at=now)),
                  makepath=True)
    agents = [make_agent("vm-2"), make_agent("vm-1")]
    for eid, vm in ((still, "vm-2"), (ran, "vm-1")):
        wait_until(lambda e=eid: record(zk, zk_layout.event(e), PlatformEvent), 10)
        _approve(zk, zk_layout, eid, vm, 1)
    # another VM's acknowledgement starts `ran` (as if our lost POST had gone out)
    emulator.sim.acknowledge("vm-4", [ran], None, "2020-07-01", emulator.clock.now())
    done = wait_until(lambda: (a := _ack(zk, zk_layout, ran)) and a.state != AckState.SENDING
                      and a, 10, message="the claim on a started event to resolve")
    assert done.state == AckState.ACCEPTED and "resolved from IMDS" in done.detail
    assert _ack(zk, zk_layout, still).state == AckState.SENDING, "too early to tell"
    late = wait_until(lambda: (a := _ack(zk, zk_layout, still)) and a.state != AckState.SENDING
                      and a, 60 / agents[0].clock.speed + 10,
                      message="the claim on a still-scheduled event to resolve")
    assert late.state == AckState.REJECTED and "never took effect" in late.detail
    assert emulator.event(still)["acks"] == [], "resolving never sends"
