"""Repairs an operator makes when the cluster's records no longer match the world.

- A VM the platform deleted (Terminate) or that left the cluster keeps its `vm-state/`
  and `drain/` records: its groups count it unavailable and an event naming it waits for
  it. `DELETE /v1/vms/{name}` forgets it (only when no agent is registered for it).
- A record that does not decode fails closed: it blocks every admission it might touch
  (a decision or a group: all of them) until someone fixes or removes it.
  `GET /v1/unreadable` lists them; `DELETE /v1/unreadable/{folder}/{name}` removes one,
  and only while it is still unreadable (compare-and-set on the version read).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel

from coordinator.api.auth import NodeDep, Operator, Viewer
from coordinator.api.deps import Connected, Unavailable, View
from coordinator.api.routes.common import Writes, name_param, not_found
from coordinator.api.writes import ZK_TIMEOUT_S, Current
from coordinator.api.writes import read as zk_read
from registry.records import AuditEntry, DrainRecord, VMState
from registry.zookeeper import FOLDERS, KazooTimeoutError, Txn

router = APIRouter(prefix="/v1", tags=["repair"])

Folder = Literal["decisions", "groups", "drain", "acks", "overrides", "events", "vm-state",
                 "vms"]


RecordName = Annotated[str, name_param("record name")]
VMName = Annotated[str, name_param("VM name")]


class Unreadable(BaseModel):
    folder: str
    name: str
    version: int
    blocks: str
    """What it holds up while it stays."""


class Forgotten(BaseModel):
    vm: str
    removed: list[str]


BLOCKS = {
    "decisions": "every admission (its reservation is unknown)",
    "groups": "every admission (its members and minimum are unknown)",
    "drain": "events naming this VM; the VM counts unavailable",
    "acks": "a new approval of this event (it may have been sent)",
    "overrides": "this event (an operator's hold may be in it)",
    "events": "nothing: an agent rewrites it when it sees the event",
    "vm-state": "nothing: the VM is unknown until its agent registers",
    "vms": "nothing: the VM counts as not live",
}


@router.get("/unreadable", response_model=list[Unreadable],
            summary="Records that exist but do not decode, and what each holds up")
def list_unreadable(view: View, _: Viewer) -> list[Unreadable]:
    out = []
    for folder in FOLDERS:
        for name, item in sorted(view.records.get(folder, {}).items()):
            if item.record is None:
                out.append(Unreadable(folder=folder, name=name, version=item.version,
                                      blocks=BLOCKS.get(folder, "")))
    return out


@router.delete("/unreadable/{folder}/{name}", dependencies=[Connected],
               responses={404: {"description": "no such record"},
                          409: {"description": "the record decodes (fix it instead)"}},
               summary="Remove a record that does not decode (operator, audited)")
def delete_unreadable(folder: Folder, name: RecordName, node: NodeDep, writes: Writes,
                      caller: Operator) -> Unreadable:
    path = f"{node.layout.base}/{folder}/{name}"
    kind = FOLDERS[folder]
    seen: dict[str, int] = {}

    def remove(current: Current[BaseModel]) -> None:
        if not current.exists:
            raise not_found(f"{folder}/{name}")
        if current.record is not None:
            raise HTTPException(status.HTTP_409_CONFLICT,
                                f"{folder}/{name} decodes: it is not unreadable; change it "
                                "through its own endpoint instead")
        seen["version"] = current.version
        return None

    writes.apply(caller.name, "record:delete-unreadable", path, kind, remove,
                 event_id=name if folder in ("decisions", "acks", "overrides", "events")
                 else "", detail=f"removed unreadable {folder}/{name}")
    return Unreadable(folder=folder, name=name, version=seen.get("version", -1),
                      blocks=BLOCKS.get(folder, ""))


@router.delete("/vms/{name}", response_model=Forgotten, dependencies=[Connected],
               responses={404: {"description": "quorumgate knows no such VM"},
                          409: {"description": "an agent is registered for this VM"}},
               summary="Forget a VM that is gone for good (operator, audited)")
def forget_vm(name: VMName, view: View, node: NodeDep, caller: Operator) -> Forgotten:
    """Removes its last known state and drain record: the VM becomes unknown, so no event
    waits for it to come back (an event that names it is held as naming an unknown VM)
    and groups that still list it count it unavailable until they are changed."""
    layout = node.layout
    if name in view.registrations:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"{name} is registered (its agent runs): stop the agent first")
    client = node.client
    txn = Txn(client)
    removed = []
    for path, kind in ((layout.vm_state(name), VMState), (layout.drain(name), DrainRecord)):
        current = zk_read(client, path, kind)
        if current.exists:
            txn.delete(path, current.version)
            removed.append(path.removeprefix(layout.base + "/"))
    if not removed:
        raise not_found(f"VM {name}")
    txn.audit(layout, AuditEntry(at=node.clock.now(), actor=caller.name, action="vm:forget",
                                 detail=f"forgot {name}: removed {', '.join(removed)}"))
    try:
        result = txn.commit(ZK_TIMEOUT_S)
    except KazooTimeoutError as exc:
        raise Unavailable(f"ZooKeeper did not answer forgetting {name} within "
                          f"{ZK_TIMEOUT_S:g} s") from exc
    if not result.ok:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"{name}'s records changed concurrently; look again and retry")
    return Forgotten(vm=name, removed=removed)
