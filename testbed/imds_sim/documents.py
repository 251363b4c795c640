"""Rendering: instance metadata and scheduled-events documents, per api-version.

Every field carries the version that introduced it (the api-version tables of Microsoft's
Instance Metadata Service documentation), so an old client gets exactly the document its
version had. All instance primitives are strings, as on Azure.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import uuid
from typing import Any

from imds_sim.cluster import Cluster, VMConfig
from imds_sim.model import Event, Status, rfc1123
from imds_sim.schemas import EventType
from imds_sim.versions import (
    EXTENDED_SINCE,
    SE_DESCRIPTION,
    SE_DURATION,
    SE_EVENT_SOURCE,
    SE_NO_UNDERSCORE,
    SE_PREEMPT,
    SE_TERMINATE,
    at_least,
)

IMAGE = {"publisher": "Canonical", "offer": "0001-com-ubuntu-server-jammy",
         "sku": "22_04-lts-gen2", "version": "22.04.202401010"}  # fmt: skip
ADMIN = "azureuser"


class NotFound(LookupError):
    """A path segment names no element of the document."""


def _ssh_key(name: str) -> str:
    """A well-formed OpenSSH ed25519 public key line, derived from the VM name."""
    blob = b"ssh-ed25519"
    key = hashlib.sha256(name.encode()).digest()
    wire = struct.pack(">I", len(blob)) + blob + struct.pack(">I", len(key)) + key
    return f"ssh-ed25519 {base64.b64encode(wire).decode()} {ADMIN}@{name}"


def _compute(cluster: Cluster, vm: VMConfig, v: str) -> dict[str, Any]:
    sub, rg = cluster.subscription_id, cluster.resource_group
    rg_id = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute"
    c: dict[str, Any] = {
        "location": vm.location,
        "name": vm.name,
        "offer": IMAGE["offer"],
        "osType": vm.os_type,
        "platformFaultDomain": str(vm.fd),
        # "" when the VM has no update domain (IMDS: inapplicable values are "")
        "platformUpdateDomain": "" if vm.ud is None else str(vm.ud),
        "publisher": IMAGE["publisher"],
        "sku": IMAGE["sku"],
        "version": IMAGE["version"],
        "vmId": vm.vm_id,
        "vmSize": vm.vm_size,
    }
    tags = list(vm.tags)
    if at_least(v, "2017-08-01"):
        # placement groups belong to Uniform scale sets; Flexible ones have none
        group = uuid.uuid5(uuid.NAMESPACE_URL, f"{rg_id}/pg/{vm.scale_set}")
        c["placementGroupId"] = str(group) if vm.scale_set and not vm.flexible else ""
        c["resourceGroupName"] = rg
        c["subscriptionId"] = sub
        c["tags"] = ";".join(f"{k}:{val}" for k, val in tags)
    if at_least(v, "2017-12-01"):
        c["vmScaleSetName"] = vm.scale_set
        c["zone"] = vm.zone
    if at_least(v, "2018-04-02"):
        c["plan"] = {"name": "", "product": "", "publisher": ""}
        c["publicKeys"] = [
            {"keyData": _ssh_key(vm.name), "path": f"/home/{ADMIN}/.ssh/authorized_keys"}
        ]
    if at_least(v, "2018-10-01"):
        c["azEnvironment"] = "AzurePublicCloud"
        c["provider"] = "Microsoft.Compute"
    if at_least(v, "2019-02-01"):
        c["customData"] = ""
    if at_least(v, "2019-03-11"):
        c["resourceId"] = f"{rg_id}/virtualMachines/{vm.name}"
    if at_least(v, "2019-06-01"):
        os_disk: dict[str, Any] = {
            "caching": "ReadWrite",
            "createOption": "FromImage",
            "diffDiskSettings": {"option": ""},
            "diskSizeGB": "30",
            "encryptionSettings": {"enabled": "false"},
            "image": {"uri": ""},
            "managedDisk": {"id": f"{rg_id}/disks/{vm.name}_OsDisk",
                            "storageAccountType": "Premium_LRS"},
            "name": f"{vm.name}_OsDisk",
            "osType": vm.os_type,
            "vhd": {"uri": ""},
            "writeAcceleratorEnabled": "false",
        }  # fmt: skip
        c["storageProfile"] = {
            "dataDisks": [],
            "imageReference": {"id": "", **IMAGE},
            "osDisk": os_disk,
        }
        if at_least(v, "2021-02-01"):
            c["storageProfile"]["resourceDisk"] = {"size": "16384"}
        if at_least(v, "2021-11-01"):
            os_disk["encryptionSettings"].update({
                "diskEncryptionKey": {"secretUrl": "", "sourceVault": {"id": ""}},
                "keyEncryptionKey": {"keyUrl": "", "sourceVault": {"id": ""}},
            })
        if at_least(v, "2023-07-01"):
            c["storageProfile"]["imageReference"].update(
                {"communityGalleryImageId": "", "exactVersion": "", "sharedGalleryImageId": ""})
    if at_least(v, "2019-06-04"):
        c["tagsList"] = [{"name": k, "value": val} for k, val in tags]
    if at_least(v, "2020-06-01"):
        c["isHostCompatibilityLayerVm"] = "false"
        c["securityProfile"] = {"secureBootEnabled": "false", "virtualTpmEnabled": "false"}
        if at_least(v, "2021-11-01"):
            c["securityProfile"]["encryptionAtHost"] = "false"
        if at_least(v, "2021-12-13"):
            c["securityProfile"]["securityType"] = ""
    if at_least(v, "2020-07-15"):
        c["osProfile"] = {"adminUsername": ADMIN, "computerName": vm.name}
        if at_least(v, "2020-10-01"):
            c["osProfile"]["disablePasswordAuthentication"] = "true"
    if at_least(v, "2020-09-01"):
        c["licenseType"] = ""
    if at_least(v, "2020-12-01"):
        c["evictionPolicy"] = ""
        c["priority"] = ""
    if at_least(v, "2021-01-01"):
        c["userData"] = vm.user_data_b64
    if at_least(v, "2021-03-01"):
        c["extendedLocation"] = {"type": "", "name": ""}
        # only for Flexible orchestration (the documentation: not for Uniform scale sets)
        ss_id = f"{rg_id}/virtualMachineScaleSets/{vm.scale_set}" if vm.flexible else ""
        c["virtualMachineScaleSet"] = {"id": ss_id}
    if at_least(v, "2021-10-01"):
        c["platformSubFaultDomain"] = vm.sub_fd
    if at_least(v, "2021-11-01"):
        c["additionalCapabilities"] = {"hibernationEnabled": "false"}
    if at_least(v, "2021-11-15"):
        c["host"] = {"id": vm.host}
        c["hostGroup"] = {"id": vm.host_group}
    if at_least(v, "2023-11-15"):
        c["physicalZone"] = physical_zone(vm)
    return c


def physical_zone(vm: VMConfig) -> str:
    """`physicalZone` (2023-11-15): the datacenter zone behind the logical one, named like
    the documentation's `useast-AZ01`. Azure maps logical to physical zones per
    subscription; the emulator's mapping is the identity."""
    return f"{vm.location}-AZ{int(vm.zone):02d}" if vm.zone else ""


