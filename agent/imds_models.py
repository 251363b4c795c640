"""IMDS documents as pydantic models.

IMDS sends every primitive of the instance document as a string and NotBefore in two
date formats depending on the API generation; the models absorb those quirks so the
rest of the agent sees typed values (ints, epoch floats, None for "").
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


def parse_not_before(value: Any) -> float | None:
    """RFC 1123 (`Mon, 19 Sep 2016 18:29:47 GMT`) or ISO (`2016-09-19T18:29:47Z`) → epoch.

    `""` (IMDS's "no NotBefore", e.g. once Started) and None give None.
    """
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"NotBefore must be a string, got {type(value).__name__}")
    text = value.strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"unparseable NotBefore {value!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class _Doc(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class ScheduledEvent(_Doc):
    """One entry of `Events`. Type and status stay strings: a future type must not make
    the whole document unreadable; the relay decides what it can publish."""

    event_id: str = Field(alias="EventId", min_length=1)
    event_type: str = Field(alias="EventType")
    event_status: str = Field(alias="EventStatus")
    resource_type: str = Field(default="VirtualMachine", alias="ResourceType")
    resources: list[str] = Field(default_factory=list, alias="Resources")
    not_before: float | None = Field(default=None, alias="NotBefore")
    description: str = Field(default="", alias="Description")
    event_source: str = Field(default="Platform", alias="EventSource")
    duration_s: int = Field(default=-1, alias="DurationInSeconds")

    @field_validator("not_before", mode="before")
    @classmethod
    def _not_before(cls, value: Any) -> float | None:
        return parse_not_before(value)

    @field_validator("resources", mode="before")
    @classmethod
    def _resources(cls, value: Any) -> Any:
        # The 2017-03-01 preview prefixed IaaS resource names with "_"; Azure VM names
        # cannot start with "_", so stripping it is safe and matches compute.name.
        if isinstance(value, list):
            return [v[1:] if isinstance(v, str) and v.startswith("_") else v for v in value]
        return value

    @field_validator("event_source", "description", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return "" if value is None else value


class ScheduledEventsDocument(_Doc):
    incarnation: int = Field(alias="DocumentIncarnation", ge=0)
    events: list[ScheduledEvent] = Field(default_factory=list, alias="Events")

    def event(self, event_id: str) -> ScheduledEvent | None:
        return next((e for e in self.events if e.event_id == event_id), None)


class InstanceMetadata(_Doc):
    """The few compute/network facts the agent registers."""

    name: str = Field(min_length=1)
    vm_id: str = ""
    fd: int | None = Field(default=None, ge=0)
    """None when IMDS does not say (never read as fault domain 0)."""
    ud: int | None = Field(default=None, ge=0)
    """None when IMDS does not say: zonal VMs outside an availability set and Flexible
    scale sets have no update domain; reading it as 0 would merge them into UD 0."""
    zone: str = ""
    location: str = ""
    scale_set: str = ""
    flexible: bool = False
    """`virtualMachineScaleSet.id` is set: Flexible orchestration (api-version 2021-03-01+)."""
    placement_group: str = ""
    address: str = ""

    @classmethod
    def from_document(cls, doc: Any) -> InstanceMetadata:
        """Pick fields out of `{"compute": {...}, "network": {"interface": [...]}}`."""
        if not isinstance(doc, dict) or not isinstance(doc.get("compute"), dict):
            raise ValueError("instance document has no compute section")
        compute = doc["compute"]
        return cls.model_validate({
            "name": compute.get("name"),
            "vm_id": compute.get("vmId") or "",
            "fd": _int(compute.get("platformFaultDomain")),
            "ud": _int(compute.get("platformUpdateDomain")),
            "zone": compute.get("zone") or "",
            "location": compute.get("location") or "",
            "scale_set": compute.get("vmScaleSetName") or "",
            "flexible": bool(_flexible_id(compute.get("virtualMachineScaleSet"))),
            "placement_group": compute.get("placementGroupId") or "",
            "address": _private_ip(doc.get("network")),
        })


def _flexible_id(value: Any) -> str:
    return str(value.get("id") or "") if isinstance(value, dict) else ""


def _int(value: Any) -> Any:
    return None if value in (None, "") else value


def _private_ip(network: Any) -> str:
    try:
        address = network["interface"][0]["ipv4"]["ipAddress"][0]["privateIpAddress"]
    except (KeyError, IndexError, TypeError):
        return ""
    return address if isinstance(address, str) else ""
