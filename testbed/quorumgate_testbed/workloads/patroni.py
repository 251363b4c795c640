"""A real PostgreSQL cluster under Patroni as a quorumgate workload.

Three simulated VMs, each in its own update domain, host one Patroni member each
(member name = VM name) with its PostgreSQL: Debian's `patroni` and `postgresql`
packages, plain processes on loopback ports, data in a temporary directory, run as the
`postgres` user when we are root (as ourselves otherwise). Patroni's DCS is the same
ZooKeeper as quorumgate's, under `/service/<scope>` (a fresh scope per run).

What ties it to quorumgate:

- **Membership from Patroni itself**: the coordinators run a `zookeeper` group provider
  on `/service/<scope>/members` (`member_to_vm="name"`, `min_available=2`), so the
  replica group is what Patroni has registered, not static config (`provider()`).
- **Reboots for real**: when the emulator takes a member's VM down, `vm_down` SIGKILLs
  the Patroni process, its postmaster and every child at once (SIGSTOP first, so nothing
  forks or reacts in between) — no clean shutdown, as a reboot; `vm_up` starts Patroni
  again, which recovers, rewinds if needed and rejoins.
- **Hooks**: the drain hook is deploy/hooks/patroni-switchover-drain.sh (on the leader:
  switchover through Patroni's REST API to a healthy replica outside the event's VMs,
  then wait until this member is a replica); the restore hook is
  deploy/hooks/patroni-restore.sh (back, running, on the leader's timeline, lag under
  `max_lag_bytes`) followed by `quorumgate_testbed.workloads.pgcheck` (the leader sees it
  *streaming* with replay lag under the same limit — Patroni 3.0 reports no streaming
  state). Their output is kept in `<dir>/hooks-<vm>.log`.
- **Load**: `loadgen.WriteLoad` commits numbered rows through the current leader for the
  whole run and reads them back at the end (lost acknowledged writes, outages).
- **Unplanned failovers**: a watcher polls Patroni's leader key
  (`/service/<scope>/leader`, every 0.1 s) and records every change of leader. A change
  from A to B is *planned* when our drain hook asked Patroni for exactly that
  switchover (A -> B) and Patroni accepted it (parsed from the hooks' logs; each request
  explains one change); every other change is an unplanned failover. A leader that
  loses its key and takes it again is no failover (no change of leader).

Patroni and PostgreSQL run in real time while the rollout runs on a virtual clock:
`patroni_spec()` picks speed 15 (15 min of notice = 1 min) and a reboot of 225 virtual
seconds (15 s real, longer than Patroni's ttl of 10 s, so a killed leader is failed
over rather than back before anyone noticed, as with a real reboot).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psycopg
import yaml

from coordinator.providers import ProviderConfig
from quorumgate_testbed.rollout import GroupSpec, RolloutSpec, Workload
from quorumgate_testbed.workloads.loadgen import WriteLoad, create_table, multi_host_dsn
from quorumgate_testbed.workloads.waits import wait_groups
from quorumgate_testbed.zkserver import free_ports, spawn
from registry.zookeeper import KazooClient, NoNodeError

if TYPE_CHECKING:
    from quorumgate_testbed.rollout import Rollout

PATRONI = "/usr/bin/patroni"
HOOKS_DIR = Path(__file__).resolve().parents[3] / "deploy" / "hooks"
DRAIN_HOOK = HOOKS_DIR / "patroni-switchover-drain.sh"
RESTORE_HOOK = HOOKS_DIR / "patroni-restore.sh"
INSTALL_HINT = "run `scripts/bootstrap.sh --with patroni` as root (Debian's patroni, postgresql)"


class PatroniError(RuntimeError):
    """The Patroni cluster did not start, get healthy or stop in time."""


# --------------------------------------------------------------------------- install


def postgres_bin_dir() -> Path | None:
    """The newest `/usr/lib/postgresql/<major>/bin` with a `postgres` binary."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(re.sub(r"\D", "", Path(p).parts[-3]) or 0))
    return Path(found[-1]).parent if found else None


def _as_root() -> bool:
    return os.geteuid() == 0


