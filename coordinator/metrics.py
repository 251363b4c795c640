"""Prometheus metrics of one coordinator replica (its own registry: several may share a process)."""

from __future__ import annotations

import platform
import threading
from collections import Counter as Tally
from collections.abc import Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from registry.records import (
    ROUTINE_CODES,
    Decision,
    DecisionState,
    PlatformEvent,
    PlatformStatus,
)

S = DecisionState


def version() -> str:
    """The installed quorumgate version ("unknown" when running from a bare checkout)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("quorumgate")
    except PackageNotFoundError:
        return "unknown"


def was_forced(decision: Decision) -> bool:
    """The platform started this event without our acknowledgement (a dry-run decision
    never counts: in dry-run we acknowledge nothing by design)."""
    if decision.dry_run:
        return False
    return decision.state is S.FORCED or any(t.to is S.FORCED for t in decision.history)


def forced_at(decision: Decision) -> float:
    for t in decision.history:
        if t.to is S.FORCED:
            return t.at
    return decision.state_since


def at_risk(decision: Decision, event: PlatformEvent | None) -> bool:
    """Will this event reach its NotBefore without us unless someone acts? A failed
    decision, or one held for a reason other than our own budget (`ROUTINE_CODES`),
    while the platform still has it Scheduled. Dry-run decisions are never at risk: they
    reach NotBefore by design."""
    if decision.dry_run or event is None or event.status is not PlatformStatus.SCHEDULED:
        return False
    if decision.state is S.FAILED:
        return True
    return decision.state is S.HELD and decision.code not in ROUTINE_CODES


class CoordinatorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)  # process_cpu_seconds_total, memory, open fds, start time
        PlatformCollector(registry=r)  # python_info
        self.build_info = Gauge("quorumgate_build_info",
                                "Always 1: the quorumgate and Python versions of this replica",
                                ["version", "python"], registry=r)
        self.build_info.labels(version(), platform.python_version()).set(1)
        self.events = Gauge("quorumgate_events",
                            "Events by decision state; dry_run=\"true\" for decisions taken "
                            "under the dry-run policy", ["state", "dry_run"], registry=r)
        self.reserved_vms = Gauge("quorumgate_reserved_vms",
                                  "VMs reserved by in-flight events", registry=r)
        self.held = Gauge("quorumgate_held_events", "Events held as unsafe or by an operator",
                          registry=r)
        self.unsafe = Gauge("quorumgate_unsafe_events",
                            "Held events being drained best-effort: the platform will start "
                            "them without our approval (alert on > 0)", registry=r)
        self.at_risk = Gauge("quorumgate_events_at_risk",
                             "Events that cannot finish before their NotBefore without help: "
                             "failed, or held for a reason other than the update-domain "
                             "budget, while still Scheduled (alert on > 0), by decision code",
                             ["code"], registry=r)
        self.forced = Counter("quorumgate_forced_events",
                              "Events the platform started without our acknowledgement, "
                              "counted once each when this replica first sees them "
                              "(dry-run decisions never count)", registry=r)
        self.leader = Gauge("quorumgate_leader", "1 while this replica leads", registry=r)
        self.zk_connected = Gauge("quorumgate_zookeeper_connected",
                                  "1 while connected to ZooKeeper", registry=r)
        self.passes = Counter("quorumgate_decision_passes", "Decision passes run", registry=r)
        self.passes_skipped = Counter(
            "quorumgate_decision_passes_skipped",
            "Passes skipped because the mirror had not caught up with the leader's own "
            "drain writes", registry=r)
        self.pass_seconds = Histogram("quorumgate_decision_pass_seconds",
                                      "Time to read, decide and write one pass", registry=r,
                                      buckets=(.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5))
        self.writes = Counter("quorumgate_decision_writes", "Decision writes by outcome",
                              ["outcome"], registry=r)
        self.time_to_approval = Histogram(
            "quorumgate_time_to_approval_seconds",
            "Clock seconds from an event's first sighting to our approval", registry=r,
            buckets=(1, 5, 10, 30, 60, 120, 300, 600, 900, 1800))
        self.transitions = Counter("quorumgate_transitions", "Decision transitions",
                                   ["to"], registry=r)
        self.started_at: float | None = None
        """Clock time this replica started: forced starts before it are not counted (they
        were, by the replica that saw them), so a restart does not replay old ones."""
        self._forced_seen: set[str] = set()
        self._lock = threading.Lock()

    def observe_decisions(self, decisions: Mapping[str, Decision],
                          events: Mapping[str, PlatformEvent] | None = None) -> None:
        """Decision gauges from every decision (and, given the platform events, the
        at-risk gauge); counts forced starts not counted before."""
        with self._lock:
            tally = Tally((d.state, d.dry_run) for d in decisions.values())
            for state in DecisionState:
                for dry in (False, True):
                    self.events.labels(state.value, "true" if dry else "false").set(
                        tally.get((state, dry), 0))
            self.reserved_vms.set(len({vm for d in decisions.values() for vm in d.reserved}))
            self.held.set(sum(n for (state, _), n in tally.items() if state is S.HELD))
            self.unsafe.set(sum(1 for d in decisions.values()
                                if d.state is S.HELD and d.best_effort))
            for d in decisions.values():
                if d.event_id in self._forced_seen or not was_forced(d):
                    continue
                self._forced_seen.add(d.event_id)
                if self.started_at is None or forced_at(d) >= self.started_at:
                    self.forced.inc()
            self._forced_seen &= set(decisions)  # forgotten events never come back
            if events is not None:
                risky = Tally(d.code.value for d in decisions.values()
                              if at_risk(d, events.get(d.event_id)))
                self.at_risk.clear()
                for code, n in risky.items():
                    self.at_risk.labels(code).set(n)
