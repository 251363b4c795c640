"""/v1/placement and /v1/placement/audit over real HTTP on a real ZooKeeper mirror: an
availability set, a zonal cluster, a Flexible scale set, and a mixed cluster (409)."""

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
from tests.coordinator.test_domains_api import flex_cluster, mixed_cluster, zonal_cluster
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


def test_audit_names_update_domains_in_an_availability_set(api: Api) -> None:
    rows = api.viewer.get("/v1/placement/audit").json()
    bad = rows[0]
    assert bad["maintenance_domain"] == "update_domain"
    assert [b["unit"] for b in bad["blocking"]] == ["UD 0", "FD 2"]
    assert bad["verdict"].startswith("blocks a rollout: losing UD 0 (vm-10, vm-5)")
    placed = api.viewer.post("/v1/placement", json={"replicas": 3}).json()
    assert placed["maintenance_domain"] == "update_domain"
    assert all(d.startswith("UD ") for d in placed["domains"].values())
    assert all(f.startswith("FD ") and " in zone" not in f for f in placed["faults"].values())


# ---------------------------------------------------------------- zonal, flex, mixed


@pytest.fixture(params=["zonal", "flex"])
def other(request: pytest.FixtureRequest, zk_hosts: str, zk: KazooClient,
          zk_layout: Layout) -> Iterator[tuple[str, Api]]:
    """A zonal cluster (zones 1-3 x FDs 0-1) or a Flexible scale set (FDs 0-2 x 2), no
    update domains, as their agents register them."""
    build = zonal_cluster if request.param == "zonal" else flex_cluster
    count = len(build(zk, zk_layout))
    with foreign_leader(zk, zk_layout), running(zk_hosts, zk_layout) as served:
        wait_until(lambda: len(served.viewer.get("/v1/vms").json()) == count, 10)
        yield request.param, served


def test_placement_spreads_over_the_maintenance_domain(other: tuple[str, Api]) -> None:
    kind, api = other
    unit = {"zonal": ("zone", "zone"), "flex": ("fault_domain", "FD")}[kind]
    body = api.viewer.post("/v1/placement", json={"replicas": 3}).raise_for_status().json()
    assert body["maintenance_domain"] == unit[0] and body["maintenance_domains"] == 3
    assert len({d for d in body["domains"].values()}) == 3
    assert all(d.startswith(unit[1] + " ") for d in body["domains"].values())
    rows = api.viewer.get("/v1/placement/audit").raise_for_status().json()
    assert [r["group"] for r in rows if not r["ud_safe"]] == ["crowded"]
    first = rows[0]["blocking"][0]
    assert first["kind"] == "update" and first["unit"] == f"{unit[1]} {first['domain']}"


def test_mixed_cluster_answers_409_with_the_reason(zk_hosts: str, zk: KazooClient,
                                                   zk_layout: Layout) -> None:
    mixed_cluster(zk, zk_layout)
    with foreign_leader(zk, zk_layout), running(zk_hosts, zk_layout) as served:
        wait_until(lambda: len(served.viewer.get("/v1/vms").json()) == 4, 10)
        for response in (served.viewer.post("/v1/placement", json={"replicas": 2}),
                         served.viewer.get("/v1/placement/audit")):
            assert response.status_code == 409, response.text
            detail = response.json()["detail"]
            assert "mixes deployments (availability set: as-0, as-1; zonal: zonal-1, " \
                   "zonal-2)" in detail and "maintenance_domain" in detail
