"""quorumgate in the simulator: the real safety core between modelled agents and ZooKeeper.

Only `coordinator.safety.decide` is real; around it this module models, on the virtual
clock, what the shell and the agents do (docs/architecture.md), with the latencies of
`model.Timing`:

- **ZooKeeper**: records as the core reads them (`events`, `decisions`, `drain`, `acks`,
  live `vms`), each write landing `zk_op_s` after it is sent and waking watchers
  `notify_s` later. Coordinator writes carry the versions read, like `FencedWriter`:
  a decision or drain record changed since the pass read it refuses the write and the
  rest of the pass (an agent's ack claim rewrites the decision, so a stale revocation
  and a claim cannot both land).
- **Coordinator** (`Reconciler`): a pass on every change it is woken for (its own writes
  included) and at least every `resync_s`; a pass reads (two round trips), decides
  (`decide_s`) and writes the changes one transaction at a time.
- **Agents** (`agent.daemon`): an IMDS poll every `poll_s` from a per-VM phase; a change
  of the VM's own `drain/<vm>` or the end of a hook wakes the agent for an immediate poll
  (and restarts its interval), as the daemon does. On a poll it relays the document with
  the real `agent.relay.merge`/`mark_gone` (compare-and-set), starts a drain or restore
  hook for a new request (`running`, then `drained`/`restored`), and, when named acker of
  an approved decision, claims `acks/<id>` (fenced on the decision's version), POSTs the
  acknowledgement and records the outcome. A VM that goes down takes its agent with it
  (its session closes); when the VM is back, a new agent registers `agent_boot_s` later,
  adopts open events naming it (`rescan`) and polls.

Ticks are computed lazily: an agent's poll is simulated only when something it would
act on changed (the IMDS document, an approval naming it); a poll with nothing to do
writes nothing, so skipping it changes no outcome.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.drain import wants_run
from agent.relay import mark_gone, merge
from bench.rollout.model import Cluster
from bench.rollout.platform import SCHEDULED, STARTED, PEvent, Platform, Queue, Recorder
from coordinator.safety import Change, Snapshot, VMView, decide
from registry.records import (
    AckRecord,
    AckState,
    Decision,
    DecisionState,
    DrainRecord,
    DrainStatus,
    DrainWant,
    Group,
    PlatformEvent,
    PlatformStatus,
    Policy,
)

S = DecisionState
EPOCH = 1_700_000_000.0
"""Virtual time 0 as epoch seconds (the records carry epoch times)."""


@dataclass
class Stats:
    passes: int = 0
    writes: int = 0
    refused: int = 0
    agent_polls: int = 0
    decide_wall_s: float = 0.0
    decide_max_wall_s: float = 0.0
    held: set[str] = field(default_factory=set)


class Zk:
    """The records the core reads, with versions, and who to wake on a change."""

    def __init__(self, cluster: Cluster) -> None:
        self.events: dict[str, PlatformEvent] = {}
        self.decisions: dict[str, Decision] = {}
        self.dversion: dict[str, int] = {}
        self.drains: dict[str, DrainRecord] = {}
        self.drversion: dict[str, int] = {}
        self.acks: dict[str, AckRecord] = {}
        self.views: dict[str, VMView] = {
            n: VMView(name=n, fd=vm.fd, ud=vm.ud, live=True) for n, vm in cluster.vms.items()}
        self.watchers: list[Callable[[float, str, str], None]] = []

    def changed(self, t: float, folder: str, key: str) -> None:
        for watcher in self.watchers:
            watcher(t, folder, key)

    def set_live(self, t: float, vm: str, live: bool) -> None:
        view = self.views[vm]
        if view.live != live:
            self.views[vm] = VMView(name=vm, fd=view.fd, ud=view.ud, live=live)
            self.changed(t, "vms", vm)

    def put_event(self, t: float, record: PlatformEvent) -> None:
        self.events[record.event_id] = record
        self.changed(t, "events", record.event_id)

    def put_drain(self, t: float, record: DrainRecord) -> None:
        self.drains[record.vm] = record
        self.drversion[record.vm] = self.drversion.get(record.vm, -1) + 1
        self.changed(t, "drain", record.vm)

    def put_decision(self, t: float, record: Decision) -> None:
        self.decisions[record.event_id] = record
        self.dversion[record.event_id] = self.dversion.get(record.event_id, -1) + 1
        self.changed(t, "decisions", record.event_id)

    def put_ack(self, t: float, record: AckRecord) -> None:
        self.acks[record.event_id] = record
        self.changed(t, "acks", record.event_id)


class Coordinator:
    def __init__(self, sim: Quorumgate) -> None:
        self.sim = sim
        self.q = sim.q
        self.zk = sim.zk
        self.timing = sim.timing
        self.running = False
        self.scheduled = False
        self.dirty = False
        self.resync_gen = 0
        self.pass_id = 0
        self.aborted: set[int] = set()
        self.policy = Policy()
        self.groups = [Group(name=g.name, members=list(g.members), min_available=g.min_available)
                       for g in sim.cluster.groups]

    def wake(self, t: float) -> None:
        if self.running:
            self.dirty = True
        elif not self.scheduled:
            self.scheduled = True
            self.q.at(t, self._pass)

    def _resync(self, t: float, gen: int) -> None:
        if gen == self.resync_gen and not self.sim.settled:
            self.wake(t)

    def _pass(self, t: float) -> None:
        self.scheduled = False
        self.running = True
        self.dirty = False
        self.resync_gen += 1
        self.pass_id += 1
        stats = self.sim.stats
        stats.passes += 1
        zk = self.zk
        snap = Snapshot(now=EPOCH + t, policy=self.policy, vms=dict(zk.views),
                        groups=self.groups, events=dict(zk.events),
                        decisions=dict(zk.decisions), drains=dict(zk.drains),
                        acks=dict(zk.acks))
        started = time.perf_counter()
        changes = decide(snap)
        spent = time.perf_counter() - started
        stats.decide_wall_s += spent
        stats.decide_max_wall_s = max(stats.decide_max_wall_s, spent)
        at = t + 2 * self.timing.zk_op_s + self.timing.decide_s
        for change in changes:
            eid = change.decision.event_id
            versions = (zk.dversion.get(eid), {r.vm: zk.drversion.get(r.vm) for r in change.drains})
            at += self.timing.zk_op_s
            self.q.at(at, self._land, self.pass_id, change, versions)
        self.q.at(at, self._end, self.pass_id)

    def _land(self, t: float, pass_id: int, change: Change,
              versions: tuple[int | None, dict[str, int | None]]) -> None:
        if pass_id in self.aborted:
            return
        zk = self.zk
        eid = change.decision.event_id
        dversion, drversions = versions
        if zk.dversion.get(eid) != dversion or any(
                zk.drversion.get(vm) != v for vm, v in drversions.items()):
            self.sim.stats.refused += 1
            self.aborted.add(pass_id)
            self.dirty = True
            return
        self.sim.stats.writes += 1
        decision = change.decision
        if decision.state is S.HELD:
            self.sim.stats.held.add(eid)
        zk.put_decision(t, decision)
        for rec in change.drains:
            zk.put_drain(t, rec)
        if decision.state is S.APPROVED and decision.acker and (
                change.previous is None or change.previous.approval != decision.approval):
            self.sim.agents[decision.acker].approval_seen(t + self.timing.notify_s)

    def _end(self, t: float, pass_id: int) -> None:
        self.aborted.discard(pass_id)
        self.running = False
        if self.dirty:
            self.wake(t)
        elif not self.sim.settled:
            self.q.at(t + self.timing.resync_s, self._resync, self.resync_gen)


class Agent:
    """One VM's agent; `life` changes with every boot (a reboot kills hooks and state)."""

    def __init__(self, sim: Quorumgate, vm: str, phase: float) -> None:
        self.sim = sim
        self.vm = vm
        self.q = sim.q
        self.zk = sim.zk
        self.timing = sim.timing
        self.live = True
        self.life = 0
        self.anchor = phase
        self.gen = 0
        self.tick_at: float | None = None
        self.published: dict[str, str] = {}
        self.seen: set[str] = set()
        self.attempted: set[tuple[str, DrainWant]] = set()
        self.busy = False
        self.handled: dict[str, int] = {}

    # ------------------------------------------------------------ scheduling

    def next_tick(self, t: float) -> float:
        poll = self.timing.poll_s
        return self.anchor + max(0, math.ceil((t - self.anchor) / poll - 1e-9)) * poll

    def ensure_tick(self, t: float) -> None:
        if not self.live:
            return
        when = self.next_tick(t)
        if self.tick_at is not None and self.tick_at <= when:
            return
        self.tick_at = when
        self.q.at(when, self._scheduled_tick, self.gen, self.life)

    def _scheduled_tick(self, t: float, gen: int, life: int) -> None:
        if gen != self.gen or life != self.life or not self.live or self.tick_at != t:
            return
        self.tick_at = None
        self.tick(t)

    def wake(self, t: float) -> None:
        """A watch fired or a hook ended: poll now and restart the interval."""
        if not self.live:
            return
        self.gen += 1
        self.anchor = t
        self.tick_at = None
        self.tick(t)

    def approval_seen(self, t: float) -> None:
        """An approval names us: the daemon notices on its next poll."""
        self.ensure_tick(t)

    # ------------------------------------------------------------ life

    def died(self, t: float) -> None:
        self.live = False
        self.life += 1
        self.busy = False
        self.q.at(t + self.timing.zk_op_s, self._session_closed, self.life)

    def _session_closed(self, t: float, life: int) -> None:
        if life == self.life:
            self.zk.set_live(t, self.vm, False)

    def booted(self, t: float) -> None:
        self.q.at(t + self.timing.agent_boot_s, self._register, self.life)

    def _register(self, t: float, life: int) -> None:
        if life != self.life:
            return
        self.live = True
        self.life += 1
        self.zk.set_live(t, self.vm, True)
        self.published, self.handled, self.attempted = {}, {}, set()
        self.seen = {eid for eid, rec in self.zk.events.items()
                     if rec.status is not PlatformStatus.GONE and (
                         self.vm in rec.resources or self.vm in rec.seen_by)}
        self.gen += 1
        self.anchor = t
        self.tick_at = None
        self.tick(t)

    # ------------------------------------------------------------ one poll

    def tick(self, t: float) -> None:
        self.sim.stats.agent_polls += 1
        timing = self.timing
        cursor = t + timing.imds_s
        doc = self.sim.platform.doc()
        version = self.sim.platform.version
        present = set()
        for event in doc:
            present.add(event.eid)
            self.seen.add(event.eid)
            if self.published.get(event.eid) == event.status:
                continue
            self.published[event.eid] = event.status
            seen = self._observed(event, version, t)
            cursor += 2 * timing.zk_op_s
            self.q.at(cursor, self._merge, seen)
        for eid in sorted(self.seen - present):
            self.seen.discard(eid)
            self.published.pop(eid, None)
            cursor += 2 * timing.zk_op_s
            self.q.at(cursor, self._gone, eid, version)
        cursor = self._check_drain(cursor)
        for event in doc:
            if event.status == SCHEDULED:
                cursor = self._check_ack(event, version, cursor)

    def _observed(self, event: PEvent, version: int, t: float) -> PlatformEvent:
        started = event.status == STARTED
        return PlatformEvent(
            event_id=event.eid, event_type=event.type,
            status=PlatformStatus.STARTED if started else PlatformStatus.SCHEDULED,
            resources=list(event.resources),
            not_before=None if started else EPOCH + event.not_before,
            incarnation=version, seen_by=[self.vm], first_seen=EPOCH + t, last_seen=EPOCH + t,
            started_at=EPOCH + t if started else None, incarnations={self.vm: version},
            observed_at=EPOCH + t)

    def _merge(self, t: float, seen: PlatformEvent) -> None:
        current = self.zk.events.get(seen.event_id)
        wanted = merge(current, seen, EPOCH + t)
        if wanted != current:
            self.zk.put_event(t, wanted)

    def _gone(self, t: float, eid: str, version: int) -> None:
        current = self.zk.events.get(eid)
        wanted = mark_gone(current, self.vm, version, EPOCH + t)
        if wanted is not None and wanted != current:
            self.zk.put_event(t, wanted)

    # ------------------------------------------------------------ drain and restore

    def _check_drain(self, cursor: float) -> float:
        if self.busy:
            return cursor
        cursor += self.timing.zk_op_s
        record = self.zk.drains.get(self.vm)
        if record is None or record.vm != self.vm:
            return cursor
        key = (record.event_id, record.want)
        if key in self.attempted:
            return cursor
        self.attempted.add(key)
        if not wants_run(record):
            return cursor
        self.busy = True
        cursor += self.timing.zk_op_s
        self.q.at(cursor, self._to_running, key, self.life)
        return cursor

    def _to_running(self, t: float, key: tuple[str, DrainWant], life: int) -> None:
        if life != self.life:
            return
        current = self.zk.drains.get(self.vm)
        if current is None or (current.event_id, current.want) != key or not wants_run(current):
            self.attempted.discard(key)
            self.busy = False
            self.ensure_tick(t)
            return
        self.zk.put_drain(t, current.model_copy(update={
            "status": DrainStatus.RUNNING, "updated_at": EPOCH + t}))
        eid, want = key
        vm = self.sim.cluster.vms[self.vm]
        if want is DrainWant.DRAINED:
            decision = self.zk.decisions.get(eid)
            ours = decision is None or not decision.best_effort
            self.sim.rec.open(self.vm, "draining", t, eid, ours)
            duration = vm.drain_s
        else:
            span = self.sim.rec.current(self.vm, "drained")
            ours = span.ours if span else True
            self.sim.rec.open(self.vm, "restoring", t, eid, ours)
            duration = vm.restore_s
        self.q.at(t + duration, self._hook_done, key, life)

    def _hook_done(self, t: float, key: tuple[str, DrainWant], life: int) -> None:
        if life != self.life:
            return  # the reboot killed the hook
        eid, want = key
        if want is DrainWant.DRAINED:
            span = self.sim.rec.current(self.vm, "draining")
            self.sim.rec.open(self.vm, "drained", t, eid, span.ours if span else True)
        else:
            self.sim.rec.close_service(self.vm, t)
        done = DrainStatus.DRAINED if want is DrainWant.DRAINED else DrainStatus.RESTORED
        self.q.at(t + 2 * self.timing.zk_op_s, self._report, key, done, life)

    def _report(self, t: float, key: tuple[str, DrainWant], done: DrainStatus,
                life: int) -> None:
        if life != self.life:
            return
        self.busy = False
        current = self.zk.drains.get(self.vm)
        if current is not None and (current.event_id, current.want) == key:
            self.zk.put_drain(t, current.model_copy(update={
                "status": done, "updated_at": EPOCH + t}))
        self.wake(t)

    def drain_changed(self, t: float) -> None:
        """The DataWatch on our own drain record."""
        self.q.at(t + self.timing.notify_s, self._watch_fired, self.life)

    def _watch_fired(self, t: float, life: int) -> None:
        if life == self.life:
            self.wake(t)

    # ------------------------------------------------------------ acknowledgement

    def _check_ack(self, event: PEvent, version: int, cursor: float) -> float:
        cursor += self.timing.zk_op_s
        decision = self.zk.decisions.get(event.eid)
        if (decision is None or decision.state is not S.APPROVED or decision.acker != self.vm
                or decision.approval < 1 or self.handled.get(event.eid) == decision.approval):
            return cursor
        read_version = self.zk.dversion.get(event.eid)
        cursor += 2 * self.timing.zk_op_s
        self.q.at(cursor, self._claim, event.eid, decision.approval, read_version, version,
                  self.life)
        return cursor

    def _claim(self, t: float, eid: str, approval: int, read_version: int | None,
               incarnation: int, life: int) -> None:
        if life != self.life:
            return
        if self.zk.dversion.get(eid) != read_version:
            self.ensure_tick(t)  # the decision moved on: look again on the next poll
            return
        self.handled[eid] = approval
        existing = self.zk.acks.get(eid)
        if existing is not None and existing.approval >= approval:
            return  # claimed before: never send twice
        self.zk.put_ack(t, AckRecord(event_id=eid, approval=approval, vm=self.vm,
                                     state=AckState.SENDING, incarnation=incarnation,
                                     at=EPOCH + t))
        self.zk.put_decision(t, self.zk.decisions[eid])  # the claim rewrites it (fencing)
        self.q.at(t + self.timing.imds_s, self._post, eid, approval, life)

    def _post(self, t: float, eid: str, approval: int, life: int) -> None:
        if life != self.life:
            return  # died between claim and POST: nothing sent (the claim stays)
        accepted = self.sim.platform.acknowledge(t, eid, self.vm)
        state = AckState.ACCEPTED if accepted else AckState.REJECTED
        self.q.at(t + self.timing.zk_op_s, self._record, eid, approval, state)

    def _record(self, t: float, eid: str, approval: int, state: AckState) -> None:
        current = self.zk.acks.get(eid)
        if current is not None and current.approval == approval and current.vm == self.vm:
            self.zk.put_ack(t, current.model_copy(update={"state": state, "at": EPOCH + t}))


