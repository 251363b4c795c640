"""A VM taken down by its event comes back, re-registers and restores."""

from __future__ import annotations

from pathlib import Path

from kazoo.client import KazooClient

from imds_sim.testing import Emulator
from registry.codec import encode
from registry.layout import Layout
from registry.records import (
    Decision,
    DecisionState,
    DrainRecord,
    DrainStatus,
    DrainWant,
    PlatformEvent,
    PlatformStatus,
    VMRegistration,
)
from tests.helpers import wait_until

from .conftest import SPEED, AgentFactory, record


def test_rebooted_vm_reregisters_and_restores(zk: KazooClient, zk_layout: Layout,
                                              emulator: Emulator, make_agent: AgentFactory,
                                              tmp_path: Path) -> None:
    log = tmp_path / "restore.log"
    make_agent("vm-0")  # sees the event through, in the same availability set
    agent = make_agent(
        "vm-1", offline_after_failures=2, imds_max_attempts=2,
        drain_hook={"command": "true"},
        restore_hook={"command": f"echo \"$QG_ACTION $QG_EVENT_ID\" >> {log}; echo ready"})
    first = record(zk, zk_layout.vm("vm-1"), VMRegistration)
    downtime = 3.0 * SPEED  # three real seconds
    eid = emulator.schedule(ud=1, type="Reboot", downtime_s=downtime)["event_id"]
    wait_until(lambda: record(zk, zk_layout.event(eid), PlatformEvent), 10)

    # the coordinator's side, played by the test: drain, approve, later ask for a restore
    zk.create(zk_layout.drain("vm-1"), encode(DrainRecord(vm="vm-1", event_id=eid,
                                                          want=DrainWant.DRAINED)))
    wait_until(lambda: record(zk, zk_layout.drain("vm-1"), DrainRecord).status
               == DrainStatus.DRAINED, 10)
    covered = record(zk, zk_layout.event(eid), PlatformEvent).resources
    zk.create(zk_layout.decision(eid), encode(Decision(
        event_id=eid, state=DecisionState.APPROVED, acker="vm-1", approval=1,
        reserved=covered, approved=covered)), makepath=True)
    wait_until(lambda: emulator.vm("vm-1")["state"] == "down", 10, message="the reboot")

    # IMDS stops answering: the agent reports its VM gone (session closed) ...
    wait_until(lambda: zk.exists(zk_layout.vm("vm-1")) is None, 10,
               message="vm-1's registration to go while it is down")
    assert not agent.health()["ok"]
    zk.set(zk_layout.drain("vm-1"), encode(DrainRecord(vm="vm-1", event_id=eid,
                                                       want=DrainWant.RESTORED)))
    # ... and once the VM is up again it registers afresh and runs its restore hook
    wait_until(lambda: emulator.vm("vm-1")["state"] == "up", downtime / SPEED + 10)
    drain = wait_until(lambda: (r := record(zk, zk_layout.drain("vm-1"), DrainRecord))
                       and r.status == DrainStatus.RESTORED and r, 15,
                       message="the restore hook to report")
    assert "ready" in drain.detail
    assert log.read_text().splitlines() == [f"restore {eid}"]
    again = record(zk, zk_layout.vm("vm-1"), VMRegistration)
    assert again is not None and again.registered_at > first.registered_at
    wait_until(lambda: agent.health()["ok"], 5, message="the agent to report healthy")
    gone = wait_until(lambda: (r := record(zk, zk_layout.event(eid), PlatformEvent))
                      and r.status == PlatformStatus.GONE and r, 10)
    assert gone.started_at is not None and "vm-1" in gone.seen_by


def test_agent_restarted_after_reboot_restores(zk: KazooClient, zk_layout: Layout,
                                               emulator: Emulator, make_agent: AgentFactory,
                                               tmp_path: Path) -> None:
    """The real-VM path: the agent dies with its VM and a fresh process restores."""
    log = tmp_path / "restore.log"
    hooks = {"restore_hook": {"command": f"echo \"$QG_ACTION\" >> {log}"}}
    agent = make_agent("vm-2", **hooks)
    eid = emulator.schedule(ud=2, type="Redeploy", downtime_s=1.0 * SPEED,
                            started=True)["event_id"]  # a hardware failure: no notice
    wait_until(lambda: emulator.vm("vm-2")["state"] == "down", 10)
    agent.stop()
    assert zk.exists(zk_layout.vm("vm-2")) is None
    zk.create(zk_layout.drain("vm-2"), encode(DrainRecord(
        vm="vm-2", event_id=eid, want=DrainWant.RESTORED)), makepath=True)
    wait_until(lambda: emulator.vm("vm-2")["state"] == "up", 10)
    make_agent("vm-2", **hooks)
    wait_until(lambda: record(zk, zk_layout.drain("vm-2"), DrainRecord).status
               == DrainStatus.RESTORED, 10)
    assert log.read_text().splitlines() == ["restore"]