def find_patroni() -> str | None:
    """None when a Patroni cluster can run here, else a one-line explanation."""
    missing = []
    if not os.access(PATRONI, os.X_OK):
        missing.append(PATRONI)
    if postgres_bin_dir() is None:
        missing.append("/usr/lib/postgresql/*/bin/postgres")
    for tool in ("curl", "jq", "bash"):
        if shutil.which(tool) is None:
            missing.append(tool)
    if not missing:
        kazoo = subprocess.run(["/usr/bin/python3", "-c", "import kazoo"],
                               capture_output=True, check=False)
        if kazoo.returncode != 0:
            missing.append("python3-kazoo (Patroni's ZooKeeper DCS)")
    if missing:
        return f"Patroni/PostgreSQL not usable: missing {', '.join(missing)}; {INSTALL_HINT}"
    if _as_root():
        if shutil.which("setpriv") is None:
            return "running Patroni as postgres needs setpriv (util-linux)"
        try:
            import pwd
            pwd.getpwnam("postgres")
        except KeyError:
            return "no `postgres` user (install Debian's postgresql package)"
    return None


# --------------------------------------------------------------------------- processes


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, session) of a process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[3])


def _alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _family(roots: set[int], sessions: set[int]) -> list[int]:
    """Live processes that are in `roots`, descend from one of them, or belong to one of
    `sessions` (PostgreSQL's children call setsid(), so sessions alone miss them)."""
    children: dict[int, list[int]] = {}
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is None or stat[0] in ("Z", "X"):
                continue
            children.setdefault(stat[1], []).append(int(entry))
            if stat[2] in sessions or int(entry) in roots:
                found.add(int(entry))
    todo = list(found)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return sorted(found)


