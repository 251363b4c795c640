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


# ---------------------------------------------------------------- misconfiguration is loud


@pytest.mark.parametrize("hosts", ["zk1:notaport", "zk1:2181,zk2:", "zk1:0", "zk1:65536",
                                   "::1:2181", "[::1", " :2181"])
def test_invalid_zk_hosts_fail_check(hosts: str, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QG_CONFIG", raising=False)
    assert main(["--check", "--zk-hosts", hosts]) == 2
    err = capsys.readouterr().err
    assert "zk_hosts" in err and "--zk-hosts" in err


@pytest.mark.parametrize("hosts", ["zk1", "zk1:2181,zk2:2182/chroot", "[::1]:2181",
                                   "10.0.0.1:2181, 10.0.0.2:2181"])
def test_valid_zk_hosts(hosts: str) -> None:
    assert cfg.build({"zk_hosts": hosts}).zk_hosts == hosts


def test_environment_errors_name_the_variable(capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QG_CONFIG", raising=False)
    monkeypatch.setenv("QG_ZK_HOSTS", "zk1:notaport")
    monkeypatch.setenv("QG_HEALTH_PORT", "ninety")
    monkeypatch.setenv("QG_DRAIN_HOOK_TIMEOUT_S", "-5")
    monkeypatch.setenv("QG_ZK_AUTH", "secretpassword")
    assert main(["--check"]) == 2
    err = capsys.readouterr().err
    assert "QG_ZK_HOSTS='zk1:notaport' (zk_hosts)" in err
    assert "QG_HEALTH_PORT='ninety' (health_port)" in err
    assert "QG_DRAIN_HOOK_TIMEOUT_S='-5' (drain_hook.timeout_s)" in err
    assert "QG_ZK_AUTH (zk_auth)" in err and "secretpassword" not in err  # never echoed


def test_check_fails_on_a_missing_or_not_executable_hook(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QG_CONFIG", raising=False)
    missing = tmp_path / "hooks" / "drain.sh"
    assert main(["--check", "--drain-command", f"{missing} --now"]) == 2
    assert f"drain_hook.command: {missing} does not exist" in capsys.readouterr().err
    missing.parent.mkdir()
    missing.write_text("#!/bin/sh\nexit 0\n")
    assert main(["--check", "--restore-command", str(missing)]) == 2
    assert "restore_hook.command" in (err := capsys.readouterr().err)
    assert "is not executable" in err
    monkeypatch.setenv("QG_DRAIN_HOOK_COMMAND", "no-such-program-anywhere --flag")
    assert main(["--check"]) == 2
    assert "'no-such-program-anywhere' is not found in PATH" in capsys.readouterr().err
    monkeypatch.delenv("QG_DRAIN_HOOK_COMMAND")
    missing.chmod(0o755)
    # executable now; list commands, programs on PATH, shell builtins and syntax pass
    for argv in (["--drain-command", str(missing)],
                 ["--drain-command", f"FOO=1 exec {missing} x"],
                 ["--drain-command", "sleep 1"],
                 ["--drain-command", 'echo "drained $QG_VM"; exit 0'],
                 ["--drain-command", "test -e /x && { echo a; }"]):
        assert main(["--check", *argv]) == 0, (argv, capsys.readouterr().err)
        capsys.readouterr()
    (tmp_path / "agent.yaml").write_text(
        f"drain_hook:\n  command: [{tmp_path / 'nope'}, --x]\n")
    assert main(["--check", "--config", str(tmp_path / "agent.yaml")]) == 2
    assert "nope does not exist" in capsys.readouterr().err


def test_imds_pacing_stays_within_five_requests_per_second() -> None:
    assert cfg.load(None, environ={}).imds_burst == 2
    with pytest.raises(ValueError, match="imds_burst"):
        cfg.load(None, environ={"QG_IMDS_RATE_PER_S": "4", "QG_IMDS_BURST": "2"})
    assert cfg.load(None, environ={"QG_IMDS_RATE_PER_S": "4", "QG_IMDS_BURST": "1"})


def test_token_bucket_never_lets_a_second_hold_more_than_burst_plus_rate() -> None:
    """Greedy requests for 3 s: every one-second window holds at most burst + rate."""
    import time

    from agent.pacing import TokenBucket
    bucket = TokenBucket(3.0, burst=2)
    sent = []
    end = time.monotonic() + 3.0
    while time.monotonic() < end:
        bucket.acquire()
        sent.append(time.monotonic())
    assert max(sum(1 for t in sent if s <= t < s + 1.0) for s in sent) <= 5
    assert len(sent) >= 2 + 3 * 2  # and it does pace at the rate: not starved