def _network(vm: VMConfig) -> dict[str, Any]:
    return {
        "interface": [
            {
                "ipv4": {
                    "ipAddress": [{"privateIpAddress": vm.private_ip, "publicIpAddress": ""}],
                    "subnet": [{"address": vm.subnet_address, "prefix": "24"}],
                },
                "ipv6": {"ipAddress": []},
                "macAddress": vm.mac,
            }
        ]
    }


def instance_document(
    cluster: Cluster, vm: VMConfig, version: str, extended: bool = False
) -> dict[str, Any]:
    """`/metadata/instance` as `version` had it (2017-03-01 is served like 2017-04-02)."""
    doc: dict[str, Any] = {"compute": _compute(cluster, vm, version), "network": _network(vm)}
    if extended and at_least(version, EXTENDED_SINCE):
        doc["extended"] = {"compute": {"hasCustomData": False, "ppsType": "None"}}
    return doc


def walk(doc: Any, segments: list[str]) -> Any:
    """Route filtering: follow keys (case-sensitive) and decimal array indices."""
    node = doc
    for segment in segments:
        if isinstance(node, dict) and segment in node:
            node = node[segment]
        elif isinstance(node, list) and segment.isdigit() and segment.isascii():
            index = int(segment)
            if index >= len(node):
                raise NotFound(segment)
            node = node[index]
        else:
            raise NotFound(segment)
    return node


