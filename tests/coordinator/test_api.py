"""The REST API over real HTTP on a real ZooKeeper: reads, auth, audited operator actions,
policy compare-and-set, validation, readiness and metrics."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import ConnectionLoss

from coordinator.api.derive import display_state
from coordinator.store import ensure_layout
from registry.codec import decode, encode
from registry.layout import Layout
from registry.records import (
    Decision,
    DecisionState,
    DrainRecord,
    DrainStatus,
    DrainWant,
    EventType,
    Group,
    Override,
    PlatformEvent,
    PlatformStatus,
    Policy,
)
from tests.coordinator.test_api_support import (
    OPERATOR_NAME,
    Api,
    foreign_leader,
    put_decision,
    put_drain,
    put_group,
    register,
    running,
    schedule,
)
from tests.helpers import wait_until

S = DecisionState


@pytest.fixture
def cluster(zk: KazooClient, zk_layout: Layout) -> Layout:
    """Six VMs over 2 FDs x 3 UDs; group g = vm-0, vm-1, vm-2 (one per UD), min 2."""
    ensure_layout(zk, zk_layout)
    for i in range(6):
        register(zk, zk_layout, f"vm-{i}", fd=i // 3, ud=i % 3)
    put_group(zk, zk_layout, "g", ["vm-0", "vm-1", "vm-2"], min_available=2)
    return zk_layout


@pytest.fixture
def follower(zk_hosts: str, zk: KazooClient, cluster: Layout) -> Iterator[Api]:
    """An API replica that does not lead: what tests write stays as written."""
    with foreign_leader(zk, cluster), running(zk_hosts, cluster) as api:
        yield api


@pytest.fixture
def leader(zk_hosts: str, cluster: Layout) -> Iterator[Api]:
    with running(zk_hosts, cluster) as api:
        wait_until(lambda: api.node.reconciler.is_leader, 10, message="leadership")
        yield api


def mirrored(api: Api, check) -> None:
    """Wait until this replica's mirror shows what the test just wrote."""
    wait_until(lambda: check(api.node.cache.view()), 10)


# ---------------------------------------------------------------- derived states (pure)

DRAINED, RESTORED = DrainWant.DRAINED, DrainWant.RESTORED


def _drain(want: DrainWant, status: DrainStatus) -> DrainRecord:
    return DrainRecord(vm="vm", event_id="E", want=want, status=status)


@pytest.mark.parametrize(("live", "drain", "decision", "event_status", "state"), [
    (True, None, None, None, "up"),
    (True, None, S.APPROVED, PlatformStatus.SCHEDULED, "up"),  # reserved, nothing to drain
    (True, _drain(DRAINED, DrainStatus.PENDING), S.DRAINING, PlatformStatus.SCHEDULED,
     "draining"),
    (True, _drain(DRAINED, DrainStatus.RUNNING), S.DRAINING, PlatformStatus.SCHEDULED,
     "draining"),
    (True, _drain(DRAINED, DrainStatus.FAILED), S.FAILED, PlatformStatus.SCHEDULED,
     "drain_failed"),
    (True, _drain(DRAINED, DrainStatus.DRAINED), S.APPROVED, PlatformStatus.SCHEDULED,
     "drained"),
    (False, _drain(DRAINED, DrainStatus.DRAINED), S.APPROVED, PlatformStatus.STARTED,
     "rebooting"),
    (False, _drain(DRAINED, DrainStatus.DRAINED), S.STARTED, None, "rebooting"),
    (False, _drain(RESTORED, DrainStatus.PENDING), S.COMPLETED, PlatformStatus.GONE,
     "rebooting"),
    (True, _drain(RESTORED, DrainStatus.RUNNING), S.COMPLETED, PlatformStatus.GONE,
     "restoring"),
    (True, _drain(RESTORED, DrainStatus.RESTORED), S.COMPLETED, PlatformStatus.GONE, "up"),
    (False, _drain(DRAINED, DrainStatus.DRAINED), S.APPROVED, PlatformStatus.SCHEDULED,
     "lost"),  # down before its event started: not explained
    (False, None, None, None, "lost"),
])
def test_display_state(live: bool, drain: DrainRecord | None, decision: S | None,
                       event_status: PlatformStatus | None, state: str) -> None:
    reserving = Decision(event_id="E", state=decision, reserved=["vm"]) if decision else None
    event = PlatformEvent(event_id="E", event_type=EventType.REBOOT, status=event_status,
                          resources=["vm"]) if event_status else None
    assert display_state(live, drain, reserving, event).value == state


