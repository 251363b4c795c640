"""The safety core: from one snapshot of the cluster to the next decisions. Pure, no I/O.

The invariant (docs/architecture.md): we never start a drain or an acknowledgement that
leaves a replica group with fewer than `min_available` members that are live, not
drained and not reserved by another in-flight event, and never reserve more than
`policy.max_concurrent_uds` update domains at once — judged on the VMs the event
*really* takes: the Resources the platform lists now. Only the platform breaks a group,
by starting a held event at NotBefore (`forced`); the best-effort drain shortly before
that start is part of the forced event.

How: availability is *reserved* when draining starts (`Decision.reserved`) and released
only when the event is confirmed gone and every reserved VM is back, live and
restored. Every reservation and every approval passes `Availability.admit`, which reads
like the invariant; an event whose Resources grow is reserved and drained again before
any approval, and an approval names the set it covers (`Decision.approved`) so the
acker sends nothing when its own IMDS document lists more. What the core cannot see
fails closed: a VM it does not know, a VM without an update domain, and a record that
does not decode all block the events they might touch, with a reason.

Each call returns only the decisions that change, each with a reason an operator can
read and a code (`DecisionCode`) that code can branch on.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from registry.domains import NAMES, Domain, DomainMode, Where, domain_of, resolve
from registry.records import (
    AckRecord,
    AckState,
    Decision,
    DecisionCode,
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
    Transition,
    TypeRule,
)

S = DecisionState
C = DecisionCode
HISTORY_LIMIT = 50
MAX_APPROVALS = 5
"""Approvals renewed after rejections or silence before the event is marked failed."""
UNDELAYABLE = frozenset({EventType.PREEMPT, EventType.TERMINATE})
"""Types with too little notice to wait for safety: drain at once, approve only if safe."""
BEST_EFFORT = "; draining best-effort before the platform starts it"
BEST_EFFORT_DRY = "; would drain best-effort before the platform starts it"
IN_FLIGHT = frozenset({S.DRAINING, S.READY, S.APPROVED})
"""States that hold a reservation for an approval still to come or not yet used."""


@dataclass(frozen=True)
class VMView:
    name: str
    fd: int | None
    ud: int | None
    live: bool
    zone: str = ""
    scale_set: str = ""
    flexible: bool = False

    def where(self) -> Where:
        return Where(self.fd, self.ud, self.zone, self.scale_set, self.flexible)


def plan_domains(policy: Policy, vms: Mapping[str, VMView]) -> tuple[DomainMode | None, str]:
    """The cluster's concrete maintenance unit (or None and why): the shell keeps it while
    the VMs and the policy are unchanged, so a pass does not walk every VM."""
    return resolve(policy.maintenance_domain, ((n, v.where()) for n, v in vms.items()))


@dataclass(frozen=True)
class GateResult:
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class Unreadable:
    """Records that exist but do not decode, by folder: the core fails closed on them."""

    decisions: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    drains: frozenset[str] = frozenset()
    """VM names whose `drain/<vm>` record does not decode."""
    acks: frozenset[str] = frozenset()
    overrides: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.decisions or self.groups or self.drains or self.acks
                    or self.overrides)


@dataclass(frozen=True)
class GroupIndex:
    groups: dict[str, Group]
    members: dict[str, frozenset[str]]
    groups_of: dict[str, tuple[str, ...]]

    @classmethod
    def build(cls, groups: Sequence[Group]) -> GroupIndex:
        members = {g.name: frozenset(g.members) for g in groups}
        groups_of: dict[str, list[str]] = defaultdict(list)
        for name, names in members.items():
            for vm in names:
                groups_of[vm].append(name)
        return cls(groups={g.name: g for g in groups}, members=members,
                   groups_of={vm: tuple(names) for vm, names in groups_of.items()})


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
    """Read together with the decisions (never from a lagging cache): an acker's claim
    and the decision version it bumped are seen together or not at all."""
    gates: Mapping[str, GateResult] = field(default_factory=dict)
    """Health-gate results by group name; a gated group without a result is not yet safe."""
    overrides: Mapping[str, Override] = field(default_factory=dict)
    unreadable: Unreadable = field(default_factory=Unreadable)
    index: GroupIndex | None = None
    """The groups indexed by member; the shell passes one it keeps while the groups are
    unchanged (None: built here)."""
    domains: tuple[DomainMode | None, str] | None = None
    """`plan_domains` of this snapshot, when the shell kept one (None: computed here)."""
    watching_since: float = 0.0
    """When the deciding leader's current stretch of connected leadership began. A drain's
    or an acknowledgement's deadline does not run before it: while no leader could read
    ZooKeeper (quorum lost, an election) no report could be seen, and failing every
    drain in flight the moment a new leader looks is what a stuck hook deserves, not a
    control-plane outage."""


@dataclass(frozen=True)
class Change:
    """One event's new decision and the drain records to write with it, atomically."""

    previous: Decision | None
    decision: Decision
    drains: tuple[DrainRecord, ...] = ()
    checks: tuple[str, ...] = ()
    """VMs whose drain record this change relied on as the snapshot shows it (an approval
    relies on "drained"): the shell writes only if those records are unchanged since, so
    a mirror that has not caught up with the leader's own last write cannot approve."""

    @property
    def reserves(self) -> bool:
        """Whether this write changes which VMs are reserved (must be fenced)."""
        before = set(self.previous.reserved) if self.previous else set()
        return before != set(self.decision.reserved)


