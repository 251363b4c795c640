"""Event relay: this VM's scheduled-events document → `events/<id>` in ZooKeeper.

Every agent of an availability set sees the same events, so many agents merge into one
record with compare-and-set: `seen_by` collects observers, the highest incarnation's
details win, and status only moves forward (Scheduled → Started → Gone) so a lagging
agent cannot resurrect an event.

An event is marked Gone when it is missing from a document newer than one it was
seen in. "Newer" compares this VM's own incarnations only (each VM's document has its
own counter), or, for open events adopted from ZooKeeper after a restart, means
fetched after they were adopted — an event recorded by another agent after our last
fetch may just be newer than our document, never gone.
"""

from __future__ import annotations

import logging

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError
from pydantic import ValidationError

from agent import zkstore
from agent.imds_models import ScheduledEvent, ScheduledEventsDocument
from registry.clock import Clock
from registry.codec import decode
from registry.layout import Layout
from registry.records import EventType, PlatformEvent, PlatformStatus

log = logging.getLogger(__name__)

ORDER = {PlatformStatus.SCHEDULED: 0, PlatformStatus.STARTED: 1, PlatformStatus.GONE: 2}
SPARE_OBSERVERS = 3
"""Observers outside an event's Resources that list themselves in `seen_by`: enough
for the coordinator to find a live acker when the Resources' own agents are gone, few
enough that a whole availability set does not contend on one record."""


def observed(ev: ScheduledEvent, incarnation: int, vm: str, now: float) -> PlatformEvent:
    """The record this observation alone would produce (raises ValueError if unusable)."""
    status = PlatformStatus(ev.event_status)
    if status == PlatformStatus.GONE:
        raise ValueError("IMDS does not report Gone")
    return PlatformEvent(
        event_id=ev.event_id, event_type=EventType(ev.event_type), status=status,
        resources=list(ev.resources), not_before=ev.not_before, description=ev.description,
        source=ev.event_source or "Platform", duration_s=ev.duration_s,
        incarnation=incarnation, seen_by=[vm], first_seen=now, last_seen=now,
        started_at=now if status == PlatformStatus.STARTED else None)


def merge(current: PlatformEvent | None, seen: PlatformEvent, now: float) -> PlatformEvent:
    """Fold one agent's observation into the shared record (pure; unchanged → same object)."""
    if current is None:
        return seen
    update: dict[str, object] = {}
    vm = seen.seen_by[0]
    spares = [v for v in current.seen_by if v not in current.resources]
    wanted = vm in current.resources or vm in seen.resources or len(spares) < SPARE_OBSERVERS
    if vm not in current.seen_by and wanted:
        update["seen_by"] = [*current.seen_by, vm]
    forward = ORDER[seen.status] > ORDER[current.status]
    if forward:
        update["status"] = seen.status
        if seen.status == PlatformStatus.STARTED and current.started_at is None:
            update["started_at"] = now
    if seen.incarnation > current.incarnation and ORDER[seen.status] >= ORDER[current.status]:
        update.update(incarnation=seen.incarnation, event_type=seen.event_type,
                      resources=seen.resources, not_before=seen.not_before,
                      description=seen.description, source=seen.source,
                      duration_s=seen.duration_s)
    if not update:
        return current
    update["last_seen"] = now
    return current.model_copy(update=update)


def mark_gone(current: PlatformEvent | None, incarnation: int, now: float) -> PlatformEvent | None:
    """The record once the event left IMDS (the caller checked it really did)."""
    if current is None or current.status == PlatformStatus.GONE:
        return current
    return current.model_copy(update={
        "status": PlatformStatus.GONE, "gone_at": now, "last_seen": now,
        "incarnation": max(incarnation, current.incarnation)})


class EventRelay:
    def __init__(self, zk: KazooClient, layout: Layout, vm: str, clock: Clock) -> None:
        self.zk = zk
        self.layout = layout
        self.vm = vm
        self.clock = clock
        self._seen: dict[str, int] = {}
        """Events seen in this process → the incarnation we last saw them at."""
        self._published: dict[str, tuple[int, str]] = {}
        """What we last wrote per event: skip ZooKeeper when nothing changed."""
        self._last_gone_check: int | None = None
        self._skipped: set[str] = set()

    def rescan(self) -> None:
        """Adopt open events about this VM from ZooKeeper (call after (re-)registration).

        Must run *before* the next document is fetched: an event recorded before that
        fetch and missing from it is over, while one recorded after it may simply be
        newer than our document.
        """
        self._scan()
        self._last_gone_check = None

    def publish(self, doc: ScheduledEventsDocument, fresh: bool = True) -> None:
        """Merge every event of `doc`; when `fresh`, mark vanished events Gone."""
        now = self.clock.now()
        present = set()
        for ev in doc.events:
            present.add(ev.event_id)
            try:
                seen = observed(ev, doc.incarnation, self.vm, now)
            except (ValueError, ValidationError) as exc:
                if ev.event_id not in self._skipped:
                    self._skipped.add(ev.event_id)
                    log.warning("not relaying event %r (%s %s): %s", ev.event_id,
                                ev.event_type, ev.event_status, str(exc).splitlines()[0])
                continue
            self._seen[ev.event_id] = doc.incarnation
            key = (doc.incarnation, ev.event_status)
            if self._published.get(ev.event_id) == key:
                continue
            try:
                zkstore.update(self.zk, self.layout.event(ev.event_id), PlatformEvent,
                               lambda current, s=seen: merge(current, s, now),
                               overwrite_malformed=True)
            except zkstore.CasConflict as exc:
                log.warning("%s", exc)
                continue
            self._published[ev.event_id] = key
        if fresh:
            self._check_gone(doc.incarnation, present, now)

    def _check_gone(self, incarnation: int, present: set[str], now: float) -> None:
        if self._last_gone_check == incarnation:
            return  # events only vanish under a new incarnation
        settled = True
        for event_id, seen_at in list(self._seen.items()):
            if event_id in present or incarnation <= seen_at:
                continue
            try:
                stored = zkstore.update(self.zk, self.layout.event(event_id), PlatformEvent,
                                        lambda current: mark_gone(current, incarnation, now))
            except zkstore.CasConflict as exc:
                log.warning("%s", exc)
                settled = False
                continue
            if stored is None or stored.status == PlatformStatus.GONE:
                if stored is not None:
                    log.info("event %s gone from IMDS (incarnation %d)", event_id, incarnation)
                self._seen.pop(event_id, None)
                self._published.pop(event_id, None)
        self._last_gone_check = incarnation if settled else None

    def _scan(self) -> None:
        """Open events that name this VM (or that it reported) become gone candidates."""
        try:
            children = self.zk.get_children(self.layout.events)
        except NoNodeError:
            children = []
        for event_id in children:
            if event_id in self._seen:
                continue
            path = self.layout.event(event_id)
            try:
                data, _ = self.zk.get(path)
            except NoNodeError:
                continue
            record = decode(PlatformEvent, data, path)
            if record is None or record.status == PlatformStatus.GONE:
                continue
            if self.vm in record.resources or self.vm in record.seen_by:
                self._seen[event_id] = -1  # any document fetched from now on is newer
