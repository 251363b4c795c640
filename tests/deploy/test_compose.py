"""docker-compose.yml, checked without Docker (no engine here): it parses, every service
runs the project image or the official ZooKeeper image, every `quorumgate ...` command it
runs validates itself, health checks and depends_on conditions are sound."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import pytest
import yaml

from tests.deploy.common import (
    ROOT,
    clean_env,
    quorumgate,
)

# ------------------------------------------------------------------ docker-compose.yml

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_]\w*)")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable interpolation, on every string of a parsed document."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def replace(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, arg = m.group(2), m.group(3) or ""
        current = env.get(name)
        if op in (":-", "-"):
            return current if current or (op == "-" and current is not None) else arg
        if op in (":?", "?") and not current:
            raise AssertionError(f"compose requires ${name}: {arg}")
        return current or ""

    return _VAR.sub(replace, value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker-compose.yml as compose sees it with an empty host environment."""
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict)
    return interpolate(doc, {})


def services(compose: dict[str, Any], command: str | None = None) -> dict[str, dict]:
    """Services running the quorumgate image (optionally: this quorumgate command)."""
    return {name: svc for name, svc in compose["services"].items()
            if "build" in svc and (command is None or svc["command"][0] == command)}


def service_env(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def test_compose_services_use_the_project_image_or_zookeeper(compose: dict[str, Any]) -> None:
    names = set(compose["services"])
    assert {"zk1", "zk2", "zk3", "coordinator-1", "coordinator-2", "imds-sim",
            "agent-vm-0", "agent-vm-1", "agent-vm-2"} <= names
    ours = services(compose)
    for name, svc in compose["services"].items():
        if name in ours:
            build = svc["build"]
            assert build["context"] == "." and build["dockerfile"] == "deploy/Dockerfile"
            assert (ROOT / build["context"] / build["dockerfile"]).is_file()
            assert svc["image"] == "quorumgate:local", name   # one image, built once
            assert isinstance(svc["command"], list) and svc["command"], name
            assert svc["command"][0] in {"agent", "coordinator", "imds-sim"}, name
        else:
            assert svc["image"].startswith("zookeeper:3.8"), name
    assert {svc["command"][0] for svc in ours.values()} == {"agent", "coordinator", "imds-sim"}


def test_compose_health_checks_and_dependencies(compose: dict[str, Any]) -> None:
    svcs = compose["services"]
    published = []
    for name, svc in svcs.items():
        test = svc.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no health check"
        if test[0] == "CMD" and test[1] == "python":     # the image's own python
            compile(test[3], f"<{name} healthcheck>", "exec")
        for dep, spec in (svc.get("depends_on") or {}).items():
            assert dep in svcs, f"{name} depends on unknown service {dep}"
            assert spec["condition"] in ("service_healthy", "service_started")
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in svcs[dep]
        published += [p.split(":")[0] for p in svc.get("ports", [])]
    assert len(published) == len(set(published)), "a host port is published twice"
    for name in ("zk1", "zk2", "zk3"):
        assert not svcs[name].get("depends_on"), "ZooKeeper nodes must start together"
    for name, svc in services(compose).items():
        wanted = {"zk1", "zk2", "zk3"} | ({"imds-sim"} if name.startswith("agent") else set())
        if name != "imds-sim":
            assert wanted <= set(svc["depends_on"]), name


def test_compose_zookeeper_ensemble(compose: dict[str, Any]) -> None:
    zks = {n: s for n, s in compose["services"].items() if n.startswith("zk")}
    assert len(zks) == 3
    ids = set()
    for svc in zks.values():
        env = service_env(svc)
        servers = dict(entry.split("=", 1) for entry in env["ZOO_SERVERS"].split())
        assert servers == {f"server.{i}": f"zk{i}:2888:3888;2181" for i in (1, 2, 3)}
        assert servers[f"server.{env['ZOO_MY_ID']}"].startswith(svc["hostname"] + ":")
        ids.add(env["ZOO_MY_ID"])
        assert env["ZOO_ADMINSERVER_ENABLED"] == "false"
        assert env["ZOO_STANDALONE_ENABLED"] == "false"
        assert "srvr" in env["ZOO_4LW_COMMANDS_WHITELIST"].split(",")
        assert env["ZK_SERVER_HEAP"].isdigit()
        check = " ".join(svc["healthcheck"]["test"][1:])
        # `ruok` answers without a quorum: readiness must look at srvr's Mode
        assert "srvr" in check and "Mode" in check and "leader|follower" in check
        assert any(v.endswith(":/data") for v in svc["volumes"])
    assert ids == {"1", "2", "3"}


def test_compose_coordinators_validate_their_config(compose: dict[str, Any]) -> None:
    coordinators = services(compose, "coordinator")
    assert len(coordinators) == 2
    seen = []
    for name, svc in coordinators.items():
        env = service_env(svc)
        result = quorumgate(*svc["command"], "--check", env=clean_env(env))
        assert result.returncode == 0, f"{name}: {result.stderr}"
        config = json.loads(result.stdout)
        assert config["host"] == "0.0.0.0" and config["clock"] == "real"
        assert sorted(t["role"] for t in config["tokens"]) == ["operator", "viewer"]
        assert config["zk_hosts"] == "zk1:2181,zk2:2181,zk3:2181"
        port = config["port"]
        assert f"http://127.0.0.1:{port}/readyz" in svc["healthcheck"]["test"][3]
        assert any(p.endswith(f":{port}") for p in svc["ports"])
        seen.append((config["cluster"], config["identity"]))
    assert len({c for c, _ in seen}) == 1 and len({i for _, i in seen}) == 2


def test_compose_imds_sim_serves_the_agents_vms(compose: dict[str, Any]) -> None:
    from imds_sim.cli import make_clock, make_spec, parser
    from imds_sim.model import Simulation

    (name, svc), = services(compose, "imds-sim").items()
    args = parser().parse_args(svc["command"][1:])
    clock = make_clock(args)
    assert clock.spec == "real"
    sim = Simulation.from_spec(make_spec(args), clock.now())
    assert args.host == "0.0.0.0"
    assert f"http://127.0.0.1:{args.port}/" in svc["healthcheck"]["test"][3]
    assert any(p.endswith(f":{args.port}") for p in svc["ports"])
    agents = services(compose, "agent")
    urls = [svc["command"][svc["command"].index("--imds-url") + 1] for svc in agents.values()]
    vms = []
    for url in urls:
        match = re.fullmatch(rf"http://{name}:{args.port}/vms/([\w.-]+)", url)
        assert match, url
        vms.append(match.group(1))
    assert sorted(vms) == sorted(sim.vm_names())   # one agent per emulated VM
    now = clock.now()
    assert len({sim.vm(vm, now).config.ud for vm in vms}) == 3   # one per update domain


def test_compose_agents_validate_their_config(compose: dict[str, Any]) -> None:
    agents = services(compose, "agent")
    assert len(agents) == 3
    coordinator_env = service_env(next(iter(services(compose, "coordinator").values())))
    for name, svc in agents.items():
        env = service_env(svc)
        result = quorumgate(*svc["command"], "--check", env=clean_env(env))
        assert result.returncode == 0, f"{name}: {result.stderr}"
        config = json.loads(result.stdout)
        assert config["cluster"] == coordinator_env["QG_CLUSTER"]
        assert config["zk_hosts"] == coordinator_env["QG_ZK_HOSTS"]
        assert config["clock"] == "real"
        assert config["health_host"] == "0.0.0.0"
        assert f"http://127.0.0.1:{config['health_port']}/healthz" in svc["healthcheck"]["test"][3]
        for action in ("drain", "restore"):
            hook = config[f"{action}_hook"]
            assert hook["command"] and "$QG_VM" in hook["command"], "compose's $$ escaping"
            done = subprocess.run(["sh", "-c", hook["command"]], capture_output=True, text=True,
                                  env={"QG_VM": "vm-0", "QG_EVENT_ID": "E1", "QG_EVENT_TYPE":
                                       "Reboot", "QG_RESOURCES": "vm-0"})
            assert done.returncode == 0 and "vm-0" in done.stdout