@dataclass(frozen=True)
class Problem:
    """Why an event may not be reserved or approved now."""

    code: DecisionCode
    text: str

    @property
    def routine(self) -> bool:
        """Waiting for our own budget, not a risk an operator must look at."""
        return self.code in (C.WAITING_FOR_UD, C.RESERVED_ELSEWHERE)

    def held(self) -> str:
        """The sentence for a hold: anything that is not our own budget or an operator's
        word would break a promise, and says so."""
        plain = self.routine or self.code in (C.OPERATOR_HOLD, C.PAUSED)
        return self.text if plain else f"unsafe: {self.text}"


# ---------------------------------------------------------------- availability


class Availability:
    """Which VMs are unavailable now, and whether reserving some more keeps every promise.

    A VM is unavailable when its agent is not live (or it is unknown), when it is
    reserved by an in-flight event, or when its drain record says it is drained, not
    yet restored or unreadable. Everything is computed on demand and kept
    incrementally: a check costs the size of the event and of the groups it touches,
    not of the cluster.
    """

    def __init__(self, snap: Snapshot) -> None:
        self.policy = snap.policy
        self.vms = snap.vms
        self.drains = snap.drains
        self.unreadable = snap.unreadable
        index = snap.index or GroupIndex.build(snap.groups)
        self.groups, self.members, self.groups_of = index.groups, index.members, index.groups_of
        self.holders: dict[str, set[str]] = defaultdict(set)
        self.deleted: set[str] = set()
        """VMs an undelayable event took for good: nobody waits for them to return."""
        for decision in snap.decisions.values():
            for vm in decision.reserved:
                self.holders[vm].add(decision.event_id)
            self.deleted.update(decision.not_returned)
        self._available: dict[str, int] = {}
        self._down_known: int | None = None
        """How many known VMs are unavailable (only counted when a cap asks)."""
        self._folded: dict[str, str] | None = None
        self.mode, self.mixed = snap.domains or plan_domains(snap.policy, snap.vms)
        """The maintenance unit; None (and `mixed` says why) when auto cannot pick one."""

    def resolve(self, name: str) -> str:
        """The known VM a Resources entry names (Azure VM names ignore case), else itself."""
        if name in self.vms:
            return name
        if self._folded is None:
            self._folded = {vm.casefold(): vm for vm in self.vms}
        return self._folded.get(name.casefold(), name)

    def down(self, vm: str) -> bool:
        view = self.vms.get(vm)
        if view is None or not view.live or self.holders.get(vm):
            return True
        if vm in self.unreadable.drains:
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
            self._down_known = sum(1 for vm in self.vms
                                   if self.down(vm) and vm not in self.deleted)
        return self._down_known

    def cluster_size(self) -> int:
        """Registered VMs, less those a Terminate or Preempt took for good: a deleted VM
        is neither part of the cluster nor unavailable in it (counting it would close
        the cap a little more with every scale-in)."""
        return len(self.vms) - len(self.deleted & self.vms.keys())

    def domains_reserved(self, excluding: str = "") -> set[Domain]:
        return {
            domain for vm, events in self.holders.items()
            if events - {excluding} and (domain := self.domain(vm)) is not None
        }

    def domain(self, vm: str) -> Domain | None:
        view = self.vms.get(vm)
        if view is None or self.mode is None:
            return None
        return domain_of(self.mode, view.where())

    def outside(self, vm: str) -> bool:
        """An unknown VM that policy treats as outside every group and budget."""
        return (vm not in self.vms and self.policy.unmanaged_vms == "outside"
                and vm not in self.groups_of)

    def admit(self, event_id: str, resources: Iterable[str]) -> Problem | None:
        """None when reserving `resources` for `event_id` keeps the invariant, else why not."""
        if problem := self._unreadable_problem(event_id):
            return problem
        wanted = set(resources)
        for vm in sorted(wanted):
            if vm in self.unreadable.drains:
                return Problem(C.UNREADABLE_RECORD,
                               f"the drain record of {vm} does not decode; fix or delete it")
            if vm not in self.vms and not self.outside(vm):
                why = ("a member of group " + self.groups_of[vm][0] if vm in self.groups_of
                       else "no agent has registered it")
                return Problem(C.UNKNOWN_VM, f"unknown VM {vm} ({why}): it may be in any "
                               "update domain; register its agent, fix the name, or set "
                               "policy unmanaged_vms=outside if it runs nothing replicated")
            if self.mode is None:
                return Problem(C.MIXED_TOPOLOGY, self.mixed)
            if vm in self.vms and self.domain(vm) is None:
                return Problem(C.UNKNOWN_DOMAIN, f"{vm} reports no {NAMES[self.mode]}")
            others = self.holders.get(vm, set()) - {event_id}
            if others:
                return Problem(C.RESERVED_ELSEWHERE,
                               f"{vm} is reserved by event {sorted(others)[0]}")
        wanted = {vm for vm in wanted if not self.outside(vm)}
        uds = self.domains_reserved(excluding=event_id)
        new_uds = {d for vm in wanted if (d := self.domain(vm)) is not None}
        limit = self.policy.max_concurrent_uds
        unit = f"{NAMES[self.mode]}s" if self.mode is not None else "domains"
        if len(new_uds) > limit:
            return Problem(C.UNSAFE_SPAN, f"event spans {len(new_uds)} {unit} "
                           f"({', '.join(map(str, sorted(new_uds)))}; max {limit} at once)")
        if len(uds | new_uds) > limit:
            busy = ", ".join(map(str, sorted(uds - new_uds)))
            return Problem(C.WAITING_FOR_UD,
                           f"waiting for {busy} to finish: would make {len(uds | new_uds)} "
                           f"{unit} unavailable at once (max {limit})")
        newly_down = {vm for vm in wanted if not self.down(vm)}
        touched = sorted({g for vm in wanted for g in self.groups_of.get(vm, ())})
        for name in touched:
            group = self.groups[name]
            taken = sorted(self.members[name] & wanted)
            after = self.available(name) - len(self.members[name] & newly_down)
            if after < group.required():
                return Problem(C.UNSAFE_GROUP,
                               f"group {name}: event would take {', '.join(taken)}, leaving "
                               f"{after} of {len(self.members[name])} available (min "
                               f"{group.required()})")
        members = self.cluster_size()
        cap = self.policy.unavailable_cap(members)
        if cap is not None:
            after = self.unavailable_known() + sum(1 for vm in newly_down if vm in self.vms)
            if after > cap:
                return Problem(C.UNSAFE_CAP,
                               f"cluster: {after} of {members} VMs would be "
                               f"unavailable, max_unavailable {self.policy.max_unavailable}")
        return None

    def _unreadable_problem(self, event_id: str) -> Problem | None:
        """Records we cannot read might reserve or constrain anything: block, loudly."""
        u = self.unreadable
        if u.decisions:
            return Problem(C.UNREADABLE_RECORD, f"decision record of event "
                           f"{sorted(u.decisions)[0]} does not decode: its reservation is "
                           "unknown; fix or delete it")
        if u.groups:
            return Problem(C.UNREADABLE_RECORD, f"group {sorted(u.groups)[0]} does not "
                           "decode: its members and minimum are unknown; fix or delete it")
        if event_id in u.overrides:
            return Problem(C.UNREADABLE_RECORD, "the operator override of this event does "
                           "not decode; fix or delete it")
        return None

    def reserve(self, event_id: str, resources: Iterable[str]) -> None:
        for vm in resources:
            self._change(vm, self.holders[vm].add, event_id)

    def release(self, event_id: str, resources: Iterable[str]) -> None:
        for vm in resources:
            self._change(vm, self.holders[vm].discard, event_id)

    def _change(self, vm: str, mutate: Callable[[str], None], event_id: str) -> None:
        """Apply `mutate(event_id)` and keep the cached counts right if the VM flips."""
        before = self.down(vm)
        mutate(event_id)
        after = self.down(vm)
        if before == after:
            return
        step = -1 if after else 1
        for name in self.groups_of.get(vm, ()):
            if name in self._available:
                self._available[name] += step
        if self._down_known is not None and vm in self.vms:
            self._down_known -= step


