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
LogFormat = Literal["text", "json"]


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
    log_format: LogFormat = "text"
    """`text` (one line per record) or `json` (one JSON object per line, for log shippers)."""

    @field_validator("zk_hosts")
    @classmethod
    def _hosts(cls, value: str) -> str:
        hosts = [h.strip() for h in value.split("/", 1)[0].split(",") if h.strip()]
        if not hosts:
            raise ValueError("zk_hosts must list at least one host:port")
        for host in hosts:
            problem = zk_host_problem(host)
            if problem:
                raise ValueError(problem)
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

    @field_validator("log_format", mode="before")
    @classmethod
    def _format(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


def zk_host_problem(host: str) -> str | None:
    """Why `host` (`name`, `name:port`, `[v6]:port`) is not a ZooKeeper address, or None."""
    name, port = host, ""
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return f"{host!r}: unclosed '[' of an IPv6 address"
        name, rest = host[1:end], host[end + 1:]
        if rest and not rest.startswith(":"):
            return f"{host!r}: expected ':port' after ']'"
        port = rest[1:]
        if rest and not port:
            return f"{host!r}: empty port"
    elif host.count(":") == 1:
        name, port = host.split(":")
        if not port:
            return f"{host!r}: empty port"
    elif host.count(":") > 1:
        return f"{host!r}: write an IPv6 address as [address]:port"
    if not name or any(c.isspace() for c in name):
        return f"{host!r}: missing or invalid host name"
    if port and not (port.isdigit() and 1 <= int(port) <= 65535):
        return f"{host!r}: port {port!r} is not a number between 1 and 65535"
    return None


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
        key = env_name(name)
        if key in environ:
            value: Any = environ[key]
            if name in lists:
                value = [part.strip() for part in value.split(",") if part.strip()]
            out[name] = value
    return out


def env_name(*field: str) -> str:
    """The environment variable of a field: `port` -> `QG_PORT`,
    (`drain_hook`, `command`) -> `QG_DRAIN_HOOK_COMMAND`."""
    return ENV_PREFIX + "_".join(part.upper() for part in field)


SECRETS = frozenset({"zk_auth", "tokens"})
"""Settings whose values an error message never repeats."""

Origins = Mapping[tuple[str, ...], str]
"""Where a setting came from, by its location: ("port",) -> "QG_PORT" or "--port"."""


def env_origins(data: Mapping[str, Any], environ: Mapping[str, str],
                nested: Iterable[str] = ()) -> dict[tuple[str, ...], str]:
    """For the settings of an environment layer, the variable each one came from;
    `nested` fields are tables set key by key (`QG_DRAIN_HOOK_COMMAND`)."""
    nested = set(nested)
    out: dict[tuple[str, ...], str] = {}
    for name, value in data.items():
        if name in nested and isinstance(value, Mapping):
            for key in value:
                if env_name(name, key) in environ:
                    out[(name, key)] = env_name(name, key)
        elif env_name(name) in environ:
            out[(name,)] = env_name(name)
    return out


FLAG_NAMES = {"tokens": "--token", "groups": "--group"}


def flag_origins(flags: Mapping[str, Any],
                 nested: Iterable[str] = ()) -> dict[tuple[str, ...], str]:
    """For settings given as flags, the flag's spelling: `zk_hosts` -> `--zk-hosts`,
    `resync_s` -> `--resync`, (`drain_hook`, `timeout_s`) -> `--drain-timeout`."""
    nested = set(nested)

    def flag(*parts: str) -> str:
        return "--" + "-".join(p.removesuffix("_hook").removesuffix("_s")
                               for p in parts).replace("_", "-")

    out: dict[tuple[str, ...], str] = {}
    for name, value in flags.items():
        if value is None:
            continue
        if name in nested and isinstance(value, Mapping):
            for key in value:
                out[(name, key)] = flag(name, key)
        else:
            out[(name,)] = FLAG_NAMES.get(name) or flag(name)
    return out


def validate(model: type[M], data: Mapping[str, Any], what: str,
             origins: Origins | None = None) -> M:
    """The validated settings; ConfigError names every bad field, and the environment
    variable or flag it came from (`QG_PORT (port): ...`) when `origins` says so."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            loc = tuple(str(part) for part in error["loc"])
            where = ".".join(loc) or "config"
            source = _origin(loc, origins or {})
            if source:
                given = None if loc[0] in SECRETS else _given(data, loc)
                where = (f"{source}={given!r} ({where})" if given is not None
                         else f"{source} ({where})")
            problems.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
        raise ConfigError(f"bad {what} config: " + "; ".join(problems)) from None


def _origin(loc: tuple[str, ...], origins: Origins) -> str | None:
    for size in range(len(loc), 0, -1):
        if loc[:size] in origins:
            return origins[loc[:size]]
    return None


def _given(data: Mapping[str, Any], loc: tuple[str, ...]) -> Any:
    value: Any = data
    for part in loc:
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value if isinstance(value, str | int | float) else None
