"""The outside checker: judges a rollout or chaos run from ground truth only. Pure.

What it reads, and only that:

- the platform's own account (the IMDS emulator): every event with its Resources, when
  it was created, its NotBefore, when and why it started (`ack`: our acknowledgement;
  `not_before`: the platform's deadline; `immediate`: no notice at all), when its VMs
  went down and came back, and every acknowledgement POST it received;
- the workload's own account (the hook journal, `quorumgate_testbed.rollout.HookJournal`): when
  each drain hook started on a VM and when a restore hook finished successfully, in the
  machine's real time, written by the hook process itself;
- when available, ZooKeeper's own transaction logs (`quorumgate_testbed.zklog`): when each drain
  request and each acknowledgement claim was committed, in ZooKeeper's time (the moment
  we decided, which the hook or the POST may follow late);
- the replica groups the run defined, with the times it changed them, and the faults the
  nemesis injected, with their times.

Never the coordinator's decisions, states, reasons or records, and never the moment a
poll happened to read something: a checker fed by the system under test, or by the
timing of its own polling, cries wolf or misses a wolf.

Out of service. A VM is *out* while it is down (the emulator) or drained: from the
request of a drain (or, without ZooKeeper's logs, the start of its hook) until a restore
hook ends successfully. Each outage is *ours* or the
*platform's*:

- down because an event started on our acknowledgement: ours;
- down because the platform started the event (NotBefore, or no notice at all): the
  platform's;
- drained for an event: ours, unless the drain began within `best_effort_lead_s` of the
  event's NotBefore (plus the clock disagreement the policy tolerates): from then on the
  platform's start is imminent and nobody can stop it, and the coordinator drains a held
  event best-effort by design; the drain belongs to that start. This holds even when we
  acknowledge the event later (once safe, moving its start earlier): the acknowledgement
  is then judged on its own, at the moment it takes the VMs down.

Safety (`safety_violations`). Blame is judged per VM and per moment of *our* action: at
the moment an outage of ours begins on a VM that was not already out because of us (a
drain starting, or an acknowledged event taking a VM down that we had not drained), we
count every member of each group that is out at that moment, for any reason. If that
leaves the group below `min_available`, our action broke it: a violation, whatever else
the platform was doing. Outages that begin later do not count against an earlier action
of ours: when the platform forces an event on a group we had safely drained one member
of, the group is broken by the platform, not by us. Two allowances, both for what the
coordinator could not have known when it acted:

- an outage the platform started without notice (`immediate`) counts against our action
  only from `no_notice_grace_s` after it began (the time for the VM's agent session to
  go and the leader to see it); outages with notice count from their first instant (the
  coordinator knew the NotBefore and reserves best-effort before it);
- when a group changed shortly before our action (`group_change_grace_s`), the action
  is blamed only if every version of the group in force in that window is broken.

The same moments check the maintenance-domain budget: the maintenance domains out at that
moment (ours and the platform's known outages) must not exceed `max_concurrent_uds`. The
unit is the one the product uses for the cluster (`registry.domains`: update domains in an
availability set, zones for zonal VMs, fault domains in a Flexible scale set), given by the
caller as each VM's domain (`Timeline.ud_of`) and its name (`Timeline.domain`).

Acknowledgements (`double_acknowledgements`): the platform needs one POST per event;
every event that received more than one is reported with each POST.

Liveness (`classify`). An event is *safe* at a moment when acknowledging it then keeps
every group at or above `min_available` and the update domains out within budget,
counting every VM out at that moment for any reason except the event itself, and none of
its VMs is out for another event. It was *safely acknowledgeable* when we acknowledged
it, or when it stayed safe for `ack_window_s` (enough to drain and acknowledge) without
interruption while Scheduled and while no injected fault touched it (its VMs, the members
of their groups, or the whole stack: ZooKeeper, the coordinators). An event safe that
long only while faults touched it is counted apart (`safe_under_faults`): the report
gives the share with and without those, and judges by the first, because no
ZooKeeper-based coordinator can act while its quorum, its leader or the event's agents
are cut off. It is *late* when it stayed safe for `ack_bound_s`
(which covers recovering from a fault that just healed) while no fault touched it or
its groups, and still was not acknowledged by the end of that stretch.
"""

