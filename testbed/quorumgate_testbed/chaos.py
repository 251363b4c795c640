"""`quorumgate chaos`: a seeded nemesis against a real running stack, judged from outside.

The stack: a real 3-node ZooKeeper ensemble, coordinator replicas and one process per
simulated VM (its agent runs there; see `quorumgate_testbed.procs`), each in its own network
namespace when the machine allows it (root and iproute2; see `quorumgate_testbed.netns`), and
the IMDS emulator on a fast virtual clock. The platform keeps scheduling maintenance:
events for one update domain or a few of its VMs, several in flight, Azure's notice, and
now and then an event it reshapes (cancelled, started at once, spanning two update
domains, naming a VM another event already names). Replica groups are placed as real
clusters are (mostly spread over fault and update domains by the placement API, a share
placed badly, sizes 3 and 5, VMs in several groups) and change during the run.

The nemesis, seeded, injects faults of many kinds: coordinator kills and freezes,
ZooKeeper nodes stopped (one; two: quorum lost) and its leader frozen, agents stopped,
crashed and frozen, network partitions (agent from ZooKeeper, agent from IMDS, the
leader with a ZooKeeper minority from the majority, a ZooKeeper node from its peers,
asymmetric, flapping), packet loss and slow links, clock skew and jumps of one agent or
coordinator, a session cut off while an acknowledgement or decision is in flight, IMDS
errors, failing and hanging drain hooks, stale and malformed records. Every fault heals
from the harness's main thread; crashed processes come back as a supervisor (systemd)
would bring them back, and ZooKeeper is whole again before the next ZooKeeper fault.

The checker (`quorumgate_testbed.checker`) trusts no coordinator: from the emulator's account
(events, their causes, up/down times, every acknowledgement POST) and the hook journal
it finds every moment an action of ours broke a group or the update-domain budget, every
event with more than one POST, every event left unfinished, and classifies every event:
acknowledged by us, forced, started without notice, cancelled; whether it was safely
acknowledgeable, and whether it was acknowledged within the bound once it was safe and
no fault touched it. The run fails on any of those, or when fewer than
`min_ack_share` of the safely acknowledgeable events were acknowledged by us.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import itertools
import json
import logging
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from coordinator.placement import PlacementError, PlacementRequest, place
from coordinator.safety import VMView
from coordinator.store import put_record
from quorumgate_testbed import checker, netns, zklog
from quorumgate_testbed.procs import CoordinatorProcess, RemoteAgent, VMHost
from quorumgate_testbed.rollout import GroupSpec, Rollout, RolloutSpec, Workload, rollout_stack
from quorumgate_testbed.zkserver import SERVING_MODES, ZooKeeperEnsemble
from registry.codec import decode, encode
from registry.records import DecisionState, Group, PlatformEvent, PlatformStatus, Policy
from registry.zk import make_client
from registry.zookeeper import NoNodeError

log = logging.getLogger(__name__)

TOKEN = "chaos-operator-token"
PROCESS_FAULTS = ("kill_leader", "pause_coordinator", "kill_agent", "crash_agent",
                  "freeze_agent", "zk_stop_one", "zk_stop_two", "zk_freeze_leader")
NETWORK_FAULTS = ("partition_agent_zk", "partition_agent_imds", "partition_leader_minority",
                  "partition_zk_node", "partition_asymmetric", "flapping_partition",
                  "packet_loss", "slow_link", "expire_in_flight")
OTHER_FAULTS = ("clock_skew_agent", "clock_jump_coordinator", "imds_fault", "hook_fail",
                "hook_hang", "stale_event", "malformed_record")
PLATFORM_FAULTS = ("cancel_event", "no_notice_event", "multi_ud_event", "overlapping_event",
                   "reshape_event", "second_impact")
DISK_FAULTS = ("zk_disk_full",)
FAULTS = PROCESS_FAULTS + NETWORK_FAULTS + DISK_FAULTS + OTHER_FAULTS + PLATFORM_FAULTS
ROOT_FAULTS = NETWORK_FAULTS + DISK_FAULTS
"""Need the lab (root): skipped, with the reason logged, without it."""
DISK_NODE = 2
"""The ZooKeeper node whose data lives on a small RAM disk that the nemesis fills."""


@dataclass
class ChaosSpec:
    seed: int = 1
    duration_s: float = 60.0
    """Real seconds of maintenance under the nemesis; then faults heal and events finish."""
    settle_s: float = 150.0
    vms: int = 30
    fds: int = 3
    uds: int = 5
    groups: int = 10
    bad_share: float = 0.2
    """Share of groups placed at random (some then hold two replicas in one UD)."""
    group_sizes: tuple[int, ...] = (3, 3, 5)
    group_change_every_s: tuple[float, float] = (15.0, 40.0)
    coordinators: int = 3
    speed: float = 60.0
    events_per_s: float = 2.0
    """Real-time rate at which the platform announces maintenance (when under the cap)."""
    batch: tuple[int, int] = (2, 6)
    """Events per update domain before the walk moves on."""
    max_in_flight: int = 14
    downtime_s: tuple[float, float] = (20.0, 60.0)
    nemesis_every_s: tuple[float, float] = (2.0, 5.0)
    faults: tuple[str, ...] = FAULTS
    network: bool = True
    """Put every process in its own network namespace (needs root); without it, the
    network fault kinds are skipped with the reason logged."""
    min_ack_share: float = 0.9
    keep: Path | None = None
    """Keep the run's files here (logs of every process, hook journals, the decisions as
    the coordinators last wrote them, the report) instead of deleting them."""


@dataclass
class ChaosReport:
    seed: int
    duration_s: float
    network: str
    faults: dict[str, int]
    group_changes: int
    events: int
    classes: dict[str, int]
    acknowledgeable: int
    acknowledged_share: float | None
    time_to_ack_s: dict[str, float | None]
    """Virtual seconds from an event becoming safe to our acknowledgement: p50, p95, max."""
    violations: list[dict[str, Any]]
    double_acks: list[dict[str, Any]]
    late: list[dict[str, Any]]
    unfinished: list[dict[str, Any]]
    longest_without_leader_s: float
    coordinator_restarts: int
    ack_bound_s: float
    ack_window_s: float
    min_ack_share: float
    safe_under_faults: int = 0
    """Events not acknowledged by us that were safe long enough only while faults touched
    them: outside the judged share, inside `strict_share`."""
    fencing: dict[str, Any] = field(default_factory=dict)
    """Leader writes replayed against the election in ZooKeeper's log: how many, by how
    many leader sessions, and any committed while its writer did not lead."""
    load: dict[str, float] = field(default_factory=dict)
    """The machine's load average (1 min) during the run: mean and max, and its cores."""
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    baseline: dict[str, Any] | None = None
    log: list[str] = field(default_factory=list)

    @property
    def strict_share(self) -> float | None:
        """Acknowledged by us among every event safe long enough, faults or not."""
        acked = round((self.acknowledged_share or 0.0) * self.acknowledgeable)
        total = self.acknowledgeable + self.safe_under_faults
        return acked / total if total else None

    @property
    def share_ok(self) -> bool:
        return self.acknowledged_share is None or self.acknowledged_share >= self.min_ack_share

    @property
    def ok(self) -> bool:
        return not (self.violations or self.double_acks or self.unfinished or self.late
                    or self.fencing.get("violations")) and self.share_ok

    def table(self) -> str:
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())) or "none"
        classes = "  ".join(f"{k} {v}" for k, v in sorted(self.classes.items()))
        share = ("-" if self.acknowledged_share is None
                 else f"{100 * self.acknowledged_share:.0f} %")
        tta = "  ".join(f"{k} {v:.0f} s" if v is not None else f"{k} -"
                        for k, v in self.time_to_ack_s.items())
        strict = "-" if self.strict_share is None else f"{100 * self.strict_share:.0f} %"
        lines = [
            f"seed {self.seed}, {self.duration_s:.0f} s under the nemesis, network: "
            f"{self.network}",
            f"faults injected ({sum(self.faults.values())} of {len(self.faults)} kinds): "
            f"{faults}; group changes {self.group_changes}",
            f"events {self.events}: {classes}",
            f"safely acknowledgeable (safe for {self.ack_window_s:.0f} s, no fault touching "
            f"it) {self.acknowledgeable}, acknowledged by us {share} "
            f"(min {100 * self.min_ack_share:.0f} %); time to ack once safe (virtual): {tta}",
            f"safe that long only while faults touched them: {self.safe_under_faults} "
            f"(share counting them too: {strict})",
            f"longest time without a leader {self.longest_without_leader_s:.1f} s (real); "
            f"coordinator restarts {self.coordinator_restarts}; load average "
            f"{self.load.get('mean', 0):.1f} (max {self.load.get('max', 0):.1f}) on "
            f"{self.load.get('cores', 0):.0f} cores",
            f"violations caused by us: {len(self.violations)}",
            f"leader writes (fenced) {self.fencing.get('writes', '-')} by "
            f"{self.fencing.get('leaders', '-')} leader sessions; committed while not "
            f"leading: {len(self.fencing.get('violations', []))}",
            f"events with more than one acknowledgement POST: {len(self.double_acks)}",
            f"events not acknowledged within {self.ack_bound_s:.0f} s of being safe "
            f"after the faults healed: {len(self.late)}",
            f"events that did not end: {len(self.unfinished)}",
        ]
        if self.baseline:
            b = self.baseline
            lines.append(f"same seed without faults: {b['events']} events, acknowledged "
                         f"{b['classes'].get('acknowledged', 0)}, time to ack "
                         + "  ".join(f"{k} {v:.0f} s" if v is not None else f"{k} -"
                                     for k, v in b["time_to_ack_s"].items()))
        lines.append("verdict: " + ("OK" if self.ok else "FAILED"))
        for text in self.fencing.get("violations", []):
            lines.append(f"  ! {text}")
        for item in self.violations + self.double_acks + self.late + self.unfinished:
            lines.append(f"  ! {item['text']}")
            lines += [f"      {line}" for line in item.get("timeline", [])[:12]]
        return "\n".join(lines)


