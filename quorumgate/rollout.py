"""A maintenance rollout on a simulated cluster, end to end, with a ground-truth checker.

Used by `quorumgate demo`, the end-to-end tests and the benchmarks. It runs the real
parts in one process: the IMDS emulator (HTTP, virtual clock), one agent per VM (each
with its own IMDS base URL and ZooKeeper session), coordinator replicas, and:

- a **VM supervisor** per cluster: when the emulator takes a VM down, its agent is
  stopped as a reboot stops it (the ZooKeeper session ends); when the VM is back a new
  agent starts, re-registers and runs its restore hook, for real;
- the **platform's update-domain walk**: like Azure, one UD's event at a time (or all
  UDs at once), each with Azure's notice;
- a **checker** that trusts neither the coordinator nor its records: from the
  emulator's account of when each VM was down and why (acknowledged or NotBefore) and
  the agents' drain reports, it finds every moment a group was below `min_available`
  and blames our acknowledgement or the platform.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import uvicorn

from agent.config import build as build_agent_config
from agent.daemon import Agent
from coordinator.config import CoordinatorConfig
from coordinator.node import CoordinatorNode
from coordinator.providers import ProviderConfig
from coordinator.store import ensure_layout, put_policy, put_record
from imds_sim.testing import Emulator, running_emulator
from registry.clock import VirtualClock
from registry.codec import decode
from registry.layout import Layout
from registry.records import (
    Decision,
    DecisionState,
    DrainRecord,
    DrainStatus,
    DrainWant,
    Group,
    Policy,
)
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


def demo_groups() -> list[GroupSpec]:
    """Three well-spread 3-replica groups and one placed badly on purpose (2 in UD 0)."""
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

    @property
    def uds(self) -> int:
        return int(self.cluster.get("uds", 5))


@dataclass
class EventReport:
    event_id: str
    ud: int
    type: str
    scheduled_at: float
    not_before: float
    started_at: float | None
    start_cause: str | None
    acknowledged_after_s: float | None
    state: str
    held_reason: str


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

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def table(self) -> str:
        lines = [f"{'event':<10} {'UD':>2} {'type':<8} {'start':<10} {'ack after':>10} "
                 f"{'final':<10} held because (waiting for a previous UD is not a hold)"]
        for e in self.events:
            ack = f"{e.acknowledged_after_s:.0f} s" if e.acknowledged_after_s is not None else "-"
            lines.append(f"{e.event_id[:8]:<10} {e.ud:>2} {e.type:<8} "
                         f"{e.start_cause or '-':<10} {ack:>10} {e.state:<10} "
                         f"{e.held_reason[:70]}")
        mean = (f"{self.mean_time_to_ack_s:.0f} s" if self.mean_time_to_ack_s is not None
                else "-")
        lines += ["", f"events {len(self.events)}  acknowledged {self.acknowledged}  "
                      f"held {self.held}  forced {self.forced}  mean time to ack {mean}",
                  f"rollout time {self.rollout_s / 60:.1f} min (virtual)  "
                  f"invariant violations {len(self.violations)}  "
                  f"completed {'yes' if self.completed else 'NO'}"]
        return "\n".join(lines)


class VMSupervisor:
    """Stops a VM's agent when the emulator takes the VM down; starts a new one when it is up."""

    def __init__(self, emu: Emulator, make_agent: Callable[[str], Agent],
                 workload: Workload | None = None) -> None:
        self.emu = emu
        self.make_agent = make_agent
        self.workload = workload or Workload()
        self.agents: dict[str, Agent] = {}
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
    """Follows decisions (for the terminal) and agents' drain reports (for the checker)."""

    def __init__(self, zk_hosts: str, layout: Layout, clock: VirtualClock, start: float,
                 ud_of: dict[str, int], out: Printer) -> None:
        self.client = make_client(zk_hosts)
        self.layout = layout
        self.clock = clock
        self.start_at = start
        self.ud_of = ud_of
        self.out = out
        self.decisions: dict[str, Decision] = {}
        self.drained: dict[str, list[tuple[float, float | None, str]]] = {}
        """vm -> [(from, until, event_id)]: when the agent reported the VM drained."""
        self._drain_seen: dict[str, tuple[str, DrainWant, DrainStatus]] = {}
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
        now = self.clock.now()
        for vm in self.client.get_children(self.layout.drains):
            rec = decode(DrainRecord, self.client.get(self.layout.drain(vm))[0])
            if rec is None or self._drain_seen.get(vm) == (rec.event_id, rec.want, rec.status):
                continue
            self._drain_seen[vm] = (rec.event_id, rec.want, rec.status)
            spans = self.drained.setdefault(vm, [])
            open_span = spans and spans[-1][1] is None
            out_of_service = rec.want is DrainWant.DRAINED and rec.status in (
                DrainStatus.RUNNING, DrainStatus.DRAINED, DrainStatus.FAILED)
            if out_of_service and not open_span:
                spans.append((now, None, rec.event_id))
            elif rec.status is DrainStatus.RESTORED and open_span:
                begin, _, eid = spans[-1]
                spans[-1] = (begin, now, eid)
        for eid in self.client.get_children(self.layout.decisions):
            decision = decode(Decision, self.client.get(self.layout.decision(eid))[0])
            if decision is None:
                continue
            old = self.decisions.get(eid)
            self.decisions[eid] = decision
            if old is None or old.state is not decision.state:
                ud = sorted({self.ud_of[vm] for vm in decision.reserved if vm in self.ud_of})
                where = f"UD {','.join(map(str, ud))}" if ud else ""
                self.out(f"[{self.stamp()}] event {eid[:8]} {where:<5} "
                         f"{decision.state.value:<12} {decision.reason}")