# ---------------------------------------------------------------- the decision pass


def decide(snap: Snapshot) -> list[Change]:
    """The decisions that change in this snapshot, in the order they should be written."""
    avail = Availability(snap)
    changes: list[Change] = []
    for event in _in_order(snap):
        if event.event_id in snap.unreadable.decisions:
            continue  # never overwrite what we cannot read; it blocks every admission
        previous = snap.decisions.get(event.event_id)
        planner = _EventPlanner(snap, avail, event, previous)
        change = planner.run()
        if change is not None:
            changes.append(change)
    return changes


def _in_order(snap: Snapshot) -> list[PlatformEvent]:
    """First the waiting events the platform is about to start anyway (their best-effort
    drains reserve VMs that no approval in this pass may count on), then in-flight events
    (their releases free budget), then the other waiting events by NotBefore."""
    def key(event: PlatformEvent) -> tuple[int, float, str]:
        decision = snap.decisions.get(event.event_id)
        waiting = decision is None or decision.state in (S.NEW, S.HELD)
        deadline = event.not_before if event.not_before is not None else float("-inf")
        if waiting and not (decision and decision.best_effort) and (
                _best_effort_due(event, snap)):
            rank = 0
        else:
            rank = 2 if waiting else 1
        return (rank, deadline, event.event_id)

    return sorted(snap.events.values(), key=key)