# ---------------------------------------------------------------- groups


def place_groups(rng: random.Random, spec: ChaosSpec, where: dict[str, tuple[int, int]]
                 ) -> list[GroupSpec]:
    """Groups as real clusters are placed: most spread over distinct fault and update
    domains by the placement API, `bad_share` of them at random."""
    views = {vm: VMView(vm, fd, ud, True) for vm, (fd, ud) in where.items()}
    names = sorted(where, key=lambda n: int(n.rsplit("-", 1)[1]))
    groups: list[GroupSpec] = []
    for i in range(spec.groups):
        size = min(rng.choice(spec.group_sizes), len(names))
        required = 2 if size <= 3 else rng.choice([size - 2, size - 1])
        name = f"g{i}"
        if rng.random() < spec.bad_share:
            members = sorted(rng.sample(names, size))
            name = f"bad{i}"
        else:
            existing = [Group(name=g.name, members=g.members, min_available=g.min_available)
                        for g in groups]
            # a random first replica, so that groups do not all start on vm-0
            first = rng.choice(names)
            try:
                members = place(PlacementRequest(replicas=size, holding=[first]), views,
                                existing).vms
            except PlacementError:
                members = sorted(rng.sample(names, size))
        groups.append(GroupSpec(name, sorted(members), required))
    return groups


