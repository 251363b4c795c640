"""Today's Azure topologies end to end on real parts: the IMDS emulator over HTTP, agents,
two coordinators, ZooKeeper; the platform walks zone by zone (zonal VMs) or fault domain
by fault domain (a Flexible scale set), and the ground-truth checker judges the domain
budget in the product's unit (`registry.domains`), never the coordinator's records.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from quorumgate_testbed.rollout import GroupSpec, RolloutSpec, Summary, rollout_stack


def intervals_by_domain(rollout: Any, summary: Summary) -> dict[str, list[tuple[float, float]]]:
    """When each walked domain's acknowledged events had their VMs down (the platform's
    own account: started, ended)."""
    out: dict[str, list[tuple[float, float]]] = {}
    for report in summary.events:
        view = rollout.emu.event(report.event_id)
        if view["start_cause"] == "ack":
            out.setdefault(report.domain, []).append((view["started_at"], view["ended_at"]))
    return out


def test_zonal_rollout_walks_zone_by_zone(zk_hosts: str, zk_cluster: str) -> None:
    """Nine zonal VMs (zone i % 3 + 1, every one reporting UD 0): one event per VM, zone
    after zone. `two-in-1` keeps vm-3 and vm-6 in zone 1: their events are acknowledged
    one after the other, never together; everything is acknowledged, nothing forced."""
    spec = RolloutSpec(cluster={"topology": "zonal", "vms": 9},
                       groups=[GroupSpec("spread", ["vm-0", "vm-1", "vm-2"]),
                               GroupSpec("two-in-1", ["vm-3", "vm-6", "vm-4"])],
                       speed=300, timeout_s=90)
    with rollout_stack(spec, zk_hosts, zk_cluster, out=lambda line: None) as rollout:
        assert rollout.domain_name == "zone" and rollout.split == "vm"
        summary = rollout.run()
        views = {r.event_id: rollout.emu.event(r.event_id) for r in summary.events}
    assert summary.completed, summary.table()
    assert summary.violations == []
    assert (summary.topology, summary.maintenance_domain) == ("zonal", "zone")
    assert summary.walk == ["zone 1", "zone 2", "zone 3"] and summary.walked_in_order
    assert [d.vms for d in summary.domains] == [["vm-0", "vm-3", "vm-6"],
                                                ["vm-1", "vm-4", "vm-7"],
                                                ["vm-2", "vm-5", "vm-8"]]
    assert summary.acknowledged == 9 and summary.forced == 0, summary.table()
    by_vm = {v["resources"][0]: v for v in views.values()}
    first, second = sorted((by_vm["vm-3"], by_vm["vm-6"]), key=lambda v: v["started_at"])
    assert second["started_at"] >= first["ended_at"], "two of two-in-1's replicas at once"


def test_flex_rollout_walks_fault_domain_by_fault_domain(zk_hosts: str,
                                                         zk_cluster: str) -> None:
    """A Flexible scale set over 3 fault domains, no update domains: FD 0's event would
    take two of `two-in-fd0` (min 2): held, then forced at NotBefore; FD 1 and FD 2 are
    acknowledged."""
    spec = RolloutSpec(cluster={"topology": "flex", "vms": 9, "fds": 3},
                       groups=[GroupSpec("spread", ["vm-0", "vm-1", "vm-2"]),
                               GroupSpec("two-in-fd0", ["vm-3", "vm-6", "vm-4"])],
                       speed=300, timeout_s=90)
    with rollout_stack(spec, zk_hosts, zk_cluster, out=lambda line: None) as rollout:
        assert rollout.domain_name == "fault domain" and rollout.split == "domain"
        assert all(ud is None for ud in rollout.ud_of.values())
        summary = rollout.run()
    assert summary.completed, summary.table()
    assert summary.violations == []
    assert summary.maintenance_domain == "fault domain"
    assert summary.walk == ["FD 0", "FD 1", "FD 2"] and summary.walked_in_order
    fd0, fd1, fd2 = summary.domains
    assert (fd0.forced, fd0.acknowledged) == (1, 0), summary.table()
    assert (fd1.acknowledged, fd2.acknowledged) == (1, 1), summary.table()
    [held] = [e for e in summary.events if e.domain == "FD 0"]
    assert "group two-in-fd0" in held.held_reason, held
    assert all(e.ud == -1 for e in summary.events), "no update domain in a Flexible set"


def test_zonal_events_all_at_once_are_acknowledged_one_zone_at_a_time(
        zk_hosts: str, zk_cluster: str) -> None:
    """Every zone's events scheduled together with an hour of notice: the budget (one
    zone, max_concurrent_uds 1) serializes the approvals zone by zone; counted in the
    update domains zonal VMs report (all 0) they would all go at once."""
    spec = RolloutSpec(cluster={"topology": "zonal", "vms": 6},
                       groups=[GroupSpec("spread", ["vm-0", "vm-1", "vm-2"])],
                       walk="together", notice_s=3600, speed=300, timeout_s=90)
    with rollout_stack(spec, zk_hosts, zk_cluster, out=lambda line: None) as rollout:
        summary = rollout.run()
        by_zone = intervals_by_domain(rollout, summary)
    assert summary.completed, summary.table()
    assert summary.violations == []
    assert summary.acknowledged == 6 and summary.forced == 0, summary.table()
    spans = sorted((min(s for s, _ in v), max(e for _, e in v), zone)
                   for zone, v in by_zone.items())
    assert len(spans) == 3
    for (_, end, zone), (start, _, nxt) in zip(spans, spans[1:], strict=False):
        assert start >= end, f"{nxt} went down while {zone} was still down"


def test_zonal_demo_json(zk_hosts: str) -> None:
    """`quorumgate demo --topology zonal --once --json`, as the README shows it."""
    env = {**os.environ, "ZK_HOSTS": zk_hosts}
    done = subprocess.run([sys.executable, "-m", "quorumgate.cli", "demo", "--topology",
                           "zonal", "--once", "--json", "--speed", "120", "--timeout", "80"],
                          capture_output=True, text=True, env=env, timeout=150, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["completed"] and summary["violations"] == []
    assert summary["topology"] == "zonal" and summary["maintenance_domain"] == "zone"
    assert summary["walk"] == ["zone 1", "zone 2", "zone 3"] and summary["walked_in_order"]
    assert summary["acknowledged"] > 0
    assert summary["acknowledged"] + summary["forced"] == len(summary["events"]) == 15
    assert "platform walks the cluster zone by zone" in done.stderr
