"""The dashboard: a static page at `/`, one snapshot endpoint and a live stream.

- `GET /` and `GET /static/<file>`: the page (plain HTML, JS, CSS from
  `coordinator/static/`), served without a token. The page reads its token from the URL
  fragment (`/#token=...`, never sent to a server) or a sign-in form, keeps it in
  sessionStorage and sends it as `Authorization: Bearer` with its API calls.
- `GET /v1/dashboard` (viewer): everything the page shows, from this replica's mirror.
- `GET /v1/stream` (viewer): Server-Sent Events; an `event: snapshot` with the same body
  whenever the mirror (or the leader, or the ZooKeeper connection) changes, at most every
  `STREAM_TICK_S`, and at least every `STREAM_REFRESH_S`; `: ping` comments in between.

The stream is bounded: at most `STREAM_LIMIT` at once per app (503 beyond, the page
then polls `/v1/dashboard`), each ends after `STREAM_MAX_S` (the page reconnects), and a
stream spawns no task of its own: it is one async generator that sleeps between ticks;
Starlette cancels it when the client goes away.
"""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import StreamingResponse
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from coordinator.api.auth import Caller, NodeDep, Viewer
from coordinator.api.deps import Unavailable, get_view
from coordinator.api.derive import (
    EventRow,
    GroupRow,
    Topology,
    VMRow,
    event_rows,
    group_rows,
    topology_of,
    vm_rows,
)
from coordinator.api.models import StatusOut
from coordinator.api.routes.admin import get_status
from coordinator.api.routes.placement import PlacementAudit, placement_audit
from coordinator.node import CoordinatorNode
from coordinator.placement import MixedCluster

router = APIRouter(tags=["dashboard"])

STATIC = Path(__file__).resolve().parent.parent / "static"
ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
"""The only files served from `coordinator/static/` (besides index.html at `/`)."""

PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; object-src 'none'; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}

EVENTS_SHOWN = 100
"""Every active event, then the most recent finished ones up to this many rows."""

STREAM_LIMIT = 16
STREAM_MAX_S = 300.0
STREAM_TICK_S = 0.25
STREAM_REFRESH_S = 2.0
STREAM_HEARTBEAT_S = 10.0
STREAM_RETRY_MS = 2000


# ---------------------------------------------------------------- the page


def _asset(name: str, media_type: str) -> Response:
    try:
        body = (STATIC / name).read_bytes()
    except FileNotFoundError:
        raise HTTPException(404, f"{name} is missing from the installation") from None
    return Response(body, media_type=media_type, headers=PAGE_HEADERS)


@router.get("/", include_in_schema=False)
def page() -> Response:
    return _asset("index.html", "text/html; charset=utf-8")


@router.get("/static/{name}", include_in_schema=False)
def static(name: str) -> Response:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(404, "no such file")
    return _asset(name, media_type)


# ---------------------------------------------------------------- the snapshot


class ZooKeeperOut(BaseModel):
    connected: bool
    """This replica's session is connected (writes and decisions possible)."""
    state: str
    """kazoo's session state: CONNECTED, SUSPENDED or LOST."""
    hosts: str
    session_timeout_s: float
    mirror_ready: bool
    """The mirror was loaded; while disconnected it shows the last known state."""


class DashboardOut(BaseModel):
    now: float
    """This replica's clock (virtual in the demo): relative times are relative to it."""
    status: StatusOut
    zookeeper: ZooKeeperOut
    topology: Topology
    vms: list[VMRow]
    events: list[EventRow]
    """Active events first (oldest first), then the most recent finished ones."""
    events_total: int
    groups: list[GroupRow]
    placement: list[PlacementAudit]
    """The placement audit: groups whose placement one maintenance-domain (or FD) loss
    would break, with the fix; and, apart from it, their members down right now."""
    placement_problem: str = Field(
        "", description="why there is no placement audit: the cluster mixes deployments "
                        "and the policy names no maintenance_domain")


def snapshot(node: CoordinatorNode, caller: Caller) -> DashboardOut:
    """Everything the page shows, from one view of the mirror (blocking: a thread)."""
    view = get_view(node)
    status = get_status(node, view, caller)
    rows = vm_rows(view)
    events = event_rows(view)
    active = [e for e in events if e.active]
    done = [e for e in events if not e.active]
    keep = max(0, EVENTS_SHOWN - len(active))
    shown = active + (done[len(done) - keep:] if keep else [])
    client = node.client
    try:
        audit, audit_problem = placement_audit(view), ""
    except MixedCluster as exc:
        audit, audit_problem = [], str(exc)
    return DashboardOut(
        now=status.now, status=status,
        zookeeper=ZooKeeperOut(connected=status.connected, state=str(client.state),
                               hosts=node.config.zk_hosts,
                               session_timeout_s=node.config.zk_session_timeout_s,
                               mirror_ready=node.cache.ready),
        topology=topology_of(view), vms=rows, events=shown, events_total=len(events),
        groups=group_rows(view), placement=audit, placement_problem=audit_problem)


