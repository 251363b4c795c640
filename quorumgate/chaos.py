"""`quorumgate chaos`: a seeded nemesis against a real running stack, and an outside checker.

The stack: a real 3-node ZooKeeper ensemble, coordinator replicas as separate processes
(so they can be killed and frozen), agents for a simulated cluster under the VM
supervisor, and the IMDS emulator on a fast virtual clock, scheduling maintenance
across update domains continuously. The nemesis, seeded and reproducible in what it
chooses, kills and freezes coordinators, stops ZooKeeper nodes (one, then two: quorum
lost), kills agents, injects IMDS faults, makes drain hooks fail or hang, rewrites an
event as a stale agent would and writes malformed records.

The checker trusts no coordinator: from the emulator's record of when each VM was
really down and why (our acknowledgement or NotBefore) and the agents' drain reports,
it finds every moment a group fell below `min_available` because of us, and it checks
that no event got more acknowledgements than approvals and that every event ended.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import subprocess
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

from quorumgate.rollout import GroupSpec, Rollout, RolloutSpec, Workload
from quorumgate.zkserver import ZooKeeperEnsemble
from registry.codec import decode, encode
from registry.records import Decision, PlatformEvent, PlatformStatus, Policy
from registry.zk import make_client

TOKEN = "chaos-operator-token"
FAULTS = ("kill_leader", "pause_coordinator", "zk_stop_one", "zk_stop_two", "kill_agent",
          "imds_fault", "hook_fail", "hook_hang", "stale_event", "malformed_record")


@dataclass
class ChaosSpec:
    seed: int = 1
    duration_s: float = 60.0
    """Real seconds of maintenance under the nemesis; then faults heal and events finish."""
    settle_s: float = 120.0
    vms: int = 24
    fds: int = 3
    uds: int = 4
    groups: int = 8
    coordinators: int = 3
    speed: float = 30.0
    nemesis_every_s: tuple[float, float] = (1.5, 4.0)
    faults: tuple[str, ...] = FAULTS


@dataclass
class ChaosReport:
    seed: int
    faults: dict[str, int]
    events: int
    acknowledged: int
    forced: int
    held: int
    violations: list[str]
    double_acks: list[str]
    unfinished: list[str]
    longest_without_leader_s: float
    log: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.violations or self.double_acks or self.unfinished)

    def table(self) -> str:
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())) or "none"
        return "\n".join([
            f"seed {self.seed}",
            f"faults injected: {faults}",
            f"events {self.events}  acknowledged {self.acknowledged}  held {self.held}  "
            f"forced {self.forced}",
            f"longest time without a leader {self.longest_without_leader_s:.1f} s (real)",
            f"violations caused by an acknowledgement: {len(self.violations)}",
            f"events with more acknowledgements than approvals: {len(self.double_acks)}",
            f"events that did not end: {len(self.unfinished)}",
            "verdict: " + ("SAFE" if self.ok else "FAILED"),
            *[f"  ! {line}" for line in self.violations + self.double_acks + self.unfinished],
        ])


def random_groups(rng: random.Random, vms: int, count: int) -> list[GroupSpec]:
    names = [f"vm-{i}" for i in range(vms)]
    return [GroupSpec(f"g{i}", sorted(rng.sample(names, 3)), 2) for i in range(count)]


class HookSwitches(Workload):
    """Drain hooks whose failure or hang the nemesis switches per VM with files."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def agent_settings(self, vm: str) -> dict[str, Any]:
        d = self.folder
        script = (f"test -e {d}/fail-$QG_VM && {{ echo nemesis says fail; exit 1; }}; "
                  f"test -e {d}/hang-$QG_VM && sleep 20; exit 0")
        return {"drain_hook": {"command": script, "timeout_s": 600}}


