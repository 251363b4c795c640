"""Issue 12.1 end to end: the platform adds a VM to an event's Resources while quorumgate
drains the first one. Real agents over HTTP to the emulator, a real coordinator leader,
a real ZooKeeper: the newcomer is reserved and drained before anything is acknowledged,
and the acknowledgement covers exactly what was drained."""

from __future__ import annotations

from pathlib import Path

from kazoo.client import KazooClient

from coordinator.config import CoordinatorConfig
from coordinator.node import CoordinatorNode
from coordinator.store import ensure_layout, put_record
from imds_sim.testing import Emulator
from registry.layout import Layout
from registry.records import Decision, DecisionState, DrainRecord, DrainStatus, Group
from tests.helpers import wait_until

from .conftest import AgentFactory, record

S = DecisionState


def test_a_vm_added_to_resources_is_drained_before_the_acknowledgement(
        zk_hosts: str, zk: KazooClient, zk_layout: Layout, emulator: Emulator,
        make_agent: AgentFactory, tmp_path: Path) -> None:
    ensure_layout(zk, zk_layout)
    # vm-0 and vm-3 share UD 0; taking both leaves 2 of 4 (min 2): safe, once drained
    put_record(zk, zk_layout.group("g"), Group(name="g", members=["vm-0", "vm-3", "vm-1",
                                                                  "vm-2"], min_available=2))
    journal = tmp_path / "drains"
    hook = {"command": f"sleep 2; echo $QG_VM $QG_EVENT_ID >> {journal}", "timeout_s": 600}
    for i in range(6):
        make_agent(f"vm-{i}", drain_hook=hook)
    node = CoordinatorNode(CoordinatorConfig(cluster=zk_layout.cluster, zk_hosts=zk_hosts,
                                             identity="c1", resync_s=0.1,
                                             zk_session_timeout_s=4,
                                             clock=emulator.clock.spec), emulator.clock)
    node.start(timeout=15)
    try:
        event = emulator.schedule(vms=["vm-0"], type="Reboot", downtime_s=30)
        eid = event["event_id"]

        def decision() -> Decision | None:
            return record(zk, zk_layout.decision(eid), Decision)

        wait_until(lambda: (d := decision()) and d.state is S.DRAINING, 15,
                   message="the drain of vm-0 to start")
        emulator.reshape(eid, ["vm-0", "vm-3"])  # the platform adds vm-3

        acked = wait_until(lambda: (d := decision()) and d.state in (
            S.ACKNOWLEDGED, S.STARTED, S.COMPLETED, S.RESTORED) and d, 40,
            message="the grown event to be drained and acknowledged")
        assert set(acked.approved) == {"vm-0", "vm-3"}, "the approval covers what drained"
        assert any(t.reason.startswith("Resources grew to include vm-3")
                   for t in acked.history), [t.reason for t in acked.history]
        view = emulator.event(eid)
        assert view["start_cause"] == "ack" and len(view["acks"]) == 1
        ack_at = view["acks"][0]["at"]
        drained = journal.read_text().split()
        assert drained.count("vm-3") == 1 and drained.count("vm-0") == 1
        for vm in ("vm-0", "vm-3"):  # both drained before the acknowledgement
            rec = record(zk, zk_layout.drain(vm), DrainRecord)
            assert rec is not None and rec.event_id == eid
            if rec.status is DrainStatus.DRAINED:
                assert rec.updated_at <= ack_at
        approval = next(t for t in reversed(acked.history) if t.to is S.APPROVED)
        assert approval.at <= ack_at
    finally:
        node.stop()
