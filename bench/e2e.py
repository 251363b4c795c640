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

import contextlib
import logging
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from bench.hops import HopRecorder
from bench.procs import TOKEN
from bench.procs import coordinator as start_coordinator
from quorumgate_testbed.agentpool import AgentPool
from quorumgate_testbed.rollout import GroupSpec, RolloutSpec, rollout_stack
from registry.records import DecisionState

S = DecisionState


@dataclass
class E2EResult:
    vms: int
    agent_processes: int = 0
    delays_s: list[float] = field(default_factory=list)
    phases: list[dict[str, float]] = field(default_factory=list)
    """Per event, seconds from creation to: draining, approved, acknowledged (IMDS)."""
    hops: list[dict[str, float]] = field(default_factory=list)
    """Per event we acknowledged, seconds spent in each hop (`bench.hops.HOPS`)."""
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
        downtime_s: float = 2.0, agent_processes: int = 0,
        out=lambda line: None) -> E2EResult:
    """`agent_processes` 0: the agents are threads of this process; N: they run in N
    processes of an `AgentPool` (VM k in process k mod N)."""
    spec = RolloutSpec(cluster={"vms": vms, "fds": 3, "uds": uds}, groups=spread_groups(vms),
                       speed=1.0, poll_interval_s=poll_s, downtime_s=downtime_s,
                       coordinators=0, register_timeout_s=max(30.0, 0.3 * vms))
    cluster = f"bench-e2e-{uuid.uuid4().hex[:8]}"
    result = E2EResult(vms=vms, agent_processes=agent_processes)
    counter = _GiveUps()
    quiet = [logging.getLogger(n) for n in ("agent", "kazoo", "coordinator", "quorumgate")]
    saved = [(lg, lg.level, lg.propagate) for lg in quiet]
    for lg in quiet:
        lg.setLevel(logging.WARNING)
        lg.propagate = False
        lg.addHandler(counter)
    started = time.perf_counter()
    try:
        with contextlib.ExitStack() as stack:
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="qg-bench-e2e-"))
            pool = (stack.enter_context(AgentPool(agent_processes, Path(workdir)))
                    if agent_processes else None)
            rollout = stack.enter_context(rollout_stack(
                spec, hosts, cluster, out=out, agent_host=pool.host if pool else None))
            coordinator = start_coordinator(hosts, cluster, Path(workdir), resync_s=1.0,
                                            extra=("--clock", rollout.clock.spec))
            try:
                coordinator.wait_mirrored(vms, len(spec.groups), TOKEN)
                began = rollout.watcher.start_at = rollout.clock.now()
                recorder = HopRecorder(rollout.watcher.client, rollout.layout, rollout.clock)
                for k in range(events):
                    eid = rollout.schedule_ud(k % uds)
                    recorder.follow(eid, tuple(rollout.emu.event(eid)["resources"]))
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
                    seen = rollout.emu.event(report.event_id)
                    created = seen["created_at"]
                    if report.event_id in recorder.events:
                        posts = [a["at"] for a in seen["acks"]]
                        hops = recorder.finish(report.event_id, created,
                                               min(posts) if posts else None, decision).hops()
                        if hops is not None:
                            result.hops.append(hops)
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
