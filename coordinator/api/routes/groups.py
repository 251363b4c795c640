"""Replica groups: read from the mirror; written by operators (an intent the leader reads)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Response, status

from coordinator.api.auth import NodeDep, Operator, Viewer
from coordinator.api.deps import Connected, View
from coordinator.api.derive import GroupRow, group_rows
from coordinator.api.models import GroupIn, GroupOut
from coordinator.api.routes.common import Responses, Writes, name_param, not_found
from coordinator.api.writes import Conflict, Current
from registry.records import Group

router = APIRouter(prefix="/v1/groups", tags=["groups"])
GroupName = Annotated[str, name_param("group name")]
MANAGED: Responses = {
    409: {"description": "the group is kept by a group provider (source provider:...)"}}


def _not_managed(current: Current[Group], name: str) -> None:
    """A provider's group is rewritten by the leader at its next poll: an API change would
    silently vanish, so it is refused; change the provider (or its system) instead."""
    source = current.record.source if current.record else ""
    if source.startswith("provider:"):
        raise Conflict(f"group {name!r} is kept by {source}: change it there, "
                       "not through the API")


@router.get("", response_model=list[GroupRow], summary="Replica groups and their availability")
def list_groups(view: View, _: Viewer) -> list[GroupRow]:
    return group_rows(view)


@router.get("/{name}", response_model=GroupRow, summary="One replica group",
            responses={404: {"description": "no such group"}})
def get_group(name: GroupName, view: View, _: Viewer) -> GroupRow:
    for row in group_rows(view):
        if row.name == name:
            return row
    raise not_found(f"group {name!r}")


@router.put("/{name}", response_model=GroupOut, dependencies=[Connected],
            responses={**MANAGED, 422: {"description": "invalid group, a command health gate "
                                                       "without allow_gate_commands, or "
                                                       "members no agent ever registered "
                                                       "(without allow_unknown)"}},
            summary="Create or replace a replica group")
def put_group(name: GroupName, body: GroupIn, node: NodeDep, writes: Writes,
              caller: Operator, view: View) -> GroupOut:
    """`warnings` in the answer name what was saved but deserves a second look."""
    gate = body.health_gate.strip()
    if gate and not gate.startswith(("http://", "https://")) and (
            not node.config.allow_gate_commands):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            "health_gate must be an http(s) URL: command gates through the "
                            "API need allow_gate_commands in the coordinator's config")
    known = view.vm_views()
    unknown = [m for m in body.members if m not in known]
    warnings = []
    if unknown:
        listed = ", ".join(unknown[:10]) + (" ..." if len(unknown) > 10 else "")
        if not body.allow_unknown:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"unknown members: {listed}: no agent ever registered them (a typo?). They "
                "would count as down and hold every maintenance of the group; send "
                "allow_unknown (--allow-unknown) to save it anyway")
        warnings.append(f"unknown members (count as down until their agents register): "
                        f"{listed}")
    if body.min_available == 0:
        warnings.append("min_available 0: this group never holds a maintenance (every "
                        "member may go down at once)")
    group = Group(name=name, members=list(body.members), min_available=body.min_available,
                  health_gate=body.health_gate, source="api")
    detail = (f"group {name}: members={','.join(group.members)} "
              f"min_available={group.min_available}"
              + (f" health_gate={group.health_gate}" if group.health_gate else "")
              + (f" (unknown: {','.join(unknown)})" if unknown else ""))

    def update(current: Current[Group]) -> Group:
        _not_managed(current, name)
        return group

    writes.apply(caller.name, "group:put", node.layout.group(name), Group, update,
                 detail=detail)
    return GroupOut(**group.model_dump(), warnings=warnings)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT, dependencies=[Connected],
               summary="Delete a replica group",
               responses={404: {"description": "no such group"}, **MANAGED})
def delete_group(name: GroupName, node: NodeDep, writes: Writes, caller: Operator) -> Response:
    def gone(current: Current[Group]) -> None:
        if not current.exists:
            raise not_found(f"group {name!r}")
        _not_managed(current, name)
        return None

    writes.apply(caller.name, "group:delete", node.layout.group(name), Group, gone,
                 detail=f"group {name}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
