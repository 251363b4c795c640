"""The drain and restore hooks: executable, shellcheck-clean, and the Patroni hooks run
for real against a fake Patroni REST API."""

from __future__ import annotations

import json
import shutil
import socket
import stat
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.deploy.common import (
    HOOK_FILES,
    needs_curl_jq,
    run_hook,
)

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


