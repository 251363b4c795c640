"""Prometheus metrics of one coordinator replica (its own registry: several may share a process)."""

from __future__ import annotations

from collections import Counter as Tally

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from registry.records import Decision, DecisionState


class CoordinatorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Gauge("quorumgate_events", "Events by decision state", ["state"],
                            registry=r)
        self.reserved_vms = Gauge("quorumgate_reserved_vms",
                                  "VMs reserved by in-flight events", registry=r)
        self.held = Gauge("quorumgate_held_events", "Events held as unsafe or by an operator",
                          registry=r)
        self.unsafe = Gauge("quorumgate_unsafe_events",
                            "Held events being drained best-effort: the platform will start "
                            "them without our approval (alert on > 0)", registry=r)
        self.forced = Gauge("quorumgate_forced_events",
                            "Events the platform started without our acknowledgement",
                            registry=r)
        self.leader = Gauge("quorumgate_leader", "1 while this replica leads", registry=r)
        self.zk_connected = Gauge("quorumgate_zookeeper_connected",
                                  "1 while connected to ZooKeeper", registry=r)
        self.passes = Counter("quorumgate_decision_passes", "Decision passes run", registry=r)
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

    def observe_decisions(self, decisions: dict[str, Decision]) -> None:
        tally = Tally(d.state for d in decisions.values())
        for state in DecisionState:
            self.events.labels(state.value).set(tally.get(state, 0))
        self.reserved_vms.set(len({vm for d in decisions.values() for vm in d.reserved}))
        self.held.set(tally.get(DecisionState.HELD, 0))
        self.unsafe.set(sum(1 for d in decisions.values()
                            if d.state is DecisionState.HELD and d.best_effort))
        self.forced.set(sum(1 for d in decisions.values()
                            if any(t.to is DecisionState.FORCED for t in d.history)))
