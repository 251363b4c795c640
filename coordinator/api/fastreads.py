"""The hot reads at wire speed: bytes prepared once per mirror change, served from the
event loop with `ETag`/`If-None-Match` (304) and gzip.

A dashboard wall, an HDFS rack script on every DataNode and orchestrators polling the
topology ask far more often than the cluster changes. The FastAPI route of each of these
reads stays (the OpenAPI schema, and every answer that is not a plain 200/304: a missing
or refused token, a mirror not loaded yet); this plain ASGI middleware answers the
common case before routing, dependency injection, the thread pool and model validation,
with the very bytes the route would send.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from coordinator.api.auth import RANKS, identify
from coordinator.api.derive import per_view
from coordinator.node import CoordinatorNode
from coordinator.store import ClusterView

GZIP_ABOVE = 1024
"""Bodies smaller than this go uncompressed (gzip would cost more than it saves)."""


@dataclass(frozen=True)
class Prepared:
    body: bytes
    gzipped: bytes | None
    etag: bytes
    """Strong validator of `body`; the gzipped representation's is `etag` + `-gz`."""


def prepare(body: bytes) -> Prepared:
    digest = hashlib.blake2b(body, digest_size=12).hexdigest().encode()
    gzipped = gzip.compress(body, compresslevel=5, mtime=0) if len(body) > GZIP_ABOVE else None
    return Prepared(body, gzipped, b'"' + digest + b'"')


def prepared(render: Callable[[ClusterView], bytes]) -> Callable[[ClusterView], Prepared]:
    """`render` with its result hashed and compressed once per mirror generation."""
    return per_view(lambda view: prepare(render(view)))


def _header(scope: dict[str, Any], name: bytes) -> bytes:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return b""


def _token(scope: dict[str, Any]) -> str | None:
    scheme, _, credentials = _header(scope, b"authorization").partition(b" ")
    if scheme.lower() != b"bearer" or not credentials.strip():
        return None
    return credentials.strip().decode("latin-1")


def _matches(if_none_match: bytes, etag: bytes) -> bool:
    if not if_none_match:
        return False
    tags = {t.strip().removeprefix(b"W/") for t in if_none_match.split(b",")}
    return b"*" in tags or etag in tags


class CachedReads:
    """Serve `routes` (path → rendering of a view) for a viewer, or pass the request on."""

    def __init__(self, app: Any, node: CoordinatorNode,
                 routes: dict[str, Callable[[ClusterView], bytes]]) -> None:
        self.app = app
        self.node = node
        self.routes = {path: prepared(render) for path, render in routes.items()}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        get = self.routes.get(scope.get("path", "")) if scope["type"] == "http" else None
        if get is None or scope["method"] not in ("GET", "HEAD") or scope.get("query_string"):
            await self.app(scope, receive, send)
            return
        caller = identify(self.node, _token(scope))
        if caller is None or RANKS.get(caller.role, 0) < RANKS["viewer"] or (
                not self.node.cache.ready):
            await self.app(scope, receive, send)  # the route says why (401, 403, 503)
            return
        ready = get(self.node.cache.view())
        scope["route"] = SimpleNamespace(path=scope["path"])  # for the request metrics
        gz = ready.gzipped is not None and b"gzip" in _header(scope, b"accept-encoding")
        etag = ready.etag[:-1] + b'-gz"' if gz else ready.etag
        headers = [(b"etag", etag), (b"cache-control", b"no-cache"),
                   (b"vary", b"Accept-Encoding, Authorization")]
        if _matches(_header(scope, b"if-none-match"), etag):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        body = ready.gzipped if gz and ready.gzipped is not None else ready.body
        headers += [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())]
        if gz:
            headers.append((b"content-encoding", b"gzip"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body",
                    "body": b"" if scope["method"] == "HEAD" else body})
