"""End to end on real parts: IMDS emulator over HTTP, agents, two coordinators, ZooKeeper.

The checker reads ground truth (the emulator's up/down history and the agents' drain
reports), not the coordinator's own bookkeeping.
"""

from __future__ import annotations

from quorumgate_testbed.rollout import GroupSpec, RolloutSpec, rollout_stack


def test_sequential_rollout_is_safe_and_fast(zk_hosts: str, zk_cluster: str) -> None:
    spec = RolloutSpec(cluster={"vms": 9, "fds": 3, "uds": 3},
                       groups=[GroupSpec("spread", ["vm-0", "vm-1", "vm-2"]),
                               GroupSpec("bad", ["vm-3", "vm-6", "vm-4"])],
                       timeout_s=90)
    with rollout_stack(spec, zk_hosts, zk_cluster, out=lambda line: None) as rollout:
        summary = rollout.run()
    assert summary.completed, summary.table()
    assert summary.violations == []
    by_ud = {e.ud: e for e in summary.events}
    # UD 0 holds vm-3 and vm-6: two of "bad"'s three replicas. Never approved; forced.
    assert by_ud[0].start_cause == "not_before"
    assert "group bad: event would take vm-3, vm-6, leaving 1 of 3 available (min 2)" in (
        by_ud[0].held_reason)
    # The other UDs are acknowledged well before their 15 minutes of notice.
    for ud in (1, 2):
        assert by_ud[ud].start_cause == "ack", summary.table()
        assert by_ud[ud].acknowledged_after_s is not None
        assert by_ud[ud].acknowledged_after_s < 900


def test_acknowledge_together_one_ud_at_a_time(zk_hosts: str, zk_cluster: str) -> None:
    """Every UD's event at once: approvals are serialized by max_concurrent_uds=1."""
    spec = RolloutSpec(cluster={"vms": 9, "fds": 3, "uds": 3},
                       groups=[GroupSpec("spread", ["vm-0", "vm-1", "vm-2"])],
                       walk="together", notice_s=3600, timeout_s=90)
    with rollout_stack(spec, zk_hosts, zk_cluster, out=lambda line: None) as rollout:
        summary = rollout.run()
    assert summary.completed, summary.table()
    assert summary.violations == []
    assert summary.acknowledged == 3, summary.table()
    starts = sorted(e.started_at or 0 for e in summary.events)
    assert starts[0] < starts[1] < starts[2], "one update domain at a time"


def test_baselines_on_the_same_cluster(zk_hosts: str, zk_cluster: str) -> None:
    """Acknowledge-on-sight breaks the badly placed group; never-ack waits every notice."""
    groups = [GroupSpec("bad", ["vm-3", "vm-6", "vm-4"])]
    results = {}
    for strategy in ("ack-on-sight", "never-ack"):
        spec = RolloutSpec(cluster={"vms": 9, "fds": 3, "uds": 3}, groups=groups,
                           strategy=strategy, speed=240, timeout_s=90)
        with rollout_stack(spec, zk_hosts, f"{zk_cluster}-{strategy}",
                           out=lambda line: None) as rollout:
            results[strategy] = rollout.run()
    sight, never = results["ack-on-sight"], results["never-ack"]
    assert sight.completed and never.completed
    assert sight.acknowledged == 3 and sight.violations, "the checker sees the broken group"
    assert "group bad" in sight.violations[0]
    assert never.acknowledged == 0 and never.forced == 3 and never.violations == []
    assert never.rollout_s > 3 * 900, "three full notices, one after the other"
