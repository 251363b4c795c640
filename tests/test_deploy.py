"""The deployment files in `deploy/` and `docker-compose.yml`, checked without Docker.

The hooks: executable, `bash -n`, shellcheck when installed, and run for real against
a fake Patroni REST API and a fake `hdfs` command.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

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
    before = time.time()
    result = run_hook("hdfs-datanode-drain.sh", {**hdfs["env"], "QG_ACTION": "drain",
                                                 "FAKE_HDFS_LAG": "2",
                                                 "HDFS_MAINTENANCE_S": "3600"})
    assert result.returncode == 0, result.stderr
    entries = json.loads(hdfs["hosts"].read_text())
    assert entries[0] == hdfs["entries"][0] and entries[2] == hdfs["entries"][2]
    mine = entries[1]
    assert mine["hostName"] == "dn1.example.com" and mine["port"] == 9866
    assert mine["adminState"] == "IN_MAINTENANCE"
    expected_ms = (before + 3600) * 1000
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
    assert calls(hdfs)[-2:] == ["dfsadmin -refreshNodes", "dfsadmin -report -live"]
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