class CoordinatorProcess:
    def __init__(self, index: int, hosts: str, cluster: str, clock: str, logs: Path) -> None:
        self.identity = f"coordinator-{index}"
        self.log = logs / f"{self.identity}.log"
        self.command = [sys.executable, "-m", "quorumgate.cli", "coordinator",
                        "--cluster", cluster, "--zk-hosts", hosts, "--clock", clock,
                        "--identity", self.identity, "--port", "0", "--resync", "0.2",
                        "--zk-session-timeout", "3", "--token", f"{TOKEN}:operator"]
        self.proc: subprocess.Popen[bytes] | None = None
        self.url: str | None = None
        self.paused = False
        self._log_from = 0

    def start(self) -> None:
        self._log_from = self.log.stat().st_size if self.log.exists() else 0
        out = self.log.open("ab")
        self.proc = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.url = None
        self.paused = False

    def find_url(self) -> str | None:
        if self.url is None and self.log.exists():
            with self.log.open("rb") as log:
                log.seek(self._log_from)  # this run of the process only
                for line in log.read(1 << 20).decode(errors="replace").splitlines():
                    if "listening on http" in line:
                        self.url = "http" + line.split("listening on http", 1)[1].split()[0]
                        break
        return self.url

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive:
            assert self.proc is not None
            os.kill(self.proc.pid, sig)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


