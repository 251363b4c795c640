"""Drive a real coordinator through ZooKeeper as its agents would, and time its answers.

- `populate`: `groups/<g>` (3 replicas, spread over FDs and UDs) and one *ephemeral*
  `vms/<vm>` registration per VM, created from a handful of kazoo sessions (not one
  session per VM: registrations are light, what matters is the coordinator's load);
- `EventCycles`: one event at a time, for the VMs of one UD: create `events/<id>` as an
  agent would, wait for the drain requests (`drain/<vm>`, seen through a watch as an
  agent sees them), report every VM drained (compare-and-set, in parallel), wait for
  `decisions/<id>` to say approved; then finish the event (Gone before it started,
  i.e. cancelled), report the restores and wait for the release, so the next event
  starts from a quiet cluster.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from coordinator.store import ensure_layout, put_policy
from registry.codec import decode, encode
from registry.layout import Layout
from registry.records import (
    Decision,
    DecisionState,
    DrainRecord,
    DrainStatus,
    DrainWant,
    EventType,
    Group,
    PlatformEvent,
    PlatformStatus,
    Policy,
    VMRegistration,
)
from registry.zk import make_client
from registry.zookeeper import DataWatch, KazooClient

S = DecisionState
FDS = 3


def vm_name(i: int) -> str:
    return f"vm-{i:05d}"


def topology(n: int, uds: int) -> dict[str, tuple[int, int]]:
    """VM i in FD i % 3 and UD i % uds (Azure's round-robin)."""
    return {vm_name(i): (i % FDS, i % uds) for i in range(n)}


def groups_for(n: int) -> list[Group]:
    """Replicas i, i+1, i+2: distinct FDs and (with uds >= 3) distinct UDs."""
    return [Group(name=f"g-{k:05d}", members=[vm_name(3 * k + j) for j in range(3)],
                  min_available=2) for k in range(n // 3)]


def _wait_all(results: list, timeout: float = 120.0) -> None:
    for result in results:
        result.get(timeout=timeout)


class Registrations:
    """Ephemeral `vms/<vm>` nodes spread over `sessions` kazoo sessions."""

    def __init__(self, hosts: str, layout: Layout, n: int, uds: int, sessions: int = 8) -> None:
        self.hosts = hosts
        self.layout = layout
        self.n = n
        self.uds = uds
        self.clients = [make_client(hosts) for _ in range(sessions)]

    def start(self) -> None:
        for client in self.clients:
            client.start(timeout=15)
        pending = []
        for i, (name, (fd, ud)) in enumerate(topology(self.n, self.uds).items()):
            reg = VMRegistration(name=name, vm_id=f"id-{name}", fd=fd, ud=ud,
                                 registered_at=time.time())
            client = self.clients[i % len(self.clients)]
            pending.append(client.create_async(self.layout.vm(name), encode(reg),
                                               ephemeral=True))
            if len(pending) >= 500:
                _wait_all(pending)
                pending = []
        _wait_all(pending)

    def stop(self) -> None:
        for client in self.clients:
            client.stop()
            client.close()


def populate(client: KazooClient, layout: Layout, n: int) -> int:
    """Layout, default policy and the groups; returns the group count."""
    ensure_layout(client, layout)
    put_policy(client, layout, Policy())
    pending = []
    groups = groups_for(n)
    for g in groups:
        pending.append(client.create_async(layout.group(g.name), encode(g)))
        if len(pending) >= 500:
            _wait_all(pending)
            pending = []
    _wait_all(pending)
    return len(groups)


@dataclass
class CycleTimes:
    to_drain_s: list[float] = field(default_factory=list)
    """events/<id> create sent -> drain/<vm> request seen by a watch."""
    to_approval_s: list[float] = field(default_factory=list)
    """last drain result written -> decisions/<id> approved seen by a watch."""
    cycle_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class _Waiter:
    """A DataWatch on one znode until `predicate(record)` holds; the time it first did."""

    def __init__(self, client: KazooClient, path: str, kind: type,
                 predicate: Callable[[object], bool]) -> None:
        self.done = threading.Event()
        self.at: float | None = None
        self.record = None

        def on_change(data: bytes | None, stat: object, event: object = None) -> bool | None:
            if self.done.is_set():
                return False
            if data:
                record = decode(kind, data, path)
                if record is not None and predicate(record):
                    self.at = time.perf_counter()
                    self.record = record
                    self.done.set()
                    return False
            return None

        DataWatch(client, path, on_change)

    def wait(self, timeout: float) -> float:
        if not self.done.wait(timeout):
            raise TimeoutError("timed out")
        assert self.at is not None
        return self.at


class EventCycles:
    def __init__(self, client: KazooClient, layout: Layout, n: int, uds: int) -> None:
        self.client = client
        self.layout = layout
        self.by_ud: dict[int, list[str]] = {}
        for name, (_, ud) in topology(n, uds).items():
            self.by_ud.setdefault(ud, []).append(name)
        self.uds = uds

    def run(self, count: int, timeout: float = 60.0, prefix: str = "ev") -> CycleTimes:
        times = CycleTimes()
        for k in range(count):
            try:
                self.cycle(f"{prefix}-{k:04d}", self.by_ud[k % self.uds], times, timeout)
            except TimeoutError as exc:
                times.errors.append(f"{prefix}-{k:04d}: {exc}")
                break
        return times

    def _drains(self, eid: str, vms: list[str], want: DrainWant,
                timeout: float) -> dict[str, tuple[DrainRecord, int]]:
        deadline = time.monotonic() + timeout
        while True:
            results = [(vm, self.client.get_async(self.layout.drain(vm))) for vm in vms]
            out = {}
            for vm, result in results:
                try:
                    data, stat = result.get(timeout=30)
                except Exception:
                    continue
                rec = decode(DrainRecord, data)
                if rec is not None and rec.event_id == eid and rec.want is want:
                    out[vm] = (rec, stat.version)
            if len(out) == len(vms):
                return out
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(out)} of {len(vms)} {want.value} requests for {eid}")
            time.sleep(0.005)

    def _report(self, records: dict[str, tuple[DrainRecord, int]], status: DrainStatus) -> None:
        pending = []
        for vm, (rec, version) in records.items():
            done = rec.model_copy(update={"status": status, "updated_at": time.time()})
            pending.append(self.client.set_async(self.layout.drain(vm), encode(done),
                                                 version=version))
        _wait_all(pending)

    def cycle(self, eid: str, vms: list[str], times: CycleTimes, timeout: float) -> None:
        layout, client = self.layout, self.client
        began = time.perf_counter()
        first = vms[0]
        drained_seen = _Waiter(client, layout.drain(first), DrainRecord,
                               lambda r: r.event_id == eid and r.want is DrainWant.DRAINED)
        now = time.time()
        event = PlatformEvent(event_id=eid, event_type=EventType.REBOOT,
                              status=PlatformStatus.SCHEDULED, resources=vms,
                              not_before=now + 900, seen_by=vms, first_seen=now, last_seen=now)
        sent = time.perf_counter()
        client.create(layout.event(eid), encode(event))
        times.to_drain_s.append(drained_seen.wait(timeout) - sent)
        requests = self._drains(eid, vms, DrainWant.DRAINED, timeout)
        approved = _Waiter(client, layout.decision(eid), Decision,
                           lambda d: d.state is S.APPROVED)
        self._report(requests, DrainStatus.DRAINED)
        reported = time.perf_counter()
        times.to_approval_s.append(max(0.0, approved.wait(timeout) - reported))
        # finish: the event leaves IMDS before it started (cancelled), VMs restore
        settled = _Waiter(client, layout.decision(eid), Decision,
                          lambda d: d.state is S.CANCELLED and not d.reserved)
        gone = event.model_copy(update={"status": PlatformStatus.GONE, "gone_at": time.time()})
        client.set(layout.event(eid), encode(gone))
        self._report(self._drains(eid, vms, DrainWant.RESTORED, timeout), DrainStatus.RESTORED)
        settled.wait(timeout)
        times.cycle_s.append(time.perf_counter() - began)
