"""The reconciler on a real ZooKeeper: decisions written, fencing, failover, bad records."""

from __future__ import annotations

import pytest
from kazoo.client import KazooClient

from coordinator.config import CoordinatorConfig
from coordinator.node import CoordinatorNode
from coordinator.safety import Change
from coordinator.store import (
    DecisionsRead,
    FencedWriter,
    WriteResult,
    ensure_layout,
    read_decisions,
)
from registry.codec import decode, encode
from registry.layout import Layout
from registry.records import (
    Decision,
    DecisionState,
    DrainRecord,
    DrainStatus,
    Group,
    PlatformEvent,
    PlatformStatus,
)
from registry.zk import make_client
from tests.coordinator.test_api_support import register, schedule
from tests.helpers import wait_until

S = DecisionState


def node(zk_hosts: str, layout: Layout, identity: str) -> CoordinatorNode:
    config = CoordinatorConfig(cluster=layout.cluster, zk_hosts=zk_hosts, identity=identity,
                               resync_s=0.1, zk_session_timeout_s=4)
    coordinator = CoordinatorNode(config)
    coordinator.start(timeout=15)
    return coordinator


def decision(zk: KazooClient, layout: Layout, eid: str) -> Decision | None:
    if not zk.exists(layout.decision(eid)):
        return None
    return decode(Decision, zk.get(layout.decision(eid))[0])


def finish_drains(zk: KazooClient, layout: Layout) -> None:
    for vm in zk.get_children(layout.drains):
        data, stat = zk.get(layout.drain(vm))
        rec = decode(DrainRecord, data)
        if rec and rec.status is DrainStatus.PENDING:
            zk.set(layout.drain(vm), encode(rec.model_copy(update={"status": DrainStatus.DRAINED})),
                   version=stat.version)


@pytest.fixture
def cluster(zk: KazooClient, zk_layout: Layout) -> Layout:
    ensure_layout(zk, zk_layout)
    for i in range(6):
        register(zk, zk_layout, f"vm-{i}", fd=0, ud=i % 3)
    zk.create(zk_layout.group("g"), encode(Group(name="g", members=["vm-0", "vm-1", "vm-2"],
                                                 min_available=2)), makepath=True)
    return zk_layout


def test_leader_drains_then_approves(zk_hosts: str, zk: KazooClient, cluster: Layout) -> None:
    coordinator = node(zk_hosts, cluster, "c1")
    try:
        wait_until(lambda: coordinator.reconciler.is_leader, 10)
        schedule(zk, cluster, "E1", ["vm-0", "vm-3"])
        schedule(zk, cluster, "E2", ["vm-1"], not_before=3e9)
        got = wait_until(lambda: (d := decision(zk, cluster, "E1")) and
                         d.state is S.DRAINING and d, 10)
        assert got.reserved == ["vm-0", "vm-3"]
        held = wait_until(lambda: (d := decision(zk, cluster, "E2")) and d.state is S.HELD
                          and d, 10)
        assert "update domains" in held.reason
        finish_drains(zk, cluster)
        approved = wait_until(lambda: (d := decision(zk, cluster, "E1")) and
                              d.state is S.APPROVED and d, 10)
        assert approved.acker == "vm-0" and approved.approval == 1
        audit = zk.get_children(cluster.audit)
        assert len(audit) >= 3
    finally:
        coordinator.stop()


