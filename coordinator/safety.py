"""The safety core: from one snapshot of the cluster to the next decisions. Pure, no I/O.

The invariant (docs/architecture.md, DESIGN.md): we never start a drain or an
acknowledgement that leaves a replica group with fewer than `min_available` members
that are live, not drained and not reserved by another in-flight event, and never
reserve more than `policy.max_concurrent_uds` update domains at once. Only the
platform breaks a group, by starting a held event at NotBefore (`forced`); the
best-effort drain shortly before that start is part of the forced event.

How: availability is *reserved* when draining starts (`Decision.reserved`) and released
only when the event is over and every reserved VM is back, live and restored. Every
reservation and every approval passes `Availability.admit`, which reads like the
invariant. Each call returns only the decisions that change, each with a reason an
operator can read.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

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
    Transition,
    TypeRule,
)

S = DecisionState
HISTORY_LIMIT = 50
MAX_APPROVALS = 5
"""Approvals renewed after rejections or silence before the event is marked failed."""
UNDELAYABLE = frozenset({EventType.PREEMPT, EventType.TERMINATE})
"""Types with too little notice to wait for safety: drain at once, approve only if safe."""
BEST_EFFORT = "; draining best-effort before the platform starts it"


@dataclass(frozen=True)
class VMView:
    name: str
    fd: int | None
    ud: int | None
    live: bool


@dataclass(frozen=True)
class GateResult:
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class Snapshot:
    """Everything the core may look at. The shell builds it from ZooKeeper."""

    now: float
    policy: Policy
    vms: Mapping[str, VMView]
    groups: Sequence[Group]
    events: Mapping[str, PlatformEvent]
    decisions: Mapping[str, Decision] = field(default_factory=dict)
    drains: Mapping[str, DrainRecord] = field(default_factory=dict)
    acks: Mapping[str, AckRecord] = field(default_factory=dict)
    gates: Mapping[str, GateResult] = field(default_factory=dict)
    """Health-gate results by group name; a gated group without a result is not yet safe."""


@dataclass(frozen=True)
class Change:
    """One event's new decision and the drain records to write with it, atomically."""

    previous: Decision | None
    decision: Decision
    drains: tuple[DrainRecord, ...] = ()

    @property
    def reserves(self) -> bool:
        """Whether this write changes which VMs are reserved (must be fenced)."""
        before = set(self.previous.reserved) if self.previous else set()
        return before != set(self.decision.reserved)


# ---------------------------------------------------------------- availability


