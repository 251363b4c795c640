"""The simulation: VMs, maintenance events and their life cycle. No HTTP, no clock.

Every method takes `now` (virtual epoch seconds) and first advances the life cycle to
it, so an answer depends only on the sequence of calls and their times, not on when a
background ticker last ran. Transitions happen at their exact due times (a NotBefore
start is stamped at NotBefore, not at the tick that noticed it), one at a time, and
every transition that changes what a VM's document shows bumps that VM's
DocumentIncarnation, whether or not anyone polled in between.

Life cycle of an event:
    Scheduled --ack or NotBefore--> Started --impact_delay_s--> VMs down
              --downtime--> Completed (gone from IMDS, VMs up)
    Scheduled --cancel--> Cancelled (gone, nobody went down)

The platform may also reshape an event: change a Scheduled event's Resources
(`reshape`), add a second impact while it is Started (`add_impact`: its VMs go down again;
it stays Started until the last impact ends), and delete the VMs it takes (`delete_vms`,
Terminate's default): they go down for good and their IMDS never answers again.

A maintenance walk (`start_walk`) is the platform rolling one update out domain by
domain: update domain by update domain (availability sets), zone by zone (zonal VMs),
fault domain by fault domain (Flexible scale sets). Each step schedules the domain's
event(s); the next step starts once every event of the step has left IMDS.

One re-entrant lock guards everything: the ticker, request handlers and tests (via
`running_emulator().sim`) may call in from different threads.
"""

from __future__ import annotations

import math
import threading
import uuid
from dataclasses import dataclass, field
from email.utils import formatdate
from enum import StrEnum

from imds_sim.cluster import Cluster, VMConfig, build_cluster
from imds_sim.schemas import (
    DEFAULT_DOWNTIME_S,
    DEFAULT_DURATION_S,
    MIN_NOTICE_S,
    ClusterSpec,
    EventRequest,
    EventSource,
    EventType,
    WalkRequest,
)


class Status(StrEnum):
    SCHEDULED = "Scheduled"
    STARTED = "Started"
    COMPLETED = "Completed"
    CANCELLED = "Cancelled"


ACTIVE = (Status.SCHEDULED, Status.STARTED)


class SimulationError(ValueError):
    """A request the simulation refuses; `kind` tells the HTTP layer which status fits."""

    kind = "invalid"


class UnknownVM(SimulationError):
    kind = "not_found"


class UnknownEvent(SimulationError):
    kind = "not_found"


class Conflict(SimulationError):
    kind = "conflict"


class StaleIncarnation(SimulationError):
    kind = "invalid"


def _zone_key(zone: str) -> tuple[int, str]:
    return (int(zone), zone) if zone.isdigit() else (1 << 30, zone)


def rfc1123(ts: float) -> str:
    """`Mon, 19 Sep 2016 18:29:47 GMT`, truncated to the second."""
    return formatdate(int(ts), usegmt=True)


@dataclass
class Ack:
    vm: str
    at: float
    incarnation: int | str | None
    api_version: str
    effective: bool


@dataclass
class Impact:
    """One period the event's VMs are down: (down_at, up_at) once applied."""

    due: float
    downtime_s: float
    down_at: float | None = None
    up_at: float | None = None


@dataclass
class Event:
    event_id: str
    type: EventType
    resources: tuple[str, ...]
    uds: tuple[int, ...]
    scope: frozenset[str]
    audience: frozenset[str]
    source: EventSource
    description: str
    duration_s: int
    downtime_s: float
    impact_delay_s: float
    created_at: float
    not_before: float
    status: Status = Status.SCHEDULED
    started_at: float | None = None
    start_cause: str | None = None
    down_at: float | None = None
    ended_at: float | None = None
    acks: list[Ack] = field(default_factory=list)
    delete_vms: bool = False
    impacts: list[Impact] = field(default_factory=list)
    resources_history: list[tuple[float, tuple[str, ...]]] = field(default_factory=list)
    """(virtual time, Resources) from creation on: every reshape appends one."""
    zones: tuple[str, ...] = ()
    fds: tuple[int, ...] = ()
    walk_id: str | None = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def next_transition(self) -> float | None:
        if self.status is Status.SCHEDULED:
            return self.not_before
        if self.status is Status.STARTED:
            pending = [i.due for i in self.impacts if i.down_at is None]
            pending += [i.down_at + i.downtime_s for i in self.impacts
                        if i.down_at is not None and i.up_at is None]
            return min(pending) if pending else None
        return None

    def signature(self) -> tuple[object, ...]:
        """Everything a scheduled-events document shows about this event."""
        return (
            self.event_id,
            self.status,
            self.type,
            self.resources,
            self.not_before if self.status is Status.SCHEDULED else None,
            self.description,
            self.source,
            self.duration_s,
        )


