"""A maintenance rollout on a simulated cluster, end to end, with a ground-truth checker.

Used by `quorumgate demo`, the end-to-end tests and the benchmarks. It runs the real
parts in one process: the IMDS emulator (HTTP, virtual clock), one agent per VM (each
with its own IMDS base URL and ZooKeeper session), coordinator replicas, and:

- a **VM supervisor** per cluster: when the emulator takes a VM down, its agent is
  stopped as a reboot stops it (the ZooKeeper session ends); when the VM is back a new
  agent starts, re-registers and runs its restore hook, for real;
- the **platform's maintenance walk** (the emulator's `/control/walks`): like Azure, one
  maintenance domain at a time (or all at once), each event with Azure's notice: update
  domain by update domain in an availability set, zone by zone for zonal VMs (one event
  per VM: standalone VMs each see their own), fault domain by fault domain in a Flexible
  scale set;
- a **hook journal**: every drain and restore hook is wrapped so that the hook process
  itself appends when it started and ended (the machine's real time) to a per-VM file;
- a **checker** (`quorumgate_testbed.checker`) that trusts neither the coordinator nor its
  records nor the timing of any poll: from the emulator's account of when each VM was
  down and why (acknowledged or NotBefore) and the hook journal, it finds every moment
  our action left a group below `min_available` or took too many maintenance domains,
  counted in the unit the product uses (`registry.domains` on the policy's
  `maintenance_domain` and the VMs' placement).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import uvicorn

from agent.config import build as build_agent_config
from agent.daemon import Agent
from coordinator.config import CoordinatorConfig
from coordinator.node import CoordinatorNode
from coordinator.providers import ProviderConfig
from coordinator.store import ensure_layout, put_policy, put_record
from imds_sim.testing import Emulator, running_emulator
from quorumgate_testbed import checker, zklog
from registry.clock import VirtualClock
from registry.codec import decode
from registry.domains import NAMES, DomainMode, Where, domain_of, resolve
from registry.layout import Layout
from registry.records import ROUTINE_CODES, Decision, DecisionState, Group, Policy
from registry.zk import make_client

S = DecisionState
Printer = Callable[[str], None]


class Workload:
    """What runs on the simulated VMs besides the agent (e.g. a Patroni member).

    The rollout calls these from its own threads; each must return promptly (start
    processes in the background). The default runs nothing.
    """

    def setup(self, rollout: Rollout) -> None:
        """Everything is up but the agents: start the workload on every VM."""

    def ready(self, rollout: Rollout) -> None:
        """Every agent has registered: finish what needs the cluster's topology (an HDFS
        NameNode resolving racks, Kafka's broker.rack) and return once the workload is
        up; the rollout starts after this."""

    def agent_settings(self, vm: str) -> dict[str, Any]:
        """Extra agent config for this VM (drain/restore hooks, groups)."""
        return {}

    def vm_down(self, vm: str) -> None:
        """The platform took the VM down: stop its processes as a reboot would."""

    def vm_up(self, vm: str) -> None:
        """The VM is back: start its processes again."""

    def teardown(self) -> None:
        """Stop everything the workload started."""

    def report(self) -> dict[str, Any]:
        """Figures for the summary (written rows lost, outages...)."""
        return {}


@dataclass(frozen=True)
class GroupSpec:
    name: str
    members: list[str]
    min_available: int | str = 2


def demo_groups(topology: str = "availability-set") -> list[GroupSpec]:
    """Three well-spread 3-replica groups and one placed badly on purpose: in an
    availability set (VM i in UD i % 5) pg-bad has 2 replicas in UD 0; in a zonal cluster
    or a Flexible scale set (VM i in zone i % 3 + 1, or FD i % 3) the first three groups
    have one replica per domain and pg-bad two in the first domain."""
    if topology != "availability-set":
        return [
            GroupSpec("kafka-1", ["vm-0", "vm-1", "vm-2"]),
            GroupSpec("kafka-2", ["vm-3", "vm-4", "vm-5"]),
            GroupSpec("hdfs-nn", ["vm-6", "vm-7", "vm-8"]),
            GroupSpec("pg-bad", ["vm-9", "vm-10", "vm-12"]),
        ]
    return [
        GroupSpec("kafka-1", ["vm-0", "vm-1", "vm-2"]),
        GroupSpec("kafka-2", ["vm-3", "vm-4", "vm-6"]),
        GroupSpec("hdfs-nn", ["vm-7", "vm-8", "vm-9"]),
        GroupSpec("pg-bad", ["vm-5", "vm-10", "vm-11"]),
    ]


@dataclass
class RolloutSpec:
    cluster: dict[str, Any] = field(default_factory=lambda: {"vms": 15, "fds": 3, "uds": 5})
    groups: list[GroupSpec] = field(default_factory=demo_groups)
    speed: float = 300.0
    """Virtual seconds per real second."""
    event_type: str = "Reboot"
    notice_s: float | None = None
    """None: Azure's minimum notice for the type (15 min for Reboot)."""
    downtime_s: float = 120.0
    walk: str = "sequential"
    """`sequential`: the next UD's event once the previous one is over (Azure's walk);
    `together`: every UD's event at once."""
    drain_command: str | None = None
    restore_command: str | None = None
    coordinators: int = 2
    strategy: str = "quorumgate"
    """`quorumgate`; `never-ack` (no coordinator: the platform starts every event at
    NotBefore); `ack-on-sight` (no coordinator: every event is acknowledged as soon as
    it appears, as Microsoft's sample does)."""
    poll_interval_s: float | None = None
    """Agents' IMDS poll interval in virtual seconds (default: a quarter real second)."""
    policy: Policy = field(default_factory=Policy)
    workload: Workload = field(default_factory=Workload)
    providers: list[ProviderConfig] = field(default_factory=list)
    """Group providers for the coordinators (groups whose membership a system keeps)."""
    checked_groups: list[GroupSpec] = field(default_factory=list)
    """Groups the checker watches that are not written as static config (their
    membership comes from `providers`)."""
    timeout_s: float = 180.0
    """Real seconds before the rollout gives up."""
    api: bool = False
    """Serve each coordinator's REST API and dashboard on a free loopback port."""
    register_timeout_s: float = 30.0
    """Real seconds for every agent to register at the start."""
    split: str | None = None
    """The walk's events: `domain` (one per maintenance domain) or `vm` (one per VM);
    default `vm` for zonal VMs (standalone: each sees only its own), else `domain`."""

    @property
    def uds(self) -> int:
        return int(self.cluster.get("uds", 5))

    @property
    def topology(self) -> str:
        return str(self.cluster.get("topology", "availability-set"))


