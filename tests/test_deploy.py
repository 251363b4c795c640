"""The deployment files in `deploy/` and `docker-compose.yml`, checked without Docker.

No Docker engine here, so the compose stack cannot run. Instead:
- docker-compose.yml: parses, every service runs the image built from deploy/Dockerfile
  or the official ZooKeeper image, every `quorumgate ...` command it runs is validated by
  the command itself (`--check` with the service's environment, or the argument parser
  and cluster spec of the emulator), health checks and depends_on conditions are sound;
- the Dockerfile copies every package pyproject.toml installs, and .dockerignore keeps them;
- the sample configs load with the project's own loaders, and the defaults they quote
  are the models' defaults;
- the systemd units have the hardening asked for, `systemd-analyze verify` accepts them
  (when present) and their ExecStart commands validate the sample configs;
- deploy/zookeeper/zoo.cfg starts a real 3-node ensemble (Debian's ZooKeeper, loopback);
- the hooks: executable, `bash -n`, shellcheck when installed, and run for real against
  a fake Patroni REST API and a fake `hdfs` command.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
HOOKS = DEPLOY / "hooks"
HOOK_FILES = sorted(HOOKS.glob("*.sh"))
QUORUMGATE = Path(sys.executable).with_name("quorumgate")

needs_curl_jq = pytest.mark.skipif(
    not (shutil.which("curl") and shutil.which("jq")), reason="the hooks need curl and jq")
needs_jq_flock = pytest.mark.skipif(
    not (shutil.which("jq") and shutil.which("flock")), reason="the HDFS hooks need jq, flock")


def quorumgate(*args: str, env: dict[str, str] | None = None,
               timeout: float = 30) -> subprocess.CompletedProcess[str]:
    command = [str(QUORUMGATE)] if QUORUMGATE.exists() else [sys.executable, "-m",
                                                              "quorumgate.cli"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=env if env is not None else clean_env())


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test's environment without QG_* (so only what a test passes counts)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QG_")}
    env.update(extra or {})
    return env


# ------------------------------------------------------------------ hooks: basics


def test_hooks_exist_and_are_executable_bash() -> None:
    names = {p.name for p in HOOK_FILES}
    assert {"hdfs-datanode-drain.sh", "hdfs-datanode-restore.sh", "hdfs-datanode.sh",
            "patroni-switchover-drain.sh", "patroni-restore.sh", "patroni.sh"} <= names
    for hook in HOOK_FILES:
        assert hook.stat().st_mode & stat.S_IXUSR, f"{hook.name} is not executable"
        text = hook.read_text()
        assert text.startswith("#!/usr/bin/env bash\n"), hook.name
        assert "set -euo pipefail" in text, hook.name
        assert "Exit codes" in text, f"{hook.name} does not document its exit codes"
        subprocess.run(["bash", "-n", str(hook)], check=True)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_hooks_are_shellcheck_clean() -> None:
    result = subprocess.run(["shellcheck", "--severity=style", *map(str, HOOK_FILES)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def run_hook(name: str, env: dict[str, str], timeout: float = 20) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8",
            "QG_EVENT_ID": "602D9444-D2CD-49C7-8624-8643E7171297", "QG_EVENT_TYPE": "Reboot",
            "QG_NOT_BEFORE": f"{time.time() + 900:.3f}", "QG_VM": "vm-0"}
    return subprocess.run([str(HOOKS / name)], env={**base, **env}, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


# ------------------------------------------------------------------ hooks: Patroni


class FakePatroni:
    """A Patroni REST API for one member (`me`) of a cluster, on 127.0.0.1.

    /leader, /replica, /cluster, /patroni answer from `members`; POST /switchover checks
    the body like Patroni does (leader must lead, candidate must be a member), swaps the
    roles and leaves the old leader "starting" for `settle_s` before it runs as a replica.
    """

    def __init__(self, me: str, members: list[dict[str, Any]], settle_s: float = 0.6,
                 switchover_status: int = 200, report_name: bool = True) -> None:
        self.me = me
        self.members = members
        self.settle_s = settle_s
        self.switchover_status = switchover_status
        self.report_name = report_name
        self.lock = threading.Lock()
        self.posts: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self.gets: dict[str, int] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakePatroni:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def member(self, name: str) -> dict[str, Any]:
        return next(m for m in self.members if m["name"] == name)

    def update(self, name: str, **fields: Any) -> None:
        with self.lock:
            self.member(name).update(fields)

    def _switch(self, old: str, new: str) -> None:
        with self.lock:
            timeline = self.member(old)["timeline"] + 1
            self.member(new).update(role="leader", state="running", timeline=timeline)
            self.member(new).pop("lag", None)
            self.member(old).update(role="replica", state="starting", lag="unknown",
                                    timeline=timeline)
        timer = threading.Timer(self.settle_s, self.update, args=(old,),
                                kwargs={"state": "running", "lag": 0})
        timer.daemon = True
        timer.start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, code: int, body: Any) -> None:
                data = (body if isinstance(body, str) else json.dumps(body)).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json" if not isinstance(
                    body, str) else "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?")[0]
                with fake.lock:
                    fake.gets[path] = fake.gets.get(path, 0) + 1
                    me = dict(fake.member(fake.me))
                    members = [dict(m) for m in fake.members]
                status = {"state": me["state"], "role": me["role"],
                          "timeline": me["timeline"],
                          "patroni": {"version": "3.0.2", "scope": "demo",
                                      **({"name": fake.me} if fake.report_name else {})}}
                if path == "/leader":
                    self._send(200 if me["role"] == "leader" else 503, status)
                elif path == "/replica":
                    ok = me["role"] == "replica" and me["state"] == "running"
                    self._send(200 if ok else 503, status)
                elif path == "/patroni":
                    self._send(200, status)
                elif path == "/cluster":
                    self._send(200, {"members": members, "scope": "demo"})
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake.lock:
                    fake.posts.append(body)
                    fake.auth.append(self.headers.get("Authorization"))
                    leader = next((m["name"] for m in fake.members if m["role"] == "leader"),
                                  None)
                    names = {m["name"] for m in fake.members}
                if self.path != "/switchover":
                    self._send(404, "not found")
                elif fake.switchover_status != 200:
                    self._send(fake.switchover_status, "Switchover failed")
                elif body.get("leader") != leader:
                    self._send(412, f"leader name does not match: {leader}")
                elif body.get("candidate") not in names:
                    self._send(412, "candidate does not exist")
                else:
                    fake._switch(leader, body["candidate"])
                    self._send(200, f'Successfully switched over to "{body["candidate"]}"')

        return Handler


def pg_members(leader: str = "pg-0") -> list[dict[str, Any]]:
    """pg-0 .. pg-5 on hosts vm-0 .. vm-5; only pg-4 is a good switchover candidate."""
    def member(name: str, host: str, role: str = "replica", state: str = "running",
               lag: Any = 0, timeline: int = 3, **extra: Any) -> dict[str, Any]:
        m = {"name": name, "host": host, "port": 5432, "role": role, "state": state,
             "api_url": f"http://{host}:8008/patroni", "timeline": timeline, **extra}
        if role != "leader":
            m["lag"] = lag
        return m

    return [
        member("pg-0", "vm-0", role="leader" if leader == "pg-0" else "replica"),
        member("pg-1", "vm-1"),                         # goes down with the event
        member("pg-2", "vm-2", lag=50_000_000),         # too far behind
        member("pg-3", "vm-3", tags={"nofailover": True}),
        member("pg-4", "vm-4", lag=1024),               # the one
        member("pg-5", "vm-5", state="streaming", timeline=2),  # stuck on an old timeline
        member("pg-6", "10.0.0.16", state="stopped"),
    ]


def patroni_env(fake: FakePatroni, **extra: str) -> dict[str, str]:
    return {"PATRONI_URL": fake.url, "PATRONI_POLL_S": "0.1", "QG_ACTION": "drain",
            "QG_RESOURCES": "vm-0,VM-1", **extra}


@needs_curl_jq
def test_patroni_drain_switches_over_when_leader() -> None:
    with FakePatroni("pg-0", pg_members()) as fake:
        result = run_hook("patroni-switchover-drain.sh",
                          patroni_env(fake, PATRONI_AUTH="admin:secret"))
        assert result.returncode == 0, result.stderr
        assert fake.posts == [{"leader": "pg-0", "candidate": "pg-4"}]
        assert fake.auth[0] and fake.auth[0].startswith("Basic ")
        assert fake.member("pg-4")["role"] == "leader"
        assert fake.member("pg-0")["role"] == "replica"
        # it waited for the old leader to run as a replica (it was "starting" first)
        assert fake.gets.get("/replica", 0) >= 2
    assert "switching over" in result.stderr and "drained" in result.stderr


@needs_curl_jq
def test_patroni_drain_does_nothing_on_a_replica() -> None:
    with FakePatroni("pg-4", pg_members()) as fake:
        result = run_hook("patroni-switchover-drain.sh", patroni_env(fake))
        assert result.returncode == 0, result.stderr
        assert fake.posts == []
        assert fake.member("pg-0")["role"] == "leader"
    assert "not the leader" in result.stderr


@needs_curl_jq
def test_patroni_drain_prefers_a_sync_standby_and_skips_event_hosts() -> None:
    members = pg_members()
    members[5].update(role="sync_standby", state="running", timeline=3, lag=4096)
    with FakePatroni("pg-0", members) as fake:
        result = run_hook("patroni-switchover-drain.sh", patroni_env(fake))
        assert result.returncode == 0, result.stderr
        assert fake.posts == [{"leader": "pg-0", "candidate": "pg-5"}]
    with FakePatroni("pg-0", pg_members()) as fake:   # pg-4's VM is in the event too
        result = run_hook("patroni-switchover-drain.sh",
                          patroni_env(fake, QG_RESOURCES="vm-0, vm-1, vm-4"))
        assert result.returncode == 4, result.stderr
        assert fake.posts == []
    assert "no healthy replica" in result.stderr


@needs_curl_jq
def test_patroni_drain_failures_have_their_exit_codes() -> None:
    with FakePatroni("pg-0", pg_members(), switchover_status=503) as fake:
        result = run_hook("patroni-switchover-drain.sh", patroni_env(fake))
        assert result.returncode == 5, result.stderr
        assert "refused" in result.stderr
    with FakePatroni("pg-0", pg_members(), settle_s=30) as fake:   # never becomes a replica
        started = time.monotonic()
        result = run_hook("patroni-switchover-drain.sh", patroni_env(fake, PATRONI_WAIT_S="1"))
        assert result.returncode == 6, result.stderr
        assert time.monotonic() - started < 10
    with socket.socket() as sock:   # nothing listens on a port we just bound and closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run_hook("patroni-switchover-drain.sh",
                      {"PATRONI_URL": f"http://127.0.0.1:{port}", "QG_ACTION": "drain"})
    assert result.returncode == 3, result.stderr
    result = run_hook("patroni-switchover-drain.sh", {"PATRONI_WAIT_S": "soon"})
    assert result.returncode == 2, result.stderr


@needs_curl_jq
def test_patroni_restore_waits_for_a_caught_up_replica() -> None:
    members = pg_members(leader="pg-4")
    members[4].update(role="leader")
    members[4].pop("lag")
    members[0].update(state="starting", lag="unknown")
    with FakePatroni("pg-0", members) as fake:
        def recover() -> None:
            time.sleep(0.4)
            fake.update("pg-0", state="running", lag=80_000_000)
            time.sleep(0.4)
            fake.update("pg-0", timeline=2, lag=0)     # caught up, but on an old timeline
            time.sleep(0.4)
            fake.update("pg-0", timeline=3, lag=10)

        threading.Thread(target=recover, daemon=True).start()
        started = time.monotonic()
        result = run_hook("patroni-restore.sh", {"PATRONI_URL": fake.url, "PATRONI_POLL_S": "0.1",
                                                 "QG_ACTION": "restore"})
        assert result.returncode == 0, result.stderr
        assert time.monotonic() - started >= 1.2
        assert fake.posts == []
    for expected in ("state starting", "lagging 80000000", "timeline 2", "back"):
        assert expected in result.stderr


@needs_curl_jq
def test_patroni_restore_times_out_and_needs_a_member_name() -> None:
    members = pg_members(leader="pg-4")
    members[4].update(role="leader")
    members[0].update(lag=50_000_000)
    with FakePatroni("pg-0", members) as fake:
        result = run_hook("patroni-restore.sh", {"PATRONI_URL": fake.url, "PATRONI_POLL_S": "0.2",
                                                 "PATRONI_WAIT_S": "1"})
        assert result.returncode == 6, result.stderr
        assert "lagging" in result.stderr
    with FakePatroni("pg-0", members, report_name=False) as fake:
        result = run_hook("patroni-restore.sh", {"PATRONI_URL": fake.url, "PATRONI_WAIT_S": "1"})
        assert result.returncode == 2, result.stderr
        assert "PATRONI_MEMBER" in result.stderr
        result = run_hook("patroni-restore.sh", {"PATRONI_URL": fake.url, "PATRONI_WAIT_S": "1",
                                                 "PATRONI_MEMBER": "pg-3", "PATRONI_POLL_S": "0.1"})
        assert result.returncode == 0, result.stderr


@needs_curl_jq
def test_patroni_dispatcher_runs_the_hook_of_the_action() -> None:
    with FakePatroni("pg-0", pg_members()) as fake:
        result = run_hook("patroni.sh", patroni_env(fake))
        assert result.returncode == 0, result.stderr
        assert fake.posts == [{"leader": "pg-0", "candidate": "pg-4"}]
        result = run_hook("patroni.sh", patroni_env(fake, QG_ACTION="restore"))
        assert result.returncode == 0, result.stderr
        assert "patroni-restore" in result.stderr
    assert run_hook("patroni.sh", {"QG_ACTION": "reboot"}).returncode == 2


# ------------------------------------------------------------------ hooks: HDFS

FAKE_HDFS = '''#!{python}
"""A fake `hdfs`: records its arguments; `dfsadmin -refreshNodes` and `dfsadmin -report`
answer from the dfs.hosts JSON file. A host set IN_MAINTENANCE shows "Entering
maintenance" for FAKE_HDFS_LAG reports after the refresh, then "In maintenance"."""
import json, os, sys
args = sys.argv[1:]
log = os.environ["FAKE_HDFS_LOG"]
with open(log, "a") as f:
    f.write(" ".join(args) + "\\n")
