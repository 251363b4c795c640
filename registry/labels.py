"""Kubernetes-style node labels for a VM's place in the cluster. Pure; standard library only.

    topology.kubernetes.io/region   <location>              e.g. westeurope
    topology.kubernetes.io/zone     <location>-<zone>       VM in an availability zone
                                                            (AKS's form, e.g. westeurope-2)
                                    <location>-fd<N>        otherwise: the fault domain
                                                            stands in for the zone
    quorumgate.io/fault-domain      <N>
    quorumgate.io/update-domain     <M>

Without a zone, the fault domain is the best failure boundary a VM has, so
`topologySpreadConstraints` and anti-affinity on `topology.kubernetes.io/zone` spread
replicas over racks; prefixing the location keeps the value unique across regions.
Update domains get their own label: spread over them to survive planned maintenance.

`ZONE_SOURCE` (`quorumgate.io/zone-source`: `zone` or `fault-domain`) says which one
the zone label holds. The agent may store the same labels in its `VMState.labels`.
"""

from __future__ import annotations

import re

REGION = "topology.kubernetes.io/region"
ZONE = "topology.kubernetes.io/zone"
FAULT_DOMAIN = "quorumgate.io/fault-domain"
UPDATE_DOMAIN = "quorumgate.io/update-domain"
ZONE_SOURCE = "quorumgate.io/zone-source"

_INVALID = re.compile(r"[^A-Za-z0-9._-]+")


def label_value(text: str) -> str:
    """A valid label value: at most 63 of [A-Za-z0-9._-], alphanumeric at both ends."""
    value = _INVALID.sub("-", str(text))[:63]
    return value.strip("._-")


def zone_value(location: str, zone: str, fd: int | None) -> tuple[str, str]:
    """(value of the zone label, where it came from: "zone" or "fault-domain");
    ("", "") when neither a zone nor a fault domain is known."""
    location, zone = location.strip(), zone.strip()
    if zone:
        zonal = zone if not location or zone.startswith(f"{location}-") else f"{location}-{zone}"
        return label_value(zonal), "zone"
    if fd is None:
        return "", ""
    return label_value(f"{location}-fd{fd}" if location else f"fd{fd}"), "fault-domain"


def node_labels(fd: int | None, ud: int | None, location: str = "",
                zone: str = "") -> dict[str, str]:
    """The labels for a VM in fault domain `fd`, update domain `ud`; unknown parts are
    left out rather than guessed."""
    labels: dict[str, str] = {}
    if location.strip():
        labels[REGION] = label_value(location.strip())
    value, source = zone_value(location, zone, fd)
    if value:
        labels[ZONE] = value
        labels[ZONE_SOURCE] = source
    if fd is not None:
        labels[FAULT_DOMAIN] = str(fd)
    if ud is not None:
        labels[UPDATE_DOMAIN] = str(ud)
    return labels
