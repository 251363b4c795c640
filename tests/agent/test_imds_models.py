"""IMDS documents: date formats, string primitives, the 2017 preview's quirks."""

from __future__ import annotations

import pytest

from agent.imds_models import InstanceMetadata, ScheduledEventsDocument, parse_not_before

EPOCH = 1474309787.0  # 2016-09-19T18:29:47Z


@pytest.mark.parametrize("text", ["Mon, 19 Sep 2016 18:29:47 GMT", "2016-09-19T18:29:47Z",
                                  "2016-09-19T18:29:47+00:00"])
def test_not_before_formats(text: str) -> None:
    assert parse_not_before(text) == EPOCH


def test_not_before_empty_and_bad() -> None:
    assert parse_not_before("") is None
    assert parse_not_before(None) is None
    with pytest.raises(ValueError):
        parse_not_before("next tuesday")


def test_events_document() -> None:
    doc = ScheduledEventsDocument.model_validate({
        "DocumentIncarnation": "3",
        "Events": [{"EventId": "E1", "EventStatus": "Started", "EventType": "Reboot",
                    "ResourceType": "VirtualMachine", "Resources": ["_vm-0", "vm-1"],
                    "NotBefore": ""}]})
    assert doc.incarnation == 3
    ev = doc.event("E1")
    assert ev is not None and ev.not_before is None
    assert ev.resources == ["vm-0", "vm-1"]  # 2017-03-01 underscore prefix dropped
    assert ev.duration_s == -1 and ev.event_source == "Platform"


def test_instance_document_strings() -> None:
    meta = InstanceMetadata.from_document({
        "compute": {"name": "vm-3", "vmId": "abc", "platformFaultDomain": "2",
                    "platformUpdateDomain": "4", "location": "westeurope"},
        "network": {"interface": [{"ipv4": {"ipAddress": [{"privateIpAddress": "10.0.0.7",
                                                            "publicIpAddress": ""}]}}]}})
    assert (meta.name, meta.fd, meta.ud, meta.address) == ("vm-3", 2, 4, "10.0.0.7")
    assert meta.zone == "" and meta.scale_set == ""
    with pytest.raises(ValueError):
        InstanceMetadata.from_document({"network": {}})


@pytest.mark.parametrize("compute,flexible,ud", [
    ({"vmScaleSetName": "ss", "virtualMachineScaleSet": {"id": "/subs/x/ss"},
      "platformUpdateDomain": "0"}, True, 0),
    ({"vmScaleSetName": "ss", "virtualMachineScaleSet": {"id": ""},
      "platformUpdateDomain": "3"}, False, 3),  # Uniform: the id is empty
    ({"vmScaleSetName": "ss", "platformUpdateDomain": ""}, False, None),  # before 2021-03-01
])
def test_flexible_scale_set_marker(compute: dict, flexible: bool, ud: int | None) -> None:
    """`virtualMachineScaleSet.id` (Flexible orchestration only) marks a Flexible VM,
    whatever IMDS shows as its update domain."""
    meta = InstanceMetadata.from_document({"compute": {
        "name": "vm-1", "platformFaultDomain": "1", **compute}})
    assert (meta.flexible, meta.ud, meta.scale_set) == (flexible, ud, "ss")
