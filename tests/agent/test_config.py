"""Configuration: layering (file < env < flags) and clear errors before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import config as cfg
from agent.main import main


def test_defaults_are_valid() -> None:
    config = cfg.load(None, environ={})
    assert config.imds_url == "http://169.254.169.254"
    assert config.events_api_version == "2020-07-01"
    assert config.health_port == 0
    assert config.drain_hook.empty


def test_file_env_flags_layering(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(
        'cluster = "prod"\npoll_interval_s = 5\ngroups = ["hdfs"]\n'
        '[drain_hook]\nurl = "http://127.0.0.1:9/drain"\ntimeout_s = 30\n')
    env = {"QG_POLL_INTERVAL_S": "2", "QG_GROUPS": "kafka, zk", "QG_ZK_AUTH": "u:p"}
    config = cfg.load(path, environ=env, overrides={"drain_hook": {"command": "true"}})
    assert config.cluster == "prod"
    assert config.poll_interval_s == 2.0
    assert config.groups == ["kafka", "zk"]
    assert config.zk_auth == "u:p"
    # a flag naming a hook command replaces the file's URL, keeps its timeout
    assert config.drain_hook.command == "true" and config.drain_hook.url is None
    assert config.drain_hook.timeout_s == 30


def test_yaml_with_agent_section(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("agent:\n  cluster: c1\n  min_available: 2\n  restore_hook:\n"
                    "    command: [/bin/true]\n")
    config = cfg.load(path, environ={})
    assert config.cluster == "c1" and config.min_available == 2
    assert config.restore_hook.command == ["/bin/true"]


@pytest.mark.parametrize(("data", "field"), [
    ({"poll_interval_s": 0}, "poll_interval_s"),
    ({"clock": "sundial"}, "clock"),
    ({"zk_auth": "nopassword"}, "zk_auth"),
    ({"imds_url": "169.254.169.254"}, "imds_url"),
    ({"drain_hook": {"command": "x", "url": "http://h/"}}, "drain_hook"),
    ({"groups": ["bad/name"]}, "groups.0"),
    ({"pol_interval_s": 1}, "pol_interval_s"),
    ({"min_available": -1}, "min_available"),
])
def test_bad_config_names_the_field(data: dict, field: str) -> None:
    with pytest.raises(cfg.ConfigError) as info:
        cfg.build(data)
    assert field in str(info.value)


def test_cli_bad_config_exits_2_before_starting(capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    monkeypatch.delenv("QG_CONFIG", raising=False)
    assert main(["--poll-interval", "-1", "--zk-hosts", "127.0.0.1:1"]) == 2
    assert "poll_interval_s" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("cluster = [unclosed")
    assert main(["--config", str(bad)]) == 2
    assert "not valid" in capsys.readouterr().err
    assert main(["--config", str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml" in capsys.readouterr().err


def test_cli_check_prints_effective_config(capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QG_CLUSTER", "from-env")
    assert main(["--check", "--group", "g1", "--group", "g2", "--min-available", "2",
                 "--drain-command", "echo hi", "--health-port", "0"]) == 0
    out = capsys.readouterr().out
    assert '"from-env"' in out and '"g2"' in out and '"echo hi"' in out