@dataclass
class WalkStep:
    value: int | str
    label: str
    vms: tuple[str, ...] = ()
    event_ids: list[str] = field(default_factory=list)
    scheduled_at: float | None = None
    ended_at: float | None = None


@dataclass
class Walk:
    walk_id: str
    unit: str
    """`update_domain`, `zone` or `fault_domain`."""
    request: WalkRequest
    steps: list[WalkStep]
    created_at: float
    current: int = -1
    """Index of the last step scheduled."""
    status: str = "running"
    ended_at: float | None = None
    error: str = ""


WALK_ATTRIBUTE = {"update_domain": ("ud", "UD"), "zone": ("zone", "zone"),
                  "fault_domain": ("fd", "FD")}
UNIT_NAMES = {"UD": "update_domain", "zone": "zone", "FD": "fault_domain"}


@dataclass
class Transition:
    state: str
    at: float
    event_id: str | None = None


@dataclass
class VMState:
    config: VMConfig
    incarnation: int = 1
    signature: tuple[object, ...] = ()
    down_by: set[str] = field(default_factory=set)
    """Tokens `<event id>#<impact>` of the impacts keeping the VM down."""
    down_since: float | None = None
    history: list[Transition] = field(default_factory=list)
    deleted: bool = False
    """Deleted by the platform (Terminate): down for good, its IMDS never answers."""

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def down(self) -> bool:
        return bool(self.down_by) or self.deleted


