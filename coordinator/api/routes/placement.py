"""Placement hooks for orchestrators, and the placement audit for operators.

The audit judges *placement*: every known VM counts as up, so a group is flagged only
when where its members sit would block a rollout — not because a VM is rebooting for
the maintenance going on right now. What is down right now is reported beside it
(`down_now`, `now_ud_safe`), so a dashboard does not flash red at every maintenance.
"""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter, HTTPException, status

from coordinator.api.auth import Viewer
from coordinator.api.deps import View
from coordinator.api.derive import per_view
from coordinator.placement import (
    GroupAudit,
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
    now_ud_safe: bool = True
    """With the members down right now, losing one more update domain still keeps the
    group at its minimum (false: the next maintenance of some UD will be held)."""


@per_view
def placement_audit(view: ClusterView) -> list[PlacementAudit]:
    vms = view.vm_views()
    groups = list(view.groups.values())
    static = {name: dataclasses.replace(vm, live=True) for name, vm in vms.items()}
    now = {a.group: a for a in audit(vms, groups)}
    return [PlacementAudit(**a.model_dump(),
                           down_now=[m for m in a.members if m in vms and not vms[m].live],
                           now_ud_safe=now[a.group].ud_safe)
            for a in audit(static, groups)]

router = APIRouter(prefix="/v1/placement", tags=["placement"])


@router.post("", response_model=Placement, summary="Spread N replicas over FDs and UDs",
             responses={422: {"description": "the cluster cannot satisfy the request"}})
def post_placement(request: PlacementRequest, view: View, _: Viewer) -> Placement:
    """Chooses live VMs for `replicas` replicas so that they span as many distinct fault
    *and* update domains as possible (the smaller of the two counts is maximised), then
    balances how many groups each VM carries. Deterministic. `holding` VMs are kept,
    `exclude` VMs never chosen. Nothing is written: the caller places, then registers the
    group (PUT /v1/groups/{name})."""
    try:
        return place(request, view.vm_views(), list(view.groups.values()))
    except PlacementError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc


@router.get("/audit", response_model=list[PlacementAudit],
            summary="Groups whose placement one UD (maintenance) or FD (hardware) loss would "
                    "break")
def get_audit(view: View, _: Viewer) -> list[PlacementAudit]:
    """Worst first. A group that is not `ud_safe` will be held in every rollout and then
    started by the platform without our approval; `fix` names the move that cures it.
    The verdict is about placement (every known VM up); `down_now` and `now_ud_safe` say
    what the VMs down at this moment change."""
    return placement_audit(view)
