"""Events with our decisions; operator hold, release, force and retry (written as overrides).

An override is an intent: any replica writes `overrides/<event-id>`; only the leader
turns it into the decision (`operator_hold`, `force_reason`, a drain retry). Hold and
force exclude each other: a hold clears a force not yet acted on, a force clears a hold.
Release clears the hold only. A force still drains (only the safety check is
overridden) unless `skip_drain` is set. A retry asks the leader to drain a failed event
again: it bumps `Override.retry`, and the leader acts once per value.

Every `{event_id}` may be abbreviated: the full id in any case, or a unique
case-insensitive prefix of it (the dashboard and the demo show the first 8 characters).
A prefix of several ids answers 409 with the candidates in `matches`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Query, status
from fastapi.exceptions import HTTPException
from pydantic import TypeAdapter

from coordinator.api.auth import NodeDep, Operator, Viewer
from coordinator.api.deps import Connected, View
from coordinator.api.derive import EventRow, event_row, event_rows, per_view
from coordinator.api.models import ForceIn, OptionalReasonIn, ReasonIn
from coordinator.api.routes.common import (
    AMBIGUOUS,
    Responses,
    Writes,
    name_param,
    not_found,
    resolve_id,
)
from coordinator.api.writes import ZK_TIMEOUT_S, Current, exists, read
from coordinator.node import CoordinatorNode
from coordinator.store import ClusterView
from registry.records import Decision, DecisionCode, DecisionState, Override

router = APIRouter(prefix="/v1/events", tags=["events"])
EventId = Annotated[str, name_param("event id, or a unique prefix of it in any case")]
NOT_FOUND: Responses = {404: {"description": "no such event"}, **AMBIGUOUS}
RETRYABLE_CODES = frozenset({DecisionCode.DRAIN_FAILED, DecisionCode.DRAIN_TIMEOUT,
                             DecisionCode.RETRY_BACKOFF})


@router.get("", response_model=list[EventRow], summary="Events with their decisions")
def list_events(view: View, _: Viewer,
                state: Annotated[DecisionState | None,
                                 Query(description="only events in this decision state")] = None,
                active: Annotated[bool | None,
                                  Query(description="true: only events not over yet; "
                                        "false: only those over")] = None) -> list[EventRow]:
    rows = event_rows(view)
    if state is not None:
        rows = [r for r in rows if r.state is state]
    if active is not None:
        rows = [r for r in rows if r.active is active]
    return rows


@per_view
def events_json(view: ClusterView) -> bytes:
    """Every event row, serialized once per mirror change (the fast path serves it)."""
    return _EVENT_ROWS.dump_json(event_rows(view))


_EVENT_ROWS: TypeAdapter[list[EventRow]] = TypeAdapter(list[EventRow])


def known_in(view: ClusterView) -> set[str]:
    return set(view.events) | set(view.decisions)


@router.get("/{event_id}", response_model=EventRow, responses=NOT_FOUND,
            summary="One event: platform view, decision, acknowledgement, override")
def get_event(event_id: EventId, view: View, _: Viewer) -> EventRow:
    found = resolve_id(event_id, known_in(view))
    row = event_row(found, view) if found else None
    if row is None:
        raise not_found(f"event {event_id!r}")
    return row


def resolve_for_write(node: CoordinatorNode, event_id: str) -> str:
    """The full id of the event an action names, read from ZooKeeper itself (the mirror
    may not have an event that was just created): 404 when none, 409 when ambiguous."""
    layout = node.layout
    client = node.client
    if exists(client, layout.event(event_id)) or exists(client, layout.decision(event_id)):
        return event_id
    names: set[str] = set()
    for folder in (layout.events, layout.decisions):
        names.update(client.get_children_async(folder).get(timeout=ZK_TIMEOUT_S))
    found = resolve_id(event_id, names)
    if found is None:
        raise not_found(f"event {event_id!r}")
    return found


def _override(node: CoordinatorNode, writes: Writes, caller_name: str, event_id: str,
              action: str, reason: str, detail: str | None = None,
              check: Callable[[Override], dict[str, object]] | None = None,
              **fields: object) -> Override:
    """Resolve the id, then write the override and its audit entry in one transaction.
    `check(current_override)` may refuse (raise) or return more fields to set."""
    event_id = resolve_for_write(node, event_id)
    now = node.clock.now()

    def update(current: Current[Override]) -> Override:
        base = current.record or Override(event_id=event_id)
        more = check(base) if check is not None else {}
        return base.model_copy(update={**fields, **(more or {}), "by": caller_name,
                                       "at": now})

    done = writes.apply(caller_name, action, node.layout.override(event_id), Override,
                        update, event_id=event_id,
                        detail=reason if detail is None else detail)
    assert done.record is not None
    return done.record


@router.post("/{event_id}/hold", response_model=Override, dependencies=[Connected],
             responses=NOT_FOUND, summary="Hold an event (no drain, no approval) with a reason")
def hold(event_id: EventId, body: ReasonIn, node: NodeDep, writes: Writes,
         caller: Operator) -> Override:
    """The platform still starts the event at NotBefore: a hold only stops *us*."""
    return _override(node, writes, caller.name, event_id, "hold", body.reason,
                     hold=body.reason, force="", skip_drain=False)


@router.post("/{event_id}/release", response_model=Override, dependencies=[Connected],
             responses=NOT_FOUND, summary="Release an operator hold")
def release(event_id: EventId, node: NodeDep, writes: Writes, caller: Operator,
            body: OptionalReasonIn | None = None) -> Override:
    return _override(node, writes, caller.name, event_id, "release",
                     body.reason if body else "", hold="")


@router.post("/{event_id}/force", response_model=Override, dependencies=[Connected],
             responses=NOT_FOUND,
             summary="Force-approve an event, bypassing the safety check (it still drains)")
def force(event_id: EventId, body: ForceIn, node: NodeDep, writes: Writes,
          caller: Operator) -> Override:
    """The leader reserves the event's VMs, **drains them** (Patroni switchover, HDFS
    maintenance: whatever the drain hooks do) and approves the event even if a group
    loses its quorum. `skip_drain: true` approves without draining: the VMs go down with
    their replicas still on them. Mandatory reason; audited."""
    detail = body.reason + (" [skip drain]" if body.skip_drain else "")
    return _override(node, writes, caller.name, event_id, "force", body.reason,
                     detail=detail, force=body.reason, skip_drain=body.skip_drain, hold="")


@router.post("/{event_id}/retry", response_model=Override, dependencies=[Connected],
             responses={**NOT_FOUND,
                        409: {"description": "the id is ambiguous (`matches`), or the "
                                             "event's drain has not failed: nothing to "
                                             "retry"}},
             summary="Drain a failed event again")
def retry(event_id: EventId, node: NodeDep, writes: Writes, caller: Operator,
          body: OptionalReasonIn | None = None) -> Override:
    """For an event whose drain failed or timed out (decision `failed`, or waiting for an
    automatic retry): the leader resets its drain requests and the agents run the drain
    hook again (a new attempt), then the event goes on as usual. Audited."""
    full_id = resolve_for_write(node, event_id)

    def check(current: Override) -> dict[str, object]:
        decision = read(node.client, node.layout.decision(full_id), Decision).record
        if decision is None or not (decision.state is DecisionState.FAILED
                                    or decision.code in RETRYABLE_CODES):
            state = (f"{decision.state.value} ({decision.code.value})" if decision
                     else "not decided yet")
            raise HTTPException(status.HTTP_409_CONFLICT,
                                f"event {full_id} is {state}: only a failed drain can be "
                                "retried")
        return {"retry": max(current.retry, decision.retry_seen) + 1}

    return _override(node, writes, caller.name, full_id, "retry",
                     body.reason if body else "", check=check)