class Simulation:
    """The whole emulated platform for one cluster."""

    def __init__(
        self,
        cluster: Cluster,
        now: float,
        *,
        rate_limit_per_s: int = 5,
        strict_incarnation: bool = False,
        terminate_notice_s: float = MIN_NOTICE_S[EventType.TERMINATE],
    ) -> None:
        self.lock = threading.RLock()
        self.rate_limit_per_s = rate_limit_per_s
        self.strict_incarnation = strict_incarnation
        self.terminate_notice_s = terminate_notice_s
        self._load(cluster, now)

    @classmethod
    def from_spec(cls, spec: ClusterSpec | None, now: float) -> Simulation:
        spec = spec or ClusterSpec()
        return cls(
            build_cluster(spec),
            now,
            rate_limit_per_s=spec.rate_limit_per_s,
            strict_incarnation=spec.strict_incarnation,
            terminate_notice_s=spec.terminate_notice_s,
        )

    # ------------------------------------------------------------ cluster

    def _load(self, cluster: Cluster, now: float) -> None:
        self.cluster = cluster
        self.default_vm = cluster.default_vm
        self._vms: dict[str, VMState] = {
            vm.name: VMState(config=vm, history=[Transition("up", now)]) for vm in cluster.vms
        }
        self._events: dict[str, Event] = {}  # every event ever, for the control API
        self._active: dict[str, Event] = {}  # Scheduled or Started, in creation order
        self._walks: dict[str, Walk] = {}

    def configure(self, spec: ClusterSpec, now: float) -> None:
        """Replace the cluster: all events and history go, incarnations restart at 1."""
        cluster = build_cluster(spec)
        with self.lock:
            self._load(cluster, now)
            self.rate_limit_per_s = spec.rate_limit_per_s
            self.strict_incarnation = spec.strict_incarnation
            self.terminate_notice_s = spec.terminate_notice_s

    def set_default_vm(self, name: str) -> None:
        with self.lock:
            if name not in self._vms:
                raise UnknownVM(f"no VM named {name!r}")
            self.default_vm = name

    def vm_names(self) -> list[str]:
        with self.lock:
            return list(self._vms)

    def has_vm(self, name: str) -> bool:
        with self.lock:
            return name in self._vms

    def vm(self, name: str, now: float) -> VMState:
        with self.lock:
            self.tick(now)
            if name not in self._vms:
                raise UnknownVM(f"no VM named {name!r}")
            return self._vms[name]

    def vms(self, now: float) -> list[VMState]:
        with self.lock:
            self.tick(now)
            return list(self._vms.values())

    def is_down(self, name: str, now: float) -> bool:
        return self.vm(name, now).down

    # ------------------------------------------------------------ life cycle

    def tick(self, now: float) -> None:
        """Apply every transition due at or before `now`, earliest first (events before
        walks at the same instant: a step ends before the next one is scheduled)."""
        with self.lock:
            for _ in range(100_000):  # bounded: each pass applies one transition
                due: list[tuple[float, int, int, Event | Walk]] = [
                    (when, 0, order, event)
                    for order, event in enumerate(self._active.values())
                    if (when := event.next_transition()) is not None and when <= now
                ]
                due += [(when, 1, order, walk)
                        for order, walk in enumerate(self._walks.values())
                        if (when := self._walk_due(walk)) is not None and when <= now]
                if not due:
                    return
                when, _, _, item = min(due, key=lambda d: (d[0], d[1], d[2]))
                if isinstance(item, Walk):
                    self._walk_step(item, when)
                else:
                    self._advance(item, when)
            raise RuntimeError("imds_sim: more than 100000 transitions in one tick")

    def _advance(self, event: Event, at: float) -> None:
        if event.status is Status.SCHEDULED:
            self._start(event, event.not_before, "not_before")
            return
        impact = next(i for i in event.impacts
                      if (i.down_at is None and i.due == at)
                      or (i.down_at is not None and i.up_at is None
                          and i.down_at + i.downtime_s == at))
        token = f"{event.event_id}#{event.impacts.index(impact)}"
        if impact.down_at is None:
            impact.down_at = at
            if event.down_at is None:
                event.down_at = at
            for name in event.resources:
                vm = self._vms[name]
                if not vm.down_by:
                    vm.down_since = at
                    vm.history.append(Transition("down", at, event.event_id))
                vm.down_by.add(token)
                if event.delete_vms:
                    vm.deleted = True
            return
        impact.up_at = at
        for name in event.resources:
            vm = self._vms[name]
            vm.down_by.discard(token)
            if not vm.down_by and vm.down_since is not None and not vm.deleted:
                vm.down_since = None
                vm.history.append(Transition("up", at, event.event_id))
        if all(i.up_at is not None for i in event.impacts):
            event.status = Status.COMPLETED
            event.ended_at = at
            del self._active[event.event_id]
            self._refresh(event)

    def _start(self, event: Event, at: float, cause: str) -> None:
        event.status = Status.STARTED
        event.started_at = at
        event.start_cause = cause
        event.impacts.append(Impact(due=at + event.impact_delay_s,
                                    downtime_s=event.downtime_s))
        self._refresh(event)

    def _refresh(self, event: Event, also: frozenset[str] = frozenset()) -> None:
        """Bump the incarnation of every VM whose document this event's change altered
        (`also`: VMs that showed the event before the change)."""
        shown = [(e.audience, e.signature()) for e in self._active.values()]
        for name in event.audience | also:
            vm = self._vms[name]
            signature = tuple(sig for audience, sig in shown if name in audience)
            if signature != vm.signature:
                vm.signature = signature
                vm.incarnation += 1

    # ------------------------------------------------------------ documents

    def document(self, name: str, now: float) -> tuple[int, list[Event]]:
        """The VM's DocumentIncarnation and the active events it sees, in creation order."""
        with self.lock:
            vm = self.vm(name, now)
            events = [e for e in self._active.values() if name in e.audience]
            return vm.incarnation, events

    # ------------------------------------------------------------ control

    def events(self) -> list[Event]:
        with self.lock:
            return list(self._events.values())

    def event(self, event_id: str) -> Event:
        with self.lock:
            event = self._events.get(event_id.upper())
            if event is None:
                raise UnknownEvent(f"no event {event_id!r}")
            return event

    def schedule(self, request: EventRequest, now: float) -> Event:
        """Announce maintenance. Raises SimulationError for impossible requests."""
        with self.lock:
            self.tick(now)
            event = self._create(request, now)
            self.tick(now)
            return event

    def _create(self, request: EventRequest, now: float, walk_id: str | None = None) -> Event:
        """Create the event at `now` (no tick: a walk's step calls it from inside one)."""
        resources = self._resources(request)
        self._check_domains(resources, request.allow_multi_ud)
        uds, zones, fds = self._placement(resources)
        event_id = (request.event_id or str(uuid.uuid4())).upper()
        if event_id in self._events:
            raise Conflict(f"event {event_id} already exists")
        scope = frozenset().union(*(self._vms[n].config.scope for n in resources))
        audience = frozenset(
            name
            for name, vm in self._vms.items()
            if name in resources or vm.config.scope & scope
        )
        duration = request.duration_s
        if duration is None:
            duration = DEFAULT_DURATION_S[request.type]
        downtime = request.downtime_s
        if downtime is None:
            downtime = float(duration) if duration >= 0 else DEFAULT_DOWNTIME_S[request.type]
        if request.started:
            not_before = now
        elif request.not_before is not None:
            not_before = request.not_before
        else:
            notice = request.notice_s
            if notice is None:
                notice = (self.terminate_notice_s if request.type is EventType.TERMINATE
                          else MIN_NOTICE_S[request.type])
            # Whole seconds, so the RFC 1123 NotBefore shows the exact start time.
            not_before = float(math.ceil(now + notice))
        event = Event(
            event_id=event_id,
            type=request.type,
            resources=tuple(resources),
            uds=uds,
            scope=scope,
            audience=audience,
            source=request.source,
            description=request.description,
            duration_s=duration,
            downtime_s=downtime,
            impact_delay_s=request.impact_delay_s,
            created_at=now,
            not_before=not_before,
            delete_vms=(request.delete_vms if request.delete_vms is not None
                        else request.type is EventType.TERMINATE),
            resources_history=[(now, tuple(resources))],
            zones=zones,
            fds=fds,
            walk_id=walk_id,
        )
        self._events[event_id] = event
        self._active[event_id] = event
        if request.started:
            self._start(event, now, "immediate")
        else:
            self._refresh(event)
        return event

    def _placement(self, names: list[str] | tuple[str, ...]
                   ) -> tuple[tuple[int, ...], tuple[str, ...], tuple[int, ...]]:
        """The update domains (VMs without one left out), zones and fault domains."""
        configs = [self._vms[name].config for name in names]
        return (tuple(sorted({c.ud for c in configs if c.ud is not None})),
                tuple(sorted({c.zone for c in configs if c.zone}, key=_zone_key)),
                tuple(sorted({c.fd for c in configs})))

    def _check_domains(self, names: list[str], allow: bool) -> None:
        """One event holds VMs of one maintenance domain (update domain, zone or fault
        domain, see `VMConfig.unit`) unless `allow` simulates the platform breaking it."""
        units = sorted({self._vms[name].config.unit for name in names}, key=str)
        if len(units) <= 1 or allow:
            return
        kinds = {kind for kind, _ in units}
        if kinds == {"UD"}:
            uds = [value for _, value in units]
            raise SimulationError(
                f"resources span update domains {uds}; one event holds VMs of at most one "
                "update domain (pass allow_multi_ud to simulate a platform breaking it)")
        shown = ", ".join(f"{kind} {value}" for kind, value in units)
        raise SimulationError(
            f"resources span maintenance domains ({shown}); one event holds VMs of at most "
            "one update domain, zone or fault domain (pass allow_multi_ud to simulate a "
            "platform breaking it)")

    def _resources(self, request: EventRequest) -> list[str]:
        if request.vms is not None:
            unknown = [name for name in request.vms if name not in self._vms]
            if unknown:
                raise SimulationError(f"unknown VMs: {', '.join(unknown)}")
            return list(dict.fromkeys(request.vms))
        if request.zone is not None:
            where, wanted = "zone", request.zone
        elif request.fd is not None:
            where, wanted = "fd", request.fd
        else:
            where, wanted = "ud", request.ud
        chosen = [
            name
            for name, vm in self._vms.items()
            if getattr(vm.config, where) == wanted
            and (request.availability_set is None
                 or vm.config.availability_set == request.availability_set)
            and (request.scale_set is None or vm.config.scale_set == request.scale_set)
        ]  # fmt: skip
        if not chosen:
            label = {"ud": "update domain", "zone": "zone", "fd": "fault domain"}[where]
            raise SimulationError(f"no VM in {label} {wanted} matches")
        return chosen

    def reshape(self, event_id: str, vms: list[str], now: float,
                allow_multi_ud: bool = False) -> Event:
        """The platform changes a Scheduled event's Resources (every document that shows it,
        before or after, gets a new incarnation)."""
        with self.lock:
            self.tick(now)
            event = self.event(event_id)
            if event.status is not Status.SCHEDULED:
                raise Conflict(f"event {event.event_id} is {event.status}; only a Scheduled "
                               "event's Resources change")
            unknown = [name for name in vms if name not in self._vms]
            if unknown or not vms:
                raise SimulationError(f"unknown VMs: {', '.join(unknown)}" if unknown
                                      else "`vms` must not be empty")
            resources = list(dict.fromkeys(vms))
            self._check_domains(resources, allow_multi_ud)
            before = event.audience
            scope = frozenset().union(*(self._vms[n].config.scope for n in resources))
            event.resources = tuple(resources)
            event.uds, event.zones, event.fds = self._placement(resources)
            event.scope = scope
            event.audience = frozenset(name for name, vm in self._vms.items()
                                       if name in resources or vm.config.scope & scope)
            event.resources_history.append((now, event.resources))
            self._refresh(event, also=before)
            return event

    def add_impact(self, event_id: str, now: float, downtime_s: float,
                   delay_s: float = 0.0) -> Event:
        """A second (or further) impact of a Started event: its VMs go down again."""
        with self.lock:
            self.tick(now)
            event = self.event(event_id)
            if event.status is not Status.STARTED:
                raise Conflict(f"event {event.event_id} is {event.status}; only a Started "
                               "event impacts again")
            event.impacts.append(Impact(due=now + delay_s, downtime_s=downtime_s))
            self.tick(now)
            return event

    def cancel(self, event_id: str, now: float) -> Event:
        """Withdraw a Scheduled event: it vanishes from IMDS and nobody goes down."""
        with self.lock:
            self.tick(now)
            event = self.event(event_id)
            if event.status is not Status.SCHEDULED:
                raise Conflict(f"event {event.event_id} is {event.status}, only Scheduled cancels")
            event.status = Status.CANCELLED
            event.ended_at = now
            del self._active[event.event_id]
            self._refresh(event)
            return event

    # ------------------------------------------------------------ walks

    def walks(self) -> list[Walk]:
        with self.lock:
            return list(self._walks.values())

    def walk(self, walk_id: str) -> Walk:
        with self.lock:
            walk = self._walks.get(walk_id)
            if walk is None:
                raise UnknownEvent(f"no walk {walk_id!r}")
            return walk

    def start_walk(self, request: WalkRequest, now: float) -> Walk:
        """Start rolling maintenance over the cluster's domains (see `WalkRequest`)."""
        with self.lock:
            self.tick(now)
            configs = [vm.config for vm in self._vms.values() if not vm.deleted]
            unit = request.unit
            if unit == "auto":
                kinds = {c.unit[0] for c in configs}
                if len(kinds) != 1:
                    raise SimulationError(
                        f"the cluster mixes maintenance domains ({', '.join(sorted(kinds))}); "
                        "name the walk's unit")
                unit = UNIT_NAMES[kinds.pop()]
            attribute, label = WALK_ATTRIBUTE[unit]
            missing = sorted(c.name for c in configs if getattr(c, attribute) in (None, ""))
            if missing:
                raise SimulationError(f"VMs without a {unit.replace('_', ' ')}: "
                                      f"{', '.join(missing[:5])}")
            present: dict[str, int | str] = {str(getattr(c, attribute)): getattr(c, attribute)
                                             for c in configs}
            if request.order is not None:
                unknown = [d for d in request.order if d not in present]
                if unknown or len(set(request.order)) != len(request.order):
                    raise SimulationError(f"walk order {request.order}: unknown or repeated "
                                          f"domains (the cluster has {sorted(present)})")
                order = [present[d] for d in request.order]
            else:
                order = sorted(present.values(), key=lambda v: _zone_key(str(v)))
            walk = Walk(walk_id=f"walk-{len(self._walks) + 1}", unit=unit, request=request,
                        steps=[WalkStep(value, f"{label} {value}") for value in order],
                        created_at=now)
            self._walks[walk.walk_id] = walk
            self._walk_step(walk, now)
            self.tick(now)
            return walk

    def stop_walk(self, walk_id: str, now: float) -> Walk:
        """No further steps; the events already scheduled go on."""
        with self.lock:
            self.tick(now)
            walk = self.walk(walk_id)
            if walk.status == "running":
                walk.status, walk.ended_at = "stopped", now
            return walk

    def _walk_due(self, walk: Walk) -> float | None:
        """When the walk's next step (or its end) is due; None while a step runs."""
        if walk.status != "running":
            return None
        scheduled = walk.steps[: walk.current + 1]
        ends = []
        for step in scheduled:
            if step.ended_at is None:
                events = [self._events[eid] for eid in step.event_ids]
                if any(e.active for e in events):
                    return None
                step.ended_at = max((e.ended_at or 0.0 for e in events),
                                    default=step.scheduled_at or 0.0)
            ends.append(step.ended_at)
        if walk.current + 1 >= len(walk.steps):
            return max(ends, default=walk.created_at)
        return max(ends, default=walk.created_at) + walk.request.gap_s

    def _walk_step(self, walk: Walk, at: float) -> None:
        """Schedule the next step (every step when `together`), or end the walk."""
        attribute = WALK_ATTRIBUTE[walk.unit][0]
        r = walk.request
        while walk.current + 1 < len(walk.steps):
            walk.current += 1
            step = walk.steps[walk.current]
            step.scheduled_at = at
            step.vms = tuple(name for name, vm in self._vms.items()
                             if getattr(vm.config, attribute) == step.value and not vm.deleted)
            groups = [[name] for name in step.vms] if r.split == "vm" else [list(step.vms)]
            for vms in groups if step.vms else []:
                request = EventRequest(
                    vms=vms, type=r.type, source=r.source,
                    description=r.description or f"planned maintenance, {step.label}",
                    duration_s=r.duration_s, downtime_s=r.downtime_s, notice_s=r.notice_s,
                    impact_delay_s=r.impact_delay_s, delete_vms=r.delete_vms,
                    allow_multi_ud=True)  # the walk names its own domain
                try:
                    step.event_ids.append(self._create(request, at, walk.walk_id).event_id)
                except SimulationError as exc:  # never retry it on every tick
                    walk.status, walk.ended_at, walk.error = "stopped", at, str(exc)
                    return
            if not step.vms:
                step.ended_at = at
                continue
            if not r.together:
                return
        if self._walk_due(walk) is not None or not walk.steps:
            walk.status, walk.ended_at = "done", at

    # ------------------------------------------------------------ IMDS POST

    def acknowledge(
        self,
        vm_name: str,
        event_ids: list[str],
        incarnation: int | str | None,
        api_version: str,
        now: float,
    ) -> list[Event]:
        """A VM POSTed StartRequests: start every listed event for all its Resources.

        All or nothing: one id the VM cannot see (unknown, finished, or another scope)
        rejects the whole request. Already Started events are accepted and recorded.
        """
        with self.lock:
            vm = self.vm(vm_name, now)
            if (
                self.strict_incarnation
                and incarnation is not None
                and str(incarnation).strip() != str(vm.incarnation)
            ):
                raise StaleIncarnation(
                    f"DocumentIncarnation {incarnation} is stale; current is {vm.incarnation}"
                )
            targets = []
            for event_id in event_ids:
                event = self._active.get(event_id.upper())
                if event is None or vm_name not in event.audience:
                    raise UnknownEvent(f"EventId {event_id} is not a scheduled event of this VM")
                targets.append(event)
            for event in targets:
                effective = event.status is Status.SCHEDULED
                event.acks.append(Ack(vm_name, now, incarnation, api_version, effective))
                if effective:
                    self._start(event, now, "ack")
            self.tick(now)
            return targets
