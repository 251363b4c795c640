"""The JSON records that agents and coordinators exchange through ZooKeeper.

Defined once, imported by both sides. Every record tolerates unknown keys (a newer
writer must not crash an older reader) and rejects wrong types (a malformed record is
logged and skipped by `registry.codec.decode`, never trusted).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from registry.domains import DomainMode

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"
Name = Annotated[str, Field(pattern=_NAME_PATTERN)]
"""A VM, group or event name: safe as one ZooKeeper path component."""


class Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# ---------------------------------------------------------------- VMs


class VMPlacement(Record):
    """Where a VM is, as IMDS told its agent: shared by the live and the persistent record."""

    name: Name
    vm_id: str = ""
    fd: int | None = Field(default=None, ge=0)
    """None when IMDS did not report `platformFaultDomain` (never read as 0)."""
    ud: int | None = Field(default=None, ge=0)
    """None when IMDS did not report `platformUpdateDomain` (never read as 0)."""
    zone: str = ""
    location: str = ""
    address: str = ""
    scale_set: str = ""
    flexible: bool = False
    """A Flexible scale-set VM (IMDS `virtualMachineScaleSet.id`): no update domains."""
    placement_group: str = ""


class VMRegistration(VMPlacement):
    """Ephemeral `vms/<name>`: the VM's agent is alive."""

    groups: list[Name] = []
    agent_url: str = ""
    registered_at: float = 0.0


class VMState(VMPlacement):
    """Persistent `vm-state/<name>`: last known topology, outlives the agent's session."""

    labels: dict[str, str] = {}
    last_registered_at: float = 0.0


# ---------------------------------------------------------------- groups

MinAvailable = Annotated[int, Field(ge=0)] | Literal["majority"]


class Group(Record):
    """Persistent `groups/<name>`: replicas that must keep `min_available` of them up."""

    name: Name
    members: list[Name]
    min_available: MinAvailable = "majority"
    source: str = "api"
    health_gate: str = ""
    """An http(s) URL that must answer 2xx, or a shell command that must exit 0."""
    member_seen: dict[str, float] = {}
    """Provider groups: when the system last listed each member. A member that vanished
    stays in the group (unavailable, never gone) until an operator removes it or the
    provider's `forget_after_s` passes."""

    @field_validator("min_available")
    @classmethod
    def _non_negative(cls, value: MinAvailable) -> MinAvailable:
        if isinstance(value, int) and value < 0:
            raise ValueError("min_available must be >= 0 or 'majority'")
        return value

    def required(self) -> int:
        """How many members must stay available."""
        if self.min_available == "majority":
            return len(set(self.members)) // 2 + 1
        return self.min_available


# ---------------------------------------------------------------- platform events


class EventType(StrEnum):
    FREEZE = "Freeze"
    REBOOT = "Reboot"
    REDEPLOY = "Redeploy"
    PREEMPT = "Preempt"
    TERMINATE = "Terminate"


class PlatformStatus(StrEnum):
    SCHEDULED = "Scheduled"
    STARTED = "Started"
    GONE = "Gone"
    """Left the IMDS document: finished if it had started, cancelled otherwise."""


class PlatformEvent(Record):
    """Persistent `events/<id>`: the platform's view, merged from every agent that saw it."""

    event_id: Name
    event_type: EventType
    status: PlatformStatus
    resources: list[str]
    not_before: float | None = None
    """Epoch seconds; None once Started (IMDS then sends an empty NotBefore)."""
    description: str = ""
    source: str = "Platform"
    duration_s: int = -1
    incarnation: int = 0
    seen_by: list[Name] = []
    first_seen: float = 0.0
    last_seen: float = 0.0
    started_at: float | None = None
    gone_at: float | None = None
    """When an agent first found the event missing from a newer document of its own."""
    gone_by: list[Name] = []
    """The VMs whose own documents no longer list the event (Gone is confirmed by them)."""
    incarnations: dict[str, int] = {}
    """Per reporting VM, the DocumentIncarnation of its last merged document: each VM's
    counter is its own, so a report is stale only against the same VM's earlier one."""
    observed_at: float = 0.0
    """When the document whose details (Resources, NotBefore...) this record holds was
    fetched: across VMs, the newest observation wins."""


# ---------------------------------------------------------------- decisions


class DecisionState(StrEnum):
    NEW = "new"
    DRAINING = "draining"
    READY = "ready"
    APPROVED = "approved"
    ACKNOWLEDGED = "acknowledged"
    STARTED = "started"
    COMPLETED = "completed"
    RESTORED = "restored"
    HELD = "held"
    FORCED = "forced"
    CANCELLED = "cancelled"
    FAILED = "failed"


TERMINAL_STATES = frozenset({DecisionState.RESTORED, DecisionState.CANCELLED})