from __future__ import annotations

import bisect
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

INF = float("inf")

OURS = "ours"
PLATFORM = "platform"


# ---------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Post:
    """One acknowledgement POST the platform received for an event."""

    vm: str
    at: float
    effective: bool
    """Whether it started the event (the event was still Scheduled)."""


@dataclass(frozen=True)
class EventTruth:
    """What the platform says about one event (times in virtual seconds)."""

    event_id: str
    resources: tuple[str, ...]
    created_at: float
    not_before: float
    status: str
    """Scheduled, Started, Completed or Cancelled."""
    started_at: float | None = None
    start_cause: str | None = None
    """`ack`, `not_before`, `immediate`, or None when it never started."""
    down_at: float | None = None
    ended_at: float | None = None
    posts: tuple[Post, ...] = ()
    impacts: tuple[tuple[float, float | None], ...] = ()
    """Every period its VMs were down, `(down_at, up_at)` (None: still down); empty for
    an emulator that only knows one impact (`down_at`..`ended_at`)."""
    resources_history: tuple[tuple[float, tuple[str, ...]], ...] = ()
    """`(since, resources)` as the platform changed them while Scheduled."""

    def resources_at(self, at: float) -> tuple[str, ...]:
        """Its Resources at `at` (the last change at or before it)."""
        current = self.resources_history[0][1] if self.resources_history else self.resources
        for since, resources in self.resources_history:
            if since <= at:
                current = resources
        return current

    @property
    def ours(self) -> bool:
        return self.start_cause == "ack"

    @property
    def scheduled_until(self) -> float:
        """End of its Scheduled phase: its start, its withdrawal, or still going."""
        if self.started_at is not None:
            return self.started_at
        if self.status == "Cancelled" and self.ended_at is not None:
            return self.ended_at
        return INF

    @property
    def active(self) -> bool:
        return self.status in ("Scheduled", "Started")

    @classmethod
    def from_view(cls, view: Mapping[str, Any]) -> EventTruth:
        """From the emulator's control API (`GET /control/events/{id}`)."""
        return cls(
            event_id=view["event_id"], resources=tuple(view["resources"]),
            created_at=view["created_at"], not_before=view["not_before"],
            status=view["status"], started_at=view.get("started_at"),
            start_cause=view.get("start_cause"), down_at=view.get("down_at"),
            ended_at=view.get("ended_at"),
            posts=tuple(Post(a["vm"], a["at"], bool(a.get("effective")))
                        for a in view.get("acks", [])),
            impacts=tuple((i["down_at"], i.get("up_at")) for i in view.get("impacts", [])
                          if i.get("down_at") is not None),
            resources_history=tuple((c["at"], tuple(c["resources"]))
                                    for c in view.get("resources_history", [])))


@dataclass(frozen=True)
class Outage:
    """A VM out of service, for one event: `drain` (hook journal) or `down` (platform)."""

    vm: str
    start: float
    end: float
    event_id: str
    kind: str


@dataclass(frozen=True)
class GroupVersion:
    """A replica group as the run defined it from `since` until `until`."""

    name: str
    members: tuple[str, ...]
    min_available: int | str = 2
    since: float = -INF
    until: float = INF

    def required(self) -> int:
        if self.min_available == "majority":
            return len(set(self.members)) // 2 + 1
        return int(self.min_available)


@dataclass(frozen=True)
class FaultWindow:
    """A fault the nemesis injected, from `start` until it healed (`end`)."""

    kind: str
    start: float
    end: float
    vms: frozenset[str] | None = None
    """The VMs it touches; None: everything (coordinators, ZooKeeper, the network)."""


@dataclass(frozen=True)
class Rules:
    max_concurrent_uds: int = 1
    best_effort_lead_s: float = 120.0
    """The policy's lead plus the clock disagreement it tolerates (see `blame`)."""
    no_notice_grace_s: float = 0.0
    group_change_grace_s: float = 0.0
    ack_bound_s: float = INF
    """How long an event may stay safely acknowledgeable, with no fault touching it,
    before not acknowledging it is a liveness failure."""
    ack_window_s: float | None = None
    """A safe stretch this long makes an event safely acknowledgeable (default: the
    bound)."""


