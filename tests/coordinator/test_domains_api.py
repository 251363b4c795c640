"""Maintenance domains in the REST API over real HTTP on a real ZooKeeper: VM rows, the
topology grid, the status, placement and its audit for a zonal cluster, a regional
Flexible scale set and an availability set; a mixed cluster answers 409 with the reason
until the policy names the unit.

The cluster builders here register VMs as the agents do (a zone, a scale set, no update
domain where IMDS reports none); the CLI, topology and dashboard tests use them too."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kazoo.client import KazooClient

from coordinator.store import ensure_layout
from registry.codec import encode
from registry.layout import Layout
from registry.records import VMRegistration, VMState
from tests.coordinator.test_api_support import Api, foreign_leader, put_group, running
from tests.helpers import wait_until

LOCATION = "westeurope"


def put_vm(zk: KazooClient, layout: Layout, name: str, *, fd: int | None, ud: int | None,
           zone: str = "", scale_set: str = "", address: str = "", live: bool = True) -> None:
    """What an agent registers: the ephemeral `vms/<vm>` (when live) and `vm-state/<vm>`."""
    fields = dict(name=name, fd=fd, ud=ud, zone=zone, scale_set=scale_set, address=address,
                  location=LOCATION)
    if live:
        zk.create(layout.vm(name), encode(VMRegistration(**fields)), ephemeral=True,
                  makepath=True)
    zk.create(layout.vm_state(name), encode(VMState(**fields)), makepath=True)


def zonal_cluster(zk: KazooClient, layout: Layout, prefix: str = "z") -> list[str]:
    """z<Z>-<F>: zones 1-3, FDs 0-1 in each (no update domain, as IMDS reports for zonal
    VMs); address 10.2.<Z>.<F+4>. Groups: `spread` (one per zone), `crowded` (two in
    zone 1, min 2)."""
    ensure_layout(zk, layout)
    names = []
    for zone in (1, 2, 3):
        for fd in (0, 1):
            name = f"{prefix}{zone}-{fd}"
            put_vm(zk, layout, name, fd=fd, ud=None, zone=str(zone),
                   address=f"10.2.{zone}.{fd + 4}")
            names.append(name)
    put_group(zk, layout, "spread", [f"{prefix}1-0", f"{prefix}2-0", f"{prefix}3-0"],
              min_available=2)
    put_group(zk, layout, "crowded", [f"{prefix}1-0", f"{prefix}1-1", f"{prefix}2-1"],
              min_available=2)
    return names


def flex_cluster(zk: KazooClient, layout: Layout, prefix: str = "f") -> list[str]:
    """f<F>-<i>: a regional Flexible scale set `ss-web`, FDs 0-2, two instances in each,
    no update domain; address 10.3.<F>.<i+4>. Groups: `spread` (one per FD), `crowded`
    (two in FD 0, min 2)."""
    ensure_layout(zk, layout)
    names = []
    for fd in (0, 1, 2):
        for i in (0, 1):
            name = f"{prefix}{fd}-{i}"
            put_vm(zk, layout, name, fd=fd, ud=None, scale_set="ss-web",
                   address=f"10.3.{fd}.{i + 4}")
            names.append(name)
    put_group(zk, layout, "spread", [f"{prefix}0-0", f"{prefix}1-0", f"{prefix}2-0"],
              min_available=2)
    put_group(zk, layout, "crowded", [f"{prefix}0-0", f"{prefix}0-1", f"{prefix}1-1"],
              min_available=2)
    return names


def mixed_cluster(zk: KazooClient, layout: Layout) -> list[str]:
    """Two availability-set VMs (as-0: FD 0 UD 0, as-1: FD 1 UD 1) and two zonal ones
    (zonal-1, zonal-2 in zones 1 and 2, FD 0): no common maintenance unit."""
    ensure_layout(zk, layout)
    put_vm(zk, layout, "as-0", fd=0, ud=0, address="10.4.0.4")
    put_vm(zk, layout, "as-1", fd=1, ud=1, address="10.4.0.5")
    put_vm(zk, layout, "zonal-1", fd=0, ud=None, zone="1", address="10.4.1.4")
    put_vm(zk, layout, "zonal-2", fd=0, ud=None, zone="2", address="10.4.2.4")
    put_group(zk, layout, "g", ["as-0", "zonal-1", "zonal-2"], min_available=2)
    return ["as-0", "as-1", "zonal-1", "zonal-2"]


def follower(zk_hosts: str, zk: KazooClient, layout: Layout, vms: int) -> Iterator[Api]:
    """A replica that does not lead (what the test writes stays as written), once its
    mirror holds the `vms` VMs."""
    with foreign_leader(zk, layout), running(zk_hosts, layout) as api:
        wait_until(lambda: len(api.node.cache.view().vm_states) == vms, 10,
                   message="the mirror")
        yield api


@pytest.fixture
def zonal(zk_hosts: str, zk: KazooClient, zk_layout: Layout) -> Iterator[Api]:
    yield from follower(zk_hosts, zk, zk_layout, len(zonal_cluster(zk, zk_layout)))


@pytest.fixture
def flex(zk_hosts: str, zk: KazooClient, zk_layout: Layout) -> Iterator[Api]:
    yield from follower(zk_hosts, zk, zk_layout, len(flex_cluster(zk, zk_layout)))


@pytest.fixture
def mixed(zk_hosts: str, zk: KazooClient, zk_layout: Layout) -> Iterator[Api]:
    yield from follower(zk_hosts, zk, zk_layout, len(mixed_cluster(zk, zk_layout)))


# ---------------------------------------------------------------- zonal


def test_zonal_rows_grid_and_status(zonal: Api) -> None:
    c = zonal.viewer
    vms = {vm["name"]: vm for vm in c.get("/v1/vms").raise_for_status().json()}
    assert len(vms) == 6
    row = vms["z2-1"]
    assert (row["zone"], row["kind"], row["maintenance_domain"]) == ("2", "zonal", "zone 2")
    assert (row["fd"], row["ud"]) == (1, None)
    topo = c.get("/v1/topology").raise_for_status().json()
    assert topo["maintenance_domain"] == "zone" and topo["maintenance_domain_policy"] == "auto"
    assert topo["maintenance_domain_problem"] == ""
    assert topo["columns"] == ["zone 1", "zone 2", "zone 3"]
    assert topo["rows"] == ["FD 0", "FD 1"]
    cells = {(cell["row"], cell["column"]): [v["name"] for v in cell["vms"]]
             for cell in topo["grid"]}
    assert len(cells) == 6 and cells[("FD 1", "zone 2")] == ["z2-1"]
    one = next(c for c in topo["grid"] if c["column"] == "zone 2" and c["row"] == "FD 1")
    assert one["vms"][0]["maintenance_domain"] == "zone 2" and one["vms"][0]["kind"] == "zonal"
    assert one["vms"][0]["zone"] == "2"
    assert topo["grid_unplaced"] == []
    # the FD x UD grid is kept: without update domains every VM is outside it
    assert topo["uds"] == [] and len(topo["unplaced"]) == 6
    status = c.get("/v1/status").raise_for_status().json()
    assert status["maintenance_domain"] == "zone"
    assert status["maintenance_domain_problem"] == ""


def test_zonal_placement_lands_in_three_zones(zonal: Api) -> None:
    body = zonal.viewer.post("/v1/placement", json={"replicas": 3, "group": "new"}
                             ).raise_for_status().json()
    assert body["maintenance_domain"] == "zone" and body["maintenance_domains"] == 3
    assert sorted(body["domains"].values()) == ["zone 1", "zone 2", "zone 3"]
    assert body["spread"] == 3 and body["notes"] == []
    # load: `spread` and `crowded` sit on z1-0, z1-1, z2-0, z2-1, z3-0 -> z3-1 is free
    assert "z3-1" in body["vms"]
    assert body["faults"]["z3-1"] == "FD 1 in zone 3"
    six = zonal.viewer.post("/v1/placement", json={"replicas": 6}).raise_for_status().json()
    assert six["fault_domains"] == 6 and six["notes"] == ["only 3 distinct zones for 6 replicas"]


def test_zonal_audit_names_the_zone(zonal: Api) -> None:
    rows = zonal.viewer.get("/v1/placement/audit").raise_for_status().json()
    assert [r["group"] for r in rows] == ["crowded", "spread"]
    crowded = rows[0]
    assert not crowded["ud_safe"] and crowded["fd_safe"]
    assert crowded["maintenance_domain"] == "zone"
    assert [(b["kind"], b["unit"], b["domain"]) for b in crowded["blocking"]] == [
        ("update", "zone 1", "1")]
    assert crowded["verdict"].startswith("blocks a rollout: losing zone 1 (z1-0, z1-1)")
    assert crowded["fix"]["to"].startswith("z3-") and "is in zone 3, FD" in crowded["fix"][
        "reason"]
    assert rows[1]["verdict"] == "safe: any one zone or fault domain can go"


# ---------------------------------------------------------------- flexible scale set


def test_flex_rows_grid_placement_and_audit(flex: Api) -> None:
    c = flex.viewer
    vms = {vm["name"]: vm for vm in c.get("/v1/vms").raise_for_status().json()}
    assert (vms["f2-1"]["kind"], vms["f2-1"]["maintenance_domain"]) == (
        "flexible scale set", "FD 2")
    assert vms["f2-1"]["scale_set"] == "ss-web" and vms["f2-1"]["zone"] == ""
    topo = c.get("/v1/topology").raise_for_status().json()
    assert topo["maintenance_domain"] == "fault_domain"
    assert topo["columns"] == ["FD 0", "FD 1", "FD 2"] and topo["rows"] == ["ss-web"]
    cells = {(cell["row"], cell["column"]): [v["name"] for v in cell["vms"]]
             for cell in topo["grid"]}
    assert cells[("ss-web", "FD 1")] == ["f1-0", "f1-1"]
    assert c.get("/v1/status").json()["maintenance_domain"] == "fault_domain"
    body = c.post("/v1/placement", json={"replicas": 3}).raise_for_status().json()
    assert sorted(body["domains"].values()) == ["FD 0", "FD 1", "FD 2"]
    assert body["maintenance_domain"] == "fault_domain" and body["spread"] == 3
    rows = c.get("/v1/placement/audit").raise_for_status().json()
    crowded = next(r for r in rows if r["group"] == "crowded")
    assert [(b["kind"], b["unit"]) for b in crowded["blocking"]] == [("update", "FD 0"),
                                                                      ("fault", "FD 0")]
    assert crowded["verdict"].startswith("blocks a rollout: losing FD 0 (f0-0, f0-1)")
    assert crowded["fix"]["reason"].endswith("is in FD 2")


# ---------------------------------------------------------------- mixed


def test_mixed_cluster_is_refused_with_the_reason_until_the_policy_names_a_unit(
        mixed: Api) -> None:
    c = mixed.viewer
    refused = c.post("/v1/placement", json={"replicas": 2})
    assert refused.status_code == 409, refused.text
    reason = refused.json()["detail"]
    assert "mixes deployments" in reason and "as-0" in reason and "zonal-1" in reason
    assert "set policy maintenance_domain" in reason
    audit = c.get("/v1/placement/audit")
    assert audit.status_code == 409 and audit.json()["detail"] == reason
    topo = c.get("/v1/topology").raise_for_status().json()
    assert topo["maintenance_domain"] is None and topo["maintenance_domain_problem"] == reason
    # the grid still shows each VM under its own unit, so the mix is visible
    assert topo["columns"] == ["UD 0", "UD 1", "zone 1", "zone 2"]
    vms = {vm["name"]: vm for vm in c.get("/v1/vms").json()}
    assert {n: (vm["kind"], vm["maintenance_domain"]) for n, vm in vms.items()} == {
        "as-0": ("availability set", None), "as-1": ("availability set", None),
        "zonal-1": ("zonal", None), "zonal-2": ("zonal", None)}
    status = c.get("/v1/status").json()
    assert status["maintenance_domain"] is None
    assert status["maintenance_domain_problem"] == reason

    # the operator names the unit: fault domains, which every VM reports
    mixed.op.patch("/v1/policy", json={"maintenance_domain": "fault_domain"}
                   ).raise_for_status()
    wait_until(lambda: c.get("/v1/status").json()["maintenance_domain"] == "fault_domain",
               10, message="the policy in the mirror")
    placed = c.post("/v1/placement", json={"replicas": 2}).raise_for_status().json()
    assert placed["maintenance_domain"] == "fault_domain"
    assert sorted(placed["domains"].values()) == ["FD 0", "FD 1"]
    topo = c.get("/v1/topology").json()
    assert topo["maintenance_domain"] == "fault_domain"
    assert topo["maintenance_domain_policy"] == "fault_domain"
    assert topo["columns"] == ["FD 0", "FD 1"] and topo["rows"] == ["no scale set"]
    assert {vm["name"]: vm["maintenance_domain"] for vm in c.get("/v1/vms").json()} == {
        "as-0": "FD 0", "as-1": "FD 1", "zonal-1": "FD 0", "zonal-2": "FD 0"}
    audit_rows = c.get("/v1/placement/audit").raise_for_status().json()
    assert audit_rows[0]["maintenance_domain"] == "fault_domain"
    # by zone instead: the availability-set VMs report none, and the rows say so
    mixed.op.patch("/v1/policy", json={"maintenance_domain": "zone"}).raise_for_status()
    wait_until(lambda: c.get("/v1/status").json()["maintenance_domain"] == "zone", 10)
    assert c.get("/v1/vms").json()[0]["maintenance_domain"] is None
    assert [v["name"] for v in c.get("/v1/topology").json()["grid_unplaced"]] == [
        "as-0", "as-1"]


def test_new_fields_are_described_in_the_openapi_schema(flex: Api) -> None:
    schemas = flex.viewer.get("/openapi.json").json()["components"]["schemas"]
    for model, fields in (("VMRow", ("zone", "kind", "maintenance_domain")),
                          ("Topology", ("maintenance_domain", "maintenance_domain_problem",
                                        "columns", "rows", "grid", "grid_unplaced")),
                          ("StatusOut", ("maintenance_domain", "maintenance_domain_problem")),
                          ("Placement", ("maintenance_domain", "domains", "faults")),
                          ("DomainLoss", ("unit", "kind")),
                          ("PlacementAudit", ("maintenance_domain", "ud_safe"))):
        props = schemas[model]["properties"]
        for field in fields:
            assert props[field].get("description"), f"{model}.{field} has no description"
    paths = flex.viewer.get("/openapi.json").json()["paths"]
    assert "409" in paths["/v1/placement"]["post"]["responses"]
    assert "409" in paths["/v1/placement/audit"]["get"]["responses"]
