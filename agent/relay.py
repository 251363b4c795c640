"""Event relay: this VM's scheduled-events document → `events/<id>` in ZooKeeper.

Every agent of an availability set sees the same events, so many agents merge into one
record with compare-and-set. The rules (`merge`, `mark_gone`) are pure:

- **Freshness per reporting VM, then by time.** DocumentIncarnation is a per-VM
  counter, never comparable across VMs: a report is stale only against the same VM's
  earlier one (`incarnations`). Across VMs the newest observation (`observed_at`, the
  fetch time) carries the event's details, so newer Resources from a VM with a low
  counter win over older ones from a VM with a high counter.
- Scheduled → Started only moves forward (a lagging document cannot un-start an event).
- **Gone is a claim, not a fact.** An agent that finds the event missing from a newer
  document of its own adds itself to `gone_by` (the first sets `gone_at`). Any VM that
  still lists the event in a document fetched after `gone_at` (give or take the agents'
  clock disagreement, `CLOCK_TOLERANCE_S`) brings it back. The
  coordinator treats the event as over only once one of its own VMs said so and the
  grace period passed without a reappearance.

Only an event's own VMs and a few spare observers list themselves in `seen_by`, so a
whole availability set does not contend on one record.
"""

from __future__ import annotations

import logging
from functools import partial

from pydantic import ValidationError

from agent.imds_models import ScheduledEvent, ScheduledEventsDocument
from registry.clock import Clock
from registry.codec import decode
from registry.layout import Layout
from registry.records import EventType, PlatformEvent, PlatformStatus
from registry.zookeeper import CasConflict, Client, NoNodeError, cas

log = logging.getLogger(__name__)

ORDER = {PlatformStatus.SCHEDULED: 0, PlatformStatus.STARTED: 1, PlatformStatus.GONE: 2}
SPARE_OBSERVERS = 3
"""Observers outside an event's Resources that list themselves in `seen_by`: enough
for the coordinator to find a live acker when the Resources' own agents are gone, few
enough that a whole availability set does not contend on one record."""
REFRESH_POLLS = 5
"""Re-merge an unchanged event every this many polls: how a VM that still lists an
event undoes another VM's premature Gone."""
DETAILS = ("event_type", "resources", "not_before", "description", "source", "duration_s")
CLOCK_TOLERANCE_S = 30.0
"""How far apart agents' clocks may be: a sighting fetched up to this long *before* a
Gone still undoes it. Wrongly undoing one costs a delay; wrongly keeping one would let the
coordinator release an event that still runs (one VM with a fast clock and a document
that forgot the event for a poll would otherwise stamp its Gone ahead of everyone)."""


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
        started_at=now if status == PlatformStatus.STARTED else None,
        incarnations={vm: incarnation}, observed_at=now)


def _wanted(current: PlatformEvent, vm: str, seen: PlatformEvent) -> bool:
    """Should `vm` list itself in `seen_by`? Its own event, or one of a few spares."""
    spares = [v for v in current.seen_by if v not in current.resources]
    return vm in current.resources or vm in seen.resources or len(spares) < SPARE_OBSERVERS


def merge(current: PlatformEvent | None, seen: PlatformEvent, now: float) -> PlatformEvent:
    """Fold one agent's observation into the shared record (pure; unchanged → same object)."""
    if current is None:
        return seen
    vm = seen.seen_by[0]
    incarnation = seen.incarnations.get(vm, seen.incarnation)
    last = current.incarnations.get(vm)
    if last is not None and incarnation < last:
        return current  # an older document of this same VM than one already merged
    update: dict[str, object] = {}
    wanted = _wanted(current, vm, seen)
    if vm not in current.seen_by and wanted:
        update["seen_by"] = [*current.seen_by, vm]
    if (vm in current.seen_by or wanted) and last != incarnation:
        update["incarnations"] = {**current.incarnations, vm: incarnation}
    status = current.status
    if status is PlatformStatus.GONE:
        if (current.gone_at is not None
                and seen.observed_at <= current.gone_at - CLOCK_TOLERANCE_S):
            return current.model_copy(update=update) if update else current
        # listed again in a document fetched after the Gone: it was never over
        update.update(status=seen.status, gone_at=None, gone_by=[])
        status = seen.status
        if seen.status is PlatformStatus.STARTED and current.started_at is None:
            update["started_at"] = now
        update.update({k: getattr(seen, k) for k in DETAILS}, observed_at=seen.observed_at,
                      incarnation=max(current.incarnation, seen.incarnation))
    elif ORDER[seen.status] > ORDER[status]:
        update["status"] = seen.status
        if seen.status is PlatformStatus.STARTED and current.started_at is None:
            update["started_at"] = now
    if (status is not PlatformStatus.GONE and ORDER[seen.status] >= ORDER[current.status]
            and seen.observed_at >= current.observed_at
            and any(getattr(seen, k) != getattr(current, k) for k in DETAILS)):
        update.update({k: getattr(seen, k) for k in DETAILS}, observed_at=seen.observed_at)
    if seen.incarnation > current.incarnation and "incarnation" not in update:
        update["incarnation"] = seen.incarnation
    if not update:
        return current
    update["last_seen"] = now
    return current.model_copy(update=update)