DOMAIN_LABELS = {"update domain": "UD", "zone": "zone", "fault domain": "FD"}


@dataclass
class Timeline:
    events: dict[str, EventTruth]
    outages: list[Outage]
    groups: list[GroupVersion]
    ud_of: Mapping[str, int | str]
    """Each VM's maintenance domain (an update domain, a zone, a fault domain: see
    `domain`); a VM left out counts in no domain."""
    faults: list[FaultWindow] = field(default_factory=list)
    start: float = 0.0
    """Origin for printed times (`+SECONDS`)."""
    end: float = INF
    """When observation stopped: outages still open end here for liveness."""
    domain: str = "update domain"
    """What `ud_of` names: `update domain`, `zone`, `fault domain` (or another unit)."""

    def stamp(self, at: float) -> str:
        return "+inf" if at == INF else f"+{at - self.start:.0f}s"

    @property
    def domains(self) -> str:
        """The unit, plural, for messages: `update domains`, `zones`, `fault domains`."""
        return self.domain + "s"

    def label(self, vm: str) -> str:
        """`UD 3`, `zone 1`, `FD 0`."""
        return f"{DOMAIN_LABELS.get(self.domain, self.domain)} {self.ud_of[vm]}"


class _Domains(list[int | str]):
    """Domains in a stable order (numbers first, then names), printed `[0, 1]`, `[1, 3]`."""

    def __init__(self, values: Iterable[int | str]) -> None:
        super().__init__(sorted(set(values), key=lambda v: (isinstance(v, str),
                                                           str(v).zfill(8))))

    def __str__(self) -> str:
        return "[" + ", ".join(map(str, self)) + "]"


_ordered = _Domains


def down_outages(events: Iterable[EventTruth],
                 claims: Mapping[str, Sequence[float]] | None = None) -> list[Outage]:
    """Every VM down because of an event, from the platform's own times: each impact
    takes down the Resources the event had when it started.

    `claims`: when our acknowledgement of each event was claimed (committed in
    ZooKeeper before the POST). The first impact of an event we acknowledged then
    counts from the last claim before it: that is when we committed to taking its VMs
    down, and a POST that lands a moment later must not move our decision after a
    platform outage begun meanwhile.
    """
    claims = claims or {}
    out = []
    for e in events:
        vms = e.resources_at(e.started_at) if e.started_at is not None else e.resources
        periods: list[tuple[float, float | None]] = list(e.impacts)
        if not periods and e.down_at is not None:
            periods = [(e.down_at, e.ended_at if e.status != "Started" else None)]
        for n, (down, up) in enumerate(periods):
            end = up if up is not None else INF
            start = down
            if n == 0 and e.ours and e.started_at is not None:
                committed = [c for c in claims.get(e.event_id, ()) if c <= e.started_at]
                start = min(down, max(committed)) if committed else down
            out.extend(Outage(vm, start, end, e.event_id, "down") for vm in vms)
    return out


def ack_claims(writes: Iterable[tuple[float, str, bytes]], acks_path: str
               ) -> dict[str, list[float]]:
    """`event_id -> [times]` our acknowledgement was claimed (a `sending` ack record),
    from committed ZooKeeper writes `(time, path, data)` under `acks_path`."""
    out: dict[str, list[float]] = defaultdict(list)
    prefix = acks_path.rstrip("/") + "/"
    for at, path, data in writes:
        if not path.startswith(prefix):
            continue
        try:
            record = json.loads(data)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("state") == "sending":
            out[path[len(prefix):]].append(at)
    return dict(out)