def _best_effort_due(event: PlatformEvent, snap: Snapshot) -> bool:
    """The platform starts it soon whatever we decide: drain what we can first."""
    if event.status is not PlatformStatus.SCHEDULED:
        return False
    if event.event_type in UNDELAYABLE or event.not_before is None:
        return True
    return snap.now >= event.not_before - snap.policy.best_effort_lead_s


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
        self.checks: list[str] = []
        self.resources = list(dict.fromkeys(avail.resolve(vm) for vm in event.resources))
        """The VMs the event takes, as we know them (a Resources name in another case
        resolves to the known VM)."""

    # -- plumbing

    def run(self) -> Change | None:
        self.apply_override()
        for _ in range(8):  # a few transitions may chain in one pass; bounded
            before = self.d
            self.step()
            if self.d == before:
                break
        if self.previous is not None and self.d == self.previous and not self.drains:
            return None
        if self.previous is None and self.d.state is S.NEW and not self.drains:
            self.d = self._update(reason=self.d.reason or "seen")
        checks = tuple(vm for vm in dict.fromkeys(self.checks) if vm not in self.drains
                       and vm in self.snap.drains)
        return Change(self.previous, self.d, tuple(self.drains.values()), checks)

    def _update(self, **fields: object) -> Decision:
        return self.d.model_copy(update={**fields, "updated_at": self.snap.now})

    def move(self, state: DecisionState, code: DecisionCode, reason: str,
             **fields: object) -> None:
        if self.snap.policy.dry_run and not reason.startswith("dry-run"):
            reason = f"dry-run: {reason}"
        if state is self.d.state:
            if (reason != self.d.reason or code is not self.d.code
                    or any(getattr(self.d, k) != v for k, v in fields.items())):
                self.d = self._update(reason=reason, code=code, **fields)
            return
        history = [*self.d.history, Transition(at=self.snap.now, to=state, reason=reason,
                                               code=code)]
        self.d = self._update(state=state, code=code, reason=reason,
                              state_since=self.snap.now, history=history[-HISTORY_LIMIT:],
                              **fields)

    def note(self, code: DecisionCode, reason: str) -> None:
        """A turn worth the timeline that does not change the state (Resources grew
        while draining, say): in the history, the audit and the reason."""
        history = [*self.d.history, Transition(at=self.snap.now, to=self.d.state,
                                               reason=reason, code=code)]
        self.d = self._update(code=code, reason=reason, history=history[-HISTORY_LIMIT:])

    def apply_override(self) -> None:
        """An operator's hold, force or retry, written by any replica's API."""
        ov = self.snap.overrides.get(self.event.event_id)
        if ov is None:
            return
        fields = {"operator_hold": ov.hold, "force_reason": ov.force,
                  "force_skip_drain": bool(ov.force) and ov.skip_drain}
        if any(getattr(self.d, k) != v for k, v in fields.items()):
            self.d = self._update(**fields)

    def reserve(self, vms: Sequence[str]) -> None:
        extra = [vm for vm in vms if vm not in self.d.reserved]
        if extra:
            self.avail.reserve(self.event.event_id, extra)
            self.d = self._update(reserved=[*self.d.reserved, *extra])

    def release(self, vms: Sequence[str] | None = None) -> None:
        gone = list(self.d.reserved if vms is None else vms)
        self.avail.release(self.event.event_id, gone)
        self.d = self._update(reserved=[vm for vm in self.d.reserved if vm not in gone])

    def request_drain(self, vms: Sequence[str], again: bool = False) -> None:
        """Ask these VMs to drain for this event, unless another event's drain holds them.
        `again`: a retry — a new attempt of the same request, so the hook runs once more."""
        if self.snap.policy.dry_run:
            return
        asked = list(self.d.drain)
        for vm in vms:
            if vm not in self.snap.vms:
                continue  # nothing of ours runs there
            rec = self.snap.drains.get(vm)
            mine = rec is not None and rec.event_id == self.event.event_id
            if rec is not None and mine and rec.want is DrainWant.DRAINED and not again:
                pass  # already asked: never re-drain (e.g. after a leader change)
            elif (rec is not None and mine and rec.want is DrainWant.DRAINED
                  and rec.status is DrainStatus.DRAINED):
                pass  # a retry re-runs only what did not drain
            elif rec and not mine and _in_use(rec):
                continue
            else:
                attempt = rec.attempt + 1 if mine and rec is not None else 0
                self.drains[vm] = DrainRecord(vm=vm, event_id=self.event.event_id,
                                              want=DrainWant.DRAINED, attempt=attempt,
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

    def drain_of(self, vm: str) -> DrainRecord | None:
        """The VM's drain record as it will be once this pass's requests are written."""
        return self.drains.get(vm) or self.snap.drains.get(vm)

    def live(self, vm: str) -> bool:
        view = self.snap.vms.get(vm)
        return bool(view and view.live)

    def rule(self) -> TypeRule:
        return self.snap.policy.rule(self.event.event_type)

    def drains_wanted(self) -> bool:
        return self.rule() is TypeRule.DRAIN and not self.d.force_skip_drain

    def ack(self) -> AckRecord | None:
        rec = self.snap.acks.get(self.event.event_id)
        return rec if rec and rec.approval == self.d.approval and self.d.approval else None

    def ack_unknown(self) -> bool:
        """The ack record exists but does not decode: it may be a claim; assume it is."""
        return self.event.event_id in self.snap.unreadable.acks

    def we_acknowledged(self) -> bool:
        rec = self.ack()
        return (rec is not None and rec.state in (AckState.SENDING, AckState.ACCEPTED)) or (
            self.d.state is S.APPROVED and self.ack_unknown())

    def blocked_by_operator(self) -> Problem | None:
        if self.d.operator_hold:
            return Problem(C.OPERATOR_HOLD, f"operator hold: {self.d.operator_hold}")
        if self.snap.policy.paused:
            return Problem(C.PAUSED, "approvals paused by an operator")
        return None

    def unreserved(self) -> list[str]:
        """VMs the event takes now that this decision has not reserved (Resources grew)."""
        return [vm for vm in self.resources if vm not in self.d.reserved
                and not self.avail.outside(vm)]

    # -- the life cycle

    def step(self) -> None:
        status = self.event.status
        if status is PlatformStatus.GONE:
            if self.gone_confirmed():
                self.on_gone()
            elif self.event.started_at is not None:
                self.on_started()
            else:
                self.on_unconfirmed_gone()
        elif status is PlatformStatus.STARTED:
            self.on_started()
        else:
            self.on_scheduled()

    def gone_confirmed(self) -> bool:
        """Missing from IMDS long enough, and by the word of the event's own VMs."""
        ev = self.event
        if ev.gone_at is None or self.snap.now - ev.gone_at < self.snap.policy.gone_grace_s:
            return False
        ours = [vm for vm in self.resources if vm in self.snap.vms]
        if not ours:
            return True  # no VM of ours is in it: any observer's word will do
        by = {self.avail.resolve(vm) for vm in ev.gone_by}
        return bool(by & set(ours)) or not any(self.live(vm) for vm in ours)

    def on_unconfirmed_gone(self) -> None:
        if self.d.state in (S.NEW, S.HELD):
            self.move(self.d.state, self.d.code if self.previous else C.SEEN,
                      "left IMDS; waiting for its own VMs to confirm it is gone")

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
            self.move(S.COMPLETED, C.COMPLETED, "event finished; waiting for its VMs to come "
                      "back")
        else:
            self.move(S.CANCELLED, C.CANCELLED, "event left IMDS before it started")
        self.request_restore()
        self.try_release()

    def ran_unseen(self) -> bool:
        """Gone without any agent seeing it Started: did it run between two polls?

        `gone_at` is an agent's clock, NotBefore the platform's: within the tolerated
        skew we cannot tell, and say it ran (a forced start is the louder mistake)."""
        if self.d.state in (S.APPROVED, S.ACKNOWLEDGED) and self.we_acknowledged():
            return True
        gone, not_before = self.event.gone_at, self.event.not_before
        return (gone is not None and not_before is not None
                and gone >= not_before - self.snap.policy.clock_skew_s)

    def try_release(self) -> None:
        waiting = [vm for vm in self.d.reserved if not self._restored(vm)]
        if waiting and self.event.event_type in UNDELAYABLE and self.d.state is S.COMPLETED:
            lost = [vm for vm in waiting if not self.live(vm)]
            if lost:
                # Terminate/Preempt: a VM that is not back was deleted or deallocated. It
                # stays unavailable to its groups, but no longer holds a domain's budget.
                self.release(lost)
                self.avail.deleted.update(lost)
                self.d = self._update(not_returned=[*self.d.not_returned, *lost])
                self.move(self.d.state, C.NOT_RETURNED,
                          f"{', '.join(lost[:5])} did not come back after "
                          f"{self.event.event_type.value}: deleted or deallocated; released")
                waiting = [vm for vm in waiting if vm not in lost]
        if waiting:
            self.request_restore()
            reason = f"waiting for {', '.join(waiting[:5])} to come back and restore"
            code = C.WAITING_RESTORE
            if self.snap.now - self.d.state_since > self.snap.policy.restore_timeout_s:
                reason, code = f"stuck: {reason}", C.STUCK
            if self.d.state is S.CANCELLED:
                reason = f"cancelled; {reason}"
            self.move(self.d.state, code, reason)
            return
        gate = self.gate_problem()
        if gate and self.d.state is S.COMPLETED:
            self.move(S.COMPLETED, gate.code, f"restored; {gate.text}")
            return
        self.release()
        if self.d.state is S.CANCELLED:
            self.move(S.CANCELLED, C.CANCELLED, "event left IMDS before it started; VMs "
                      "released")
        else:
            self.move(S.RESTORED, C.RESTORED, "VMs back and restored; reservation released")

    def _restored(self, vm: str) -> bool:
        if vm not in self.snap.vms:
            return True  # not one of ours (unknown resource): nothing to wait for
        if not self.live(vm):
            return vm in self.avail.deleted  # a Terminate took it for good
        if vm not in self.d.drain:
            return True
        rec = self.drain_of(vm)
        return rec is None or rec.event_id != self.event.event_id or (
            rec.want is DrainWant.RESTORED and rec.status is DrainStatus.RESTORED)

    def on_started(self) -> None:
        state = self.d.state
        if state in (S.CANCELLED, S.RESTORED):
            # It left IMDS, we released it, and now it runs: the platform's start.
            self.reserve(self.resources)
            self.move(S.FORCED, C.REAPPEARED, "event came back to IMDS and started without "
                      "our acknowledgement", ours=False)
            return
        if state in (S.STARTED, S.FORCED, S.COMPLETED):
            self.reserve(self.resources)  # Resources may have grown while it runs
            return
        if state in (S.APPROVED, S.ACKNOWLEDGED) and self.we_acknowledged():
            self.reserve(self.resources)
            self.move(S.STARTED, C.STARTED, "started after our acknowledgement", ours=True)
            return
        self.reserve(self.resources)
        if self.d.dry_run or self.snap.policy.dry_run:
            would = ("we would have acknowledged it" if state in (S.APPROVED, S.READY)
                     else f"we would have held it: {self.d.reason}")
            self.move(S.STARTED, C.DRY_RUN, f"dry-run: the platform started the event; "
                      f"{would}", dry_run=True)
            return
        self.move(S.FORCED, C.FORCED, "platform started the event without our acknowledgement")

    def on_scheduled(self) -> None:
        state = self.d.state
        if state in (S.CANCELLED, S.RESTORED):
            self.reopen()
            return
        if self.d.dry_run and not self.snap.policy.dry_run and state in (*IN_FLIGHT, S.HELD):
            self.reopen("dry-run is off: deciding for real")
            return
        if state in IN_FLIGHT and self.unreserved() and not self.follow_resources():
            return
        if state is S.ACKNOWLEDGED and (extra := self.unreserved()):
            # Our POST was accepted and IMDS has not shown the start yet: whatever the
            # platform starts now is unavailable to every other event.
            self.reserve(extra)
            self.note(C.RESOURCES_CHANGED, f"Resources grew to include {', '.join(extra[:5])} "
                      "after our acknowledgement: reserved")
        self.let_go_of_dropped()
        if state in (S.NEW, S.HELD):
            self.admit_or_hold()
        elif state is S.DRAINING:
            self.follow_drain()
        elif state is S.READY:
            self.try_approve()
        elif state is S.APPROVED:
            self.follow_ack()
        elif state is S.FAILED:
            self.after_failure()

    def let_go_of_dropped(self) -> None:
        """VMs the platform took off the event's Resources: restore what we drained for
        it and release them once restored (a drain nobody needs only costs availability).
        Not while an acknowledgement may be in flight."""
        rec = self.ack()
        if self.d.state is S.APPROVED and (self.ack_unknown() or (
                rec is not None and rec.state is not AckState.REJECTED)):
            return
        dropped = [vm for vm in self.d.reserved if vm not in self.resources]
        if not dropped:
            return
        free = []
        for vm in dropped:
            drain = self.drain_of(vm)
            if (drain is not None and drain.event_id == self.event.event_id
                    and drain.want is DrainWant.DRAINED and vm in self.snap.vms):
                self.drains[vm] = drain.model_copy(update={
                    "want": DrainWant.RESTORED, "status": DrainStatus.PENDING,
                    "requested_at": self.snap.now, "updated_at": self.snap.now, "detail": ""})
            elif self._restored(vm):
                free.append(vm)
        if free:
            self.release(free)
            self.d = self._update(drain=[vm for vm in self.d.drain if vm not in free])
            self.note(self.d.code, f"{', '.join(free[:5])} no longer in the event's "
                      "Resources: restored and released")

    def reopen(self, why: str = "") -> None:
        """The event is back (or dry-run ended): decide it again from the start."""
        if not why:
            why = "event came back to IMDS"
            if self.d.reserved and self.d.state is not S.RESTORED:
                why += " before its VMs were released"
        self.release()
        self.move(S.NEW, C.REAPPEARED, why, approved=[], acker=None, best_effort=False,
                  dry_run=False)
        self.admit_or_hold()

    def follow_resources(self) -> bool:
        """The event's Resources grew past what this decision reserved. Reserve and drain
        the newcomers before any approval, or hold if that is unsafe. True: carry on."""
        extra = self.unreserved()
        rec = self.ack()
        claimed = self.d.state is S.APPROVED and (self.ack_unknown() or (
            rec is not None and rec.state is not AckState.REJECTED))
        if claimed:
            # The acknowledgement may be out: whatever it starts is unavailable. The acker
            # sends nothing while its IMDS lists a VM outside `approved`.
            self.reserve(extra)
            return True
        problem = self.blocked_by_operator() or self.avail.admit(self.event.event_id,
                                                                 self.resources)
        if problem is None or self.d.force_reason:
            self.reserve(self.resources)
            if self.drains_wanted():
                self.request_drain(self.resources)
            reason = (f"Resources grew to include {', '.join(extra[:5])}: reserved; "
                      + ("draining" if self.drains_wanted() else "nothing to drain"))
            if self.d.state is S.DRAINING:
                self.note(C.RESOURCES_CHANGED, reason)
            else:
                self.move(S.DRAINING, C.RESOURCES_CHANGED, reason, approved=[], acker=None)
            return False
        self.move(S.HELD, problem.code, f"Resources grew to include {', '.join(extra[:5])}: "
                  f"{problem.held()}", approved=[], acker=None)
        return False

    def admit_or_hold(self) -> None:
        if self.snap.policy.dry_run and not self.d.dry_run:
            self.d = self._update(dry_run=True)
        if self.d.force_reason:
            self.reserve(self.resources)
            if self.drains_wanted():
                self.request_drain(self.resources)
            self.move(S.DRAINING, C.DRAINING, f"forced by operator: {self.d.force_reason}; "
                      + ("draining" if self.d.drain else "nothing to drain"))
            return
        problem = self.blocked_by_operator() or self.avail.admit(self.event.event_id,
                                                                 self.resources)
        if problem is None:
            self.reserve(self.resources)
            if self.drains_wanted():
                self.request_drain(self.resources)
            if self.snap.policy.dry_run:
                would = [vm for vm in self.resources if vm in self.snap.vms]
                reason = ("safe: reserved; would drain " + ", ".join(would[:5])
                          if self.drains_wanted() and would else "safe: reserved; nothing "
                          "to drain")
            else:
                reason = ("safe: reserved; draining" if self.d.drain
                          else "safe: reserved; nothing to drain")
            self.move(S.DRAINING, C.DRAINING, reason)
            return
        if self.best_effort_due() and not self.d.best_effort:
            self.reserve(self.resources)
            if self.drains_wanted():
                self.request_drain(self.resources)
            lead = BEST_EFFORT_DRY if self.snap.policy.dry_run else BEST_EFFORT
            self.move(S.HELD, C.BEST_EFFORT, f"{problem.held()}{lead}", best_effort=True)
            return
        reason = problem.held()
        if self.d.best_effort:
            reason += BEST_EFFORT
            self.reserve(self.resources)  # newcomers in Resources go down with the rest
            if self.drains_wanted():
                self.request_drain(self.resources)
        self.move(S.HELD, problem.code, reason)

    def best_effort_due(self) -> bool:
        return _best_effort_due(self.event, self.snap)

    def waited(self) -> float:
        """How long this state has been watched by a connected leader."""
        return self.snap.now - max(self.d.state_since, self.snap.watching_since)

    def drain_progress(self) -> tuple[list[str], list[str]]:
        """(VMs still draining, failures). A lost VM has nothing left to drain: it is
        already counted unavailable; one that is back must drain before any approval —
        also a VM whose drain another event's record held when we asked."""
        pending: list[str] = []
        failed: list[str] = []
        if self.drains_wanted() and not self.snap.policy.dry_run:
            missing = [vm for vm in self.resources if vm in self.snap.vms
                       and vm in self.d.reserved and vm not in self.d.drain
                       and self.live(vm)]
            if missing and (self.blocked_by_operator() or self.avail.admit(
                    self.event.event_id, self.resources)):
                # reserved only as bookkeeping for an acknowledgement that did not happen:
                # draining them now must be admitted like any other drain
                self.release(missing)
                pending.extend(missing)
            elif missing:
                self.request_drain(missing)
                pending.extend(vm for vm in missing if vm not in self.d.drain)
        for vm in self.d.drain:
            if vm not in self.resources:
                continue  # taken off the event: being restored, not waited for
            rec = self.drain_of(vm)
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
        policy = self.snap.policy
        if failed:
            self.fail(C.DRAIN_FAILED, f"drain failed on {'; '.join(failed)}")
        elif pending and self.waited() > policy.drain_timeout_s:
            self.fail(C.DRAIN_TIMEOUT, f"drain timed out on {', '.join(pending)} after "
                      f"{policy.drain_timeout_s:g} s")
        elif pending:
            self.move(S.DRAINING, C.DRAINING, f"draining {', '.join(pending[:5])}")
        elif policy.dry_run:
            self.move(S.READY, C.DRAINED, "drained (no hook ran)")
        else:
            self.move(S.READY, C.DRAINED, "drained" if self.d.drain else "nothing to drain")

    def fail(self, code: DecisionCode, reason: str) -> None:
        """A drain failed or timed out: the reservation stays; retry after a backoff."""
        left = self.snap.policy.drain_retries - self.d.retries
        if left > 0:
            wait = self.retry_wait()
            reason += (f"; retrying in {wait:g} s (retry {self.d.retries + 1} of "
                       f"{self.snap.policy.drain_retries})")
        else:
            reason += "; no automatic retries left: `quorumgate retry` or `force` it"
        self.move(S.FAILED, code, reason)

    def retry_wait(self) -> float:
        return float(self.snap.policy.drain_retry_backoff_s * 2.0 ** self.d.retries)

    def after_failure(self) -> None:
        ov = self.snap.overrides.get(self.event.event_id)
        if ov is not None and ov.retry > self.d.retry_seen:
            if not self.retry_blocked():
                self.retry(f"operator retry by {ov.by or 'an operator'}", retry_seen=ov.retry)
            return
        if self.d.force_reason and (self.d.force_skip_drain or not self.d.drain):
            self.approve(f"forced by operator: {self.d.force_reason}")
            return
        if self.d.code not in (C.DRAIN_FAILED, C.DRAIN_TIMEOUT):
            return
        if self.d.force_reason and "forced by operator" not in self.d.reason:
            self.move(S.FAILED, self.d.code, f"{self.d.reason}; forced by operator, but a "
                      "force still drains: `quorumgate retry` to drain again, or force "
                      "with --skip-drain")
        if self.d.retries < self.snap.policy.drain_retries and (
                self.snap.now - self.d.state_since >= self.retry_wait()) and (
                not self.retry_blocked()):
            self.retry(f"automatic retry {self.d.retries + 1} of "
                       f"{self.snap.policy.drain_retries}")

    def retry_blocked(self) -> bool:
        """A retry starts drains again: only while that is still safe now (a member may
        have been lost since the first try), unless an operator forced the event."""
        if self.d.force_reason:
            return False
        problem = self.blocked_by_operator() or self.avail.admit(self.event.event_id,
                                                                 self.resources)
        if problem is None:
            return False
        failure = next((t.reason for t in reversed(self.d.history) if t.to is S.FAILED),
                       self.d.reason).split("; ")[0]
        self.move(S.FAILED, self.d.code, f"{failure}; retry waits: {problem.text}")
        return True

    def retry(self, why: str, **fields: object) -> None:
        self.request_drain(self.d.drain, again=True)
        self.move(S.DRAINING, C.DRAINING, f"{why}: draining again", retries=self.d.retries + 1,
                  **fields)

    def try_approve(self) -> None:
        pending, failed = self.drain_progress()
        if pending or failed:
            self.move(S.DRAINING, C.DRAINING, "a VM came back undrained: draining again")
            return
        if self.d.force_reason:
            self.approve(f"forced by operator: {self.d.force_reason}")
            return
        if self.snap.policy.dry_run:
            self.approve("safe and drained")
            return
        problem = (self.blocked_by_operator()
                   or self.avail.admit(self.event.event_id, self.resources)
                   or self.gate_problem())
        if problem:
            self.move(S.READY, problem.code, f"drained; waiting: {problem.text}")
            return
        self.approve("safe and drained: approved")

    def gate_problem(self) -> Problem | None:
        touched = {g for vm in self.resources for g in self.avail.groups_of.get(vm, ())}
        for name in sorted(touched):
            if not self.avail.groups[name].health_gate:
                continue
            result = self.snap.gates.get(name)
            if result is None:
                return Problem(C.GATE_PENDING, f"health gate of group {name} not yet checked")
            if not result.ok:
                return Problem(C.GATE_FAILING, f"health gate of group {name} failing: "
                               f"{result.detail[:200]}")
        return None

    def approve(self, reason: str) -> None:
        acker = self.choose_acker()
        covered = [vm for vm in self.resources]
        if self.snap.policy.dry_run:
            self.move(S.APPROVED, C.DRY_RUN, f"{reason}; would acknowledge via {acker}",
                      acker=None, approved=covered)
            return
        if acker is None:
            self.move(self.d.state, C.NO_ACKER,
                      "approved but no live agent sees the event to acknowledge")
            return
        if self.d.approval >= MAX_APPROVALS:
            self.move(S.FAILED, C.APPROVALS_EXHAUSTED,
                      f"{self.d.approval} acknowledgements did not start the event")
            return
        self.move(S.APPROVED, C.APPROVED, f"{reason}; acker {acker}", acker=acker,
                  approval=self.d.approval + 1, approved=covered)
        self.checks.extend(self.d.drain)

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
        if self.ack_unknown() and rec is None:
            self.move(S.APPROVED, C.UNREADABLE_RECORD, "the acknowledgement record does not "
                      "decode: it may have been sent; waiting for the platform")
        elif rec and rec.state is AckState.ACCEPTED:
            self.move(S.ACKNOWLEDGED, C.ACKNOWLEDGED, f"acknowledged by {rec.vm}")
        elif rec and rec.state is AckState.REJECTED:
            self.move(S.READY, C.ACK_REJECTED, f"acknowledgement rejected: {rec.detail[:200]}")
            self.try_approve()
        elif rec is not None:
            return  # being sent: nothing to take back
        elif self.drains_wanted() and (pending := self.drain_progress()[0]):
            # a VM that was down when we approved is back, undrained: drain it first
            self.move(S.DRAINING, C.APPROVAL_REVOKED, f"approval revoked: {', '.join(pending[:5])}"
                      " came back undrained; draining again", acker=None, approved=[])
        elif not self.d.force_reason and (problem := self.blocked_by_operator()
                                          or self.avail.admit(self.event.event_id,
                                                              self.resources)):
            # Nothing sent yet: take the approval back. The acker's claim bumps the
            # decision's version, so this write and that one cannot both succeed.
            self.move(S.READY, C.APPROVAL_REVOKED, f"approval revoked: {problem.text}",
                      acker=None, approved=[])
        elif self.waited() > self.snap.policy.ack_timeout_s:
            self.move(S.READY, C.ACK_TIMEOUT, f"acker {self.d.acker} did not acknowledge in "
                      "time")
            self.try_approve()
        elif self.d.acker and not self.live(self.d.acker):
            self.move(S.READY, C.ACKER_LOST, f"acker {self.d.acker} lost before acknowledging")
            self.try_approve()


def _in_use(rec: DrainRecord) -> bool:
    """A drain record that still holds its VM for its own event."""
    return rec.want is DrainWant.DRAINED or rec.status is not DrainStatus.RESTORED
