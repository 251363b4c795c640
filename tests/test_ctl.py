"""Operator commands (`quorumgate status`, `vms`, `events`, ...) against a real coordinator
node and API over HTTP on a real ZooKeeper: tables, --json, and the errors (401, 403,
404, 409, 422, 503, connection refused)."""

from __future__ import annotations

import http.server
import json
import os
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from coordinator.store import ensure_layout
from quorumgate import cli, ctl
from registry.codec import decode, encode
from registry.layout import Layout
from registry.records import (
    Decision,
    DecisionState,
    DrainRecord,
    DrainStatus,
    DrainWant,
    Group,
    Override,
    Transition,
)
from tests.coordinator.test_api_support import (
    OPERATOR,
    VIEWER,
    Api,
    foreign_leader,
    put_decision,
    put_drain,
    put_group,
    register,
    running,
    schedule,
)
from tests.coordinator.test_domains_api import flex_cluster, mixed_cluster, zonal_cluster
from tests.helpers import wait_until

S = DecisionState
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("QG_"):
            monkeypatch.delenv(key)


@pytest.fixture
def cluster(zk: KazooClient, zk_layout: Layout) -> Layout:
    """Six VMs over 2 FDs x 3 UDs (vm-i: FD i//3, UD i%3); g = vm-0, vm-1, vm-2, min 2;
    bad = vm-0, vm-3 (both in UD 0), min 2."""
    ensure_layout(zk, zk_layout)
    for i in range(6):
        register(zk, zk_layout, f"vm-{i}", fd=i // 3, ud=i % 3)
    put_group(zk, zk_layout, "g", ["vm-0", "vm-1", "vm-2"], min_available=2)
    put_group(zk, zk_layout, "bad", ["vm-0", "vm-3"], min_available=2)
    return zk_layout


@pytest.fixture
def api(zk_hosts: str, zk: KazooClient, cluster: Layout) -> Iterator[Api]:
    """A follower replica: what the test writes stays as written."""
    with foreign_leader(zk, cluster), running(zk_hosts, cluster) as api:
        yield api


def run(capsys: pytest.CaptureFixture[str], command: str, *args: str,
        url: str | None = None, token: str | None = None) -> tuple[int, str, str]:
    """`quorumgate COMMAND ARGS` through the real dispatcher; (exit code, stdout, stderr)."""
    argv = [command, *args]
    if url is not None:
        argv += ["--url", url]
    if token is not None:
        argv += ["--token", token]
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def lines(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()]


def mirrored(api: Api, check) -> None:
    wait_until(lambda: check(api.node.cache.view()), 10, message="the mirror")


# ---------------------------------------------------------------- dispatcher


def test_every_command_is_registered() -> None:
    for name in ctl.SUMMARIES:
        module, _, function = cli.COMMANDS[name][0].partition(":")
        assert module == "quorumgate.ctl" and function == f"main_{name.replace('-', '_')}"
        assert callable(getattr(ctl, function))
    assert "status" in cli.usage() and "placement-audit" in cli.usage()


# ---------------------------------------------------------------- reads


def test_status(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "status", url=api.url, token=VIEWER)
    assert code == 0 and err == ""
    shown = dict(line.split(":", 1) for line in out.strip().splitlines())
    shown = {k: v.strip() for k, v in shown.items()}
    assert shown["cluster"] == api.layout.cluster
    assert shown["replica"] == "api-1 (follower)" and shown["leader"] == "elsewhere"
    assert shown["zookeeper"] == "connected" and shown["approvals"] == "running"
    assert shown["vms"] == "6 live of 6"
    assert shown["groups"] == "2 (0 below min_available)"
    code, out, _ = run(capsys, "status", "--json", url=api.url, token=VIEWER)
    body = json.loads(out)
    assert code == 0 and body["leader"] == "elsewhere" and body["live_vms"] == 6


def test_vms_table_grid_filter_and_json(api: Api, zk: KazooClient, cluster: Layout,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    schedule(zk, cluster, "E1", ["vm-4"])
    put_decision(zk, cluster, Decision(event_id="E1", state=S.DRAINING, reserved=["vm-4"],
                                       drain=["vm-4"], reason="draining vm-4"))
    put_drain(zk, cluster, DrainRecord(vm="vm-4", event_id="E1", want=DrainWant.DRAINED,
                                       status=DrainStatus.RUNNING))
    zk.delete(cluster.vm("vm-5"))
    mirrored(api, lambda v: len(v.drains) == 1 and len(v.registrations) == 5)
    code, out, _ = run(capsys, "vms", url=api.url, token=VIEWER)
    rows = lines(out)
    assert code == 0
    assert rows[0] == ["NAME", "DOMAIN", "FD", "UD", "ZONE", "STATE", "LIVE", "RESERVED",
                       "BY", "GROUPS", "ADDRESS"]
    by_name = {r[0]: r[:1] + [" ".join(r[1:3])] + r[3:] for r in rows[1:]}
    assert by_name["vm-0"][1:8] == ["UD 0", "0", "0", "-", "up", "yes", "-"]
    assert by_name["vm-0"][8] == "bad,g"
    assert by_name["vm-4"][1] == "UD 1" and by_name["vm-4"][5:8] == ["draining", "yes", "E1"]
    assert by_name["vm-5"][5:7] == ["lost", "no"]
    code, out, _ = run(capsys, "vms", "--state", "lost", url=api.url, token=VIEWER)
    assert [r[0] for r in lines(out)[1:]] == ["vm-5"]
    code, out, _ = run(capsys, "vms", "--grid", url=api.url, token=VIEWER)
    grid = lines(out)
    assert grid[0] == ["UD", "0", "UD", "1", "UD", "2"]
    assert grid[1] == ["FD", "0", "vm-0", "vm-1", "vm-2"]
    assert grid[2] == ["FD", "1", "vm-3", "vm-4(draining)", "vm-5(lost)"]
    assert "columns: update domains (the maintenance domain); rows: fault domains" in out
    code, out, _ = run(capsys, "vms", "--json", url=api.url, token=VIEWER)
    assert [vm["name"] for vm in json.loads(out)] == [f"vm-{i}" for i in range(6)]
    with pytest.raises(SystemExit) as exc:
        run(capsys, "vms", "--state", "sleeping", url=api.url, token=VIEWER)
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_events_and_one_event(api: Api, zk: KazooClient, cluster: Layout,
                              capsys: pytest.CaptureFixture[str]) -> None:
    now = api.node.clock.now()
    schedule(zk, cluster, "E-held", ["vm-1", "vm-2"], not_before=now + 600, first_seen=1.0)
    put_decision(zk, cluster, Decision(
        event_id="E-held", state=S.HELD, reason="unsafe: g would keep 1 of 3, min 2",
        history=[Transition(at=now - 30, to=S.HELD, reason="unsafe: g would keep 1 of 3")]))
    schedule(zk, cluster, "E-done", ["vm-3"], first_seen=0.5)
    put_decision(zk, cluster, Decision(event_id="E-done", state=S.RESTORED, reason="done"))
    mirrored(api, lambda v: len(v.decisions) == 2)
    code, out, _ = run(capsys, "events", url=api.url, token=VIEWER)
    rows = lines(out)
    assert code == 0 and rows[0] == ["EVENT", "TYPE", "PLATFORM", "STATE", "CODE", "NOT",
                                     "BEFORE", "VMS", "REASON"]
    assert [r[0] for r in rows[1:]] == ["E-done", "E-held"]
    held = rows[2]
    assert held[1:5] == ["Reboot", "Scheduled", "held", "seen"]
    assert held[5] == "in" and re.fullmatch(r"(10m00s|[89]m\d\ds)", held[6]), held[5:7]
    assert held[7] == "vm-1,vm-2"  # (a loaded machine may take a while to get here)
    assert "unsafe: g would keep 1 of 3, min 2" in out
    code, out, _ = run(capsys, "events", "--active", url=api.url, token=VIEWER)
    assert [r[0] for r in lines(out)[1:]] == ["E-held"]
    code, out, _ = run(capsys, "events", "--state", "restored", "--json", url=api.url,
                       token=VIEWER)
    assert [e["event_id"] for e in json.loads(out)] == ["E-done"]

    code, out, _ = run(capsys, "event", "E-held", url=api.url, token=VIEWER)
    assert code == 0
    assert "state:" in out and "held" in out and "timeline:" in out
    assert re.search(r"\b3[0-2]s ago", out) and "unsafe: g would keep 1 of 3" in out
    code, out, _ = run(capsys, "event", "E-held", "--json", url=api.url, token=VIEWER)
    assert json.loads(out)["decision"]["state"] == "held"
    code, out, err = run(capsys, "event", "E-nope", url=api.url, token=VIEWER)
    assert code == 1 and out == ""
    assert err.strip() == "quorumgate event: error: 404 not found: event 'E-nope' not found"
    with pytest.raises(SystemExit) as exc:  # a usage error, not a confusing server answer
        run(capsys, "event", "bad id!", url=api.url, token=VIEWER)
    assert exc.value.code == 2 and "invalid event id 'bad id!'" in capsys.readouterr().err


# ---------------------------------------------------------------- actions


def test_hold_release_force(api: Api, zk: KazooClient, cluster: Layout,
                            capsys: pytest.CaptureFixture[str]) -> None:
    schedule(zk, cluster, "E2", ["vm-1", "vm-2"])

    def override() -> Override | None:
        data = zk.get(cluster.override("E2"))[0] if zk.exists(cluster.override("E2")) else None
        return decode(Override, data) if data else None

    code, out, err = run(capsys, "hold", "E2", "--reason", "vendor asked us to wait",
                         url=api.url, token=OPERATOR)
    assert code == 0 and err == ""
    assert out.splitlines()[0] == "event E2: hold recorded by operator:op-s…"
    assert "hold: vendor asked us to wait" in out
    assert override().hold == "vendor asked us to wait"
    code, out, _ = run(capsys, "release", "E2", "--json", url=api.url, token=OPERATOR)
    assert code == 0 and json.loads(out)["hold"] == ""
    assert override().hold == ""
    code, out, _ = run(capsys, "force", "E2", "--reason", "security patch", "--yes",
                       url=api.url, token=OPERATOR)
    assert code == 0 and "force: security patch  (drains first, then approves)" in out
    assert override().force == "security patch"

    # errors: role too low, no token, unknown token, no such event, no reason
    code, out, err = run(capsys, "hold", "E2", "--reason", "x", url=api.url, token=VIEWER)
    assert code == 1 and out == ""
    assert "403 forbidden: this action needs the operator role; your token is viewer" in err
    code, _, err = run(capsys, "hold", "E2", "--reason", "x", url=api.url)
    assert code == 1 and "401 unauthorized: missing bearer token" in err
    assert "pass --token or set $QG_TOKEN" in err
    code, _, err = run(capsys, "hold", "E2", "--reason", "x", url=api.url,
                       token="nobody-knows-me")
    assert code == 1 and "401 unauthorized: unknown bearer token" in err
    code, _, err = run(capsys, "force", "E9", "--reason", "x", "--yes", url=api.url,
                       token=OPERATOR)
    assert code == 1 and "404 not found: event 'E9' not found" in err
    with pytest.raises(SystemExit) as exc:
        run(capsys, "force", "E2", url=api.url, token=OPERATOR)
    assert exc.value.code == 2 and "--reason" in capsys.readouterr().err
    code, _, err = run(capsys, "hold", "E2", "--reason", "  ", url=api.url, token=OPERATOR)
    assert code == 1 and "--reason must not be empty" in err


def test_pause_resume_and_audit(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "pause", "--reason", "change freeze", url=api.url,
                       token=OPERATOR)
    assert code == 0 and out.startswith("approvals paused (policy version 0)")
    mirrored(api, lambda v: v.policy.paused)
    code, out, _ = run(capsys, "status", url=api.url, token=VIEWER)
    assert "approvals:       PAUSED" in out
    code, out, _ = run(capsys, "resume", "--json", url=api.url, token=OPERATOR)
    assert code == 0 and json.loads(out)["paused"] is False
    code, out, _ = run(capsys, "audit", url=api.url, token=VIEWER)
    rows = lines(out)
    assert code == 0 and rows[0] == ["AT", "ACTOR", "ACTION", "EVENT", "DETAIL"]
    assert [r[3] for r in rows[1:]] == ["pause", "resume"]
    assert "change freeze" in out
    code, out, _ = run(capsys, "audit", "--limit", "1", "--json", url=api.url, token=VIEWER)
    assert [e["action"] for e in json.loads(out)] == ["resume"]
    code, _, err = run(capsys, "audit", "--limit", "0", url=api.url, token=VIEWER)
    assert code == 1 and "422 invalid request" in err and "limit" in err


def test_groups(api: Api, zk: KazooClient, cluster: Layout,
                capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "groups", url=api.url, token=VIEWER)
    rows = lines(out)
    assert code == 0 and rows[0][:6] == ["GROUP", "MEMBERS", "LIVE", "AVAILABLE", "MIN", "OK"]
    assert rows[1][:6] == ["bad", "vm-0,vm-3", "2", "2", "2", "yes"]
    assert rows[2][:6] == ["g", "vm-0,vm-1,vm-2", "3", "3", "2", "yes"]
    code, out, _ = run(capsys, "groups", "put", "kafka", "--members", "vm-0,vm-4",
                       "--members", "vm-2", "--min-available", "2", url=api.url,
                       token=OPERATOR)
    assert code == 0 and out.strip() == "group kafka: vm-0,vm-4,vm-2 (min_available 2) saved"
    mirrored(api, lambda v: "kafka" in v.groups)
    code, out, _ = run(capsys, "groups", "show", "kafka", url=api.url, token=VIEWER)
    assert code == 0 and "min_available:  2 (needs 2)" in out and "vm-0,vm-4,vm-2" in out
    code, out, _ = run(capsys, "groups", "list", "--json", url=api.url, token=VIEWER)
    assert [g["name"] for g in json.loads(out)] == ["bad", "g", "kafka"]
    code, out, _ = run(capsys, "groups", "delete", "kafka", url=api.url, token=OPERATOR)
    assert code == 0 and out.strip() == "group kafka deleted"
    code, _, err = run(capsys, "groups", "delete", "kafka", url=api.url, token=OPERATOR)
    assert code == 1 and "404 not found: group 'kafka' not found" in err
    code, _, err = run(capsys, "groups", "show", "kafka", url=api.url, token=VIEWER)
    assert code == 1 and "404" in err
    code, _, err = run(capsys, "groups", "put", "kafka", "--members", "vm-0",
                       "--min-available", "5", url=api.url, token=OPERATOR)
    assert code == 1 and "422 invalid request" in err and "min_available" in err
    code, _, err = run(capsys, "groups", "put", "kafka", "--members", "vm-0",
                       "--min-available", "lots", url=api.url, token=OPERATOR)
    assert code == 1 and 'a count or "majority"' in err
    zk.create(cluster.group("pg"), encode(Group(name="pg", members=["vm-0"],
                                                source="provider:patroni")))
    code, _, err = run(capsys, "groups", "put", "pg", "--members", "vm-1", url=api.url,
                       token=OPERATOR)
    assert code == 1 and "409 conflict" in err and "provider:patroni" in err


def test_placement_and_placement_audit(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "placement", "--replicas", "3", "--group", "new",
                       "--exclude", "vm-0", url=api.url, token=VIEWER)
    rows = lines(out)
    assert code == 0 and rows[0] == ["VM", "DOMAIN", "FAULT", "DOMAIN", "CHOICE", "GROUPS",
                                     "ON", "IT"]
    chosen = rows[1:4]  # vm-3  UD 0  FD 1  chosen  0
    assert len({r[2] for r in chosen}) == 3 and all(r[1] == "UD" for r in chosen)
    assert all(r[3] == "FD" and r[5] == "chosen" for r in chosen)
    assert "vm-0" not in {r[0] for r in chosen}
    assert "spread: 2 fault domains, 3 update domains (min 2)" in out
    code, out, _ = run(capsys, "placement", "--replicas", "2", "--holding", "vm-1", "--json",
                       url=api.url, token=VIEWER)
    body = json.loads(out)
    assert code == 0 and body["vms"][0] == "vm-1" and len(body["chosen"]) == 1
    code, _, err = run(capsys, "placement", "--replicas", "9", url=api.url, token=VIEWER)
    assert code == 1 and "422 invalid request" in err and "live VMs" in err

    code, out, _ = run(capsys, "placement-audit", url=api.url, token=VIEWER)
    rows = lines(out)
    assert code == 0 and rows[0] == ["GROUP", "UD", "LOSS", "FD", "LOSS", "LIVE", "MIN", "DOWN",
                                     "NOW", "FIX"]
    # bad = vm-0 (FD 0, UD 0), vm-3 (FD 1, UD 0): UD 0 holds both; each FD holds one
    assert rows[1][:6] == ["bad", "BLOCKS", "(UD", "0)", "BREAKS", "(FD"]
    assert " ".join(rows[1][:9]) == "bad BLOCKS (UD 0) BREAKS (FD 0, FD 1)"
    assert rows[2][:2] == ["g", "safe"]
    assert "bad: blocks a rollout: losing UD 0 (vm-0, vm-3) leaves 0 of 2, min 2" in out
    code, out, _ = run(capsys, "placement-audit", "--json", url=api.url, token=VIEWER)
    assert json.loads(out)[0]["group"] == "bad"


# ---------------------------------------------------------------- transport errors


def _closed_port() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


def test_connection_refused(capsys: pytest.CaptureFixture[str]) -> None:
    url = _closed_port()
    for command in (["status"], ["vms"], ["hold", "E1", "--reason", "x"], ["groups"]):
        code, out, err = run(capsys, *command, url=url, token=VIEWER)
        assert code == 1 and out == ""
        assert f"cannot connect to the coordinator at {url}: connection refused" in err
        assert "$QG_URL" in err


class _Canned(http.server.BaseHTTPRequestHandler):
    """Answers every request with the status and body its server was given."""

    def _answer(self) -> None:
        status, body, kind = self.server.canned  # type: ignore[attr-defined]
        if status == 0:  # too slow
            threading.Event().wait(2)
            status = 200
        try:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client gave up (the timeout case)
            pass

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def canned() -> Iterator[http.server.HTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_unavailable_timeout_and_not_a_coordinator(canned, capsys) -> None:
    url = f"http://127.0.0.1:{canned.server_port}"
    canned.canned = (503, b'{"detail": "not connected to ZooKeeper; retry shortly"}',
                     "application/json")
    code, _, err = run(capsys, "pause", url=url, token=OPERATOR)
    # the server's own advice is not repeated (issue 14, item 9)
    assert code == 1 and err.strip() == ("quorumgate pause: error: 503 coordinator "
                                         "unavailable: not connected to ZooKeeper; retry shortly")
    canned.canned = (503, b'{"detail": "the ZooKeeper mirror is not loaded yet"}',
                     "application/json")
    code, _, err = run(capsys, "status", url=url, token=VIEWER)
    assert err.strip().endswith("not loaded yet; retry shortly or use another replica")
    canned.canned = (404, b'{"detail": "Not Found"}', "application/json")
    code, _, err = run(capsys, "status", url=url, token=VIEWER)
    assert code == 1 and "is --url" in err and "a quorumgate coordinator?" in err
    canned.canned = (200, b"<html>hello</html>", "text/html")
    code, _, err = run(capsys, "status", url=url, token=VIEWER)
    assert code == 1 and "not JSON" in err
    canned.canned = (0, b"{}", "application/json")
    code, _, err = run(capsys, "status", "--timeout", "0.3", url=url, token=VIEWER)
    assert code == 1 and "did not answer within 0.3 s" in err


def test_console_script_with_environment(api: Api) -> None:
    """The installed `quorumgate` with $QG_URL and $QG_TOKEN, as an operator runs it."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("QG_")},
           "QG_URL": api.url, "QG_TOKEN": VIEWER}
    done = subprocess.run([str(ROOT / ".venv" / "bin" / "quorumgate"), "vms", "--json"],
                          env=env, text=True, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == 6
    done = subprocess.run([str(ROOT / ".venv" / "bin" / "quorumgate"), "hold", "E1",
                           "--reason", "x"], env=env, text=True, capture_output=True,
                          timeout=60)
    assert done.returncode == 1 and "403 forbidden" in done.stderr


# ---------------------------------------------------------------- maintenance domains


@pytest.fixture(params=["zonal", "flex"])
def other(request: pytest.FixtureRequest, zk_hosts: str, zk: KazooClient,
          zk_layout: Layout) -> Iterator[tuple[str, Api]]:
    """A zonal cluster (z<zone>-<fd>: zones 1-3 x FDs 0-1) or a regional Flexible scale set
    (f<fd>-<i>: FDs 0-2 x 2, scale set ss-web), no update domains, as their agents
    register them; groups `spread` (safe) and `crowded` (two members in zone 1 / FD 0)."""
    build = zonal_cluster if request.param == "zonal" else flex_cluster
    count = len(build(zk, zk_layout))
    with foreign_leader(zk, zk_layout), running(zk_hosts, zk_layout) as served:
        mirrored(served, lambda v: len(v.vm_states) == count)
        yield request.param, served


def test_commands_name_the_maintenance_domain(other: tuple[str, Api],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    kind, api = other
    zonal = kind == "zonal"
    vm, domain = ("z2-1", "zone 2") if zonal else ("f2-1", "FD 2")
    code, out, _ = run(capsys, "vms", url=api.url, token=VIEWER)
    assert code == 0 and lines(out)[0][:5] == ["NAME", "DOMAIN", "FD", "UD", "ZONE"]
    row = next(r for r in lines(out)[1:] if r[0] == vm)
    assert " ".join(row[1:3]) == domain
    assert row[3:6] == (["1", "-", "2"] if zonal else ["2", "-", "-"])
    code, out, _ = run(capsys, "status", url=api.url, token=VIEWER)
    assert re.search(r"^maintenance: +by zone \(zonal VMs\)$" if zonal else
                     r"^maintenance: +by fault domain \(a Flexible scale set\)$", out, re.M)

    code, out, _ = run(capsys, "vms", "--grid", url=api.url, token=VIEWER)
    grid = out.splitlines()
    if zonal:
        assert grid[0].split() == ["zone", "1", "zone", "2", "zone", "3"]
        assert grid[1].split() == ["FD", "0", "z1-0", "z2-0", "z3-0"]
        assert grid[2].split() == ["FD", "1", "z1-1", "z2-1", "z3-1"]
        assert grid[3] == ("columns: zones (the maintenance domain); rows: fault domains "
                           "within each zone")
    else:
        assert grid[0].split() == ["FD", "0", "FD", "1", "FD", "2"]
        assert grid[1].split() == ["ss-web", "f0-0", "f0-1", "f1-0", "f1-1", "f2-0", "f2-1"]
        assert grid[2] == "columns: fault domains (the maintenance domain); rows: scale sets"

    code, out, _ = run(capsys, "placement", "--replicas", "3", url=api.url, token=VIEWER)
    assert code == 0
    rows = [r for r in lines(out)[1:4]]
    assert len({" ".join(r[1:3]) for r in rows}) == 3  # three maintenance domains
    if zonal:
        assert {r[1] for r in rows} == {"zone"} and all(r[5:7] == ["in", "zone"] for r in rows)
        assert "spread: 3 zones, 3 fault domains (zones first)" in out
    else:
        assert {r[1] for r in rows} == {"FD"}
        assert "spread: 3 fault domains (the maintenance domain)" in out

    code, out, _ = run(capsys, "placement-audit", url=api.url, token=VIEWER)
    rows = lines(out)
    assert code == 0
    if zonal:
        assert rows[0][:5] == ["GROUP", "ZONE", "LOSS", "FD", "LOSS"]
        assert " ".join(rows[1][:5]) == "crowded BLOCKS (zone 1) safe"
        assert "crowded: blocks a rollout: losing zone 1 (z1-0, z1-1) leaves 1 of 3" in out
        assert "is in zone 3, FD" in out
    else:
        assert rows[0][:5] == ["GROUP", "FD", "MAINT", "FD", "LOSS"]
        assert " ".join(rows[1][:7]) == "crowded BLOCKS (FD 0) BREAKS (FD 0)"
        assert "crowded: blocks a rollout: losing FD 0 (f0-0, f0-1) leaves 1 of 3" in out
    assert rows[2][:3] == ["spread", "safe", "safe"]


def test_a_mixed_cluster_until_the_operator_names_the_unit(
        zk_hosts: str, zk: KazooClient, zk_layout: Layout,
        capsys: pytest.CaptureFixture[str]) -> None:
    mixed_cluster(zk, zk_layout)
    with foreign_leader(zk, zk_layout), running(zk_hosts, zk_layout) as api:
        mirrored(api, lambda v: len(v.vm_states) == 4)
        code, _, err = run(capsys, "placement", "--replicas", "2", url=api.url, token=VIEWER)
        assert code == 1 and "409 conflict: the cluster mixes deployments" in err
        assert "set policy maintenance_domain" in err
        code, _, err = run(capsys, "placement-audit", url=api.url, token=VIEWER)
        assert code == 1 and "409 conflict" in err
        code, out, _ = run(capsys, "status", url=api.url, token=VIEWER)
        assert "PROBLEM:" in out and "no maintenance domain: the cluster mixes" in out
        code, out, _ = run(capsys, "vms", url=api.url, token=VIEWER)
        assert code == 0 and out.splitlines()[-1].startswith(
            "no maintenance domain: the cluster mixes deployments")
        assert {r[0]: r[1] for r in lines(out)[1:5]} == {
            "as-0": "-", "as-1": "-", "zonal-1": "-", "zonal-2": "-"}
        code, out, _ = run(capsys, "vms", "--grid", url=api.url, token=VIEWER)
        assert out.splitlines()[0].split() == ["UD", "0", "UD", "1", "zone", "1", "zone", "2"]
        assert "columns: each VM's own unit" in out

        code, out, err = run(capsys, "policy", "set", "--maintenance-domain", "fault_domain",
                             url=api.url, token=OPERATOR)
        assert code == 0, err
        assert '  maintenance_domain: "auto" -> "fault_domain"' in out
        mirrored(api, lambda v: v.policy.maintenance_domain == "fault_domain")
        code, out, _ = run(capsys, "placement", "--replicas", "2", url=api.url, token=VIEWER)
        assert code == 0 and "spread: 2 fault domains (the maintenance domain)" in out
        code, out, _ = run(capsys, "policy", url=api.url, token=VIEWER)
        assert "maintenance domain:  fault_domain" in out
        with pytest.raises(SystemExit) as exc:
            run(capsys, "policy", "set", "--maintenance-domain", "rack", url=api.url,
                token=OPERATOR)
        assert exc.value.code == 2 and "expected one of auto" in capsys.readouterr().err