def journal_outages(entries: Iterable[tuple[str, float, str, str, str, int | None]],
                    requested: Mapping[tuple[str, str], Sequence[float]] | None = None
                    ) -> list[Outage]:
    """Drained spans from hook journal entries `(vm, at, action, event_id, phase, rc)`.

    A VM is out from the first drain hook that starts while it is in service until a
    restore hook ends with exit code 0 (for whichever event: the replica is back); a
    drain that fails or hangs leaves it out. A restore with nothing to end is ignored.

    `requested`: when each drain of `(vm, event_id)` was requested (committed in
    ZooKeeper). The span then starts at the last request before the hook started: that
    is when we decided to take the replica out, and an agent that runs the hook a moment
    later (a slow poll, a partition) must not move our decision after someone else's.
    """
    requested = requested or {}
    by_vm: dict[str, list[tuple[float, str, str, str, int | None]]] = defaultdict(list)
    for vm, at, action, event_id, phase, rc in entries:
        by_vm[vm].append((at, action, event_id, phase, rc))
    out = []
    for vm, items in by_vm.items():
        opened: tuple[float, str] | None = None
        for at, action, event_id, phase, rc in sorted(items, key=lambda i: i[0]):
            if action == "drain" and phase == "start" and opened is None:
                asked = [t for t in requested.get((vm, event_id), ()) if t <= at]
                opened = (max(asked) if asked else at, event_id)
            elif action == "restore" and phase == "end" and rc == 0 and opened is not None:
                out.append(Outage(vm, opened[0], at, opened[1], "drain"))
                opened = None
        if opened is not None:
            out.append(Outage(vm, opened[0], INF, opened[1], "drain"))
    return out


def drain_requests(writes: Iterable[tuple[float, str, bytes]], drains_path: str
                   ) -> dict[tuple[str, str], list[float]]:
    """`(vm, event_id) -> [times]` a drain was requested (a `pending` record wanting
    `drained`), from committed ZooKeeper writes `(time, path, data)` under `drains_path`."""
    out: dict[tuple[str, str], list[float]] = defaultdict(list)
    prefix = drains_path.rstrip("/") + "/"
    for at, path, data in writes:
        if not path.startswith(prefix):
            continue
        try:
            record = json.loads(data)
        except ValueError:
            continue
        if (isinstance(record, dict) and record.get("want") == "drained"
                and record.get("status") == "pending"):
            out[(path[len(prefix):], str(record.get("event_id")))].append(at)
    return dict(out)


# ---------------------------------------------------------------- blame


def blame(outage: Outage, events: Mapping[str, EventTruth], rules: Rules) -> str:
    event = events.get(outage.event_id)
    if event is None:
        return OURS  # a drain for an event the platform never announced: ours alone
    if outage.kind == "down":
        return OURS if event.ours else PLATFORM
    if outage.start >= event.not_before - rules.best_effort_lead_s:
        return PLATFORM
    return OURS


@dataclass(frozen=True)
class _Span:
    vm: str
    start: float
    end: float
    counts_from: float
    """When an observer acting in good faith counts it (later for no-notice outages)."""
    causes: tuple[Outage, ...]
    owner: str


def _merge(outages: list[Outage]) -> list[tuple[float, float, list[Outage]]]:
    spans: list[tuple[float, float, list[Outage]]] = []
    for o in sorted(outages, key=lambda o: (o.start, o.end)):
        if spans and o.start <= spans[-1][1]:
            s, e, causes = spans[-1]
            spans[-1] = (s, max(e, o.end), [*causes, o])
        else:
            spans.append((o.start, o.end, [o]))
    return spans