class HookSwitches(Workload):
    """Drain hooks whose failure or hang the nemesis switches per VM with files."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def agent_settings(self, vm: str) -> dict[str, Any]:
        d = self.folder
        script = (f"test -e {d}/fail-$QG_VM && {{ echo nemesis says fail; exit 1; }}; "
                  f"test -e {d}/hang-$QG_VM && sleep 20; exit 0")
        return {"drain_hook": {"command": script, "timeout_s": 600}}


@dataclass
class _Active:
    kind: str
    started: float
    scope: frozenset[str] | None
    heal: Callable[[], None]
    key: str
    done: bool = False


class Chaos:
    def __init__(self, spec: ChaosSpec, out: Callable[[str], None] = print) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.out = out
        self.faults: Counter[str] = Counter()
        self.windows: list[checker.FaultWindow] = []
        self.log: list[str] = []
        self.group_changes = 0
        self.no_leader_since: float | None = None
        self.longest_no_leader = 0.0
        self.leader: CoordinatorProcess | None = None
        self.lab: netns.NetLab | None = None
        self.network = "off"
        self._stop = threading.Event()
        self._due: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._active: dict[int, _Active] = {}
        self._ids = itertools.count(1)
        self.held_zk: set[int] = set()
        self.junk: list[str] = []
        self.hosts: dict[str, VMHost] = {}
        self.coordinators: list[CoordinatorProcess] = []
        self.group_versions: list[checker.GroupVersion] = []
        self.coordinator_restarts = 0
        self._closing: list[Callable[[], None]] = []
        self._zk: Any = None
        self._cool: dict[str, float] = {}
        self.disk: Path | None = None
        self.loads: list[float] = []
        self._restarted: dict[str, float] = {}

    def say(self, line: str) -> None:
        self.log.append(line)
        self.out(line)

    # ------------------------------------------------------------ figures

    @property
    def ack_window_real_s(self) -> float:
        """A safe stretch this long is enough to acknowledge an event: leader pass (0.2 s)
        + drain request to hook (watch) + hook (bash, ~0.05 s) + report + pass (0.2 s) +
        approval to the acker (watch) + claim + POST is about 1 s on an idle machine; x3
        for two cores running some forty processes. Events safe that long while
        Scheduled count as safely acknowledgeable (the 90 % share)."""
        return 3.0

    @property
    def ack_bound_real_s(self) -> float:
        """Safe this long after the faults around it healed, an event must have been
        acknowledged (a hard failure otherwise): the drain (~0.05 s) plus twice the
        longest session timeout (4 s, agents: a session lost in the fault expires and a
        new one is made) plus an agent poll (0.25 s)."""
        return 0.05 + 2 * 4.0 + 0.25

    # ------------------------------------------------------------ run

    def run(self) -> ChaosReport:
        spec = self.spec
        workdir = Path(tempfile.mkdtemp(prefix="quorumgate-chaos-"))
        self.workdir = workdir
        cluster = f"chaos-{uuid.uuid4().hex[:6]}"
        policy = Policy(drain_timeout_s=300.0, ack_timeout_s=120.0, best_effort_lead_s=120.0)
        where = {f"vm-{i}": (i % spec.fds, i % spec.uds) for i in range(spec.vms)}
        groups = place_groups(self.rng, spec, where)
        rollout_spec = RolloutSpec(
            cluster={"vms": spec.vms, "fds": spec.fds, "uds": spec.uds}, groups=groups,
            speed=spec.speed, coordinators=0, policy=policy, workload=HookSwitches(workdir),
            downtime_s=60.0, timeout_s=spec.duration_s + spec.settle_s)
        self.policy = policy
        try:
            self._network_up(spec)
            zk_hosts, zk_ns = self._zk_addresses()
            ens = ZooKeeperEnsemble(3, tick_time_ms=500, min_session_timeout_ms=1000,
                                    hosts=zk_hosts, netns=zk_ns,
                                    # small log preallocation: a full disk shows at once
                                    jvm_flags=("-Dzookeeper.preAllocSize=64",))
            if self.lab is not None:  # a disk the nemesis can fill, before anything runs
                self.disk = self.lab.mount_tmpfs(ens.nodes[DISK_NODE].data_dir, 512)
            with ens:
                ens.start(timeout=90)
                self.ensemble = ens
                host_ip = self.lab.host_ip if self.lab else "127.0.0.1"
                decisions_log = (workdir / "decisions.log").open("a")
                self._closing.append(decisions_log.close)
                with rollout_stack(rollout_spec, ens.hosts, cluster,
                                   out=lambda line: print(line, file=decisions_log, flush=True),
                                   emulator_host=host_ip, agent_host=self._agent_host
                                   ) as rollout:
                    self.rollout = rollout
                    rollout.watcher.reasons = True  # decisions.log: every reason, for post-mortems
                    started = rollout.watcher.start_at = rollout.clock.now()
                    self.group_versions = [
                        checker.GroupVersion(g.name, tuple(g.members), g.min_available)
                        for g in groups]
                    self._start_coordinators(ens.hosts, cluster, rollout.clock.spec)
                    try:
                        self._exercise(rollout)
                    finally:
                        self._stop.set()
                        self._heal_all()
                    report = self._report(rollout, started)
                    if spec.keep is not None:
                        self._keep(rollout, report)
                    return report
        finally:
            self._stop.set()
            for proc in self.coordinators:
                proc.stop()
            for host in self.hosts.values():  # all at once: each stops its agent
                with contextlib.suppress(Exception):
                    host.request_quit()
            deadline = time.monotonic() + 5.0
            for host in self.hosts.values():
                with contextlib.suppress(Exception):
                    host.close(deadline)
            if self.lab is not None:
                self.lab.close()
            for close in self._closing:
                with contextlib.suppress(Exception):
                    close()
            if spec.keep is not None:
                spec.keep.mkdir(parents=True, exist_ok=True)
                for item in workdir.iterdir():
                    shutil.move(str(item), spec.keep / item.name)
            shutil.rmtree(workdir, ignore_errors=True)

    def _keep(self, rollout: Rollout, report: ChaosReport) -> None:
        """Copy what the run knows into the work dir before it goes (see `keep`)."""
        shutil.copytree(rollout.journal.folder, self.workdir / "journal", dirs_exist_ok=True)
        decisions = {eid: d.model_dump(mode="json")
                     for eid, d in rollout.watcher.decisions.items()}
        (self.workdir / "decisions.json").write_text(json.dumps(decisions, indent=1))
        (self.workdir / "events.json").write_text(
            json.dumps(rollout.emu.control.get("/events").json(), indent=1))
        (self.workdir / "report.json").write_text(json.dumps(asdict(report), indent=1))
        (self.workdir / "timeline.json").write_text(json.dumps(
            {"timeline": asdict(self.timeline), "rules": asdict(self.rules()),
             "spec": asdict(self.spec), "network": self.network,
             "faults": dict(self.faults), "group_changes": self.group_changes,
             "longest_no_leader": self.longest_no_leader,
             "coordinator_restarts": self.coordinator_restarts}, indent=1,
            default=lambda o: sorted(o) if isinstance(o, (set, frozenset)) else str(o)))
        with contextlib.suppress(Exception):
            (self.workdir / "zookeeper.json").write_text(json.dumps(self._dump(), indent=1))

    def _dump(self) -> dict[str, Any]:
        """Every record of the cluster with its ZooKeeper times, for a post-mortem."""
        client = self._client()
        out: dict[str, Any] = {}
        base = self.rollout.layout.base
        stack = [base]
        while stack:
            path = stack.pop()
            data, stat = client.get(path)
            if data:
                try:
                    value: Any = json.loads(data)
                except ValueError:
                    value = data.decode(errors="replace")
                out[path[len(base):]] = {"mtime": stat.mtime / 1000, "ctime": stat.ctime
                                         / 1000, "version": stat.version, "data": value}
            stack += [f"{path}/{c}" for c in client.get_children(path)]
        return out

    def _network_up(self, spec: ChaosSpec) -> None:
        if not spec.network:
            self.network = "off (not asked for)"
        elif problem := netns.problem():
            self.network = f"off: {problem}"
        else:
            try:
                self.lab = netns.NetLab().start()
                self.network = (f"namespaces {self.lab.prefix}-*, subnet {self.lab.subnet}")
            except netns.NetLabError as exc:
                self.lab = None
                self.network = f"off: {exc}"
        if self.lab is None:
            skipped = [k for k in spec.faults if k in ROOT_FAULTS]
            if skipped:
                self.say(f"chaos: network and disk faults skipped ({self.network}): "
                         f"{', '.join(skipped)}")

    def _zk_addresses(self) -> tuple[list[str] | None, list[str | None] | None]:
        if self.lab is None:
            return None, None
        nodes = [self.lab.add(f"zk{i + 1}") for i in range(3)]
        self.zk_nodes = nodes
        return [n.ip for n in nodes], [n.netns for n in nodes]

    def _agent_host(self, vm: str, config: dict[str, Any]) -> RemoteAgent:
        host = self.hosts.get(vm)
        if host is None:
            node = self.lab.add(vm) if self.lab else None
            host = VMHost(vm, config, self.workdir, node.exec_prefix() if node else None)
            host.node = node  # type: ignore[attr-defined]
            self.hosts[vm] = host
        return host.start_agent()

    def _start_coordinators(self, hosts: str, cluster: str, clock: str) -> None:
        for i in range(self.spec.coordinators):
            node = self.lab.add(f"co{i + 1}") if self.lab else None
            args = ["--cluster", cluster, "--zk-hosts", hosts, "--clock", clock,
                    "--host", node.ip if node else "127.0.0.1", "--port", "0",
                    "--resync", "0.2", "--zk-session-timeout", "3",
                    "--token", f"{TOKEN}:operator", "--log-level", "WARNING"]
            proc = CoordinatorProcess(i + 1, args, self.workdir,
                                      node.exec_prefix() if node else None)
            proc.node = node  # type: ignore[attr-defined]
            proc.start()
            self.coordinators.append(proc)

    # ------------------------------------------------------------ the main loop

    def _exercise(self, rollout: Rollout) -> None:
        spec = self.spec
        threading.Thread(target=self._watch_leader, daemon=True).start()
        self.say(f"chaos: seed {spec.seed}, {spec.vms} VMs ({spec.fds} FD x {spec.uds} UD), "
                 f"{len(self.group_versions)} groups, {spec.coordinators} coordinators, "
                 f"3 ZooKeeper nodes, clock x{spec.speed:g}, network {self.network}")
        for g in self.group_versions:
            self.say(f"  group {g.name}: {', '.join(g.members)} (min {g.min_available})")
        self._wait_ready(90)
        deadline = time.monotonic() + spec.duration_s
        next_fault = time.monotonic() + 3.0
        next_group = time.monotonic() + self.rng.uniform(*spec.group_change_every_s)
        self._walk = self.rng.randrange(spec.uds)
        self._walk_left = self.rng.randint(*spec.batch)
        self._walk_ids: dict[str, float] = {}
        with contextlib.suppress(ConnectionError):
            self._client()  # the harness's own session, for group changes and records
        while time.monotonic() < deadline:
            self.loads.append(os.getloadavg()[0])
            self._platform_tick()
            self._run_due()
            self._keep_whole()
            if spec.faults and time.monotonic() >= next_fault:
                self._inject_one()
                next_fault = time.monotonic() + self.rng.uniform(*spec.nemesis_every_s)
            if time.monotonic() >= next_group:
                self._change_group()
                next_group = time.monotonic() + self.rng.uniform(*spec.group_change_every_s)
            time.sleep(0.1)
        self.say(f"[{self._stamp()}] chaos: nemesis stops; healing everything and letting "
                 "events finish")
        self._heal_all()
        settle = time.monotonic() + spec.settle_s
        while time.monotonic() < settle:
            self._keep_whole()
            if self._settled():
                break
            time.sleep(0.25)

    def _wait_ready(self, timeout: float) -> None:
        """The first fault only once every coordinator serves and one leads."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = [self._probe(p) for p in self.coordinators]
            if all(r is not None for r in ready) and any(r == "leader" for r in ready):
                self.say(f"[{self._stamp()}] chaos: {len(ready)} coordinators ready")
                return
            time.sleep(0.2)
        raise RuntimeError("coordinators not ready: " + "; ".join(
            f"{p.identity}: {p.log_since_start()[-500:]}" for p in self.coordinators))

    def _settled(self) -> bool:
        emu = self.rollout.emu
        if any(e["status"] in ("Scheduled", "Started")
               for e in emu.control.get("/events").json()):
            return False
        if any(v.down for v in emu.sim.vms(self.rollout.clock.now())):
            return False
        entries = self.rollout.journal.entries(self.rollout.clock)
        return not any(o.end == checker.INF for o in checker.journal_outages(entries))

    def _stamp(self) -> str:
        return self.rollout.watcher.stamp()

    # ------------------------------------------------------------ scheduling heals

    def _later(self, seconds: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._due, (time.monotonic() + seconds, next(self._seq), action))

    def _run_due(self) -> None:
        while self._due and self._due[0][0] <= time.monotonic():
            _, _, action = heapq.heappop(self._due)
            try:
                action()
            except Exception:
                log.exception("chaos: a heal failed")

    def _begin(self, kind: str, scope: frozenset[str] | None, heal: Callable[[], None],
               seconds: float | None, key: str, text: str) -> None:
        """Record an injected fault and schedule its heal after `seconds` (None: at once)."""
        fid = next(self._ids)
        active = _Active(kind, self.rollout.clock.now(), scope, heal, key)
        self._active[fid] = active
        self.faults[kind] += 1
        self.say(f"[{self._stamp()}] nemesis: {text}")
        if seconds is None:
            self._end(fid)
        else:
            self._later(seconds, lambda: self._end(fid))

    def _end(self, fid: int) -> None:
        active = self._active.pop(fid, None)
        if active is None or active.done:
            return
        active.done = True
        self._cool[active.key] = time.monotonic() + self.COOL_DOWN_S.get(active.key, 0.0)
        try:
            active.heal()
        finally:
            self.windows.append(checker.FaultWindow(active.kind, active.started,
                                                    self.rollout.clock.now(), active.scope))

    COOL_DOWN_S = {"coordinators": 4.0, "zk": 4.0, "junk": 4.0}
    """Real seconds after a heal before the same part is hit again: a new leader (3 s
    session + election) or a re-formed quorum gets a moment to work, as in a real cloud
    where failures of one part do not come every few seconds."""

    def _busy(self, key: str) -> bool:
        if self._cool.get(key, 0.0) > time.monotonic():
            return True
        return any(a.key == key for a in self._active.values())

    def _heal_all(self) -> None:
        for fid in list(self._active):
            with contextlib.suppress(Exception):
                self._end(fid)
        self._due.clear()
        for flag in [*self.workdir.glob("fail-*"), *self.workdir.glob("hang-*")]:
            flag.unlink(missing_ok=True)
        if self.lab is not None:
            with contextlib.suppress(Exception):
                self.lab.heal()
        for node in self.ensemble.nodes:
            node.resume()
        self.held_zk.clear()
        for proc in self.coordinators:
            proc.resume()
            proc.skew(0.0)
            proc.wanted = True
        for host in self.hosts.values():
            host.resume()
            if host.skew_s:
                host.skew(0.0)
        with contextlib.suppress(httpx.HTTPError):
            self.rollout.emu.clear_faults()
        self.rollout.supervisor.suspended.clear()
        self._delete_junk()
        self._keep_whole()

    def _keep_whole(self) -> None:
        """Bring back what crashed, as systemd would (at most every 2 s each):
        coordinators and ZooKeeper nodes."""
        now = time.monotonic()
        for proc in self.coordinators:
            if proc.wanted and not proc.alive and self._restarted.get(proc.identity, 0) < now:
                self._restarted[proc.identity] = now + 2.0
                proc.start()
                self.coordinator_restarts += 1
                self.say(f"[{self._stamp()}] supervisor: restarted {proc.identity}")
        for i, node in enumerate(self.ensemble.nodes):
            key = f"zk{i}"
            if i not in self.held_zk and not node.is_running() and (
                    self._restarted.get(key, 0) < now):
                self._restarted[key] = now + 2.0
                node.start(wait=False)

    # ------------------------------------------------------------ the platform

    def _platform_tick(self) -> None:
        """Azure's walk: a few events for one update domain (the whole domain or some of
        its VMs), several in flight; the next domain once this one's are over (or only
        held ones are left, waiting for their NotBefore); now and then an event off the
        walk, for another domain."""
        spec = self.spec
        if self.rng.random() >= spec.events_per_s * 0.1:
            return
        active = self.rollout.emu.control.get("/events", params={"active": True}).json()
        if len(active) >= spec.max_in_flight:
            return
        mine = [e for e in active if e["event_id"] in self._walk_ids]
        if self._walk_left == 0:
            waiting = all(e["status"] == "Scheduled" and time.monotonic()
                          - self._walk_ids[e["event_id"]] > 5.0 for e in mine)
            if mine and not waiting:
                return
            self._walk = (self._walk + 1) % spec.uds
            self._walk_left = self.rng.randint(*spec.batch)
            self._walk_ids = {}
        ud = self._walk
        off_walk = self.rng.random() < 0.08
        if off_walk:
            ud = self.rng.choice([u for u in range(spec.uds) if u != self._walk])
        members = [vm for vm, (_, u) in self._where().items() if u == ud]
        body: dict[str, Any] = {
            "type": "Reboot" if self.rng.random() < 0.85 else "Redeploy",
            "downtime_s": round(self.rng.uniform(*spec.downtime_s)),
            "description": f"planned maintenance, update domain {ud}"}
        if self.rng.random() < 0.3:
            body["ud"] = ud
        else:
            body["vms"] = sorted(self.rng.sample(members, self.rng.randint(
                1, min(3, len(members)))))
        event = self._schedule(body)
        if event is not None and not off_walk:
            self._walk_left -= 1
            self._walk_ids[event["event_id"]] = time.monotonic()

    def _where(self) -> dict[str, tuple[int, int]]:
        return {vm: (vm_index % self.spec.fds, vm_index % self.spec.uds)
                for vm_index, vm in ((int(n.rsplit("-", 1)[1]), n)
                                     for n in self.rollout.ud_of)}

    def _schedule(self, body: dict[str, Any]) -> dict[str, Any] | None:
        try:
            event = self.rollout.emu.schedule(**body)
        except httpx.HTTPError as exc:
            self.say(f"[{self._stamp()}] platform: could not schedule {body}: {exc}")
            return None
        self.rollout.scheduled.append(event["event_id"])
        return event

    def _change_group(self) -> None:
        """Replace one member of a group (placed again when the group was well placed)."""
        versions = [g for g in self.group_versions if g.until == checker.INF]
        if not versions:
            return
        old = self.rng.choice(versions)
        members = list(old.members)
        leaving = self.rng.choice(members)
        keep = [m for m in members if m != leaving]
        names = sorted(self.rollout.ud_of)
        if old.name.startswith("bad"):
            joining = self.rng.choice([n for n in names if n not in members])
            new_members = sorted([*keep, joining])
        else:
            views = {vm: VMView(vm, fd, ud, True) for vm, (fd, ud) in self._where().items()}
            others = [Group(name=g.name, members=list(g.members), min_available=g.min_available)
                      for g in versions if g.name != old.name]
            try:
                new_members = sorted(place(PlacementRequest(
                    replicas=len(members), group=old.name, holding=keep, exclude=[leaving]),
                    views, others).vms)
            except PlacementError:
                return
        before = self.rollout.clock.now()
        try:
            put_record(self._client(), self.rollout.layout.group(old.name),
                       Group(name=old.name, members=new_members,
                             min_available=old.min_available))
        except Exception as exc:  # ZooKeeper down right now: the next change will do
            self.say(f"[{self._stamp()}] groups: change of {old.name} failed ({exc!r})")
            return
        after = self.rollout.clock.now()
        index = self.group_versions.index(old)
        self.group_versions[index] = checker.GroupVersion(
            old.name, old.members, old.min_available, old.since, after)
        self.group_versions.append(checker.GroupVersion(
            old.name, tuple(new_members), old.min_available, before))
        self.group_changes += 1
        self.say(f"[{self._stamp()}] groups: {old.name} now {', '.join(new_members)}")

    # ------------------------------------------------------------ the nemesis

    def _available_kinds(self) -> list[str]:
        return [k for k in self.spec.faults
                if self.lab is not None or k not in ROOT_FAULTS]

    def _inject_one(self) -> None:
        kinds = self._available_kinds()
        for _ in range(6):
            kind = self.rng.choice(kinds)
            try:
                if getattr(self, f"_f_{kind}")():
                    return
            except Exception as exc:  # a fault that could not be injected: try another
                self.say(f"[{self._stamp()}] nemesis: {kind} failed to inject ({exc!r})")

    # -- helpers

    def _probe(self, proc: CoordinatorProcess) -> str | None:
        url = proc.find_url()
        if not url or not proc.alive or proc.paused:
            return None
        with contextlib.suppress(httpx.HTTPError, ValueError):
            response = httpx.get(f"{url}/readyz", timeout=0.5)
            if response.status_code == 200:
                return str(response.json().get("role"))
        return None

    def _watch_leader(self) -> None:
        current: str | None = None
        while not self._stop.wait(0.3):
            now = time.monotonic()
            leader = next((p for p in self.coordinators if self._probe(p) == "leader"), None)
            self.leader = leader
            name = leader.identity if leader else None
            if name != current:
                self.say(f"[{self._stamp()}] leader: {name or 'none'}")
                current = name
            if leader is not None:
                self.no_leader_since = None
            elif self.no_leader_since is None:
                self.no_leader_since = now
            else:
                self.longest_no_leader = max(self.longest_no_leader, now - self.no_leader_since)

    def _zk_whole(self) -> bool:
        return (not self.held_zk and not self._busy("zk")
                and all(m in SERVING_MODES for m in self.ensemble.modes()))

    def _random_vm(self) -> str:
        return f"vm-{self.rng.randrange(self.spec.vms)}"

    def _vm_node(self, vm: str) -> Any:
        return getattr(self.hosts.get(vm), "node", None)

    # -- coordinators

    def _f_kill_leader(self) -> bool:
        leader = self.leader
        if leader is None or self._busy("coordinators"):
            return False
        leader.wanted = False
        leader.kill()

        def heal(p: CoordinatorProcess = leader) -> None:
            p.wanted = True  # the supervisor (`_keep_whole`) starts it again

        self._begin("kill_leader", None, heal, self.rng.uniform(2, 5), "coordinators",
                    f"SIGKILL leader {leader.identity}")
        return True

    def _f_pause_coordinator(self) -> bool:
        live = [p for p in self.coordinators if p.alive and not p.paused]
        if not live or self._busy("coordinators"):
            return False
        proc = self.rng.choice(live)
        proc.pause()
        seconds = self.rng.uniform(3.5, 6)  # past its 3 s session
        self._begin("pause_coordinator", None, proc.resume, seconds, "coordinators",
                    f"SIGSTOP {proc.identity} for {seconds:.1f} s")
        return True

    def _f_clock_jump_coordinator(self) -> bool:
        live = [p for p in self.coordinators if p.alive]
        if not live or self._busy("coordinators"):
            return False
        proc = self.leader if self.leader and self.rng.random() < 0.6 else self.rng.choice(live)
        skew = self._skew()
        proc.skew(skew)
        seconds = self.rng.uniform(4, 12)
        self._begin("clock_jump_coordinator", None, lambda p=proc: p.skew(0.0), seconds,
                    "coordinators", f"{proc.identity}'s clock jumps {skew:+.0f} s for "
                    f"{seconds:.1f} s")
        return True

    def _skew(self) -> float:
        """Within the disagreement the policy says it tolerates (`clock_skew_s`)."""
        limit = float(getattr(self.policy, "clock_skew_s", 30.0))
        return self.rng.choice([-1, 1]) * self.rng.uniform(0.2 * limit, limit)

    # -- agents

    def _f_kill_agent(self) -> bool:
        vm = self._random_vm()
        seconds = self.rng.uniform(1, 4)
        self.rollout.supervisor.kill_agent(vm, seconds)
        self._begin("kill_agent", frozenset({vm}), lambda: None, seconds, f"agent:{vm}",
                    f"stop the agent of {vm} for {seconds:.1f} s")
        return True

    def _f_crash_agent(self) -> bool:
        vm = self._random_vm()
        host = self.hosts.get(vm)
        if host is None or self._busy(f"agent:{vm}"):
            return False
        seconds = self.rng.uniform(1, 4)
        host.kill()  # no clean shutdown: the session lingers until it expires
        self.rollout.supervisor.kill_agent(vm, seconds)
        self._begin("crash_agent", frozenset({vm}), lambda: None, seconds, f"agent:{vm}",
                    f"SIGKILL the process of {vm}'s agent; back after {seconds:.1f} s")
        return True

    def _f_freeze_agent(self) -> bool:
        vm = self._random_vm()
        host = self.hosts.get(vm)
        if host is None or not host.alive or self._busy(f"agent:{vm}"):
            return False
        host.pause()
        seconds = self.rng.uniform(5, 8)  # past its 4 s session
        self._begin("freeze_agent", frozenset({vm}), host.resume, seconds, f"agent:{vm}",
                    f"SIGSTOP {vm}'s agent for {seconds:.1f} s")
        return True

    def _f_clock_skew_agent(self) -> bool:
        vm = self._random_vm()
        host = self.hosts.get(vm)
        if host is None or self._busy(f"agent:{vm}"):
            return False
        skew = self._skew()
        host.skew(skew)
        seconds = self.rng.uniform(4, 12)
        self._begin("clock_skew_agent", frozenset({vm}), lambda: host.skew(0.0), seconds,
                    f"agent:{vm}", f"{vm}'s clock off by {skew:+.0f} s for {seconds:.1f} s")
        return True

    # -- ZooKeeper

    def _f_zk_stop_one(self) -> bool:
        return self._zk_stop(1)

    def _f_zk_stop_two(self) -> bool:
        return self._zk_stop(2)

    def _zk_stop(self, count: int) -> bool:
        if not self._zk_whole():
            return False
        victims = self.rng.sample(range(3), count)
        for i in victims:
            self.held_zk.add(i)
            self.ensemble.stop(i)

        def heal(v: list[int] = victims) -> None:
            for i in v:
                self.held_zk.discard(i)
                self.ensemble.start_node(i, wait=False)

        seconds = self.rng.uniform(2, 5)
        self._begin(f"zk_stop_{'one' if count == 1 else 'two'}", None, heal, seconds, "zk",
                    f"stop ZooKeeper node(s) {victims} for {seconds:.1f} s")
        return True

    def _f_zk_freeze_leader(self) -> bool:
        if not self._zk_whole():
            return False
        leader = self.ensemble.leader()
        if leader is None:
            return False
        self.ensemble.pause(leader)
        seconds = self.rng.uniform(3, 8)
        self._begin("zk_freeze_leader", None, lambda i=leader: self.ensemble.resume(i),
                    seconds, "zk", f"SIGSTOP the ZooKeeper leader (node {leader}) for "
                    f"{seconds:.1f} s")
        return True

    def _f_zk_disk_full(self) -> bool:
        """Fill the RAM disk that holds one ZooKeeper node's data and transaction log."""
        if self.disk is None or not self._zk_whole():
            return False
        filler = self.disk / "filler"
        stat = os.statvfs(self.disk)
        free = stat.f_bavail * stat.f_frsize
        with filler.open("wb") as f, contextlib.suppress(OSError):
            os.posix_fallocate(f.fileno(), 0, max(1, free - 4096))
        seconds = self.rng.uniform(3, 8)
        self._begin("zk_disk_full", None, lambda: filler.unlink(missing_ok=True), seconds,
                    "zk", f"ZooKeeper node {DISK_NODE}'s disk full for {seconds:.1f} s")
        return True

    # -- network

    def _f_partition_agent_zk(self) -> bool:
        vm = self._random_vm()
        node = self._vm_node(vm)
        if node is None or self._busy(f"agent:{vm}"):
            return False
        assert self.lab is not None
        self.lab.partition([node], self.zk_nodes)
        seconds = self.rng.uniform(2, 8)
        self._begin("partition_agent_zk", frozenset({vm}), lambda: self.lab.heal([node]),
                    seconds, f"agent:{vm}", f"partition {vm} from ZooKeeper for "
                    f"{seconds:.1f} s")
        return True

    def _f_partition_agent_imds(self) -> bool:
        vm = self._random_vm()
        node = self._vm_node(vm)
        if node is None or self._busy(f"agent:{vm}"):
            return False
        assert self.lab is not None
        self.lab.partition([node], [self.lab.host_node()])
        seconds = self.rng.uniform(2, 6)
        self._begin("partition_agent_imds", frozenset({vm}), lambda: self.lab.heal([node]),
                    seconds, f"agent:{vm}", f"partition {vm} from IMDS for {seconds:.1f} s")
        return True

    def _f_partition_leader_minority(self) -> bool:
        leader = self.leader
        if leader is None or self._busy("coordinators") or not self._zk_whole():
            return False
        assert self.lab is not None
        k = self.rng.randrange(3)
        minority = [leader.node, self.zk_nodes[k]]  # type: ignore[attr-defined]
        majority = [n for i, n in enumerate(self.zk_nodes) if i != k]
        self.lab.partition(minority, majority)
        seconds = self.rng.uniform(4, 8)

        def heal() -> None:
            self.lab.heal(minority + majority)

        self._begin("partition_leader_minority", None, heal, seconds, "coordinators",
                    f"partition leader {leader.identity} and ZooKeeper node {k} from the "
                    f"other two for {seconds:.1f} s")
        return True

    def _f_partition_zk_node(self) -> bool:
        if not self._zk_whole():
            return False
        assert self.lab is not None
        k = self.rng.randrange(3)
        alone = self.zk_nodes[k]
        others = [n for i, n in enumerate(self.zk_nodes) if i != k]
        self.lab.partition([alone], others)
        seconds = self.rng.uniform(3, 8)
        self._begin("partition_zk_node", None, lambda: self.lab.heal(self.zk_nodes), seconds,
                    "zk", f"partition ZooKeeper node {k} from its peers for {seconds:.1f} s")
        return True

    def _f_partition_asymmetric(self) -> bool:
        if self._busy("coordinators"):
            return False
        assert self.lab is not None
        live = [p for p in self.coordinators if p.alive]
        proc = self.leader or (self.rng.choice(live) if live else None)
        if proc is None:
            return False
        node = proc.node  # type: ignore[attr-defined]
        inbound = self.rng.random() < 0.5
        if inbound:  # ZooKeeper's answers lost; the coordinator's requests arrive
            self.lab.partition(self.zk_nodes, [node], symmetric=False)
        else:
            self.lab.partition([node], self.zk_nodes, symmetric=False)
        seconds = self.rng.uniform(3, 7)
        way = (f"ZooKeeper -> {proc.identity}" if inbound
               else f"{proc.identity} -> ZooKeeper")
        self._begin("partition_asymmetric", None,
                    lambda: self.lab.heal([node, *self.zk_nodes]), seconds, "coordinators",
                    f"drop {way} only, for {seconds:.1f} s")
        return True

    def _f_flapping_partition(self) -> bool:
        assert self.lab is not None
        if self.rng.random() < 0.5 and not self._busy("coordinators"):
            live = [p for p in self.coordinators if p.alive]
            if not live:
                return False
            proc = self.rng.choice(live)
            node, scope, key, who = proc.node, None, "coordinators", proc.identity  # type: ignore[attr-defined]
        else:
            vm = self._random_vm()
            node = self._vm_node(vm)
            if node is None or self._busy(f"agent:{vm}"):
                return False
            scope, key, who = frozenset({vm}), f"agent:{vm}", vm
        seconds = self.rng.uniform(4, 8)
        period = self.rng.uniform(0.3, 1.0)
        state = {"cut": False, "on": True}

        def flip() -> None:
            if not state["on"]:
                return
            state["cut"] = not state["cut"]
            if state["cut"]:
                self.lab.partition([node], self.zk_nodes)
            else:
                self.lab.heal([node])
            self._later(period, flip)

        def heal() -> None:
            state["on"] = False
            self.lab.heal([node])

        flip()
        self._begin("flapping_partition", scope, heal, seconds, key,
                    f"flap {who} <-> ZooKeeper every {period:.1f} s for {seconds:.1f} s")
        return True

    def _f_packet_loss(self) -> bool:
        return self._link_fault("packet_loss")

    def _f_slow_link(self) -> bool:
        return self._link_fault("slow_link")

    def _link_fault(self, kind: str) -> bool:
        assert self.lab is not None
        choice = self.rng.random()
        if choice < 0.3 and not self._busy("coordinators"):
            proc = self.rng.choice(self.coordinators)
            node, scope, key, who = proc.node, None, "coordinators", proc.identity  # type: ignore[attr-defined]
        elif choice < 0.5 and self._zk_whole():
            k = self.rng.randrange(3)
            node, scope, key, who = self.zk_nodes[k], None, "zk", f"ZooKeeper node {k}"
        else:
            vm = self._random_vm()
            node = self._vm_node(vm)
            if node is None or self._busy(f"agent:{vm}"):
                return False
            scope, key, who = frozenset({vm}), f"agent:{vm}", vm
        seconds = self.rng.uniform(4, 8)
        if kind == "packet_loss":
            loss = self.rng.uniform(0.1, 0.3)
            self.lab.set_loss(node, loss)
            text = f"{100 * loss:.0f} % packet loss on {who}'s link for {seconds:.1f} s"
        else:
            kbit = self.rng.choice([32, 64, 128])
            self.lab.set_slow(node, kbit)
            text = f"{who}'s link slowed to {kbit} kbit/s for {seconds:.1f} s"
        self._begin(kind, scope, lambda: self.lab.heal([node]), seconds, key, text)
        return True

    def _f_expire_in_flight(self) -> bool:
        """Cut a process off from ZooKeeper past its session right when it is writing:
        the acker of an approved event (its claim and POST are next), else the leader
        just after a decision changed."""
        assert self.lab is not None
        approved = [d for d in self.rollout.watcher.decisions.values()
                    if d.state is DecisionState.APPROVED and d.acker]
        if approved:
            decision = self.rng.choice(approved)
            vm = str(decision.acker)
            node = self._vm_node(vm)
            if node is None or self._busy(f"agent:{vm}"):
                return False
            self.lab.partition([node], self.zk_nodes)
            seconds = self.rng.uniform(5, 7)  # past the agent's 4 s session
            self._begin("expire_in_flight", frozenset({vm}), lambda: self.lab.heal([node]),
                        seconds, f"agent:{vm}", f"cut acker {vm} of {decision.event_id[:8]} "
                        f"(approval {decision.approval}) from ZooKeeper for {seconds:.1f} s")
            return True
        leader = self.leader
        if leader is None or self._busy("coordinators"):
            return False
        node = leader.node  # type: ignore[attr-defined]
        self.lab.partition([node], self.zk_nodes)
        seconds = self.rng.uniform(4, 6)  # past the coordinator's 3 s session
        self._begin("expire_in_flight", None, lambda: self.lab.heal([node]), seconds,
                    "coordinators", f"cut leader {leader.identity} from ZooKeeper "
                    f"mid-pass for {seconds:.1f} s")
        return True

    # -- IMDS, hooks, records

    def _f_imds_fault(self) -> bool:
        vm = self._random_vm()
        fault = self.rng.choice([{"kind": "status", "status": 429}, {"kind": "status",
                                                                      "status": 500},
                                 {"kind": "latency", "latency_s": 0.5, "real": True},
                                 {"kind": "drop"}, {"kind": "malformed_json"},
                                 {"kind": "wrong_shape"}])
        count = self.rng.randint(3, 15)
        with contextlib.suppress(httpx.HTTPError):
            self.rollout.emu.fault(vm=vm, count=count, **fault)
        self._begin("imds_fault", frozenset({vm}), lambda: None, 3.0, f"imds:{vm}",
                    f"IMDS fault {fault} on {vm} for {count} requests")
        return True

    def _f_hook_fail(self) -> bool:
        return self._hook("fail")

    def _f_hook_hang(self) -> bool:
        return self._hook("hang")

    def _hook(self, how: str) -> bool:
        vm = self._random_vm()
        flag = self.workdir / f"{how}-{vm}"
        if flag.exists():
            return False
        flag.touch()
        seconds = self.rng.uniform(3, 8)
        extra = 20.0 if how == "hang" else 0.0  # a hook started just before still sleeps
        self._begin(f"hook_{how}", frozenset({vm}), lambda: flag.unlink(missing_ok=True),
                    seconds + extra, f"hook:{vm}", f"drain hooks on {vm} {how} for "
                    f"{seconds:.1f} s")
        if extra:
            self._later(seconds, lambda: flag.unlink(missing_ok=True))
        return True

    def _client(self) -> Any:
        """The harness's own ZooKeeper session (reconnects forever, like the daemons')."""
        if self._zk is None:
            self._zk = make_client(self.ensemble.hosts, session_timeout_s=10)
            self._zk.start_async()
            self._closing.append(lambda: (self._zk.stop(), self._zk.close()))
        if not self._zk.connected:
            raise ConnectionError("the harness is not connected to ZooKeeper right now")
        return self._zk

    def _f_stale_event(self) -> bool:
        layout = self.rollout.layout
        client = self._client()
        for eid in client.get_children(layout.events):
            data, stat = client.get(layout.event(eid))
            event = decode(PlatformEvent, data)
            if event and event.status is PlatformStatus.STARTED:
                stale = event.model_copy(update={"status": PlatformStatus.SCHEDULED})
                client.set(layout.event(eid), encode(stale), version=stat.version)
                self._begin("stale_event", frozenset(event.resources), lambda: None,
                            1.0, f"event:{eid}", f"a stale agent rewrites event "
                            f"{eid[:8]} as Scheduled")
                return True
        return False

    def _f_malformed_record(self) -> bool:
        if self._busy("junk"):
            return False
        layout = self.rollout.layout
        client = self._client()
        tag = uuid.uuid4().hex[:6]
        paths = [layout.event(f"JUNK-{tag}"), layout.group(f"junk-{tag}"),
                 f"{layout.vms}/junk-{tag}"]
        for path, data in zip(paths, (b"{not json", b'{"name": 5}', b"[]"), strict=True):
            client.create(path, data)
            self.junk.append(path)
        seconds = self.rng.uniform(2, 5)
        self._begin("malformed_record", None, self._delete_junk, seconds, "junk",
                    f"malformed event, group and VM records for {seconds:.1f} s")
        return True

    def _delete_junk(self) -> None:
        """Remove the junk records; while ZooKeeper cannot, try again shortly."""
        left = []
        for path in self.junk:
            try:
                self._client().delete(path)
            except NoNodeError:
                pass
            except Exception:
                left.append(path)
        self.junk = left
        if left and not self._stop.is_set():
            self._later(1.0, self._delete_junk)

    # -- the platform reshapes events

    def _scheduled_events(self) -> list[dict[str, Any]]:
        return [e for e in self.rollout.emu.control.get("/events", params={"active": True}
                                                        ).json()
                if e["status"] == "Scheduled"]

    def _f_cancel_event(self) -> bool:
        events = self._scheduled_events()
        if not events:
            return False
        event = self.rng.choice(events)
        response = self.rollout.emu.control.delete(f"/events/{event['event_id']}")
        if response.status_code != 200:
            return False
        self._begin("cancel_event", frozenset(), lambda: None, None, "platform",
                    f"platform cancels {event['event_id'][:8]} "
                    f"({', '.join(event['resources'])})")
        return True

    def _f_no_notice_event(self) -> bool:
        vm = self._random_vm()
        event = self._schedule({"vms": [vm], "type": "Reboot", "started": True,
                                "downtime_s": round(self.rng.uniform(*self.spec.downtime_s)),
                                "description": "host failure: started without notice"})
        if event is None:
            return False
        self._begin("no_notice_event", frozenset(), lambda: None, None, "platform",
                    f"platform starts {event['event_id'][:8]} on {vm} without notice")
        return True

    def _f_multi_ud_event(self) -> bool:
        where = self._where()
        a = self._random_vm()
        others = [vm for vm, (_, ud) in where.items() if ud != where[a][1]]
        b = self.rng.choice(others)
        event = self._schedule({"vms": sorted([a, b]), "type": "Reboot",
                                "allow_multi_ud": True,
                                "downtime_s": round(self.rng.uniform(*self.spec.downtime_s)),
                                "description": "maintenance spanning two update domains"})
        if event is None:
            return False
        self._begin("multi_ud_event", frozenset(), lambda: None, None, "platform",
                    f"platform schedules {event['event_id'][:8]} over UDs "
                    f"{event['uds']} ({a}, {b})")
        return True

    def _f_overlapping_event(self) -> bool:
        events = self._scheduled_events()
        if not events:
            return False
        other = self.rng.choice(events)
        vm = self.rng.choice(other["resources"])
        event = self._schedule({"vms": [vm], "type": "Reboot",
                                "downtime_s": round(self.rng.uniform(*self.spec.downtime_s)),
                                "description": "a second event for a VM already listed"})
        if event is None:
            return False
        self._begin("overlapping_event", frozenset(), lambda: None, None, "platform",
                    f"platform schedules {event['event_id'][:8]} for {vm}, already in "
                    f"{other['event_id'][:8]}")
        return True

    def _f_reshape_event(self) -> bool:
        """The platform changes a Scheduled event's Resources: one VM more (of its update
        domain) or one fewer."""
        events = self._scheduled_events()
        if not events:
            return False
        event = self.rng.choice(events)
        vms = list(event["resources"])
        where = self._where()
        uds = {where[vm][1] for vm in vms}
        grow = len(vms) == 1 or self.rng.random() < 0.6
        if grow:
            spare = [vm for vm, (_, ud) in where.items() if ud in uds and vm not in vms]
            if not spare:
                return False
            vms.append(self.rng.choice(spare))
        else:
            vms.remove(self.rng.choice(vms))
        response = self.rollout.emu.control.patch(
            f"/events/{event['event_id']}", json={"vms": sorted(vms),
                                                  "allow_multi_ud": len(uds) > 1})
        if response.status_code != 200:
            return False
        self._begin("reshape_event", frozenset(), lambda: None, None, "platform",
                    f"platform changes {event['event_id'][:8]}'s Resources from "
                    f"{', '.join(event['resources'])} to {', '.join(sorted(vms))}")
        return True

    def _f_second_impact(self) -> bool:
        started = [e for e in self.rollout.emu.control.get(
            "/events", params={"active": True}).json() if e["status"] == "Started"]
        if not started:
            return False
        event = self.rng.choice(started)
        downtime = round(self.rng.uniform(10, 40))
        response = self.rollout.emu.control.post(
            f"/events/{event['event_id']}/impact",
            json={"downtime_s": downtime, "delay_s": round(self.rng.uniform(0, 20))})
        if response.status_code != 200:
            return False
        self._begin("second_impact", frozenset(), lambda: None, None, "platform",
                    f"platform takes {event['event_id'][:8]}'s VMs "
                    f"({', '.join(event['resources'])}) down again for {downtime} s")
        return True

    # ------------------------------------------------------------ judging

    def rules(self) -> checker.Rules:
        speed = self.spec.speed
        gone_grace = float(getattr(self.policy, "gone_grace_s", 0.0))
        return checker.Rules(
            max_concurrent_uds=self.policy.max_concurrent_uds,
            best_effort_lead_s=(self.policy.best_effort_lead_s
                                + float(getattr(self.policy, "clock_skew_s", 0.0))),
            # a VM's no-notice outage reaches the leader once its agent's session is gone:
            # at once when the VM's shutdown closes it, after 4 s if the agent was cut off
            no_notice_grace_s=(4.0 + 1.0) * speed,
            # a decision taken on the old membership may land a pass after the change
            group_change_grace_s=(2 * 0.2 + 1.0) * speed,
            # both plus the grace the product waits, by design, before it believes an
            # event has left IMDS for good (the reservation it ends holds until then)
            ack_window_s=self.ack_window_real_s * speed + gone_grace,
            ack_bound_s=self.ack_bound_real_s * speed + gone_grace)

    def _report(self, rollout: Rollout, started: float) -> ChaosReport:
        dirs = [n.data_dir for n in self.ensemble.nodes]
        self.timeline = rollout.truth(started, groups=self.group_versions,
                                      faults=self.windows, zk_data_dirs=dirs)
        report = build_report(self, self.timeline, self.rules())
        writes, writers, problems = zklog.fencing_violations(
            zklog.committed_txns(dirs, quorum=2), rollout.layout.election)
        report.fencing = {"writes": writes, "leaders": len(writers), "violations": problems}
        return report