def test_malformed_records_fail_closed_until_removed(zk_hosts: str, zk: KazooClient,
                                                     cluster: Layout) -> None:
    """A group that does not decode might constrain any VM: nothing is admitted, with a
    reason naming it, until an operator fixes or removes it (issue 12.5)."""
    zk.create(cluster.event("BAD1"), b"{not json", makepath=True)
    zk.create(cluster.event("BAD2"), b'{"event_id": "BAD2", "event_type": "Nope"}')
    zk.create(cluster.group("broken"), b'{"name": "broken", "members": ["vm-4"], '
                                       b'"min_available": "75%"}')
    zk.set(cluster.base + "/config", b"garbage") if zk.exists(cluster.base + "/config") else (
        zk.create(cluster.base + "/config", b"garbage"))
    coordinator = node(zk_hosts, cluster, "c1")
    try:
        schedule(zk, cluster, "E1", ["vm-0"])
        held = wait_until(lambda: (d := decision(zk, cluster, "E1")) and d.state is S.HELD
                          and d, 10)
        assert held.code.value == "unreadable_record" and "group broken" in held.reason
        assert decision(zk, cluster, "BAD1") is None
        assert coordinator.reconciler.is_leader
        zk.delete(cluster.group("broken"))
        wait_until(lambda: (d := decision(zk, cluster, "E1")) and d.state is S.DRAINING, 10)
    finally:
        coordinator.stop()


def test_malformed_drain_and_decision_records_block_and_are_never_overwritten(
        zk_hosts: str, zk: KazooClient, cluster: Layout) -> None:
    """A decision that does not decode may hold any reservation; a drain record that does
    not decode may mean a drained VM. Both fail closed, loudly, until removed."""
    zk.create(cluster.drain("vm-0"), b"garbage", makepath=True)
    zk.create(cluster.decision("E1"), b"{also garbage", makepath=True)
    coordinator = node(zk_hosts, cluster, "c1")
    try:
        schedule(zk, cluster, "E1", ["vm-0"])
        schedule(zk, cluster, "E2", ["vm-3"])
        held = wait_until(lambda: (d := decision(zk, cluster, "E2")) and d.state is S.HELD
                          and d, 10)
        assert "decision record of event E1 does not decode" in held.reason
        assert zk.get(cluster.decision("E1"))[0] == b"{also garbage", "never overwritten"
        zk.delete(cluster.decision("E1"))
        wait_until(lambda: (d := decision(zk, cluster, "E2")) and d.state is S.DRAINING, 10)
        e1 = wait_until(lambda: (d := decision(zk, cluster, "E1")) and d.state is S.HELD
                        and d, 10)
        assert "drain record of vm-0 does not decode" in e1.reason
        assert zk.get(cluster.drain("vm-0"))[0] == b"garbage"
        zk.delete(cluster.drain("vm-0"))
        got = wait_until(lambda: (d := decision(zk, cluster, "E1")) and
                         d.state is S.DRAINING and d, 10)
        assert got.reserved == ["vm-0"]
    finally:
        coordinator.stop()


def test_deposed_leader_cannot_write(zk_hosts: str, zk: KazooClient, cluster: Layout) -> None:
    """A write fenced by an election znode that is gone fails, whatever it carries."""
    fence = cluster.election + "/gone-node"
    read = read_decisions(zk, cluster)
    change = Change(None, Decision(event_id="E9", state=S.APPROVED, acker="vm-0", approval=1))
    writer = FencedWriter(zk, cluster, fence, "test", read, {})
    assert writer.write(change, 0.0) is WriteResult.FENCED
    assert not zk.exists(cluster.decision("E9"))
    zk.create(fence, b"", ephemeral=True)
    writer = FencedWriter(zk, cluster, fence, "test", read_decisions(zk, cluster), {})
    assert writer.write(change, 0.0) is WriteResult.WRITTEN


def test_stale_view_of_decisions_cannot_write(zk: KazooClient, cluster: Layout) -> None:
    fence = cluster.election + "/me"
    zk.create(fence, b"", ephemeral=True)
    stale = read_decisions(zk, cluster)
    fresh = FencedWriter(zk, cluster, fence, "a", read_decisions(zk, cluster), {})
    assert fresh.write(Change(None, Decision(event_id="E1", state=S.DRAINING,
                                             reserved=["vm-0"])), 0.0) is WriteResult.WRITTEN
    late = FencedWriter(zk, cluster, fence, "b", stale, {})
    assert late.write(Change(None, Decision(event_id="E2", state=S.DRAINING,
                                            reserved=["vm-1"])), 0.0) is WriteResult.STALE
    assert isinstance(stale, DecisionsRead)


