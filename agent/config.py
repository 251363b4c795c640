"""Agent configuration: defaults < file (TOML or YAML) < `QG_*` environment < flags.

Everything is validated once, before anything starts, so a typo fails fast with a
message naming the field instead of surfacing later as a confusing runtime error.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from registry import settings
from registry.records import MinAvailable, Name
from registry.settings import ConfigError, DaemonSettings

__all__ = ["AgentConfig", "ConfigError", "HookConfig", "build", "check_hooks", "load"]


class HookConfig(BaseModel):
    """A drain or restore hook: a command (argv list or shell string) or an HTTP URL."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: str | list[str] | None = None
    url: str | None = None
    timeout_s: float = Field(default=300.0, gt=0)

    @model_validator(mode="after")
    def _one_kind(self) -> HookConfig:
        if self.command is not None and self.url is not None:
            raise ValueError("give either command or url, not both")
        if isinstance(self.command, list) and not self.command:
            raise ValueError("command must not be empty")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return self

    @property
    def empty(self) -> bool:
        return self.command is None and self.url is None


class AgentConfig(DaemonSettings):
    """What one agent needs to know; see docs/architecture.md for the protocol."""

    imds_url: str = "http://169.254.169.254"
    instance_api_version: str = "2021-12-13"
    events_api_version: str = "2020-07-01"
    imds_timeout_s: float = Field(default=5.0, gt=0)
    imds_first_call_timeout_s: float = Field(default=120.0, gt=0)
    imds_max_attempts: int = Field(default=4, ge=1, le=20)
    imds_deadline_s: float = Field(default=15.0, gt=0)
    imds_rate_per_s: float = Field(default=3.0, gt=0, le=4.0)
    imds_burst: int = Field(default=2, ge=1, le=4)
    """Requests the agent may send back to back (its IMDS token bucket). No window of one
    second then holds more than `imds_burst + imds_rate_per_s` requests, which must stay
    within IMDS's 5 per second. Two lets an acknowledgement POST follow the poll that
    confirmed its event at once, instead of waiting a token's 1/rate seconds."""

    offline_after_failures: int = Field(default=3, ge=0)
    """Consecutive polls with IMDS unreachable after which the VM counts as down: the
    agent closes its ZooKeeper session (the coordinator sees the VM go) and re-registers
    once IMDS answers. 0 = never (a real VM that goes down takes its agent with it)."""

    poll_interval_s: float = Field(default=1.0, gt=0)
    """In the clock's time: with a virtual clock the real interval is shorter."""
    clock: str = "real"
    vm_name: Name | None = None
    """Override of IMDS compute.name (the name scheduled events list in Resources)."""

    groups: list[Name] = []
    min_available: MinAvailable = "majority"
    drain_hook: HookConfig = HookConfig()
    restore_hook: HookConfig = HookConfig()
    ack_retries: int = Field(default=3, ge=0, le=10)
    """Refetch-and-retry rounds when IMDS rejects an acknowledgement with a 4xx."""

    health_port: int = Field(default=0, ge=0, le=65535)
    health_host: str = "127.0.0.1"

    @model_validator(mode="after")
    def _within_imds_limit(self) -> AgentConfig:
        if self.imds_rate_per_s + self.imds_burst > 5:
            raise ValueError(f"imds_rate_per_s + imds_burst is "
                             f"{self.imds_rate_per_s + self.imds_burst:g}: more than IMDS's 5 "
                             "requests per second in some second (429s)")
        return self

    @field_validator("min_available")
    @classmethod
    def _min_available(cls, value: MinAvailable) -> MinAvailable:
        if isinstance(value, int) and value < 0:
            raise ValueError("min_available must be >= 0 or 'majority'")
        return value

    @field_validator("imds_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("imds_url must start with http:// or https://")
        return value.rstrip("/")



# ---------------------------------------------------------------- sources

_HOOK_KEYS = ("command", "url", "timeout_s")
_HOOKS = ("drain_hook", "restore_hook")


def read_file(path: str | Path) -> dict[str, Any]:
    """A TOML or YAML file as a dict; an `[agent]` section is used when present."""
    return settings.read_file(path, "agent")


def from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """`QG_<FIELD>` for plain fields, `QG_DRAIN_HOOK_COMMAND` etc. for hooks, QG_GROUPS=a,b."""
    plain = [name for name in AgentConfig.model_fields if name not in _HOOKS]
    out = settings.env_layer(plain, environ, lists=("groups",))
    for name in _HOOKS:
        prefix = f"{settings.ENV_PREFIX}{name.upper()}_"
        hook = {key: environ[prefix + key.upper()] for key in _HOOK_KEYS
                if prefix + key.upper() in environ}
        if hook:
            out[name] = hook
    return out


def merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Later layers win; hook tables merge key by key."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if value is None:
                continue
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                base = dict(merged[key])
                if "command" in value or "url" in value:
                    # A later layer naming a hook kind replaces the earlier kind.
                    base.pop("command", None)
                    base.pop("url", None)
                merged[key] = {**base, **value}
            else:
                merged[key] = value
    return merged


def build(data: Mapping[str, Any],
          origins: settings.Origins | None = None) -> AgentConfig:
    """Validate merged settings; ConfigError names every bad field (and the environment
    variable or flag it came from, given `origins`)."""
    return settings.validate(AgentConfig, data, "agent", origins)


def load(path: str | Path | None = None, environ: Mapping[str, str] | None = None,
         overrides: Mapping[str, Any] | None = None) -> AgentConfig:
    """The effective configuration: file, then environment, then flag overrides."""
    env = os.environ if environ is None else environ
    path = path or env.get(f"{settings.ENV_PREFIX}CONFIG")
    file_layer = read_file(path) if path else {}
    env_layer = from_env(env)
    origins = {**settings.env_origins(env_layer, env, nested=_HOOKS),
               **settings.flag_origins(overrides or {}, nested=_HOOKS)}
    return build(merge(file_layer, env_layer, overrides or {}), origins)


# ---------------------------------------------------------------- what --check looks at

SHELL_WORDS = frozenset({
    "!", ".", ":", "[", "[[", "{", "(", "alias", "break", "case", "cd", "command",
    "continue", "echo", "eval", "exec", "exit", "export", "false", "for", "if", "kill",
    "printf", "pwd", "read", "return", "set", "shift", "test", "trap", "true", "ulimit",
    "umask", "unset", "until", "wait", "while"})
"""Shell builtins and keywords: a command starting with one runs without a program."""


def _program(command: str | list[str]) -> str | None:
    """The program a hook command runs first, or None when that cannot be told (a shell
    builtin or keyword, shell syntax `shlex` cannot read)."""
    if isinstance(command, list):
        return command[0] if command else None
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        return None
    while words and "=" in words[0] and not words[0].startswith("="):
        words = words[1:]  # FOO=bar program ...
    if words and words[0] == "exec":
        words = words[1:]
    if not words or words[0] in SHELL_WORDS or any(c in words[0] for c in "$`;|&<>()"):
        return None
    return words[0]


def hook_problem(hook: HookConfig, environ: Mapping[str, str] | None = None) -> str | None:
    """Why this hook cannot run here (its program is missing or not executable), or None."""
    if hook.command is None:
        return None
    program = _program(hook.command)
    if program is None:
        return None
    if "/" in program:
        path = Path(program)
        if not path.exists():
            return f"{program} does not exist"
        if path.is_dir():
            return f"{program} is a directory"
        if not os.access(path, os.X_OK):
            return f"{program} is not executable (chmod +x, or run it with its interpreter)"
        return None
    env = os.environ if environ is None else environ
    if shutil.which(program, path=env.get("PATH")) is None:
        return f"{program!r} is not found in PATH"
    return None


def check_hooks(config: AgentConfig, environ: Mapping[str, str] | None = None) -> list[str]:
    """What `--check` finds wrong with the hooks on this machine: one line per hook."""
    problems = []
    for name in _HOOKS:
        problem = hook_problem(getattr(config, name), environ)
        if problem:
            problems.append(f"{name}.command: {problem}")
    return problems
