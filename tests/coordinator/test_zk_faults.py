"""The coordinator against ZooKeeper faults: node loss, quorum loss, suspension, expiry."""

from __future__ import annotations

import time

import pytest
from kazoo.client import KazooClient

from coordinator.config import CoordinatorConfig
from coordinator.node import CoordinatorNode
from coordinator.store import ensure_layout
from quorumgate_testbed.zkserver import ZooKeeperEnsemble, ZooKeeperServer
from registry.codec import encode
from registry.layout import Layout
from registry.records import DecisionState, Group
from registry.zk import make_client
from tests.coordinator.test_reconciler import decision, finish_drains, register, schedule
from tests.helpers import expire_session, wait_until

S = DecisionState


def passes(node: CoordinatorNode) -> float:
    return node.metrics.passes._value.get()


def start_node(hosts: str, cluster: str, identity: str = "c1",
               session_s: float = 4.0) -> CoordinatorNode:
    node = CoordinatorNode(CoordinatorConfig(cluster=cluster, zk_hosts=hosts, identity=identity,
                                             resync_s=0.1, zk_session_timeout_s=session_s))
    node.start(timeout=20)
    wait_until(lambda: node.reconciler.is_leader, 15, message="leadership")
    return node


@pytest.fixture
def setup(zk_cluster: str):
    """Register VMs and a group through a client of the given ZooKeeper."""
    clients: list[KazooClient] = []

    def make(hosts: str) -> tuple[KazooClient, Layout]:
        client = make_client(hosts, session_timeout_s=20)
        client.start(timeout=20)
        clients.append(client)
        layout = Layout(cluster=zk_cluster)
        ensure_layout(client, layout)
        for i in range(6):
            register(client, layout, f"vm-{i}", fd=0, ud=i % 3)
        client.create(layout.group("g"), encode(Group(name="g", members=["vm-0", "vm-1",
                                                                        "vm-2"])))
        return client, layout

    yield make
    for client in clients:
        client.stop()
        client.close()


@pytest.mark.ensemble
def test_one_node_of_three_lost_nothing_stops(zk_ensemble: ZooKeeperEnsemble, setup) -> None:
    client, layout = setup(zk_ensemble.hosts)
    node = start_node(zk_ensemble.hosts, layout.cluster)
    try:
        zk_ensemble.stop(zk_ensemble.leader())
        schedule(client, layout, "E1", ["vm-0"])
        wait_until(lambda: (d := decision(client, layout, "E1")) and d.state is S.DRAINING, 20)
        assert node.ready
    finally:
        node.stop()


@pytest.mark.ensemble
def test_quorum_lost_stops_decisions_and_resumes_cleanly(
        zk_ensemble: ZooKeeperEnsemble, setup) -> None:
    client, layout = setup(zk_ensemble.hosts)
    node = start_node(zk_ensemble.hosts, layout.cluster)
    try:
        schedule(client, layout, "E1", ["vm-0"])
        wait_until(lambda: (d := decision(client, layout, "E1")) and d.state is S.DRAINING, 20)
        finish_drains(client, layout)  # drained: the next pass would approve...
        zk_ensemble.stop(0)
        zk_ensemble.stop(1)  # ...but quorum is gone first, or soon after
        wait_until(lambda: not node.ready, 20, message="not ready without quorum")
        frozen = passes(node)
        time.sleep(1.5)
        assert passes(node) == frozen, "no decision pass while disconnected"
        zk_ensemble.start_node(0)
        wait_until(lambda: node.ready and node.reconciler.is_leader, 40)
        approved = wait_until(lambda: (d := decision(client, layout, "E1")) and
                              d.state is S.APPROVED and d, 20)
        assert approved.approval == 1
        assert [t.to for t in approved.history].count(S.DRAINING) == 1
    finally:
        node.stop()


def test_suspended_leader_stops_deciding_at_once(zk_server: ZooKeeperServer, setup) -> None:
    client, layout = setup(zk_server.hosts)
    node = start_node(zk_server.hosts, layout.cluster, session_s=6.0)
    try:
        wait_until(lambda: passes(node) > 3, 10)
        zk_server.pause()  # a partition: the server stops answering
        wait_until(lambda: not node.reconciler.connected, 10, message="suspended")
        frozen = passes(node)
        time.sleep(1.0)
        assert passes(node) == frozen, "a suspended leader must not decide"
        assert node.reconciler.is_leader, "still holding its node: it may resume"
        zk_server.resume()
        wait_until(lambda: passes(node) > frozen + 3, 15, message="resumed")
    finally:
        zk_server.resume()
        node.stop()


def test_expired_session_steps_down_and_campaigns_again(
        zk_server: ZooKeeperServer, setup) -> None:
    client, layout = setup(zk_server.hosts)
    node = start_node(zk_server.hosts, layout.cluster, session_s=4.0)
    try:
        fence_before = node.reconciler.election.lock.node
        expire_session(node.client, zk_server.hosts)  # server side: its election node goes
        wait_until(lambda: node.reconciler.is_leader and
                   node.reconciler.election.lock.node not in (None, fence_before), 30,
                   message="leader again with a new fence")
        schedule(client, layout, "E1", ["vm-0"])
        wait_until(lambda: (d := decision(client, layout, "E1")) and d.state is S.DRAINING, 20)
    finally:
        node.stop()