class _Index:
    """Which items are active at any instant: piecewise constant between boundaries."""

    def __init__(self, items: Iterable[tuple[float, float, Any]]) -> None:
        items = [i for i in items if i[1] > i[0]]
        changes: dict[float, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
        for n, (start, end, _) in enumerate(items):
            changes[start][0].append(n)
            changes[end][1].append(n)
        self.points = sorted(changes)
        self.active: list[tuple[Any, ...]] = []
        current: dict[int, Any] = {}
        for p in self.points:
            adds, removes = changes[p]
            for n in removes:
                current.pop(n, None)
            for n in adds:
                current[n] = items[n][2]
            self.active.append(tuple(current.values()))

    def at(self, t: float) -> tuple[Any, ...]:
        i = bisect.bisect_right(self.points, t) - 1
        return self.active[i] if i >= 0 else ()


class _Attribution:
    """Outages split into ours (merged per VM) and the platform's, indexed by time."""

    def __init__(self, timeline: Timeline, rules: Rules) -> None:
        self.timeline = timeline
        self.rules = rules
        mine: dict[str, list[Outage]] = defaultdict(list)
        spans: list[_Span] = []
        for o in timeline.outages:
            if blame(o, timeline.events, rules) == OURS:
                mine[o.vm].append(o)
                continue
            event = timeline.events.get(o.event_id)
            no_notice = event is not None and event.start_cause == "immediate"
            later = rules.no_notice_grace_s if no_notice else 0.0
            spans.append(_Span(o.vm, o.start, o.end, o.start + later, (o,), PLATFORM))
        self.ours = [_Span(vm, s, e, s, tuple(c), OURS)
                     for vm, items in mine.items() for s, e, c in _merge(items)]
        self.index = _Index((s.start, s.end, s) for s in [*self.ours, *spans])

    def out_at(self, at: float) -> dict[str, list[_Span]]:
        """VM -> the spans holding it out at `at`, as far as they count by then."""
        out: dict[str, list[_Span]] = defaultdict(list)
        for span in self.index.at(at):
            if span.counts_from <= at:
                out[span.vm].append(span)
        return out

    def our_onsets(self) -> list[_Span]:
        return sorted(self.ours, key=lambda s: (s.start, s.vm))


def _describe(span: _Span, events: Mapping[str, EventTruth], timeline: Timeline) -> str:
    parts = []
    for o in span.causes:
        e = events.get(o.event_id)
        why = ("acknowledged" if e and e.ours else
               f"started at {e.start_cause}" if e and e.start_cause else
               "cancelled" if e and e.status == "Cancelled" else "scheduled")
        parts.append(f"{o.kind} for {o.event_id[:8]} ({why}) "
                     f"{timeline.stamp(o.start)}..{timeline.stamp(o.end)}")
    return "; ".join(parts)


# ---------------------------------------------------------------- safety


@dataclass(frozen=True)
class Violation:
    at: float
    kind: str
    """`group`, `domains`, `double_ack`, `late`, `unfinished`."""
    text: str
    timeline: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "timeline": list(self.timeline)}


def _groups_in_force(groups: Sequence[GroupVersion], name: str, begin: float,
                     end: float) -> list[GroupVersion]:
    return [g for g in groups if g.name == name and g.since <= end and g.until > begin]


def safety_violations(timeline: Timeline, rules: Rules) -> list[Violation]:
    """Every moment an action of ours left a group below min_available or the update
    domains out above the budget (see the module docstring for the rule)."""
    attr = _Attribution(timeline, rules)
    events = timeline.events
    groups_of: dict[str, set[str]] = defaultdict(set)
    for g in timeline.groups:
        for vm in g.members:
            groups_of[vm].add(g.name)
    problems: list[Violation] = []
    for onset in attr.our_onsets():
        at = onset.start
        out_now = attr.out_at(at)
        for name in sorted(groups_of.get(onset.vm, ())):
            versions = _groups_in_force(timeline.groups, name,
                                        at - rules.group_change_grace_s, at)
            broken = []
            for g in versions:
                out = {vm: out_now[vm] for vm in dict.fromkeys(g.members) if vm in out_now}
                up = len(set(g.members)) - len(out)
                if up < g.required():
                    broken.append((g, up, out))
            if not versions or len(broken) < len(versions):
                continue
            g, up, out = broken[-1]
            lines = tuple(f"{vm}: {_describe(s, events, timeline)}"
                          for vm, spans in sorted(out.items()) for s in spans)
            problems.append(Violation(
                at, "group",
                f"group {name} at {timeline.stamp(at)}: {up} of {len(set(g.members))} up, "
                f"min {g.required()}, when {onset.vm} went out because of us; out: "
                f"{', '.join(sorted(out))}", lines))
        budget = rules.max_concurrent_uds
        outs = {vm: spans for vm, spans in out_now.items() if vm in timeline.ud_of}
        uds = _ordered(timeline.ud_of[vm] for vm in outs)
        if len(uds) > budget and onset.vm in timeline.ud_of:
            lines = tuple(f"{vm} ({timeline.label(vm)}): {_describe(s, events, timeline)}"
                          for vm, spans in sorted(outs.items()) for s in spans)
            problems.append(Violation(
                at, "domains",
                f"at {timeline.stamp(at)} {onset.vm} went out because of us while "
                f"{timeline.domains} {uds} were out (max {budget})", lines))
    return problems


