"""Request and response bodies of the control API (`/control/...`).

Requests forbid unknown keys: a typo in a test's cluster or event description must
fail loudly (422) instead of silently falling back to a default.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

GUID_PATTERN = r"^[0-9A-Fa-f]{8}(-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}$"
VM_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
VMName = Annotated[str, Field(pattern=VM_NAME_PATTERN)]
"""Azure-like VM name, safe in a URL path and as a ZooKeeper node name."""

DEFAULT_SUBSCRIPTION = "8d10da13-8125-4ba9-a717-bf7490507b3d"


class EventType(StrEnum):
    FREEZE = "Freeze"
    REBOOT = "Reboot"
    REDEPLOY = "Redeploy"
    PREEMPT = "Preempt"
    TERMINATE = "Terminate"


class EventSource(StrEnum):
    PLATFORM = "Platform"
    USER = "User"


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------ cluster


Orchestration = Literal["flexible", "uniform"]
Topology = Literal["availability-set", "zonal", "flex", "flex-zonal"]


class VMSpec(Request):
    """One simulated VM. Everything but the name has a plausible default."""

    name: VMName
    fd: int = Field(0, ge=0, le=31)
    ud: int | None = Field(0, ge=0, le=31, description="None: IMDS reports no update domain")
    availability_set: str = ""
    scale_set: str = ""
    orchestration: Orchestration = Field(
        "flexible", description="with scale_set: Flexible (virtualMachineScaleSet.id set, no "
                                "placement group) or Uniform (placementGroupId set)")
    zone: str = Field("", pattern=r"^[0-9]{0,2}$", description="logical zone, e.g. \"1\"")
    sub_fd: str = Field("", pattern=r"^[0-9]{0,3}$", description="platformSubFaultDomain")
    host: str = Field("", description="dedicated host resource id (host.id)")
    host_group: str = Field("", description="dedicated host group resource id (hostGroup.id)")
    location: str = "westeurope"
    vm_size: str = "Standard_D2s_v3"
    os_type: Literal["Linux", "Windows"] = "Linux"
    tags: dict[str, str] = {}
    private_ip: str | None = Field(None, pattern=r"^10\.\d{1,3}\.\d{1,3}\.\d{1,3}$")
    mac: str | None = Field(None, pattern=r"^[0-9A-F]{12}$")
    vm_id: str | None = None
    user_data: str = Field("", description="plain text; IMDS serves it base64-encoded")

    @model_validator(mode="after")
    def _one_scope(self) -> VMSpec:
        if self.availability_set and self.scale_set:
            raise ValueError("a VM is in an availability set or a scale set, not both")
        if self.host and self.host_group:
            raise ValueError("a VM has a host or a hostGroup, not both")
        return self


class ClusterSpec(Request):
    """A cluster: an explicit `vms` list, or a generator when `vms` is a count.

    Generator: VM i is named `prefix + i`; where it sits depends on `topology`:

    - `availability-set` (default): fault domain `i % fds`, update domain `i % uds`
      (Azure's round-robin placement), all in one availability set (or scale set);
    - `zonal`: zonal VMs outside any set, VM i in zone `i % zones + 1`, reporting
      fault domain 0 and update domain 0 (what IMDS shows for zonal VMs, see README);
    - `flex`: a regional Flexible scale set (`scale_set`, default `vmss-flex`) with fixed
      spreading over `fds` fault domains, VM i in fault domain `i % fds`, no update domain;
    - `flex-zonal`: a zone-spanning Flexible scale set, VM i in zone `i % zones + 1`,
      fault domain 0 (max spreading), no update domain.
    """

    vms: list[VMSpec] | int = 15
    topology: Topology = "availability-set"
    fds: int = Field(3, ge=1, le=32)
    uds: int = Field(5, ge=1, le=32)
    zones: int = Field(3, ge=1, le=3, description="zonal and flex-zonal: zones 1..zones")
    prefix: str = Field("vm-", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,40}$")
    availability_set: str = "as-1"
    scale_set: str = ""
    orchestration: Orchestration = "flexible"
    zone: str = Field("", pattern=r"^[0-9]{0,2}$")
    location: str = "westeurope"
    vm_size: str = "Standard_D2s_v3"
    default_vm: str | None = Field(None, description="VM served at bare /metadata; default first")
    subscription_id: str = DEFAULT_SUBSCRIPTION
    resource_group: str = "quorumgate-rg"
    rate_limit_per_s: int = Field(5, ge=0, description="requests per real second per VM; 0: off")
    strict_incarnation: bool = Field(
        False, description="POST with a DocumentIncarnation other than the current one -> 400"
    )
    terminate_notice_s: float = Field(
        300.0, ge=300.0, le=900.0,
        description="the scale set's terminateNotificationProfile.notBeforeTimeout (5-15 "
                    "min): a Terminate event's notice when its request gives none")

    @field_validator("vms")
    @classmethod
    def _vm_count(cls, value: list[VMSpec] | int) -> list[VMSpec] | int:
        count = value if isinstance(value, int) else len(value)
        if not 1 <= count <= 5000:
            raise ValueError("a cluster has between 1 and 5000 VMs")
        if isinstance(value, list):
            names = [vm.name for vm in value]
            if len(set(names)) != len(names):
                raise ValueError("VM names must be unique")
        return value

    @model_validator(mode="after")
    def _check(self) -> ClusterSpec:
        if (isinstance(self.vms, int) and self.topology == "availability-set"
                and self.availability_set and self.scale_set):
            raise ValueError("give availability_set or scale_set, not both")
        return self


class Settings(BaseModel):
    """Knobs that can change without replacing the cluster."""

    model_config = ConfigDict(extra="forbid")

    default_vm: str | None = None
    rate_limit_per_s: int | None = Field(None, ge=0)
    strict_incarnation: bool | None = None


class Transition(BaseModel):
    state: Literal["up", "down"]
    at: float
    event_id: str | None = None


class VMView(BaseModel):
    name: str
    base_path: str
    fd: int
    ud: int | None
    availability_set: str
    scale_set: str
    orchestration: str = ""
    zone: str
    location: str
    vm_size: str
    vm_id: str
    private_ip: str
    mac: str
    state: Literal["up", "down"]
    down_since: float | None
    down_by: list[str]
    incarnation: int
    history: list[Transition]
    deleted: bool = False


class ClusterView(BaseModel):
    default_vm: str
    subscription_id: str
    resource_group: str
    rate_limit_per_s: int
    strict_incarnation: bool
    vms: list[VMView]
    terminate_notice_s: float = 300.0


# ------------------------------------------------------------------ events

MIN_NOTICE_S: dict[EventType, float] = {
    EventType.FREEZE: 15 * 60,
    EventType.REBOOT: 15 * 60,
    EventType.REDEPLOY: 10 * 60,
    EventType.PREEMPT: 30,
    EventType.TERMINATE: 5 * 60,
}
"""Azure's minimum notice per type: the default when a request gives none (Terminate:
the cluster's `terminate_notice_s`, 5 min unless configured)."""

DEFAULT_IMPACT_DELAY_S = 2.0
"""Virtual seconds between Started and the VMs going down when a request gives none: on
Azure the Started document is served before the impact (the documentation's timeline),
so an affected VM can see its own event Started. 0 takes the VMs down at the start."""

DEFAULT_DURATION_S: dict[EventType, int] = {
    EventType.FREEZE: 5,
    EventType.REBOOT: -1,
    EventType.REDEPLOY: -1,
    EventType.PREEMPT: -1,
    EventType.TERMINATE: -1,
}
"""DurationInSeconds shown when a request gives none (-1: unknown)."""

DEFAULT_DOWNTIME_S: dict[EventType, float] = {
    EventType.FREEZE: 5,
    EventType.REBOOT: 60,
    EventType.REDEPLOY: 120,
    EventType.PREEMPT: 60,
    EventType.TERMINATE: 60,
}
"""How long the VMs stay down when DurationInSeconds is -1 and no downtime_s is given."""


def _finite(value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


class EventRequest(Request):
    """Schedule maintenance for one update domain (`ud`), zone (`zone`), fault domain
    (`fd`) or a list of VMs (`vms`)."""

    type: EventType = EventType.REBOOT
    ud: int | None = Field(None, ge=0)
    zone: str | None = Field(None, pattern=r"^[0-9]{1,2}$")
    fd: int | None = Field(None, ge=0)
    vms: list[VMName] | None = None
    availability_set: str | None = Field(None, description="with ud/zone/fd: only this set's")
    scale_set: str | None = Field(None, description="with ud/zone/fd: only this scale set's")
    source: EventSource = EventSource.PLATFORM
    description: str = ""
    duration_s: int | None = Field(None, ge=-1, description="DurationInSeconds; -1 unknown")
    downtime_s: float | None = Field(None, ge=0, le=86400, description="virtual s VMs are down")
    notice_s: float | None = Field(None, ge=0, le=30 * 86400)
    not_before: float | None = Field(None, description="virtual epoch seconds; wins over notice_s")
    impact_delay_s: float = Field(DEFAULT_IMPACT_DELAY_S, ge=0, le=3600,
                                  description="virtual s from Started to the VMs going down")
    started: bool = Field(False, description="skip Scheduled, like a hardware failure")
    allow_multi_ud: bool = Field(
        False, description="Resources may span several maintenance domains (update domains, "
                           "zones or fault domains): Azure's documented rule, broken at times")
    event_id: str | None = Field(None, pattern=GUID_PATTERN)
    delete_vms: bool | None = Field(
        None, description="the VMs are deleted at impact and never come back "
                          "(default: true for Terminate, false otherwise)")

    check_finite = field_validator("not_before", "notice_s", "downtime_s")(_finite)

    @model_validator(mode="after")
    def _target(self) -> EventRequest:
        given = [k for k in ("ud", "zone", "fd", "vms") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of `ud`, `zone`, `fd` or `vms`")
        if self.vms is not None and not self.vms:
            raise ValueError("`vms` must not be empty")
        if self.vms is not None and (self.availability_set or self.scale_set):
            raise ValueError("availability_set/scale_set filter only applies with ud/zone/fd")
        return self


class EventChange(Request):
    """The platform changes a Scheduled event's Resources."""

    vms: list[VMName] = Field(min_length=1)
    allow_multi_ud: bool = False


class ImpactRequest(Request):
    """A further impact of a Started event: its VMs go down again."""

    downtime_s: float = Field(ge=0, le=86400, description="virtual s the VMs stay down")
    delay_s: float = Field(0.0, ge=0, le=3600, description="from now until they go down")

    check_finite = field_validator("downtime_s", "delay_s")(_finite)


class ImpactView(BaseModel):
    due: float
    downtime_s: float
    down_at: float | None
    up_at: float | None


class ResourcesChange(BaseModel):
    at: float
    resources: list[str]


class AckView(BaseModel):
    vm: str
    at: float
    incarnation: int | str | None
    api_version: str
    effective: bool = Field(description="this acknowledgement started the event")


class EventView(BaseModel):
    event_id: str
    type: EventType
    status: Literal["Scheduled", "Started", "Completed", "Cancelled"]
    resources: list[str]
    uds: list[int]
    zones: list[str] = []
    fds: list[int] = []
    walk_id: str | None = Field(None, description="the maintenance walk that scheduled it")
    scope: list[str]
    source: EventSource
    description: str
    duration_s: int
    downtime_s: float
    impact_delay_s: float
    created_at: float
    not_before: float
    not_before_text: str
    started_at: float | None
    start_cause: Literal["ack", "not_before", "immediate"] | None
    down_at: float | None
    ended_at: float | None
    acks: list[AckView]
    delete_vms: bool = False
    impacts: list[ImpactView] = []
    resources_history: list[ResourcesChange] = []


# ------------------------------------------------------------------ walks

WalkUnit = Literal["auto", "update_domain", "zone", "fault_domain"]


class WalkRequest(Request):
    """The platform rolls one update out domain by domain (`POST /control/walks`).

    `unit` `auto` walks what the VMs are: zone by zone when every VM is zonal, fault
    domain by fault domain in a Flexible scale set, update domain by update domain
    otherwise (a cluster that mixes them is refused: name the unit). Each step schedules
    the domain's event (`split` `domain`) or one event per VM of the domain (`vm`: what
    standalone zonal VMs get, each in its own scope); the next step is scheduled `gap_s`
    after the last event of the step left IMDS. `together` schedules every step at once.
    """

    unit: WalkUnit = "auto"
    order: list[str] | None = Field(
        None, description="domains in walk order, e.g. [\"2\", \"1\", \"3\"] (default: "
                          "ascending; Azure does not promise an order)")
    split: Literal["domain", "vm"] = "domain"
    together: bool = False
    gap_s: float = Field(0.0, ge=0, le=86400, description="virtual s between steps")
    type: EventType = EventType.REBOOT
    source: EventSource = EventSource.PLATFORM
    description: str = Field("", description="default: planned maintenance, <domain>")
    duration_s: int | None = Field(None, ge=-1)
    downtime_s: float | None = Field(None, ge=0, le=86400)
    notice_s: float | None = Field(None, ge=0, le=30 * 86400)
    impact_delay_s: float = Field(DEFAULT_IMPACT_DELAY_S, ge=0, le=3600)
    delete_vms: bool | None = None

    check_finite = field_validator("notice_s", "downtime_s", "gap_s")(_finite)


class WalkStepView(BaseModel):
    domain: str = Field(description="e.g. `UD 3`, `zone 1`, `FD 0`")
    value: str
    vms: list[str]
    event_ids: list[str]
    scheduled_at: float | None
    ended_at: float | None


class WalkView(BaseModel):
    walk_id: str
    unit: str
    status: Literal["running", "done", "stopped"]
    created_at: float
    ended_at: float | None
    split: str
    together: bool
    steps: list[WalkStepView]
    error: str = ""


# ------------------------------------------------------------------ faults


class FaultKind(StrEnum):
    LATENCY = "latency"
    STATUS = "status"
    DROP = "drop"
    MALFORMED_JSON = "malformed_json"
    WRONG_SHAPE = "wrong_shape"
    SLOW_FIRST_CALL = "slow_first_call"


class FaultRequest(Request):
    """A misbehaviour for one VM (`vm`), some (`vms`) or every VM (neither).

    It applies to requests that would otherwise succeed, for `count` requests or
    `duration_s` virtual seconds (or until cleared when neither is given).
    """

    kind: FaultKind
    vm: VMName | None = None
    vms: list[VMName] | None = None
    endpoint: Literal["any", "instance", "scheduledevents", "versions"] = "any"
    method: Literal["any", "GET", "POST"] = "any"
    count: int | None = Field(None, ge=1)
    duration_s: float | None = Field(None, gt=0, le=30 * 86400)
    status: int = Field(500, ge=400, le=599, description="kind=status")
    latency_s: float = Field(1.0, ge=0, le=300, description="kind=latency")
    delay_s: float = Field(120.0, ge=0, le=120, description="kind=slow_first_call")
    real: bool = Field(False, description="latency_s/delay_s in real instead of virtual seconds")

    check_finite = field_validator("duration_s", "latency_s", "delay_s")(_finite)


class FaultView(BaseModel):
    fault_id: int
    kind: FaultKind
    vms: list[str] | None
    endpoint: str
    method: str
    status: int
    latency_s: float
    delay_s: float
    real: bool
    remaining: int | None
    expires_at: float | None
    hits: int
    pending_vms: list[str] | None = Field(None, description="slow_first_call: not yet served")


class ClockView(BaseModel):
    spec: str
    now: float
