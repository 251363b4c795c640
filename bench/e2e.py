"""End to end with real agents: an event appearing in IMDS -> its acknowledgement received.

`quorumgate_testbed.rollout` supplies the IMDS emulator, one real agent per VM (each with its own
ZooKeeper session and IMDS base URL, restarted across reboots by the VM supervisor) and
the ground-truth checker. The coordinator runs out of process (`quorumgate coordinator`,
as deployed), so it does not share a GIL with the agents. The clock is real time
(speed 1): agents poll IMDS every real second. No drain or restore hook is configured:
hooks take zero time.

Probe: one UD's event at a time, each announced once the previous one is over and its
VMs restored (a quiet cluster), so the delay is quorumgate's own and not a wait for
the previous UD. The delay is the emulator's: from the event's creation (in every VM's
document from then on) to the acknowledgement that started it.
"""

from __future__ import annotations

import logging
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import TOKEN
from bench.procs import coordinator as start_coordinator
from quorumgate_testbed.rollout import GroupSpec, RolloutSpec, rollout_stack
from registry.records import DecisionState

S = DecisionState


@dataclass
class E2EResult:
    vms: int
    delays_s: list[float] = field(default_factory=list)
    phases: list[dict[str, float]] = field(default_factory=list)
    """Per event, seconds from creation to: draining, approved, acknowledged (IMDS)."""
    forced: int = 0
    violations: list[str] = field(default_factory=list)
    completed: bool = True
    wall_s: float = 0.0
    cas_give_ups: int = 0
    """`events/<id>` writes an agent gave up after 10 compare-and-set conflicts."""


class _GiveUps(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "conflicting attempts" in record.getMessage():
            self.count += 1


def spread_groups(vms: int) -> list[GroupSpec]:
    return [GroupSpec(f"g-{k}", [f"vm-{3 * k + j}" for j in range(3)]) for k in range(vms // 3)]


def run(hosts: str, vms: int = 100, uds: int = 5, events: int = 15, poll_s: float = 1.0,
        downtime_s: float = 2.0, out=lambda line: None) -> E2EResult:
    spec = RolloutSpec(cluster={"vms": vms, "fds": 3, "uds": uds}, groups=spread_groups(vms),
                       speed=1.0, poll_interval_s=poll_s, downtime_s=downtime_s,
                       coordinators=0)
    cluster = f"bench-e2e-{uuid.uuid4().hex[:8]}"
    result = E2EResult(vms=vms)
    counter = _GiveUps()
    quiet = [logging.getLogger(n) for n in ("agent", "kazoo", "coordinator", "quorumgate")]
    saved = [(lg, lg.level, lg.propagate) for lg in quiet]
    for lg in quiet:
        lg.setLevel(logging.WARNING)
        lg.propagate = False
        lg.addHandler(counter)
    started = time.perf_counter()
    try:
        with (rollout_stack(spec, hosts, cluster, out=out) as rollout,
              tempfile.TemporaryDirectory(prefix="qg-bench-e2e-") as workdir):
            coordinator = start_coordinator(hosts, cluster, Path(workdir), resync_s=1.0,
                                            extra=("--clock", rollout.clock.spec))
            try:
                coordinator.wait_mirrored(vms, len(spec.groups), TOKEN)
                began = rollout.watcher.start_at = rollout.clock.now()
                for k in range(events):
                    eid = rollout.schedule_ud(k % uds)
                    deadline = time.monotonic() + 120
                    while not rollout.settled(eid):
                        if time.monotonic() > deadline:
                            result.completed = False
                            break
                        time.sleep(0.05)
                    if not result.completed:
                        break
                summary = rollout.summary(began)
                for report in summary.events:
                    decision = rollout.watcher.decisions.get(report.event_id)
                    created = rollout.emu.event(report.event_id)["created_at"]
                    first = {}
                    for t in decision.history if decision else []:
                        first.setdefault(t.to, t.at - created)
                    if report.acknowledged_after_s is not None:
                        first[S.ACKNOWLEDGED] = report.acknowledged_after_s
                    result.phases.append({k.value: v for k, v in first.items() if k in (
                        S.DRAINING, S.APPROVED, S.ACKNOWLEDGED)})
            finally:
                coordinator.stop()
    finally:
        for lg, level, propagate in saved:
            lg.removeHandler(counter)
            lg.setLevel(level)
            lg.propagate = propagate
    result.completed = result.completed and summary.completed
    result.violations = summary.violations
    result.forced = summary.forced
    result.delays_s = [e.acknowledged_after_s for e in summary.events
                       if e.start_cause == "ack" and e.acknowledged_after_s is not None]
    result.cas_give_ups = counter.count
    result.wall_s = time.perf_counter() - started
    return result
