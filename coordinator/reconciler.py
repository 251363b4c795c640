"""The leader's loop: read a snapshot, ask the safety core, write what it decided. Thin.

Every replica runs one `Reconciler`. All of them campaign in a kazoo `Election`; the
winner runs decision passes whenever the mirror changes (ZooKeeper watches) and at
least every `resync_s` seconds. The others only mirror and serve reads.

Fail-safe rules:
- the moment the ZooKeeper connection is suspended, the leader stops writing (it may
  already have been replaced); it resumes only once reconnected with its session;
- when its session is lost it steps down, and any write it still attempts fails on
  the fence (its election znode is gone);
- a new leader reads every decision from ZooKeeper and resumes from there: drains and
  approvals already written are not repeated (the core is idempotent on its records).
"""

from __future__ import annotations

import logging
import threading
import time

from coordinator.gates import GateRunner
from coordinator.metrics import CoordinatorMetrics
from coordinator.notify import Notifier
from coordinator.safety import Change, decide
from coordinator.store import (
    ClusterCache,
    ClusterView,
    DecisionsRead,
    FencedWriter,
    Memo,
    WriteResult,
    build_snapshot,
    forget_finished,
    read_decisions,
    trim_audit,
)
from registry.clock import Clock
from registry.layout import Layout
from registry.records import TERMINAL_STATES, DecisionState
from registry.zookeeper import PERMANENT, Client, Election, KazooException, KazooState

log = logging.getLogger(__name__)


class FenceLost(Exception):
    """Our election znode is gone: we are no longer the leader."""


