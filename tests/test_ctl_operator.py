# ruff: noqa: F811  (the fixtures of tests/test_ctl.py, imported by name)
"""Issue 14 from the operator's chair: the `quorumgate` commands against a real coordinator
node over HTTP (and HTTPS) on a real ZooKeeper — `--version`, IDs as people see them,
`retry`, `force` that asks first and still drains, `policy show|set`, TLS options, groups
that warn, one hold reason, natural VM order, and no traceback when the reader goes away."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from kazoo.client import KazooClient

from coordinator.api import create_app
from quorumgate import cli, ctl
from registry.codec import decode, encode
from registry.layout import Layout
from registry.records import (
    Decision,
    DecisionCode,
    DecisionState,
    Override,
    PlatformEvent,
    PlatformStatus,
    Transition,
)
from tests.coordinator.test_api_support import (
    OPERATOR,
    OPERATOR_NAME,
    VIEWER,
    Api,
    put_decision,
    register,
    schedule,
)
from tests.helpers import wait_until
from tests.test_ctl import _clean_env, api, cluster, lines, mirrored, run  # noqa: F401

S = DecisionState
C = DecisionCode
ROOT = Path(__file__).resolve().parents[1]
QUORUMGATE = ROOT / ".venv" / "bin" / "quorumgate"
E_A = "CEA34FD8-0A1B-4C2D-8E3F-405162738495"
E_B = "CEA9B2C1-1111-4222-8333-944455556666"


def console(*args: str, url: str, token: str = OPERATOR, stdin: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed `quorumgate` as an operator runs it (a terminal's stdin replaced by
    `stdin`; None: no stdin at all)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("QG_")}
    return subprocess.run(
        [str(QUORUMGATE), *args], env={**base, "QG_URL": url, "QG_TOKEN": token, **(env or {})},
        input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True, text=True, timeout=60)


def override(zk: KazooClient, layout: Layout, eid: str) -> Override | None:
    path = layout.override(eid)
    return decode(Override, zk.get(path)[0]) if zk.exists(path) else None


# ---------------------------------------------------------------- first contact


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("quorumgate ") and "(Python 3." in out
    done = subprocess.run([str(QUORUMGATE), "--version"], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0 and done.stdout == out
    assert "--version" in subprocess.run([str(QUORUMGATE)], capture_output=True, text=True,
                                         timeout=30).stdout


def test_the_demos_cli_line_works_as_printed(api: Api) -> None:
    """The demo prints `QG_URL=... QG_TOKEN=... <command> status`: pasted into a shell in
    the repository (where `make demo` runs), it must work — `quorumgate` alone is not on
    PATH there, `.venv/bin/quorumgate` is."""
    command = ctl.command_line()
    assert command == "quorumgate" or command.endswith("quorumgate") or "-m" in command
    base = {k: v for k, v in os.environ.items() if not k.startswith("QG_")}
    # a shell as a new user has it: without the virtualenv on PATH
    base["PATH"] = os.pathsep.join(p for p in base.get("PATH", "").split(os.pathsep)
                                   if not p.startswith(str(ROOT / ".venv")))
    line = f"QG_URL={api.url} QG_TOKEN={VIEWER} {command} status"
    done = subprocess.run(["sh", "-c", line], cwd=ROOT, env=base, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, (line, done.stderr)
    assert "cluster:" in done.stdout
    from quorumgate_testbed import rollout

    source = Path(rollout.__file__).read_text()
    assert "{command_line()} status" in source


# ---------------------------------------------------------------- ids people see


def test_event_ids_by_prefix_in_any_case(api: Api, zk: KazooClient, cluster: Layout,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    schedule(zk, cluster, E_A, ["vm-1"])
    schedule(zk, cluster, E_B, ["vm-2"])
    mirrored(api, lambda v: len(v.events) == 2)
    code, out, _ = run(capsys, "event", "CEA34FD8", url=api.url, token=VIEWER)
    assert code == 0 and f"event:            {E_A}" in out
    code, out, _ = run(capsys, "event", E_A.lower(), "--json", url=api.url, token=VIEWER)
    assert code == 0 and json.loads(out)["event_id"] == E_A
    code, out, err = run(capsys, "event", "cea", url=api.url, token=VIEWER)
    assert code == 1 and out == ""
    assert err.strip() == (f"quorumgate event: error: 409 conflict: event id 'cea' is "
                           f"ambiguous: it matches 2 ({E_A}, {E_B}); give more characters")
    code, out, _ = run(capsys, "hold", "cea9b2c1", "--reason", "vendor asked", url=api.url,
                       token=OPERATOR)
    assert code == 0 and out.splitlines()[0] == f"event {E_B}: hold recorded by {OPERATOR_NAME}"
    assert override(zk, cluster, E_B).hold == "vendor asked"


# ---------------------------------------------------------------- retry and force


def test_retry(api: Api, zk: KazooClient, cluster: Layout,
               capsys: pytest.CaptureFixture[str]) -> None:
    schedule(zk, cluster, E_A, ["vm-1"])
    put_decision(zk, cluster, Decision(event_id=E_A, state=S.FAILED, code=C.DRAIN_FAILED,
                                       reason="drain failed on vm-1: exit 3; no automatic "
                                              "retries left"))
    schedule(zk, cluster, E_B, ["vm-2"])
    put_decision(zk, cluster, Decision(event_id=E_B, state=S.HELD, code=C.UNSAFE_GROUP,
                                       reason="unsafe"))
    mirrored(api, lambda v: len(v.decisions) == 2)
    code, out, err = run(capsys, "retry", "cea34", "--reason", "replica repaired",
                         url=api.url, token=OPERATOR)
    assert code == 0, err
    assert out.splitlines()[:2] == [
        f"event {E_A}: retry recorded by {OPERATOR_NAME}",
        "  retry request 1: the leader asks the event's VMs to drain again"]
    assert override(zk, cluster, E_A).retry == 1
    code, _, err = run(capsys, "retry", "CEA9", url=api.url, token=OPERATOR)
    assert code == 1 and err.strip() == (
        f"quorumgate retry: error: 409 conflict: event {E_B} is held (unsafe_group): only "
        "a failed drain can be retried")
    code, out, _ = run(capsys, "audit", url=api.url, token=VIEWER)
    assert "retry" in out and "replica repaired" in out
    code, out, _ = run(capsys, "event", "cea34", url=api.url, token=VIEWER)
    assert "code:             drain_failed" in out
    assert "drain retries:    0 (an operator retry is pending)" in out


def test_force_asks_for_confirmation_and_still_drains(api: Api, zk: KazooClient,
                                                      cluster: Layout) -> None:
    schedule(zk, cluster, E_A, ["vm-1", "vm-2"])
    put_decision(zk, cluster, Decision(event_id=E_A, state=S.HELD, code=C.UNSAFE_GROUP,
                                       reason="unsafe: g would keep 1 of 3, min 2"))
    mirrored(api, lambda v: E_A in v.decisions)

    no = console("force", "cea34fd8", "--reason", "security patch", url=api.url, stdin="n\n")
    assert no.returncode == 1 and no.stdout == ""
    assert f"event {E_A}: Reboot on vm-1, vm-2" in no.stderr
    assert "now held: unsafe: g would keep 1 of 3, min 2" in no.stderr
    assert "the VMs are drained, then the event is approved" in no.stderr
    assert "Force it? [y/N]:" in no.stderr and "not forced" in no.stderr
    closed = console("force", "cea34fd8", "--reason", "security patch", url=api.url)
    assert closed.returncode == 1 and "not forced: no confirmation" in closed.stderr
    assert override(zk, cluster, E_A) is None, "nothing was written"

    yes = console("force", "cea34fd8", "--reason", "security patch", url=api.url, stdin="y\n")
    assert yes.returncode == 0, yes.stderr
    assert "force: security patch  (drains first, then approves)" in yes.stdout
    ov = override(zk, cluster, E_A)
    assert ov.force == "security patch" and ov.skip_drain is False

    skip = console("force", "cea34fd8", "--reason", "VMs are empty", "--skip-drain",
                   url=api.url, stdin="yes\n")
    assert skip.returncode == 0 and "WITHOUT draining" in skip.stderr
    assert "(WITHOUT draining)" in skip.stdout
    assert override(zk, cluster, E_A).skip_drain is True
    scripted = console("force", "cea34fd8", "--reason", "again", "--yes", "--json",
                       url=api.url)
    assert scripted.returncode == 0 and scripted.stderr == ""
    assert json.loads(scripted.stdout)["force"] == "again"


# ---------------------------------------------------------------- policy


def test_policy_show_and_set_never_unpause(api: Api,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "pause", "--reason", "freeze", url=api.url, token=OPERATOR)[0] == 0
    code, out, err = run(capsys, "policy", "set", "--dry-run", "on", "--max-concurrent-uds",
                         "2", url=api.url, token=OPERATOR)
    assert code == 0, err
    assert out.splitlines() == ["policy version 1:", "  dry_run: false -> true",
                                "  max_concurrent_uds: 1 -> 2",
                                "  approvals are still PAUSED (quorumgate resume)"]
    code, out, _ = run(capsys, "policy", url=api.url, token=VIEWER)
    shown = {k.strip(): v.strip() for k, v in (x.split(":", 1) for x in out.splitlines())}
    assert shown["approvals"] == "PAUSED (quorumgate resume)"
    assert shown["dry run"].startswith("ON") and shown["max concurrent UDs"] == "2"
    assert shown["maintenance domain"] == "auto"
    code, out, _ = run(capsys, "policy", "set", "--max-unavailable", "10%", "--rule",
                       "Freeze=no_drain", "--drain-retries", "3", url=api.url, token=OPERATOR)
    assert code == 0 and '  max_unavailable: null -> "10%"' in out
    code, out, _ = run(capsys, "policy", "show", "--json", url=api.url, token=VIEWER)
    policy = json.loads(out)
    assert policy["rules"]["Freeze"] == "no_drain" and policy["rules"]["Reboot"] == "drain"
    assert policy["drain_retries"] == 3 and policy["paused"] and policy["dry_run"]
    code, out, _ = run(capsys, "policy", "set", "--max-unavailable", "none", "--dry-run",
                       "off", url=api.url, token=OPERATOR)
    assert code == 0 and '  max_unavailable: "10%" -> null' in out
    code, _, err = run(capsys, "policy", "set", url=api.url, token=OPERATOR)
    assert code == 1 and "nothing to set" in err
    code, _, err = run(capsys, "policy", "set", "--max-concurrent-uds", "0", url=api.url,
                       token=OPERATOR)
    assert code == 1 and "422 invalid request" in err and "max_concurrent_uds" in err
    with pytest.raises(SystemExit) as exc:
        run(capsys, "policy", "set", "--dry-run", "maybe", url=api.url, token=OPERATOR)
    assert exc.value.code == 2 and "expected on or off" in capsys.readouterr().err
    code, _, err = run(capsys, "policy", "set", "--dry-run", "on", url=api.url, token=VIEWER)
    assert code == 1 and "403" in err


# ---------------------------------------------------------------- groups


def test_groups_put_warns_and_validates_names(api: Api,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "groups", "put", "bad", "--members", "vm-99,vm-100",
                         url=api.url, token=OPERATOR)
    assert code == 1 and out == ""
    assert "422 invalid request: unknown members: vm-99, vm-100" in err
    assert "--allow-unknown" in err
    code, out, err = run(capsys, "groups", "put", "bad", "--members", "vm-0,vm-99",
                         "--allow-unknown", url=api.url, token=OPERATOR)
    assert code == 0 and "saved" in out
    assert err.strip() == ("quorumgate groups: warning: group bad: unknown members (count "
                           "as down until their agents register): vm-99")
    code, _, err = run(capsys, "groups", "put", "zero", "--members", "vm-0,vm-1",
                       "--min-available", "0", url=api.url, token=OPERATOR)
    assert code == 0 and "warning: group zero: min_available 0" in err
    with pytest.raises(SystemExit) as exc:
        run(capsys, "groups", "put", "Bad Name/x", "--members", "vm-0", url=api.url,
            token=OPERATOR)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "invalid group name 'Bad Name/x'" in err
    assert "coordinator?" not in err
    code, out, _ = run(capsys, "audit", url=api.url, token=VIEWER)
    assert "group bad: members=vm-0,vm-99" in out and "group zero: members=vm-0,vm-1" in out


# ---------------------------------------------------------------- what the tables say


def test_hold_reason_once_code_and_who(api: Api, zk: KazooClient, cluster: Layout,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    schedule(zk, cluster, "E-hold", ["vm-1"])
    put_decision(zk, cluster, Decision(event_id="E-hold", state=S.HELD, code=C.OPERATOR_HOLD,
                                       reason="operator hold: DB migration",
                                       operator_hold="DB migration"))
    schedule(zk, cluster, "E-forced", ["vm-3"], status=PlatformStatus.GONE)
    put_decision(zk, cluster, Decision(
        event_id="E-forced", state=S.RESTORED, code=C.RESTORED, reason="restored",
        history=[Transition(at=1.0, to=S.FORCED, reason="platform started it")]))
    mirrored(api, lambda v: len(v.decisions) == 2)
    assert run(capsys, "hold", "E-hold", "--reason", "DB migration", url=api.url,
               token=OPERATOR)[0] == 0
    mirrored(api, lambda v: "E-hold" in v.overrides)
    code, out, _ = run(capsys, "events", url=api.url, token=VIEWER)
    assert out.count("DB migration") == 1, out
    row = next(r for r in lines(out) if r[0] == "E-hold")
    assert row[4] == "operator_hold"
    forced = next(r for r in lines(out) if r[0] == "E-forced")
    assert forced[3] == "restored" and "[forced]" in forced
    code, out, _ = run(capsys, "event", "E-hold", url=api.url, token=VIEWER)
    assert f"operator hold:    DB migration (by {OPERATOR_NAME}, " in out
    assert "code:             operator_hold" in out


def test_vms_sorted_naturally_and_grid_agrees(api: Api, zk: KazooClient,
                                              cluster: Layout,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    register(zk, cluster, "vm-10", fd=0, ud=1)
    schedule(zk, cluster, "E-up", ["vm-4"], status=PlatformStatus.STARTED)
    put_decision(zk, cluster, Decision(event_id="E-up", state=S.STARTED, reserved=["vm-4"]))
    zk.delete(cluster.vm("vm-4"))  # rebooting for its started event
    mirrored(api, lambda v: "vm-4" not in v.registrations and "vm-10" in v.registrations)
    code, out, _ = run(capsys, "vms", url=api.url, token=VIEWER)
    names = [r[0] for r in lines(out)[1:]]
    assert names == ["vm-0", "vm-1", "vm-2", "vm-3", "vm-4", "vm-5", "vm-10"]
    state = {r[0]: r[6] for r in lines(out)[1:]}  # NAME, DOMAIN ("UD 1"), FD, UD, ZONE
    assert state["vm-4"] == "rebooting"
    code, out, _ = run(capsys, "vms", "--grid", url=api.url, token=VIEWER)
    assert "vm-4(rebooting)" in out and "(lost)" not in out
    assert lines(out)[1] == ["FD", "0", "vm-0", "vm-1", "vm-10", "vm-2"]


def test_no_traceback_when_the_reader_goes_away(api: Api, zk: KazooClient,
                                                cluster: Layout) -> None:
    """`quorumgate events | head -1` with more output than a pipe holds."""
    names = [f"E-{i:04d}-{'x' * 60}" for i in range(500)]
    results = [zk.create_async(cluster.event(eid), encode(PlatformEvent(
        event_id=eid, event_type="Reboot", status="Scheduled", resources=["vm-1", "vm-2"],
        not_before=2e9))) for eid in names]
    for result in results:
        result.get(timeout=10)
    mirrored(api, lambda v: len(v.events) == 500)
    base = {k: v for k, v in os.environ.items() if not k.startswith("QG_")}
    done = subprocess.run(["bash", "-o", "pipefail", "-c", f"{QUORUMGATE} events | head -1"],
                          env={**base, "QG_URL": api.url, "QG_TOKEN": VIEWER},
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.split()[:2] == ["EVENT", "TYPE"]
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert done.returncode == 0


# ---------------------------------------------------------------- TLS


@contextlib.contextmanager
def https(app, cert: Path, key: Path) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off",
                                           ssl_certfile=str(cert), ssl_keyfile=str(key)))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, 10, message="uvicorn to start")
        yield f"https://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_cacert_and_insecure(api: Api, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    with https(create_app(api.node), cert, key) as url:
        code, out, err = run(capsys, "status", url=url, token=VIEWER)
        assert code == 1 and out == ""
        assert f"TLS with the coordinator at {url} failed: " in err
        assert "certificate" in err and "--cacert FILE" in err and "--insecure" in err
        code, out, err = run(capsys, "status", "--cacert", str(cert), url=url, token=VIEWER)
        assert code == 0 and "cluster:" in out, err
        code, out, _ = run(capsys, "status", "--insecure", url=url, token=VIEWER)
        assert code == 0 and "cluster:" in out
        done = console("vms", "--json", url=url, token=VIEWER,
                       env={"QG_CACERT": str(cert)})
        assert done.returncode == 0 and len(json.loads(done.stdout)) == 6
        code, _, err = run(capsys, "status", "--cacert", str(tmp_path / "nope.pem"), url=url,
                           token=VIEWER)
        assert code == 1 and "--cacert" in err and "nope.pem" in err

