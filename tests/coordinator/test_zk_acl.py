"""ZooKeeper digest ACLs: with `zk_auth`, nobody without the credentials changes anything
under the cluster's path (reading stays open, for monitoring)."""

from __future__ import annotations

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError

from coordinator.config import CoordinatorConfig
from coordinator.node import CoordinatorNode
from registry.codec import encode
from registry.layout import Layout
from registry.records import EventType, PlatformEvent, PlatformStatus
from registry.zk import make_client

AUTH = "quorumgate:s3cret-digest"


def test_unauthenticated_clients_cannot_change_the_cluster(zk_hosts: str,
                                                           zk_layout: Layout) -> None:
    node = CoordinatorNode(CoordinatorConfig(cluster=zk_layout.cluster, zk_hosts=zk_hosts,
                                             zk_auth=AUTH, identity="acl"))
    node.start(timeout=15)
    authed = make_client(zk_hosts, auth=AUTH)
    authed.start(timeout=10)
    stranger = KazooClient(hosts=zk_hosts)
    stranger.start(timeout=10)
    try:
        event = encode(PlatformEvent(event_id="E1", event_type=EventType.REBOOT,
                                     status=PlatformStatus.SCHEDULED, resources=["vm-0"]))
        authed.create(zk_layout.event("E1"), event)  # an agent with the credentials can
        assert stranger.get(zk_layout.event("E1"))[0] == event, "reads stay open"
        attempts = [
            lambda: stranger.create(zk_layout.event("E2"), event),
            lambda: stranger.set(zk_layout.event("E1"), b"{}"),
            lambda: stranger.delete(zk_layout.event("E1")),
            lambda: stranger.create(f"{zk_layout.base}/intruder", b""),
            lambda: stranger.create(zk_layout.decision("E1"), b"{}"),
            lambda: stranger.create(zk_layout.config, b"{}"),
        ]
        for attempt in attempts:
            with pytest.raises(NoAuthError):
                attempt()
    finally:
        stranger.stop()
        stranger.close()
        node.stop()
        authed.delete(zk_layout.base, recursive=True)
        authed.stop()
        authed.close()