class Reconciler:
    def __init__(self, client: Client, layout: Layout, cache: ClusterCache, clock: Clock,
                 identity: str, metrics: CoordinatorMetrics | None = None,
                 gates: GateRunner | None = None, notifier: Notifier | None = None,
                 resync_s: float = 1.0, audit_keep: int = 10_000,
                 retention_s: float = 7 * 86400) -> None:
        self.client = client
        self.layout = layout
        self.cache = cache
        self.clock = clock
        self.identity = identity
        self.metrics = metrics or CoordinatorMetrics()
        self.gates = gates or GateRunner()
        self.notifier = notifier
        self.resync_s = resync_s
        self.audit_keep = audit_keep
        self.retention_s = retention_s
        self.election = Election(client, layout.election, identifier=identity)
        self.is_leader = False
        self.fence: str | None = None
        self.fatal: str | None = None
        """A permanent ZooKeeper refusal (NoAuth...) seen by the last campaign: readiness
        fails with it until a campaign succeeds."""
        self._backoff = 5.0
        self.last_pass_at: float | None = None
        self.last_pass_summary = ""
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._lost = threading.Event()
        self._thread: threading.Thread | None = None
        self._passes = 0
        self._memo: Memo = {}
        """Decoded decisions and acks by path and version, across passes."""
        self._wrote_drains: dict[str, int] = {}
        """Drain records this leader wrote, by the version its write made: a mirror older
        than them must not be decided on (it would not see our own restore request)."""
        self._connected_at = 0.0
        """Clock time of the last (re)connection: deadlines do not run from before it."""
        self._leading_since = 0.0
        if client.connected:
            self._connected.set()
            self._connected_at = clock.now()
        client.add_listener(self._on_state)
        cache.listen(self._wake.set)

    # ------------------------------------------------------------ life

    def start(self) -> None:
        self._thread = threading.Thread(target=self._campaign, name=f"reconciler-{self.identity}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self.election.cancel()
        if self._thread is not None:
            self._thread.join(timeout)
        self.gates.close()

    def leader_identity(self) -> str | None:
        try:
            contenders = self.election.contenders()
        except KazooException:
            return None
        return contenders[0] if contenders else None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def _on_state(self, state: str) -> None:
        """kazoo's listener thread: never block here."""
        if state == KazooState.CONNECTED:
            self._connected_at = self.clock.now()
            self._connected.set()
        else:
            self._connected.clear()  # SUSPENDED: stop deciding at once
            if state == KazooState.LOST:
                self._lost.set()
        self.metrics.zk_connected.set(1 if state == KazooState.CONNECTED else 0)
        self._wake.set()

    def _campaign(self) -> None:
        while not self._stop.is_set():
            if not self._connected.wait(timeout=1.0):
                continue
            self._lost.clear()
            # A fresh recipe each campaign: after a lost session kazoo's Lock may still
            # believe it holds the old (gone) node and never contend again.
            self.election = Election(self.client, self.layout.election,
                                     identifier=self.identity)
            pause = 0.2
            try:
                self.election.run(self._lead)
                self._clear_fatal()
            except PERMANENT as exc:
                pause = self._permanent(exc)
            except KazooException as exc:
                log.warning("election interrupted: %r", exc)
            except Exception:
                log.exception("leader loop crashed; campaigning again")
            if not self._stop.is_set():
                self._stop.wait(pause)

    def _permanent(self, exc: Exception) -> float:
        """An error retrying cannot fix (credentials, ACLs): say it once, clearly, make
        readiness fail (`fatal`), and back off instead of spinning."""
        reason = (f"ZooKeeper refuses this coordinator ({type(exc).__name__}): check "
                  "zk_auth (QG_ZK_AUTH) and the ACLs of the cluster's znodes")
        if reason != self.fatal:
            log.error("%s; campaigning again with backoff", reason)
            self._backoff = 5.0
        else:
            log.debug("%s (again)", reason)
            self._backoff = min(60.0, self._backoff * 2)
        self.fatal = reason
        return self._backoff

    def _clear_fatal(self) -> None:
        if self.fatal is not None:
            log.info("ZooKeeper accepts this coordinator again")
        self.fatal = None

    def _lead(self) -> None:
        self._clear_fatal()
        lock = self.election.lock
        fence = f"{lock.path}/{lock.node}"
        log.info("%s is the leader (fence %s)", self.identity, fence)
        self.is_leader = True
        self.fence = fence
        self._leading_since = self.clock.now()
        self.metrics.leader.set(1)
        try:
            while not self._stop.is_set() and not self._lost.is_set():
                self._wake.wait(self.resync_s)
                self._wake.clear()
                if not self._connected.is_set():
                    continue  # suspended: we may have been replaced; decide nothing
                try:
                    self.run_pass(fence)
                except FenceLost:
                    log.warning("%s lost its fence; stepping down", self.identity)
                    return
                except KazooException as exc:
                    log.warning("decision pass aborted: %r", exc)
        finally:
            self.is_leader = False
            self.fence = None
            self.metrics.leader.set(0)

    # ------------------------------------------------------------ one pass

    def run_pass(self, fence: str) -> list[Change]:
        started = time.perf_counter()
        read = read_decisions(self.client, self.layout, self._memo)
        if len(self._memo) > 4 * (len(read.versions) + len(read.acks)) + 64:
            self._memo.clear()  # forgotten events
        view = self.cache.view()
        if self._behind_own_writes(view):
            self.metrics.passes_skipped.inc()
            return []  # the mirror's next change wakes us
        now = self.clock.now()
        gates = self.gates.results(gates_needed(view, read))
        snap = build_snapshot(view, read, now, gates,
                              watching_since=max(self._leading_since, self._connected_at))
        changes = decide(snap)
        writer = FencedWriter(self.client, self.layout, fence, f"coordinator:{self.identity}",
                              read, view.versions("drain"))
        written: list[Change] = []
        for change in changes:
            if not self._connected.is_set():
                break
            result = writer.write(change, now)
            self.metrics.writes.labels(result.value).inc()
            if result is WriteResult.WRITTEN:
                written.append(change)
                for rec in change.drains:
                    self._wrote_drains[rec.vm] = writer.drain_versions[rec.vm]
                self._observe(change, snap.events.get(change.decision.event_id), now)
                continue
            self._wake.set()  # re-read and retry at once
            if result is WriteResult.FENCED and self.client.exists(fence) is None:
                raise FenceLost(fence)
            break  # later changes were decided assuming this one landed: re-read first
        decisions = {eid: item.record for eid, item in read.decisions.items()}
        decisions.update({c.decision.event_id: c.decision for c in written})
        self.metrics.observe_decisions(decisions, view.events)
        self.metrics.passes.inc()
        self.metrics.pass_seconds.observe(time.perf_counter() - started)
        self.last_pass_at = now
        self.last_pass_summary = (f"{len(written)} of {len(changes)} changes written, "
                                  f"{len(decisions)} events")
        self._passes += 1
        if self._passes % 200 == 0:
            trim_audit(self.client, self.layout, self.audit_keep)
            if not written:
                read = read_decisions(self.client, self.layout)
                for eid in forget_finished(self.client, self.layout, fence, read,
                                           view.events, now - self.retention_s):
                    log.info("forgot event %s (finished more than %g s ago)", eid,
                             self.retention_s)
        return written

    def _behind_own_writes(self, view: ClusterView) -> bool:
        """Has the mirror caught up with every drain record we wrote? (Entries it has
        caught up with, or whose znode is gone, are dropped.)"""
        versions = view.versions("drain")
        behind = False
        for vm, wrote in list(self._wrote_drains.items()):
            have = versions.get(vm)
            if have is not None and have >= wrote:
                del self._wrote_drains[vm]
            elif have is None and wrote > 0:
                del self._wrote_drains[vm]  # deleted since (a VM forgotten): nothing to see
            else:
                behind = True
        return behind

    def _observe(self, change: Change, event: object, now: float) -> None:
        new, old = change.decision, change.previous
        if old is not None and old.state is new.state:
            return
        self.metrics.transitions.labels(new.state.value).inc()
        log.info("event %s: %s -> %s: %s", new.event_id,
                 old.state.value if old else "-", new.state.value, new.reason)
        first_seen = getattr(event, "first_seen", 0.0)
        if new.state is DecisionState.APPROVED and first_seen:
            self.metrics.time_to_approval.observe(max(0.0, now - first_seen))
        if self.notifier is not None:
            self.notifier.on_change(change, event)


def gates_needed(view: ClusterView, read: DecisionsRead) -> dict[str, str]:
    """Gated groups touched by events about to be approved or released."""
    groups = view.groups
    if not any(g.health_gate for g in groups.values()):
        return {}
    wanted_states = {DecisionState.READY, DecisionState.COMPLETED, DecisionState.DRAINING}
    touched: set[str] = set()
    for item in read.decisions.values():
        if item.record.state in wanted_states and item.record.state not in TERMINAL_STATES:
            touched.update(item.record.reserved)
    return {name: g.health_gate for name, g in groups.items()
            if g.health_gate and touched & set(g.members)}
