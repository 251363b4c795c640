"""The sample configs load with the project's own loaders and quote the models' defaults;
the systemd units are hardened, verified, and validate the sample configs."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.common import (
    DEPLOY,
    QUORUMGATE,
    clean_env,
    quorumgate,
)

# ------------------------------------------------------------------ sample configs

_COMMENTED = re.compile(r"^#\s*([a-z_]+)\s*=\s*(.+)$")


def commented_defaults(path: Path, table: str) -> dict[str, Any]:
    """`# key = value` lines of the [table] part (before any sub-table) as TOML values."""
    out: dict[str, Any] = {}
    in_table = False
    for line in path.read_text().splitlines():
        if line.startswith(("[", "# [")):   # a table, or a commented-out example of one
            in_table = line.strip() == f"[{table}]"
            continue
        match = _COMMENTED.match(line) if in_table else None
        if match:
            value = match.group(2).split("   #")[0]
            out[match.group(1)] = tomllib.loads(f"v = {value}")["v"]
    return out


@pytest.mark.parametrize("kind", ["agent", "coordinator"])
def test_sample_configs_load_and_document_every_field(kind: str) -> None:
    if kind == "agent":
        from agent.config import AgentConfig as model
        from agent.config import load
    else:
        from coordinator.config import CoordinatorConfig as model
        from coordinator.config import load
    path = DEPLOY / "config" / f"{kind}.toml"
    config = load(path, environ={})
    assert isinstance(config, model)
    data = tomllib.loads(path.read_text())
    assert set(data) == {kind}, "settings go in one table named after the daemon"
    active = set(data[kind])
    commented = commented_defaults(path, kind)
    text = path.read_text()
    for name, field in model.model_fields.items():
        assert name in active or name in commented or f"[[{kind}.{name}]]" in text, \
            f"{path.name} does not mention {name}: add it, commented, with its default"
        if name in commented and field.default_factory is None and field.default is not None:
            assert commented[name] == field.default, f"{name}: the file says {commented[name]!r}"
    # the commented settings are valid too
    assert model.model_validate({**data[kind], **commented})


def test_sample_coordinator_providers_example_is_valid() -> None:
    from coordinator.config import CoordinatorConfig

    text = (DEPLOY / "config" / "coordinator.toml").read_text()
    block = text[text.index("# [[coordinator.providers]]"):]
    example = tomllib.loads("\n".join(line[2:] for line in block.splitlines()))
    base = tomllib.loads(text)["coordinator"]
    config = CoordinatorConfig.model_validate({**base, **example["coordinator"]})
    assert {p.kind for p in config.providers} == {"zookeeper", "command"}


def test_sample_env_files_load() -> None:
    from agent.config import load as load_agent
    from coordinator.config import load as load_coordinator

    def read_env(name: str) -> dict[str, str]:
        env = {}
        for line in (DEPLOY / "config" / name).read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                key, sep, value = line.partition("=")
                assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), line
                env[key] = value
        return env

    agent_env = read_env("agent.env")
    agent = load_agent(DEPLOY / "config" / "agent.toml", environ=agent_env)
    assert agent.zk_auth == agent_env["QG_ZK_AUTH"]
    coordinator_env = read_env("coordinator.env")
    coordinator = load_coordinator(DEPLOY / "config" / "coordinator.toml",
                                   environ=coordinator_env)
    assert set(coordinator.tokens.values()) == {"operator", "viewer"}
    assert coordinator.zk_auth == agent.zk_auth


# ------------------------------------------------------------------ systemd units


def unit_sections(path: Path) -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = []
        else:
            assert current, f"{path.name}: {line!r} outside a section"
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: {line!r}"
            sections[current].append((key.strip(), value.strip()))
    return sections


@pytest.mark.parametrize("kind", ["agent", "coordinator"])
def test_systemd_units_are_hardened_and_start_the_right_command(kind: str) -> None:
    path = DEPLOY / "systemd" / f"quorumgate-{kind}.service"
    sections = unit_sections(path)
    assert {"Unit", "Service", "Install"} <= set(sections)
    service: dict[str, list[str]] = {}
    for key, value in sections["Service"]:
        service.setdefault(key, []).append(value)
    one = {k: v[-1] for k, v in service.items()}
    assert one["NoNewPrivileges"] == "yes"
    assert one["ProtectSystem"] == "strict"
    assert one["Restart"] == "on-failure"
    assert one.get("DynamicUser") == "yes" or one.get("User") not in (None, "root")
    assert one["CapabilityBoundingSet"] == ""
    assert f"-/etc/quorumgate/{kind}.env" in service["EnvironmentFile"]
    assert ("WantedBy", "multi-user.target") in sections["Install"]
    if kind == "agent":
        allow = one["IPAddressAllow"].split()
        assert one["IPAddressDeny"] == "any" and "169.254.169.254/32" in allow

    argv = shlex.split(one["ExecStart"])
    assert argv[0] == "/opt/quorumgate/bin/quorumgate" and argv[1] == kind
    assert argv[argv.index("--config") + 1] == f"/etc/quorumgate/{kind}.toml"
    # the same command line, on the sample config, validates: with the unit's environment
    # file (tokens) and, for the agent, the hooks installed where the config expects them
    # (`--check` fails on a missing hook): here, this checkout's deploy/hooks
    argv[argv.index("--config") + 1] = str(DEPLOY / "config" / f"{kind}.toml")
    env = {key: value for line in (DEPLOY / "config" / f"{kind}.env").read_text().splitlines()
           if line.strip() and not line.lstrip().startswith("#")
           for key, _, value in [line.partition("=")]}
    if kind == "agent":
        for action in ("drain", "restore"):
            env[f"QG_{action.upper()}_HOOK_COMMAND"] = str(
                DEPLOY / "hooks" / f"hdfs-datanode-{action}.sh")
    result = quorumgate(*argv[1:], "--check", env=clean_env(env))
    assert result.returncode == 0, result.stderr
    if kind == "agent":  # as installed by the sample config: not on this machine
        result = quorumgate(*argv[1:], "--check")
        assert result.returncode == 2 and "hdfs-datanode-drain.sh does not exist" in (
            result.stderr)
    else:  # without the environment file: no tokens, refused
        result = quorumgate(*argv[1:], "--check")
        assert result.returncode == 2 and "no API tokens" in result.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    units = []
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        copy = tmp_path / unit.name   # verify wants ExecStart to exist: use this checkout's
        copy.write_text(unit.read_text().replace("/opt/quorumgate/bin/quorumgate",
                                                 str(QUORUMGATE)))
        units.append(str(copy))
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", *units],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), \
        result.stdout + result.stderr


