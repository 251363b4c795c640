"""VMs and the FD x UD grid, from this replica's mirror."""

from __future__ import annotations

from fastapi import APIRouter

from coordinator.api.auth import Viewer
from coordinator.api.deps import View
from coordinator.api.derive import Topology, VMRow, per_view, topology, vm_rows
from coordinator.store import ClusterView

router = APIRouter(prefix="/v1", tags=["vms"])


@router.get("/vms", response_model=list[VMRow], summary="Every known VM and its state")
def list_vms(view: View, _: Viewer) -> list[VMRow]:
    """Last known VMs and live registrations, with fault/update domain, the groups each
    belongs to, the reserving event and a display state: `up`, `draining`,
    `drain_failed`, `drained`, `rebooting` (not live while its event has started),
    `restoring` or `lost` (not live otherwise)."""
    return vm_rows(view)


@router.get("/topology", response_model=Topology, summary="The fault x update domain grid")
def get_topology(view: View, _: Viewer) -> Topology:
    return grid(view)


@per_view
def grid(view: ClusterView) -> Topology:
    return topology(vm_rows(view))
