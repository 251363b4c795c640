"""VMs, the FD x UD grid and the maintenance-domain grid, from this replica's mirror."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import TypeAdapter

from coordinator.api.auth import Viewer
from coordinator.api.deps import View
from coordinator.api.derive import Topology, VMRow, per_view, topology_of, vm_rows
from coordinator.store import ClusterView

router = APIRouter(prefix="/v1", tags=["vms"])


@router.get("/vms", response_model=list[VMRow], summary="Every known VM and its state")
def list_vms(view: View, _: Viewer) -> Response:
    """Last known VMs and live registrations, with fault/update domain, zone, how each was
    deployed (`kind`: availability set, zonal, flexible scale set), its maintenance domain
    under the cluster's unit (`maintenance_domain`: "UD 3", "zone 2", "FD 1", or null),
    the groups each belongs to, the reserving event and a display state: `up`,
    `draining`, `drain_failed`, `drained`, `rebooting` (not live while its event has
    started), `restoring` or `lost` (not live otherwise)."""
    return Response(vms_json(view), media_type="application/json")


@router.get("/topology", response_model=Topology,
            summary="The maintenance-domain grid (and the fault x update domain grid)")
def get_topology(view: View, _: Viewer) -> Response:
    """The cluster's resolved maintenance domain (`maintenance_domain`: update_domain,
    zone or fault_domain; null with `maintenance_domain_problem` when the cluster mixes
    deployments and the policy names no unit) and its grid: `columns` are the maintenance
    domains (UDs of an availability set, zones of a zonal cluster, FDs of a Flexible scale
    set), `rows` the fault domains (within the column's zone for a zonal cluster; the
    scale sets when the FDs are the columns), `grid` every cell. `fds`, `uds`, `cells`
    and `unplaced` keep the fault x update domain grid."""
    return Response(topology_json(view), media_type="application/json")


# Serialized once per mirror change: a dashboard wall or an HDFS topology script on every
# DataNode asks far more often than the cluster changes.
@per_view
def vms_json(view: ClusterView) -> bytes:
    return _ROWS.dump_json(vm_rows(view))


@per_view
def topology_json(view: ClusterView) -> bytes:
    return topology_of(view).model_dump_json().encode()


_ROWS: TypeAdapter[list[VMRow]] = TypeAdapter(list[VMRow])