def _signal(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


@dataclass
class Member:
    name: str
    pg_port: int
    api_port: int
    dir: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    kills: int = 0

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def config_path(self) -> Path:
        return self.dir / "patroni.yml"

    @property
    def log_path(self) -> Path:
        return self.dir / "patroni.log"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def postmaster_pid(self) -> int | None:
        """The postmaster of this member's data dir, when one runs."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if str(self.data_dir).encode() in cmdline and _alive(pid) else None


_clusters: weakref.WeakSet[PatroniCluster] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    for cluster in list(_clusters):
        with contextlib.suppress(Exception):
            cluster.close(graceful=False)


class PatroniCluster:
    """Patroni members on loopback, started and stopped (or killed) by PID."""

    def __init__(self, names: Sequence[str], zk_hosts: str = "", scope: str = "",
                 namespace: str = "/service/", *, ttl: int = 10, loop_wait: int = 2,
                 retry_timeout: int = 4, max_lag_bytes: int = 1024 * 1024,
                 synchronous: bool = True) -> None:
        self.names = list(names)
        self.synchronous = synchronous
        """Patroni's synchronous_mode: a commit is acknowledged only once a standby has
        it, so a switchover to that standby cannot lose it. With asynchronous
        replication even a planned switchover can drop the last acknowledged commits
        (seen here: one commit in one of many runs)."""
        self.zk_hosts = zk_hosts
        self.scope = scope or f"qg-{uuid.uuid4().hex[:8]}"
        self.namespace = "/" + namespace.strip("/") + "/"
        self.ttl, self.loop_wait, self.retry_timeout = ttl, loop_wait, retry_timeout
        self.max_lag_bytes = max_lag_bytes
        self.password = secrets.token_hex(12)
        ports = free_ports(2 * len(self.names))
        self.base: Path | None = None
        self.members = {name: Member(name, ports[2 * i], ports[2 * i + 1], Path())
                        for i, name in enumerate(self.names)}
        self._locks = {name: threading.Lock() for name in self.names}
        self._http: httpx.Client | None = None

    # paths and strings

    @property
    def zk_path(self) -> str:
        """Patroni's znode for this cluster: `/service/<scope>`."""
        return f"{self.namespace}{self.scope}"

    @property
    def dsn(self) -> str:
        """A read-write connection string over every member (lands on the leader)."""
        return multi_host_dsn([m.pg_port for m in self.members.values()], self.password)

    def member_dsn(self, name: str) -> str:
        port = self.members[name].pg_port
        return (f"host=127.0.0.1 port={port} dbname=postgres user=postgres "
                f"password={self.password} connect_timeout=2")

    def _config(self, member: Member, bin_dir: Path) -> dict[str, Any]:
        assert self.base is not None
        return {
            "scope": self.scope,
            "namespace": self.namespace,
            "name": member.name,
            "restapi": {"listen": f"127.0.0.1:{member.api_port}",
                        "connect_address": f"127.0.0.1:{member.api_port}"},
            "zookeeper": {"hosts": self.zk_hosts.split(",")},
            "bootstrap": {
                "dcs": {"ttl": self.ttl, "loop_wait": self.loop_wait,
                        "retry_timeout": self.retry_timeout,
                        "maximum_lag_on_failover": self.max_lag_bytes,
                        "synchronous_mode": self.synchronous,
                        "postgresql": {
                            "use_pg_rewind": True, "use_slots": True,
                            "parameters": {"wal_level": "replica", "hot_standby": "on",
                                           "wal_log_hints": "on", "max_wal_senders": 10,
                                           "max_replication_slots": 10}}},
                "initdb": [{"encoding": "UTF8"}, "data-checksums"],
                "pg_hba": ["host replication replicator 127.0.0.1/32 md5",
                           "host all all 127.0.0.1/32 md5"],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{member.pg_port}",
                "connect_address": f"127.0.0.1:{member.pg_port}",
                "data_dir": str(member.data_dir),
                "bin_dir": str(bin_dir),
                "pgpass": str(member.dir / "pgpass"),
                "authentication": {
                    "replication": {"username": "replicator", "password": self.password},
                    "superuser": {"username": "postgres", "password": self.password},
                    "rewind": {"username": "rewinder", "password": self.password},
                },
                "parameters": {"unix_socket_directories": str(self.base / "sock"),
                               "shared_buffers": "32MB", "max_connections": 40},
            },
        }

    # life cycle

    def prepare(self) -> None:
        """Temp dirs and configs (owned by postgres when we are root)."""
        if problem := find_patroni():
            raise PatroniError(problem)
        if not self.zk_hosts:
            raise PatroniError("no ZooKeeper hosts for Patroni's DCS")
        bin_dir = postgres_bin_dir()
        assert bin_dir is not None
        self.base = Path(tempfile.mkdtemp(prefix="quorumgate-patroni-"))
        (self.base / "sock").mkdir()
        for member in self.members.values():
            member.dir = self.base / member.name
            member.dir.mkdir()
            member.config_path.write_text(yaml.safe_dump(self._config(member, bin_dir)))
        if _as_root():
            import pwd
            user = pwd.getpwnam("postgres")
            for path in [self.base, *self.base.rglob("*")]:
                os.chown(path, user.pw_uid, user.pw_gid)
        _clusters.add(self)

    def _command(self, member: Member) -> list[str]:
        if _as_root():
            home = "/var/lib/postgresql"
            prefix = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
                      "--pdeathsig=KILL"]
        else:
            home = str(member.dir)
            prefix = ["setpriv", "--pdeathsig=KILL"] if shutil.which("setpriv") else []
        # setpriv and env exec: the PID we get is Patroni's own.
        return [*prefix, "env", "-i", f"HOME={home}", "PATH=/usr/bin:/bin",
                "LANG=C.UTF-8", "LC_ALL=C.UTF-8", PATRONI, str(member.config_path)]

    def start_member(self, name: str) -> int:
        member = self.members[name]
        assert self.base is not None, "prepare() first"
        with self._locks[name]:
            if member.proc is not None and member.proc.poll() is None:
                return member.proc.pid

            # forked by the test bed's one spawner thread; setpriv sets the parent-death
            # signal itself (after dropping to postgres, which would clear ours)
            with open(member.log_path, "ab") as log:
                member.proc = spawn(self._command(member), cwd=member.dir,
                                    stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    die_with_parent=False)
            member.starts += 1
            return member.proc.pid

    def start(self) -> None:
        if self.base is None:
            self.prepare()
        for name in self.names:
            self.start_member(name)

    def member_pids(self, name: str) -> list[int]:
        """Patroni, its children (pg_rewind, pg_basebackup...), the postmaster and its
        children: everything in Patroni's session and in the postmaster's."""
        member = self.members[name]
        roots = set()
        if member.proc is not None and member.proc.poll() is None:
            roots.add(member.proc.pid)
        if (pm := member.postmaster_pid()) is not None:
            roots.add(pm)
        return _family(roots, roots) if roots else []

    def kill_member(self, name: str, timeout: float = 10.0) -> list[int]:
        """What a reboot does to the member: every process gone at once, no shutdown."""
        member = self.members[name]
        with self._locks[name]:
            killed: set[int] = set()
            deadline = time.monotonic() + timeout
            while pids := [p for p in self.member_pids(name) if p not in killed]:
                _signal(pids, signal.SIGSTOP)  # nothing forks, restarts or reacts now
                _signal(pids, signal.SIGKILL)
                killed.update(pids)
                if time.monotonic() > deadline:
                    break
            if member.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    member.proc.wait(max(0.1, deadline - time.monotonic()))
                member.proc = None
            while any(_alive(p) for p in killed) and time.monotonic() < deadline:
                time.sleep(0.02)
            member.kills += 1
            return sorted(killed)

    def stop_member(self, name: str, timeout: float = 15.0) -> None:
        """Patroni's clean stop (SIGTERM: it stops PostgreSQL), then kill what is left."""
        member = self.members[name]
        if member.proc is not None and member.proc.poll() is None:
            member.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                member.proc.wait(timeout)
        if self.member_pids(name):
            self.kill_member(name)

    def close(self, graceful: bool = True) -> None:
        """Stop every member (in parallel), delete Patroni's znodes and the temp dir."""
        stop: Callable[[str], object] = self.stop_member if graceful else self.kill_member
        threads = [threading.Thread(target=stop, args=(n,)) for n in self.names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        if graceful and self.zk_hosts:
            with contextlib.suppress(Exception):
                client = KazooClient(hosts=self.zk_hosts, timeout=10.0)
                client.start(timeout=10)
                try:
                    client.delete(self.zk_path, recursive=True)
                finally:
                    client.stop()
                    client.close()
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None
        if self._http is not None:
            self._http.close()
            self._http = None
        _clusters.discard(self)

    # state

    def cluster_status(self) -> dict[str, Any] | None:
        """Patroni's `GET /cluster` from the first member that answers."""
        if self._http is None:
            self._http = httpx.Client(timeout=3.0, trust_env=False)
        for member in self.members.values():
            try:
                response = self._http.get(f"{member.api_url}/cluster")
                if response.status_code == 200:
                    return response.json()
            except (httpx.HTTPError, ValueError):
                continue
        return None

    def leader(self) -> str | None:
        status = self.cluster_status() or {}
        return next((m["name"] for m in status.get("members", [])
                     if m.get("role") in ("leader", "master")), None)

    def health(self, expect: Sequence[str] | None = None) -> str:
        """'' when healthy: one running leader, every expected member a running replica
        on its timeline within the lag limit, streaming from it; else what is wrong."""
        expect = list(expect or self.names)
        status = self.cluster_status()
        if status is None:
            return "no member's REST API answers"
        members = {m["name"]: m for m in status.get("members", [])}
        leaders = [m for m in members.values() if m.get("role") in ("leader", "master")]
        if len(leaders) != 1 or leaders[0].get("state") != "running":
            return f"leaders: {[(m['name'], m.get('state')) for m in leaders]}"
        leader = leaders[0]
        replicas = [n for n in expect if n != leader["name"]]
        for name in replicas:
            m = members.get(name)
            if m is None:
                return f"{name} not listed"
            lag = m.get("lag")
            if m.get("state") != "running" or not isinstance(lag, int) \
                    or lag > self.max_lag_bytes or m.get("timeline") != leader.get("timeline"):
                return (f"{name}: {m.get('role')}/{m.get('state')} lag {lag} timeline "
                        f"{m.get('timeline')} (leader {leader.get('timeline')})")
        try:
            with psycopg.connect(self.member_dsn(leader["name"]), autocommit=True) as conn:
                rows = conn.execute("SELECT application_name FROM pg_stat_replication "
                                    "WHERE state = 'streaming'").fetchall()
        except psycopg.Error as exc:
            return f"leader {leader['name']}: {type(exc).__name__}"
        missing = set(replicas) - {r[0] for r in rows}
        return f"not streaming: {sorted(missing)}" if missing else ""

    def wait_healthy(self, timeout: float = 90.0, expect: Sequence[str] | None = None) -> None:
        deadline = time.monotonic() + timeout
        while problem := self.health(expect):
            exited = [m.name for m in self.members.values()
                      if m.proc is not None and m.proc.poll() is not None]
            if exited:
                raise PatroniError(f"Patroni exited on {', '.join(exited)}\n{self.log_tail()}")
            if time.monotonic() >= deadline:
                raise PatroniError(f"Patroni cluster not healthy after {timeout:g}s: {problem}"
                                   f"\n{self.log_tail()}")
            time.sleep(0.5)

    def switchover(self, candidate: str, timeout: float = 60.0) -> None:
        """Make `candidate` the leader (Patroni's planned switchover), then wait healthy."""
        leader = self.leader()
        if leader == candidate:
            return
        if self.synchronous and not self._is_sync_standby(candidate):
            # Patroni only switches over to its synchronous standby: for this one-off
            # placement, relax synchronous mode, switch, and restore it.
            self._set_synchronous(False, timeout)
            try:
                self._switchover(leader, candidate, timeout)
            finally:
                self._set_synchronous(True, timeout)
            return
        self._switchover(leader, candidate, timeout)

    def _is_sync_standby(self, name: str) -> bool:
        try:
            cluster = httpx.get(f"{self.members[name].api_url}/cluster", timeout=5,
                                trust_env=False).json()
        except (httpx.HTTPError, ValueError):
            return False
        return any(m.get("name") == name and m.get("role") == "sync_standby"
                   for m in cluster.get("members", []))

    def _set_synchronous(self, on: bool, timeout: float) -> None:
        leader = self.leader() or self.names[0]
        try:
            httpx.patch(f"{self.members[leader].api_url}/config",
                        json={"synchronous_mode": on}, timeout=timeout,
                        trust_env=False).raise_for_status()
        except httpx.HTTPError as exc:
            raise PatroniError(f"setting synchronous_mode={on}: {exc!r}") from exc
        deadline = time.monotonic() + timeout
        while on and not any(self._is_sync_standby(n) for n in self.names):
            if time.monotonic() >= deadline:
                raise PatroniError("no synchronous standby after re-enabling synchronous mode")
            time.sleep(0.3)

    def _switchover(self, leader: str | None, candidate: str, timeout: float) -> None:
        try:
            response = httpx.post(f"{self.members[candidate].api_url}/switchover",
                                  json={"leader": leader, "candidate": candidate},
                                  timeout=timeout, trust_env=False)
        except httpx.HTTPError as exc:
            raise PatroniError(f"switchover to {candidate}: {exc!r}") from exc
        if response.status_code not in (200, 202):
            raise PatroniError(f"switchover to {candidate} refused: {response.status_code} "
                               f"{response.text[:200]}")
        deadline = time.monotonic() + timeout
        while self.leader() != candidate:
            if time.monotonic() >= deadline:
                raise PatroniError(f"{candidate} does not lead after the switchover")
            time.sleep(0.2)
        self.wait_healthy(max(5.0, deadline - time.monotonic()))

    def log_tail(self, lines: int = 15) -> str:
        out = []
        for member in self.members.values():
            with contextlib.suppress(OSError):
                text = member.log_path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {member.name} ({member.log_path})\n" + "\n".join(text))
        return "\n".join(out)


# --------------------------------------------------------------------------- failovers


class LeaderWatch:
    """Polls Patroni's leader key and keeps every change: [(monotonic, wall, leader)]."""

    def __init__(self, zk_hosts: str, path: str, interval_s: float = 0.1) -> None:
        self.path = path
        self.interval_s = interval_s
        self.changes: list[tuple[float, float, str | None]] = []
        self._client = KazooClient(hosts=zk_hosts, timeout=10.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="patroni-leader", daemon=True)

    def start(self) -> None:
        self._client.start(timeout=15)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                data, _ = self._client.get(self.path)
                leader: str | None = data.decode() or None
            except NoNodeError:
                leader = None
            except Exception:  # a ZooKeeper blip: look again
                continue
            if not self.changes or self.changes[-1][2] != leader:
                self.changes.append((time.monotonic(), time.time(), leader))

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        with contextlib.suppress(Exception):
            self._client.stop()
            self._client.close()

    def leaders(self) -> list[str | None]:
        return [leader for _, _, leader in self.changes]


_SWITCHING = re.compile(r"switching over: (\{.*\})")


def parse_switchovers(log_text: str) -> list[tuple[str, str]]:
    """(leader, candidate) of each switchover the drain hook asked for and Patroni took
    (HTTP 200/202, or no answer in time); refused ones are left out."""
    found: list[tuple[str, str]] = []
    pending: tuple[str, str] | None = None
    for line in log_text.splitlines():
        if "patroni-switchover-drain:" not in line:
            continue
        if match := _SWITCHING.search(line):
            try:
                body = json.loads(match.group(1))
                pending = (str(body["leader"]), str(body["candidate"]))
            except (ValueError, KeyError, TypeError):
                pending = None
        elif pending and ("drain: Patroni: " in line or "no answer to the switchover" in line):
            found.append(pending)
            pending = None
        elif "ERROR:" in line:
            pending = None
    return found


@dataclass
class Failovers:
    changes: list[tuple[str, str]]
    """Every change of leader, in order."""
    planned: list[tuple[str, str]]
    """Those our drain hook asked for."""
    unplanned: list[tuple[str, str]] = field(default_factory=list)


def classify_leader_changes(leaders: Sequence[str | None],
                            switchovers: Sequence[tuple[str, str]]) -> Failovers:
    """Leader changes, split into our switchovers and unplanned failovers.

    `leaders`: the leader key's successive values (None: no leader). A -> None -> A is
    no change; A -> (None ->) B is one. Each switchover the hook requested explains at
    most one change from its leader to its candidate.
    """
    seen = [leader for leader in leaders if leader]
    changes = [(a, b) for a, b in zip(seen, seen[1:], strict=False) if a != b]
    remaining = Counter(switchovers)
    result = Failovers(changes=changes, planned=[])
    for change in changes:
        if remaining[change] > 0:
            remaining[change] -= 1
            result.planned.append(change)
        else:
            result.unplanned.append(change)
    return result


# --------------------------------------------------------------------------- the workload


class PatroniWorkload(Workload):
    """Patroni members on some of the rollout's VMs, a write load, and their report."""

    def __init__(self, members: Sequence[str] = ("vm-0", "vm-1", "vm-2"), *,
                 group: str = "patroni", min_available: int = 2, ttl: int = 10,
                 loop_wait: int = 2, retry_timeout: int = 4,
                 max_lag_bytes: int = 1024 * 1024, setup_timeout_s: float = 120.0,
                 initial_leader: str | None = None,
                 say: Callable[[str], None] | None = None) -> None:
        self.member_names = list(members)
        self.initial_leader = initial_leader
        """Switch over to this member before the rollout (same start for every run)."""
        self.group = group
        self.min_available = min_available
        self.setup_timeout_s = setup_timeout_s
        self.say = say or (lambda line: None)
        self.cluster = PatroniCluster(self.member_names, ttl=ttl, loop_wait=loop_wait,
                                      retry_timeout=retry_timeout, max_lag_bytes=max_lag_bytes)
        self.load: WriteLoad | None = None
        self.watch: LeaderWatch | None = None
        self.vm_events: list[tuple[float, str, str]] = []
        self._report: dict[str, Any] | None = None

    @property
    def scope(self) -> str:
        return self.cluster.scope

    def provider(self, interval_s: float = 1.0) -> ProviderConfig:
        """The coordinators' group provider: Patroni's own member records."""
        return ProviderConfig(id=self.group, kind="zookeeper", group=self.group,
                              path=f"{self.cluster.zk_path}/members", member_to_vm="name",
                              min_available=self.min_available, interval_s=interval_s)

    def checked_group(self) -> GroupSpec:
        """The same group for the rollout's ground-truth checker."""
        return GroupSpec(self.group, self.member_names, self.min_available)

    def describe(self) -> list[str]:
        lines = [f"Patroni        scope {self.scope} in ZooKeeper {self.cluster.zk_path}, "
                 f"data in {self.cluster.base}"]
        for m in self.cluster.members.values():
            lines.append(f"  member {m.name}: REST {m.api_url}, PostgreSQL 127.0.0.1:"
                         f"{m.pg_port}, log {m.log_path}")
        lines.append(f"  group {self.group} from {self.cluster.zk_path}/members "
                     f"(min_available {self.min_available})")
        return lines

    # Workload

    def setup(self, rollout: Rollout) -> None:
        """Start the members, wait until they are healthy and the group is published,
        then start the write load and the leader watch (bounded by setup_timeout_s)."""
        deadline = time.monotonic() + self.setup_timeout_s
        self.cluster.zk_hosts = rollout.zk_hosts
        self.cluster.start()
        self.cluster.wait_healthy(max(5.0, deadline - time.monotonic()))
        if self.initial_leader:
            self.cluster.switchover(self.initial_leader,
                                    max(5.0, deadline - time.monotonic()))
        self.say(f"Patroni cluster {self.scope} healthy; leader {self.cluster.leader()}")
        if rollout.coordinators:
            wait_groups(rollout, self.group, self.member_names, deadline,
                        lambda left: PatroniError(f"group {self.group} not published by "
                                                  f"the provider (missing {list(left)})"))
        create_table(self.cluster.dsn, max(5.0, deadline - time.monotonic()))
        self.watch = LeaderWatch(rollout.zk_hosts, f"{self.cluster.zk_path}/leader")
        self.watch.start()
        self.load = WriteLoad(self.cluster.dsn)
        self.load.start()
        if not self.load.wait_acks(10, max(5.0, deadline - time.monotonic())):
            raise PatroniError(f"the write load commits nothing: {dict(self.load.errors)}")

    def agent_settings(self, vm: str) -> dict[str, Any]:
        if vm not in self.cluster.members:
            return {}
        member = self.cluster.members[vm]
        log = self.cluster.base / f"hooks-{vm}.log" if self.cluster.base else Path(os.devnull)
        env = ["env", f"PATRONI_URL={member.api_url}", f"PATRONI_MEMBER={vm}",
               f"PATRONI_MAX_LAG_BYTES={self.cluster.max_lag_bytes}", "PATRONI_POLL_S=0.5",
               f"QG_HOOK_LOG={log}"]
        tee = 'set -o pipefail; { "$@"; } 2>&1 | tee -a "$QG_HOOK_LOG"'
        drain = [*env, "PATRONI_SWITCHOVER_TIMEOUT_S=30", "PATRONI_WAIT_S=60",
                 "bash", "-c", tee, "patroni-drain", str(DRAIN_HOOK)]
        both = 'set -o pipefail; { "$1" && shift && "$@"; } 2>&1 | tee -a "$QG_HOOK_LOG"'
        restore = [*env, "PATRONI_WAIT_S=120", f"QG_PG_DSN={self.cluster.dsn}",
                   "bash", "-c", both, "patroni-restore", str(RESTORE_HOOK),
                   sys.executable, "-m", "quorumgate_testbed.workloads.pgcheck", "--member", vm,
                   "--port", str(member.pg_port), "--timeout", "60",
                   "--max-lag-bytes", str(self.cluster.max_lag_bytes)]
        return {"drain_hook": {"command": drain, "timeout_s": 120},
                "restore_hook": {"command": restore, "timeout_s": 240}}

    def vm_down(self, vm: str) -> None:
        if vm in self.cluster.members:
            pids = self.cluster.kill_member(vm)
            self.vm_events.append((time.time(), vm, "down"))
            self.say(f"  {vm} rebooting: killed Patroni and PostgreSQL (pids "
                     f"{', '.join(map(str, pids))})")

    def vm_up(self, vm: str) -> None:
        if vm in self.cluster.members:
            pid = self.cluster.start_member(vm)
            self.vm_events.append((time.time(), vm, "up"))
            self.say(f"  {vm} back: Patroni started again (pid {pid})")

    def switchovers(self) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        for vm in self.member_names:
            if self.cluster.base is not None:
                with contextlib.suppress(OSError):
                    path = self.cluster.base / f"hooks-{vm}.log"
                    found += parse_switchovers(path.read_text(errors="replace"))
        return found

    def report(self, settle_timeout_s: float = 90.0) -> dict[str, Any]:
        """Let the cluster heal (the load keeps writing), then stop the load, read the
        table back from the leader and count failovers. Computed once."""
        if self._report is not None:
            return self._report
        healthy = True
        try:
            self.cluster.wait_healthy(settle_timeout_s)
        except PatroniError:
            healthy = False
        load = self.load.finish() if self.load else None
        if self.watch:
            self.watch.stop()
        switchovers = self.switchovers()
        failovers = classify_leader_changes(self.watch.leaders() if self.watch else [],
                                            switchovers)
        status = self.cluster.cluster_status() or {}
        self._report = {
            "acknowledged_writes": load.acknowledged if load else 0,
            "lost_writes": load.lost if load else -1,
            "lost_ids": load.lost_ids if load else [],
            "unacknowledged_present": load.unacknowledged_present if load else 0,
            "failed_attempts": load.failed_attempts if load else 0,
            "write_errors": load.errors if load else {},
            "longest_write_outage_s": load.longest_outage_s if load else None,
            "failed_write_s": load.failed_write_s if load else None,
            "outages": load.outages if load else [],
            "load_duration_s": load.duration_s if load else 0.0,
            "leader_changes": [list(c) for c in failovers.changes],
            "switchovers_by_hook": len(failovers.planned),
            "switchover_requests": [list(s) for s in switchovers],
            "unplanned_failovers": len(failovers.unplanned),
            "unplanned": [list(c) for c in failovers.unplanned],
            "healthy_at_end": healthy,
            "members_at_end": [{k: m.get(k) for k in ("name", "role", "state", "timeline",
                                                        "lag")}
                               for m in status.get("members", [])],
            "reboots": {m.name: m.kills for m in self.cluster.members.values()},
        }
        return self._report

    def teardown(self) -> None:
        if self.load is not None:
            self.load.stop()
        if self.watch is not None:
            self.watch.stop()
        self.cluster.close()


def patroni_spec(strategy: str = "quorumgate", *, vms: int = 3, speed: float = 15.0,
                 downtime_s: float = 225.0, timeout_s: float | None = None,
                 groups: Sequence[GroupSpec] = (), coordinators: int = 2,
                 say: Callable[[str], None] | None = None, **workload: Any) -> RolloutSpec:
    """The Patroni scenario: 3 FDs x 3 UDs, members on vm-0, vm-1, vm-2 (one per UD and
    FD), their group from Patroni's records in ZooKeeper, a rollout of every UD. The
    leader starts on vm-0 (the first UD the platform walks) unless `initial_leader`
    says otherwise, so that runs and strategies start alike."""
    if vms < 3:
        raise ValueError("the Patroni scenario needs at least 3 VMs")
    workload.setdefault("initial_leader", "vm-0")
    load = PatroniWorkload(("vm-0", "vm-1", "vm-2"), say=say, **workload)
    if timeout_s is None:  # never-ack waits three full notices
        timeout_s = 900.0 if strategy == "never-ack" else 300.0
    return RolloutSpec(cluster={"vms": vms, "fds": 3, "uds": 3}, groups=list(groups),
                       speed=speed, downtime_s=downtime_s, strategy=strategy,
                       coordinators=coordinators, workload=load, timeout_s=timeout_s,
                       providers=[load.provider()], checked_groups=[load.checked_group()])


def report_table(rows: dict[str, tuple[Any, dict[str, Any]]]) -> str:
    """One line per strategy: {strategy: (Summary, workload report)}."""
    head = (f"{'strategy':<13} {'acked writes':>12} {'lost':>5} {'longest outage':>15} "
            f"{'failed writes':>14} {'unplanned failovers':>20} {'switchovers':>12} "
            f"{'rollout':>9} {'violations':>10}")
    lines = [head, "-" * len(head)]
    for name, (summary, rep) in rows.items():
        outage = rep.get("longest_write_outage_s")
        failed = rep.get("failed_write_s")
        lines.append(
            f"{name:<13} {rep.get('acknowledged_writes', 0):>12} "
            f"{rep.get('lost_writes', -1):>5} "
            f"{(f'{outage:.1f} s' if outage is not None else '-'):>15} "
            f"{(f'{failed:.1f} s' if failed is not None else '-'):>14} "
            f"{rep.get('unplanned_failovers', 0):>20} {rep.get('switchovers_by_hook', 0):>12} "
            f"{summary.rollout_s / 60:>5.1f} min {len(summary.violations):>10}"
            + ("" if summary.completed else "  (incomplete)"))
    return "\n".join(lines)
