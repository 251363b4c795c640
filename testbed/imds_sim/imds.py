"""The IMDS side of the emulator: one ASGI handler for `/metadata/...` and `/vms/<vm>/...`.

A hand-written pipeline rather than FastAPI routes, because the service's own rules
(405 vs 404, duplicate query names, case-sensitive paths, exact error bodies,
dropping the connection of a VM that is down) are not a web framework's defaults.

Order of checks, each answering at once:
    unknown VM 404 -> VM down: connection dropped -> throttled 429 ->
    X-Forwarded-For 400 -> Metadata header 400 -> method 405 -> duplicate query 400 ->
    unknown path 404 -> api-version 400 -> format 400 -> injected fault -> document.
"""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from imds_sim import documents
from imds_sim.faults import Fault
from imds_sim.model import SimulationError, UnknownVM
from imds_sim.schemas import FaultKind
from imds_sim.state import EmulatorState
from imds_sim.versions import Category, all_versions, is_supported, newest

DROP_EXTENSION = "imds_sim.drop"
"""Scope extension set by `imds_sim.server`'s protocol: a callable that aborts the socket."""

JSON = "application/json; charset=utf-8"
TEXT = "text/plain; charset=utf-8"

NO_METADATA = "Bad request. Required metadata header not specified"
NO_VERSION = (
    "Bad request. api-version was not specified in the request. "
    "For more information refer to aka.ms/azureimds"
)
BAD_VERSION = (
    "Bad request. api-version is invalid or was not specified in the request. "
    "For more information refer to aka.ms/azureimds"
)
FORWARDED = "Bad request. Forwarded requests are not allowed"
NOT_FOUND = "Not found"
NOT_ALLOWED = "Method not allowed"
THROTTLED = "Too many requests"
INTERNAL = "Internal server error. Retry after some time"
LEAF_NEEDS_TEXT = "Bad request. Leaf nodes are only available with format=text"
BAD_FORMAT = "Bad request. Unsupported format"
MALFORMED_BODY = "Bad request. Malformed StartRequests payload"


class Drop(Exception):
    """This request gets no answer: the connection is closed (VM down or fault)."""


def error(status: int, message: str, **extra: Any) -> Response:
    return Response(documents.dumps({"error": message, **extra}), status, media_type=JSON)


def status_fault(status: int) -> Response:
    message = {429: THROTTLED, 500: INTERNAL}.get(status)
    if message is None:
        try:
            message = HTTPStatus(status).phrase
        except ValueError:
            message = "Error"
    return error(status, message)


def split_vm(path: str, default_vm: str) -> tuple[str | None, str]:
    """`/metadata/...` -> (default VM, path); `/vms/<vm>/...` -> (vm, rest)."""
    if path == "/metadata" or path.startswith("/metadata/"):
        return default_vm, path
    parts = path.split("/", 3)  # "", "vms", name, rest
    if len(parts) >= 3 and parts[1] == "vms" and parts[2]:
        return parts[2], "/" + (parts[3] if len(parts) > 3 else "")
    return None, path


def classify(path: str) -> tuple[str | None, list[str]]:
    """The endpoint (`instance`, `scheduledevents`, `versions`) and the route below it."""
    segments = path.split("/")[1:]
    if segments and segments[-1] == "":
        segments.pop()  # one trailing slash is tolerated
    if len(segments) < 2 or segments[0] != "metadata" or "" in segments:
        return None, []
    head, below = segments[1], segments[2:]
    if head == "instance":
        return "instance", below
    if head in {"scheduledevents", "versions"} and not below:
        return head, []
    return None, []


