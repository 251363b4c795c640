"""Races of issue 12 that need a real ZooKeeper: a lagging mirror against an acker's
claim, a provider's group when a member's session ends, and fenced provider writes."""

from __future__ import annotations

import json
import time

from kazoo.client import KazooClient

from agent.ack import Acknowledger
from coordinator.config import CoordinatorConfig
from coordinator.node import CoordinatorNode
from coordinator.providers import ProviderConfig
from coordinator.safety import decide
from coordinator.store import (
    ClusterCache,
    WriteResult,
    build_snapshot,
    ensure_layout,
    put_fenced,
    put_policy,
    read_decisions,
)
from registry.clock import RealClock
from registry.codec import decode, encode
from registry.layout import Layout
from registry.records import (
    AckState,
    Decision,
    DecisionCode,
    DecisionState,
    Group,
    Policy,
)
from registry.zk import make_client
from tests.coordinator.test_api_support import put_group, register, schedule
from tests.helpers import wait_until

S = DecisionState


def test_a_claim_is_never_missed_because_the_mirror_lags(zk: KazooClient,
                                                        zk_layout: Layout) -> None:
    """Issue 12.4: the decision is read after the acker's claim bumped it, the mirror has
    not seen the claim yet; the leader must neither revoke nor re-approve."""
    layout = zk_layout
    ensure_layout(zk, layout)
    for i in range(3):
        register(zk, layout, f"vm-{i}", fd=i, ud=i)
    put_group(zk, layout, "g", ["vm-0", "vm-1", "vm-2"], 2)
    schedule(zk, layout, "E1", ["vm-0"])
    approved = Decision(event_id="E1", state=S.APPROVED, reserved=["vm-0"], drain=[],
                        approved=["vm-0"], acker="vm-0", approval=1, state_since=time.time())
    zk.create(layout.decision("E1"), encode(approved))
    put_policy(zk, layout, Policy(paused=True))  # any new check refuses: revocation bait
    cache = ClusterCache(zk, layout)
    cache.start(timeout=10)
    try:
        wait_until(lambda: cache.view().policy.paused, 10)
        stale = cache.view()  # no claim in it
        data, stat = zk.get(layout.decision("E1"))
        acker = Acknowledger(zk, layout, "vm-0", imds=None, clock=RealClock())  # type: ignore[arg-type]
        assert acker._claim("E1", 1, 0, (data, stat.version), {}) is True
        assert "E1" not in stale.acks
        read = read_decisions(zk, layout)
        assert read.acks["E1"].state is AckState.SENDING
        changes = decide(build_snapshot(stale, read, time.time() + 3600))
        mine = [c.decision for c in changes if c.decision.event_id == "E1"]
        assert all(d.state is S.APPROVED and d.approval == 1 for d in mine), mine
    finally:
        cache.close()


def test_provider_group_keeps_a_member_whose_session_ended(zk_hosts: str, zk: KazooClient,
                                                          zk_layout: Layout) -> None:
    """Issue 12.3 end to end: 4 Patroni-style members, one's session ends; the group stays
    at 4 (majority 3), so a second member cannot be approved."""
    layout = zk_layout
    ensure_layout(zk, layout)
    members_path = f"{layout.base}/service/pg/members"
    zk.ensure_path(members_path)
    sessions = {}
    for i in range(4):
        register(zk, layout, f"vm-{i}", fd=i % 2, ud=i)
        member = make_client(zk_hosts)
        member.start(timeout=10)
        member.create(f"{members_path}/m{i}", json.dumps(
            {"conn_url": f"postgres://10.0.0.{i}:5432/x"}).encode(), ephemeral=True)
        sessions[i] = member
    provider = ProviderConfig(id="pg", kind="zookeeper", path=members_path, group="pg",
                              member_to_vm="host", interval_s=0.2)
    config = CoordinatorConfig(cluster=layout.cluster, zk_hosts=zk_hosts, identity="c1",
                               resync_s=0.1, zk_session_timeout_s=4, providers=[provider])
    node = CoordinatorNode(config)
    node.start(timeout=15)
    try:
        def group() -> Group | None:
            data = zk.get(layout.group("pg"))[0] if zk.exists(layout.group("pg")) else None
            return decode(Group, data) if data else None

        wait_until(lambda: (g := group()) and len(g.members) == 4, 10)
        sessions[1].stop()  # member m1's session ends; its VM is down too
        sessions[1].close()
        zk.delete(layout.vm("vm-1"))
        time.sleep(1.0)  # several provider polls
        assert group().members == ["vm-0", "vm-1", "vm-2", "vm-3"]
        schedule(zk, layout, "E2", ["vm-2"])
        held = wait_until(lambda: (d := _decision(zk, layout, "E2")) and d.state is S.HELD
                          and d, 10)
        assert held.code is DecisionCode.UNSAFE_GROUP and "leaving 2 of 4" in held.reason
    finally:
        node.stop()
        for client in sessions.values():
            client.stop()
            client.close()


def test_a_deposed_leader_cannot_publish_a_group(zk: KazooClient, zk_layout: Layout) -> None:
    ensure_layout(zk, zk_layout)
    put_group(zk, zk_layout, "g", ["vm-0", "vm-1", "vm-2"], 2)
    shrunk = Group(name="g", members=["vm-0", "vm-1"], min_available=2)
    result = put_fenced(zk, zk_layout.election + "/gone-node", zk_layout.group("g"), shrunk, 0)
    assert result is WriteResult.FENCED
    assert decode(Group, zk.get(zk_layout.group("g"))[0]).members == ["vm-0", "vm-1", "vm-2"]
    fence = zk.create(zk_layout.election + "/n-", b"", ephemeral=True, sequence=True)
    assert put_fenced(zk, fence, zk_layout.group("g"), shrunk, 7) is WriteResult.CONFLICT
    assert put_fenced(zk, fence, zk_layout.group("g"), shrunk, 0) is WriteResult.WRITTEN


def _decision(zk: KazooClient, layout: Layout, eid: str) -> Decision | None:
    if not zk.exists(layout.decision(eid)):
        return None
    return decode(Decision, zk.get(layout.decision(eid))[0])