# ---------------------------------------------------------------- reads


def test_reads_reflect_zookeeper(follower: Api, zk: KazooClient, cluster: Layout) -> None:
    # vm-3 is down for a started event; vm-5 is gone without one; others drain/restore
    zk.delete(cluster.vm("vm-3"))
    zk.delete(cluster.vm("vm-5"))
    schedule(zk, cluster, "E-start", ["vm-3"], status=PlatformStatus.STARTED, first_seen=1.0)
    put_decision(zk, cluster, Decision(event_id="E-start", state=S.STARTED,
                                       reserved=["vm-3"], drain=["vm-3"], reason="started"))
    schedule(zk, cluster, "E-drain", ["vm-1"], first_seen=2.0)
    put_decision(zk, cluster, Decision(event_id="E-drain", state=S.DRAINING,
                                       reserved=["vm-1"], drain=["vm-1"], reason="draining vm-1"))
    put_drain(zk, cluster, DrainRecord(vm="vm-1", event_id="E-drain", want=DrainWant.DRAINED,
                                       status=DrainStatus.DRAINED))
    put_drain(zk, cluster, DrainRecord(vm="vm-2", event_id="E-old", want=DrainWant.RESTORED,
                                       status=DrainStatus.RUNNING))
    put_decision(zk, cluster, Decision(event_id="E-old", state=S.RESTORED, reason="done"))
    mirrored(follower, lambda v: len(v.decisions) == 3 and len(v.drains) == 2
             and len(v.registrations) == 4)
    c = follower.viewer

    vms = {vm["name"]: vm for vm in c.get("/v1/vms").raise_for_status().json()}
    assert {n: vm["state"] for n, vm in vms.items()} == {
        "vm-0": "up", "vm-1": "drained", "vm-2": "restoring", "vm-3": "rebooting",
        "vm-4": "up", "vm-5": "lost"}
    assert vms["vm-3"]["reserved_by"] == "E-start" and vms["vm-3"]["live"] is False
    assert vms["vm-0"]["drain"] is None and vms["vm-1"]["drain"]["status"] == "drained"
    assert (vms["vm-0"]["fd"], vms["vm-0"]["ud"], vms["vm-0"]["groups"]) == (0, 0, ["g"])
    assert vms["vm-4"]["address"] == "10.0.0.1"
    # an availability set: the update domain is the maintenance domain
    assert (vms["vm-4"]["kind"], vms["vm-4"]["maintenance_domain"]) == ("availability set",
                                                                       "UD 1")
    assert vms["vm-5"]["maintenance_domain"] == "UD 2" and vms["vm-5"]["zone"] == ""

    topo = c.get("/v1/topology").raise_for_status().json()
    assert topo["fds"] == [0, 1] and topo["uds"] == [0, 1, 2] and len(topo["cells"]) == 6
    cell = next(x for x in topo["cells"] if (x["fd"], x["ud"]) == (1, 0))
    assert cell["vms"] == [{"name": "vm-3", "state": "rebooting", "reserved_by": "E-start",
                            "zone": "", "kind": "availability set",
                            "maintenance_domain": "UD 0"}]
    assert topo["maintenance_domain"] == "update_domain"
    assert topo["columns"] == ["UD 0", "UD 1", "UD 2"] and topo["rows"] == ["FD 0", "FD 1"]
    same = next(x for x in topo["grid"] if (x["row"], x["column"]) == ("FD 1", "UD 0"))
    assert same["vms"] == cell["vms"]

    groups = c.get("/v1/groups").raise_for_status().json()
    assert [g["name"] for g in groups] == ["g"]
    g = c.get("/v1/groups/g").raise_for_status().json()
    # vm-1 reserved and drained, vm-2 not restored yet: only vm-0 counts
    assert (g["required"], g["live"], g["available"], g["ok"]) == (2, 3, 1, False)
    assert g["unavailable"] == ["vm-1", "vm-2"] and g["min_available"] == 2

    events = c.get("/v1/events").raise_for_status().json()
    assert [e["event_id"] for e in events] == ["E-old", "E-start", "E-drain"]
    active = c.get("/v1/events", params={"active": "true"}).json()
    assert [e["event_id"] for e in active] == ["E-start", "E-drain"]
    draining = c.get("/v1/events", params={"state": "draining"}).json()
    assert [e["event_id"] for e in draining] == ["E-drain"]
    one = c.get("/v1/events/E-start").raise_for_status().json()
    assert one["state"] == "started" and one["status"] == "Started"
    assert one["event"]["resources"] == ["vm-3"] and one["decision"]["reserved"] == ["vm-3"]
    assert one["ack"] is None and one["override"] is None

    status = c.get("/v1/status").raise_for_status().json()
    assert status["leader"] == "elsewhere" and status["is_leader"] is False
    assert status["connected"] and status["ready"] and status["identity"] == "api-1"
    assert status["counts"]["started"] == 1 and status["counts"]["restored"] == 1
    assert (status["vms"], status["live_vms"], status["groups_below_min"]) == (6, 4, 1)
    assert status["active_events"] == 2 and status["paused"] is False
    assert status["maintenance_domain"] == "update_domain"
    assert status["maintenance_domain_problem"] == ""

    policy = c.get("/v1/policy")
    assert policy.json()["version"] == -1 and policy.headers["etag"] == '"-1"'
    assert policy.json()["max_concurrent_uds"] == 1

    assert c.get("/v1/events/E-nope").status_code == 404
    assert c.get("/v1/groups/nope").status_code == 404


