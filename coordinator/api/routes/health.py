"""Probes and metrics: no token needed."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from coordinator.api.auth import NodeDep
from coordinator.api.models import ReadyOut

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
def healthz() -> dict[str, bool]:
    return {"ok": True}


@router.get("/readyz", response_model=ReadyOut,
            responses={503: {"model": ReadyOut,
                             "description": "not connected, no mirror yet, or misconfigured "
                                            "(`problem` says how, e.g. ZooKeeper refuses "
                                            "this replica's credentials)"}},
            summary="Connected to ZooKeeper with a loaded mirror and allowed to write "
                    "(leader or follower)")
def readyz(node: NodeDep) -> JSONResponse:
    ready = node.ready
    rec = node.reconciler
    if rec.is_leader:
        leader: str | None = node.config.identity
    else:
        leader = rec.leader_identity() if ready else None
    problem = node.problem
    role = (("leader" if rec.is_leader else "follower") if ready
            else "misconfigured" if problem else "down")
    body = ReadyOut(ready=ready, leader=leader, role=role, identity=node.config.identity,
                    problem=problem)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics of this replica",
            response_class=Response)
def metrics(node: NodeDep) -> Response:
    """Decision gauges come from this replica's mirror, so leader and followers agree
    (a former leader must not keep reporting what it last decided)."""
    if node.cache.ready:
        view = node.cache.view()
        node.metrics.observe_decisions(view.decisions, view.events)
    return Response(generate_latest(node.metrics.registry), media_type=CONTENT_TYPE_LATEST)
