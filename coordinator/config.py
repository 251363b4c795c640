"""Coordinator settings (see registry.settings for the layering)."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from coordinator.providers import ProviderConfig
from registry.clock import parse_clock
from registry.records import Name
from registry.settings import ENV_PREFIX, env_layer, read_file, validate

Role = Literal["viewer", "operator"]


class CoordinatorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cluster: Name = "default"
    zk_hosts: str = "127.0.0.1:2181"
    zk_root: str = "/quorumgate"
    zk_auth: str | None = None
    """Digest credentials `user:password`; with them, the cluster's znodes get a digest ACL."""
    zk_session_timeout_s: float = Field(default=10.0, ge=2.0, le=120.0)
    identity: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    tokens: dict[str, Role] = {}
    """Bearer token -> role. Empty: every request is refused unless `anonymous` is set."""
    anonymous: Role | None = None
    """Role granted to requests without a token (e.g. "viewer" on a trusted network)."""
    clock: str = "real"
    resync_s: float = Field(default=1.0, gt=0, le=60)
    webhook_url: str | None = None
    gate_ttl_s: float = Field(default=5.0, gt=0)
    audit_keep: int = Field(default=10_000, ge=100)
    providers: list[ProviderConfig] = []
    """Live replica-group sources (see coordinator/providers.py)."""
    tls_cert: str | None = None
    tls_key: str | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    @field_validator("clock")
    @classmethod
    def _clock(cls, value: str) -> str:
        parse_clock(value)
        return value

    @field_validator("zk_auth")
    @classmethod
    def _auth(cls, value: str | None) -> str | None:
        if value is not None and (":" not in value or value.startswith(":")):
            raise ValueError("zk_auth must be 'user:password'")
        return value

    @field_validator("tokens")
    @classmethod
    def _tokens(cls, value: dict[str, Role]) -> dict[str, Role]:
        short = [t for t in value if len(t) < 8]
        if short:
            raise ValueError("tokens must be at least 8 characters long")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


def parse_tokens(text: str) -> dict[str, str]:
    """`token:role,token:role` (environment and flags)."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        token, _, role = part.rpartition(":")
        out[token] = role
    return out


def load(path: str | Path | None = None, environ: Mapping[str, str] | None = None,
         flags: Mapping[str, Any] | None = None) -> CoordinatorConfig:
    env = os.environ if environ is None else environ
    path = path or env.get(f"{ENV_PREFIX}CONFIG")
    data: dict[str, Any] = read_file(path, "coordinator") if path else {}
    env_values = env_layer((f for f in CoordinatorConfig.model_fields if f != "tokens"), env)
    if f"{ENV_PREFIX}TOKENS" in env:
        env_values["tokens"] = parse_tokens(env[f"{ENV_PREFIX}TOKENS"])
    data.update(env_values)
    data.update({k: v for k, v in (flags or {}).items() if v is not None})
    return validate(CoordinatorConfig, data, "coordinator")