# ---------------------------------------------------------------- auth


def test_auth_roles(follower: Api, zk: KazooClient, cluster: Layout) -> None:
    schedule(zk, cluster, "E1", ["vm-0"])
    anonymous = follower.client(None)
    r = anonymous.get("/v1/vms")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert "missing" in r.json()["detail"]
    r = follower.client("not-a-known-token").get("/v1/vms")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    r = anonymous.get("/v1/vms", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert r.status_code == 401
    assert follower.viewer.get("/v1/vms").status_code == 200
    r = follower.viewer.post("/v1/events/E1/hold", json={"reason": "x"})
    assert r.status_code == 403 and "operator" in r.json()["detail"]
    for path in ("/v1/pause", "/v1/resume", "/v1/events/E1/release"):
        assert follower.viewer.post(path).status_code == 403
    assert follower.viewer.put("/v1/groups/h", json={"members": ["vm-0"]}).status_code == 403
    assert follower.op.get("/v1/status").status_code == 200
    assert follower.op.post("/v1/events/E1/hold", json={"reason": "x"}).status_code == 200
    # probes, metrics and docs need no token
    for path in ("/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"):
        assert anonymous.get(path).status_code == 200, path


def test_anonymous_role(zk_hosts: str, zk: KazooClient, cluster: Layout) -> None:
    schedule(zk, cluster, "E1", ["vm-0"])
    with foreign_leader(zk, cluster), running(zk_hosts, cluster, anonymous="viewer") as api:
        anonymous = api.client(None)
        assert anonymous.get("/v1/vms").status_code == 200
        r = anonymous.post("/v1/events/E1/hold", json={"reason": "x"})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert api.client("wrong-token-123").get("/v1/vms").status_code == 401
        assert api.op.post("/v1/events/E1/hold", json={"reason": "x"}).status_code == 200


# ---------------------------------------------------------------- operator actions


def test_actions_are_audited_with_who(follower: Api, zk: KazooClient, cluster: Layout) -> None:
    schedule(zk, cluster, "E1", ["vm-0"])
    op = follower.op
    op.put("/v1/groups/h", json={"members": ["vm-3", "vm-4"], "min_available": 1}
           ).raise_for_status()
    op.post("/v1/events/E1/hold", json={"reason": "DB migration"}).raise_for_status()
    op.post("/v1/events/E1/release").raise_for_status()
    op.post("/v1/events/E1/force", json={"reason": "hotfix needs it"}).raise_for_status()
    op.post("/v1/pause", json={"reason": "incident 42"}).raise_for_status()
    op.post("/v1/resume").raise_for_status()
    op.delete("/v1/groups/h").raise_for_status()
    audit = follower.viewer.get("/v1/audit").raise_for_status().json()
    assert [(a["action"], a["detail"]) for a in audit] == [
        ("group:put", "group h: members=vm-3,vm-4 min_available=1"),
        ("hold", "DB migration"), ("release", ""), ("force", "hotfix needs it"),
        ("pause", "incident 42"), ("resume", ""), ("group:delete", "group h")]
    assert {a["actor"] for a in audit} == {OPERATOR_NAME}
    assert [a["event_id"] for a in audit[1:4]] == ["E1"] * 3
    assert [a["action"] for a in follower.viewer.get("/v1/audit?limit=2").json()] == [
        "resume", "group:delete"]
    override = decode(Override, zk.get(cluster.override("E1"))[0])
    assert override is not None
    assert (override.hold, override.force, override.by) == ("", "hotfix needs it", OPERATOR_NAME)


def test_groups_put_and_delete(follower: Api, zk: KazooClient, cluster: Layout) -> None:
    op = follower.op
    command = op.put("/v1/groups/kafka", json={"members": ["vm-0"], "health_gate": "true"})
    assert command.status_code == 422, "an API token must not make the leader run commands"
    assert "allow_gate_commands" in command.json()["detail"]
    gate = "http://127.0.0.1:9/health"
    r = op.put("/v1/groups/kafka", json={"members": ["vm-0", "vm-3", "vm-4"],
                                         "health_gate": gate})
    assert r.status_code == 200 and r.json()["min_available"] == "majority"
    mirrored(follower, lambda v: "kafka" in v.groups)
    g = op.get("/v1/groups/kafka").json()
    assert (g["required"], g["available"], g["health_gate"], g["source"]) == (2, 3, gate, "api")
    op.put("/v1/groups/kafka", json={"members": ["vm-0"], "min_available": 0}).raise_for_status()
    mirrored(follower, lambda v: v.groups["kafka"].members == ["vm-0"])
    assert op.delete("/v1/groups/kafka").status_code == 204
    assert zk.exists(cluster.group("kafka")) is None
    assert op.delete("/v1/groups/kafka").status_code == 404
    # a provider's group would be rewritten by the leader: refused, not silently lost
    zk.create(cluster.group("pg"), encode(Group(name="pg", members=["vm-0"],
                                                source="provider:patroni")))
    r = op.put("/v1/groups/pg", json={"members": ["vm-1"]})
    assert r.status_code == 409 and "provider:patroni" in r.json()["detail"]
    assert op.delete("/v1/groups/pg").status_code == 409


def test_hold_release_force_reach_the_decision(leader: Api, zk: KazooClient,
                                               cluster: Layout) -> None:
    """E2 would take two of g's three members: the leader holds it as unsafe. An operator
    hold replaces the reason; release brings it back; force approves it anyway."""
    schedule(zk, cluster, "E2", ["vm-1", "vm-2"])
    op = leader.op

    def decision() -> Decision | None:
        return decode(Decision, zk.get(cluster.decision("E2"))[0]) \
            if zk.exists(cluster.decision("E2")) else None

    wait_until(lambda: (d := decision()) and d.state is S.HELD
               and d.reason.startswith("unsafe"), 10)
    assert op.post("/v1/events/E9/hold", json={"reason": "x"}).status_code == 404
    r = op.post("/v1/events/E2/hold", json={"reason": "  vendor asked us to wait  "})
    assert r.status_code == 200 and r.json()["hold"] == "vendor asked us to wait"
    held = wait_until(lambda: (d := decision()) and d.operator_hold and d, 10)
    assert held.state is S.HELD and held.reason == "operator hold: vendor asked us to wait"
    shown = op.get("/v1/events/E2").json()
    assert shown["operator_hold"] == "vendor asked us to wait"
    assert shown["override"]["by"] == OPERATOR_NAME

    op.post("/v1/events/E2/release").raise_for_status()
    wait_until(lambda: (d := decision()) and not d.operator_hold
               and d.reason.startswith("unsafe"), 10)

    # a force overrides the safety check, not the drain: E2's VMs are asked to drain first
    op.post("/v1/events/E2/force", json={"reason": "security patch"}).raise_for_status()
    draining = wait_until(lambda: (d := decision()) and d.state is S.DRAINING and d, 10)
    assert draining.force_reason == "security patch" and draining.drain == ["vm-1", "vm-2"]
    for vm in ("vm-1", "vm-2"):  # what the agents report once their hooks ran
        data, stat = zk.get(cluster.drain(vm))
        drain = decode(DrainRecord, data)
        assert drain is not None and drain.want is DrainWant.DRAINED
        zk.set(cluster.drain(vm), encode(drain.model_copy(update={
            "status": DrainStatus.DRAINED})), version=stat.version)
    forced = wait_until(lambda: (d := decision()) and d.state is S.APPROVED and d, 10)
    assert forced.acker == "vm-1"
    assert "forced by operator: security patch" in forced.reason
    wait_until(lambda: op.get("/v1/events/E2").json()["state"] == "approved", 10)
    status = op.get("/v1/status").json()
    assert status["is_leader"] and status["leader"] == "api-1"
    assert status["last_pass"]["at"] is not None


def test_pause_and_resume(leader: Api, zk: KazooClient, cluster: Layout) -> None:
    op = leader.op
    r = op.post("/v1/pause", json={"reason": "change freeze"})
    assert r.status_code == 200 and r.json()["paused"] is True and r.json()["version"] == 0
    mirrored(leader, lambda v: v.policy.paused)
    assert op.get("/v1/status").json()["paused"] is True
    schedule(zk, cluster, "E1", ["vm-0"])
    wait_until(lambda: op.get("/v1/events/E1").json()["reason"]
               == "approvals paused by an operator", 10)
    r = op.post("/v1/resume")
    assert r.json()["paused"] is False and r.json()["version"] == 1
    wait_until(lambda: op.get("/v1/events/E1").json()["state"] == "draining", 10)


def test_policy_round_trip_and_conflict(follower: Api, zk: KazooClient,
                                        cluster: Layout) -> None:
    op = follower.op
    body = op.get("/v1/policy").json()
    assert body["version"] == -1
    body.update(max_concurrent_uds=2, max_unavailable="20%", best_effort_lead_s=30)
    r = op.put("/v1/policy", json=body)
    assert r.status_code == 200 and r.json()["version"] == 0 and r.headers["etag"] == '"0"'
    mirrored(follower, lambda v: v.policy_version == 0)
    got = op.get("/v1/policy").json()
    assert (got["max_concurrent_uds"], got["max_unavailable"], got["best_effort_lead_s"]) == (
        2, "20%", 30)
    assert decode(Policy, zk.get(cluster.config)[0]).max_concurrent_uds == 2

    # someone else changes the policy after we read version 0
    zk.set(cluster.config, encode(Policy(max_concurrent_uds=3)), version=0)
    stale = dict(got, max_concurrent_uds=1)
    r = op.put("/v1/policy", json=stale)
    assert r.status_code == 409 and "version 1, not 0" in r.json()["detail"]
    del stale["version"]
    r = op.put("/v1/policy", json=stale, headers={"If-Match": '"0"'})
    assert r.status_code == 409
    r = op.put("/v1/policy", json=stale, headers={"If-Match": '"1"'})
    assert r.status_code == 200 and r.json()["version"] == 2
    assert op.put("/v1/policy", json=stale, headers={"If-Match": "soon"}).status_code == 400
    # without a version: compare-and-set on the version just read
    assert op.put("/v1/policy", json={"dry_run": True}).json()["version"] == 3
    assert [a["action"] for a in op.get("/v1/audit").json()] == ["policy:put"] * 3


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(("method", "path", "kwargs", "code", "words"), [
    ("put", "/v1/groups/bad%20name", {"json": {"members": ["vm-0"]}}, 422, "pattern"),
    ("put", "/v1/groups/-dash", {"json": {"members": ["vm-0"]}}, 422, "pattern"),
    ("put", "/v1/groups/g", {"json": {"members": ["vm-0"], "min_available": 2}}, 422,
     "between 0 and the 1 members"),
    ("put", "/v1/groups/g", {"json": {"members": ["vm-0"], "min_available": -1}}, 422,
     "min_available"),
    ("put", "/v1/groups/g", {"json": {"members": ["vm-0"], "min_available": "most"}}, 422,
     "min_available"),
    ("put", "/v1/groups/g", {"json": {"members": []}}, 422, "members"),
    ("put", "/v1/groups/g", {"json": {"members": ["vm/0"]}}, 422, "members.0"),
    ("put", "/v1/groups/g", {"json": {"members": ["vm-0", "vm-0"]}}, 422, "twice"),
    ("put", "/v1/groups/g", {"json": {"members": "vm-0"}}, 422, "list"),
    ("put", "/v1/groups/g", {"json": {"members": ["vm-0"], "typo": 1}}, 422, "typo"),
    ("put", "/v1/groups/g", {"content": b'{"members": [', "headers": {
        "content-type": "application/json"}}, 422, "JSON"),
    ("post", "/v1/events/E1/hold", {"json": {}}, 422, "reason"),
    ("post", "/v1/events/E1/hold", {"json": {"reason": "   "}}, 422, "reason"),
    ("post", "/v1/events/E1/hold", {}, 422, "body"),
    ("post", "/v1/events/E1/force", {"json": {"reason": ""}}, 422, "reason"),
    ("post", "/v1/events/E1/force", {"json": {"reason": 5}}, 422, "reason"),
    ("post", "/v1/events/E%2Fx/hold", {"json": {"reason": "x"}}, 404, ""),
    ("post", "/v1/events/.x/force", {"json": {"reason": "x"}}, 422, "pattern"),
    ("put", "/v1/policy", {"json": {"max_concurrent_uds": 0}}, 422, "max_concurrent_uds"),
    ("put", "/v1/policy", {"json": {"max_unavailable": "lots"}}, 422, "percent"),
    ("put", "/v1/policy", {"json": {"rules": {"Nap": "drain"}}}, 422, "rules"),
    ("put", "/v1/policy", {"json": {"pause": True}}, 422, "pause"),
    ("get", "/v1/audit?limit=0", {}, 422, "limit"),
    ("get", "/v1/audit?limit=5001", {}, 422, "limit"),
    ("get", "/v1/events?state=sleeping", {}, 422, "state"),
    ("get", "/v1/events?active=maybe", {}, 422, "active"),
])
def test_validation_errors_are_4xx_with_a_message(
        follower: Api, zk: KazooClient, cluster: Layout, method: str, path: str,
        kwargs: dict, code: int, words: str) -> None:
    schedule(zk, cluster, "E1", ["vm-0"])
    r = follower.op.request(method.upper(), path, **kwargs)
    assert r.status_code == code, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and words in detail, detail


# ---------------------------------------------------------------- probes and outages


def test_readyz_and_zookeeper_outage(follower: Api, zk: KazooClient, cluster: Layout,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    c = follower.op
    r = c.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"ready": True, "leader": "elsewhere", "role": "follower",
                        "identity": "api-1", "problem": None}
    assert c.get("/healthz").json() == {"ok": True}

    # a ZooKeeper error in the middle of a request is a 503 with a message, not a 500
    def broken(*args: object, **kwargs: object) -> None:
        raise ConnectionLoss()

    monkeypatch.setattr(follower.node.client, "get_children", broken)
    r = c.get("/v1/audit")
    assert r.status_code == 503 and "ZooKeeper" in r.json()["detail"]
    monkeypatch.undo()

    follower.node.client.stop()  # the connection is gone
    wait_until(lambda: c.get("/readyz").status_code == 503, 10)
    assert c.get("/readyz").json()["ready"] is False
    assert c.get("/healthz").status_code == 200
    r = c.post("/v1/events/E1/hold", json={"reason": "x"})
    assert r.status_code == 503 and "not connected" in r.json()["detail"]
    assert c.put("/v1/groups/h", json={"members": ["vm-0"]}).status_code == 503
    assert c.get("/v1/audit").status_code == 503
    assert c.get("/v1/vms").status_code == 200  # the last known mirror is still served
    assert c.get("/v1/status").json()["connected"] is False


def test_metrics(leader: Api) -> None:
    leader.op.get("/v1/vms").raise_for_status()
    r = leader.client(None).get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    for name in ("quorumgate_leader 1.0", "quorumgate_zookeeper_connected 1.0",
                 "quorumgate_decision_passes_total", "quorumgate_events{",
                 'quorumgate_api_requests_total{method="GET",route="/v1/vms",status="200"}'):
        assert name in r.text, name