@contextlib.contextmanager
def rollout_stack(spec: RolloutSpec, zk_hosts: str, cluster: str,
                  out: Printer = print) -> Iterator[Rollout]:
    """Start everything; stop everything on exit, whatever happened."""
    clock = VirtualClock.starting_now(speed=spec.speed)
    layout = Layout(cluster=cluster)
    with running_emulator(clock=clock, cluster=spec.cluster) as emu:
        rollout = Rollout(spec, emu, zk_hosts, layout, out)
        try:
            rollout.start()
            yield rollout
        finally:
            rollout.stop()


class Rollout:
    def __init__(self, spec: RolloutSpec, emu: Emulator, zk_hosts: str, layout: Layout,
                 out: Printer) -> None:
        self.spec = spec
        self.emu = emu
        self.clock: VirtualClock = emu.clock  # type: ignore[assignment]
        self.zk_hosts = zk_hosts
        self.layout = layout
        self.out = out
        self.ud_of = {vm.name: vm.config.ud for vm in emu.sim.vms(self.clock.now())}
        self.coordinators: list[CoordinatorNode] = []
        self.supervisor = VMSupervisor(emu, self._agent, spec.workload)
        self.watcher = Watcher(zk_hosts, layout, self.clock, self.clock.now(), self.ud_of, out)
        self.scheduled: list[str] = []
        self.api_urls: list[str] = []
        self._servers: list[tuple[uvicorn.Server, threading.Thread, Any]] = []
        self.operator_token = f"op-{uuid.uuid4().hex}"
        self.viewer_token = f"view-{uuid.uuid4().hex}"

    # ------------------------------------------------------------ parts

    def _agent(self, name: str) -> Agent:
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
        agent = Agent(build_agent_config(data), self.clock)
        agent.start()
        return agent

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
        self.supervisor.start()
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
                     *[c.stop for c in self.coordinators], self.spec.workload.teardown):
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
            lines.append(f"dashboard      {self.api_urls[0]}/#token={self.viewer_token}")
            lines.append(f"operator CLI   QG_URL={self.api_urls[0]} "
                         f"QG_TOKEN={self.operator_token} quorumgate status")
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

    def run(self) -> Summary:
        started = self.watcher.start_at = self.clock.now()
        deadline = time.monotonic() + self.spec.timeout_s
        uds = list(range(self.spec.uds))
        if self.spec.walk == "together":
            for ud in uds:
                self.schedule_ud(ud)
            uds = []
        else:
            self.schedule_ud(uds.pop(0))
        while time.monotonic() < deadline:
            if self.spec.strategy == "ack-on-sight":
                self._ack_on_sight()
            if all(self.event_over(eid) for eid in self.scheduled):
                if not uds:
                    if all(self.settled(eid) for eid in self.scheduled):
                        break
                else:
                    self.schedule_ud(uds.pop(0))
            time.sleep(0.05)
        return self.summary(started)

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

    def summary(self, started: float) -> Summary:
        events = [self.emu.event(eid) for eid in self.scheduled]
        vms = {v.name: v for v in self.emu.sim.vms(self.clock.now())}
        reports = []
        for e in events:
            decision = self.watcher.decisions.get(e["event_id"])
            acks = [a for a in e.get("acks", []) if a.get("effective")]
            ack_after = acks[0]["at"] - e["created_at"] if acks else None
            held = next((t.reason for t in decision.history if t.to is S.HELD
                         and not t.reason.startswith("waiting")), "") if decision else ""
            reports.append(EventReport(
                event_id=e["event_id"], ud=(e["uds"] or [-1])[0], type=e["type"],
                scheduled_at=e["created_at"] - started, not_before=e["not_before"] - started,
                started_at=(e["started_at"] - started) if e.get("started_at") else None,
                start_cause=e.get("start_cause"), acknowledged_after_s=ack_after,
                state=decision.state.value if decision else "unseen", held_reason=held))
        end = max([started, *(t.at for v in vms.values() for t in v.history),
                   *(d.updated_at for d in self.watcher.decisions.values())])
        acked = [r for r in reports if r.start_cause == "ack"]
        times = [r.acknowledged_after_s for r in acked if r.acknowledged_after_s is not None]
        return Summary(
            events=reports, rollout_s=end - started,
            held=sum(1 for r in reports if r.held_reason),
            forced=sum(1 for r in reports if r.start_cause == "not_before"),
            acknowledged=len(acked), violations=self.violations(events, vms),
            completed=all(self.settled(eid) for eid in self.scheduled),
            mean_time_to_ack_s=sum(times) / len(times) if times else None,
            workload=self.spec.workload.report())

    def violations(self, events: list[dict[str, Any]], vms: dict[str, Any]) -> list[str]:
        """Moments a group was below min_available with only our actions to blame."""
        cause = {e["event_id"]: e.get("start_cause") for e in events}
        spans: dict[str, list[tuple[float, float, str, str]]] = {}
        for name, vm in vms.items():
            down_since: float | None = None
            down_event = ""
            for t in vm.history:
                if t.state == "down":
                    down_since, down_event = t.at, t.event_id or ""
                elif t.state == "up" and down_since is not None:
                    spans.setdefault(name, []).append((down_since, t.at, "down", down_event))
                    down_since = None
            if down_since is not None:
                spans.setdefault(name, []).append((down_since, float("inf"), "down", down_event))
        for name, drained in self.watcher.drained.items():
            for begin, until, eid in drained:
                spans.setdefault(name, []).append(
                    (begin, until if until is not None else float("inf"), "drained", eid))
        moments = sorted({s[0] for items in spans.values() for s in items})
        problems = []
        for group in [*self.spec.groups, *self.spec.checked_groups]:
            required = (len(group.members) // 2 + 1 if group.min_available == "majority"
                        else int(group.min_available))
            for at in moments:
                out = {vm: s for vm in group.members for s in spans.get(vm, [])
                       if s[0] <= at < s[1]}
                if len(group.members) - len(out) >= required:
                    continue
                platform = [vm for vm, s in out.items() if cause.get(s[3]) == "not_before"]
                if not platform:
                    problems.append(f"group {group.name} at +{at - self.watcher.start_at:.0f}s:"
                                    f" {len(group.members) - len(out)} of "
                                    f"{len(group.members)} up, min {required}; out: "
                                    f"{', '.join(sorted(out))}")
        budget = self.spec.policy.max_concurrent_uds
        for at in moments:
            ours = {vm for vm, items in spans.items() for s in items
                    if s[0] <= at < s[1] and cause.get(s[3]) != "not_before"}
            uds = sorted({self.ud_of[vm] for vm in ours if vm in self.ud_of})
            if len(uds) > budget:
                problems.append(f"at +{at - self.watcher.start_at:.0f}s our drains and "
                                f"acknowledged events span UDs {uds} (max {budget})")
        return problems