class Quorumgate:
    name = "quorumgate"

    def __init__(self, cluster: Cluster, q: Queue, platform: Platform, rec: Recorder) -> None:
        self.cluster = cluster
        self.q = q
        self.platform = platform
        self.rec = rec
        self.timing = cluster.scenario.timing
        self.stats = Stats()
        self.zk = Zk(cluster)
        self.agents = {name: Agent(self, name, vm.phase) for name, vm in cluster.vms.items()}
        self.coordinator = Coordinator(self)
        self.zk.watchers.append(self._on_change)

    def _on_change(self, t: float, folder: str, key: str) -> None:
        self.coordinator.wake(t + self.timing.notify_s)
        if folder == "drain":
            self.agents[key].drain_changed(t)

    # platform callbacks

    def doc_changed(self, t: float) -> None:
        for agent in self.agents.values():
            agent.ensure_tick(t)

    def vm_down(self, vm: str, t: float, event: PEvent) -> None:
        self.agents[vm].died(t)

    def vm_up(self, vm: str, t: float) -> None:
        self.agents[vm].booted(t)

    @property
    def settled(self) -> bool:
        if not self.platform.done:
            return False
        return all(d.state is S.RESTORED or (d.state is S.CANCELLED and not d.reserved)
                   for d in self.zk.decisions.values()) and all(
            a.live and not a.busy for a in self.agents.values())
