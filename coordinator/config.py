"""Coordinator settings (see registry.settings for the layering)."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from coordinator.providers import ProviderConfig
from registry.settings import (
    ENV_PREFIX,
    ConfigError,
    DaemonSettings,
    env_layer,
    env_origins,
    flag_origins,
    read_file,
    validate,
)

Role = Literal["viewer", "operator"]


class CoordinatorConfig(DaemonSettings):
    identity: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    tokens: dict[str, Role] = {}
    """Bearer token -> role. Empty: every request is refused unless `anonymous` is set."""
    anonymous: Role | None = None
    """Role granted to requests without a token (e.g. "viewer" on a trusted network)."""
    resync_s: float = Field(default=1.0, gt=0, le=60)
    webhook_url: str | None = None
    gate_ttl_s: float = Field(default=5.0, gt=0)
    allow_gate_commands: bool = False
    """Let operators set shell-command health gates through the API (the leader runs
    them). Off by default: an API token then cannot make a coordinator run commands;
    URL gates are always allowed, and config-defined groups may use commands."""
    audit_keep: int = Field(default=10_000, ge=100)
    retention_s: float = Field(default=7 * 86400, gt=0)
    """How long (clock time) a finished event's records stay for operators to read."""
    providers: list[ProviderConfig] = []
    """Live replica-group sources (see coordinator/providers.py)."""
    tls_cert: str | None = None
    tls_key: str | None = None

    @field_validator("tokens")
    @classmethod
    def _tokens(cls, value: dict[str, Role]) -> dict[str, Role]:
        short = [t for t in value if len(t) < 8]
        if short:
            raise ValueError("tokens must be at least 8 characters long")
        return value


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
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    data.update(given)
    origins = {**env_origins(env_values, env), **flag_origins(given)}
    return validate(CoordinatorConfig, data, "coordinator", origins)


def access_problem(config: CoordinatorConfig) -> str | None:
    """A coordinator with no token and no anonymous role refuses every API request (and
    the dashboard): almost always a missing environment file, so `--check` fails on it."""
    if config.tokens or config.anonymous:
        return None
    return ("no API tokens: every request would be refused (401). Set tokens "
            "(QG_TOKENS=token:role,... or --token TOKEN:ROLE), or grant a role to requests "
            "without a token explicitly (anonymous = \"viewer\", QG_ANONYMOUS, --anonymous) "
            "on a trusted network only")


__all__ = ["ConfigError", "CoordinatorConfig", "access_problem", "load", "parse_tokens"]
