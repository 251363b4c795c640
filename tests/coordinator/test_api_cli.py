"""`quorumgate coordinator`: config checks in process, and a real subprocess served over HTTP
(and HTTPS) on a real ZooKeeper, stopped gracefully by SIGTERM."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from kazoo.client import KazooClient

from coordinator.main import main
from coordinator.store import ensure_layout
from registry.layout import Layout
from tests.coordinator.test_api_support import OPERATOR, OPERATOR_NAME, VIEWER, register
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("QG_"):
            monkeypatch.delenv(key)


def test_check_prints_the_config_with_secrets_masked(capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Path) -> None:
    config = tmp_path / "coordinator.toml"
    config.write_text('[coordinator]\ncluster = "prod"\nport = 9000\n'
                      'tokens = {"file-token-123" = "viewer"}\n')
    assert main(["--config", str(config), "--check", "--zk-auth", "qg:s3cret"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["cluster"], shown["port"], shown["zk_auth"]) == ("prod", 9000, "qg:***")
    assert shown["tokens"] == [{"token": "file…", "role": "viewer"}]
    # flags win over the file; --token replaces the file's tokens
    assert main(["--config", str(config), "--check", "--port", "9100", "--token",
                 "flag-token-1234:operator", "--token", "other-token-99:viewer"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["port"] == 9100
    assert shown["tokens"] == [{"token": "flag…", "role": "operator"},
                               {"token": "othe…", "role": "viewer"}]


@pytest.mark.parametrize(("argv", "words"), [
    (["--token", "short:operator"], "at least 8 characters"),
    (["--token", "long-enough-token:admin"], "'viewer' or 'operator'"),
    (["--token", "no-role-given"], "TOKEN:ROLE"),
    (["--anonymous", "root"], "anonymous"),
    (["--port", "70000"], "port"),
    (["--cluster", "bad/name"], "cluster"),
    (["--clock", "sundial"], "clock"),
    (["--zk-auth", "nopassword"], "user:password"),
    (["--tls-cert", "cert.pem"], "give both or neither"),
    (["--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"],
     "does not exist"),
    (["--config", "/nonexistent/coordinator.toml"], "config file"),
    (["--port", "eighty"], "invalid int value"),
])
def test_bad_config_exits_2_with_a_message(capsys: pytest.CaptureFixture[str], argv: list[str],
                                           words: str) -> None:
    assert main([*argv, "--check"]) == 2
    assert words in capsys.readouterr().err


def test_check_fails_without_tokens_unless_anonymous_is_explicit(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["--check"]) == 2
    err = capsys.readouterr().err
    assert "no API tokens" in err and "QG_TOKENS" in err and "anonymous" in err
    assert main(["--check", "--anonymous", "viewer"]) == 0
    capsys.readouterr()
    monkeypatch.setenv("QG_TOKENS", "env-token-123456:operator")
    assert main(["--check"]) == 0


def test_environment_errors_name_the_variable(capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QG_PORT", "eighty")
    monkeypatch.setenv("QG_ZK_HOSTS", "zk1:notaport")
    monkeypatch.setenv("QG_TOKENS", "short:operator")
    assert main(["--check"]) == 2
    err = capsys.readouterr().err
    assert "QG_PORT='eighty' (port): Input should be a valid integer" in err
    assert "QG_ZK_HOSTS='zk1:notaport' (zk_hosts): 'zk1:notaport': port 'notaport'" in err
    assert "QG_TOKENS (tokens): tokens must be at least 8 characters" in err
    assert "short" not in err.replace("shortly", "")  # a token is never echoed
    monkeypatch.delenv("QG_PORT")
    assert main(["--check", "--resync", "0", "--token", "flag-token-1234:operator"]) == 2
    assert "--resync=0.0 (resync_s)" in capsys.readouterr().err


def test_unreachable_zookeeper_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    root = logging.getLogger()
    root_state = (root.level, list(root.handlers))
    try:
        code = main(["--zk-hosts", "127.0.0.1:1", "--start-timeout", "1", "--port", "0",
                     "--zk-session-timeout", "2"])
    finally:  # main() configures logging and signals for the whole process: undo that
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        root.setLevel(root_state[0])
        root.handlers[:] = root_state[1]
    assert code == 1
    assert "ERROR coordinator: cannot start on ZooKeeper 127.0.0.1:1" in capsys.readouterr().err


# ---------------------------------------------------------------- a real subprocess


@contextlib.contextmanager
def coordinator(*flags: str) -> Iterator[tuple[subprocess.Popen[str], str, list[str]]]:
    """`quorumgate coordinator FLAGS --port 0`: yields the process, its URL and its log."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "quorumgate.cli", "coordinator", "--host", "127.0.0.1",
         "--port", "0", *flags],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("QG_")})
    lines: queue.Queue[str] = queue.Queue()
    log: list[str] = []
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    threading.Thread(target=lambda: [log.append(x) for x in proc.stderr], daemon=True).start()
    try:
        try:
            line = lines.get(timeout=30)
        except queue.Empty:
            pytest.fail(f"no 'listening on' line; log: {''.join(log)[-2000:]}")
        match = re.search(r"listening on (https?://\S+)", line)
        assert match, line
        yield proc, match.group(1), log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_coordinator_subprocess_serves_and_stops_on_sigterm(
        zk_hosts: str, zk: KazooClient, zk_layout: Layout) -> None:
    ensure_layout(zk, zk_layout)
    register(zk, zk_layout, "vm-0", fd=0, ud=0)
    with coordinator("--zk-hosts", zk_hosts, "--cluster", zk_layout.cluster,
                     "--identity", "sub-1", "--resync", "0.2", "--log-level", "info",
                     "--token", f"{OPERATOR}:operator", "--token", f"{VIEWER}:viewer"
                     ) as (proc, url, log):
        assert url.startswith("http://127.0.0.1:")
        op = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {OPERATOR}"},
                          timeout=10)
        viewer = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {VIEWER}"},
                              timeout=10)
        ready = wait_until(lambda: (r := op.get("/readyz")).status_code == 200 and r.json(), 15)
        assert ready["identity"] == "sub-1"
        wait_until(lambda: op.get("/v1/status").json()["is_leader"], 15)
        assert [vm["name"] for vm in viewer.get("/v1/vms").json()] == ["vm-0"]
        assert httpx.get(f"{url}/v1/vms").status_code == 401
        assert viewer.put("/v1/groups/g", json={"members": ["vm-0"]}).status_code == 403
        r = op.put("/v1/groups/g", json={"members": ["vm-0"], "min_available": 0})
        assert r.status_code == 200, r.text
        wait_until(lambda: op.get("/v1/groups/g").status_code == 200, 10)
        assert viewer.get("/v1/audit").json()[-1]["actor"] == OPERATOR_NAME
        assert "quorumgate_leader 1.0" in httpx.get(f"{url}/metrics").text
        assert "swagger" in httpx.get(f"{url}/docs").text.lower()

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        text = "".join(log)
    wait_until(lambda: not zk.get_children(zk_layout.election), 10,
               message="the stopped coordinator to leave the election")
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ INFO coordinator\.\w+: ", text, re.M)
    assert "received SIGTERM; stopping" in text and "coordinator sub-1 stopped" in text


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_coordinator_subprocess_serves_https(zk_hosts: str, zk: KazooClient, zk_layout: Layout,
                                             tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    with coordinator("--zk-hosts", zk_hosts, "--cluster", zk_layout.cluster,
                     "--tls-cert", str(cert), "--tls-key", str(key), "--anonymous", "viewer"
                     ) as (proc, url, _):
        assert url.startswith("https://127.0.0.1:")
        with httpx.Client(base_url=url, verify=False, timeout=10) as c:
            wait_until(lambda: c.get("/readyz").status_code == 200, 15)
            assert c.get("/v1/vms").json() == []
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0


def test_coordinator_log_format_json(zk_hosts: str, zk: KazooClient, zk_layout: Layout) -> None:
    """`--log-format json`: every line the coordinator logs is one JSON object."""
    ensure_layout(zk, zk_layout)
    with coordinator("--zk-hosts", zk_hosts, "--cluster", zk_layout.cluster, "--identity",
                     "json-1", "--log-format", "json", "--log-level", "info",
                     "--anonymous", "viewer") as (proc, url, log):
        wait_until(lambda: httpx.get(f"{url}/readyz").status_code == 200, 15)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    records = [json.loads(line) for line in "".join(log).splitlines() if line.strip()]
    assert records, "nothing logged"
    assert {"ts", "level", "logger", "msg", "thread"} <= set(records[0])
    messages = [r["msg"] for r in records]
    assert any(m.startswith("coordinator json-1 started for cluster") for m in messages)
    assert "coordinator json-1 stopped" in messages
