"""Acknowledgement: POST StartRequests when the leader says so — at most once per approval.

An acknowledgement starts the event for *every* VM in its Resources, so sending one the
coordinator did not approve, or sending it twice, is the one thing the agent must never
do. The claim in `acks/<id>` is written (compare-and-set) *before* the POST; a record
for the same approval means someone — maybe this VM before a restart — already sent or
is sending it, and nothing is sent again. The claim also rewrites the decision at the
version read, so it and a leader's revocation of the approval cannot both succeed.

An approval covers the VMs the coordinator reserved and drained (`Decision.approved`):
while this VM's own IMDS document lists any other VM in the event's Resources, nothing
is sent — the platform would take a VM nobody made safe.

A claim of ours whose outcome this process does not know (the agent restarted mid-POST,
or the claim's commit answer was lost with the connection) is resolved from IMDS: the
event started or left the document → accepted; still Scheduled well after the claim →
rejected, so the leader may approve again after checking safety anew.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pydantic import TypeAdapter, ValidationError

from agent.imds import ImdsClient, ImdsError
from agent.imds_models import ScheduledEventsDocument
from registry.clock import Clock
from registry.codec import decode
from registry.layout import Layout
from registry.records import (
    AckRecord,
    AckState,
    Decision,
    DecisionState,
    DrainRecord,
    DrainStatus,
    DrainWant,
    Name,
)
from registry.zookeeper import (
    DEFAULT_ATTEMPTS,
    CasConflict,
    Client,
    NoNodeError,
    Txn,
    cas,
    data_watch,
    exists,
    read,
    read_many,
)

log = logging.getLogger(__name__)

SCHEDULED = "Scheduled"
RESOLVE_AFTER_S = 60.0
"""Virtual seconds after our unresolved claim with the event still Scheduled before we
record it rejected: an accepted POST starts the event long before."""
_NAME: TypeAdapter[str] = TypeAdapter(Name)


def _valid_name(value: str) -> bool:
    try:
        _NAME.validate_python(value)
    except ValidationError:
        return False
    return True


class Acknowledger:
    def __init__(self, zk: Client, layout: Layout, vm: str, imds: ImdsClient,
                 clock: Clock, *, retries: int = 3, resolve_after_s: float = RESOLVE_AFTER_S,
                 on_ack: Callable[[str], None] | None = None,
                 wake: Callable[[], None] | None = None) -> None:
        self.zk = zk
        self.layout = layout
        self.vm = vm
        self.imds = imds
        self.clock = clock
        self.retries = retries
        self._on_ack = on_ack or (lambda result: None)
        self._handled: dict[str, int] = {}
        """Event → the approval this process has dealt with (skip re-reading acks/)."""
        self._unrecorded: dict[str, tuple[int, AckState, str, int]] = {}
        """Outcomes ZooKeeper has not taken yet (connection loss): retried each check."""
        self._wake = wake or (lambda: None)
        self._watched: set[str] = set()
        self._resolve_after_s = resolve_after_s
        self._unresolved: dict[str, tuple[int, float]] = {}
        """Claims of ours this process did not send: event → (approval, claimed at)."""
        self._refused: dict[str, int] = {}
        """Event → approval we refused to send for (logged once)."""
        self._approvals: dict[str, int] = {}
        """Event → the last approval naming us that the decision watch saw."""

    def watch(self, doc: ScheduledEventsDocument) -> None:
        """Watch the decisions of the events in this document, so an approval naming us
        wakes the loop at once instead of at the next poll (latency is the product)."""
        current = {ev.event_id for ev in doc.events if _valid_name(ev.event_id)}
        for event_id in current - self._watched:
            self._watched.add(event_id)
            data_watch(self.zk, self.layout.decision(event_id), self._watcher(event_id))
        self._watched &= current  # a retired event's watch ends on its next callback

    def _watcher(self, event_id: str) -> Callable[[bytes | None, object], bool]:
        def on_decision(data: bytes | None, stat: object) -> bool:
            """kazoo's thread: decode and maybe wake; never block. False ends the watch."""
            if event_id not in self._watched:
                return False
            decision = decode(Decision, data, "decision watch") if data else None
            if (decision is not None and decision.state == DecisionState.APPROVED
                    and decision.acker == self.vm):
                self._approvals[event_id] = decision.approval
                self._wake()
            return True

        return on_decision

    def check(self, doc: ScheduledEventsDocument) -> None:
        """Acknowledge every event that is Scheduled here and approved with us as acker."""
        for event_id, outcome in list(self._unrecorded.items()):
            self._record(event_id, *outcome)
        for ev in doc.events:
            approval = self._approvals.get(ev.event_id)
            if (ev.event_status != SCHEDULED and approval is not None
                    and self._handled.get(ev.event_id) != approval):
                # started (or starting) before we sent anything in this life: a claim of
                # ours for this approval may be waiting for its outcome
                self._handled[ev.event_id] = approval
                self._adopt_unresolved(ev.event_id, approval)
        for event_id in list(self._unresolved):
            self._resolve(event_id, doc)
        for ev in doc.events:
            if ev.event_status != SCHEDULED or not _valid_name(ev.event_id):
                continue
            path = self.layout.decision(ev.event_id)
            try:
                data, stat = self.zk.get(path)
            except NoNodeError:
                continue
            decision = decode(Decision, data, path)
            if (decision is None or decision.state != DecisionState.APPROVED
                    or decision.acker != self.vm or decision.approval < 1):
                continue
            if self._handled.get(ev.event_id) == decision.approval:
                continue
            outside = _outside(ev.resources, decision.approved)
            if outside:
                if self._refused.get(ev.event_id) != decision.approval:
                    self._refused[ev.event_id] = decision.approval
                    log.warning("%s: not acknowledging %s (approval %d): IMDS lists %s, "
                                "which the approval does not cover", self.vm, ev.event_id,
                                decision.approval, ", ".join(outside[:5]))
                continue
            undrained, drains_read = self._undrained(ev.event_id, decision.approved)
            if undrained:
                if self._refused.get(ev.event_id) != decision.approval:
                    self._refused[ev.event_id] = decision.approval
                    log.warning("%s: not acknowledging %s (approval %d) yet: %s is back and "
                                "not drained (the coordinator drains it first)", self.vm,
                                ev.event_id, decision.approval, ", ".join(undrained[:5]))
                continue
            self.acknowledge(ev.event_id, decision.approval, doc.incarnation,
                             decision_read=(data, stat.version), drains_read=drains_read,
                             approved=decision.approved)

    def _undrained(self, event_id: str, approved: list[str]) -> tuple[list[str],
                                                                       dict[str, int]]:
        """The approved VMs that are registered (live) while their drain for this event
        has not finished — one that was down at the approval and is back — and the
        versions of the drain records read (the claim checks them, so a hook that starts
        meanwhile makes the claim fail)."""
        paths = {self.layout.drain(vm): vm for vm in approved}
        records = read_many(self.zk, list(paths), DrainRecord, timeout=10)
        versions: dict[str, int] = {}
        undrained = []
        for path, (data, stat) in records.items():
            vm = paths[path]
            versions[path] = stat.version
            rec = decode(DrainRecord, data, path)
            if (rec is not None and rec.event_id == event_id and rec.want is DrainWant.DRAINED
                    and rec.status is not DrainStatus.DRAINED
                    and exists(self.zk, self.layout.vm(vm))):
                undrained.append(vm)
        return undrained, versions

    def acknowledge(self, event_id: str, approval: int, incarnation: int, *,
                    decision_read: tuple[bytes, int] | None = None,
                    drains_read: dict[str, int] | None = None,
                    approved: list[str] | None = None) -> AckRecord | None:
        """Claim, send, record. Returns the final record, or None if nothing was sent.

        `decision_read` (the decision's bytes and znode version as read) fences the claim
        against a leader revoking the approval meanwhile; see `_claim`. `approved` is the
        set the approval covers: a retry after a refused POST goes out only while IMDS
        still lists nothing outside it (None: not checked, for callers that checked).
        """
        claimed = self._claim(event_id, approval, incarnation, decision_read, drains_read or {})
        if claimed is None:
            return None  # the decision moved on: look again on the next check
        self._handled[event_id] = approval
        if not claimed:
            self._adopt_unresolved(event_id, approval)
            return None
        state, detail, incarnation = self._send(event_id, incarnation, approved)
        self._on_ack(state.value)
        log.info("%s: acknowledgement of %s (approval %d): %s %s", self.vm, event_id,
                 approval, state.value, detail)
        self._unrecorded[event_id] = (approval, state, detail, incarnation)
        return self._record(event_id, approval, state, detail, incarnation)

    def _record(self, event_id: str, approval: int, state: AckState, detail: str,
                incarnation: int) -> AckRecord | None:
        """Write the outcome over our own claim (compare-and-set)."""

        def finish(current: AckRecord | None) -> AckRecord | None:
            if current is None or current.approval != approval or current.vm != self.vm:
                return None
            return current.model_copy(update={"state": state, "detail": detail,
                                              "incarnation": incarnation,
                                              "at": self.clock.now()})

        stored = cas(self.zk, self.layout.ack(event_id), AckRecord, finish)
        self._unrecorded.pop(event_id, None)
        return stored

    def _adopt_unresolved(self, event_id: str, approval: int) -> None:
        """A claim of ours for this approval that no thread of this process is sending:
        an earlier life's, or one whose commit we never heard back about."""
        current = read(self.zk, self.layout.ack(event_id), AckRecord).record
        if (current is not None and current.vm == self.vm and current.approval == approval
                and current.state is AckState.SENDING):
            log.info("%s: claim for %s (approval %d) has no known outcome; resolving it "
                     "from IMDS", self.vm, event_id, approval)
            self._unresolved[event_id] = (approval, current.at)

    def _resolve(self, event_id: str, doc: ScheduledEventsDocument) -> None:
        approval, claimed_at = self._unresolved[event_id]
        ev = doc.event(event_id)
        if ev is None or ev.event_status != SCHEDULED:
            state, detail = AckState.ACCEPTED, (
                "resolved from IMDS: the event " + ("left the document" if ev is None
                                                    else f"is {ev.event_status}"))
        elif self.clock.now() - claimed_at > self._resolve_after_s:
            state, detail = AckState.REJECTED, (
                f"resolved from IMDS: still Scheduled {self.clock.now() - claimed_at:.0f} s "
                "after the claim; the acknowledgement never took effect")
        else:
            return
        del self._unresolved[event_id]
        log.info("%s: %s (approval %d): %s", self.vm, event_id, approval, detail)
        self._unrecorded[event_id] = (approval, state, detail, doc.incarnation)
        self._record(event_id, approval, state, detail, doc.incarnation)

    def _claim(self, event_id: str, approval: int, incarnation: int,
               decision_read: tuple[bytes, int] | None,
               drains_read: dict[str, int]) -> bool | None:
        """Write `acks/<id>` = sending for this approval, before any POST.

        True: ours to send. False: this approval was claimed before (by us in an earlier
        life, maybe mid-POST) or the record is unreadable — never send. None: the
        decision changed since we read it (e.g. the leader revoked the approval).

        The claim is one transaction with a rewrite of the decision as read, at the
        version read: it fails if the leader changed the decision, and it bumps that
        version, so a leader revoking on a view without our claim fails in turn. Either
        the revocation or the claim lands, never both.
        """
        path = self.layout.ack(event_id)
        claim = AckRecord(event_id=event_id, approval=approval, vm=self.vm,
                          state=AckState.SENDING, incarnation=incarnation, at=self.clock.now())
        for _ in range(DEFAULT_ATTEMPTS):
            current = read(self.zk, path, AckRecord)
            if current.malformed:
                log.warning("%s is malformed; not acknowledging (would risk a second send)",
                            path)
                return False
            if current.record is not None and current.record.approval >= approval:
                return False
            if not current.exists:
                self.zk.ensure_path(self.layout.acks)
            txn = Txn(self.zk)
            fence = (txn.put(self.layout.decision(event_id), decision_read[0],
                             decision_read[1]) if decision_read is not None else None)
            drains = [txn.require(drain, version) for drain, version in drains_read.items()]
            txn.put(path, claim, current.version)
            result = txn.commit()
            if result.ok:
                return True
            if result.error is not None and result.refused is None:
                raise result.error  # not sent (connection trouble): the caller retries
            if result.refused == fence or result.refused in drains:
                log.info("decision or drains of %s changed while claiming; re-reading",
                         event_id)
                return None
            # the ack record changed under us: re-read it
        raise CasConflict(f"gave up claiming {path}")

    def _send(self, event_id: str, incarnation: int,
              approved: list[str] | None) -> tuple[AckState, str, int]:
        """POST StartRequests; on a 4xx refetch (stale incarnation?) and retry, bounded.

        A refusal may mean the platform changed the event since our fetch: the retry is
        a new acknowledgement of what IMDS lists now, so it is checked against the
        approved set like the first one (a platform that refuses stale incarnations
        must not turn its refusal into a start of VMs nobody drained)."""
        for attempt in range(self.retries + 1):
            try:
                response = self.imds.start_requests([event_id], incarnation)
            except ImdsError as exc:
                return AckState.REJECTED, f"no answer from IMDS ({exc.code}): {exc}", incarnation
            if response.ok:
                return AckState.ACCEPTED, f"HTTP {response.status}", incarnation
            reason = f"HTTP {response.status}: {response.body[:300]}"
            if not 400 <= response.status < 500 or attempt == self.retries:
                return AckState.REJECTED, reason, incarnation
            try:
                fresh = self.imds.scheduled_events()
            except ImdsError as exc:
                return AckState.REJECTED, f"{reason}; refetch failed: {exc}", incarnation
            ev = fresh.event(event_id)
            if ev is None or ev.event_status != SCHEDULED:
                now = "gone" if ev is None else ev.event_status
                return AckState.REJECTED, f"{reason}; event now {now}", fresh.incarnation
            outside = _outside(ev.resources, approved) if approved is not None else []
            if outside:
                return AckState.REJECTED, (
                    f"{reason}; IMDS now lists {', '.join(outside[:5])}, which the approval "
                    "does not cover: not retried"), fresh.incarnation
            log.info("acknowledgement of %s rejected (%s); retrying with incarnation %d",
                     event_id, reason, fresh.incarnation)
            incarnation = fresh.incarnation
        return AckState.REJECTED, "retries exhausted", incarnation


def _outside(listed: list[str], approved: list[str]) -> list[str]:
    """VMs this document's event takes that the approval does not cover (VM names
    ignore case in Azure). An approval that names nothing covers nothing."""
    covered = {vm.casefold() for vm in approved}
    return [vm for vm in listed if vm.casefold() not in covered] or (
        [] if covered else list(listed) or ["(no approved set)"])