def test_failover_resumes_without_second_drain_or_approval(
        zk_hosts: str, zk: KazooClient, cluster: Layout) -> None:
    first = node(zk_hosts, cluster, "c1")
    wait_until(lambda: first.reconciler.is_leader, 10)
    second = node(zk_hosts, cluster, "c2")
    try:
        schedule(zk, cluster, "E1", ["vm-0"])
        wait_until(lambda: (d := decision(zk, cluster, "E1")) and d.state is S.DRAINING, 10)
        drain_stat = zk.get(cluster.drain("vm-0"))[1]
        assert not second.reconciler.is_leader
        first.stop()  # the leader dies mid-drain
        wait_until(lambda: second.reconciler.is_leader, 15)
        finish_drains(zk, cluster)
        approved = wait_until(lambda: (d := decision(zk, cluster, "E1")) and
                              d.state is S.APPROVED and d, 10)
        assert approved.approval == 1
        history = [t.to for t in approved.history]
        assert history.count(S.DRAINING) == 1 and history.count(S.APPROVED) == 1
        after = zk.get(cluster.drain("vm-0"))[1]
        assert after.version == drain_stat.version + 1, "only the agent's one status write"
    finally:
        second.stop()


def test_lost_vm_counts_unavailable(zk_hosts: str, zk: KazooClient, cluster: Layout) -> None:
    other = make_client(zk_hosts)
    other.start(timeout=10)
    other.delete(cluster.vm("vm-1"))  # vm-1's agent is gone
    other.stop()
    coordinator = node(zk_hosts, cluster, "c1")
    try:
        schedule(zk, cluster, "E1", ["vm-0"])
        held = wait_until(lambda: (d := decision(zk, cluster, "E1")) and d.state is S.HELD
                          and d, 10)
        assert "group g" in held.reason
    finally:
        coordinator.stop()


def test_command_provider_membership_change_changes_a_decision(
        zk_hosts: str, zk: KazooClient, cluster: Layout, tmp_path) -> None:
    """A provider's group is written by the leader; a membership change alters decisions."""
    from coordinator.providers import ProviderConfig

    groups_file = tmp_path / "groups.json"
    groups_file.write_text('[{"name": "live", "members": ["vm-3", "vm-4"], '
                           '"min_available": 2}]')
    provider = ProviderConfig(id="file", kind="command", interval_s=0.2,
                              command=f"cat {groups_file}")
    config = CoordinatorConfig(cluster=cluster.cluster, zk_hosts=zk_hosts, identity="c1",
                               resync_s=0.1, providers=[provider])
    coordinator = CoordinatorNode(config)
    coordinator.start(timeout=15)
    try:
        wait_until(lambda: zk.exists(cluster.group("live")), 10)
        schedule(zk, cluster, "E1", ["vm-3"])
        held = wait_until(lambda: (d := decision(zk, cluster, "E1")) and d.state is S.HELD
                          and d, 10)
        assert "group live" in held.reason
        groups_file.write_text('[{"name": "live", "members": ["vm-3", "vm-4", "vm-5"], '
                               '"min_available": 2}]')
        wait_until(lambda: (d := decision(zk, cluster, "E1")) and d.state is S.DRAINING, 10)
        stored = decode(Group, zk.get(cluster.group("live"))[0])
        assert stored.source == "provider:file" and stored.members == ["vm-3", "vm-4", "vm-5"]
    finally:
        coordinator.stop()


