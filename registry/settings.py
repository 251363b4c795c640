"""Settings for every daemon: defaults < file (TOML or YAML) < `QG_*` environment < flags.

Validated once, before anything starts, so a typo fails fast with a message naming the
field instead of surfacing later as a confusing runtime error.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)
ENV_PREFIX = "QG_"


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the offending field."""


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
