"""Drain/restore requests in `drain/<vm>`: hooks run once, results reported with CAS."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from kazoo.client import KazooClient

from imds_sim.testing import Emulator
from registry.codec import encode
from registry.layout import Layout
from registry.records import DrainRecord, DrainStatus, DrainWant, PlatformEvent
from tests.helpers import wait_until

from .conftest import AgentFactory, record

HOOK = ("echo \"$QG_ACTION $QG_EVENT_ID $QG_EVENT_TYPE $QG_RESOURCES $QG_VM\" >> {log}; "
        "echo hook-output-for-$QG_ACTION")


def _request(zk: KazooClient, layout: Layout, vm: str, event_id: str, want: DrainWant,
             status: DrainStatus = DrainStatus.PENDING) -> None:
    data = encode(DrainRecord(vm=vm, event_id=event_id, want=want, status=status))
    path = layout.drain(vm)
    if zk.exists(path):
        zk.set(path, data)
    else:
        zk.create(path, data, makepath=True)


def _status(zk: KazooClient, layout: Layout, vm: str, *done: DrainStatus) -> DrainRecord | None:
    rec = record(zk, layout.drain(vm), DrainRecord)
    return rec if rec is not None and rec.status in done else None


def test_drain_then_restore_hooks(zk: KazooClient, zk_layout: Layout, emulator: Emulator,
                                  make_agent: AgentFactory, tmp_path: Path) -> None:
    log = tmp_path / "hook.log"
    hook = {"command": HOOK.format(log=log), "timeout_s": 10}
    make_agent("vm-1", drain_hook=hook, restore_hook=hook)
    eid = emulator.schedule(ud=1, type="Reboot")["event_id"]
    wait_until(lambda: record(zk, zk_layout.event(eid), PlatformEvent), 10)

    _request(zk, zk_layout, "vm-1", eid, DrainWant.DRAINED)
    rec = wait_until(lambda: _status(zk, zk_layout, "vm-1", DrainStatus.DRAINED,
                                     DrainStatus.FAILED), 10)
    assert rec.status == DrainStatus.DRAINED and "hook-output-for-drain" in rec.detail
    resources = ",".join(record(zk, zk_layout.event(eid), PlatformEvent).resources)
    assert log.read_text().splitlines() == [f"drain {eid} Reboot {resources} vm-1"]

    _request(zk, zk_layout, "vm-1", eid, DrainWant.RESTORED)
    rec = wait_until(lambda: _status(zk, zk_layout, "vm-1", DrainStatus.RESTORED), 10)
    assert "hook-output-for-restore" in rec.detail
    assert len(log.read_text().splitlines()) == 2


def test_hook_runs_once_per_request(zk: KazooClient, zk_layout: Layout,
                                    make_agent: AgentFactory, tmp_path: Path) -> None:
    log = tmp_path / "hook.log"
    hook = {"command": HOOK.format(log=log)}
    agent = make_agent("vm-2", drain_hook=hook)
    _request(zk, zk_layout, "vm-2", "E-1", DrainWant.DRAINED)
    wait_until(lambda: _status(zk, zk_layout, "vm-2", DrainStatus.DRAINED), 10)
    # the same request again (e.g. a confused writer resets it): not re-run in this process
    _request(zk, zk_layout, "vm-2", "E-1", DrainWant.DRAINED)
    wait_until(lambda: agent.metrics.value("quorumgate_agent_polls_total") >= 5, 10)
    assert len(log.read_text().splitlines()) == 1
    # a restarted agent finds the request reported done: not re-run either
    _request(zk, zk_layout, "vm-2", "E-1", DrainWant.DRAINED, DrainStatus.DRAINED)
    agent.stop()
    agent = make_agent("vm-2", drain_hook=hook)
    wait_until(lambda: agent.metrics.value("quorumgate_agent_polls_total") >= 4, 10)
    assert len(log.read_text().splitlines()) == 1
    # a new request runs
    _request(zk, zk_layout, "vm-2", "E-2", DrainWant.DRAINED)
    wait_until(lambda: (r := _status(zk, zk_layout, "vm-2", DrainStatus.DRAINED))
               and r.event_id == "E-2", 10)
    assert len(log.read_text().splitlines()) == 2


def test_hook_failure_reports_output_tail(zk: KazooClient, zk_layout: Layout,
                                          make_agent: AgentFactory) -> None:
    code = "import sys; print('x' * 4000); print('datanode refused to decommission'); sys.exit(4)"
    agent = make_agent("vm-3", drain_hook={"command": [sys.executable, "-c", code]})
    _request(zk, zk_layout, "vm-3", "E-1", DrainWant.DRAINED)
    rec = wait_until(lambda: _status(zk, zk_layout, "vm-3", DrainStatus.FAILED), 10)
    assert "datanode refused to decommission" in rec.detail and "exit code 4" in rec.detail
    assert len(rec.detail) <= 2048
    assert agent.metrics.value("quorumgate_agent_hooks_total",
                               {"action": "drain", "result": "failed"}) == 1


def test_hook_timeout_fails_and_polling_goes_on(zk: KazooClient, zk_layout: Layout,
                                                make_agent: AgentFactory) -> None:
    agent = make_agent("vm-4", drain_hook={"command": "sleep 30", "timeout_s": 1.0})
    _request(zk, zk_layout, "vm-4", "E-1", DrainWant.DRAINED)
    wait_until(lambda: _status(zk, zk_layout, "vm-4", DrainStatus.RUNNING), 5)
    polls = agent.metrics.value("quorumgate_agent_polls_total")
    rec = wait_until(lambda: _status(zk, zk_layout, "vm-4", DrainStatus.FAILED), 10)
    assert "timed out" in rec.detail
    assert agent.metrics.value("quorumgate_agent_polls_total") > polls  # not blocked
    assert agent.metrics.value("quorumgate_agent_hooks_total",
                               {"action": "drain", "result": "timeout"}) == 1


def test_no_hook_is_instantly_done_and_malformed_record_is_skipped(
        zk: KazooClient, zk_layout: Layout, make_agent: AgentFactory) -> None:
    agent = make_agent("vm-5")
    zk.create(zk_layout.drain("vm-5"), b'{"vm": "vm-5", "want": "sideways"}', makepath=True)
    wait_until(lambda: agent.metrics.value("quorumgate_agent_polls_total") >= 3, 10)
    assert agent.health()["ok"]
    _request(zk, zk_layout, "vm-5", "E-1", DrainWant.DRAINED)
    wait_until(lambda: _status(zk, zk_layout, "vm-5", DrainStatus.DRAINED), 10)


def test_a_drain_does_not_wait_behind_a_slow_imds(zk: KazooClient, zk_layout: Layout,
                                                  emulator: Emulator,
                                                  make_agent: AgentFactory) -> None:
    """The drain worker answers its watch in a thread of its own: a request that lands
    while the agent's loop waits on IMDS (here 4 real seconds per answer) is answered
    at once, not after that wait."""
    make_agent("vm-1")
    eid = emulator.schedule(ud=1, type="Reboot")["event_id"]
    wait_until(lambda: record(zk, zk_layout.event(eid), PlatformEvent), 10)
    emulator.fault(kind="latency", latency_s=4.0, real=True, vm="vm-1",
                   endpoint="scheduledevents")
    time.sleep(0.5)  # the loop is now inside a slow poll
    asked = time.monotonic()
    _request(zk, zk_layout, "vm-1", eid, DrainWant.DRAINED)
    wait_until(lambda: _status(zk, zk_layout, "vm-1", DrainStatus.DRAINED), 10)
    waited = time.monotonic() - asked
    emulator.clear_faults()
    assert waited < 2.0, f"the drain waited {waited:.1f} s behind the IMDS poll"