class ImdsHandler:
    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            response = await self.handle(request)
        except UnknownVM:  # the cluster was replaced while this request was under way
            response = error(404, NOT_FOUND)
        except Drop:
            await drop_connection(scope, send)
            return
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        state, sim = self.state, self.state.sim
        vm, path = split_vm(request.scope["path"], sim.default_vm)
        if vm is None:
            return error(404, NOT_FOUND)
        if not sim.has_vm(vm):
            return error(404, f"Not found. No simulated VM {vm!r} here")
        if sim.is_down(vm, state.now()):
            raise Drop
        if not state.limiter.allow(vm, sim.rate_limit_per_s):
            return error(429, THROTTLED)

        headers = request.headers
        if "x-forwarded-for" in headers:
            return error(400, FORWARDED)
        if headers.get("metadata", "").strip().lower() != "true":
            return error(400, NO_METADATA)
        method = request.method
        endpoint, route = classify(path)
        if method not in {"GET", "POST"} or (method == "POST" and endpoint != "scheduledevents"):
            return error(405, NOT_ALLOWED)
        pairs = parse_qsl(request.scope["query_string"].decode("latin-1"), keep_blank_values=True)
        names = [name for name, _ in pairs]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            return error(400, f"Bad request. Duplicate query parameter {duplicates[0]!r}")
        if endpoint is None:
            return error(404, NOT_FOUND)
        params = dict(pairs)

        if endpoint == "versions":
            return await self.faulted(vm, endpoint, method) or Response(
                documents.dumps({"apiVersions": all_versions()}), media_type=JSON
            )

        category = Category(endpoint)
        version = params.get("api-version", "")
        if not version:
            return error(400, NO_VERSION, **{"newest-versions": newest(category)})
        if not is_supported(category, version):
            return error(400, BAD_VERSION, **{"newest-versions": newest(category)})
        fmt = params.get("format")

        if category is Category.SCHEDULED_EVENTS:
            if fmt not in (None, "json"):
                return error(400, BAD_FORMAT)
            if method == "POST":
                body = await request.body()
                return await self.faulted(vm, endpoint, method) or self.approve(vm, version, body)
            return await self.faulted(vm, endpoint, method) or self.scheduled_events(
                vm, version, headers.get("if-none-match")
            )

        if fmt not in (None, "json", "text"):
            return error(400, BAD_FORMAT)
        extended = params.get("extended", "").lower() == "true"
        cluster = sim.cluster
        config = cluster.by_name.get(vm)
        if config is None:
            raise UnknownVM(vm)
        doc = documents.instance_document(cluster, config, version, extended)
        try:
            node = documents.walk(doc, route)
        except documents.NotFound:
            return error(404, NOT_FOUND)
        if documents.is_leaf(node) and fmt != "text":
            return error(400, LEAF_NEEDS_TEXT)
        faulted = await self.faulted(vm, endpoint, method)
        if faulted is not None:
            return faulted
        if fmt == "text":
            return Response(documents.as_text(node), media_type=TEXT)
        return Response(documents.dumps(documents.sorted_node(node)), media_type=JSON)

    # ------------------------------------------------------------ faults

    async def faulted(self, vm: str, endpoint: str, method: str) -> Response | None:
        """Apply the injected fault this request draws, if any.

        Returns the replacement response, or None to answer normally (after a delay
        for latency faults). Raises Drop for dropped connections.
        """
        fault = self.state.faults.take(vm, endpoint, method, self.state.now())
        if fault is None:
            return None
        kind = fault.kind
        if kind in (FaultKind.LATENCY, FaultKind.SLOW_FIRST_CALL):
            await asyncio.sleep(self._real_delay(fault))
            if self.state.sim.is_down(vm, self.state.now()):
                raise Drop  # went down while the request hung
            return None
        if kind is FaultKind.STATUS:
            return status_fault(fault.status)
        if kind is FaultKind.DROP:
            raise Drop
        table = documents.MALFORMED if kind is FaultKind.MALFORMED_JSON else documents.WRONG_SHAPE
        return Response(table[endpoint], media_type=JSON)

    def _real_delay(self, fault: Fault) -> float:
        seconds = fault.latency_s if fault.kind is FaultKind.LATENCY else fault.delay_s
        return seconds if fault.real else self.state.clock.real_seconds(seconds)

    # ------------------------------------------------------------ scheduled events

    def scheduled_events(self, vm: str, version: str, if_none_match: str | None) -> Response:
        incarnation, events = self.state.sim.document(vm, self.state.now())
        body = documents.dumps(documents.scheduled_events_document(incarnation, events, version))
        tag = documents.etag(body)
        if if_none_match and documents.etag_matches(if_none_match, tag):
            return Response(status_code=304, headers={"ETag": tag})
        return Response(body, media_type=JSON, headers={"ETag": tag})

    def approve(self, vm: str, version: str, body: bytes) -> Response:
        parsed = parse_start_requests(body)
        if parsed is None:
            return error(400, MALFORMED_BODY)
        event_ids, incarnation = parsed
        try:
            self.state.sim.acknowledge(vm, event_ids, incarnation, version, self.state.now())
        except SimulationError as exc:
            return error(400, f"Bad request. {exc}")
        return Response(b"", status_code=200)


def parse_start_requests(body: bytes) -> tuple[list[str], int | str | None] | None:
    """`{"StartRequests": [{"EventId": ...}, ...], "DocumentIncarnation": 5 | "5"}`.

    Extra keys are ignored; None means malformed (not JSON, wrong shape, no ids).
    """
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(payload, dict):
        return None
    requests = payload.get("StartRequests")
    if not isinstance(requests, list) or not requests:
        return None
    ids = []
    for item in requests:
        if not isinstance(item, dict):
            return None
        event_id = item.get("EventId")
        if not isinstance(event_id, str) or not event_id.strip():
            return None
        ids.append(event_id.strip())
    incarnation = payload.get("DocumentIncarnation")
    if isinstance(incarnation, bool) or not isinstance(incarnation, int | str | None):
        return None
    return ids, incarnation


async def drop_connection(scope: Scope, send: Send) -> None:
    """Close the connection without a byte of answer, like a host that just went away.

    Under `imds_sim.server` (CLI, `running_emulator`) the socket is aborted and the
    client sees the server disconnect before any response (curl: "Empty reply from
    server", httpx: RemoteProtocolError). Under another server the response is cut
    after its status line instead, which clients also treat as a transport failure.
    """
    abort = scope.get("extensions", {}).get(DROP_EXTENSION)
    if abort is not None:
        abort()
        for _ in range(3):  # let the server notice the closed socket before we return
            await asyncio.sleep(0)
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"1")]})  # fmt: skip
    raise ConnectionAbortedError("imds_sim: simulated VM is unreachable")


class ImdsMiddleware:
    """Sends IMDS paths to the handler, everything else (control API, docs) onward."""

    def __init__(self, app: ASGIApp, handler: ImdsHandler) -> None:
        self.app = app
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path == "/metadata" or path.startswith(("/metadata/", "/vms/")):
                await self.handler(scope, receive, send)
                return
        await self.app(scope, receive, send)
