"""Health gates and webhook notifications against real local HTTP endpoints and commands."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from coordinator.gates import GateRunner, run_gate
from coordinator.notify import Notifier, notification_for
from coordinator.safety import Change
from registry.records import Decision, DecisionState, EventType, PlatformEvent, PlatformStatus
from tests.helpers import wait_until

S = DecisionState


class Endpoint:
    def __init__(self) -> None:
        self.status = 200
        self.received: list[dict] = []


@pytest.fixture
def endpoint() -> Iterator[tuple[Endpoint, str]]:
    state = Endpoint()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self.send_response(state.status)
            self.end_headers()
            self.wfile.write(b"lag 3s")

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length", 0))
            state.received.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_gates_by_url_and_command(endpoint: tuple[Endpoint, str]) -> None:
    state, url = endpoint
    assert run_gate(f"{url}/health", 5).ok
    state.status = 503
    failing = run_gate(f"{url}/health", 5)
    assert not failing.ok and "HTTP 503" in failing.detail
    assert run_gate("exit 0", 5).ok
    result = run_gate("echo lagging >&2; exit 3", 5)
    assert not result.ok and "exit 3" in result.detail and "lagging" in result.detail
    assert "timed out" in run_gate("sleep 5", 0.2).detail
    assert not run_gate("http://127.0.0.1:9/nothing-listens", 1).ok


def test_gate_runner_caches_and_refreshes_in_the_background(
        endpoint: tuple[Endpoint, str]) -> None:
    state, url = endpoint
    runner = GateRunner(ttl_s=0.2)
    try:
        assert runner.results({"g": f"{url}/h"}) == {}, "not yet checked: not safe"
        wait_until(lambda: runner.results({"g": f"{url}/h"}).get("g"), 5)
        assert runner.results({"g": f"{url}/h"})["g"].ok
        state.status = 500
        wait_until(lambda: not runner.results({"g": f"{url}/h"})["g"].ok, 5)
    finally:
        runner.close()


def _event() -> PlatformEvent:
    return PlatformEvent(event_id="E1", event_type=EventType.REBOOT,
                         status=PlatformStatus.SCHEDULED, resources=["vm-0", "vm-5"])


def test_notifications_say_what_needs_a_human(endpoint: tuple[Endpoint, str]) -> None:
    state, url = endpoint
    notifier = Notifier(f"{url}/hook")
    try:
        new = Decision(event_id="E1")
        held = Decision(event_id="E1", state=S.HELD, reason="unsafe: group g ...")
        forced = held.model_copy(update={"state": S.FORCED, "reason": "platform started"})
        notifier.on_change(Change(None, held), _event())
        notifier.on_change(Change(held, held.model_copy(update={"reason": "same hold"})),
                           _event())  # still held: no second message
        notifier.on_change(Change(held, forced), _event())
        notifier.on_change(Change(new, new.model_copy(update={"state": S.DRAINING})), _event())
        wait_until(lambda: len(state.received) == 2, 5)
        assert [m["kind"] for m in state.received] == ["held", "forced"]
        assert state.received[0]["text"].startswith(
            "quorumgate: event E1 (Reboot on vm-0, vm-5) held: unsafe: group g")
    finally:
        notifier.close()


def test_deadline_and_stuck_notifications() -> None:
    held = Decision(event_id="E1", state=S.HELD, reason="unsafe")
    best = held.model_copy(update={"best_effort": True})
    assert notification_for(Change(held, best), _event())["kind"] == "deadline"
    done = Decision(event_id="E1", state=S.COMPLETED, reason="waiting")
    stuck = done.model_copy(update={"reason": "stuck: waiting for vm-0"})
    assert notification_for(Change(done, stuck), _event())["kind"] == "stuck"