if args[:2] == ["dfsadmin", "-refreshNodes"]:
    if os.environ.get("FAKE_HDFS_REFRESH_FAILS"):
        print("refreshNodes: Connection refused", file=sys.stderr)
        sys.exit(255)
    print("Refresh nodes successful")
    sys.exit(0)
if args[:2] != ["dfsadmin", "-report"]:
    print("fake hdfs: unexpected arguments", args, file=sys.stderr)
    sys.exit(1)
calls = open(log).read().splitlines()
refresh = max(i for i, c in enumerate(calls) if c == "dfsadmin -refreshNodes")
reports = sum(1 for c in calls[refresh:] if c.startswith("dfsadmin -report"))
lag = int(os.environ.get("FAKE_HDFS_LAG", "0"))
down = set(os.environ.get("FAKE_HDFS_DEAD", "").split(","))
live = [e for e in json.load(open(os.environ["HDFS_HOSTS_FILE"])) if e["hostName"] not in down]
print("Configured Capacity: 1000 (1000 B)\\n-------------------------------------------------")
print(f"Live datanodes ({{len(live)}}):\\n")
for i, e in enumerate(live):
    state = e.get("adminState", "NORMAL")
    if state == "IN_MAINTENANCE":
        status = "In maintenance" if reports > lag else "Entering maintenance"
    elif state == "DECOMMISSIONED":
        status = "Decommissioned"
    else:
        status = "Normal"
    print(f"Name: 10.0.0.{{i + 4}}:9866 ({{e['hostName']}})\\nHostname: {{e['hostName']}}")
    print(f"Rack: /fd{{i % 3}}/ud{{i % 5}}\\nDecommission Status : {{status}}")
    print("Configured Capacity: 1000 (1000 B)\\nDFS Used: 10 (10 B)\\n")
