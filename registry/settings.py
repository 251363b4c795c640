"""Settings for every daemon: defaults < file (TOML or YAML) < `QG_*` environment < flags.

Validated once, before anything starts, so a typo fails fast with a message naming the
field instead of surfacing later as a confusing runtime error.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from registry.clock import parse_clock
from registry.records import Name

M = TypeVar("M", bound=BaseModel)
ENV_PREFIX = "QG_"


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the offending field."""


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class DaemonSettings(BaseModel):
    """What every daemon (agent, coordinator) needs: its cluster, ZooKeeper, the clock."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cluster: Name = "default"
    zk_hosts: str = "127.0.0.1:2181"
    zk_root: str = "/quorumgate"
    zk_auth: str | None = None
    """Digest credentials `user:password`; with them, the znodes we create get a digest
    ACL (full rights for these credentials, read-only for everyone else)."""
    zk_session_timeout_s: float = Field(default=10.0, ge=2.0, le=120.0)
    clock: str = "real"
    log_level: LogLevel = "INFO"

    @field_validator("zk_hosts")
    @classmethod
    def _hosts(cls, value: str) -> str:
        hosts = [h.strip() for h in value.split("/", 1)[0].split(",") if h.strip()]
        if not hosts:
            raise ValueError("zk_hosts must list at least one host:port")
        return value

    @field_validator("zk_auth")
    @classmethod
    def _auth(cls, value: str | None) -> str | None:
        if value is not None and (":" not in value or value.startswith(":")):
            raise ValueError("zk_auth must be 'user:password'")
        return value

    @field_validator("zk_root")
    @classmethod
    def _root(cls, value: str) -> str:
        if not value.startswith("/") or value.endswith("/"):
            raise ValueError("zk_root must start with '/' and not end with '/'")
        return value

    @field_validator("clock")
    @classmethod
    def _clock(cls, value: str) -> str:
        parse_clock(value)
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


def read_file(path: str | Path, section: str) -> dict[str, Any]:
    """A TOML or YAML file as a dict; its `[section]` table is used when present."""
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigError(f"config file {str(file)!r}: {exc.strerror or exc}") from exc
    try:
        data: Any = tomllib.loads(text) if file.suffix.lower() == ".toml" else (
            yaml.safe_load(text) or {})
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"config file {str(file)!r} is not valid: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(file)!r} must hold a mapping of settings")
    table = data.get(section)
    return dict(table) if isinstance(table, dict) else data


def env_layer(fields: Iterable[str], environ: Mapping[str, str],
              lists: Iterable[str] = ()) -> dict[str, Any]:
    """`QG_<FIELD>` for each field; list fields are comma-separated."""
    lists = set(lists)
    out: dict[str, Any] = {}
    for name in fields:
        key = f"{ENV_PREFIX}{name.upper()}"
        if key in environ:
            value: Any = environ[key]
            if name in lists:
                value = [part.strip() for part in value.split(",") if part.strip()]
            out[name] = value
    return out


def validate(model: type[M], data: Mapping[str, Any], what: str) -> M:
    """The validated settings; ConfigError names every bad field."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            where = ".".join(str(part) for part in error["loc"]) or "config"
            problems.append(f"{where}: {error['msg']}")
        raise ConfigError(f"bad {what} config: " + "; ".join(problems)) from None