@dataclass
class EventReport:
    event_id: str
    ud: int
    """The event's (first) update domain, -1 when its VMs report none."""
    type: str
    scheduled_at: float
    not_before: float
    started_at: float | None
    start_cause: str | None
    acknowledged_after_s: float | None
    state: str
    held_reason: str
    domain: str = ""
    """The maintenance domain the platform's walk scheduled it for: `UD 3`, `zone 1`, `FD 0`."""
    step: int | None = None
    """Its step in the walk (0 first)."""


@dataclass
class DomainReport:
    """One step of the platform's walk: a maintenance domain and what happened to its events."""

    domain: str
    step: int
    vms: list[str]
    events: int
    acknowledged: int
    forced: int
    no_notice: int
    cancelled: int
    scheduled_at: float | None
    ended_at: float | None


@dataclass
class Summary:
    events: list[EventReport]
    rollout_s: float
    held: int
    forced: int
    acknowledged: int
    violations: list[str]
    completed: bool
    mean_time_to_ack_s: float | None
    workload: dict[str, Any] = field(default_factory=dict)
    topology: str = "availability-set"
    maintenance_domain: str = "update domain"
    """The unit the checker judged the budget in (the product's, for the policy)."""
    walk: list[str] = field(default_factory=list)
    """The domains in the order the platform walked them."""
    walked_in_order: bool = True
    """Every step was scheduled only after the previous one had ended."""
    domains: list[DomainReport] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def table(self) -> str:
        lines = [f"{'event':<10} {'domain':<7} {'type':<8} {'start':<10} {'ack after':>10} "
                 f"{'final':<10} held because (waiting for a previous domain is not a hold)"]
        for e in self.events:
            ack = f"{e.acknowledged_after_s:.0f} s" if e.acknowledged_after_s is not None else "-"
            where = e.domain or (f"UD {e.ud}" if e.ud >= 0 else "-")
            lines.append(f"{e.event_id[:8]:<10} {where:<7} {e.type:<8} "
                         f"{e.start_cause or '-':<10} {ack:>10} {e.state:<10} "
                         f"{e.held_reason[:70]}")
        mean = (f"{self.mean_time_to_ack_s:.0f} s" if self.mean_time_to_ack_s is not None
                else "-")
        if self.domains:
            lines += ["", f"walk ({self.topology}, budget in {self.maintenance_domain}s): "
                      + " -> ".join(f"{d.domain} ({d.acknowledged} acknowledged, "
                                    f"{d.forced} forced)" for d in self.domains)
                      + ("" if self.walked_in_order else "  [steps overlapped]")]
        lines += ["", f"events {len(self.events)}  acknowledged {self.acknowledged}  "
                      f"held {self.held}  forced {self.forced}  mean time to ack {mean}",
                  f"rollout time {self.rollout_s / 60:.1f} min (virtual)  "
                  f"invariant violations {len(self.violations)}  "
                  f"completed {'yes' if self.completed else 'NO'}"]
        return "\n".join(lines)


