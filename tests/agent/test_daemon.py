"""The daemon as a whole: robustness to a hostile environment, and the CLI life cycle."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from kazoo.client import KazooClient

from imds_sim.testing import Emulator
from registry.layout import Layout
from registry.records import PlatformEvent, PlatformStatus, VMRegistration
from tests.helpers import wait_until

from .conftest import AgentFactory, CountingTransport, record


def test_agent_ignores_proxy_variables(zk: KazooClient, zk_layout: Layout, emulator: Emulator,
                                       make_agent: AgentFactory,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # a dead proxy
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    make_agent("vm-3")
    eid = emulator.schedule(ud=0, type="Freeze")["event_id"]
    wait_until(lambda: record(zk, zk_layout.event(eid), PlatformEvent), 10)


def test_malformed_documents_keep_the_last_good_one(zk: KazooClient, zk_layout: Layout,
                                                    emulator: Emulator,
                                                    make_agent: AgentFactory) -> None:
    agent = make_agent("vm-1")
    eid = emulator.schedule(ud=1, type="Reboot")["event_id"]
    wait_until(lambda: record(zk, zk_layout.event(eid), PlatformEvent), 10)
    emulator.fault(kind="malformed_json", vm="vm-1", endpoint="scheduledevents", count=2)
    emulator.fault(kind="wrong_shape", vm="vm-1", endpoint="scheduledevents", count=2)
    wait_until(lambda: agent.metrics.value("quorumgate_agent_imds_errors_total",
                                           {"code": "malformed"}) >= 4, 10)
    polls = agent.metrics.value("quorumgate_agent_polls_total")
    wait_until(lambda: agent.metrics.value("quorumgate_agent_polls_total") > polls + 1, 10)
    rec = record(zk, zk_layout.event(eid), PlatformEvent)
    assert rec is not None and rec.status == PlatformStatus.SCHEDULED  # not marked Gone
    assert agent.imds.last_events is not None and agent.imds.last_events.event(eid)
    assert agent.health()["ok"]


def test_agent_backs_off_while_imds_fails(emulator: Emulator, make_agent: AgentFactory) -> None:
    transport = CountingTransport()
    agent = make_agent("vm-2", transport=transport, imds_max_attempts=6, imds_deadline_s=30)
    emulator.fault(kind="status", status=500, vm="vm-2", endpoint="scheduledevents")
    time.sleep(0.3)
    before = transport.count()
    time.sleep(3.0)
    during = transport.count() - before
    # pacing alone would allow 12 requests in 3 s; the backoff leaves far fewer
    assert 2 <= during <= 8, during
    assert agent.metrics.value("quorumgate_agent_imds_errors_total", {"code": "500"}) >= 3
    emulator.clear_faults()
    polls = agent.metrics.value("quorumgate_agent_polls_total")
    wait_until(lambda: agent.metrics.value("quorumgate_agent_polls_total") > polls, 15)
    assert agent.health()["ok"]


def test_cli_runs_until_sigterm_and_leaves_at_once(zk: KazooClient, zk_hosts: str,
                                                   zk_layout: Layout,
                                                   emulator: Emulator) -> None:
    env = {**os.environ, "QG_CLUSTER": zk_layout.cluster, "QG_LOG_LEVEL": "warning"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "quorumgate.cli", "agent", "--zk-hosts", zk_hosts,
         "--imds-url", emulator.vm_url("vm-5"), "--clock", emulator.clock.spec,
         "--poll-interval", "6", "--group", "cli-group"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        reg = wait_until(lambda: record(zk, zk_layout.vm("vm-5"), VMRegistration), 20,
                         message="the CLI agent to register")
        assert reg.groups == ["cli-group"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert zk.exists(zk_layout.vm("vm-5")) is None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = proc.stdout.read().decode() if proc.stdout else ""
    assert "Traceback" not in output, output
