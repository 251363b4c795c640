"""Prometheus metrics and `/healthz` for one agent.

Each agent owns its CollectorRegistry, so the demo and tests can run many agents in one
process without metric-name collisions.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

log = logging.getLogger(__name__)


class AgentMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.polls = Counter("quorumgate_agent_polls_total",
                             "Scheduled-events polls answered by IMDS", registry=self.registry)
        self.imds_errors = Counter("quorumgate_agent_imds_errors_total",
                                   "IMDS errors by status code or reason", ["code"],
                                   registry=self.registry)
        self.hooks = Counter("quorumgate_agent_hooks_total", "Hooks run by action and result",
                             ["action", "result"], registry=self.registry)
        self.acks = Counter("quorumgate_agent_acks_total",
                            "StartRequests acknowledgements sent, by result", ["result"],
                            registry=self.registry)
        self.registered = Gauge("quorumgate_agent_registered",
                                "1 while the VM is registered in ZooKeeper",
                                registry=self.registry)
        self.events = Gauge("quorumgate_agent_events", "Events in the last IMDS document",
                            registry=self.registry)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """A sample's current value (0 when absent) — for tests and the demo."""
        return self.registry.get_sample_value(name, labels or {}) or 0.0


class HealthServer:
    """A tiny threaded HTTP server: `/healthz` (JSON, 503 when unhealthy) and `/metrics`."""

    def __init__(self, host: str, port: int, metrics: AgentMetrics,
                 health: Callable[[], dict[str, Any]]) -> None:
        handler = _handler(metrics, health)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.2},
                                        name=f"health-{port}", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(metrics: AgentMetrics, health: Callable[[], dict[str, Any]]) -> type:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            if self.path.split("?")[0] == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(metrics.registry))
            elif self.path.split("?")[0] == "/healthz":
                state = health()
                code = 200 if state.get("ok") else 503
                self._send(code, "application/json", json.dumps(state).encode())
            else:
                self._send(404, "text/plain", b"not found\n")

        def _send(self, code: int, ctype: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug("health: " + format, *args)

    return Handler
