"""A randomized cluster world for the safety core: platform, agents, faults, and two checkers.

The world is independent of the core's bookkeeping. It keeps ground truth (which VMs are
really down, drained, or live) and checks two things after every step:

- decision level (strict): every reservation or approval the core just made, applied one
  at a time in the order returned, leaves every group it touches at or above
  `min_available` counting everything unavailable (dead, reserved, drained), and keeps
  the reserved update domains within `max_concurrent_uds`;
- ground truth (attribution): VMs out of service *because of us* (drained by a drain we
  started while the event was safe, or down in an event that started after our
  acknowledgement) never exceed any group's slack, nor the UD budget. Outages caused by
  crashes or platform-forced starts are the platform's, never counted against us.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

from coordinator.safety import Change, Snapshot, VMView, decide
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
    PlatformEvent,
    PlatformStatus,
    Policy,
    TypeRule,
)

S = DecisionState
NOTICE = {EventType.REBOOT: 900, EventType.REDEPLOY: 600, EventType.FREEZE: 900,
          EventType.PREEMPT: 30, EventType.TERMINATE: 300}


@dataclass
class PlatformEventState:
    record: PlatformEvent
    duration: float
    started_by_ack: bool = False
    ends_at: float | None = None


@dataclass
class World:
    rng: random.Random
    policy: Policy
    vms: dict[str, VMView]
    groups: list[Group]
    now: float = 1_700_000_000.0
    events: dict[str, PlatformEventState] = field(default_factory=dict)
    crashed_until: dict[str, float] = field(default_factory=dict)
    down_until: dict[str, float] = field(default_factory=dict)
    decisions: dict[str, Decision] = field(default_factory=dict)
    drains: dict[str, DrainRecord] = field(default_factory=dict)
    acks: dict[str, AckRecord] = field(default_factory=dict)
    view: dict[str, PlatformEvent] = field(default_factory=dict)
    """What the agents have relayed so far (may lag the platform)."""
    next_id: int = 0
    acks_sent: dict[tuple[str, int], int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    down_cause: dict[str, str] = field(default_factory=dict)
    platform_owned: set[str] = field(default_factory=set)
    """Events drained best-effort, forced, or force-approved: their outages are not ours."""
    counts: dict[str, int] = field(default_factory=dict)

    # ------------------------------------------------------------ set-up

    @classmethod
    def random(cls, rng: random.Random) -> World:
        fds, uds = rng.randint(2, 3), rng.randint(3, 5)
        vms = {}
        for i in range(fds * uds * rng.randint(1, 2)):
            name = f"vm-{i}"
            vms[name] = VMView(name=name, fd=i % fds, ud=(i // fds) % uds, live=True)
        names = sorted(vms)
        groups = []
        for g in range(rng.randint(1, 6)):
            size = rng.randint(2, min(5, len(names)))
            members = rng.sample(names, size)
            if rng.random() < 0.1:
                members.append("ghost-vm")  # never registered: always unavailable
            minimum: int | str = rng.choice(["majority", 1, max(1, size - 1)])
            groups.append(Group(name=f"g{g}", members=members, min_available=minimum))
        rules = {kind: rng.choice([TypeRule.DRAIN, TypeRule.DRAIN, TypeRule.NO_DRAIN])
                 for kind in EventType}
        policy = Policy(max_concurrent_uds=rng.choice([1, 1, 2]), rules=rules,
                        max_unavailable=rng.choice([None, None, 4, "30%"]),
                        drain_timeout_s=rng.choice([60.0, 600.0]),
                        best_effort_lead_s=rng.choice([0.0, 60.0, 120.0]),
                        ack_timeout_s=60.0)
        return cls(rng=rng, policy=policy, vms=vms, groups=groups)

    # ------------------------------------------------------------ ground truth

    def live(self, vm: str) -> bool:
        return vm in self.vms and vm not in self.crashed_until and vm not in self.down_until

    def snapshot(self) -> Snapshot:
        vms = {n: replace(v, live=self.live(n)) for n, v in self.vms.items()}
        return Snapshot(now=self.now, policy=self.policy, vms=vms, groups=self.groups,
                        events=dict(self.view), decisions=dict(self.decisions),
                        drains=dict(self.drains), acks=dict(self.acks))

    def out_because_of_us(self) -> set[str]:
        """From ground truth only: drained by a drain we asked for while the event was safe,
        or down in an event the platform started because we acknowledged it."""
        out = set()
        for vm, rec in self.drains.items():
            still_drained = rec.status is not DrainStatus.PENDING and not (
                rec.want is DrainWant.RESTORED and rec.status is DrainStatus.RESTORED)
            if still_drained and rec.event_id not in self.platform_owned:
                out.add(vm)
        for vm, eid in self.down_cause.items():
            if vm in self.down_until and self.events[eid].started_by_ack:
                out.add(vm)
        return out

    def check_ground_truth(self) -> None:
        ours = self.out_because_of_us()
        for group in self.groups:
            members = set(group.members)
            if len(members) - len(members & ours) < group.required():
                self.violations.append(f"t={self.now:.0f} group {group.name} broken by us: "
                                       f"{sorted(members & ours)}")
        uds = {self.vms[vm].ud for vm in ours}
        if len(uds) > self.policy.max_concurrent_uds:
            self.violations.append(f"t={self.now:.0f} our outages span UDs {sorted(uds)}")

    def check_change(self, before: Snapshot, change: Change) -> None:
        """Strict: a reservation or approval by the core keeps every promise at that moment."""
        new, old = change.decision, change.previous
        added = set(new.reserved) - set(old.reserved if old else [])
        approved_now = new.state is S.APPROVED and (old is None or old.approval != new.approval)
        forced = any(t.to is S.FORCED for t in new.history)
        if new.best_effort or forced or new.force_reason:
            return  # the platform's outage (or an operator's override), not our decision
        if not added and not approved_now:
            return
        holders: dict[str, set[str]] = {}
        for d in before.decisions.values():
            for vm in d.reserved:
                holders.setdefault(vm, set()).add(d.event_id)
        for vm in new.reserved:
            holders.setdefault(vm, set()).add(new.event_id)
        for vm, events in holders.items():
            if len(events) > 1 and new.event_id in events:
                self.violations.append(f"{vm} reserved by {sorted(events)} at once")

        def available(vm: str) -> bool:
            view = before.vms.get(vm)
            rec = before.drains.get(vm)
            in_use = rec is not None and (rec.want is DrainWant.DRAINED or
                                          rec.status is not DrainStatus.RESTORED)
            return bool(view and view.live) and not holders.get(vm) and not in_use

        for group in self.groups:
            members = set(group.members)
            if not members & set(new.reserved):
                continue
            left = sum(1 for vm in members if available(vm))
            if left < group.required():
                self.violations.append(
                    f"t={self.now:.0f} {new.event_id} {new.state} leaves {group.name} at "
                    f"{left} < {group.required()}")
        uds = {before.vms[vm].ud for vm, ev in holders.items() if ev and vm in before.vms}
        if len(uds) > self.policy.max_concurrent_uds:
            self.violations.append(f"t={self.now:.0f} {new.event_id} reserves UDs {sorted(uds)}")
        cap = self.policy.unavailable_cap(len(self.vms))
        if cap is not None:
            down = sum(1 for vm in self.vms if not available(vm))
            if down > cap:
                self.violations.append(f"t={self.now:.0f} {down} VMs unavailable > cap {cap}")

    # ------------------------------------------------------------ the coordinator

    def coordinate(self, lose_writes: bool = False) -> None:
        snap = self.snapshot()
        changes = decide(snap)
        if lose_writes and changes:  # the leader dies mid-pass: a suffix is never written
            changes = changes[: self.rng.randrange(len(changes))]
        for change in changes:
            self.check_change(snap, change)
            if change.decision.best_effort or change.decision.state is S.FORCED:
                self.platform_owned.add(change.decision.event_id)
            self.decisions[change.decision.event_id] = change.decision
            for rec in change.drains:
                self.drains[rec.vm] = rec
            snap = self.snapshot()
        self.counts["passes"] = self.counts.get("passes", 0) + 1

    # ------------------------------------------------------------ the world moves

    def schedule(self) -> None:
        kind = self.rng.choice([EventType.REBOOT] * 4 + [EventType.REDEPLOY, EventType.FREEZE,
                                                         EventType.PREEMPT, EventType.TERMINATE])
        ud = self.rng.choice(sorted({v.ud for v in self.vms.values()}))
        in_ud = sorted(n for n, v in self.vms.items() if v.ud == ud)
        resources = self.rng.sample(in_ud, self.rng.randint(1, len(in_ud)))
        if self.rng.random() < 0.05:  # a misbehaving platform: more than one UD
            resources.append(self.rng.choice(sorted(self.vms)))
        if self.rng.random() < 0.03:
            resources.append("not-our-vm")
        self.next_id += 1
        eid = f"E{self.next_id:04d}"
        immediate = self.rng.random() < 0.03  # hardware failure: straight to Started
        record = PlatformEvent(event_id=eid, event_type=kind, status=PlatformStatus.SCHEDULED,
                               resources=list(dict.fromkeys(resources)),
                               not_before=self.now + NOTICE[kind], seen_by=[])
        self.events[eid] = PlatformEventState(record, duration=self.rng.uniform(5, 300))
        if immediate:
            self.start(eid, by_ack=False)
        self.counts["events"] = self.counts.get("events", 0) + 1

    def start(self, eid: str, by_ack: bool) -> None:
        state = self.events[eid]
        if state.record.status is not PlatformStatus.SCHEDULED:
            return
        state.record = state.record.model_copy(update={"status": PlatformStatus.STARTED,
                                                       "not_before": None})
        state.started_by_ack = by_ack
        state.ends_at = self.now + state.duration
        for vm in state.record.resources:
            freeze = state.record.event_type is EventType.FREEZE
            if vm in self.vms and not freeze and state.ends_at > self.down_until.get(vm, 0):
                self.down_until[vm] = state.ends_at
                self.down_cause[vm] = eid
        self.counts["acked" if by_ack else "forced"] = (
            self.counts.get("acked" if by_ack else "forced", 0) + 1)

    def platform_tick(self) -> None:
        for eid, state in list(self.events.items()):
            rec = state.record
            if rec.status is PlatformStatus.SCHEDULED and rec.not_before is not None and (
                    self.now >= rec.not_before):
                self.start(eid, by_ack=False)
            elif rec.status is PlatformStatus.STARTED and state.ends_at is not None and (
                    self.now >= state.ends_at):
                state.record = rec.model_copy(update={"status": PlatformStatus.GONE})
            elif (rec.status is PlatformStatus.SCHEDULED and self.rng.random() < 0.01):
                state.record = rec.model_copy(update={"status": PlatformStatus.GONE})  # cancel
        for vm, until in list(self.down_until.items()):
            if self.now >= until:
                del self.down_until[vm]
        for vm, until in list(self.crashed_until.items()):
            if self.now >= until:
                del self.crashed_until[vm]

    def relay(self) -> None:
        """Agents report what they see, possibly late, duplicated or out of order."""
        for eid, state in self.events.items():
            if self.rng.random() < 0.2:
                continue  # this poll missed it; stale view for now
            seen = [vm for vm in state.record.resources if self.live(vm)]
            seen += [vm for vm in self.rng.sample(sorted(self.vms), 2) if self.live(vm)]
            old = self.view.get(eid)
            record = state.record
            if old is not None:
                order = [PlatformStatus.SCHEDULED, PlatformStatus.STARTED, PlatformStatus.GONE]
                if order.index(old.status) > order.index(record.status):
                    record = old  # a stale report never moves status backwards
            started_at = old.started_at if old and old.started_at else None
            if started_at is None and record.status is not PlatformStatus.SCHEDULED and (
                    state.ends_at is not None):
                started_at = self.now
            gone_at = old.gone_at if old and old.gone_at else (
                self.now if record.status is PlatformStatus.GONE else None)
            self.view[eid] = record.model_copy(update={
                "seen_by": sorted(set(old.seen_by if old else []) | set(seen)),
                "started_at": started_at, "gone_at": gone_at})

    def agents(self) -> None:
        for vm, rec in list(self.drains.items()):
            if not self.live(vm) or rec.status not in (DrainStatus.PENDING, DrainStatus.RUNNING):
                continue
            roll = self.rng.random()
            if rec.want is DrainWant.DRAINED:
                if roll < 0.03:
                    status = DrainStatus.FAILED
                elif roll < 0.7:
                    status = DrainStatus.DRAINED
                else:
                    status = DrainStatus.RUNNING
            else:
                status = DrainStatus.RESTORED if roll < 0.8 else DrainStatus.RUNNING
            self.drains[vm] = rec.model_copy(update={"status": status, "detail": "sim"})
        for eid, decision in self.decisions.items():
            if decision.state is not S.APPROVED or decision.acker is None:
                continue
            if not self.live(decision.acker) or self.rng.random() < 0.3:
                continue
            key = (eid, decision.approval)
            existing = self.acks.get(eid)
            if existing and existing.approval == decision.approval:
                continue  # at most one POST per approval
            state = self.events.get(eid)
            if state is None or state.record.status is not PlatformStatus.SCHEDULED:
                continue
            self.acks_sent[key] = self.acks_sent.get(key, 0) + 1
            rejected = self.rng.random() < 0.05
            self.acks[eid] = AckRecord(event_id=eid, approval=decision.approval,
                                       vm=decision.acker,
                                       state=AckState.REJECTED if rejected else AckState.ACCEPTED)
            if not rejected:
                self.start(eid, by_ack=True)

    def nemesis(self) -> None:
        roll = self.rng.random()
        if roll < 0.04:
            vm = self.rng.choice(sorted(self.vms))
            self.crashed_until[vm] = self.now + self.rng.uniform(10, 600)
            self.counts["crashes"] = self.counts.get("crashes", 0) + 1

    def step(self, schedule_rate: float = 0.08) -> None:
        self.now += self.rng.uniform(1, 30)
        if self.rng.random() < schedule_rate:
            self.schedule()
        self.nemesis()
        self.platform_tick()
        self.relay()
        self.agents()
        self.check_ground_truth()
        if self.rng.random() < 0.9:  # sometimes the coordinator lags a step
            self.coordinate(lose_writes=self.rng.random() < 0.05)
        self.check_ground_truth()

    def unfinished(self) -> list[str]:
        """Events whose decision has not reached a terminal state."""
        out = []
        for eid in self.events:
            decision = self.decisions.get(eid)
            terminal = decision is not None and (
                decision.state is S.RESTORED or
                (decision.state is S.CANCELLED and not decision.reserved))
            if not terminal:
                out.append(f"{eid}: {decision.state if decision else 'no decision'} "
                           f"{decision.reason if decision else ''}")
        return out


def run(seed: int, steps: int, drain_steps: int = 600) -> World:
    """`steps` steps of random maintenance, then quiet until every event has ended."""
    world = World.random(random.Random(seed))
    for _ in range(steps):
        world.step()
    for _ in range(drain_steps):
        if not world.unfinished():
            break
        world.step(schedule_rate=0.0)
    return world
