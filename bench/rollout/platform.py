"""The discrete-event core of the rollout benchmark: a queue on a virtual clock, the
platform (Azure's UD walk), and a recorder of ground truth.

Platform model: one event per UD naming all of its VMs, seen by every VM of the
availability set. It starts at NotBefore unless acknowledged; an acknowledgement starts
it at once. Each VM is then down for its own reboot time; when the last one is back the
event leaves IMDS (completed) and, in the sequential walk, the next UD's event is
announced at that moment.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from bench.rollout.model import NOTICE_S, Cluster
from registry.records import EventType

SCHEDULED, STARTED, COMPLETED = "Scheduled", "Started", "Completed"


class Queue:
    """Events at virtual times; ties run in the order they were scheduled."""

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self.processed = 0

    def at(self, when: float, fn: Callable[..., None], *args: Any) -> None:
        heapq.heappush(self._heap, (max(when, self.now), next(self._seq), fn, args))

    def run(self, until: float, stop: Callable[[], bool]) -> None:
        while self._heap and not stop():
            when, _, fn, args = heapq.heappop(self._heap)
            if when > until:
                heapq.heappush(self._heap, (when, next(self._seq), fn, args))
                break
            self.now = when
            self.processed += 1
            fn(when, *args)


@dataclass
class PEvent:
    eid: str
    ud: int
    type: EventType
    resources: list[str]
    created: float
    not_before: float
    status: str = SCHEDULED
    started: float | None = None
    cause: str | None = None
    """`ack` or `not_before`."""
    acked_by: str | None = None
    ended: float | None = None
    pending: set[str] = field(default_factory=set)


class Listener(Protocol):
    def doc_changed(self, t: float) -> None: ...

    def vm_down(self, vm: str, t: float, event: PEvent) -> None: ...

    def vm_up(self, vm: str, t: float) -> None: ...


@dataclass
class Span:
    begin: float
    end: float
    kind: str
    """`draining`, `drained`, `restoring` (out of service, VM up) or `down` (rebooting)."""
    eid: str
    ours: bool
    """Caused by us: a drain for an event not drained best-effort, or a reboot started
    by an acknowledgement. Platform-forced starts and best-effort drains are not ours."""


SERVICE_KINDS = ("draining", "drained", "restoring")


class Recorder:
    """Ground truth, independent of the coordinator's records."""

    def __init__(self) -> None:
        self.spans: dict[str, list[Span]] = {}
        self._open: dict[tuple[str, str], Span] = {}

    def open(self, vm: str, kind: str, t: float, eid: str, ours: bool) -> None:
        if kind in SERVICE_KINDS:
            for other in SERVICE_KINDS:
                self.close(vm, other, t)
        self.close(vm, kind, t)
        span = Span(t, float("inf"), kind, eid, ours)
        self._open[(vm, kind)] = span
        self.spans.setdefault(vm, []).append(span)

    def current(self, vm: str, kind: str) -> Span | None:
        return self._open.get((vm, kind))

    def close(self, vm: str, kind: str, t: float) -> None:
        span = self._open.pop((vm, kind), None)
        if span is not None:
            span.end = t

    def close_service(self, vm: str, t: float) -> None:
        for kind in SERVICE_KINDS:
            self.close(vm, kind, t)


class Platform:
    def __init__(self, cluster: Cluster, queue: Queue, recorder: Recorder) -> None:
        self.cluster = cluster
        self.q = queue
        self.rec = recorder
        self.listener: Listener | None = None
        self.events: dict[str, PEvent] = {}
        self.version = 0
        """Bumped whenever the IMDS document changes (our DocumentIncarnation)."""
        self._walk = list(cluster.uds)
        self.down: dict[str, str] = {}

    def begin(self) -> None:
        if self.cluster.scenario.walk == "together":
            walk, self._walk = self._walk, []
            for ud in walk:
                self._announce(ud, 0.0)
        else:
            self._announce(self._walk.pop(0), 0.0)

    @property
    def done(self) -> bool:
        return not self._walk and all(e.status == COMPLETED for e in self.events.values())

    @property
    def finished_at(self) -> float:
        return max((e.ended or 0.0) for e in self.events.values())

    def doc(self) -> list[PEvent]:
        return [e for e in self.events.values() if e.status != COMPLETED]

    def _changed(self, t: float) -> None:
        self.version += 1
        assert self.listener is not None
        self.listener.doc_changed(t)

    def _announce(self, ud: int, t: float) -> None:
        kind = self.cluster.event_types[ud]
        eid = f"ud{ud:02d}-{kind.value.lower()}"
        event = PEvent(eid=eid, ud=ud, type=kind, resources=self.cluster.in_ud(ud), created=t,
                       not_before=t + NOTICE_S[kind])
        self.events[eid] = event
        self.q.at(event.not_before, self._due, eid)
        self._changed(t)

    def _due(self, t: float, eid: str) -> None:
        if self.events[eid].status == SCHEDULED:
            self._start(eid, t, "not_before", None)

    def acknowledge(self, t: float, eid: str, vm: str) -> bool:
        """POST StartRequests: True when it started the event."""
        event = self.events.get(eid)
        if event is None or event.status != SCHEDULED:
            return False
        self._start(eid, t, "ack", vm)
        return True

    def _start(self, eid: str, t: float, cause: str, vm: str | None) -> None:
        event = self.events[eid]
        event.status, event.started, event.cause, event.acked_by = STARTED, t, cause, vm
        event.pending = set(event.resources)
        assert self.listener is not None
        for name in event.resources:
            self.down[name] = eid
            self.rec.open(name, "down", t, eid, ours=cause == "ack")
            self.listener.vm_down(name, t, event)
            self.q.at(t + self.cluster.vms[name].reboot_s, self._up, name, eid)
        self._changed(t)

    def _up(self, t: float, vm: str, eid: str) -> None:
        event = self.events[eid]
        self.down.pop(vm, None)
        self.rec.close(vm, "down", t)
        assert self.listener is not None
        self.listener.vm_up(vm, t)
        event.pending.discard(vm)
        if event.pending:
            return
        event.status, event.ended = COMPLETED, t
        self._changed(t)
        if self._walk and self.cluster.scenario.walk == "sequential":
            self._announce(self._walk.pop(0), t)
