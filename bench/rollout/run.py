"""Run one scenario: every strategy on the same cluster, seed and durations."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

from bench.rollout.baselines import AckOnSight, NeverAck, physical_limit
from bench.rollout.check import Incident, incidents
from bench.rollout.model import NOTICE_S, Cluster, Scenario, build
from bench.rollout.platform import PEvent, Platform, Queue, Recorder, Span
from bench.rollout.quorumgate import Quorumgate, Stats
from registry.records import Decision

STRATEGIES = (Quorumgate, NeverAck, AckOnSight)
LIMIT = "physical limit"
MAX_VIRTUAL_S = 7 * 86400.0


@dataclass
class StrategyResult:
    name: str
    rollout_s: float
    events: list[PEvent]
    spans: dict[str, list[Span]]
    incidents: list[Incident]
    held: int | None
    forced: int | None
    completed: bool
    wall_s: float
    stats: Stats | None = None
    ud_starts: list[float] = field(default_factory=list)
    decisions: dict[str, Decision] = field(default_factory=dict)
    """quorumgate only: the final decision records (with their history)."""

    @property
    def violations(self) -> list[Incident]:
        return [i for i in self.incidents if i.ours]

    @property
    def platform_breaks(self) -> list[Incident]:
        return [i for i in self.incidents if not i.ours]

    @property
    def ack_delays(self) -> list[float]:
        """Event appearing in IMDS -> the acknowledgement that started it."""
        return [e.started - e.created for e in self.events
                if e.cause == "ack" and e.started is not None]

    def ack_stats(self) -> tuple[float | None, float | None]:
        delays = self.ack_delays
        if not delays:
            return None, None
        return statistics.fmean(delays), percentile(delays, 99)


@dataclass
class ScenarioResult:
    scenario: Scenario
    cluster: Cluster
    results: dict[str, StrategyResult]
    limit_s: float
    safe_limit_s: float
    """The limit when every UD that no safe strategy can acknowledge (it holds two
    replicas of one group) waits its notice instead of its drain."""
    unsafe_uds: list[int]


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (the value at rank ceil(pct/100 * n))."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


def run_strategy(cluster: Cluster, strategy: type) -> StrategyResult:
    started = time.perf_counter()
    q = Queue()
    rec = Recorder()
    platform = Platform(cluster, q, rec)
    sim = strategy(cluster, q, platform, rec)
    platform.listener = sim
    platform.begin()
    q.run(MAX_VIRTUAL_S, lambda: sim.settled)
    for vm, spans in rec.spans.items():  # anything still open ends with the run
        for span in spans:
            span.end = min(span.end, q.now)
        del vm
    events = list(platform.events.values())
    stats = getattr(sim, "stats", None)
    decisions = dict(sim.zk.decisions) if isinstance(sim, Quorumgate) else {}
    held = len(stats.held) if stats is not None else None
    forced = sum(1 for e in events if e.cause == "not_before")
    return StrategyResult(
        name=sim.name, rollout_s=platform.finished_at if platform.done else q.now,
        events=events, spans=rec.spans, incidents=incidents(cluster.groups, rec.spans),
        held=held, forced=forced, completed=platform.done, wall_s=time.perf_counter() - started,
        stats=stats, decisions=decisions)


def unsafe_uds(cluster: Cluster) -> list[int]:
    out = set()
    for group in cluster.groups:
        by_ud: dict[int, int] = {}
        for m in group.members:
            ud = cluster.vms[m].ud
            by_ud[ud] = by_ud.get(ud, 0) + 1
        for ud, n in by_ud.items():
            if len(group.members) - n < group.min_available:
                out.add(ud)
    return sorted(out)


def run_scenario(scenario: Scenario) -> ScenarioResult:
    cluster = build(scenario)
    results = {s.name: run_strategy(cluster, s) for s in STRATEGIES}
    limit, spans, starts = physical_limit(cluster)
    results[LIMIT] = StrategyResult(name=LIMIT, rollout_s=limit, events=[], spans=spans,
                                    incidents=[], held=None, forced=None, completed=True,
                                    wall_s=0.0, ud_starts=starts)
    bad = unsafe_uds(cluster)
    safe = limit
    for ud in bad:
        names = cluster.in_ud(ud)
        safe += NOTICE_S[cluster.event_types[ud]] - max(cluster.vms[n].drain_s for n in names)
    return ScenarioResult(scenario, cluster, results, limit, safe, bad)
