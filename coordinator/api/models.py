"""Request and response bodies of the REST API that are not registry records or derived rows."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from registry.records import MinAvailable, Name, Policy

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


class ReasonIn(Body):
    reason: Reason
    """Why: mandatory, shown in the decision and the audit log."""


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


class ReadyOut(BaseModel):
    ready: bool
    leader: str | None
    role: str
    """leader, follower, or down."""
    identity: str


__all__ = ["GroupIn", "Name", "OptionalReasonIn", "PolicyIn", "PolicyOut", "ReadyOut",
           "ReasonIn", "StatusOut"]