class AgentLike(Protocol):
    """An agent in this process (`agent.daemon.Agent`) or in another (`procs.RemoteAgent`)."""

    def stop(self, timeout: float = 10.0) -> None: ...

    def wait_registered(self, timeout: float) -> bool: ...


class VMSupervisor:
    """Stops a VM's agent when the emulator takes the VM down; starts a new one when it is up."""

    def __init__(self, emu: Emulator, make_agent: Callable[[str], AgentLike],
                 workload: Workload | None = None) -> None:
        self.emu = emu
        self.make_agent = make_agent
        self.workload = workload or Workload()
        self.agents: dict[str, AgentLike] = {}
        self.restarts = 0
        self._rebooting: set[str] = set()
        self.suspended: dict[str, float] = {}
        """vm -> monotonic time until which its agent stays dead (a nemesis kill)."""
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="vm-power")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vm-supervisor", daemon=True)
        self._lock = threading.Lock()

    def start(self, wait_s: float = 30.0) -> None:
        for name in self.emu.sim.vm_names():
            self.agents[name] = self.make_agent(name)
        deadline = time.monotonic() + wait_s
        for name, agent in self.agents.items():
            if not agent.wait_registered(max(0.1, deadline - time.monotonic())):
                raise RuntimeError(f"agent of {name} did not register")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            for vm in self.emu.sim.vms(self.emu.clock.now()):
                with self._lock:
                    agent = self.agents.get(vm.name)
                    if vm.down and vm.name not in self._rebooting:
                        self._rebooting.add(vm.name)  # the reboot kills everything on it
                        if agent is not None:
                            del self.agents[vm.name]
                            self._pool.submit(agent.stop, 5.0)
                        self._pool.submit(self.workload.vm_down, vm.name)
                    elif not vm.down and agent is None:
                        if self.suspended.get(vm.name, 0) > time.monotonic():
                            continue
                        if vm.name in self._rebooting:
                            self._rebooting.discard(vm.name)
                            self._pool.submit(self.workload.vm_up, vm.name)
                        self.agents[vm.name] = self.make_agent(vm.name)
                        self.restarts += 1

    def kill_agent(self, name: str, for_s: float) -> bool:
        """Kill a VM's agent (not the VM): it stays dead for `for_s` real seconds."""
        with self._lock:
            self.suspended[name] = time.monotonic() + for_s
            agent = self.agents.pop(name, None)
        if agent is not None:
            self._pool.submit(agent.stop, 5.0)
        return agent is not None

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        with self._lock:
            agents, self.agents = list(self.agents.values()), {}
        list(self._pool.map(lambda a: a.stop(5.0), agents))
        self._pool.shutdown(wait=True)


