"""/v1/placement and /v1/placement/audit over real HTTP on a real ZooKeeper mirror."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kazoo.client import KazooClient

from coordinator.store import ensure_layout
from registry.layout import Layout
from tests.coordinator.test_api_support import (
    Api,
    foreign_leader,
    put_group,
    register,
    running,
)
from tests.helpers import wait_until


@pytest.fixture
def api(zk_hosts: str, zk: KazooClient, zk_layout: Layout) -> Iterator[Api]:
    """15 VMs in Azure's round-robin layout (FD i%3, UD i%5); vm-14 is not live."""
    ensure_layout(zk, zk_layout)
    for i in range(15):
        register(zk, zk_layout, f"vm-{i}", fd=i % 3, ud=i % 5, live=i != 14)
    put_group(zk, zk_layout, "good", ["vm-0", "vm-1", "vm-2"], min_available=2)
    put_group(zk, zk_layout, "bad", ["vm-5", "vm-10", "vm-11"], min_available=2)
    with foreign_leader(zk, zk_layout), running(zk_hosts, zk_layout) as served:
        wait_until(lambda: len(served.viewer.get("/v1/vms").json()) == 15, 10)
        yield served


def test_placement_spreads_and_balances(api: Api) -> None:
    response = api.viewer.post("/v1/placement", json={"replicas": 3, "group": "new"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["spread"] == 3 and body["fault_domains"] == 3 and body["update_domains"] == 3
    assert not {"vm-0", "vm-1", "vm-2", "vm-5", "vm-10", "vm-11", "vm-14"} & set(body["vms"]), (
        "prefers VMs that carry no group yet, never a dead one")


def test_placement_errors_are_clear_4xx(api: Api) -> None:
    too_many = api.viewer.post("/v1/placement", json={"replicas": 15})
    assert too_many.status_code == 422
    assert "only 14 live VMs are eligible" in too_many.json()["detail"]
    bad = api.viewer.post("/v1/placement", json={"replicas": 0})
    assert bad.status_code == 422 and "replicas" in bad.json()["detail"]
    unknown = api.viewer.post("/v1/placement", json={"replicas": 3, "holding": ["nope"]})
    assert unknown.status_code == 422 and "unknown VMs: nope" in unknown.json()["detail"]
    assert api.client(None).post("/v1/placement", json={"replicas": 3}).status_code == 401


def test_audit_names_the_bad_group_and_its_fix(api: Api) -> None:
    rows = api.viewer.get("/v1/placement/audit").json()
    assert [r["group"] for r in rows] == ["bad", "good"]
    bad = rows[0]
    assert not bad["ud_safe"] and not bad["fd_safe"]
    assert bad["fix"]["vm"] == "vm-5"
    assert rows[1]["ud_safe"] and rows[1]["fd_safe"]