class Availability:
    """Which VMs are unavailable now, and whether reserving some more keeps every promise.

    A VM is unavailable when its agent is not live (or it is unknown), when it is
    reserved by an in-flight event, or when its drain record says it is drained or not
    yet restored. Everything is computed on demand and kept incrementally: a check costs
    the size of the event and of the groups it touches, not of the cluster.
    """

    def __init__(self, snap: Snapshot) -> None:
        self.policy = snap.policy
        self.vms = snap.vms
        self.drains = snap.drains
        index = group_index(snap.groups)
        self.groups, self.members, self.groups_of = index.groups, index.members, index.groups_of
        self.holders: dict[str, set[str]] = defaultdict(set)
        for decision in snap.decisions.values():
            for vm in decision.reserved:
                self.holders[vm].add(decision.event_id)
        self._available: dict[str, int] = {}
        self._down_known: int | None = None
        """How many known VMs are unavailable (only counted when a cap asks)."""

    def down(self, vm: str) -> bool:
        view = self.vms.get(vm)
        if view is None or not view.live or self.holders.get(vm):
            return True
        rec = self.drains.get(vm)
        return rec is not None and _in_use(rec)

    def available(self, group: str) -> int:
        """Members of `group` available now."""
        if group not in self._available:
            self._available[group] = sum(1 for vm in self.members[group] if not self.down(vm))
        return self._available[group]

    def unavailable_known(self) -> int:
        if self._down_known is None:
            self._down_known = sum(1 for vm in self.vms if self.down(vm))
        return self._down_known

    def uds_reserved(self, excluding: str = "") -> set[int]:
        return {
            ud for vm, events in self.holders.items()
            if events - {excluding} and (ud := self._ud(vm)) is not None
        }

    def _ud(self, vm: str) -> int | None:
        view = self.vms.get(vm)
        return view.ud if view else None

    def admit(self, event_id: str, resources: Iterable[str]) -> str | None:
        """None when reserving `resources` for `event_id` keeps the invariant, else why not."""
        wanted = set(resources)
        for vm in sorted(wanted):
            others = self.holders.get(vm, set()) - {event_id}
            if others:
                return f"{vm} is reserved by event {sorted(others)[0]}"
        uds = self.uds_reserved(excluding=event_id)
        new_uds = {ud for vm in wanted if (ud := self._ud(vm)) is not None}
        if len(uds | new_uds) > self.policy.max_concurrent_uds:
            limit = self.policy.max_concurrent_uds
            busy = ", ".join(f"UD {ud}" for ud in sorted(uds - new_uds))
            if not busy:
                return (f"event spans {len(new_uds)} update domains "
                        f"({', '.join(map(str, sorted(new_uds)))}; max {limit} at once)")
            return (f"waiting for {busy} to finish: would make {len(uds | new_uds)} update "
                    f"domains unavailable at once (max {limit})")
        newly_down = {vm for vm in wanted if not self.down(vm)}
        touched = sorted({g for vm in wanted for g in self.groups_of.get(vm, ())})
        for name in touched:
            group = self.groups[name]
            taken = sorted(self.members[name] & wanted)
            after = self.available(name) - len(self.members[name] & newly_down)
            if after < group.required():
                return (f"group {name}: event would take {', '.join(taken)}, leaving "
                        f"{after} of {len(self.members[name])} available (min "
                        f"{group.required()})")
        cap = self.policy.unavailable_cap(len(self.vms))
        if cap is not None:
            after = self.unavailable_known() + sum(1 for vm in newly_down if vm in self.vms)
            if after > cap:
                return (f"cluster: {after} of {len(self.vms)} VMs would be unavailable, "
                        f"max_unavailable {self.policy.max_unavailable}")
        return None

    def reserve(self, event_id: str, resources: Iterable[str]) -> None:
        for vm in resources:
            self._change(vm, lambda v=vm: self.holders[v].add(event_id))

    def release(self, event_id: str, resources: Iterable[str]) -> None:
        for vm in resources:
            self._change(vm, lambda v=vm: self.holders[v].discard(event_id))

    def _change(self, vm: str, mutate: Callable[[], None]) -> None:
        """Apply `mutate` and keep the cached counts right if the VM's state flips."""
        before = self.down(vm)
        mutate()
        after = self.down(vm)
        if before == after:
            return
        step = -1 if after else 1
        for name in self.groups_of.get(vm, ()):
            if name in self._available:
                self._available[name] += step
        if self._down_known is not None and vm in self.vms:
            self._down_known -= step


@dataclass(frozen=True)
class GroupIndex:
    groups: dict[str, Group]
    members: dict[str, frozenset[str]]
    groups_of: dict[str, tuple[str, ...]]


_index_cache: list[tuple[tuple[int, ...], Sequence[Group], GroupIndex]] = []


def group_index(groups: Sequence[Group]) -> GroupIndex:
    """Groups indexed by member. The shell hands the same decoded Group objects pass
    after pass until one changes, so the index is rebuilt only then (keyed by identity;
    the cache entry keeps the objects alive so an id cannot be reused meanwhile)."""
    key = tuple(id(g) for g in groups)
    if _index_cache and _index_cache[0][0] == key:
        return _index_cache[0][2]
    members = {g.name: frozenset(g.members) for g in groups}
    groups_of: dict[str, list[str]] = defaultdict(list)
    for name, names in members.items():
        for vm in names:
            groups_of[vm].append(name)
    index = GroupIndex(groups={g.name: g for g in groups}, members=members,
                       groups_of={vm: tuple(names) for vm, names in groups_of.items()})
    _index_cache[:] = [(key, list(groups), index)]
    return index


# ---------------------------------------------------------------- the decision pass


def decide(snap: Snapshot) -> list[Change]:
    """The decisions that change in this snapshot, in the order they should be written."""
    avail = Availability(snap)
    changes: list[Change] = []
    for event in _in_order(snap):
        previous = snap.decisions.get(event.event_id)
        planner = _EventPlanner(snap, avail, event, previous)
        change = planner.run()
        if change is not None:
            changes.append(change)
    return changes


def _in_order(snap: Snapshot) -> list[PlatformEvent]:
    """In-flight events first (their releases free budget), then the rest by NotBefore."""
    def key(event: PlatformEvent) -> tuple[int, float, str]:
        decision = snap.decisions.get(event.event_id)
        waiting = decision is None or decision.state in (S.NEW, S.HELD)
        deadline = event.not_before if event.not_before is not None else float("-inf")
        return (1 if waiting else 0, deadline, event.event_id)

    return sorted(snap.events.values(), key=key)