def mark_gone(current: PlatformEvent | None, vm: str, incarnation: int | None,
              now: float) -> PlatformEvent | None:
    """`vm`'s newer document (`incarnation`; None: fetched after the event was adopted
    from ZooKeeper) no longer lists the event (the caller checked). The first such word
    marks it Gone; later ones add their VM."""
    if current is None:
        return None
    last = current.incarnations.get(vm)
    if incarnation is not None and last is not None and incarnation <= last:
        return current  # this VM merged the event from a document at least as new
    if current.status is PlatformStatus.GONE:
        if vm in current.gone_by:
            return current
        return current.model_copy(update={"gone_by": [*current.gone_by, vm],
                                          "last_seen": now})
    return current.model_copy(update={
        "status": PlatformStatus.GONE, "gone_at": now, "gone_by": [vm], "last_seen": now,
        "incarnation": max(incarnation or 0, current.incarnation)})


def _merge_into(current: PlatformEvent | None, *, seen: PlatformEvent,
                now: float) -> PlatformEvent:
    return merge(current, seen, now)


class EventRelay:
    def __init__(self, zk: Client, layout: Layout, vm: str, clock: Clock) -> None:
        self.zk = zk
        self.layout = layout
        self.vm = vm
        self.clock = clock
        self._seen: dict[str, int | None] = {}
        """Events seen in this process → the incarnation we last saw them at (None:
        adopted from ZooKeeper; any document fetched since is newer)."""
        self._published: dict[str, tuple[int, str]] = {}
        """What we last wrote per event: skip ZooKeeper when nothing changed."""
        self._quiet: dict[str, int] = {}
        """Polls since each event was last merged (refreshed every REFRESH_POLLS)."""
        self._last_gone_check: int | None = None
        self._skipped: set[str] = set()
        self._sighted: set[str] = set()

    def rescan(self) -> None:
        """Adopt open events about this VM from ZooKeeper (call after (re-)registration).

        Must run *before* the next document is fetched: an event recorded before that
        fetch and missing from it is over, while one recorded after it may simply be
        newer than our document.
        """
        self._scan()
        self._last_gone_check = None

    def publish(self, doc: ScheduledEventsDocument, fresh: bool = True,
                fetched_at: float | None = None) -> None:
        """Merge every event of `doc`; when `fresh`, report vanished events Gone.
        `fetched_at`: when the document was asked for (default: now)."""
        now = self.clock.now() if fetched_at is None else fetched_at
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
            self._first_sight(ev)
            self._seen[ev.event_id] = doc.incarnation
            key = (doc.incarnation, ev.event_status)
            quiet = self._quiet.get(ev.event_id, 0) + 1
            if self._published.get(ev.event_id) == key and quiet < REFRESH_POLLS:
                self._quiet[ev.event_id] = quiet
                continue
            try:
                cas(self.zk, self.layout.event(ev.event_id), PlatformEvent,
                    partial(_merge_into, seen=seen, now=now), overwrite_malformed=True)
            except CasConflict as exc:
                log.warning("%s", exc)
                continue
            self._published[ev.event_id] = key
            self._quiet[ev.event_id] = 0
        if fresh:
            self._check_gone(doc.incarnation, present, now)

    def _first_sight(self, ev: ScheduledEvent) -> None:
        """Say so in this VM's log the first time an event shows up, held or not."""
        if ev.event_id in self._sighted:
            return
        self._sighted.add(ev.event_id)
        log.info("%s sees event %s: %s %s, NotBefore %s, Resources %s", self.vm, ev.event_id,
                 ev.event_type, ev.event_status, ev.not_before or "-",
                 ", ".join(ev.resources[:10]) or "-")

    def _check_gone(self, incarnation: int, present: set[str], now: float) -> None:
        if self._last_gone_check == incarnation:
            return  # events only vanish under a new incarnation
        settled = True
        for event_id, seen_at in list(self._seen.items()):
            if event_id in present or (seen_at is not None and incarnation <= seen_at):
                continue
            newer = None if seen_at is None else incarnation
            try:
                stored = cas(self.zk, self.layout.event(event_id), PlatformEvent,
                             partial(mark_gone, vm=self.vm, incarnation=newer, now=now))
            except CasConflict as exc:
                log.warning("%s", exc)
                settled = False
                continue
            if stored is None or stored.status == PlatformStatus.GONE:
                if stored is not None:
                    log.info("%s: event %s no longer in IMDS (incarnation %d)", self.vm,
                             event_id, incarnation)
                self._seen.pop(event_id, None)
                self._published.pop(event_id, None)
                self._quiet.pop(event_id, None)
                self._sighted.discard(event_id)
        self._last_gone_check = incarnation if settled else None

    def _scan(self) -> None:
        """Open events that name this VM (or that it reported) become gone candidates, and
        so do events of ours that others already reported gone while we were away, and
        orphans: open events none of whose VMs or observers is registered now (all
        deleted or gone, say), which nobody else is left to see leave."""
        try:
            children = self.zk.get_children(self.layout.events)
            registered = set(self.zk.get_children(self.layout.vms))
        except NoNodeError:
            children, registered = [], set()
        for event_id in children:
            if event_id in self._seen:
                continue
            path = self.layout.event(event_id)
            try:
                data, _ = self.zk.get(path)
            except NoNodeError:
                continue
            record = decode(PlatformEvent, data, path)
            if record is None:
                continue
            if record.status == PlatformStatus.GONE and (
                    self.vm not in record.resources or self.vm in record.gone_by):
                continue  # over, and nothing for us to confirm
            witnesses = (set(record.resources) | set(record.seen_by)) - {self.vm}
            mine = self.vm in record.resources or self.vm in record.seen_by
            orphan = record.status != PlatformStatus.GONE and not witnesses & registered
            if mine or orphan:
                # any document fetched from now on is newer; one that lacks an event of
                # ours adds us to `gone_by` (the confirmation the coordinator waits for)
                self._seen[event_id] = None
