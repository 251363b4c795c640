"""A randomized cluster world around the real safety core, and checkers that trust only it.

The world is the platform and everything around the coordinator, kept as ground truth:
which VMs exist (some run no agent, some report no update domain), which are really
down and why, which are really drained, the events' *real* Resources (which the platform
may change while an event is pending), and the replica groups as configured. Around the
real core (`coordinator.safety.decide`) it runs the real relay merge rules
(`agent.relay.merge`/`mark_gone`) and the real provider membership rule
(`coordinator.providers.durable_members`), and it models what the shell and the agents
do: a mirror that lags by a few steps (only decisions and acks are read fresh, as the
leader does), compare-and-set writes that an acker's claim can beat, a leader that dies
mid-pass, agents whose polls are late, whose clocks are skewed and whose IMDS sometimes
forgets an event for a poll, records that do not decode, groups that change.

Checkers judge from ground truth only — never from the core's labels:

- **ours-only**: the VMs out *because of us* (drained by a drain we requested, except a
  best-effort drain due by NotBefore for an event we never acknowledged, or one an
  operator forced; and every VM of the *real* Resources of an event started by our
  acknowledgement) never leave a group below `min_available` by themselves, and never
  span more than `max_concurrent_uds` update domains (true domains, known to the
  coordinator or not);
- **at the moment we act** (a drain hook starts, an acknowledgement takes effect): the
  group as configured then, counting every VM out for any reason that began before the
  coordinator's decision, plus what this action takes, keeps `min_available`; and every
  VM an acknowledgement takes was drained (drain rule), so no VM goes down undrained;
- **acknowledgements**: at most one effective POST per event, one POST per approval;
- **liveness**: after a quiet period every event reaches a terminal decision.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field, replace

from agent.imds_models import ScheduledEvent
from agent.relay import mark_gone, merge, observed
from coordinator.providers import durable_members
from coordinator.safety import Snapshot, Unreadable, VMView, decide
from registry.domains import DomainMode
from registry.records import (
    AckRecord,
    AckState,
    Decision,
    DecisionState,
    DrainRecord,
    DrainStatus,
    DrainWant,
    EventType,
    Group,
    Override,
    PlatformEvent,
    PlatformStatus,
    Policy,
    TypeRule,
)

S = DecisionState
NOTICE = {EventType.REBOOT: 900, EventType.REDEPLOY: 600, EventType.FREEZE: 900,
          EventType.PREEMPT: 30, EventType.TERMINATE: 300}
LAG_STEPS = 3
CLEAR_STEPS = 10
"""An event the platform starts without us after this many steps in a row in which
acknowledging it was safe (ground truth) is a missed acknowledgement: enough for a
lagging mirror, a drain that runs a few polls, and a late acker."""
"""The mirror (events, VMs, drains, groups, overrides) may be this many steps behind."""


@dataclass
class TrueVM:
    name: str
    fd: int
    ud: int
    agent: bool = True
    """Runs a quorumgate agent (False: the coordinator never hears of it)."""
    reports_ud: bool = True
    """IMDS reports its maintenance unit (False: the coordinator must hold its events)."""
    skew: float = 0.0
    """Its agent's clock minus the true time."""
    deleted: bool = False
    born: float = 0.0
    """When it joined the cluster (a scale set's replacement joins late)."""


@dataclass
class TrueEvent:
    event_id: str
    kind: EventType
    resources: list[str]
    not_before: float
    duration: float
    created_at: float
    status: str = "Scheduled"  # Scheduled | Started | Gone
    started_by_ack: bool = False
    start_resources: list[str] = field(default_factory=list)
    """The real Resources when it started: what it took down."""
    ends_at: float | None = None
    impacts: int = 0
    ack_basis: float = 0.0
    """The time of the mirror the approval we acknowledged was decided on."""
    clear_steps: int = 0
    """Consecutive steps, up to now, in which acknowledging it was safe by ground truth."""


@dataclass
class Outage:
    """One VM out because of us, from ground truth."""

    vm: str
    event_id: str
    kind: str  # "drained" | "acked"
    basis: float
    """The time of the mirror the coordinator decided this outage on."""


