"""Placement hooks for orchestrators, and the placement audit for operators."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from coordinator.api.auth import Viewer
from coordinator.api.deps import View
from coordinator.placement import (
    GroupAudit,
    Placement,
    PlacementError,
    PlacementRequest,
    audit,
    place,
)

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


@router.get("/audit", response_model=list[GroupAudit],
            summary="Groups that one UD (maintenance) or FD (hardware) loss would break")
def get_audit(view: View, _: Viewer) -> list[GroupAudit]:
    """Worst first. A group that is not `ud_safe` will be held in every rollout and then
    started by the platform without our approval; `fix` names the move that cures it."""
    return audit(view.vm_views(), list(view.groups.values()))