class Chaos:
    def __init__(self, spec: ChaosSpec, out: Callable[[str], None] = print) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.out = out
        self.faults: Counter[str] = Counter()
        self.log: list[str] = []
        self.no_leader_since: float | None = None
        self.longest_no_leader = 0.0
        self._stop = threading.Event()
        self._timers: list[threading.Timer] = []

    def say(self, line: str) -> None:
        self.log.append(line)
        self.out(line)

    # ------------------------------------------------------------ run

    def run(self) -> ChaosReport:
        spec = self.spec
        workdir = Path(tempfile.mkdtemp(prefix="quorumgate-chaos-"))
        cluster = f"chaos-{uuid.uuid4().hex[:6]}"
        policy = Policy(drain_timeout_s=300.0, ack_timeout_s=120.0, best_effort_lead_s=120.0)
        rollout_spec = RolloutSpec(
            cluster={"vms": spec.vms, "fds": spec.fds, "uds": spec.uds},
            groups=random_groups(self.rng, spec.vms, spec.groups), speed=spec.speed,
            coordinators=0, policy=policy, workload=HookSwitches(workdir),
            downtime_s=60.0, timeout_s=spec.duration_s + spec.settle_s)
        coordinators: list[CoordinatorProcess] = []
        try:
            with ZooKeeperEnsemble(3, tick_time_ms=500, min_session_timeout_ms=1000) as ens:
                ens.start(timeout=60)
                self.ensemble = ens
                from quorumgate.rollout import rollout_stack

                with rollout_stack(rollout_spec, ens.hosts, cluster,
                                   out=lambda line: None) as rollout:
                    self.rollout = rollout
                    for i in range(spec.coordinators):
                        proc = CoordinatorProcess(i + 1, ens.hosts, cluster,
                                                  rollout.clock.spec, workdir)
                        proc.start()
                        coordinators.append(proc)
                    self.coordinators = coordinators
                    self.workdir = workdir
                    return self._exercise(rollout)
        finally:
            self._stop.set()
            for timer in self._timers:
                timer.cancel()
            for proc in coordinators:
                proc.stop()
            shutil.rmtree(workdir, ignore_errors=True)

    def _exercise(self, rollout: Rollout) -> ChaosReport:
        spec = self.spec
        started = rollout.watcher.start_at = rollout.clock.now()
        watcher = threading.Thread(target=self._watch_leader, daemon=True)
        watcher.start()
        deadline = time.monotonic() + spec.duration_s
        next_fault = time.monotonic() + 3.0
        busy: dict[int, str] = {}
        self.say(f"chaos: seed {spec.seed}, {spec.vms} VMs, {spec.groups} groups, "
                 f"{spec.coordinators} coordinators, 3 ZooKeeper nodes, clock x{spec.speed:g}")
        while time.monotonic() < deadline:
            for ud, eid in list(busy.items()):
                if rollout.event_over(eid):
                    del busy[ud]
            free = [ud for ud in range(spec.uds) if ud not in busy]
            if free and len(busy) < 2 and self.rng.random() < 0.15:
                ud = self.rng.choice(free)
                busy[ud] = rollout.schedule_ud(ud)
            if time.monotonic() >= next_fault:
                self._inject(self.rng.choice(spec.faults))
                next_fault = time.monotonic() + self.rng.uniform(*spec.nemesis_every_s)
            time.sleep(0.2)
        self.say("chaos: nemesis stops; healing everything and letting events finish")
        self._heal()
        settle = time.monotonic() + spec.settle_s
        while time.monotonic() < settle:
            if all(rollout.settled(eid) for eid in rollout.scheduled):
                break
            time.sleep(0.2)
        self._stop.set()
        return self._report(rollout, started)

    # ------------------------------------------------------------ the nemesis

    def _later(self, seconds: float, action: Callable[[], None]) -> None:
        timer = threading.Timer(seconds, action)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def _leader(self) -> CoordinatorProcess | None:
        for proc in self.coordinators:
            url = proc.find_url()
            if not url or not proc.alive or proc.paused:
                continue
            with contextlib.suppress(httpx.HTTPError, ValueError):
                if httpx.get(f"{url}/readyz", timeout=0.5).json().get("role") == "leader":
                    return proc
        return None

    def _inject(self, kind: str) -> None:
        rng = self.rng
        now = f"[{self.rollout.watcher.stamp()}]"
        if kind == "kill_leader":
            leader = self._leader()
            if leader is None:
                return
            leader.signal(signal.SIGKILL)
            self._later(rng.uniform(2, 5), leader.start)
            self.say(f"{now} nemesis: SIGKILL leader {leader.identity}")
        elif kind == "pause_coordinator":
            proc = rng.choice(self.coordinators)
            if not proc.alive or proc.paused:
                return
            proc.signal(signal.SIGSTOP)
            proc.paused = True
            seconds = rng.uniform(3.5, 6)  # past its 3 s session

            def resume(p: CoordinatorProcess = proc) -> None:
                p.signal(signal.SIGCONT)
                p.paused = False

            self._later(seconds, resume)
            self.say(f"{now} nemesis: SIGSTOP {proc.identity} for {seconds:.1f} s")
        elif kind in ("zk_stop_one", "zk_stop_two"):
            running = [i for i, n in enumerate(self.ensemble.nodes) if n.is_running()]
            count = 1 if kind == "zk_stop_one" else 2
            if len(running) < 3:
                return
            victims = rng.sample(running, count)
            for i in victims:
                self.ensemble.stop(i)
            seconds = rng.uniform(2, 5)
            self._later(seconds, lambda v=victims: [self.ensemble.start_node(i, wait=False)
                                                    for i in v])
            self.say(f"{now} nemesis: stop ZooKeeper node(s) {victims} for {seconds:.1f} s")
        elif kind == "kill_agent":
            vm = f"vm-{rng.randrange(self.spec.vms)}"
            seconds = rng.uniform(1, 4)
            self.rollout.supervisor.kill_agent(vm, seconds)
            self.say(f"{now} nemesis: kill the agent of {vm} for {seconds:.1f} s")
        elif kind == "imds_fault":
            vm = f"vm-{rng.randrange(self.spec.vms)}"
            fault = rng.choice([{"kind": "status", "status": 429}, {"kind": "status",
                                                                     "status": 500},
                                {"kind": "latency", "latency_s": 0.5, "real": True},
                                {"kind": "drop"}, {"kind": "malformed_json"},
                                {"kind": "wrong_shape"}])
            with contextlib.suppress(httpx.HTTPError):
                self.rollout.emu.fault(vm=vm, count=rng.randint(3, 15), **fault)
            self.say(f"{now} nemesis: IMDS fault {fault} on {vm}")
        elif kind in ("hook_fail", "hook_hang"):
            vm = f"vm-{rng.randrange(self.spec.vms)}"
            flag = self.workdir / f"{kind.split('_')[1]}-{vm}"
            flag.touch()
            seconds = rng.uniform(3, 8)
            self._later(seconds, lambda f=flag: f.unlink(missing_ok=True))
            self.say(f"{now} nemesis: drain hooks on {vm} {kind.split('_')[1]} for "
                     f"{seconds:.1f} s")
        elif kind == "stale_event":
            if not self._stale_event():
                return
            self.say(f"{now} nemesis: a stale agent rewrites an event with an older status")
        elif kind == "malformed_record":
            self._malformed()
            self.say(f"{now} nemesis: malformed records written")
        self.faults[kind] += 1

    def _client(self) -> Any:
        client = make_client(self.ensemble.hosts, session_timeout_s=10)
        client.start(timeout=10)
        return client

    def _stale_event(self) -> bool:
        layout = self.rollout.layout
        with contextlib.suppress(Exception):
            client = self._client()
            try:
                for eid in client.get_children(layout.events):
                    data, stat = client.get(layout.event(eid))
                    event = decode(PlatformEvent, data)
                    if event and event.status is PlatformStatus.STARTED:
                        stale = event.model_copy(update={"status": PlatformStatus.SCHEDULED})
                        client.set(layout.event(eid), encode(stale), version=stat.version)
                        return True
            finally:
                client.stop()
                client.close()
        return False

    def _malformed(self) -> None:
        layout = self.rollout.layout
        with contextlib.suppress(Exception):
            client = self._client()
            try:
                tag = uuid.uuid4().hex[:6]
                client.create(layout.event(f"JUNK-{tag}"), b"{not json")
                client.create(layout.group(f"junk-{tag}"), b'{"name": 5}')
                client.create(f"{layout.vms}/junk-{tag}", b"[]", ephemeral=False)
            finally:
                client.stop()
                client.close()

    def _heal(self) -> None:
        for timer in self._timers:
            timer.cancel()
        for flag in self.workdir.glob("fail-*"):
            flag.unlink(missing_ok=True)
        for flag in self.workdir.glob("hang-*"):
            flag.unlink(missing_ok=True)
        for i, node in enumerate(self.ensemble.nodes):
            node.resume()
            if not node.is_running():
                self.ensemble.start_node(i, wait=False)
        for proc in self.coordinators:
            proc.signal(signal.SIGCONT)
            proc.paused = False
            if not proc.alive:
                proc.start()
        with contextlib.suppress(httpx.HTTPError):
            self.rollout.emu.clear_faults()
        self.rollout.supervisor.suspended.clear()

    # ------------------------------------------------------------ watching and judging

    def _watch_leader(self) -> None:
        current: str | None = None
        while not self._stop.wait(0.2):
            now = time.monotonic()
            leader = self._leader()
            name = leader.identity if leader else None
            if name != current:
                self.say(f"[{self.rollout.watcher.stamp()}] leader: {name or 'none'}")
                current = name
            if leader is not None:
                self.no_leader_since = None
            elif self.no_leader_since is None:
                self.no_leader_since = now
            else:
                self.longest_no_leader = max(self.longest_no_leader,
                                             now - self.no_leader_since)

    def _report(self, rollout: Rollout, started: float) -> ChaosReport:
        summary = rollout.summary(started)
        decisions: dict[str, Decision] = dict(rollout.watcher.decisions)
        double = []
        for eid in rollout.scheduled:
            event = rollout.emu.event(eid)
            sent = len(event.get("acks", []))
            approvals = decisions[eid].approval if eid in decisions else 0
            if sent > max(approvals, 0) or (sent and not approvals):
                double.append(f"event {eid[:8]}: {sent} acknowledgements, "
                              f"{approvals} approvals")
        unfinished = [f"event {eid[:8]}: {decisions[eid].state.value if eid in decisions else '?'}"
                      f" {decisions[eid].reason if eid in decisions else ''}"
                      for eid in rollout.scheduled if not rollout.settled(eid)]
        return ChaosReport(seed=self.spec.seed, faults=dict(self.faults),
                           events=len(summary.events), acknowledged=summary.acknowledged,
                           forced=summary.forced, held=summary.held,
                           violations=summary.violations, double_acks=double,
                           unfinished=unfinished,
                           longest_without_leader_s=self.longest_no_leader, log=self.log)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="quorumgate chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duration", type=float, default=60.0,
                        help="real seconds under the nemesis")
    parser.add_argument("--settle", type=float, default=120.0,
                        help="real seconds allowed for events to finish afterwards")
    parser.add_argument("--vms", type=int, default=24)
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--speed", type=float, default=30.0)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.ERROR)  # the nemesis makes every part complain
    spec = ChaosSpec(seed=args.seed, duration_s=args.duration, settle_s=args.settle,
                     vms=args.vms, groups=args.groups, speed=args.speed)
    report = Chaos(spec, out=(lambda line: print(line, file=sys.stderr)) if args.json
                   else print).run()
    if args.json:
        print(json.dumps({**asdict(report), "ok": report.ok}, indent=2))
    else:
        print(report.table())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