@router.get("/v1/dashboard", response_model=DashboardOut,
            summary="Everything the dashboard shows, in one body")
async def get_dashboard(node: NodeDep, caller: Viewer) -> DashboardOut:
    """Status, ZooKeeper, the maintenance-domain grid, VMs, events (with their history), groups and
    the placement audit, all from one view of this replica's mirror."""
    return await run_in_threadpool(snapshot, node, caller)


# ---------------------------------------------------------------- the stream


class _Changes:
    """Counts the mirror's changes; one per node, registered once (listeners stay)."""

    def __init__(self) -> None:
        self.count = 0

    def bump(self) -> None:
        self.count += 1  # the cache's thread; readers only compare, so a race is harmless


_changes: weakref.WeakKeyDictionary[CoordinatorNode, _Changes] = weakref.WeakKeyDictionary()


def changes_of(node: CoordinatorNode) -> _Changes:
    if node not in _changes:
        changes = _changes[node] = _Changes()
        node.cache.listen(changes.bump)
    return _changes[node]


class StreamMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.open = Gauge("quorumgate_dashboard_streams", "Dashboard event streams open",
                          registry=registry)
        self.served = Counter("quorumgate_dashboard_streams_served",
                              "Dashboard event streams opened", registry=registry)


_stream_metrics: weakref.WeakKeyDictionary[CollectorRegistry, StreamMetrics] = (
    weakref.WeakKeyDictionary())


def stream_metrics(registry: CollectorRegistry) -> StreamMetrics:
    if registry not in _stream_metrics:
        _stream_metrics[registry] = StreamMetrics(registry)
    return _stream_metrics[registry]


class Streams:
    """Live streams of one app (the limit is per app; the metrics per node)."""

    def __init__(self) -> None:
        self.active = 0


def streams_of(request: Request) -> Streams:
    state = request.app.state
    if not hasattr(state, "dashboard_streams"):
        state.dashboard_streams = Streams()
    streams: Streams = state.dashboard_streams
    return streams


def _sse(event: str, data: str) -> str:
    return f"event: {event}\ndata: {data}\n\n"


def _key(body: DashboardOut) -> str:
    """What counts as a change: everything but the clocks."""
    return body.model_dump_json(exclude={"now": True, "status": {"now", "last_pass"}})


async def _stream(node: CoordinatorNode, caller: Caller, streams: Streams,
                  changes: _Changes) -> AsyncIterator[str]:
    if streams.active >= STREAM_LIMIT:  # strict bound, whatever raced past the check
        yield _sse("busy", json.dumps({"detail": "too many dashboard streams; poll instead"}))
        return
    metrics = stream_metrics(node.metrics.registry)
    streams.active += 1
    metrics.open.inc()
    metrics.served.inc()
    try:
        yield f"retry: {STREAM_RETRY_MS}\n\n"
        started = last_sent = last_beat = time.monotonic()
        last_seen, last_key, first = -1, "", True
        while (now := time.monotonic()) - started < STREAM_MAX_S:
            seen = changes.count
            due = first or now - last_sent >= STREAM_REFRESH_S
            if seen != last_seen or due:
                last_seen = seen
                try:
                    body = await run_in_threadpool(snapshot, node, caller)
                except Unavailable as exc:
                    yield _sse("unavailable", json.dumps({"detail": str(exc)}))
                    last_sent = last_beat = now
                else:
                    key = _key(body)
                    if key != last_key or due:
                        yield _sse("snapshot", body.model_dump_json())
                        last_key, last_sent, last_beat, first = key, now, now, False
            if now - last_beat >= STREAM_HEARTBEAT_S:
                yield ": ping\n\n"
                last_beat = now
            await asyncio.sleep(STREAM_TICK_S)
        yield _sse("bye", json.dumps({"detail": "stream lifetime reached; reconnect"}))
    finally:
        streams.active -= 1
        metrics.open.dec()


@router.get("/v1/stream", summary="Live dashboard snapshots (Server-Sent Events)",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "`event: snapshot` with the body of "
                                            "GET /v1/dashboard, `: ping` keep-alives"},
                       503: {"description": "too many streams: poll GET /v1/dashboard"}})
async def stream(request: Request, node: NodeDep, caller: Viewer) -> StreamingResponse:
    """A new snapshot whenever something shown changes (checked every quarter second),
    and at least every two seconds. The stream ends after five minutes; reconnect."""
    streams = streams_of(request)
    if streams.active >= STREAM_LIMIT:
        raise HTTPException(503, f"{streams.active} dashboard streams already open; "
                                 "poll GET /v1/dashboard instead",
                            headers={"Retry-After": "30"})
    return StreamingResponse(
        _stream(node, caller, streams, changes_of(node)), media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
