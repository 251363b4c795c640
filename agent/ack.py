"""Acknowledgement: POST StartRequests when the leader says so — at most once per approval.

An acknowledgement starts the event for *every* VM in its Resources, so sending one the
coordinator did not approve, or sending it twice, is the one thing the agent must never
do. The claim in `acks/<id>` is written (compare-and-set) *before* the POST; a record
for the same approval means someone — maybe this VM before a restart — already sent or
is sending it, and nothing is sent again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from kazoo.client import KazooClient
from pydantic import TypeAdapter, ValidationError

from agent import zkstore
from agent.imds import ImdsClient, ImdsError
from agent.imds_models import ScheduledEventsDocument
from registry.clock import Clock
from registry.layout import Layout
from registry.records import AckRecord, AckState, Decision, DecisionState, Name

log = logging.getLogger(__name__)

SCHEDULED = "Scheduled"
_NAME: TypeAdapter[str] = TypeAdapter(Name)


def _valid_name(value: str) -> bool:
    try:
        _NAME.validate_python(value)
    except ValidationError:
        return False
    return True


class Acknowledger:
    def __init__(self, zk: KazooClient, layout: Layout, vm: str, imds: ImdsClient,
                 clock: Clock, *, retries: int = 3,
                 on_ack: Callable[[str], None] | None = None) -> None:
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

    def check(self, doc: ScheduledEventsDocument) -> None:
        """Acknowledge every event that is Scheduled here and approved with us as acker."""
        for event_id, outcome in list(self._unrecorded.items()):
            self._record(event_id, *outcome)
        for ev in doc.events:
            if ev.event_status != SCHEDULED or not _valid_name(ev.event_id):
                continue
            decision, _ = zkstore.read(self.zk, self.layout.decision(ev.event_id), Decision)
            if (decision is None or decision.state != DecisionState.APPROVED
                    or decision.acker != self.vm or decision.approval < 1):
                continue
            if self._handled.get(ev.event_id) == decision.approval:
                continue
            self.acknowledge(ev.event_id, decision.approval, doc.incarnation)

    def acknowledge(self, event_id: str, approval: int, incarnation: int) -> AckRecord | None:
        """Claim, send, record. Returns the final record, or None if not ours to send."""
        if not self._claim(event_id, approval, incarnation):
            self._handled[event_id] = approval
            return None
        self._handled[event_id] = approval
        state, detail, incarnation = self._send(event_id, incarnation)
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

        stored = zkstore.update(self.zk, self.layout.ack(event_id), AckRecord, finish)
        self._unrecorded.pop(event_id, None)
        return stored

    def _claim(self, event_id: str, approval: int, incarnation: int) -> bool:
        claim = AckRecord(event_id=event_id, approval=approval, vm=self.vm,
                          state=AckState.SENDING, incarnation=incarnation, at=self.clock.now())

        def take(current: AckRecord | None) -> AckRecord | None:
            if current is not None and current.approval >= approval:
                return None  # this approval was claimed already: never send twice
            return claim

        stored = zkstore.update(self.zk, self.layout.ack(event_id), AckRecord, take)
        if stored is None:
            log.warning("acks/%s is malformed; not acknowledging (would risk a second send)",
                        event_id)
        return stored is claim

    def _send(self, event_id: str, incarnation: int) -> tuple[AckState, str, int]:
        """POST StartRequests; on a 4xx refetch (stale incarnation?) and retry, bounded."""
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
            log.info("acknowledgement of %s rejected (%s); retrying with incarnation %d",
                     event_id, reason, fresh.incarnation)
            incarnation = fresh.incarnation
        return AckState.REJECTED, "retries exhausted", incarnation