class DecisionCode(StrEnum):
    """Why a decision is where it is, as a stable code: everything that branches,
    alerts or filters reads the code, never the sentence in `reason`."""

    SEEN = "seen"
    WAITING_FOR_UD = "waiting_for_ud"
    """Routine: another maintenance domain's event holds the budget."""
    RESERVED_ELSEWHERE = "reserved_elsewhere"
    """Routine: a VM of the event is reserved by another in-flight event."""
    UNSAFE_GROUP = "unsafe_group"
    UNSAFE_CAP = "unsafe_cap"
    UNSAFE_SPAN = "unsafe_span"
    """The event alone spans more maintenance domains than the policy allows at once."""
    UNKNOWN_VM = "unknown_vm"
    UNKNOWN_DOMAIN = "unknown_domain"
    MIXED_TOPOLOGY = "mixed_topology"
    UNREADABLE_RECORD = "unreadable_record"
    OPERATOR_HOLD = "operator_hold"
    PAUSED = "paused"
    BEST_EFFORT = "best_effort"
    DRAINING = "draining"
    DRAIN_FAILED = "drain_failed"
    DRAIN_TIMEOUT = "drain_timeout"
    RETRY_BACKOFF = "retry_backoff"
    DRAINED = "drained"
    GATE_PENDING = "gate_pending"
    GATE_FAILING = "gate_failing"
    RESOURCES_CHANGED = "resources_changed"
    APPROVED = "approved"
    NO_ACKER = "no_acker"
    APPROVAL_REVOKED = "approval_revoked"
    ACK_REJECTED = "ack_rejected"
    ACK_TIMEOUT = "ack_timeout"
    ACKER_LOST = "acker_lost"
    APPROVALS_EXHAUSTED = "approvals_exhausted"
    ACKNOWLEDGED = "acknowledged"
    STARTED = "started"
    FORCED = "forced"
    COMPLETED = "completed"
    WAITING_RESTORE = "waiting_restore"
    STUCK = "stuck"
    NOT_RETURNED = "not_returned"
    """A VM of an undelayable event (Terminate/Preempt) never came back: deleted."""
    RESTORED = "restored"
    CANCELLED = "cancelled"
    REAPPEARED = "reappeared"
    DRY_RUN = "dry_run"


ROUTINE_CODES = frozenset({DecisionCode.WAITING_FOR_UD, DecisionCode.RESERVED_ELSEWHERE})
"""Held for our own budget: not a hold an operator must look at."""


class Transition(Record):
    at: float
    to: DecisionState
    reason: str
    by: str = "coordinator"
    code: DecisionCode | None = None
    """The decision's code at this turn (None in history written before codes)."""


class Decision(Record):
    """Persistent `decisions/<id>`: our state machine for one platform event."""

    event_id: Name
    state: DecisionState = DecisionState.NEW
    reason: str = ""
    code: DecisionCode = DecisionCode.SEEN
    reserved: list[Name] = []
    """VMs whose availability this event holds; released only at a terminal state."""
    drain: list[Name] = []
    """VMs asked to drain (a subset of `reserved`, empty for no-drain events)."""
    best_effort: bool = False
    """Drained without our approval because the platform will start it anyway."""
    operator_hold: str = ""
    """Non-empty while an operator holds the event: the reason they gave."""
    force_reason: str = ""
    """Non-empty when an operator force-approved the event."""
    force_skip_drain: bool = False
    """The operator's force also skips the drain (default: a force still drains)."""
    retries: int = 0
    """Drain retries so far, automatic and operator-requested."""
    retry_seen: int = 0
    """The last operator retry request (`Override.retry`) this decision acted on."""
    approved: list[Name] = []
    """The VMs the current approval covers: the acker acknowledges only while its own
    IMDS document lists no VM outside this set."""
    dry_run: bool = False
    """Decided under `policy.dry_run`: nothing was drained nor acknowledged."""
    not_returned: list[Name] = []
    """VMs a Terminate/Preempt took that never came back (deleted or deallocated): no
    other event waits for them to restore."""
    acker: Name | None = None
    approval: int = 0
    """Incremented on every approval; an acker sends one acknowledgement per approval."""
    ours: bool = False
    """True once the platform started the event after our acknowledgement."""
    state_since: float = 0.0
    updated_at: float = 0.0
    history: list[Transition] = []


# ---------------------------------------------------------------- drain and acks


class DrainWant(StrEnum):
    DRAINED = "drained"
    RESTORED = "restored"


class DrainStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DRAINED = "drained"
    RESTORED = "restored"
    FAILED = "failed"


class DrainRecord(Record):
    """Persistent `drain/<vm>`: the coordinator sets `want`, the VM's agent reports `status`.

    Both sides write with compare-and-set on the znode version. `event_id` + `want` +
    `attempt` identify a request; the agent runs a hook once per request.
    """

    vm: Name
    event_id: Name
    want: DrainWant
    attempt: int = Field(default=0, ge=0)
    """Bumped by a retry of the same request: the agent runs a hook once per
    (event_id, want, attempt)."""
    status: DrainStatus = DrainStatus.PENDING
    requested_at: float = 0.0
    updated_at: float = 0.0
    detail: str = ""
    """Hook output tail or error, for operators."""