def is_leaf(node: Any) -> bool:
    return not isinstance(node, dict | list)


def as_text(node: Any) -> str:
    """`format=text`: a leaf is its bare value; a subtree lists its children, one per
    line, with a trailing `/` on those that are not leaves (unspecified on Azure)."""
    if isinstance(node, bool):
        return "true" if node else "false"
    if isinstance(node, dict):
        return "\n".join(k + ("" if is_leaf(val) else "/") for k, val in node.items())
    if isinstance(node, list):
        return "\n".join(str(i) + ("" if is_leaf(val) else "/") for i, val in enumerate(node))
    return str(node)


def sorted_node(node: Any) -> Any:
    """Azure lists object keys alphabetically; do the same for every subtree."""
    if isinstance(node, dict):
        return {k: sorted_node(node[k]) for k in sorted(node)}
    if isinstance(node, list):
        return [sorted_node(item) for item in node]
    return node


# ------------------------------------------------------------------ scheduled events

_TYPE_SINCE = {EventType.PREEMPT: SE_PREEMPT, EventType.TERMINATE: SE_TERMINATE}


def visible_in(event: Event, version: str) -> bool:
    """Events of a type newer than the client's api-version are hidden from it."""
    since = _TYPE_SINCE.get(event.type)
    return since is None or at_least(version, since)


def render_event(event: Event, version: str) -> dict[str, Any]:
    prefix = "" if at_least(version, SE_NO_UNDERSCORE) else "_"
    rendered: dict[str, Any] = {
        "EventId": event.event_id,
        "EventStatus": event.status.value,
        "EventType": event.type.value,
        "ResourceType": "VirtualMachine",
        "Resources": [prefix + name for name in event.resources],
        "NotBefore": rfc1123(event.not_before) if event.status is Status.SCHEDULED else "",
    }
    if at_least(version, SE_DESCRIPTION):
        rendered["Description"] = event.description
    if at_least(version, SE_EVENT_SOURCE):
        rendered["EventSource"] = event.source.value
    if at_least(version, SE_DURATION):
        rendered["DurationInSeconds"] = event.duration_s
    return rendered


def scheduled_events_document(incarnation: int, events: list[Event], version: str) -> dict:
    return {
        "DocumentIncarnation": incarnation,
        "Events": [render_event(e, version) for e in events if visible_in(e, version)],
    }


# ------------------------------------------------------------------ bytes


def dumps(obj: Any) -> bytes:
    """Compact JSON, as the service sends it."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:20] + '"'


def etag_matches(if_none_match: str, current: str) -> bool:
    """True when one of the listed tags (weak or strong, quoted or not) is `current`.

    `*` is deliberately not a match: clients send placeholders like `0`, `null` or
    `*` on their first poll and must get the document.
    """
    wanted = current.strip('"')
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag.strip('"') == wanted and wanted:
            return True
    return False


MALFORMED = {
    "scheduledevents": b'{"DocumentIncarnation":7,"Events":[{"EventId":"',
    "instance": b'{"compute":{"name":"',
    "versions": b'{"apiVersions":["2017-',
}
"""Truncated JSON for the `malformed_json` fault."""

WRONG_SHAPE = {
    "scheduledevents": b'{"DocumentIncarnation":"seven","Events":{"EventId":null}}',
    "instance": b'{"compute":[],"network":"unavailable"}',
    "versions": b'{"apiVersions":"latest"}',
}
"""Valid JSON of the wrong shape for the `wrong_shape` fault."""
