"""On-call visibility: an agent logs the first sight of each event (held ones too);
a failed drain hook is logged with its exit code and the tail of its output (stdout and
stderr), by a real agent answering a real drain request in ZooKeeper; `quorumgate agent
--log-format json` writes one JSON object per line."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from agent.hooks import HookResult, log_tail
from imds_sim.testing import Emulator
from registry.codec import encode
from registry.layout import Layout
from registry.records import DrainRecord, DrainStatus, DrainWant, PlatformEvent
from tests.helpers import wait_until

from .conftest import AgentFactory, record

ROOT = Path(__file__).resolve().parents[2]


def test_log_tail_and_summary() -> None:
    detail = "line 1\nline 2\n\nstderr: no quorum\n[exit code 3]"
    assert log_tail(detail, lines=2) == "line 2 | stderr: no quorum"
    assert HookResult(False, "failed", detail, exit_code=3).summary() == (
        "failed with exit code 3")
    assert HookResult(False, "failed", "", exit_code=-9).summary() == (
        "failed: killed by signal 9")
    assert HookResult(False, "failed", "", http_status=500).summary() == "failed with HTTP 500"
    assert len(log_tail("x" * 5000)) == 600


def test_failed_drain_hook_is_logged_with_exit_code_and_stderr_tail(
        zk: KazooClient, zk_layout: Layout, make_agent: AgentFactory,
        caplog: pytest.LogCaptureFixture) -> None:
    hook = {"command": "echo draining $QG_VM; echo 'patronictl: no healthy replica' >&2; "
                       "exit 3", "timeout_s": 10}
    caplog.set_level(logging.INFO, logger="agent")
    make_agent("vm-3", drain_hook=hook)
    zk.create(zk_layout.drain("vm-3"), encode(DrainRecord(
        vm="vm-3", event_id="E-fail", want=DrainWant.DRAINED)), makepath=True)
    rec = wait_until(lambda: (r := record(zk, zk_layout.drain("vm-3"), DrainRecord))
                     and r.status is DrainStatus.FAILED and r, 10)
    assert rec.detail.endswith("[exit code 3]")
    lines = [r for r in caplog.records if "drain hook for event E-fail " in r.getMessage()
             and r.levelno >= logging.WARNING]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert lines[0].getMessage() == (
        "vm-3: drain hook for event E-fail failed with exit code 3; output tail: "
        "draining vm-3 | patronictl: no healthy replica")


def test_agent_log_format_json(zk_hosts: str, zk_layout: Layout) -> None:
    """The real daemon: its first lines are JSON objects; SIGTERM stops it (exit 0)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QG_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "quorumgate.cli", "agent", "--log-format", "json",
         "--zk-hosts", zk_hosts, "--cluster", zk_layout.cluster, "--imds-url",
         "http://127.0.0.1:9", "--vm-name", "vm-json"],
        cwd=ROOT, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        assert proc.stderr is not None
        first = json.loads(proc.stderr.readline())
        assert first["level"] == "INFO" and first["logger"] == "agent"
        assert first["msg"].startswith("agent starting (cluster ")
        assert first["ts"].endswith("Z") and "thread" in first
    finally:
        proc.terminate()
        proc.wait(20)
    assert proc.returncode == 0


def test_first_sight_of_an_event_is_logged_once_even_when_nobody_approves_it(
        zk: KazooClient, zk_layout: Layout, emulator: Emulator, make_agent: AgentFactory,
        caplog: pytest.LogCaptureFixture) -> None:
    """A held event never reaches a hook: the VM's log still says when it first saw it."""
    caplog.set_level(logging.INFO, logger="agent")
    agent = make_agent("vm-1")
    eid = emulator.schedule(ud=1, type="Reboot", downtime_s=60)["event_id"]
    wait_until(lambda: record(zk, zk_layout.event(eid), PlatformEvent), 10)
    polls = agent.metrics.value("quorumgate_agent_polls_total")
    wait_until(lambda: agent.metrics.value("quorumgate_agent_polls_total") >= polls + 3, 10)
    lines = [r.getMessage() for r in caplog.records if f"sees event {eid}" in r.getMessage()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"vm-1 sees event {eid}: Reboot Scheduled, NotBefore ")
    assert lines[0].endswith("Resources vm-1, vm-4")