class AckState(StrEnum):
    SENDING = "sending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class AckRecord(Record):
    """Persistent `acks/<event-id>`: the acker's account of its acknowledgement.

    Written *before* the POST with state `sending`: an agent that restarts and finds a
    record for the same approval never sends again (at most once per approval).
    """

    event_id: Name
    approval: int
    vm: Name
    state: AckState
    incarnation: int = 0
    at: float = 0.0
    detail: str = ""


class Override(Record):
    """Persistent `overrides/<event-id>`: an operator's hold or force on one event.

    Any coordinator replica's API may write it; only the leader turns it into decisions
    (it copies `hold`/`force` into `Decision.operator_hold`/`force_reason`).
    """

    event_id: Name
    hold: str = ""
    force: str = ""
    skip_drain: bool = False
    """With `force`: approve without draining (the default force still drains)."""
    retry: int = 0
    """Bumped by every operator retry of a failed drain; the leader acts once per value."""
    by: str = ""
    at: float = 0.0


# ---------------------------------------------------------------- policy and audit


class TypeRule(StrEnum):
    DRAIN = "drain"
    """Reserve, drain, then approve when safe (the default)."""
    NO_DRAIN = "no_drain"
    """Reserve and approve when safe, without running drain hooks."""


class Policy(Record):
    """Persistent `config`: how the coordinator decides."""

    max_concurrent_uds: int = Field(default=1, ge=1)
    """How many maintenance domains (see `maintenance_domain`) may be out at once."""
    maintenance_domain: DomainMode = DomainMode.AUTO
    """The unit the platform takes down together: `update_domain` (availability sets),
    `zone` (zonal VMs), `fault_domain` (regional Flexible scale sets), or `auto` (from
    what the VMs' IMDS reports; a cluster that mixes them is held until this is set)."""
    max_unavailable: int | str | None = None
    """Cluster-wide cap on unavailable VMs: a number, or a percent like "10%"."""
    rules: dict[EventType, TypeRule] = {
        EventType.FREEZE: TypeRule.DRAIN,
        EventType.REBOOT: TypeRule.DRAIN,
        EventType.REDEPLOY: TypeRule.DRAIN,
        EventType.PREEMPT: TypeRule.DRAIN,
        EventType.TERMINATE: TypeRule.DRAIN,
    }
    drain_timeout_s: float = Field(default=600.0, gt=0)
    best_effort_lead_s: float = Field(default=120.0, ge=0)
    """How long before NotBefore a held event's VMs are drained anyway."""
    restore_timeout_s: float = Field(default=1800.0, gt=0)
    ack_timeout_s: float = Field(default=60.0, gt=0)
    """After this long without the event starting, an approval is renewed."""
    drain_retries: int = Field(default=2, ge=0)
    """Automatic retries of a failed or timed-out drain before the event stays failed."""
    drain_retry_backoff_s: float = Field(default=30.0, ge=0)
    """Wait before the first automatic retry; doubled for each further one."""
    gone_grace_s: float = Field(default=30.0, ge=0)
    """An event missing from IMDS is over only after this long without reappearing, and
    only once one of its own VMs (when any is known) reported it missing. Keep it above a
    few of the agents' polls: a VM whose IMDS forgets an event for one poll must be
    contradicted by another poll before the event counts as over."""
    unmanaged_vms: Literal["hold", "outside"] = "hold"
    """An event naming a VM quorumgate does not know: `hold` it (unknown is unavailable
    and may sit in any maintenance domain), or treat such VMs as `outside` every group
    and domain budget (only for VMs that really run nothing replicated)."""
    clock_skew_s: float = Field(default=30.0, ge=0)
    """Tolerated disagreement between agents' clocks and the platform's."""
    paused: bool = False
    dry_run: bool = False

    @field_validator("max_unavailable")
    @classmethod
    def _valid_cap(cls, value: int | str | None) -> int | str | None:
        if value is None or isinstance(value, int):
            if isinstance(value, int) and value < 0:
                raise ValueError("max_unavailable must be >= 0")
            return value
        text = value.strip()
        if not text.endswith("%"):
            raise ValueError("max_unavailable must be a number or a percent like '10%'")
        percent = float(text[:-1])
        if not 0 <= percent <= 100:
            raise ValueError("max_unavailable percent must be between 0 and 100")
        return text

    def unavailable_cap(self, vm_count: int) -> int | None:
        """The cluster-wide cap as a VM count, or None when there is none."""
        if self.max_unavailable is None:
            return None
        if isinstance(self.max_unavailable, int):
            return self.max_unavailable
        return int(vm_count * float(self.max_unavailable[:-1]) / 100)

    def rule(self, event_type: EventType) -> TypeRule:
        return self.rules.get(event_type, TypeRule.DRAIN)


class AuditEntry(Record):
    """Persistent-sequential `audit/entry-`: who did what, append-only."""

    at: float
    actor: str
    action: str
    event_id: str = ""
    detail: str = ""
