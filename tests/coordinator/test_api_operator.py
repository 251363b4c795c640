"""Issue 14 over real HTTP on a real ZooKeeper: event ids as people see them (prefix, any
case), retry of a failed drain, a force that still drains (or skips it when asked),
groups with unknown members, PATCH of the policy, decision codes in the rows, readiness
that fails loudly on a NoAuth misconfiguration, and the metrics an alert needs."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
from kazoo.client import KazooClient

from coordinator.config import CoordinatorConfig
from coordinator.node import CoordinatorNode, acl_problem
from coordinator.store import ensure_layout
from registry.codec import decode, encode
from registry.layout import Layout
from registry.records import (
    Decision,
    DecisionCode,
    DecisionState,
    DrainRecord,
    DrainStatus,
    DrainWant,
    Override,
    PlatformStatus,
    Transition,
)
from registry.zk import make_client
from tests.coordinator.test_api_support import (
    OPERATOR_NAME,
    Api,
    foreign_leader,
    put_decision,
    put_group,
    register,
    running,
    schedule,
)
from tests.helpers import wait_until

S = DecisionState
C = DecisionCode
E_A = "CEA34FD8-0A1B-4C2D-8E3F-405162738495"
E_B = "CEA9B2C1-1111-4222-8333-944455556666"
E_C = "7d0e51f2-aaaa-4bbb-8ccc-dddddddddddd"


@pytest.fixture
def cluster(zk: KazooClient, zk_layout: Layout) -> Layout:
    """Six VMs over 2 FDs x 3 UDs (vm-i: FD i//3, UD i%3); g = vm-0, vm-1, vm-2, min 2."""
    ensure_layout(zk, zk_layout)
    for i in range(6):
        register(zk, zk_layout, f"vm-{i}", fd=i // 3, ud=i % 3)
    put_group(zk, zk_layout, "g", ["vm-0", "vm-1", "vm-2"], min_available=2)
    return zk_layout


@pytest.fixture
def follower(zk_hosts: str, zk: KazooClient, cluster: Layout) -> Iterator[Api]:
    with foreign_leader(zk, cluster), running(zk_hosts, cluster) as api:
        yield api


@pytest.fixture
def leader(zk_hosts: str, cluster: Layout) -> Iterator[Api]:
    with running(zk_hosts, cluster) as api:
        wait_until(lambda: api.node.reconciler.is_leader, 10, message="leadership")
        yield api


def mirrored(api: Api, check) -> None:
    wait_until(lambda: check(api.node.cache.view()), 10, message="the mirror")


def override(zk: KazooClient, layout: Layout, eid: str) -> Override | None:
    path = layout.override(eid)
    return decode(Override, zk.get(path)[0]) if zk.exists(path) else None


def decision(zk: KazooClient, layout: Layout, eid: str) -> Decision | None:
    path = layout.decision(eid)
    return decode(Decision, zk.get(path)[0]) if zk.exists(path) else None


def agent_reports(zk: KazooClient, layout: Layout, vm: str, status: DrainStatus,
                  detail: str = "") -> DrainRecord:
    """What the VM's agent writes once its hook ran (compare-and-set, like the agent)."""
    data, stat = zk.get(layout.drain(vm))
    rec = decode(DrainRecord, data)
    assert rec is not None and rec.want is DrainWant.DRAINED
    done = rec.model_copy(update={"status": status, "detail": detail})
    zk.set(layout.drain(vm), encode(done), version=stat.version)
    return done


# ---------------------------------------------------------------- ids people see


def test_event_ids_by_unique_prefix_in_any_case(follower: Api, zk: KazooClient,
                                                cluster: Layout) -> None:
    for eid in (E_A, E_B, E_C):
        schedule(zk, cluster, eid, ["vm-1"])
    put_decision(zk, cluster, Decision(event_id=E_A, state=S.HELD, reason="held"))
    mirrored(follower, lambda v: len(v.events) == 3)
    c = follower.op
    # what the dashboard and the demo log show: the first 8 characters
    assert c.get("/v1/events/CEA34FD8").json()["event_id"] == E_A
    # Azure's documentation writes GUIDs in lower case
    assert c.get(f"/v1/events/{E_A.lower()}").json()["event_id"] == E_A
    assert c.get("/v1/events/7D0E").json()["event_id"] == E_C
    assert c.get(f"/v1/events/{E_C.upper()}").json()["event_id"] == E_C
    ambiguous = c.get("/v1/events/cea")
    assert ambiguous.status_code == 409
    assert ambiguous.json()["matches"] == [E_A, E_B]
    assert "ambiguous" in ambiguous.json()["detail"] and "more characters" in (
        ambiguous.json()["detail"])
    assert c.get("/v1/events/FFFF").status_code == 404

    # actions resolve the same way, against ZooKeeper itself, and record the full id
    r = c.post("/v1/events/cea34fd8/hold", json={"reason": "vendor asked"})
    assert r.status_code == 200 and r.json()["event_id"] == E_A
    assert override(zk, cluster, E_A).hold == "vendor asked"
    assert not zk.exists(cluster.override("cea34fd8"))
    assert c.post("/v1/events/CEA/hold", json={"reason": "x"}).status_code == 409
    assert c.post("/v1/events/CEA/force", json={"reason": "x"}).json()["matches"] == [
        E_A, E_B]
    assert c.post("/v1/events/nope/release").status_code == 404
    audit = c.get("/v1/audit").json()
    assert [(a["action"], a["event_id"]) for a in audit] == [("hold", E_A)]
    # documented in the schema
    responses = c.get("/openapi.json").json()["paths"]["/v1/events/{event_id}/hold"]["post"][
        "responses"]
    assert "409" in responses and "404" in responses


# ---------------------------------------------------------------- retry


def test_retry_needs_a_failed_drain_and_bumps_the_request(follower: Api, zk: KazooClient,
                                                          cluster: Layout) -> None:
    schedule(zk, cluster, "E-held", ["vm-1"])
    put_decision(zk, cluster, Decision(event_id="E-held", state=S.HELD,
                                       code=C.UNSAFE_GROUP, reason="unsafe"))
    schedule(zk, cluster, "E-failed", ["vm-2"])
    put_decision(zk, cluster, Decision(event_id="E-failed", state=S.FAILED,
                                       code=C.DRAIN_FAILED, retries=2, retry_seen=2,
                                       reason="drain failed on vm-2: exit 3"))
    mirrored(follower, lambda v: len(v.decisions) == 2)
    op = follower.op
    refused = op.post("/v1/events/E-held/retry")
    assert refused.status_code == 409
    assert refused.json()["detail"] == ("event E-held is held (unsafe_group): only a failed "
                                        "drain can be retried")
    assert op.post("/v1/events/E-nope/retry").status_code == 404
    assert follower.viewer.post("/v1/events/E-failed/retry").status_code == 403
    r = op.post("/v1/events/e-FAILED/retry", json={"reason": "patroni fixed"})
    assert r.status_code == 200, r.text
    # above what the leader last acted on, whatever the override said before
    assert r.json()["retry"] == 3 and r.json()["by"] == OPERATOR_NAME
    assert op.post("/v1/events/E-failed/retry").json()["retry"] == 4
    audit = op.get("/v1/audit").json()
    assert [(a["action"], a["event_id"], a["detail"]) for a in audit] == [
        ("retry", "E-failed", "patroni fixed"), ("retry", "E-failed", "")]
    mirrored(follower, lambda v: "E-failed" in v.overrides)
    row = op.get("/v1/events/E-failed").json()
    assert row["retry_pending"] is True and row["retries"] == 2
    assert row["code"] == "drain_failed"


def test_failed_drain_retried_by_the_operator_drains_again(leader: Api, zk: KazooClient,
                                                          cluster: Layout) -> None:
    """The leader's core end to end: a drain fails, no automatic retries are left, the
    operator's retry makes the leader ask for a new attempt, the drain succeeds and the
    event is approved."""
    op = leader.op
    op.patch("/v1/policy", json={"drain_retries": 0}).raise_for_status()
    schedule(zk, cluster, E_A, ["vm-4"], not_before=time.time() + 900)
    wait_until(lambda: (d := decision(zk, cluster, E_A)) and d.state is S.DRAINING, 10)
    agent_reports(zk, cluster, "vm-4", DrainStatus.FAILED,
                  "patronictl: no healthy replica\n[exit code 3]")
    failed = wait_until(lambda: (d := decision(zk, cluster, E_A)) and d.state is S.FAILED
                        and d, 10)
    assert failed.code is C.DRAIN_FAILED and "exit code 3" in failed.reason
    row = op.get("/v1/events/cea34fd8").json()
    assert row["code"] == "drain_failed" and row["at_risk"] is True

    op.post("/v1/events/cea34fd8/retry").raise_for_status()
    again = wait_until(lambda: (d := decision(zk, cluster, E_A)) and d.state is S.DRAINING
                       and d, 10)
    assert again.retries == 1 and again.retry_seen == 1
    drain = decode(DrainRecord, zk.get(cluster.drain("vm-4"))[0])
    assert drain.status is DrainStatus.PENDING and drain.attempt == 1
    agent_reports(zk, cluster, "vm-4", DrainStatus.DRAINED)
    wait_until(lambda: (d := decision(zk, cluster, E_A)) and d.state is S.APPROVED, 10)


# ---------------------------------------------------------------- force


def test_force_still_drains_unless_skip_drain(leader: Api, zk: KazooClient,
                                              cluster: Layout) -> None:
    op = leader.op
    # each spans two update domains (max 1) and takes g below its minimum: held
    schedule(zk, cluster, "E-skip", ["vm-1", "vm-2"])
    schedule(zk, cluster, "E-drain", ["vm-0", "vm-4"])
    wait_until(lambda: all((d := decision(zk, cluster, e)) and d.state is S.HELD
                           for e in ("E-skip", "E-drain")), 10)

    # skipping the drain is explicit and audited: approved with no drain request
    r = op.post("/v1/events/E-skip/force", json={"reason": "VMs are empty",
                                                  "skip_drain": True})
    assert r.status_code == 200 and r.json()["skip_drain"] is True
    skipped = wait_until(lambda: (d := decision(zk, cluster, "E-skip"))
                         and d.state is S.APPROVED and d, 10)
    assert skipped.force_skip_drain and skipped.drain == []
    assert not zk.exists(cluster.drain("vm-1")) and not zk.exists(cluster.drain("vm-2"))

    # the default force overrides the safety check, not the drain
    r = op.post("/v1/events/E-drain/force", json={"reason": "security patch"})
    assert r.status_code == 200 and r.json()["skip_drain"] is False
    d = wait_until(lambda: (d := decision(zk, cluster, "E-drain")) and d.state is S.DRAINING
                   and d, 10)
    assert sorted(d.drain) == ["vm-0", "vm-4"] and d.force_reason == "security patch"
    assert not d.force_skip_drain
    for vm in ("vm-0", "vm-4"):
        agent_reports(zk, cluster, vm, DrainStatus.DRAINED)
    wait_until(lambda: (d := decision(zk, cluster, "E-drain")) and d.state is S.APPROVED, 10)

    audit = op.get("/v1/audit").json()
    assert [(a["action"], a["detail"]) for a in audit if a["action"] == "force"] == [
        ("force", "VMs are empty [skip drain]"), ("force", "security patch")]
    row = op.get("/v1/events/E-skip").json()
    assert row["force_skip_drain"] is True and row["force_reason"] == "VMs are empty"
    # a hold clears a force and its skip_drain
    op.post("/v1/events/E-skip/hold", json={"reason": "wait"}).raise_for_status()
    assert override(zk, cluster, "E-skip").skip_drain is False


# ---------------------------------------------------------------- groups


def test_groups_with_unknown_members_or_no_minimum(follower: Api, zk: KazooClient,
                                                   cluster: Layout) -> None:
    op = follower.op
    r = op.put("/v1/groups/bad", json={"members": ["vm-99", "vm-100"]})
    assert r.status_code == 422
    assert r.json()["detail"].startswith("unknown members: vm-99, vm-100: no agent ever "
                                         "registered them")
    assert "allow_unknown" in r.json()["detail"]
    assert not zk.exists(cluster.group("bad"))
    r = op.put("/v1/groups/bad", json={"members": ["vm-0", "vm-99"], "allow_unknown": True})
    assert r.status_code == 200
    assert r.json()["warnings"] == [
        "unknown members (count as down until their agents register): vm-99"]
    r = op.put("/v1/groups/zero", json={"members": ["vm-0", "vm-1"], "min_available": 0})
    assert r.status_code == 200 and r.json()["warnings"][0].startswith("min_available 0")
    r = op.put("/v1/groups/fine", json={"members": ["vm-0", "vm-1"]})
    assert r.json()["warnings"] == []
    audit = [a["detail"] for a in op.get("/v1/audit").json()]
    assert audit == ["group bad: members=vm-0,vm-99 min_available=majority (unknown: vm-99)",
                     "group zero: members=vm-0,vm-1 min_available=0",
                     "group fine: members=vm-0,vm-1 min_available=majority"]


# ---------------------------------------------------------------- policy


def test_patch_policy_changes_only_what_is_given(follower: Api, zk: KazooClient,
                                                 cluster: Layout) -> None:
    op = follower.op
    op.post("/v1/pause", json={"reason": "change freeze"}).raise_for_status()
    r = op.patch("/v1/policy", json={"dry_run": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["dry_run"] is True and body["paused"] is True, "PATCH never unpauses"
    assert body["version"] == 1 and r.headers["etag"] == '"1"'
    r = op.patch("/v1/policy", json={"max_concurrent_uds": 2, "max_unavailable": "10%"})
    assert r.json()["max_concurrent_uds"] == 2 and r.json()["dry_run"] is True
    assert r.json()["paused"] is True
    # invalid values and unknown fields are refused, naming the field
    bad = op.patch("/v1/policy", json={"max_concurrent_uds": 0})
    assert bad.status_code == 422 and "max_concurrent_uds" in bad.json()["detail"]
    assert op.patch("/v1/policy", json={"dryrun": True}).status_code == 422
    # compare-and-set when asked
    stale = op.patch("/v1/policy", json={"dry_run": False}, headers={"If-Match": '"1"'})
    assert stale.status_code == 409
    assert op.patch("/v1/policy", json={"dry_run": False, "version": 2}).status_code == 200
    assert follower.viewer.patch("/v1/policy", json={"dry_run": False}).status_code == 403
    audit = [(a["action"], a["detail"]) for a in op.get("/v1/audit").json()]
    assert audit[1:] == [("policy:patch", "dry_run=True"),
                         ("policy:patch", "max_concurrent_uds=2 max_unavailable=10%"),
                         ("policy:patch", "dry_run=False")]


# ---------------------------------------------------------------- rows


def test_event_rows_carry_code_forced_mark_and_who_held(follower: Api, zk: KazooClient,
                                                        cluster: Layout) -> None:
    now = time.time()
    schedule(zk, cluster, "E-forced", ["vm-1"], status=PlatformStatus.GONE)
    put_decision(zk, cluster, Decision(
        event_id="E-forced", state=S.RESTORED, code=C.RESTORED, reason="restored",
        history=[Transition(at=now - 60, to=S.HELD, reason="unsafe"),
                 Transition(at=now - 30, to=S.FORCED, reason="the platform started it"),
                 Transition(at=now, to=S.RESTORED, reason="restored")]))
    schedule(zk, cluster, "E-dry", ["vm-2"], status=PlatformStatus.GONE)
    put_decision(zk, cluster, Decision(event_id="E-dry", state=S.RESTORED, code=C.DRY_RUN,
                                       dry_run=True, reason="dry-run: over"))
    schedule(zk, cluster, "E-wait", ["vm-3"])
    put_decision(zk, cluster, Decision(event_id="E-wait", state=S.HELD,
                                       code=C.WAITING_FOR_UD, reason="waiting for UD 1"))
    mirrored(follower, lambda v: len(v.decisions) == 3)
    op = follower.op
    op.post("/v1/events/E-wait/hold", json={"reason": "DB migration"}).raise_for_status()
    mirrored(follower, lambda v: "E-wait" in v.overrides)
    rows = {r["event_id"]: r for r in op.get("/v1/events").json()}
    assert rows["E-forced"]["forced"] is True and rows["E-forced"]["code"] == "restored"
    assert rows["E-dry"]["forced"] is False and rows["E-dry"]["dry_run"] is True
    assert rows["E-wait"]["code"] == "waiting_for_ud" and rows["E-wait"]["at_risk"] is False
    assert rows["E-wait"]["operator_hold"] == "DB migration"
    assert rows["E-wait"]["hold_by"] == OPERATOR_NAME and rows["E-wait"]["hold_at"]


def test_vms_sort_naturally(follower: Api, zk: KazooClient, cluster: Layout) -> None:
    for i in (10, 11):
        register(zk, cluster, f"vm-{i}", fd=0, ud=0)
    mirrored(follower, lambda v: len(v.registrations) == 8)
    names = [vm["name"] for vm in follower.viewer.get("/v1/vms").json()]
    assert names == ["vm-0", "vm-1", "vm-2", "vm-3", "vm-4", "vm-5", "vm-10", "vm-11"]


# ---------------------------------------------------------------- metrics


def _sample(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{") and "} " in line and (
                line.split("} ")[0] + "}" == name):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics_for_alerts(follower: Api, zk: KazooClient, cluster: Layout) -> None:
    plain = follower.client(None)
    text = plain.get("/metrics").text
    assert 'quorumgate_build_info{python="' in text and 'version="' in text
    assert "process_cpu_seconds_total" in text and "process_resident_memory_bytes" in text
    assert _sample(text, "quorumgate_forced_events_total") == 0.0
    assert _sample(text, 'quorumgate_events{dry_run="false",state="held"}') == 0.0

    now = follower.node.clock.now()
    forced = [Transition(at=now + 1, to=S.FORCED, reason="the platform started it")]
    schedule(zk, cluster, "E-forced", ["vm-1"], status=PlatformStatus.STARTED)
    put_decision(zk, cluster, Decision(event_id="E-forced", state=S.FORCED, code=C.FORCED,
                                       history=forced))
    # a dry-run decision is never forced, even with a FORCED step in its history
    schedule(zk, cluster, "E-dry", ["vm-2"], status=PlatformStatus.STARTED)
    put_decision(zk, cluster, Decision(event_id="E-dry", state=S.STARTED, code=C.DRY_RUN,
                                       dry_run=True, history=forced))
    # forced before this replica started: counted by whoever saw it then, not again here
    schedule(zk, cluster, "E-old", ["vm-3"], status=PlatformStatus.GONE)
    put_decision(zk, cluster, Decision(event_id="E-old", state=S.RESTORED, history=[
        Transition(at=now - 3600, to=S.FORCED, reason="long ago")]))
    # cannot finish before NotBefore without help: failed, held by an operator; a routine
    # wait for the update-domain budget is not
    for eid, vm, state, code in (("E-fail", "vm-4", S.FAILED, C.DRAIN_FAILED),
                                 ("E-op", "vm-5", S.HELD, C.OPERATOR_HOLD),
                                 ("E-ud", "vm-0", S.HELD, C.WAITING_FOR_UD)):
        schedule(zk, cluster, eid, [vm])
        put_decision(zk, cluster, Decision(event_id=eid, state=state, code=code))
    schedule(zk, cluster, "E-dryheld", ["vm-1"])
    put_decision(zk, cluster, Decision(event_id="E-dryheld", state=S.HELD,
                                       code=C.UNSAFE_GROUP, dry_run=True))
    mirrored(follower, lambda v: len(v.decisions) == 7)
    text = plain.get("/metrics").text
    assert _sample(text, "quorumgate_forced_events_total") == 1.0
    assert _sample(text, 'quorumgate_events_at_risk{code="drain_failed"}') == 1.0
    assert _sample(text, 'quorumgate_events_at_risk{code="operator_hold"}') == 1.0
    assert 'quorumgate_events_at_risk{code="waiting_for_ud"}' not in text
    assert 'quorumgate_events_at_risk{code="unsafe_group"}' not in text
    assert _sample(text, 'quorumgate_events{dry_run="true",state="held"}') == 1.0
    assert _sample(text, 'quorumgate_events{dry_run="false",state="held"}') == 2.0
    # counted once, however often it is scraped
    assert _sample(plain.get("/metrics").text, "quorumgate_forced_events_total") == 1.0


# ---------------------------------------------------------------- misconfiguration


AUTH = "quorumgate:right-password"


def test_acl_problem_judges_digest_and_world() -> None:
    from kazoo.security import make_acl, make_digest_acl

    ours = [make_digest_acl("quorumgate", "right-password", all=True),
            make_acl("world", "anyone", read=True)]
    assert acl_problem("/q", ours, AUTH) is None
    wrong = acl_problem("/q", ours, "quorumgate:wrong")
    assert wrong is not None and "digest user 'quorumgate'" in wrong
    assert "write,create,delete" in wrong and "QG_ZK_AUTH" in wrong
    assert "right-password" not in wrong and "wrong" not in wrong.replace("wrong", "", 0)
    assert "no credentials" in acl_problem("/q", ours, None)
    assert acl_problem("/q", [make_acl("world", "anyone", all=True)], None) is None
    assert acl_problem("/q", [make_acl("ip", "10.0.0.1", all=True)], None) is None


def test_wrong_zk_auth_makes_readyz_fail_with_one_clear_line(
        zk_hosts: str, zk_layout: Layout, caplog: pytest.LogCaptureFixture) -> None:
    """The cluster's znodes carry the digest ACL of the right credentials; a replica with
    a wrong password (or none) does not campaign, says why once, and is not ready."""
    owner = CoordinatorNode(CoordinatorConfig(cluster=zk_layout.cluster, zk_hosts=zk_hosts,
                                              zk_auth=AUTH, identity="owner"))
    owner.start(timeout=15)
    owner.stop()
    admin = make_client(zk_hosts, auth=AUTH)
    admin.start(timeout=10)
    caplog.set_level(logging.INFO)
    try:
        for auth in ("quorumgate:wrong-password", None):
            caplog.clear()
            with running(zk_hosts, zk_layout, identity="misconfigured",
                         zk_auth=auth) as api:
                r = api.client(None).get("/readyz")
                assert r.status_code == 503
                body = r.json()
                assert body["ready"] is False and body["role"] == "misconfigured"
                assert "zk_auth (QG_ZK_AUTH)" in body["problem"]
                assert "will not let this coordinator" in body["problem"]
                assert api.viewer.get("/v1/status").json()["problem"] == body["problem"]
                time.sleep(1.5)  # what used to log NoAuthError 5 times a second
                assert not api.node.reconciler.is_leader
                assert admin.get_children(zk_layout.election) == []
            errors = [r for r in caplog.records if r.levelno >= logging.WARNING
                      and r.name.startswith("coordinator")]
            assert len(errors) == 1, [r.getMessage() for r in errors]
            assert errors[0].getMessage().startswith("not ready: ZooKeeper will not let this "
                                                     "coordinator")
        # the right credentials: ready, and it leads
        with running(zk_hosts, zk_layout, identity="fine", zk_auth=AUTH) as api:
            assert api.client(None).get("/readyz").json()["problem"] is None
            wait_until(lambda: api.node.reconciler.is_leader, 10)
    finally:
        admin.delete(zk_layout.base, recursive=True)
        admin.stop()
        admin.close()
