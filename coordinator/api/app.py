"""The coordinator's FastAPI application: `create_app(node)`.

Every replica serves reads from its own ZooKeeper mirror (`node.cache.view()`), so any
replica answers, leader or not. Operator actions write intents straight to ZooKeeper
(groups, overrides, policy) with their audit entry, atomically; only the leader turns
them into decisions. OpenAPI at `/docs`.
"""

from __future__ import annotations

import importlib
import logging
import time
import weakref
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter

from coordinator.api.deps import Unavailable
from coordinator.api.fastreads import CachedReads
from coordinator.api.routes import admin, events, groups, health, placement, repair, vms
from coordinator.api.routes.common import Ambiguous
from coordinator.api.writes import Conflict, OperatorWrites
from coordinator.node import CoordinatorNode
from registry.zookeeper import KazooException

log = logging.getLogger(__name__)

DASHBOARD_MODULE = "coordinator.api.dashboard"
"""A module with a `router` (the dashboard page at `/` and its assets), included if present."""

TAGS = [
    {"name": "vms", "description": "VMs with their maintenance domain (the update domain "
                                   "of an availability set, the zone of zonal VMs, the "
                                   "fault domain of a Flexible scale set) and the grid of "
                                   "maintenance domains x fault domains (viewer)"},
    {"name": "groups", "description": "Replica groups; writes need the operator role"},
    {"name": "events", "description": "Scheduled events and our decisions; hold, release, "
                                      "force, retry need the operator role. An event id "
                                      "may be abbreviated to a unique prefix, in any case "
                                      "(409 with `matches` when several events share it)"},
    {"name": "policy and status", "description": "Policy, pause/resume, status, audit log"},
    {"name": "placement", "description": "Where replicas should go, spread over maintenance "
                                         "and fault domains; which groups block a rollout "
                                         "(viewer; 409 for a cluster that mixes deployments "
                                         "while the policy names no maintenance_domain)"},
    {"name": "health", "description": "Probes and metrics, no token"},
]


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("quorumgate_api_requests", "API requests by route and status",
                                ["method", "route", "status"], registry=registry)
        self.actions = Counter("quorumgate_operator_actions",
                               "Operator actions written to ZooKeeper", ["action"],
                               registry=registry)


_api_metrics: weakref.WeakKeyDictionary[CollectorRegistry, ApiMetrics] = (
    weakref.WeakKeyDictionary())


def api_metrics(registry: CollectorRegistry) -> ApiMetrics:
    """One set per registry: an app built twice for one node must not register twice."""
    if registry not in _api_metrics:
        _api_metrics[registry] = ApiMetrics(registry)
    return _api_metrics[registry]


def _validation_message(errors: list[dict[str, Any]]) -> str:
    parts = []
    for error in errors:
        where = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg", ""))
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())),
                   "msg": str(e.get("msg", "")).removeprefix("Value error, "),
                   "type": str(e.get("type", ""))} for e in exc.errors()]
        return JSONResponse({"detail": _validation_message(errors), "errors": errors},
                            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)

    @app.exception_handler(Conflict)
    async def conflict(request: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_409_CONFLICT)

    @app.exception_handler(Ambiguous)
    async def ambiguous(request: Request, exc: Ambiguous) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "matches": exc.matches},
                            status_code=status.HTTP_409_CONFLICT)

    @app.exception_handler(Unavailable)
    async def unavailable(request: Request, exc: Unavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(KazooException)
    async def zookeeper(request: Request, exc: KazooException) -> JSONResponse:
        log.warning("%s %s: ZooKeeper error %r", request.method, request.url.path, exc)
        return JSONResponse(
            {"detail": f"ZooKeeper unavailable or refused the request ({type(exc).__name__}); "
                       "retry shortly or use another replica"},
            status_code=503, headers={"Retry-After": "1"})


class CountRequests:
    """Requests by route and status, as plain ASGI middleware: the request-object kind
    (`@app.middleware("http")`) costs more than a cached read it wraps."""

    def __init__(self, app: Any, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status_code = 500

        async def record(message: Any) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, record)
        finally:
            route = getattr(scope.get("route"), "path", "other")
            self.metrics.requests.labels(scope["method"], route, str(status_code)).inc()
            log.debug("%s %s %s %.1f ms", scope["method"], scope["path"], status_code,
                      (time.perf_counter() - started) * 1000)


def create_app(node: CoordinatorNode) -> FastAPI:
    """The REST API of one coordinator replica; the caller starts and stops `node`."""
    app = FastAPI(
        title="quorumgate coordinator",
        version="1",
        description="Quorum-safe acknowledgement of Azure Scheduled Events. Reads need the "
                    "viewer (or operator) role, actions the operator role: "
                    "`Authorization: Bearer <token>`.",
        openapi_tags=TAGS,
    )
    metrics = api_metrics(node.metrics.registry)
    app.state.node = node
    app.state.writes = OperatorWrites(node.client, node.layout, node.clock.now,
                                      on_action=lambda a: metrics.actions.labels(a).inc())
    install_error_handlers(app)
    app.exception_handler(node.client.handler.timeout_exception)(_timeout)

    app.add_middleware(CachedReads, node=node, routes={
        "/v1/topology": vms.topology_json, "/v1/vms": vms.vms_json,
        "/v1/events": events.events_json})
    app.add_middleware(CountRequests, metrics=metrics)

    for module in (health, vms, groups, events, placement, admin, repair):
        app.include_router(module.router)
    dashboard = _optional_module(DASHBOARD_MODULE)
    if dashboard is not None:
        app.include_router(dashboard.router)
    _document_validation_errors(app)
    return app


VALIDATION_ERROR_SCHEMA = {
    "title": "ValidationErrorOut",
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {"type": "string", "description": "every problem in one sentence"},
        "errors": {"type": "array", "items": {
            "type": "object",
            "properties": {"loc": {"type": "array", "items": {"anyOf": [{"type": "string"},
                                                                        {"type": "integer"}]}},
                           "msg": {"type": "string"}, "type": {"type": "string"}}}},
    },
}


def _document_validation_errors(app: FastAPI) -> None:
    """The schema must say what a 422 really carries (see `install_error_handlers`):
    FastAPI documents its default shape, which this API does not send."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schemas = schema.get("components", {}).get("schemas", {})
            if "HTTPValidationError" in schemas:
                schemas["HTTPValidationError"] = VALIDATION_ERROR_SCHEMA
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


async def _timeout(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": "ZooKeeper did not answer in time; retry shortly"},
                        status_code=503, headers={"Retry-After": "1"})


def _optional_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        return None