@dataclass
class World:
    rng: random.Random
    policy: Policy
    truth: dict[str, TrueVM]
    groups: dict[str, Group]
    """The groups as configured (truth). Provider groups are rebuilt from live members
    by the real provider rule."""
    provider_groups: set[str] = field(default_factory=set)
    topology: str = "availability-set"
    """How the VMs are deployed: `availability-set` (the unit is the update domain),
    `zonal` (the zone; IMDS reports no update domain), `flex` (a regional Flexible scale
    set: the fault domain). `TrueVM.ud` is the platform's unit in each."""
    now: float = 1_700_000_000.0
    steps: int = 0
    events: dict[str, TrueEvent] = field(default_factory=dict)
    crashed_until: dict[str, float] = field(default_factory=dict)
    down_until: dict[str, float] = field(default_factory=dict)
    down_since: dict[str, float] = field(default_factory=dict)
    down_cause: dict[str, str] = field(default_factory=dict)
    incarnation: dict[str, int] = field(default_factory=dict)
    """Each VM's DocumentIncarnation (per VM, as IMDS keeps it)."""
    # the store (ZooKeeper) and its versions
    records: dict[str, PlatformEvent] = field(default_factory=dict)
    decisions: dict[str, Decision] = field(default_factory=dict)
    decision_version: dict[str, int] = field(default_factory=dict)
    drains: dict[str, DrainRecord] = field(default_factory=dict)
    drain_version: dict[str, int] = field(default_factory=dict)
    leader_wrote: dict[str, int] = field(default_factory=dict)
    """The drain record versions the leader's own writes made (see coordinate)."""
    acks: dict[str, AckRecord] = field(default_factory=dict)
    overrides: dict[str, Override] = field(default_factory=dict)
    stored_groups: dict[str, Group] = field(default_factory=dict)
    corrupt_groups: set[str] = field(default_factory=set)
    group_changed_at: dict[str, float] = field(default_factory=dict)
    history: list[tuple] = field(default_factory=list)
    """Past mirrors (newest last) for the lagging view."""
    forced_by_operator: set[str] = field(default_factory=set)
    lost_claims: set[str] = field(default_factory=set)
    drain_requested_at: dict[tuple[str, str, int], float] = field(default_factory=dict)
    basis_at: dict[tuple[str, str, int], float] = field(default_factory=dict)
    """Per drain request or approval: the time of the mirror the coordinator decided on
    (what it could know); the onset check counts outages that began before it."""
    posts: Counter = field(default_factory=Counter)
    effective_posts: Counter = field(default_factory=Counter)
    acks_sent: dict[tuple[str, int], int] = field(default_factory=dict)
    next_id: int = 0
    violations: list[str] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    missed: list[str] = field(default_factory=list)
    # switches that put back a hole of issue 12, to prove the checkers see it
    acker_checks_coverage: bool = True
    acks_from_mirror: bool = False
    fail_open_on_corrupt: bool = False
    platform_reshapes: bool = True
    """The platform cancels events and changes pending events' Resources at random."""

    # ------------------------------------------------------------ set-up

    @classmethod
    def random(cls, rng: random.Random) -> World:
        fds, uds = rng.randint(2, 3), rng.randint(3, 5)
        topology = rng.choice(["availability-set", "availability-set", "zonal", "flex"])
        truth: dict[str, TrueVM] = {}
        for i in range(fds * uds * rng.randint(1, 2)):
            name = f"vm-{i}"
            unit = (i // fds) % uds
            truth[name] = TrueVM(name, fd=unit if topology == "flex" else i % fds, ud=unit,
                                 skew=rng.choice([0.0, 0.0, rng.uniform(-20, 20)]))
        names = sorted(truth)
        if rng.random() < 0.5:  # VMs of the set that run no agent (yet)
            for _ in range(rng.randint(1, 2)):
                ghost = f"ghost-{rng.randrange(100)}"
                truth[ghost] = TrueVM(ghost, fd=rng.randrange(fds), ud=rng.randrange(uds),
                                      agent=False)
        if rng.random() < 0.2:  # IMDS reports no update domain for one VM
            truth[rng.choice(names)].reports_ud = False
        groups: dict[str, Group] = {}
        for g in range(rng.randint(1, 6)):
            size = rng.randint(2, min(5, len(names)))
            if rng.random() < 0.6:  # mostly spread over domains, as real clusters are
                by_ud: dict[int, list[str]] = {}
                for n in rng.sample(names, len(names)):
                    by_ud.setdefault(truth[n].ud, []).append(n)
                members = [v[0] for v in list(by_ud.values())[:size]]
            else:
                members = rng.sample(names, size)
            if rng.random() < 0.1:
                members.append("ghost-member")  # never registered: always unavailable
            minimum: int | str = rng.choice(["majority", 1, max(1, len(members) - 1)])
            groups[f"g{g}"] = Group(name=f"g{g}", members=members, min_available=minimum)
        named = {"zonal": DomainMode.ZONE, "flex": DomainMode.FAULT_DOMAIN}.get(
            topology, DomainMode.UPDATE_DOMAIN)  # a VM that reports no zone looks unzoned
        rules = {kind: rng.choice([TypeRule.DRAIN, TypeRule.DRAIN, TypeRule.NO_DRAIN])
                 for kind in EventType}
        policy = Policy(max_concurrent_uds=rng.choice([1, 1, 2]), rules=rules,
                        max_unavailable=rng.choice([None, None, 4, "30%"]),
                        drain_timeout_s=rng.choice([60.0, 600.0]),
                        best_effort_lead_s=rng.choice([0.0, 60.0, 120.0]),
                        ack_timeout_s=60.0, gone_grace_s=rng.choice([30.0, 60.0]),
                        drain_retries=rng.choice([0, 2]), drain_retry_backoff_s=30.0,
                        unmanaged_vms=rng.choice(["hold", "hold", "outside"]),
                        maintenance_domain=named if (
                            rng.random() < 0.3 or not all(t.reports_ud for t in truth.values())
                        ) else DomainMode.AUTO)
        world = cls(rng=rng, policy=policy, truth=truth, groups=groups, topology=topology)
        world.provider_groups = {n for n in groups if rng.random() < 0.3}
        world.stored_groups = dict(groups)
        world.incarnation = {n: 1 for n in truth}
        return world

    # ------------------------------------------------------------ ground truth

    def live(self, vm: str) -> bool:
        t = self.truth.get(vm)
        return (t is not None and t.agent and not t.deleted and vm not in self.crashed_until
                and vm not in self.down_until)

    def out_of_service(self, vm: str) -> bool:
        """Really unavailable for its group now, for any reason."""
        t = self.truth.get(vm)
        if t is None or t.deleted or vm in self.crashed_until or vm in self.down_until:
            return True
        rec = self.drains.get(vm)
        return rec is not None and _drained(rec)

    def out_since(self, vm: str) -> float:
        """Since when the VM has been out (ground truth), for attributing blame."""
        if vm in self.down_since:
            return self.down_since[vm]
        rec = self.drains.get(vm)
        if rec is not None and _drained(rec):
            return self.drain_requested_at.get((vm, rec.event_id, rec.attempt), self.now)
        return float("-inf")

    def exempt(self, event_id: str, requested_at: float, vm: str | None = None) -> bool:
        """A drain that is the platform's (best effort before a start we never asked for,
        of a VM our acknowledgement did not take) or an operator's (force): judged from
        what happened, never from labels."""
        ev = self.events.get(event_id)
        if ev is None or event_id in self.forced_by_operator:
            return True
        if ev.started_by_ack and (vm is None or vm in ev.start_resources):
            return False
        due = ev.kind in (EventType.PREEMPT, EventType.TERMINATE) or (
            requested_at >= ev.not_before - self.policy.best_effort_lead_s)
        return due

    def ours(self) -> list[Outage]:
        out = []
        for vm, rec in self.drains.items():
            if not _drained(rec) or self.truth.get(vm) is None or self.truth[vm].deleted:
                continue  # a VM the platform deleted is in no maintenance of ours
            asked = self.drain_requested_at.get((vm, rec.event_id, rec.attempt), self.now)
            if not self.exempt(rec.event_id, asked, vm):
                basis = self.basis_at.get((vm, rec.event_id, rec.attempt), asked)
                out.append(Outage(vm, rec.event_id, "drained", basis))
        for vm, eid in self.down_cause.items():
            ev = self.events[eid]
            if self.truth[vm].deleted:
                continue  # deleted by the platform: unavailable, but in no maintenance
            if vm in self.down_until and ev.started_by_ack and (
                    eid not in self.forced_by_operator):
                out.append(Outage(vm, eid, "acked", ev.ack_basis))
        return out

    def check_ours(self) -> None:
        outages = self.ours()
        mine = {o.vm for o in outages}
        for group in self.groups.values():
            members = set(group.members)
            basis = min((o.basis for o in outages if o.vm in members), default=self.now)
            if self.group_changed_at.get(group.name, float("-inf")) >= basis:
                continue  # reconfigured after we decided: judged at each onset instead
            if members & mine and len(members) - len(members & mine) < group.required():
                self.flag(f"group {group.name} below its minimum by our outages alone: "
                          f"{sorted(members & mine)}")
        uds = {self.truth[o.vm].ud for o in outages if self.counts_for_budget(o.vm, o.basis)}
        if len(uds) > self.policy.max_concurrent_uds:
            self.flag(f"our outages span update domains {sorted(uds)}: "
                      f"{sorted((o.vm, o.event_id) for o in outages)}")

    def check_action(self, what: str, event_id: str, taken: list[str],
                     decided_at: float, exempt: bool) -> None:
        """At the moment an action of ours takes `taken` out: every group as configured,
        counting what was out before the coordinator decided, keeps its minimum. A group
        reconfigured since that decision is skipped: the coordinator could not know, and
        every decision after the change is judged against it."""
        fresh = [vm for vm in taken if vm in self.truth and not self.out_of_service(vm)]
        if not fresh or exempt:
            return  # nothing new out, or an operator's force: theirs, not ours
        before = {vm for vm in self.truth if self.out_of_service(vm)
                  and self.out_since(vm) <= decided_at}
        before |= {o.vm for o in self.ours()}
        for group in self.groups.values():
            members = set(group.members)
            if not members & set(fresh):
                continue
            if self.group_changed_at.get(group.name, float("-inf")) > decided_at:
                continue
            unknown = {m for m in members if m not in self.truth}
            left = len(members) - len((before | set(fresh) | unknown) & members)
            if left < group.required():
                self.flag(f"{what} of {event_id} takes {sorted(members & set(fresh))}, "
                          f"leaving group {group.name} at {left} (min {group.required()})")
        uds = {self.truth[o.vm].ud for o in self.ours()
               if self.counts_for_budget(o.vm, o.basis)} | {
            self.truth[v].ud for v in fresh if self.counts_for_budget(v, decided_at)}
        if len(uds) > self.policy.max_concurrent_uds:
            self.flag(f"{what} of {event_id} makes our outages span UDs {sorted(uds)}")

    def check_approval(self, eid: str) -> None:
        """When we approve (not an operator's force): the update domains of our outages now
        and of the VMs the approval covers stay within the budget (what the event really
        takes when acknowledged is judged at that moment, by `check_action`)."""
        ev = self.events.get(eid)
        if ev is None or eid in self.forced_by_operator or self.policy.dry_run:
            return
        basis = self.basis_at.get((eid, "approval", self.decisions[eid].approval), self.now)
        uds = {self.truth[o.vm].ud for o in self.ours()
               if o.event_id != eid and self.counts_for_budget(o.vm, o.basis)}
        covered = [vm for vm in self.decisions[eid].approved if vm in self.truth]
        uds |= {self.truth[vm].ud for vm in covered  # the acker sends only for these
                if self.counts_for_budget(vm, basis) and not self.truth[vm].deleted}
        if len(uds) > self.policy.max_concurrent_uds:
            self.flag(f"approval of {eid} while our outages and its Resources span UDs "
                      f"{sorted(uds)}")

    def counts_for_budget(self, vm: str, basis: float | None = None) -> bool:
        """Every VM counts in the domain budget, but one the coordinator could not know
        (no agent, or one that joined after `basis`) when the operator declared unknown
        VMs outside every group and budget (and it is in none)."""
        t = self.truth.get(vm)
        if t is None:
            return False
        unknown = not t.agent or (basis is not None and t.born > basis)
        return not unknown or self.policy.unmanaged_vms != "outside" or any(
            vm in g.members for g in self.groups.values())

    def clear_to_ack(self, ev: TrueEvent) -> bool:
        """Ground truth: taking `ev`'s Resources down now breaks nothing and the
        coordinator can know it (every VM registered with its domain, up, in no other
        pending event; every group readable and unchanged, the budgets kept)."""
        if ev.status != "Scheduled" or self.corrupt_groups:
            return False
        vms = [self.truth.get(vm) for vm in ev.resources]
        if not vms or any(t is None or not t.agent or not t.reports_ud or not self.live(t.name)
                          for t in vms):
            return False
        taken = set(ev.resources)
        for other in self.events.values():
            if other is not ev and other.status != "Gone" and taken & set(other.resources):
                return False
        out = {vm for vm in self.truth if self.out_of_service(vm)}
        for group in self.groups.values():
            members = set(group.members)
            if not members & taken:
                continue
            unknown = {m for m in members if m not in self.truth or not self.truth[m].agent}
            if len(members) - len((out | taken | unknown) & members) < group.required():
                return False
        maintained = {vm for vm in self.down_cause if not self.truth[vm].deleted} | {
            vm for vm, rec in self.drains.items() if _drained(rec)}
        uds = {self.truth[vm].ud for vm in maintained | taken if self.counts_for_budget(vm)}
        if len(uds) > self.policy.max_concurrent_uds:
            return False
        alive = [vm for vm, t in self.truth.items() if not t.deleted]
        cap = self.policy.unavailable_cap(len(alive))
        return cap is None or len((out | taken) & set(alive)) <= cap

    def flag(self, message: str) -> None:
        self.violations.append(f"t={self.now - 1_700_000_000:.0f} {message}")

    # ------------------------------------------------------------ the store as seen

    def registered(self) -> dict[str, VMView]:
        """What `vms/` + `vm-state/` tell the coordinator: agents only, their reported UD;
        a deleted VM's `vm-state/` stays (not live) until an operator forgets it."""
        out = {}
        for vm, t in self.truth.items():
            if not t.agent:
                continue
            if self.topology == "zonal":
                out[vm] = VMView(vm, t.fd, None, self.live(vm),
                                 zone=str(t.ud + 1) if t.reports_ud else "")
            elif self.topology == "flex":
                out[vm] = VMView(vm, t.fd if t.reports_ud else None, None, self.live(vm),
                                 scale_set="ss")
            else:
                out[vm] = VMView(vm, t.fd, t.ud if t.reports_ud else None, self.live(vm))
        return out

    def mirror(self) -> tuple:
        return (self.now, dict(self.records), self.registered(), dict(self.drains),
                dict(self.drain_version), dict(self.stored_groups), set(self.corrupt_groups),
                dict(self.overrides), dict(self.acks))

    def snapshot(self, lag: int) -> tuple[Snapshot, float, dict[str, int]]:
        """The core's input from a mirror `lag` steps old (decisions and acks fresh, as
        the leader reads them), the time of that mirror, and its drain versions."""
        past = self.history[-1 - lag] if len(self.history) > lag else self.mirror()
        at, events, vms, drains, drain_versions, groups, corrupt, overrides, acks = past
        groups = {n: g for n, g in groups.items() if n not in corrupt}
        unreadable = Unreadable() if self.fail_open_on_corrupt else Unreadable(
            groups=frozenset(corrupt))
        snap = Snapshot(now=self.now, policy=self.policy, vms=vms,
                        groups=list(groups.values()), events=events,
                        decisions=dict(self.decisions), drains=drains,
                        acks=acks if self.acks_from_mirror else dict(self.acks),
                        overrides=overrides, unreadable=unreadable)
        return snap, at, drain_versions

    # ------------------------------------------------------------ the coordinator

    def coordinate(self) -> None:
        lag = self.rng.choice([0, 0, 1, 2, LAG_STEPS])
        snap, basis, drain_versions = self.snapshot(lag)
        if any(drain_versions.get(vm, -1) < v for vm, v in self.leader_wrote.items()):
            self.counts["passes_behind_own_writes"] += 1
            return  # the leader waits until its mirror shows its own drain writes
        versions = dict(self.decision_version)
        changes = decide(snap)
        if changes and self.rng.random() < 0.05:  # the leader dies mid-pass
            changes = changes[: self.rng.randrange(len(changes))]
            self.counts["lost_writes"] += 1
        if self.rng.random() < 0.3:
            self.ackers()  # an acker claims between the leader's read and its writes
        for change in changes:
            eid = change.decision.event_id
            if self.decision_version.get(eid) != versions.get(eid):
                self.counts["fenced_writes"] += 1
                break  # an acker's claim moved the decision: the write fails; re-read
            if any(self.drain_version.get(vm) != drain_versions.get(vm)
                   for vm in [*(r.vm for r in change.drains), *change.checks]):
                self.counts["drain_conflicts"] += 1
                break  # an agent wrote the drain record since the mirror saw it
            claim = self.acks.get(eid)
            old = self.decisions.get(eid)
            if (old is not None and old.state is S.APPROVED and claim is not None
                    and claim.approval == old.approval and claim.state is not AckState.REJECTED
                    and change.decision.approval == old.approval
                    and change.decision.state in (S.READY, S.DRAINING, S.HELD)):
                self.flag(f"approval {old.approval} of {eid} taken back while its "
                          "acknowledgement was claimed")
            self.decisions[eid] = change.decision
            self.decision_version[eid] = self.decision_version.get(eid, -1) + 1
            for rec in change.drains:
                self.drains[rec.vm] = rec
                self.drain_version[rec.vm] = self.drain_version.get(rec.vm, -1) + 1
                drain_versions[rec.vm] = self.drain_version[rec.vm]
                self.leader_wrote[rec.vm] = self.drain_version[rec.vm]
                if rec.want is DrainWant.DRAINED:  # a restore request keeps the onset
                    self.drain_requested_at[(rec.vm, rec.event_id, rec.attempt)] = self.now
                    self.basis_at[(rec.vm, rec.event_id, rec.attempt)] = basis
            old = change.previous
            if change.decision.state is S.APPROVED and (old is None or
                                                        old.approval != change.decision.approval):
                self.basis_at[(eid, "approval", change.decision.approval)] = basis
                self.check_approval(eid)
            versions[eid] = self.decision_version[eid]
        self.counts["passes"] += 1

    # ------------------------------------------------------------ the platform

    def schedule(self) -> None:
        kind = self.rng.choice([EventType.REBOOT] * 4 + [EventType.REDEPLOY, EventType.FREEZE,
                                                         EventType.PREEMPT, EventType.TERMINATE])
        alive = [n for n, t in self.truth.items() if not t.deleted]
        if not alive:
            return
        ud = self.rng.choice(sorted({self.truth[n].ud for n in alive}))
        in_ud = sorted(n for n in alive if self.truth[n].ud == ud)
        resources = self.rng.sample(in_ud, self.rng.randint(1, len(in_ud)))
        unmanaged = [n for n in in_ud if not self.truth[n].agent]
        if unmanaged and self.rng.random() < 0.2:
            resources = unmanaged  # maintenance of the VMs that run no agent
        if self.rng.random() < 0.05:  # Resources that span two update domains
            resources.append(self.rng.choice(alive))
        busy = [vm for e in self.events.values() if e.status != "Gone" for vm in e.resources
                if vm in alive]
        if busy and self.rng.random() < 0.05:  # a VM listed in two events
            resources.append(self.rng.choice(busy))
        eid = self.add_event(kind, resources)
        if self.rng.random() < 0.03:  # hardware failure: straight to Started
            self.start(eid, by_ack=False)

    def add_event(self, kind: EventType, resources: list[str]) -> str:
        self.next_id += 1
        eid = f"E{self.next_id:04d}"
        ev = TrueEvent(eid, kind, list(dict.fromkeys(resources)), self.now + NOTICE[kind],
                       duration=self.rng.uniform(5, 300), created_at=self.now)
        self.events[eid] = ev
        self.bump(ev.resources)
        self.counts["events"] += 1
        return eid

    def bump(self, vms: list[str]) -> None:
        """Every VM sees the events of the set: any change is a new document for all."""
        for vm in self.truth:
            self.incarnation[vm] = self.incarnation.get(vm, 0) + 1

    def start(self, eid: str, by_ack: bool) -> None:
        ev = self.events[eid]
        if ev.status != "Scheduled":
            return
        if not by_ack and ev.clear_steps >= CLEAR_STEPS and eid not in self.forced_by_operator:
            self.counts["missed"] += 1
            self.missed.append(eid)
        ev.status = "Started"
        ev.started_by_ack = by_ack
        ev.start_resources = list(ev.resources)
        ev.ends_at = self.now + ev.duration
        self.impact(ev)
        self.bump(ev.resources)
        self.counts["acked" if by_ack else "forced"] += 1

    def impact(self, ev: TrueEvent) -> None:
        ev.impacts += 1
        if ev.kind is EventType.FREEZE:
            return
        assert ev.ends_at is not None
        for vm in ev.resources:
            t = self.truth.get(vm)
            if t is None:
                continue
            if ev.kind in (EventType.TERMINATE, EventType.PREEMPT) and not t.deleted:
                t.deleted = True  # deleted or evicted (Azure's meaning): it never returns
                self.counts["deleted"] += 1
                self.replace_vm(vm)
            if ev.ends_at > self.down_until.get(vm, 0):
                self.down_until[vm] = ev.ends_at
                self.down_since.setdefault(vm, self.now)
                self.down_cause[vm] = ev.event_id

    def replace_vm(self, vm: str) -> None:
        """The scale set replaces a deleted VM; its groups take the newcomer (as the data
        system would re-replicate), so the cluster does not wither away. The platform
        places the newcomer where it likes: often another fault and update domain than
        the member it replaces (a group's domains change under the coordinator)."""
        old = self.truth[vm]
        self.next_vm = getattr(self, "next_vm", len(self.truth))
        name = f"vm-{self.next_vm}"
        self.next_vm += 1
        ud = self.rng.choice(sorted({t.ud for t in self.truth.values()}))
        fd = ud if self.topology == "flex" else self.rng.choice(
            sorted({t.fd for t in self.truth.values()}))
        if (fd, ud) != (old.fd, old.ud):
            self.counts["domains_changed"] += 1
        self.truth[name] = TrueVM(name, fd=fd, ud=ud, agent=old.agent, born=self.now)
        self.incarnation[name] = 1
        for gname, group in list(self.groups.items()):
            if vm in group.members and self.rng.random() < 0.7:
                members = [name if m == vm else m for m in group.members]
                self.groups[gname] = group.model_copy(update={"members": members})
                self.stored_groups[gname] = self.groups[gname]
                self.group_changed_at[gname] = self.now

    def platform_tick(self) -> None:
        for ev in self.events.values():
            ev.clear_steps = ev.clear_steps + 1 if self.clear_to_ack(ev) else 0
        for eid, ev in list(self.events.items()):
            if ev.status == "Scheduled" and self.now >= ev.not_before:
                self.start(eid, by_ack=False)
            elif ev.status == "Started" and ev.ends_at is not None and self.now >= ev.ends_at:
                ev.status = "Gone"
                self.bump(ev.resources)
            elif ev.status == "Started" and ev.impacts == 1 and self.rng.random() < 0.02:
                self.impact(ev)  # a second impact while Started
            elif ev.status == "Scheduled" and self.platform_reshapes:
                roll = self.rng.random()
                if roll < 0.01:
                    ev.status = "Gone"  # cancelled
                    self.bump(ev.resources)
                elif roll < 0.03:  # the platform reshapes it: Resources grow or shrink
                    alive = [n for n, t in self.truth.items() if not t.deleted]
                    same = [n for n in alive if self.truth[n].ud in
                            {self.truth[r].ud for r in ev.resources if r in self.truth}]
                    extra = [n for n in same if n not in ev.resources]
                    if extra and self.rng.random() < 0.7:
                        ev.resources.append(self.rng.choice(extra))
                        self.counts["resources_grew"] += 1
                    elif len(ev.resources) > 1:
                        ev.resources.pop(self.rng.randrange(len(ev.resources)))
                    self.bump(ev.resources)
        for table in (self.down_until, self.crashed_until):
            for vm, until in list(table.items()):
                if self.now >= until and not self.truth[vm].deleted:
                    del table[vm]
        for vm in list(self.down_since):
            if vm not in self.down_until and vm not in self.crashed_until:
                del self.down_since[vm]
        for vm in list(self.down_cause):
            if vm not in self.down_until:
                del self.down_cause[vm]

    def listed(self, vm: str) -> list[TrueEvent]:
        """The events in `vm`'s IMDS document now (it may forget one for a poll)."""
        out = []
        for ev in self.events.values():
            if ev.status == "Gone":
                continue
            if self.rng.random() < 0.02:
                self.counts["imds_flaps"] += 1
                self.incarnation[vm] += 1  # a document without it is a new document
                continue
            out.append(ev)
        return out

    # ------------------------------------------------------------ the agents

    def relay(self) -> None:
        for vm, t in self.truth.items():
            if not self.live(vm) or self.rng.random() < 0.25:
                continue  # down, or this agent's poll is late
            seen_at = self.now + t.skew
            listed = self.listed(vm)
            incarnation = self.incarnation[vm]
            for ev in listed:
                doc = ScheduledEvent.model_validate({
                    "EventId": ev.event_id, "EventType": ev.kind.value,
                    "EventStatus": ev.status, "Resources": ev.resources,
                    "NotBefore": ev.not_before if ev.status == "Scheduled" else ""})
                seen = observed(doc, incarnation, vm, seen_at)
                self.records[ev.event_id] = merge(self.records.get(ev.event_id), seen, seen_at)
            present = {ev.event_id for ev in listed}
            for eid, rec in list(self.records.items()):
                if eid in present or vm in rec.gone_by:
                    continue
                witnesses = set(rec.seen_by) | set(rec.resources)
                orphan = rec.status is not PlatformStatus.GONE and not any(
                    self.live(w) for w in witnesses - {vm})
                if vm not in witnesses and not orphan:
                    continue  # the agent only follows its own events, and orphans
                gone = mark_gone(rec, vm, incarnation, seen_at)
                if gone is not None:
                    self.records[eid] = gone

    def drain_agents(self) -> None:
        for vm, rec in list(self.drains.items()):
            if not self.live(vm) or rec.status not in (DrainStatus.PENDING, DrainStatus.RUNNING):
                continue
            roll = self.rng.random()
            if rec.status is DrainStatus.PENDING and rec.want is DrainWant.DRAINED:
                key = (vm, rec.event_id, rec.attempt)
                asked = self.drain_requested_at.get(key, self.now)
                if not self.exempt(rec.event_id, asked):
                    self.check_action("drain", rec.event_id, [vm],
                                      self.basis_at.get(key, asked), exempt=False)
            if rec.want is DrainWant.DRAINED:
                status = (DrainStatus.FAILED if roll < 0.03 else DrainStatus.DRAINED
                          if roll < 0.7 else DrainStatus.RUNNING)
            else:
                status = DrainStatus.RESTORED if roll < 0.8 else DrainStatus.RUNNING
            self.drains[vm] = rec.model_copy(update={"status": status, "detail": "sim"})
            self.drain_version[vm] = self.drain_version.get(vm, -1) + 1

    def ackers(self) -> None:
        for eid, decision in list(self.decisions.items()):
            acker = decision.acker
            if decision.state is not S.APPROVED or acker is None or not self.live(acker):
                continue
            if self.rng.random() < 0.3:
                continue  # not polled yet
            ev = self.events.get(eid)
            if ev is None or ev.status != "Scheduled":
                continue
            existing = self.acks.get(eid)
            if existing and existing.approval >= decision.approval:
                continue  # at most one POST per approval
            covered = {vm.casefold() for vm in decision.approved}
            if self.acker_checks_coverage and (
                    not covered or any(vm.casefold() not in covered for vm in ev.resources)):
                self.counts["acker_refused"] += 1
                continue  # its IMDS lists a VM the approval does not cover
            undrained = [vm for vm in decision.approved if self.live(vm)
                         and (rec := self.drains.get(vm)) is not None and rec.event_id == eid
                         and rec.want is DrainWant.DRAINED
                         and rec.status is not DrainStatus.DRAINED]
            if undrained:
                self.counts["acker_waits_for_drain"] += 1
                continue  # a VM that was down at the approval is back undrained
            # the claim: compare-and-set on the decision version it read (it bumps it)
            self.decision_version[eid] = self.decision_version.get(eid, -1) + 1
            claim = AckRecord(event_id=eid, approval=decision.approval, vm=acker,
                              state=AckState.SENDING, at=self.now)
            self.acks[eid] = claim
            if self.rng.random() < 0.03:  # the agent dies between claim and POST
                self.counts["lost_claims"] += 1
                self.lost_claims.add(eid)
                continue
            self.post(eid, decision, claim)

    def post(self, eid: str, decision: Decision, claim: AckRecord) -> None:
        ev = self.events[eid]
        key = (eid, decision.approval)
        self.acks_sent[key] = self.acks_sent.get(key, 0) + 1
        self.posts[eid] += 1
        rejected = self.rng.random() < 0.05  # e.g. a stale incarnation
        self.acks[eid] = claim.model_copy(update={
            "state": AckState.REJECTED if rejected else AckState.ACCEPTED})
        if rejected:
            return
        self.effective_posts[eid] += 1
        decided = self.basis_at.get((eid, "approval", decision.approval), self.now)
        ev.ack_basis = decided
        self.check_action("acknowledgement", eid, list(ev.resources), decided,
                          exempt=eid in self.forced_by_operator)
        if self.policy.rule(ev.kind) is TypeRule.DRAIN and eid not in self.forced_by_operator:
            for vm in ev.resources:
                rec = self.drains.get(vm)
                if (self.live(vm) and vm in self.registered()
                        and not (rec and rec.want is DrainWant.DRAINED
                                 and rec.status is DrainStatus.DRAINED)):
                    self.flag(f"acknowledgement of {eid} takes {vm} undrained")
        self.start(eid, by_ack=True)

    def resolve_claims(self) -> None:
        """An acker that lost a claim's outcome resolves it from IMDS (agent/ack.py)."""
        for eid, rec in list(self.acks.items()):
            if rec.state is not AckState.SENDING or not self.live(rec.vm):
                continue
            ev = self.events.get(eid)
            if ev is None or ev.status != "Scheduled":
                self.acks[eid] = rec.model_copy(update={"state": AckState.ACCEPTED})
            elif self.now - rec.at > 60:
                self.acks[eid] = rec.model_copy(update={"state": AckState.REJECTED})

    # ------------------------------------------------------------ operators and config

    def operators(self) -> None:
        roll = self.rng.random()
        if roll < 0.01 and self.groups:  # a group changes
            name = self.rng.choice(sorted(self.groups))
            group = self.groups[name]
            members = list(group.members)
            candidates = [n for n, t in self.truth.items() if t.agent and n not in members]
            if candidates and self.rng.random() < 0.5:
                members.append(self.rng.choice(candidates))
            elif len(members) > 2:
                members.pop(self.rng.randrange(len(members)))
            self.groups[name] = group.model_copy(update={"members": members})
            self.stored_groups[name] = self.groups[name]
            self.group_changed_at[name] = self.now
            self.counts["group_changes"] += 1
        elif roll < 0.013 and self.groups:  # a hand-written group that does not decode
            self.corrupt_groups.add(self.rng.choice(sorted(self.groups)))
            self.counts["corrupt_records"] += 1
        elif roll < 0.02 and self.corrupt_groups:
            self.corrupt_groups.clear()  # an operator fixes it (it blocks every admission)
        elif roll < 0.022:
            held = [d for d in self.decisions.values() if d.state is S.HELD
                    and d.event_id not in self.overrides]
            if held:
                d = self.rng.choice(held)
                self.overrides[d.event_id] = Override(
                    event_id=d.event_id, force="sim", skip_drain=self.rng.random() < 0.3)
                self.forced_by_operator.add(d.event_id)
                self.counts["operator_forces"] += 1
        elif roll < 0.025:
            failed = [d for d in self.decisions.values() if d.state is S.FAILED]
            if failed:
                d = self.rng.choice(failed)
                ov = self.overrides.get(d.event_id) or Override(event_id=d.event_id)
                self.overrides[d.event_id] = ov.model_copy(update={
                    "retry": max(ov.retry, d.retry_seen) + 1, "by": "sim"})
                self.counts["operator_retries"] += 1
        for name in self.provider_groups:  # the provider: members live now, durably kept
            group = self.groups[name]
            listed = [m for m in group.members if self.live(m)]
            members, seen = durable_members(self.stored_groups.get(name), listed, self.now,
                                            None)
            stored = group.model_copy(update={"members": members, "member_seen": seen})
            self.stored_groups[name] = stored

    def nemesis(self) -> None:
        if self.rng.random() < 0.04:
            vm = self.rng.choice(sorted(self.truth))
            if not self.truth[vm].deleted:
                self.crashed_until[vm] = self.now + self.rng.uniform(10, 600)
                self.down_since.setdefault(vm, self.now)
                self.counts["crashes"] += 1

    # ------------------------------------------------------------ time

    def step(self, schedule_rate: float = 0.08) -> None:
        self.steps += 1
        self.now += self.rng.uniform(1, 30)
        if self.rng.random() < schedule_rate:
            self.schedule()
        self.nemesis()
        self.platform_tick()
        self.operators()
        self.relay()
        self.drain_agents()
        self.resolve_claims()
        self.ackers()
        self.check_ours()
        self.history.append(self.mirror())
        del self.history[: -LAG_STEPS - 1]
        if self.rng.random() < 0.9:  # sometimes the coordinator lags a step
            self.coordinate()
        self.check_ours()

    def heal(self) -> None:
        """Faults stop: records decode again and the platform stops reshaping."""
        self.corrupt_groups.clear()

    def misrecorded(self) -> list[str]:
        """Events the platform started without our acknowledgement that our decision does
        not record as forced (the forced-start alert counts on it): ground truth against
        the record, once every event has ended."""
        out = []
        for eid, ev in self.events.items():
            decision = self.decisions.get(eid)
            if (decision is None or ev.started_by_ack or not ev.start_resources
                    or eid in self.forced_by_operator or eid in self.lost_claims):
                continue  # (a claim whose POST was lost may look sent: unknowable)
            if not any(t.to is S.FORCED for t in decision.history):
                out.append(f"{eid} started without us, recorded "
                           f"{[t.to.value for t in decision.history]}")
        return out

    def unfinished(self) -> list[str]:
        """Events whose decision has not reached a terminal state."""
        out = []
        for eid, ev in self.events.items():
            if eid not in self.records:
                continue  # no agent ever saw it (it lived between polls): not ours to end
            decision = self.decisions.get(eid)
            terminal = decision is not None and (
                decision.state is S.RESTORED or
                (decision.state is S.CANCELLED and not decision.reserved))
            if not terminal:
                out.append(f"{eid} ({ev.status}): {decision.state if decision else 'no decision'}"
                           f" {decision.reason if decision else ''}")
        return out


def _drained(rec: DrainRecord) -> bool:
    """The VM is out of service for this drain record (ground truth of the hook)."""
    if rec.want is DrainWant.DRAINED:
        return rec.status in (DrainStatus.RUNNING, DrainStatus.DRAINED, DrainStatus.FAILED)
    return rec.status is not DrainStatus.RESTORED


def run(seed: int, steps: int, drain_steps: int = 800) -> World:
    """`steps` steps of random maintenance, then quiet until every event has ended."""
    world = World.random(random.Random(seed))
    for _ in range(steps):
        world.step()
    world.heal()
    for _ in range(drain_steps):
        if not world.unfinished():
            break
        world.step(schedule_rate=0.0)
    return world


def with_policy(world: World, **changes: object) -> World:
    return replace(world, policy=world.policy.model_copy(update=changes))