def build_report(chaos: Chaos, timeline: checker.Timeline, rules: checker.Rules
                 ) -> ChaosReport:
    spec = chaos.spec
    safety = checker.safety_violations(timeline, rules)
    doubles = checker.double_acknowledgements(timeline.events.values(), timeline.stamp)
    verdicts = checker.classify(timeline, rules)
    classes = Counter(v.kind for v in verdicts.values())
    ackable = [v for v in verdicts.values() if v.acknowledgeable]
    acked = [v for v in ackable if v.kind == "acknowledged"]
    times = [v.time_to_ack_s for v in acked if v.time_to_ack_s is not None]
    late = [checker.Violation(0, "late", v.late) for v in verdicts.values() if v.late]
    unfinished = [checker.Violation(0, "unfinished", f"event {v.event_id[:8]}: {v.unfinished}")
                  for v in verdicts.values() if v.unfinished]
    return ChaosReport(
        seed=spec.seed, duration_s=spec.duration_s, network=chaos.network,
        faults=dict(chaos.faults), group_changes=chaos.group_changes,
        events=len(verdicts), classes=dict(classes), acknowledgeable=len(ackable),
        acknowledged_share=(len(acked) / len(ackable)) if ackable else None,
        safe_under_faults=sum(v.safe_under_faults for v in verdicts.values()),
        time_to_ack_s={"p50": checker.percentile(times, 0.5),
                       "p95": checker.percentile(times, 0.95),
                       "max": max(times) if times else None},
        violations=[v.as_dict() for v in safety],
        double_acks=[v.as_dict() for v in doubles],
        late=[v.as_dict() for v in late], unfinished=[v.as_dict() for v in unfinished],
        longest_without_leader_s=chaos.longest_no_leader,
        coordinator_restarts=chaos.coordinator_restarts, ack_bound_s=rules.ack_bound_s,
        ack_window_s=rules.ack_window_s,
        min_ack_share=spec.min_ack_share,
        verdicts=[v.as_dict() for v in verdicts.values()], log=chaos.log,
        load={"mean": sum(chaos.loads) / len(chaos.loads) if chaos.loads else 0.0,
              "max": max(chaos.loads, default=0.0), "cores": float(os.cpu_count() or 0)})


