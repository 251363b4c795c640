"""Hooks: a command or an HTTP call; success, failure, timeout, output tail."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent.config import HookConfig
from agent.hooks import TAIL_BYTES, HookContext, run_hook

CTX = HookContext("E1", "Reboot", ["vm-0", "vm-1"], 1900000000.0, "vm-0", "drain")


def test_no_hook_is_instantly_done() -> None:
    result = run_hook(HookConfig(), CTX)
    assert result.ok and result.result == "skipped"


def test_command_gets_event_in_environment() -> None:
    script = "echo $QG_EVENT_ID $QG_EVENT_TYPE $QG_RESOURCES $QG_NOT_BEFORE $QG_VM $QG_ACTION"
    result = run_hook(HookConfig(command=script), CTX)
    assert result.ok and result.result == "done"
    assert result.detail.strip() == "E1 Reboot vm-0,vm-1 1900000000.000 vm-0 drain"


def test_command_failure_keeps_output_tail() -> None:
    code = "import sys; sys.stdout.write('x' * 5000 + 'END'); sys.exit(3)"
    result = run_hook(HookConfig(command=[sys.executable, "-c", code]), CTX)
    assert not result.ok and result.result == "failed"
    assert result.detail.endswith("END\n[exit code 3]") and len(result.detail) <= TAIL_BYTES


def test_command_timeout_kills_the_process_group() -> None:
    began = time.monotonic()
    result = run_hook(HookConfig(command="echo started; sleep 30", timeout_s=0.5), CTX)
    assert time.monotonic() - began < 5
    assert not result.ok and result.result == "timeout"
    assert "timed out" in result.detail and "started" in result.detail


def test_missing_command_fails_cleanly() -> None:
    result = run_hook(HookConfig(command=["/nonexistent/hook"]), CTX)
    assert not result.ok and "cannot start" in result.detail


@pytest.fixture
def hook_server() -> Iterator[tuple[str, list[dict]]]:
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append(body)
            if self.path == "/slow":
                time.sleep(2)
            code = 200 if self.path in ("/ok", "/slow") else 503
            self.send_response(code)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"hi")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def test_http_hook(hook_server: tuple[str, list[dict]], monkeypatch: pytest.MonkeyPatch) -> None:
    url, received = hook_server
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # must be ignored
    ok = run_hook(HookConfig(url=f"{url}/ok"), CTX)
    assert ok.ok and ok.result == "done"
    assert received[0] == {"event_id": "E1", "event_type": "Reboot",
                           "resources": ["vm-0", "vm-1"], "not_before": 1900000000.0,
                           "duration_s": -1, "vm": "vm-0", "action": "drain"}
    bad = run_hook(HookConfig(url=f"{url}/bad"), CTX)
    assert not bad.ok and "503" in bad.detail
    slow = run_hook(HookConfig(url=f"{url}/slow", timeout_s=0.3), CTX)
    assert not slow.ok and slow.result == "timeout"
