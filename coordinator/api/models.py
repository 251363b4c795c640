"""Request and response bodies of the REST API that are not registry records or derived rows."""

from __future__ import annotations

from typing import Annotated, Any, Optional

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model, model_validator

from registry.domains import DomainMode
from registry.records import Group, MinAvailable, Name, Policy

Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]


class Body(BaseModel):
    """Request bodies refuse unknown fields: a typo must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class GroupIn(Body):
    members: list[Name] = Field(min_length=1, max_length=10_000)
    min_available: MinAvailable = "majority"
    """A count, or "majority" (more than half of the members)."""
    health_gate: str = Field(default="", max_length=2000)
    """An http(s) URL that must answer 2xx, or a shell command that must exit 0, before an
    approval or release touching the group."""
    allow_unknown: bool = False
    """Save even with members no agent ever registered (e.g. VMs not provisioned yet);
    without it such a group is refused (422): a typo would silently count as a VM that is
    always down and hold every maintenance of the group."""

    @model_validator(mode="after")
    def _consistent(self) -> GroupIn:
        dupes = sorted({m for m in self.members if self.members.count(m) > 1})
        if dupes:
            raise ValueError(f"members listed twice: {', '.join(dupes[:10])}")
        if isinstance(self.min_available, int) and not (
                0 <= self.min_available <= len(self.members)):
            raise ValueError(f"min_available must be between 0 and the {len(self.members)} "
                             f"members, not {self.min_available}")
        return self


class GroupOut(Group):
    warnings: list[str] = []
    """What was saved but deserves a second look (unknown members, min_available 0)."""


class ReasonIn(Body):
    reason: Reason
    """Why: mandatory, shown in the decision and the audit log."""


class ForceIn(Body):
    reason: Reason
    """Why: mandatory, shown in the decision and the audit log."""
    skip_drain: bool = False
    """Approve without draining (default: a force still drains, only the safety check is
    overridden)."""


class OptionalReasonIn(Body):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)] = ""


class PolicyOut(Policy):
    version: int
    """The `config` znode version (-1: never written, defaults apply). Send it back with
    PUT /v1/policy (or as `If-Match`) to update only that version."""


class PolicyIn(Policy):
    """A full policy: fields left out take their defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: int | None = None
    """Update only if the `config` znode still has this version (else 409)."""

    def policy(self) -> Policy:
        return Policy.model_validate(self.model_dump(exclude={"version"}))


def _patch_model() -> type[BaseModel]:
    fields: dict[str, Any] = {
        name: (Optional[field.annotation], Field(None, description=field.description))  # noqa: UP045
        for name, field in Policy.model_fields.items()}
    fields["version"] = (int | None, Field(None, description="update only if the `config` "
                                                             "znode still has this version"))
    return create_model("PolicyPatch", __config__=ConfigDict(extra="forbid", frozen=True),
                        __doc__="Only the fields given change; the others keep their current "
                                "value (pause state included).", **fields)


PolicyPatch = _patch_model()
"""PATCH /v1/policy: any subset of the policy's fields."""


class LastPass(BaseModel):
    at: float | None
    summary: str


class StatusOut(BaseModel):
    identity: str
    cluster: str
    leader: str | None
    """Identity of the leading replica (None when unknown, e.g. disconnected)."""
    is_leader: bool
    connected: bool
    ready: bool
    now: float
    """This replica's clock."""
    counts: dict[str, int]
    """Events by decision state."""
    events: int
    active_events: int
    vms: int
    live_vms: int
    groups: int
    groups_below_min: int
    paused: bool
    dry_run: bool
    policy_version: int
    last_pass: LastPass
    """The last decision pass of this replica (only the leader runs passes)."""
    problem: str | None = None
    """A misconfiguration that keeps this replica unready (see /readyz)."""
    version: str = ""
    """This replica's quorumgate version."""
    maintenance_domain: DomainMode | None = Field(
        None, description="the cluster's maintenance domain (what max_concurrent_uds "
        "counts, what placement spreads over): update_domain, zone or fault_domain; null "
        "when the cluster mixes deployments and the policy names no unit")
    maintenance_domain_problem: str = Field(
        "", description="why `maintenance_domain` is null (every admission is held "
                        "meanwhile): the VMs that mix deployments and what to set")


class ReadyOut(BaseModel):
    ready: bool
    leader: str | None
    role: str
    """leader, follower, down (not connected, no mirror yet) or misconfigured."""
    identity: str
    problem: str | None = None
    """Why this replica is misconfigured (e.g. ZooKeeper refuses its credentials)."""


__all__ = ["ForceIn", "GroupIn", "GroupOut", "Name", "OptionalReasonIn", "PolicyIn",
           "PolicyOut", "PolicyPatch", "ReadyOut", "ReasonIn", "StatusOut"]