def double_acknowledgements(events: Iterable[EventTruth], stamp: Any = None) -> list[Violation]:
    """Events that received more than one acknowledgement POST (the platform needs one)."""
    show = stamp or (lambda at: f"{at:.0f}")
    out = []
    for e in events:
        if len(e.posts) > 1:
            out.append(Violation(
                e.posts[1].at, "double_ack",
                f"event {e.event_id[:8]}: {len(e.posts)} acknowledgement POSTs",
                tuple(f"POST by {p.vm} at {show(p.at)} "
                      f"({'started it' if p.effective else 'no effect'})" for p in e.posts)))
    return out


# ---------------------------------------------------------------- liveness


@dataclass
class EventVerdict:
    event_id: str
    kind: str
    """`acknowledged` (by us), `forced` (at NotBefore), `no_notice` (started by the
    platform at once), `cancelled` (withdrawn), `unfinished`."""
    acknowledgeable: bool
    """We acknowledged it, or it stayed safe for `ack_window_s` while Scheduled and no
    fault touched it."""
    safe_s: float
    """Total time it was safe while Scheduled."""
    safe_since: float | None
    """Start of the last safe stretch before it left Scheduled (or before the end)."""
    time_to_ack_s: float | None
    """Acknowledged events: from `safe_since` to our acknowledgement."""
    created_to_ack_s: float | None
    late: str | None
    """Why it counts as a liveness failure, if it does."""
    unfinished: str | None = None
    unsafe_because: str | None = None
    """Not acknowledged by us: why it was not safe `ack_window_s` before it had to be."""
    safe_under_faults: bool = False
    """Not acknowledged by us, and safe for `ack_window_s` only while faults touched it."""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _Safety:
    """`safe(event, at)` and the moments its answer can change."""

    def __init__(self, timeline: Timeline, rules: Rules) -> None:
        self.t = timeline
        self.rules = rules
        self.index = _Index((o.start, o.end, o) for o in timeline.outages)
        self.groups_of: dict[str, list[GroupVersion]] = defaultdict(list)
        for g in timeline.groups:
            for vm in set(g.members):
                self.groups_of[vm].append(g)
        self.boundaries = sorted({*self.index.points,
                                  *(x for g in timeline.groups for x in (g.since, g.until)),
                                  *(at for e in timeline.events.values()
                                    for at, _ in e.resources_history)})

    def safe(self, event: EventTruth, at: float) -> bool:
        return self.why_not(event, at) is None

    def why_not(self, event: EventTruth, at: float) -> str | None:
        """None when acknowledging `event` at `at` keeps every promise, else why not."""
        wanted = set(event.resources_at(at))
        holding = {o.vm: o for o in self.index.at(at) if o.event_id != event.event_id}
        out = set(holding)
        if busy := sorted(out & wanted):
            o = holding[busy[0]]
            return f"{busy[0]} out ({o.kind}) for event {o.event_id[:8]}"
        ud_of = self.t.ud_of
        uds = {ud_of[vm] for vm in wanted | out if vm in ud_of}
        if len(uds) > self.rules.max_concurrent_uds:
            others = _ordered(ud_of[vm] for vm in out if vm in ud_of)
            own = _ordered(ud_of[vm] for vm in wanted if vm in ud_of)
            return f"{self.t.domains} {others} out; the event's: {own}"
        for vm in sorted(wanted):
            for g in self.groups_of.get(vm, ()):
                if not g.since <= at < g.until:
                    continue
                members = set(g.members)
                up = len(members - wanted - out)
                if up < g.required():
                    return (f"group {g.name} would keep {up} of {len(members)} "
                            f"(min {g.required()}; out: {', '.join(sorted(members & out)) or '-'})")
        return None

    def stretches(self, event: EventTruth, begin: float, end: float
                  ) -> list[tuple[float, float]]:
        """Maximal intervals within [begin, end) during which `event` is safe."""
        if end <= begin:
            return []
        lo = bisect.bisect_right(self.boundaries, begin)
        hi = bisect.bisect_left(self.boundaries, end)
        points = [begin, *self.boundaries[lo:hi]]
        out: list[tuple[float, float]] = []
        for i, p in enumerate(points):
            nxt = points[i + 1] if i + 1 < len(points) else end
            if nxt <= p or not self.safe(event, p):
                continue
            if out and out[-1][1] == p:
                out[-1] = (out[-1][0], nxt)
            else:
                out.append((p, nxt))
        return out


