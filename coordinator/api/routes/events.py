"""Events with our decisions; operator hold, release and force (written as overrides).

An override is an intent: any replica writes `overrides/<event-id>`; only the leader
turns it into the decision (`operator_hold`, `force_reason`). Hold and force exclude
each other: a hold clears a force not yet acted on, a force clears a hold. Release
clears the hold only.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from coordinator.api.auth import NodeDep, Operator, Viewer
from coordinator.api.deps import Connected, View
from coordinator.api.derive import EventRow, event_row, event_rows
from coordinator.api.models import OptionalReasonIn, ReasonIn
from coordinator.api.routes.common import Writes, name_param, not_found
from coordinator.api.writes import Current, exists
from coordinator.node import CoordinatorNode
from registry.records import DecisionState, Override

router = APIRouter(prefix="/v1/events", tags=["events"])
EventId = Annotated[str, name_param("event id")]
NOT_FOUND = {404: {"description": "no such event"}}


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


@router.get("/{event_id}", response_model=EventRow, responses=NOT_FOUND,
            summary="One event: platform view, decision, acknowledgement, override")
def get_event(event_id: EventId, view: View, _: Viewer) -> EventRow:
    row = event_row(event_id, view)
    if row is None:
        raise not_found(f"event {event_id!r}")
    return row


def _override(node: CoordinatorNode, writes: Writes, caller_name: str, event_id: str,
              action: str, reason: str, **fields: str) -> Override:
    layout = node.layout
    if not (exists(node.client, layout.event(event_id))
            or exists(node.client, layout.decision(event_id))):
        raise not_found(f"event {event_id!r}")
    now = node.clock.now()

    def update(current: Current[Override]) -> Override:
        base = current.record or Override(event_id=event_id)
        return base.model_copy(update={**fields, "by": caller_name, "at": now})

    done = writes.apply(caller_name, action, layout.override(event_id), Override, update,
                        event_id=event_id, detail=reason)
    assert done.record is not None
    return done.record


@router.post("/{event_id}/hold", response_model=Override, dependencies=[Connected],
             responses=NOT_FOUND, summary="Hold an event (no drain, no approval) with a reason")
def hold(event_id: EventId, body: ReasonIn, node: NodeDep, writes: Writes,
         caller: Operator) -> Override:
    """The platform still starts the event at NotBefore: a hold only stops *us*."""
    return _override(node, writes, caller.name, event_id, "hold", body.reason,
                     hold=body.reason, force="")


@router.post("/{event_id}/release", response_model=Override, dependencies=[Connected],
             responses=NOT_FOUND, summary="Release an operator hold")
def release(event_id: EventId, node: NodeDep, writes: Writes, caller: Operator,
            body: OptionalReasonIn | None = None) -> Override:
    return _override(node, writes, caller.name, event_id, "release",
                     body.reason if body else "", hold="")


@router.post("/{event_id}/force", response_model=Override, dependencies=[Connected],
             responses=NOT_FOUND, summary="Force-approve an event, bypassing the safety check")
def force(event_id: EventId, body: ReasonIn, node: NodeDep, writes: Writes,
          caller: Operator) -> Override:
    """The leader reserves the event's VMs and approves it even if a group loses its
    quorum. Mandatory reason; audited."""
    return _override(node, writes, caller.name, event_id, "force", body.reason,
                     force=body.reason, hold="")
