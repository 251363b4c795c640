"""Policy (the `config` znode), pause/resume of approvals, status and the audit log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Header, HTTPException, Query, Response, status
from pydantic import ValidationError

from coordinator.api.auth import NodeDep, Operator, Viewer
from coordinator.api.deps import Connected, View
from coordinator.api.derive import cluster_domains, event_rows, group_rows, state_counts
from coordinator.api.models import (
    LastPass,
    OptionalReasonIn,
    PolicyIn,
    PolicyOut,
    PolicyPatch,
    StatusOut,
)
from coordinator.api.routes.common import Responses, Writes
from coordinator.api.writes import Conflict, Current
from coordinator.metrics import version
from coordinator.store import read_audit
from registry.records import AuditEntry, Policy

router = APIRouter(prefix="/v1", tags=["policy and status"])
CONFLICT: Responses = {409: {"description": "the policy changed concurrently: re-read and retry"}}


def _policy_out(policy: Policy, version: int, response: Response) -> PolicyOut:
    response.headers["ETag"] = f'"{version}"'
    return PolicyOut(**policy.model_dump(), version=version)


def _if_match(value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip().removeprefix("W/").strip('"')
    try:
        return int(text)
    except ValueError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            "If-Match must be the policy version from GET /v1/policy, "
                            'e.g. "3"') from None


@router.get("/policy", response_model=PolicyOut, summary="The decision policy")
def get_policy(view: View, _: Viewer, response: Response) -> PolicyOut:
    """From this replica's mirror; `version` (also the ETag) is the `config` znode's."""
    return _policy_out(view.policy, view.policy_version, response)


@router.put("/policy", response_model=PolicyOut, dependencies=[Connected],
            responses={**CONFLICT, 400: {"description": "If-Match is not a policy version"}},
            summary="Replace the decision policy (compare-and-set)")
def put_policy(body: PolicyIn, node: NodeDep, writes: Writes, caller: Operator,
               response: Response,
               if_match: Annotated[str | None, Header(description="expected version")] = None,
               ) -> PolicyOut:
    """A full policy: omitted fields take their defaults. With `version` in the body or an
    `If-Match` header, the update lands only over that version of the `config` znode;
    without, over the version just read. Either way a concurrent change gives 409."""
    expected = body.version if body.version is not None else _if_match(if_match)
    policy = body.policy()

    def update(current: Current[Policy]) -> Policy:
        if expected is not None and current.version != expected:
            raise Conflict(f"policy is at version {current.version}, not {expected}; "
                           "re-read it and retry")
        return policy

    done = writes.apply(caller.name, "policy:put", node.layout.config, Policy, update,
                        detail=policy.model_dump_json(), retries=0)
    return _policy_out(policy, done.version, response)


@router.patch("/policy", response_model=PolicyOut, dependencies=[Connected],
              responses={**CONFLICT, 400: {"description": "If-Match is not a policy version"},
                         422: {"description": "a field is unknown, or the result is not a "
                                              "valid policy"}},
              summary="Change some fields of the policy (read-modify-write)")
def patch_policy(node: NodeDep, writes: Writes, caller: Operator, view: View,
                 response: Response,
                 body: Annotated[PolicyPatch, Body(openapi_examples={  # type: ignore[valid-type]
                     "dry-run": {"value": {"dry_run": True}},
                     "two UDs at once": {"value": {"max_concurrent_uds": 2}}})],
                 if_match: Annotated[str | None, Header(description="expected version")] = None,
                 ) -> PolicyOut:
    """Only the fields given change, everything else — `paused` included — keeps its
    current value: `{"dry_run": true}` never unpauses approvals or resets a cap. Applied
    over the version just read (retried on a concurrent change), or only over `version`
    (body or `If-Match`) when given: 409 if the policy moved on."""
    given = body.model_dump(exclude_unset=True)  # type: ignore[attr-defined]
    expected = given.pop("version", None)
    if expected is None:
        expected = _if_match(if_match)

    def update(current: Current[Policy]) -> Policy:
        if expected is not None and current.version != expected:
            raise Conflict(f"policy is at version {current.version}, not {expected}; "
                           "re-read it and retry")
        # a malformed config keeps the mirror's last good policy (as the leader does)
        base = current.record or (view.policy if current.exists else Policy())
        try:
            return Policy.model_validate({**base.model_dump(), **given})
        except ValidationError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors(include_url=False))) from None

    changes = " ".join(f"{k}={v}" for k, v in given.items())
    done = writes.apply(caller.name, "policy:patch", node.layout.config, Policy, update,
                        detail=changes, retries=0 if expected is not None else 3)
    assert done.record is not None
    return _policy_out(done.record, done.version, response)


def _set_paused(node: NodeDep, writes: Writes, caller_name: str, view_policy: Policy,
                paused: bool, reason: str, response: Response) -> PolicyOut:
    def update(current: Current[Policy]) -> Policy:
        # a malformed config keeps the mirror's last good policy (as the leader does)
        base = current.record or (view_policy if current.exists else Policy())
        return base.model_copy(update={"paused": paused})

    done = writes.apply(caller_name, "pause" if paused else "resume", node.layout.config,
                        Policy, update, detail=reason, retries=3)
    assert done.record is not None
    return _policy_out(done.record, done.version, response)


@router.post("/pause", response_model=PolicyOut, dependencies=[Connected], responses=CONFLICT,
             summary="Pause every new drain and approval")
def pause(node: NodeDep, writes: Writes, caller: Operator, view: View, response: Response,
          body: OptionalReasonIn | None = None) -> PolicyOut:
    """Events in flight keep going; new ones are held with "approvals paused"."""
    return _set_paused(node, writes, caller.name, view.policy, True,
                       body.reason if body else "", response)


@router.post("/resume", response_model=PolicyOut, dependencies=[Connected], responses=CONFLICT,
             summary="Resume drains and approvals")
def resume(node: NodeDep, writes: Writes, caller: Operator, view: View, response: Response,
           body: OptionalReasonIn | None = None) -> PolicyOut:
    return _set_paused(node, writes, caller.name, view.policy, False,
                       body.reason if body else "", response)


@router.get("/status", response_model=StatusOut, summary="This replica and the cluster at a glance")
def get_status(node: NodeDep, view: View, _: Viewer) -> StatusOut:
    rec = node.reconciler
    connected = rec.connected
    if rec.is_leader:
        leader: str | None = node.config.identity
    else:
        leader = rec.leader_identity() if connected else None
    decisions = view.decisions
    groups = group_rows(view)
    regs = view.registrations
    domains = cluster_domains(view)
    return StatusOut(
        identity=node.config.identity, cluster=node.config.cluster, leader=leader,
        is_leader=rec.is_leader, connected=connected, ready=node.ready, now=node.clock.now(),
        counts=state_counts(decisions.values()), events=len(set(view.events) | set(decisions)),
        active_events=sum(1 for r in event_rows(view) if r.active),
        vms=len(set(regs) | set(view.vm_states)), live_vms=len(regs), groups=len(groups),
        groups_below_min=sum(1 for g in groups if not g.ok),
        paused=view.policy.paused, dry_run=view.policy.dry_run,
        policy_version=view.policy_version,
        last_pass=LastPass(at=rec.last_pass_at, summary=rec.last_pass_summary),
        problem=node.problem, version=version(),
        maintenance_domain=domains[0], maintenance_domain_problem=domains[1])


@router.get("/audit", response_model=list[AuditEntry], dependencies=[Connected],
            summary="The audit log, newest last")
def get_audit(node: NodeDep, _: Viewer,
              limit: Annotated[int, Query(ge=1, le=5000,
                                          description="at most this many newest entries")] = 200,
              ) -> list[AuditEntry]:
    return read_audit(node.client, node.layout, limit)