'''


@pytest.fixture
def hdfs(tmp_path: Path) -> dict[str, Any]:
    """A dfs.hosts JSON file of three DataNodes and a fake `hdfs` first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "hdfs"
    fake.write_text(FAKE_HDFS.format(python=sys.executable))
    fake.chmod(0o755)
    hosts = tmp_path / "conf" / "dfs.hosts.json"
    hosts.parent.mkdir()
    entries = [{"hostName": "dn0.example.com", "upgradeDomain": "ud0"},
               {"hostName": "dn1.example.com", "port": 9866},
               {"hostName": "dn2.example.com", "adminState": "NORMAL"}]
    hosts.write_text(json.dumps(entries, indent=2))
    log = tmp_path / "hdfs.log"
    env = {"PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
           "HDFS_HOSTS_FILE": str(hosts), "HDFS_DATANODE_HOST": "DN1.example.com",
           "HDFS_POLL_S": "0.1", "FAKE_HDFS_LOG": str(log), "QG_VM": "vm-1"}
    return {"env": env, "hosts": hosts, "entries": entries, "log": log}


def calls(hdfs: dict[str, Any]) -> list[str]:
    return hdfs["log"].read_text().splitlines() if hdfs["log"].exists() else []


@needs_jq_flock
def test_hdfs_drain_puts_the_datanode_in_maintenance(hdfs: dict[str, Any]) -> None:
    not_before = time.time() + 900  # the event's NotBefore: the expiry counts from it
    result = run_hook("hdfs-datanode-drain.sh", {**hdfs["env"], "QG_ACTION": "drain",
                                                 "FAKE_HDFS_LAG": "2",
                                                 "QG_NOT_BEFORE": f"{not_before:.3f}",
                                                 "HDFS_MAINTENANCE_S": "3600",
                                                 "HDFS_MAINTENANCE_MARGIN_S": "600"})
    assert result.returncode == 0, result.stderr
    entries = json.loads(hdfs["hosts"].read_text())
    assert entries[0] == hdfs["entries"][0] and entries[2] == hdfs["entries"][2]
    mine = entries[1]
    assert mine["hostName"] == "dn1.example.com" and mine["port"] == 9866
    assert mine["adminState"] == "IN_MAINTENANCE"
    expected_ms = (not_before + 3600 + 600) * 1000
    assert expected_ms - 5000 <= mine["maintenanceExpireTimeInMS"] <= expected_ms + 5000
    log = calls(hdfs)
    assert log[0] == "dfsadmin -refreshNodes"
    assert log[1:] == ["dfsadmin -report"] * 3       # Entering, Entering, In maintenance
    assert "Entering maintenance" in result.stderr and "drained" in result.stderr


@needs_jq_flock
def test_hdfs_restore_puts_it_back_to_normal(hdfs: dict[str, Any]) -> None:
    assert run_hook("hdfs-datanode-drain.sh", hdfs["env"]).returncode == 0
    result = run_hook("hdfs-datanode-restore.sh", {**hdfs["env"], "QG_ACTION": "restore"})
    assert result.returncode == 0, result.stderr
    entries = json.loads(hdfs["hosts"].read_text())
    assert entries[1] == {"hostName": "dn1.example.com", "port": 9866, "adminState": "NORMAL"}
    assert entries[0] == hdfs["entries"][0]
    # back and reporting while still in maintenance, then the refresh, then Normal
    assert calls(hdfs)[-3:] == ["dfsadmin -report -live", "dfsadmin -refreshNodes",
                                "dfsadmin -report -live"]
    # twice is harmless: nothing to change, it still checks the node is live and Normal
    result = run_hook("hdfs-datanode-restore.sh", hdfs["env"])
    assert result.returncode == 0, result.stderr
    assert json.loads(hdfs["hosts"].read_text())[1]["adminState"] == "NORMAL"


@needs_jq_flock
def test_hdfs_restore_waits_until_the_datanode_is_live(hdfs: dict[str, Any]) -> None:
    assert run_hook("hdfs-datanode-drain.sh", hdfs["env"]).returncode == 0
    result = run_hook("hdfs-datanode-restore.sh", {**hdfs["env"], "HDFS_WAIT_S": "1",
                                                   "FAKE_HDFS_DEAD": "dn1.example.com"})
    assert result.returncode == 6, result.stderr
    assert "not among the live DataNodes" in result.stderr
    # maintenance is not ended while the node is dead: its replicas would be re-copied
    assert json.loads(hdfs["hosts"].read_text())[1]["adminState"] == "IN_MAINTENANCE"
    assert "dfsadmin -refreshNodes" not in calls(hdfs)[1:]


@needs_jq_flock
def test_hdfs_drain_refuses_what_it_cannot_do_safely(hdfs: dict[str, Any]) -> None:
    original = hdfs["hosts"].read_text()
    # a host missing from the include list: adding it alone would exclude every other node
    result = run_hook("hdfs-datanode-drain.sh", {**hdfs["env"],
                                                 "HDFS_DATANODE_HOST": "dn9.example.com"})
    assert result.returncode == 3, result.stderr
    assert "not listed" in result.stderr
    assert hdfs["hosts"].read_text() == original and calls(hdfs) == []
    # refreshNodes failing
    result = run_hook("hdfs-datanode-drain.sh", {**hdfs["env"], "FAKE_HDFS_REFRESH_FAILS": "1"})
    assert result.returncode == 4, result.stderr
    # never reaching "In maintenance": bounded
    started = time.monotonic()
    result = run_hook("hdfs-datanode-drain.sh", {**hdfs["env"], "FAKE_HDFS_LAG": "100000",
                                                 "HDFS_WAIT_S": "1"})
    assert result.returncode == 6, result.stderr
    assert time.monotonic() - started < 10
    # not configured
    env = {k: v for k, v in hdfs["env"].items() if k != "HDFS_HOSTS_FILE"}
    assert run_hook("hdfs-datanode-drain.sh", env).returncode == 2
    # a decommissioned node has nothing to drain, and restore does not revive it
    entries = json.loads(original)
    entries[1]["adminState"] = "DECOMMISSIONED"
    hdfs["hosts"].write_text(json.dumps(entries))
    for hook in ("hdfs-datanode-drain.sh", "hdfs-datanode-restore.sh"):
        result = run_hook(hook, hdfs["env"])
        assert result.returncode == 0, result.stderr
        assert json.loads(hdfs["hosts"].read_text())[1]["adminState"] == "DECOMMISSIONED"


@needs_jq_flock
def test_hdfs_concurrent_drains_keep_every_change(hdfs: dict[str, Any]) -> None:
    """One update domain drains several DataNodes at once: the flock keeps both edits."""
    env = {**hdfs["env"], "HDFS_HOSTS_SYNC": "sleep 0.3"}
    procs = [subprocess.Popen([str(HOOKS / "hdfs-datanode-drain.sh")],
                              env={**env, "HDFS_DATANODE_HOST": host},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for host in ("dn0.example.com", "dn2.example.com")]
    for proc in procs:
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err.decode()
    states = [e.get("adminState") for e in json.loads(hdfs["hosts"].read_text())]
    assert states == ["IN_MAINTENANCE", None, "IN_MAINTENANCE"]


@needs_jq_flock
def test_hdfs_dispatcher_runs_the_hook_of_the_action(hdfs: dict[str, Any]) -> None:
    assert run_hook("hdfs-datanode.sh", {**hdfs["env"], "QG_ACTION": "drain"}).returncode == 0
    assert json.loads(hdfs["hosts"].read_text())[1]["adminState"] == "IN_MAINTENANCE"
    assert run_hook("hdfs-datanode.sh", {**hdfs["env"], "QG_ACTION": "restore"}).returncode == 0
    assert json.loads(hdfs["hosts"].read_text())[1]["adminState"] == "NORMAL"
    assert run_hook("hdfs-datanode.sh", {**hdfs["env"], "QG_ACTION": ""}).returncode == 2


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


# ------------------------------------------------------------------ Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_installs_every_package_as_non_root() -> None:
    steps = dockerfile_instructions()
    froms = [rest for word, rest in steps if word == "FROM"]
    args = dict(rest.split("=", 1) for word, rest in steps if word == "ARG" and "=" in rest)
    assert args["PYTHON_IMAGE"] == "python:3.11-slim"
    assert all(f.split()[0] == "${PYTHON_IMAGE}" for f in froms) and len(froms) == 2
    last_stage = steps[max(i for i, (w, _) in enumerate(steps) if w == "FROM"):]
    user = [rest for word, rest in last_stage if word == "USER"]
    assert user and user[-1].split(":")[0] not in ("0", "root")
    assert json.loads(next(r for w, r in last_stage if w == "ENTRYPOINT")) == ["quorumgate"]

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"][
        "include"]}
    copied = [rest.split()[0] for word, rest in steps if word == "COPY" and "--from" not in rest]
    assert packages <= set(copied), f"the image misses {packages - set(copied)}"
    assert "pyproject.toml" in copied and pyproject["project"]["readme"] in copied
    # cache: dependencies are installed before any source is copied
    first_source = min(i for i, (w, r) in enumerate(steps) if w == "COPY" and
                       r.split()[0] in packages)
    pip = [i for i, (w, r) in enumerate(steps) if w == "RUN" and "pip install -r" in r]
    assert pip and pip[0] < first_source
    for src in copied:
        assert (ROOT / src).exists(), src

    # .dockerignore is an allow-list: everything copied must be allowed back in
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert set(copied) <= allowed


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


# ------------------------------------------------------------------ ZooKeeper


def test_zoo_cfg_runs_a_three_node_ensemble(tmp_path: Path) -> None:
    from quorumgate_testbed.zkserver import (
        ZooKeeperInstall,
        ZooKeeperNotFound,
        four_letter_word,
        free_ports,
        server_mode,
    )

    try:
        install = ZooKeeperInstall.locate()
    except ZooKeeperNotFound as exc:
        pytest.skip(str(exc))
    lines = (DEPLOY / "zookeeper" / "zoo.cfg").read_text().splitlines()
    settings = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert settings["admin.enableServer"] == "false"
    assert settings["4lw.commands.whitelist"] == "srvr,ruok,mntr"
    assert settings["standaloneEnabled"] == "false"
    assert sorted(k for k in settings if k.startswith("server.")) == [
        "server.1", "server.2", "server.3"]

    ports = free_ports(9)
    client, peer, election = ports[0:3], ports[3:6], ports[6:9]
    procs = []
    try:
        for i in (1, 2, 3):
            node = tmp_path / f"zk{i}"
            (node / "data").mkdir(parents=True)
            (node / "data" / "myid").write_text(f"{i}\n")
            cfg = []
            for line in lines:   # the file as it is, with this machine's paths and ports
                key = line.split("=", 1)[0]
                if key == "dataDir":
                    line = f"dataDir={node / 'data'}"
                elif key == "dataLogDir":
                    line = f"dataLogDir={node / 'datalog'}"
                elif key == "clientPort":
                    line = f"clientPort={client[i - 1]}\nclientPortAddress=127.0.0.1"
                elif key.startswith("server."):
                    n = int(key.split(".")[1]) - 1
                    line = f"{key}=127.0.0.1:{peer[n]}:{election[n]}"
                cfg.append(line)
            (node / "zoo.cfg").write_text("\n".join(cfg) + "\n")
            with open(node / "zookeeper.log", "wb") as log:
                procs.append(subprocess.Popen(
                    [install.java, "-Xmx128m", "-XX:+UseSerialGC",
                     "-Dzookeeper.root.logger=INFO,CONSOLE", "-cp",
                     os.pathsep.join(install.classpath),
                     "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(node / "zoo.cfg")],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        deadline = time.monotonic() + 45
        modes: list[str | None] = []
        while time.monotonic() < deadline:
            modes = [server_mode("127.0.0.1", port) for port in client]
            if all(m in ("leader", "follower") for m in modes):
                break
            assert all(p.poll() is None for p in procs), "a ZooKeeper node exited"
            time.sleep(0.2)
        assert sorted(modes) == ["follower", "follower", "leader"], modes
        assert four_letter_word("127.0.0.1", client[0], "ruok") == "imok"
        assert "zk_server_state" in four_letter_word("127.0.0.1", client[0], "mntr")
        assert "not in the whitelist" in four_letter_word("127.0.0.1", client[0], "conf")
        logs = "".join((tmp_path / f"zk{i}" / "zookeeper.log").read_text(errors="replace")
                       for i in (1, 2, 3))
        assert "Started AdminServer" not in logs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