class _EventPlanner:
    """Moves one event through its life cycle as far as this snapshot allows."""

    def __init__(self, snap: Snapshot, avail: Availability, event: PlatformEvent,
                 previous: Decision | None) -> None:
        self.snap = snap
        self.avail = avail
        self.event = event
        self.previous = previous
        self.d = previous or Decision(event_id=event.event_id, state_since=snap.now)
        self.drains: dict[str, DrainRecord] = {}

    # -- plumbing

    def run(self) -> Change | None:
        for _ in range(8):  # a few transitions may chain in one pass; bounded
            before = self.d
            self.step()
            if self.d == before:
                break
        if self.previous is not None and self.d == self.previous and not self.drains:
            return None
        if self.previous is None and self.d.state is S.NEW and not self.drains:
            self.d = self._update(reason=self.d.reason or "seen")
        return Change(self.previous, self.d, tuple(self.drains.values()))

    def _update(self, **fields: object) -> Decision:
        return self.d.model_copy(update={**fields, "updated_at": self.snap.now})

    def move(self, state: DecisionState, reason: str, **fields: object) -> None:
        if state is self.d.state:
            if reason != self.d.reason or any(getattr(self.d, k) != v for k, v in fields.items()):
                self.d = self._update(reason=reason, **fields)
            return
        history = [*self.d.history, Transition(at=self.snap.now, to=state, reason=reason)]
        self.d = self._update(state=state, reason=reason, state_since=self.snap.now,
                              history=history[-HISTORY_LIMIT:], **fields)

    def reserve(self, vms: Sequence[str]) -> None:
        extra = [vm for vm in vms if vm not in self.d.reserved]
        if extra:
            self.avail.reserve(self.event.event_id, extra)
            self.d = self._update(reserved=[*self.d.reserved, *extra])

    def release(self) -> None:
        self.avail.release(self.event.event_id, self.d.reserved)
        self.d = self._update(reserved=[])

    def request_drain(self, vms: Sequence[str]) -> None:
        """Ask these VMs to drain for this event, unless another event's drain holds them."""
        if self.snap.policy.dry_run:
            return
        asked = list(self.d.drain)
        for vm in vms:
            rec = self.snap.drains.get(vm)
            if rec and rec.event_id == self.event.event_id and rec.want is DrainWant.DRAINED:
                pass  # already asked: never re-drain (e.g. after a leader change)
            elif rec and rec.event_id != self.event.event_id and _in_use(rec):
                continue
            else:
                self.drains[vm] = DrainRecord(vm=vm, event_id=self.event.event_id,
                                              want=DrainWant.DRAINED,
                                              requested_at=self.snap.now,
                                              updated_at=self.snap.now)
            if vm not in asked:
                asked.append(vm)
        if asked != self.d.drain:
            self.d = self._update(drain=asked)

    def request_restore(self) -> None:
        for vm in self.d.drain:
            rec = self.snap.drains.get(vm)
            if rec is None or rec.event_id != self.event.event_id:
                continue
            if rec.want is DrainWant.DRAINED:
                self.drains[vm] = rec.model_copy(update={
                    "want": DrainWant.RESTORED, "status": DrainStatus.PENDING,
                    "requested_at": self.snap.now, "updated_at": self.snap.now, "detail": ""})

    # -- facts

    @property
    def resources(self) -> list[str]:
        return list(dict.fromkeys(self.event.resources))

    def live(self, vm: str) -> bool:
        view = self.snap.vms.get(vm)
        return bool(view and view.live)

    def rule(self) -> TypeRule:
        return self.snap.policy.rule(self.event.event_type)

    def ack(self) -> AckRecord | None:
        rec = self.snap.acks.get(self.event.event_id)
        return rec if rec and rec.approval == self.d.approval and self.d.approval else None

    def we_acknowledged(self) -> bool:
        rec = self.ack()
        return rec is not None and rec.state in (AckState.SENDING, AckState.ACCEPTED)

    def blocked_by_operator(self) -> str | None:
        if self.d.operator_hold:
            return f"operator hold: {self.d.operator_hold}"
        if self.snap.policy.paused:
            return "approvals paused by an operator"
        return None

    # -- the life cycle

    def step(self) -> None:
        status = self.event.status
        if status is PlatformStatus.GONE:
            self.on_gone()
        elif status is PlatformStatus.STARTED:
            self.on_started()
        else:
            self.on_scheduled()

    def on_gone(self) -> None:
        state = self.d.state
        if state is S.RESTORED or (state is S.CANCELLED and not self.d.reserved):
            return
        if state in (S.COMPLETED, S.CANCELLED):
            self.try_release()
            return
        if self.event.started_at is not None or self.ran_unseen():
            self.on_started()
        if self.d.state in (S.STARTED, S.FORCED):
            self.move(S.COMPLETED, "event finished; waiting for its VMs to come back")
        else:
            self.move(S.CANCELLED, "event left IMDS before it started")
        self.request_restore()
        self.try_release()

    def ran_unseen(self) -> bool:
        """Gone without any agent seeing it Started: did it run between two polls?"""
        if self.d.state in (S.APPROVED, S.ACKNOWLEDGED) and self.we_acknowledged():
            return True
        gone, not_before = self.event.gone_at, self.event.not_before
        return gone is not None and not_before is not None and gone >= not_before

    def try_release(self) -> None:
        waiting = [vm for vm in self.d.reserved if not self._restored(vm)]
        if waiting:
            self.request_restore()
            reason = f"waiting for {', '.join(waiting[:5])} to come back and restore"
            if self.snap.now - self.d.state_since > self.snap.policy.restore_timeout_s:
                reason = f"stuck: {reason}"
            if self.d.state is S.CANCELLED:
                reason = f"cancelled; {reason}"
            self.move(self.d.state, reason)
            return
        gate = self.gate_problem()
        if gate and self.d.state is S.COMPLETED:
            self.move(S.COMPLETED, f"restored; {gate}")
            return
        self.release()
        if self.d.state is S.CANCELLED:
            self.move(S.CANCELLED, "event left IMDS before it started; VMs released")
        else:
            self.move(S.RESTORED, "VMs back and restored; reservation released")

    def _restored(self, vm: str) -> bool:
        if vm not in self.snap.vms:
            return True  # not one of ours (unknown resource): nothing to wait for
        if not self.live(vm):
            return False
        if vm not in self.d.drain:
            return True
        rec = self.snap.drains.get(vm)
        return rec is None or rec.event_id != self.event.event_id or (
            rec.want is DrainWant.RESTORED and rec.status is DrainStatus.RESTORED)

    def on_started(self) -> None:
        state = self.d.state
        if state in (S.STARTED, S.FORCED, S.COMPLETED, S.RESTORED, S.CANCELLED):
            return
        if state in (S.APPROVED, S.ACKNOWLEDGED) and self.we_acknowledged():
            self.move(S.STARTED, "started after our acknowledgement", ours=True)
            return
        self.reserve(self.resources)
        self.move(S.FORCED, "platform started the event without our acknowledgement")

    def on_scheduled(self) -> None:
        state = self.d.state
        if state in (S.NEW, S.HELD):
            self.admit_or_hold()
        elif state is S.DRAINING:
            self.follow_drain()
        elif state is S.READY:
            self.try_approve()
        elif state is S.APPROVED:
            self.follow_ack()
        elif state is S.FAILED and self.d.force_reason:
            self.approve(f"forced by operator: {self.d.force_reason}")

    def admit_or_hold(self) -> None:
        if self.d.force_reason:
            self.reserve(self.resources)
            self.approve(f"forced by operator: {self.d.force_reason}")
            return
        blocked = self.blocked_by_operator()
        problem = blocked or self.avail.admit(self.event.event_id, self.resources)
        if problem is None:
            self.reserve(self.resources)
            if self.rule() is TypeRule.DRAIN:
                self.request_drain([vm for vm in self.resources if vm in self.snap.vms])
            self.move(S.DRAINING, "safe: reserved; draining" if self.d.drain
                      else "safe: reserved; nothing to drain")
            return
        if self.best_effort_due() and not self.d.best_effort:
            self.reserve(self.resources)
            if self.rule() is TypeRule.DRAIN:
                self.request_drain([vm for vm in self.resources if vm in self.snap.vms])
            self.move(S.HELD, f"{_held_because(problem)}{BEST_EFFORT}", best_effort=True)
            return
        reason = blocked or _held_because(problem)
        if self.d.best_effort:
            reason += BEST_EFFORT
        self.move(S.HELD, reason)

    def best_effort_due(self) -> bool:
        if self.event.event_type in UNDELAYABLE:
            return True
        not_before = self.event.not_before
        lead = self.snap.policy.best_effort_lead_s
        return not_before is None or self.snap.now >= not_before - lead

    def drain_progress(self) -> tuple[list[str], list[str]]:
        """(VMs still draining, failures). A lost VM has nothing left to drain: it is
        already counted unavailable."""
        pending, failed = [], []
        for vm in self.d.drain:
            rec = self.snap.drains.get(vm)
            if not self.live(vm):
                continue
            if rec is None or rec.event_id != self.event.event_id:
                pending.append(vm)
            elif rec.status is DrainStatus.FAILED:
                failed.append(f"{vm}: {rec.detail[-200:] or 'hook failed'}")
            elif rec.status is not DrainStatus.DRAINED:
                pending.append(vm)
        return pending, failed

    def follow_drain(self) -> None:
        pending, failed = self.drain_progress()
        if failed:
            self.move(S.FAILED, f"drain failed on {'; '.join(failed)}")
        elif pending and self.snap.now - self.d.state_since > self.snap.policy.drain_timeout_s:
            self.move(S.FAILED, f"drain timed out on {', '.join(pending)} after "
                      f"{self.snap.policy.drain_timeout_s:g} s")
        elif pending:
            self.move(S.DRAINING, f"draining {', '.join(pending[:5])}")
        elif self.snap.policy.dry_run and self.rule() is TypeRule.DRAIN:
            self.move(S.READY, "dry-run: would drain " + ", ".join(self.resources[:5]))
        else:
            self.move(S.READY, "drained" if self.d.drain else "nothing to drain")

    def try_approve(self) -> None:
        if self.d.force_reason:
            self.approve(f"forced by operator: {self.d.force_reason}")
            return
        pending, failed = self.drain_progress()
        if pending or failed:
            self.move(S.DRAINING, "a VM came back undrained: draining again")
            return
        problem = (self.blocked_by_operator()
                   or self.avail.admit(self.event.event_id, self.resources)
                   or self.gate_problem())
        if problem:
            self.move(S.READY, f"drained; waiting: {problem}")
            return
        self.approve("safe and drained: approved")

    def gate_problem(self) -> str | None:
        touched = {g for vm in self.resources for g in self.avail.groups_of.get(vm, ())}
        for name in sorted(touched):
            if not self.avail.groups[name].health_gate:
                continue
            result = self.snap.gates.get(name)
            if result is None:
                return f"health gate of group {name} not yet checked"
            if not result.ok:
                return f"health gate of group {name} failing: {result.detail[:200]}"
        return None

    def approve(self, reason: str) -> None:
        acker = self.choose_acker()
        if self.snap.policy.dry_run:
            self.move(S.APPROVED, f"dry-run: {reason}; would acknowledge via {acker}",
                      acker=None)
            return
        if acker is None:
            self.move(self.d.state, "approved but no live agent sees the event to acknowledge")
            return
        if self.d.approval >= MAX_APPROVALS:
            self.move(S.FAILED, f"{self.d.approval} acknowledgements did not start the event")
            return
        self.move(S.APPROVED, f"{reason}; acker {acker}", acker=acker,
                  approval=self.d.approval + 1)

    def choose_acker(self) -> str | None:
        seen = set(self.event.seen_by)
        for vm in [*self.resources, *sorted(seen)]:
            if vm in seen and self.live(vm):
                return vm
        return None

    def follow_ack(self) -> None:
        if self.snap.policy.dry_run:
            return
        rec = self.ack()
        if rec and rec.state is AckState.ACCEPTED:
            self.move(S.ACKNOWLEDGED, f"acknowledged by {rec.vm}")
        elif rec and rec.state is AckState.REJECTED:
            self.move(S.READY, f"acknowledgement rejected: {rec.detail[:200]}")
            self.try_approve()
        elif rec is None and not self.d.force_reason and (problem := self.blocked_by_operator()
                              or self.avail.admit(self.event.event_id, self.resources)):
            # Nothing sent yet: take the approval back. The acker's `sending` write bumps
            # the decision's version, so this write and that one cannot both succeed.
            self.move(S.READY, f"approval revoked: {problem}", acker=None)
        elif rec is None and self.snap.now - self.d.state_since > self.snap.policy.ack_timeout_s:
            self.move(S.READY, f"acker {self.d.acker} did not acknowledge in time")
            self.try_approve()
        elif rec is None and self.d.acker and not self.live(self.d.acker):
            self.move(S.READY, f"acker {self.d.acker} lost before acknowledging")
            self.try_approve()


def _held_because(problem: str | None) -> str:
    """Waiting for our own budget is routine; anything else would break a promise."""
    text = problem or "unknown"
    return text if text.startswith("waiting") else f"unsafe: {text}"


def _in_use(rec: DrainRecord) -> bool:
    """A drain record that still holds its VM for its own event."""
    return rec.want is DrainWant.DRAINED or rec.status is not DrainStatus.RESTORED