def rejudge(folder: Path) -> ChaosReport:
    """Judge a kept run again (`--keep DIR`) with this version of the checker."""
    saved = json.loads((folder / "timeline.json").read_text())
    t = saved["timeline"]

    def num(x: Any) -> float:
        return float(x)  # json keeps infinities as Infinity

    events = {}
    for eid, e in t["events"].items():
        e = {**e, "resources": tuple(e["resources"]),
             "posts": tuple(checker.Post(**p) for p in e["posts"]),
             "impacts": tuple(tuple(i) for i in e.get("impacts", ())),
             "resources_history": tuple((at, tuple(r))
                                        for at, r in e.get("resources_history", ()))}
        events[eid] = checker.EventTruth(**e)
    timeline = checker.Timeline(
        events=events,
        outages=[checker.Outage(o["vm"], num(o["start"]), num(o["end"]), o["event_id"],
                                o["kind"]) for o in t["outages"]],
        groups=[checker.GroupVersion(g["name"], tuple(g["members"]), g["min_available"],
                                     num(g["since"]), num(g["until"])) for g in t["groups"]],
        ud_of=t["ud_of"],
        faults=[checker.FaultWindow(f["kind"], f["start"], f["end"],
                                    frozenset(f["vms"]) if f["vms"] is not None else None)
                for f in t["faults"]],
        start=t["start"], end=num(t["end"]))
    rules = checker.Rules(**saved["rules"])
    spec_data = saved["spec"]
    spec = ChaosSpec(seed=spec_data["seed"], duration_s=spec_data["duration_s"],
                     min_ack_share=spec_data["min_ack_share"])
    chaos = Chaos(spec, out=lambda line: None)
    chaos.network = saved["network"]
    chaos.faults = Counter(saved["faults"])
    chaos.group_changes = saved["group_changes"]
    chaos.longest_no_leader = saved["longest_no_leader"]
    chaos.coordinator_restarts = saved["coordinator_restarts"]
    return build_report(chaos, timeline, rules)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="quorumgate chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duration", type=float, default=60.0,
                        help="real seconds under the nemesis (default 60)")
    parser.add_argument("--settle", type=float, default=150.0,
                        help="real seconds allowed for events to finish afterwards")
    parser.add_argument("--vms", type=int, default=30)
    parser.add_argument("--uds", type=int, default=5)
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--speed", type=float, default=60.0)
    parser.add_argument("--events-per-s", type=float, default=ChaosSpec.events_per_s,
                        help="rate at which the platform announces maintenance")
    parser.add_argument("--batch", default="2,6", metavar="MIN,MAX",
                        help="events per update domain before the walk moves on")
    parser.add_argument("--max-in-flight", type=int, default=ChaosSpec.max_in_flight)
    parser.add_argument("--nemesis-every", default="2,5", metavar="MIN,MAX",
                        help="real seconds between two faults (default 2,5)")
    parser.add_argument("--faults", default="all",
                        help="comma-separated fault kinds, `all`, or `none` (no nemesis)")
    parser.add_argument("--no-network", action="store_true",
                        help="no network namespaces (and no network faults)")
    parser.add_argument("--baseline", action="store_true",
                        help="also run the same seed without faults and report its figures")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="keep every log, journal and record of the run in DIR")
    parser.add_argument("--rejudge", type=Path, metavar="DIR",
                        help="judge a run kept with --keep again, without running anything")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--verdicts", action="store_true",
                        help="include every event's verdict in the JSON report")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.ERROR)  # the nemesis makes every part complain
    if args.faults == "all":
        faults = FAULTS
    elif args.faults == "none":
        faults = ()
    else:
        faults = tuple(k.strip() for k in args.faults.split(",") if k.strip())
        unknown = sorted(set(faults) - set(FAULTS))
        if unknown:
            parser.error(f"unknown fault kinds: {', '.join(unknown)} (known: {', '.join(FAULTS)})")
    spec = ChaosSpec(seed=args.seed, duration_s=args.duration, settle_s=args.settle,
                     vms=args.vms, uds=args.uds, groups=args.groups, speed=args.speed,
                     faults=faults, network=not args.no_network, keep=args.keep,
                     nemesis_every_s=tuple(float(x) for x in args.nemesis_every.split(",")),
                     events_per_s=args.events_per_s, max_in_flight=args.max_in_flight,
                     batch=tuple(int(x) for x in args.batch.split(",")))
    say: Callable[[str], None] = ((lambda line: print(line, file=sys.stderr, flush=True))
                                  if args.json else print)

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # run the finally blocks: processes, namespaces, files

    signal.signal(signal.SIGTERM, interrupted)
    report = rejudge(args.rejudge) if args.rejudge else Chaos(spec, out=say).run()
    if args.baseline:
        calm = ChaosSpec(**{**asdict(spec), "faults": (),
                            "keep": spec.keep / "baseline" if spec.keep else None})
        base = Chaos(calm, out=lambda line: None).run()
        report.baseline = {"events": base.events, "classes": base.classes,
                           "time_to_ack_s": base.time_to_ack_s,
                           "acknowledged_share": base.acknowledged_share, "ok": base.ok,
                           "load": base.load,
                           "problems": [v["text"] for v in base.violations + base.double_acks
                                        + base.late + base.unfinished]}
    if args.json:
        data = {**asdict(report), "strict_share": report.strict_share, "ok": report.ok}
        if not args.verdicts:
            data.pop("verdicts")
        print(json.dumps(data, indent=2))
    else:
        print(report.table())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
