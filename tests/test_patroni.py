"""A real Patroni/PostgreSQL cluster behind quorumgate (quorumgate_testbed.workloads.patroni).

The end-to-end test rolls maintenance over the three update domains of the Patroni
members (the real stack: IMDS emulator, agents, two coordinators, ZooKeeper; Patroni's
group from its own member records) under a continuous write load, and checks that every
acknowledged row is still there and that the leader only ever moved by our switchovers.

Needs Debian's `patroni`, `postgresql` and `python3-kazoo` (`make test` installs them:
`scripts/bootstrap.sh --with patroni`). Skipped, with the reason, only where they cannot
be installed (not Debian, not root); a failure under CI (`CI` set), and a failure where
they could have been installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from quorumgate_testbed.rollout import rollout_stack
from quorumgate_testbed.workloads.loadgen import analyze
from quorumgate_testbed.workloads.patroni import (
    PatroniWorkload,
    classify_leader_changes,
    find_patroni,
    parse_switchovers,
    patroni_spec,
)


def _under_ci() -> bool:
    return os.environ.get("CI", "").lower() not in {"", "0", "false", "no"}


def _cannot_install_why() -> str | None:
    if not Path("/etc/debian_version").exists() or shutil.which("apt-get") is None:
        return "not Debian/Ubuntu"
    if os.geteuid() != 0:
        sudo = shutil.which("sudo")
        if not sudo or subprocess.run([sudo, "-n", "true"], capture_output=True,
                                      check=False).returncode != 0:
            return "not root and no passwordless sudo"
    return None


@pytest.fixture
def patroni_here() -> None:
    problem = find_patroni()
    if problem is None:
        return
    why = _cannot_install_why()
    if _under_ci():
        pytest.fail(f"Patroni required under CI: {problem}", pytrace=False)
    if why is None:
        pytest.fail(f"{problem} (this machine can install them: `make test` does)",
                    pytrace=False)
    reason = f"Patroni test skipped: {problem}; cannot install here ({why})"
    warnings.warn(reason, stacklevel=1)  # shown in the summary even without -rs
    pytest.skip(reason)


# ---------------------------------------------------------------- pure parts


def test_analyze_counts_lost_writes_and_outages() -> None:
    acks = [(1, 1.0), (2, 1.1), (3, 1.2), (5, 4.2), (6, 4.3)]
    report = analyze(0.0, 5.0, acks, failures=[1.5, 2.0, 3.9], present=[1, 2, 5, 6, 4],
                     attempted=[1, 2, 3, 4, 5, 6])
    assert report.acknowledged == 5
    assert report.lost == 1 and report.lost_ids == [3]  # acknowledged, then gone
    assert report.unacknowledged_present == 1  # 4: committed, the ack never came
    assert report.longest_outage_s == pytest.approx(3.0)
    assert report.failed_write_s == pytest.approx(3.0)
    assert report.outages == [(1.2, 3.0)]
    assert report.failed_attempts == 3


def test_analyze_failing_tail_and_no_read_back() -> None:
    report = analyze(0.0, 10.0, [(1, 1.0), (2, 2.0)], failures=[2.5], present=None)
    assert report.longest_outage_s == pytest.approx(8.0)  # from the last ack to the end
    assert report.failed_write_s == pytest.approx(8.0)
    assert report.lost == -1 and not report.read_back
    quiet = analyze(0.0, 3.0, [(1, 1.0), (2, 2.9)], failures=[], present=[1, 2])
    assert quiet.failed_write_s == 0 and quiet.longest_outage_s == pytest.approx(1.9)


def test_parse_switchovers_keeps_accepted_requests_only() -> None:
    log = "\n".join([
        "2026-01-01T00:00:00Z patroni-switchover-drain: event e1 (Reboot) on vm-0: checking",
        '2026-01-01T00:00:01Z patroni-switchover-drain: switching over: '
        '{"leader":"vm-0","candidate":"vm-1"}',
        '2026-01-01T00:00:03Z patroni-switchover-drain: Patroni: Successfully switched over',
        '2026-01-01T00:01:01Z patroni-switchover-drain: switching over: '
        '{"leader":"vm-1","candidate":"vm-2"}',
        "2026-01-01T00:01:02Z patroni-switchover-drain: ERROR: switchover refused (HTTP 412)",
        "2026-01-01T00:02:00Z patroni-restore: not yet: Patroni: whatever",
    ])
    assert parse_switchovers(log) == [("vm-0", "vm-1")]


def test_leader_changes_split_into_switchovers_and_failovers() -> None:
    leaders = ["vm-0", None, "vm-1", "vm-1", None, "vm-1", None, "vm-2", "vm-0"]
    result = classify_leader_changes(leaders, [("vm-0", "vm-1"), ("vm-2", "vm-1")])
    assert result.changes == [("vm-0", "vm-1"), ("vm-1", "vm-2"), ("vm-2", "vm-0")]
    assert result.planned == [("vm-0", "vm-1")]
    assert result.unplanned == [("vm-1", "vm-2"), ("vm-2", "vm-0")]


def test_agent_settings_wire_the_deploy_hooks() -> None:
    workload = PatroniWorkload()
    settings = workload.agent_settings("vm-1")
    drain = settings["drain_hook"]["command"]
    assert drain[-1].endswith("deploy/hooks/patroni-switchover-drain.sh")
    assert Path(drain[-1]).is_file()
    member = workload.cluster.members["vm-1"]
    assert f"PATRONI_URL=http://127.0.0.1:{member.api_port}" in drain
    restore = settings["restore_hook"]["command"]
    assert any(part.endswith("deploy/hooks/patroni-restore.sh") for part in restore)
    assert "quorumgate_testbed.workloads.pgcheck" in restore
    assert workload.agent_settings("vm-5") == {}
    provider = workload.provider()
    assert provider.path == f"/service/{workload.scope}/members"
    assert provider.member_to_vm == "name" and provider.min_available == 2


# ---------------------------------------------------------------- the real cluster


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if text.encode() in cmdline:
                found.append(int(entry))
    return found


@pytest.mark.timeout(280)
def test_rollout_over_patroni_members_loses_no_write(
        patroni_here: None, zk_hosts: str, zk_cluster: str, zk: KazooClient) -> None:
    spec = patroni_spec("quorumgate", timeout_s=170)
    workload = spec.workload
    assert isinstance(workload, PatroniWorkload)
    with rollout_stack(spec, zk_hosts, zk_cluster, out=lambda line: None) as rollout:
        base = workload.cluster.base
        assert base is not None and zk.exists(f"/service/{workload.scope}/members")
        summary = rollout.run()
    report = summary.workload
    # Everything it started is stopped (the stack stops it on any exit).
    assert _processes_mentioning(str(base)) == []
    assert not base.exists()
    assert not zk.exists(f"/service/{workload.scope}")
    detail = f"{summary.table()}\n{report}"
    assert summary.completed, detail
    assert summary.violations == [], detail
    assert summary.acknowledged == 3 and summary.forced == 0, detail
    # Every commit acknowledged to the client is in the table the leader serves.
    assert report["acknowledged_writes"] > 500, detail
    assert report["lost_writes"] == 0, detail
    # The leader moved only by the drain hook's switchovers (the leader's UD has one).
    assert report["unplanned_failovers"] == 0, detail
    assert report["switchovers_by_hook"] >= 1, detail
    assert report["healthy_at_end"], detail
    assert all(count == 1 for count in report["reboots"].values()), detail
    # A switchover costs the writers about a second, not a failover's ttl.
    assert report["longest_write_outage_s"] < 8, detail
