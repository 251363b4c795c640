"""Placement hooks for orchestrators, and the placement audit for operators.

Both judge by the cluster's *maintenance domain* (`registry.domains`): the update domain
of an availability set, the zone of zonal VMs, the fault domain of a regional Flexible
scale set — from the policy's `maintenance_domain`, or resolved from the VMs when it is
`auto`. A cluster that mixes deployments (and a policy that names no unit) gets 409 with
the reason, never a placement judged by the wrong unit.

The audit judges *placement*: every known VM counts as up, so a group is flagged only
when where its members sit would block a rollout — not because a VM is rebooting for
the maintenance going on right now. What is down right now is reported beside it
(`down_now`, `now_ud_safe`), so a dashboard does not flash red at every maintenance.
"""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter, HTTPException, status
from pydantic import Field

from coordinator.api.auth import Viewer
from coordinator.api.deps import View
from coordinator.api.derive import per_view
from coordinator.api.routes.common import Responses
from coordinator.placement import (
    GroupAudit,
    MixedCluster,
    Placement,
    PlacementError,
    PlacementRequest,
    audit,
    place,
)
from coordinator.store import ClusterView


class PlacementAudit(GroupAudit):
    """`ud_safe`, `fd_safe`, `blocking`, `fix` and `verdict` judge the placement alone
    (every known VM up; a member no agent ever registered counts as down)."""

    down_now: list[str] = []
    """Members not live right now: rebooting for a maintenance, or lost."""
    now_ud_safe: bool = Field(True, description="with the members down right now, losing "
                                                "one more maintenance domain still keeps the "
                                                "group at its minimum (false: the next "
                                                "maintenance of some domain will be held)")


@per_view
def placement_audit(view: ClusterView) -> list[PlacementAudit]:
    """MixedCluster when the cluster's maintenance domain does not resolve."""
    vms = view.vm_views()
    groups = list(view.groups.values())
    mode = view.policy.maintenance_domain
    static = {name: dataclasses.replace(vm, live=True) for name, vm in vms.items()}
    now = {a.group: a for a in audit(vms, groups, mode)}
    return [PlacementAudit(**a.model_dump(),
                           down_now=[m for m in a.members if m in vms and not vms[m].live],
                           now_ud_safe=now[a.group].ud_safe)
            for a in audit(static, groups, mode)]

router = APIRouter(prefix="/v1/placement", tags=["placement"])

MIXED: Responses = {409: {"description": "the cluster mixes deployments (zonal and not, "
                                        "availability sets and Flexible scale sets) and "
                                        "the policy names no maintenance_domain: the detail "
                                        "says which VMs and what to set"}}


@router.post("", response_model=Placement,
             summary="Spread N replicas over maintenance domains and fault domains",
             responses={422: {"description": "the cluster cannot satisfy the request"},
                        **MIXED})
def post_placement(request: PlacementRequest, view: View, _: Viewer) -> Placement:
    """Chooses live VMs for `replicas` replicas so that they span as many distinct
    maintenance domains and fault domains as possible: for availability sets the smaller
    of the distinct update-domain and fault-domain counts is maximised (then their sum);
    for zonal VMs the replicas go to distinct zones first, then to distinct fault domains
    within them (3 replicas in a 3-zone cluster land in 3 zones); for a regional Flexible
    scale set, distinct fault domains. Then it balances how many groups each VM carries.
    Deterministic. `holding` VMs are kept, `exclude` VMs never chosen. The answer names
    each replica's maintenance domain (`domains`: "UD 3", "zone 2", "FD 1") and fault
    domain (`faults`). Nothing is written: the caller places, then registers the group
    (PUT /v1/groups/{name}). 409 when the cluster has no single maintenance domain."""
    try:
        return place(request, view.vm_views(), list(view.groups.values()),
                     view.policy.maintenance_domain)
    except MixedCluster as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except PlacementError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc


@router.get("/audit", response_model=list[PlacementAudit],
            summary="Groups whose placement one maintenance-domain (rollout) or fault-domain "
                    "(hardware) loss would break", responses=MIXED)
def get_audit(view: View, _: Viewer) -> list[PlacementAudit]:
    """Worst first. A group that is not `ud_safe` — one maintenance domain (the update
    domain, zone or fault domain of `maintenance_domain`) holds too many of its members —
    will be held in every rollout and then started by the platform without our approval;
    `fix` names the move that cures it. Each loss in `blocking` names its `unit` ("UD 1",
    "zone 2", "FD 0", "FD 0 in zone 2"). The verdict is about placement (every known VM
    up); `down_now` and `now_ud_safe` say what the VMs down at this moment change. 409
    when the cluster has no single maintenance domain."""
    try:
        return placement_audit(view)
    except MixedCluster as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
