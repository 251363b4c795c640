"""The maintenance domain: the unit the platform takes down together, from what IMDS says.

Azure walks its planned maintenance one unit at a time, and the unit depends on how the
VMs were deployed:

- an **availability set**: the update domain (`platformUpdateDomain`);
- **zonal VMs** (IMDS `zone` set; outside an availability set they have no meaningful
  update domain): the zone — updates roll out zone by zone within a region;
- a **Flexible scale set** that is regional (no zone): the fault domain — Flexible
  orchestration has no update domains, and IMDS reports none.

`auto` picks the unit from the VMs themselves; an operator can name it per cluster
(policy `maintenance_domain`). A cluster that mixes zonal and non-zonal VMs, or
availability-set VMs (with update domains) and Flexible scale-set VMs (without), has no
single unit the platform respects: quorumgate refuses to guess and holds every admission
with the reason until the operator names one. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple


class DomainMode(StrEnum):
    AUTO = "auto"
    UPDATE_DOMAIN = "update_domain"
    ZONE = "zone"
    FAULT_DOMAIN = "fault_domain"


LABELS = {DomainMode.UPDATE_DOMAIN: "UD", DomainMode.ZONE: "zone",
          DomainMode.FAULT_DOMAIN: "FD"}
NAMES = {DomainMode.UPDATE_DOMAIN: "update domain", DomainMode.ZONE: "zone",
         DomainMode.FAULT_DOMAIN: "fault domain"}


class Domain(NamedTuple):
    """One maintenance domain: comparable, hashable, printed as `UD 3`, `zone 2`, `FD 1`."""

    kind: str
    value: int | str

    def __str__(self) -> str:
        return f"{self.kind} {self.value}"


@dataclass(frozen=True)
class Where:
    """The placement facts a VM's agent registered."""

    fd: int | None
    ud: int | None
    zone: str = ""
    scale_set: str = ""
    flexible: bool = False
    """IMDS gave `virtualMachineScaleSet.id` (Flexible orchestration only): the reliable
    marker, since what IMDS shows as a Flexible VM's update domain is not documented."""


def kind_of(where: Where) -> str:
    """How the VM was deployed, as far as IMDS tells: for rows and messages."""
    if where.zone:
        return "zonal"
    if where.flexible or (where.ud is None and where.scale_set):
        return "flexible scale set"
    return "availability set"


def resolve(mode: DomainMode, vms: Iterable[tuple[str, Where]]) -> tuple[DomainMode | None, str]:
    """The concrete unit for a cluster, or (None, why) when `auto` cannot pick one."""
    if mode is not DomainMode.AUTO:
        return mode, ""
    kinds: dict[str, list[str]] = {}
    for name, where in vms:
        kinds.setdefault(kind_of(where), []).append(name)
    if len(kinds) > 1:
        parts = "; ".join(f"{kind}: {', '.join(sorted(names)[:3])}"
                          f"{' ...' if len(names) > 3 else ''}"
                          for kind, names in sorted(kinds.items()))
        return None, (f"the cluster mixes deployments ({parts}) with no common maintenance "
                      "unit: set policy maintenance_domain to zone, fault_domain or "
                      "update_domain")
    kind = next(iter(kinds), "availability set")
    return {"zonal": DomainMode.ZONE, "flexible scale set": DomainMode.FAULT_DOMAIN}.get(
        kind, DomainMode.UPDATE_DOMAIN), ""


def domain_of(mode: DomainMode, where: Where) -> Domain | None:
    """The VM's domain under a concrete `mode`; None when IMDS did not say."""
    if mode is DomainMode.ZONE:
        return Domain("zone", where.zone) if where.zone else None
    if mode is DomainMode.FAULT_DOMAIN:
        return Domain("FD", where.fd) if where.fd is not None else None
    return Domain("UD", where.ud) if where.ud is not None else None


_NOT_IN_A_RACK = re.compile(r"[^a-z0-9_.-]+")


def rack_name(domain: str) -> str:
    """A maintenance domain as a Cassandra rack or Kafka broker.rack: `UD 3` -> `ud3`,
    `zone 2` -> `zone2`, `FD 1` -> `fd1`."""
    return _NOT_IN_A_RACK.sub("-", domain.lower().replace(" ", "")).strip("-")