def _fault_free(faults: Sequence[FaultWindow], touched: set[str], begin: float,
                end: float) -> list[tuple[float, float]]:
    """Sub-intervals of [begin, end) that no fault touching `touched` overlaps."""
    blocking = sorted((f.start, f.end) for f in faults
                      if f.end > begin and f.start < end
                      and (f.vms is None or f.vms & touched))
    free = []
    cursor = begin
    for s, e in blocking:
        if s > cursor:
            free.append((cursor, min(s, end)))
        cursor = max(cursor, e)
        if cursor >= end:
            break
    if cursor < end:
        free.append((cursor, end))
    return free


def classify(timeline: Timeline, rules: Rules) -> dict[str, EventVerdict]:
    """Every event: what happened to it and whether it was acknowledged as early as safe."""
    safety = _Safety(timeline, rules)
    bound = rules.ack_bound_s
    window = rules.ack_window_s if rules.ack_window_s is not None else bound
    verdicts = {}
    still_open: dict[str, list[Outage]] = defaultdict(list)
    for o in timeline.outages:
        if o.end == INF:
            still_open[o.event_id].append(o)
    for e in timeline.events.values():
        open_outages = still_open.get(e.event_id, [])
        unfinished = None
        if e.active:
            unfinished = f"still {e.status} at the end"
        elif open_outages:
            unfinished = ("not back in service at the end: "
                          + ", ".join(sorted({f"{o.vm} ({o.kind})" for o in open_outages})))
        kind = ("unfinished" if unfinished else "acknowledged" if e.ours else
                "forced" if e.start_cause == "not_before" else
                "no_notice" if e.start_cause == "immediate" else
                "cancelled" if e.status == "Cancelled" else "unfinished")
        if e.ours and unfinished:
            kind = "unfinished"
        until = min(e.scheduled_until, timeline.end)
        stretches = ([] if e.start_cause == "immediate"
                     else safety.stretches(e, e.created_at, until))
        safe_s = sum(b - a for a, b in stretches)
        safe_since = stretches[-1][0] if stretches else None
        every = {vm for _, r in e.resources_history for vm in r} | set(e.resources)
        touched = every | {m for vm in every for g in safety.groups_of.get(vm, ())
                           for m in g.members}
        long_enough = any(b - a >= window for a, b in stretches)
        calm = long_enough and any(fb - fa >= window for a, b in stretches
                                   for fa, fb in _fault_free(timeline.faults, touched, a, b))
        late = None
        for a, b in stretches:
            for fa, fb in _fault_free(timeline.faults, touched, a, b):
                if fb - fa > bound:
                    late = (f"event {e.event_id[:8]} safe and untouched by faults from "
                            f"{timeline.stamp(fa)} to {timeline.stamp(fb)} "
                            f"({fb - fa:.0f} s > bound {bound:.0f} s) but "
                            + ("acknowledged only then" if e.ours else
                               f"never acknowledged by us ({kind})"))
                    break
            if late:
                break
        ack_at = e.started_at if e.ours else None
        time_to_ack = None
        if ack_at is not None:
            before = [a for a, b in stretches if a <= ack_at]
            time_to_ack = ack_at - before[-1] if before else None
        because = None
        if not e.ours and e.start_cause != "immediate":
            probe = max(e.created_at, min(until, e.not_before) - window)
            because = safety.why_not(e, probe) if probe < until else None
        verdicts[e.event_id] = EventVerdict(
            event_id=e.event_id, kind=kind, acknowledgeable=e.ours or calm,
            safe_under_faults=not e.ours and long_enough and not calm,
            safe_s=safe_s, safe_since=safe_since, time_to_ack_s=time_to_ack,
            created_to_ack_s=(ack_at - e.created_at) if ack_at is not None else None,
            late=late, unfinished=unfinished, unsafe_because=because)
    return verdicts


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]