def test_failover_mid_ack_sends_no_second_approval(
        zk_hosts: str, zk: KazooClient, cluster: Layout) -> None:
    """The leader dies while the acker is sending: the new one neither re-approves nor
    revokes; the event starting is recorded as ours."""
    from registry.records import AckRecord, AckState

    first = node(zk_hosts, cluster, "c1")
    wait_until(lambda: first.reconciler.is_leader, 10)
    second = node(zk_hosts, cluster, "c2")
    try:
        schedule(zk, cluster, "E1", ["vm-0"])
        wait_until(lambda: (d := decision(zk, cluster, "E1")) and d.state is S.DRAINING, 10)
        finish_drains(zk, cluster)
        approved = wait_until(lambda: (d := decision(zk, cluster, "E1")) and
                              d.state is S.APPROVED and d, 10)
        zk.create(cluster.ack("E1"), encode(AckRecord(
            event_id="E1", approval=approved.approval, vm="vm-0", state=AckState.SENDING)),
            makepath=True)
        first.stop()  # mid-ack
        wait_until(lambda: second.reconciler.is_leader, 15)
        data, stat = zk.get(cluster.event("E1"))
        started = decode(PlatformEvent, data).model_copy(update={
            "status": PlatformStatus.STARTED, "started_at": 1.0, "not_before": None})
        zk.set(cluster.event("E1"), encode(started), version=stat.version)
        done = wait_until(lambda: (d := decision(zk, cluster, "E1")) and
                          d.state is S.STARTED and d, 10)
        assert done.approval == approved.approval and done.ours
        assert [t.to for t in done.history].count(S.APPROVED) == 1
    finally:
        second.stop()


def test_dry_run_decides_and_records_but_never_drains_or_acknowledges(
        zk_hosts: str, zk: KazooClient, cluster: Layout) -> None:
    from coordinator.store import put_policy
    from registry.records import Policy

    put_policy(zk, cluster, Policy(dry_run=True))
    coordinator = node(zk_hosts, cluster, "c1")
    try:
        schedule(zk, cluster, "E1", ["vm-0"])
        got = wait_until(lambda: (d := decision(zk, cluster, "E1")) and
                         d.state is S.APPROVED and d, 10)
        assert got.acker is None and "dry-run" in got.reason
        assert "would acknowledge via vm-0" in got.reason
        assert zk.get_children(cluster.drains) == []
        assert len(zk.get_children(cluster.audit)) >= 3, "recorded and audited all the same"
    finally:
        coordinator.stop()


def test_finished_events_are_forgotten_after_the_retention(
        zk: KazooClient, cluster: Layout) -> None:
    from coordinator.store import forget_finished
    from registry.records import AckRecord, AckState

    fence = cluster.election + "/me"
    zk.create(fence, b"", ephemeral=True)
    for eid, state, updated, status in (("OLD", S.RESTORED, 100.0, PlatformStatus.GONE),
                                        ("NEW", S.RESTORED, 900.0, PlatformStatus.GONE),
                                        ("LIVE", S.STARTED, 100.0, PlatformStatus.STARTED)):
        schedule(zk, cluster, eid, ["vm-0"])
        data, stat = zk.get(cluster.event(eid))
        zk.set(cluster.event(eid), encode(decode(PlatformEvent, data).model_copy(
            update={"status": status})), version=stat.version)
        zk.create(cluster.decision(eid), encode(Decision(event_id=eid, state=state,
                                                         updated_at=updated)))
        zk.create(cluster.ack(eid), encode(AckRecord(event_id=eid, approval=1, vm="vm-0",
                                                     state=AckState.ACCEPTED)), makepath=True)
    events = {eid: decode(PlatformEvent, zk.get(cluster.event(eid))[0])
              for eid in ("OLD", "NEW", "LIVE")}
    gone = forget_finished(zk, cluster, fence, read_decisions(zk, cluster), events, 500.0)
    assert gone == ["OLD"]
    assert not zk.exists(cluster.decision("OLD")) and not zk.exists(cluster.event("OLD"))
    assert not zk.exists(cluster.ack("OLD"))
    assert zk.exists(cluster.decision("NEW")) and zk.exists(cluster.decision("LIVE"))
    zk.delete(fence)
    assert forget_finished(zk, cluster, fence, read_decisions(zk, cluster), events,
                           5000.0) == [], "a deposed leader forgets nothing"