class Watcher:
    """Follows decisions, for the terminal and to know when the rollout has settled.

    Nothing it reads feeds the checker: a poll sees records late and sometimes not at all.
    """

    def __init__(self, zk_hosts: str, layout: Layout, clock: VirtualClock, start: float,
                 ud_of: dict[str, Any], out: Printer) -> None:
        """`ud_of`: each VM's maintenance domain as printed (`UD 3`, `zone 1`; a bare
        number is an update domain)."""
        self.client = make_client(zk_hosts)
        self.layout = layout
        self.clock = clock
        self.start_at = start
        self.ud_of = ud_of
        self.out = out
        self.decisions: dict[str, Decision] = {}
        self.reasons = False
        """Also print every change of a decision's reason (not only of its state)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rollout-watcher", daemon=True)

    def start(self) -> None:
        self.client.start(timeout=15)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.client.stop()
        self.client.close()

    def stamp(self, at: float | None = None) -> str:
        seconds = int((at if at is not None else self.clock.now()) - self.start_at)
        return f"+{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            with contextlib.suppress(Exception):  # a blip of ZooKeeper: try again
                self._poll()

    def _poll(self) -> None:
        for eid in self.client.get_children(self.layout.decisions):
            decision = decode(Decision, self.client.get(self.layout.decision(eid))[0])
            if decision is None:
                continue
            old = self.decisions.get(eid)
            self.decisions[eid] = decision
            if old is None or old.state is not decision.state or (
                    self.reasons and old.reason != decision.reason):
                where = ",".join(sorted({
                    d if isinstance(d, str) else f"UD {d}"
                    for vm in decision.reserved if (d := self.ud_of.get(vm)) is not None}))
                self.out(f"[{self.stamp()}] event {eid[:8]} {where:<7} "
                         f"{decision.state.value:<12} {decision.reason}")


JOURNAL_SCRIPT = """#!/bin/bash
# Written by quorumgate's rollout harness: the hook process itself journals when it
# started and ended (the machine's real time), then runs the real hook, if any.
journal=$1; shift
now() { printf '%s' "${EPOCHREALTIME:-$(date +%s.%N)}"; }
printf '%s %s %s start\n' "$(now)" "$QG_ACTION" "$QG_EVENT_ID" >> "$journal"
rc=0
if [ $# -gt 0 ]; then "$@"; rc=$?; fi
printf '%s %s %s end %s\n' "$(now)" "$QG_ACTION" "$QG_EVENT_ID" "$rc" >> "$journal"
exit $rc
"""


class HookJournal:
    """Per-VM files in which every drain and restore hook records its own start and end.

    The workload's view of when a replica left and rejoined service: written by the hook
    process at the moment it runs, so neither a coordinator's clock, an agent's clock nor
    a poll's timing enters it. A hook that is killed (timeout) writes no end; a drained
    VM is back only when a restore hook ends with exit code 0.
    """

    def __init__(self, folder: Path | None = None) -> None:
        self._own = folder is None
        self.folder = Path(folder or tempfile.mkdtemp(prefix="quorumgate-journal-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        self.script = self.folder / "journal-hook"
        self.script.write_text(JOURNAL_SCRIPT)
        self.script.chmod(0o755)

    def path(self, vm: str) -> Path:
        return self.folder / f"{vm}.journal"

    def wrap(self, vm: str, hook: dict[str, Any] | None) -> dict[str, Any]:
        """The hook config that journals, then runs `hook` (no hook: nothing else)."""
        hook = dict(hook or {})
        if hook.get("url"):
            raise ValueError("URL hooks cannot be journaled; use a command")
        command = hook.pop("command", None)
        inner = ([] if command is None else ["/bin/sh", "-c", command]
                 if isinstance(command, str) else list(command))
        return {**hook, "command": ["/bin/bash", str(self.script), str(self.path(vm)), *inner]}

    def entries(self, clock: VirtualClock) -> list[tuple[str, float, str, str, str, int | None]]:
        """`(vm, virtual time, action, event_id, phase, exit code)`, every VM, unsorted."""
        out = []
        for path in self.folder.glob("*.journal"):
            vm = path.name.removesuffix(".journal")
            for line in path.read_text(errors="replace").splitlines():
                parts = line.split()
                if len(parts) < 4 or parts[3] not in ("start", "end"):
                    continue  # a line torn by a kill
                try:
                    real = float(parts[0].replace(",", "."))
                    rc = int(parts[4]) if parts[3] == "end" and len(parts) > 4 else None
                except ValueError:
                    continue
                at = clock.epoch + (real - clock.anchor) * clock.speed
                out.append((vm, at, parts[1], parts[2], parts[3], rc))
        return out

    def close(self) -> None:
        if self._own:
            shutil.rmtree(self.folder, ignore_errors=True)


AgentHost = Callable[[str, dict[str, Any]], AgentLike]
"""Starts VM `name`'s agent from its config data somewhere else (e.g. its own process)."""


@contextlib.contextmanager
def rollout_stack(spec: RolloutSpec, zk_hosts: str, cluster: str,
                  out: Printer = print, *, emulator_host: str = "127.0.0.1",
                  agent_host: AgentHost | None = None) -> Iterator[Rollout]:
    """Start everything; stop everything on exit, whatever happened.

    `emulator_host`: the address the IMDS emulator listens on (agents in other network
    namespaces reach it there); `agent_host`: run agents elsewhere than in threads here.
    """
    clock = VirtualClock.starting_now(speed=spec.speed)
    layout = Layout(cluster=cluster)
    with running_emulator(clock=clock, cluster=spec.cluster, host=emulator_host) as emu:
        rollout = Rollout(spec, emu, zk_hosts, layout, out, agent_host=agent_host)
        try:
            rollout.start()
            yield rollout
        finally:
            rollout.stop()


class Rollout:
    def __init__(self, spec: RolloutSpec, emu: Emulator, zk_hosts: str, layout: Layout,
                 out: Printer, agent_host: AgentHost | None = None) -> None:
        self.spec = spec
        self.agent_host = agent_host
        self.emu = emu
        self.clock: VirtualClock = emu.clock  # type: ignore[assignment]
        self.zk_hosts = zk_hosts
        self.layout = layout
        self.out = out
        configs = [vm.config for vm in emu.sim.vms(self.clock.now())]
        self.ud_of = {c.name: c.ud for c in configs}
        """Each VM's update domain as IMDS reports it (None: none reported)."""
        self.where = {c.name: Where(c.fd, c.ud, c.zone, c.scale_set, flexible=c.flexible)
                      for c in configs}
        """Each VM's placement as IMDS tells it (the Flexible marker being
        `virtualMachineScaleSet.id`)."""
        self.domain_name, self.domain_of, self.domain_why = self._domains()
        self.coordinators: list[CoordinatorNode] = []
        self.supervisor = VMSupervisor(emu, self._agent, spec.workload)
        labels = {vm: (checker.DOMAIN_LABELS.get(self.domain_name, self.domain_name)
                       + f" {value}") for vm, value in self.domain_of.items()}
        self.watcher = Watcher(zk_hosts, layout, self.clock, self.clock.now(), labels, out)
        self.scheduled: list[str] = []
        self.walk_id: str | None = None
        self.step_of: dict[str, tuple[int, str]] = {}
        """event id -> (walk step, its domain) for the events the walk scheduled."""
        self.journal = HookJournal()
        self.api_urls: list[str] = []
        self._servers: list[tuple[uvicorn.Server, threading.Thread, Any]] = []
        self.operator_token = f"op-{uuid.uuid4().hex}"
        self.viewer_token = f"view-{uuid.uuid4().hex}"

    # ------------------------------------------------------------ parts

    def _domains(self) -> tuple[str, dict[str, int | str], str]:
        """The product's maintenance domain for this cluster (`registry.domains`, with the
        policy's `maintenance_domain` and the VMs' placement): its name, each VM's domain,
        and why there is none. A VM without one under the unit, or every VM of a cluster
        `auto` cannot resolve, is its own domain: the strictest reading of the budget."""
        setting = DomainMode(getattr(self.spec.policy, "maintenance_domain", DomainMode.AUTO))
        mode, why = resolve(setting, self.where.items())
        if mode is None:
            return "VM", {vm: vm for vm in self.where}, why
        out: dict[str, int | str] = {}
        for vm, where in self.where.items():
            domain = domain_of(mode, where)
            out[vm] = domain.value if domain is not None else f"?{vm}"
        return NAMES[mode], out, ""

    def _agent(self, name: str) -> AgentLike:
        data = self.agent_config(name)
        if self.agent_host is not None:
            return self.agent_host(name, data)
        agent = Agent(build_agent_config(data), self.clock)
        agent.start()
        return agent

    def agent_config(self, name: str) -> dict[str, Any]:
        """VM `name`'s agent settings, hooks journaled."""
        poll = self.spec.poll_interval_s or 0.25 * self.spec.speed
        data: dict[str, Any] = {
            "cluster": self.layout.cluster, "zk_hosts": self.zk_hosts,
            "imds_url": self.emu.vm_url(name), "clock": self.clock.spec,
            "poll_interval_s": poll, "zk_session_timeout_s": 4.0,
            "imds_timeout_s": 2.0, "imds_first_call_timeout_s": 10.0,
            "offline_after_failures": 0,
        }
        if self.spec.drain_command:
            data["drain_hook"] = {"command": self.spec.drain_command, "timeout_s": 600}
        if self.spec.restore_command:
            data["restore_hook"] = {"command": self.spec.restore_command, "timeout_s": 600}
        data.update(self.spec.workload.agent_settings(name))
        for hook in ("drain_hook", "restore_hook"):
            data[hook] = self.journal.wrap(name, data.get(hook))
        return data

    def start(self) -> None:
        client = make_client(self.zk_hosts)
        client.start(timeout=15)
        try:
            ensure_layout(client, self.layout)
            put_policy(client, self.layout, self.spec.policy)
            for g in self.spec.groups:
                put_record(client, self.layout.group(g.name),
                           Group(name=g.name, members=g.members, min_available=g.min_available))
        finally:
            client.stop()
            client.close()
        coordinators = self.spec.coordinators if self.spec.strategy == "quorumgate" else 0
        for i in range(coordinators):
            config = CoordinatorConfig(cluster=self.layout.cluster, zk_hosts=self.zk_hosts,
                                       identity=f"coordinator-{i + 1}", resync_s=0.2,
                                       zk_session_timeout_s=4.0, clock=self.clock.spec,
                                       providers=self.spec.providers)
            if self.spec.api:
                config = config.model_copy(update={"tokens": {
                    self.operator_token: "operator", self.viewer_token: "viewer"}})
            node = CoordinatorNode(config, self.clock)
            node.start(timeout=15)
            self.coordinators.append(node)
            if self.spec.api:
                self.api_urls.append(self._serve(node))
        self.spec.workload.setup(self)
        self.supervisor.start(self.spec.register_timeout_s)
        self.spec.workload.ready(self)
        self.watcher.start()

    def _serve(self, node: CoordinatorNode) -> str:
        from coordinator.api import create_app
        from imds_sim.server import bind

        sock = bind("127.0.0.1", 0)
        server = uvicorn.Server(uvicorn.Config(create_app(node), log_level="warning",
                                               lifespan="off", timeout_graceful_shutdown=2))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                                  name=f"api-{node.config.identity}", daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        self._servers.append((server, thread, sock))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    def stop(self) -> None:
        for step in (self.watcher.stop, self.supervisor.stop, self._stop_servers,
                     *[c.stop for c in self.coordinators], self.spec.workload.teardown,
                     self.journal.close):
            with contextlib.suppress(Exception):
                step()

    def _stop_servers(self) -> None:
        for server, _, _ in self._servers:
            server.should_exit = True
        for _, thread, sock in self._servers:
            thread.join(5)
            sock.close()

    def endpoints(self) -> list[str]:
        """Where an operator can look while the rollout runs."""
        lines = []
        for node, url in zip(self.coordinators, self.api_urls, strict=False):
            lines.append(f"{node.config.identity:<14} {url}  (API; OpenAPI at {url}/docs)")
        if self.api_urls:
            from quorumgate.ctl import command_line  # `.venv/bin/quorumgate` if not on PATH

            lines.append(f"dashboard      {self.api_urls[0]}/#token={self.viewer_token}")
            lines.append(f"operator CLI   QG_URL={self.api_urls[0]} "
                         f"QG_TOKEN={self.operator_token} {command_line()} status")
        return lines

    # ------------------------------------------------------------ the rollout

    def schedule_ud(self, ud: int) -> str:
        body: dict[str, Any] = {"ud": ud, "type": self.spec.event_type,
                                "downtime_s": self.spec.downtime_s,
                                "description": f"planned maintenance, update domain {ud}"}
        if self.spec.notice_s is not None:
            body["notice_s"] = self.spec.notice_s
        event = self.emu.schedule(**body)
        self.scheduled.append(event["event_id"])
        self.out(f"[{self.watcher.stamp()}] platform schedules {event['type']} "
                 f"{event['event_id'][:8]} for UD {ud} ({', '.join(event['resources'])})")
        return event["event_id"]

    def event_over(self, eid: str) -> bool:
        """The platform is done with the event (it left IMDS)."""
        return self.emu.event(eid)["status"] not in ("Scheduled", "Started")

    def settled(self, eid: str) -> bool:
        """The event is over and, under quorumgate, its reservation is released."""
        if self.spec.strategy != "quorumgate":
            vms = self.emu.sim.vms(self.clock.now())
            return self.event_over(eid) and not any(v.down for v in vms)
        decision = self.watcher.decisions.get(eid)
        return self.event_over(eid) and decision is not None and (
            decision.state is S.RESTORED or
            (decision.state is S.CANCELLED and not decision.reserved))

    @property
    def split(self) -> str:
        if self.spec.split:
            return self.spec.split
        zonal_standalone = all(w.zone and not w.scale_set for w in self.where.values())
        return "vm" if zonal_standalone else "domain"

    def run(self) -> Summary:
        """The platform walks the cluster's maintenance domains (the emulator's walk: the
        next domain once every event of the current one has left IMDS), until every event
        is over and, under quorumgate, released."""
        started = self.watcher.start_at = self.clock.now()
        deadline = time.monotonic() + self.spec.timeout_s
        body: dict[str, Any] = {"type": self.spec.event_type, "downtime_s": self.spec.downtime_s,
                                "split": self.split, "together": self.spec.walk == "together"}
        if self.spec.notice_s is not None:
            body["notice_s"] = self.spec.notice_s
        walk = self.emu.walk(**body)
        self.walk_id = walk["walk_id"]
        self.out(f"[{self.watcher.stamp()}] platform walks the cluster "
                 f"{walk['unit'].replace('_', ' ')} by {walk['unit'].replace('_', ' ')}"
                 f"{' (all at once)' if body['together'] else ''}: "
                 + ", ".join(step["domain"] for step in walk["steps"]))
        self._follow(walk)
        while time.monotonic() < deadline:
            walk = self.emu.get_walk(self.walk_id)
            self._follow(walk)
            if self.spec.strategy == "ack-on-sight":
                self._ack_on_sight()
            if walk["status"] != "running" and all(self.settled(eid) for eid in self.scheduled):
                break
            time.sleep(0.05)
        return self.summary(started)

    def _follow(self, walk: dict[str, Any]) -> None:
        """Take up the events the walk scheduled since the last look."""
        for index, step in enumerate(walk["steps"]):
            for eid in step["event_ids"]:
                if eid in self.step_of:
                    continue
                self.step_of[eid] = (index, step["domain"])
                self.scheduled.append(eid)
                event = self.emu.event(eid)
                self.out(f"[{self.watcher.stamp()}] platform schedules {event['type']} "
                         f"{eid[:8]} for {step['domain']} ({', '.join(event['resources'])})")

    def _ack_on_sight(self) -> None:
        """What a naive client does: POST StartRequests for every event it sees."""
        for eid in self.scheduled:
            event = self.emu.event(eid)
            if event["status"] == "Scheduled" and not event.get("acks"):
                vm = event["resources"][0]
                with contextlib.suppress(httpx.HTTPError):  # a 429 is retried next loop
                    httpx.post(f"{self.emu.vm_url(vm)}/metadata/scheduledevents",
                               params={"api-version": "2020-07-01"},
                               headers={"Metadata": "true"}, trust_env=False, timeout=5,
                               json={"StartRequests": [{"EventId": eid}]})

    # ------------------------------------------------------------ the checker

    def truth(self, started: float, groups: list[checker.GroupVersion] | None = None,
              faults: list[checker.FaultWindow] | None = None,
              zk_data_dirs: list[Path] | None = None) -> checker.Timeline:
        """Everything the checker may read: the platform's events, the hook journal and,
        when the ensemble's data directories are given, ZooKeeper's transaction logs."""
        views = self.emu.control.get("/events").json()
        events = {v["event_id"]: checker.EventTruth.from_view(v) for v in views}
        requested = claims = None
        if zk_data_dirs:
            clock = self.clock
            writes = [(clock.epoch + (w.time_ms / 1000 - clock.anchor) * clock.speed, w.path,
                       w.data) for w in zklog.committed_writes(
                           zk_data_dirs, quorum=len(zk_data_dirs) // 2 + 1,
                           under=self.layout.base + "/")]
            requested = checker.drain_requests(writes, self.layout.drains)
            claims = checker.ack_claims(writes, self.layout.acks)
        outages = [*checker.down_outages(events.values(), claims),
                   *checker.journal_outages(self.journal.entries(self.clock), requested)]
        if groups is None:
            groups = [checker.GroupVersion(g.name, tuple(g.members), g.min_available)
                      for g in [*self.spec.groups, *self.spec.checked_groups]]
        return checker.Timeline(events, outages, groups, dict(self.domain_of), faults or [],
                                started, self.clock.now(), domain=self.domain_name)

    def rules(self, **extra: Any) -> checker.Rules:
        policy = self.spec.policy
        return checker.Rules(max_concurrent_uds=policy.max_concurrent_uds,
                             best_effort_lead_s=(policy.best_effort_lead_s
                                                 + float(getattr(policy, "clock_skew_s", 0.0))),
                             **extra)

    def summary(self, started: float) -> Summary:
        events = [self.emu.event(eid) for eid in self.scheduled]
        vms = {v.name: v for v in self.emu.sim.vms(self.clock.now())}
        reports = []
        for e in events:
            decision = self.watcher.decisions.get(e["event_id"])
            acks = [a for a in e.get("acks", []) if a.get("effective")]
            ack_after = acks[0]["at"] - e["created_at"] if acks else None
            held = next((t.reason for t in decision.history if t.to is S.HELD
                         and t.code not in ROUTINE_CODES), "") if decision else ""
            step, domain = self.step_of.get(e["event_id"], (None, ""))
            reports.append(EventReport(
                event_id=e["event_id"], ud=(e["uds"] or [-1])[0], type=e["type"],
                scheduled_at=e["created_at"] - started, not_before=e["not_before"] - started,
                started_at=(e["started_at"] - started) if e.get("started_at") else None,
                start_cause=e.get("start_cause"), acknowledged_after_s=ack_after,
                state=decision.state.value if decision else "unseen", held_reason=held,
                domain=domain, step=step))
        end = max([started, *(t.at for v in vms.values() for t in v.history),
                   *(d.updated_at for d in self.watcher.decisions.values())])
        acked = [r for r in reports if r.start_cause == "ack"]
        times = [r.acknowledged_after_s for r in acked if r.acknowledged_after_s is not None]
        domains, in_order = self._walk_report(started, events)
        return Summary(
            events=reports, rollout_s=end - started,
            held=sum(1 for r in reports if r.held_reason),
            forced=sum(1 for r in reports if r.start_cause == "not_before"),
            acknowledged=len(acked), violations=self.violations(started),
            completed=all(self.settled(eid) for eid in self.scheduled),
            mean_time_to_ack_s=sum(times) / len(times) if times else None,
            workload=self.spec.workload.report(), topology=self.spec.topology,
            maintenance_domain=self.domain_name, walk=[d.domain for d in domains],
            walked_in_order=in_order, domains=domains)

    def _walk_report(self, started: float, events: list[dict[str, Any]]
                     ) -> tuple[list[DomainReport], bool]:
        """Per step of the walk: its domain, its events' fates, when it ran (from the
        platform's own account); and whether each step began only after the previous
        one ended."""
        if self.walk_id is None:
            return [], True
        walk = self.emu.get_walk(self.walk_id)
        by_id = {e["event_id"]: e for e in events}
        out = []
        for index, step in enumerate(walk["steps"]):
            mine = [by_id[eid] for eid in step["event_ids"] if eid in by_id]
            causes = [e.get("start_cause") for e in mine]
            out.append(DomainReport(
                domain=step["domain"], step=index, vms=step["vms"], events=len(mine),
                acknowledged=causes.count("ack"), forced=causes.count("not_before"),
                no_notice=causes.count("immediate"),
                cancelled=sum(1 for e in mine if e["status"] == "Cancelled"),
                scheduled_at=(step["scheduled_at"] - started
                              if step["scheduled_at"] is not None else None),
                ended_at=step["ended_at"] - started if step["ended_at"] is not None else None))
        in_order = walk["together"] or all(
            b.scheduled_at is not None and a.ended_at is not None
            and b.scheduled_at >= a.ended_at for a, b in zip(out, out[1:], strict=False))
        return out, in_order

    def violations(self, started: float) -> list[str]:
        """Moments our action left a group below min_available or took too many maintenance
        domains, judged from ground truth (`quorumgate_testbed.checker`)."""
        return [v.text for v in checker.safety_violations(self.truth(started), self.rules())]
