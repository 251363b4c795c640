"""The coordinator's ZooKeeper I/O: a decoded live mirror for reads, fenced CAS for writes.

Reads come from a kazoo `TreeCache` of the cluster's subtree, decoded once per znode
version (a malformed record is logged and skipped). The leader never trusts the cache
for decisions: it reads them straight from ZooKeeper each pass, together with the
version of the `decisions` folder node, and every write it makes is a transaction that

1. checks that its own election znode still exists (fencing: a deposed leader's
   session, and so that znode, is gone, and its write fails);
2. bumps the `decisions` folder version it read (so a decision made on a stale view of
   the reservations fails instead of landing);
3. writes the decision and the drain requests with their own znode versions.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

from pydantic import BaseModel

from coordinator.safety import (
    Change,
    GateResult,
    GroupIndex,
    Snapshot,
    Unreadable,
    VMView,
    plan_domains,
)
from registry.codec import decode
from registry.domains import DomainMode
from registry.layout import Layout
from registry.records import (
    AckRecord,
    AuditEntry,
    Decision,
    DecisionState,
    DrainRecord,
    Group,
    Override,
    PlatformEvent,
    PlatformStatus,
    Policy,
    VMRegistration,
    VMState,
)
from registry.zookeeper import (
    FOLDERS,
    Client,
    TreeCache,
    TreeEvent,
    Txn,
    children,
    ensure_folders,
    exists,
    put,
    read_many,
)
from registry.zookeeper import append_audit as append_audit  # re-exported for the shell
from registry.zookeeper import read_audit as read_audit
from registry.zookeeper import trim_audit as trim_audit

log = logging.getLogger(__name__)
R = TypeVar("R", bound=BaseModel)

@dataclass(frozen=True)
class Versioned:
    version: int
    record: Any


@dataclass(frozen=True)
class ClusterView:
    """An immutable copy of the mirror: what every reader (API, dashboard, leader) sees."""

    records: dict[str, dict[str, Versioned]]
    """Per folder, every record with its znode version (malformed ones as None)."""
    valid: dict[str, dict[str, Any]]
    """Per folder, the valid records; shared between views: read-only."""
    vm_index: dict[str, VMView]
    policy: Policy
    policy_version: int
    generation: int = 0
    """Bumped by every change the mirror applies: equal generations, equal views."""
    source: int = 0
    """Which mirror this view came from (several can live in one process)."""
    group_index: GroupIndex | None = None
    """The groups indexed by member, built once per change of the groups folder."""
    domains: tuple[DomainMode | None, str] | None = None
    """The cluster's maintenance unit (`plan_domains`), once per change of VMs or policy."""

    def folder(self, name: str) -> dict[str, Any]:
        """The valid records of a folder (malformed ones are left out); read-only."""
        return self.valid[name]

    def versions(self, name: str) -> dict[str, int]:
        """Znode versions of every record of a folder, malformed ones included: a writer
        must be able to overwrite a malformed record (compare-and-set), not trip on it."""
        return {key: item.version for key, item in self.records.get(name, {}).items()}

    @property
    def registrations(self) -> dict[str, VMRegistration]:
        return self.folder("vms")

    @property
    def vm_states(self) -> dict[str, VMState]:
        return self.folder("vm-state")

    @property
    def groups(self) -> dict[str, Group]:
        return self.folder("groups")

    @property
    def events(self) -> dict[str, PlatformEvent]:
        return self.folder("events")

    @property
    def decisions(self) -> dict[str, Decision]:
        return self.folder("decisions")

    @property
    def drains(self) -> dict[str, DrainRecord]:
        return self.folder("drain")

    @property
    def acks(self) -> dict[str, AckRecord]:
        return self.folder("acks")

    @property
    def overrides(self) -> dict[str, Override]:
        return self.folder("overrides")

    def vm_views(self) -> dict[str, VMView]:
        """Every VM we know, live or not: the registration wins over the last known state."""
        return self.vm_index

    def unreadable(self, name: str) -> frozenset[str]:
        """Names of the records of a folder that exist but do not decode."""
        return frozenset(k for k, item in self.records.get(name, {}).items()
                         if item.record is None)



def build_vm_index(registrations: dict[str, VMRegistration],
                   vm_states: dict[str, VMState]) -> dict[str, VMView]:
    """VMs by name, live or not: the live registration wins over the last known state."""
    out: dict[str, VMView] = {}
    for name, state in vm_states.items():
        out[name] = VMView(name=name, fd=state.fd, ud=state.ud, live=False,
                           zone=state.zone, scale_set=state.scale_set,
                           flexible=state.flexible)
    for name, reg in registrations.items():
        out[name] = VMView(name=name, fd=reg.fd, ud=reg.ud, live=True,
                           zone=reg.zone, scale_set=reg.scale_set,
                           flexible=reg.flexible)
    return out


class ClusterCache:
    """A live mirror of `/quorumgate/<cluster>`, decoded and indexed by folder."""

    def __init__(self, client: Client, layout: Layout) -> None:
        self.client = client
        self.layout = layout
        self._tree = TreeCache(client, layout.base)
        self._lock = threading.Lock()
        self._records: dict[str, dict[str, Versioned]] = {name: {} for name in FOLDERS}
        self._policy = Policy()
        self._policy_version = -1
        self._listeners: list[Callable[[], None]] = []
        self._initialized = threading.Event()
        self._generation = 0
        self._vm_generation = 0
        self._vm_index: tuple[int, dict[str, VMView]] | None = None
        self._folder_gen: dict[str, int] = {}
        self._frozen: dict[str, tuple[int, dict[str, Versioned], dict[str, Any]]] = {}
        self._group_index: tuple[int, GroupIndex] | None = None
        self._domains: tuple[tuple[int, DomainMode], tuple[DomainMode | None, str]] | None = None

    def start(self, timeout: float = 30.0) -> None:
        ensure_layout(self.client, self.layout)
        self._tree.listen(self._on_event)
        self._tree.listen_fault(lambda exc: log.warning("tree cache fault: %r", exc))
        self._tree.start()
        if not self._initialized.wait(timeout):
            raise TimeoutError(f"ZooKeeper mirror of {self.layout.base} not ready in {timeout} s")

    def close(self) -> None:
        self._tree.close()

    @property
    def ready(self) -> bool:
        return self._initialized.is_set()

    def listen(self, callback: Callable[[], None]) -> None:
        """`callback()` after every change (called on the cache's thread: keep it short)."""
        self._listeners.append(callback)

    def view(self) -> ClusterView:
        """An immutable copy; folders that did not change since the last view are shared
        (copy on write), so a view costs what changed, not the size of the cluster."""
        with self._lock:
            for name, items in self._records.items():
                if self._frozen.get(name, (None,))[0] != self._folder_gen.get(name, 0):
                    valid = {k: v.record for k, v in items.items() if v.record is not None}
                    self._frozen[name] = (self._folder_gen.get(name, 0), dict(items), valid)
            records = {name: frozen[1] for name, frozen in self._frozen.items()}
            valid = {name: frozen[2] for name, frozen in self._frozen.items()}
            if self._vm_index is None or self._vm_index[0] != self._vm_generation:
                self._vm_index = (self._vm_generation,
                                  build_vm_index(valid["vms"], valid["vm-state"]))
            groups_gen = self._folder_gen.get("groups", 0)
            if self._group_index is None or self._group_index[0] != groups_gen:
                self._group_index = (groups_gen,
                                     GroupIndex.build(list(valid["groups"].values())))
            plan_key = (self._vm_generation, self._policy.maintenance_domain)
            if self._domains is None or self._domains[0] != plan_key:
                self._domains = (plan_key, plan_domains(self._policy, self._vm_index[1]))
            return ClusterView(records, valid, self._vm_index[1], self._policy,
                               self._policy_version, generation=self._generation,
                               source=id(self), group_index=self._group_index[1],
                               domains=self._domains[1])

    def _on_event(self, event: TreeEvent) -> None:
        kind = event.event_type
        if kind == TreeEvent.INITIALIZED:
            self._initialized.set()
        elif kind in (TreeEvent.NODE_ADDED, TreeEvent.NODE_UPDATED, TreeEvent.NODE_REMOVED):
            self._apply(kind, event.event_data)
        else:
            return
        for callback in self._listeners:
            try:
                callback()
            except Exception:  # a listener must never break the mirror
                log.exception("cache listener failed")

    def _apply(self, kind: int, node: Any) -> None:
        if node is None:
            return
        path: str = node.path
        rest = path[len(self.layout.base):].strip("/")
        if rest == "config":
            self._apply_policy(kind, node)
            return
        folder, _, name = rest.partition("/")
        record_type = FOLDERS.get(folder)
        if record_type is None or not name or "/" in name:
            return
        with self._lock:
            items = self._records[folder]
            if kind == TreeEvent.NODE_REMOVED:
                if items.pop(name, None) is not None:
                    self._bump(folder)
                return
            current = items.get(name)
            if current is not None and current.version == node.stat.version:
                return
            items[name] = Versioned(node.stat.version, decode(record_type, node.data, path))
            self._bump(folder)

    def _bump(self, folder: str) -> None:
        self._generation += 1
        self._folder_gen[folder] = self._folder_gen.get(folder, 0) + 1
        if folder in ("vms", "vm-state"):
            self._vm_generation += 1

    def _apply_policy(self, kind: int, node: Any) -> None:
        if kind == TreeEvent.NODE_REMOVED:
            with self._lock:
                self._generation += 1
                self._policy, self._policy_version = Policy(), -1
            return
        policy = decode(Policy, node.data, node.path)
        with self._lock:
            self._generation += 1
            self._policy_version = node.stat.version
            if policy is not None:
                self._policy = policy
            elif node.data:
                log.warning("keeping the last good policy: config at %s is malformed",
                            node.path)
            else:
                self._policy = Policy()


def ensure_layout(client: Client, layout: Layout) -> None:
    ensure_folders(client, layout.folders())


# ---------------------------------------------------------------- the leader's reads


@dataclass
class DecisionsRead:
    """Decisions and acknowledgement claims read straight from ZooKeeper, with the folder
    version that guards the decisions."""

    folder_version: int
    decisions: dict[str, Versioned] = field(default_factory=dict)
    """Valid decisions only."""
    versions: dict[str, int] = field(default_factory=dict)
    """Every decision znode's version, malformed ones included."""
    acks: dict[str, AckRecord] = field(default_factory=dict)
    """Every valid `acks/<id>`, read *after* the decisions."""
    unreadable_decisions: frozenset[str] = frozenset()
    unreadable_acks: frozenset[str] = frozenset()


Memo = dict[str, tuple[int, Any]]
"""Path → (mzxid, decoded record or None): decode (and log) once per modification. The
zxid, not the version: a deleted and re-created znode starts again at version 0."""


def _decode_once(memo: Memo | None, kind: type[R], path: str, mzxid: int,
                 data: bytes) -> R | None:
    if memo is not None and (hit := memo.get(path)) is not None and hit[0] == mzxid:
        cached: R | None = hit[1]
        return cached
    record = decode(kind, data, path)
    if memo is not None:
        memo[path] = (mzxid, record)
    return record


def read_decisions(client: Client, layout: Layout,
                   memo: Memo | None = None) -> DecisionsRead:
    """Consistent enough for fencing: any later decision write bumps the folder version.

    The acks are read after the decisions on the same session, so a decision whose
    version an acker's claim bumped is never seen without that claim (ZooKeeper serves
    one session's requests in order): the leader cannot revoke, nor approve again, an
    approval that is being sent because its cache had not caught up (issue 12.4).
    """
    _, stat = client.get(layout.decisions)
    decisions = read_many(client, [layout.decision(n) for n in children(client, layout.decisions)],
                          Decision)
    acks = read_many(client, [layout.ack(n) for n in children(client, layout.acks)], AckRecord)
    out = DecisionsRead(folder_version=stat.version)
    bad: set[str] = set()
    for path, (data, node_stat) in decisions.items():
        name = path.rsplit("/", 1)[1]
        out.versions[name] = node_stat.version
        record = _decode_once(memo, Decision, path, node_stat.mzxid, data)
        if record is not None:
            out.decisions[name] = Versioned(node_stat.version, record)
        elif data:
            bad.add(name)
    bad_acks: set[str] = set()
    for path, (data, ack_stat) in acks.items():
        name = path.rsplit("/", 1)[1]
        ack = _decode_once(memo, AckRecord, path, ack_stat.mzxid, data)
        if ack is not None:
            out.acks[name] = ack
        else:
            bad_acks.add(name)
    out.unreadable_decisions = frozenset(bad)
    out.unreadable_acks = frozenset(bad_acks)
    return out


def build_snapshot(view: ClusterView, read: DecisionsRead, now: float,
                   gates: dict[str, GateResult] | None = None,
                   watching_since: float = 0.0) -> Snapshot:
    """The core's input: decisions and acks from ZooKeeper, the rest from the mirror,
    and every record that exists but does not decode (the core fails closed on them)."""
    decisions: dict[str, Decision] = {
        eid: item.record for eid, item in read.decisions.items()}
    unreadable = Unreadable(
        decisions=read.unreadable_decisions, groups=view.unreadable("groups"),
        drains=view.unreadable("drain"), acks=read.unreadable_acks,
        overrides=view.unreadable("overrides"))
    return Snapshot(now=now, policy=view.policy, vms=view.vm_views(),
                    groups=list(view.groups.values()), events=view.events,
                    decisions=decisions, drains=view.drains, acks=read.acks,
                    gates=gates or {}, overrides=view.overrides, unreadable=unreadable,
                    index=view.group_index, domains=view.domains,
                    watching_since=watching_since)


# ---------------------------------------------------------------- the leader's writes


class WriteResult(Enum):
    WRITTEN = "written"
    FENCED = "fenced"
    """Our election znode is gone (or the write could not be sent): we may be deposed."""
    STALE = "stale"
    """The decisions folder moved since we read it: re-read before deciding more."""
    CONFLICT = "conflict"
    """This change's own records moved (an agent wrote): retry it on the next pass."""


class FencedWriter:
    """Writes the core's changes as fenced compare-and-set transactions."""

    def __init__(self, client: Client, layout: Layout, fence_path: str, actor: str,
                 read: DecisionsRead, drain_versions: dict[str, int]) -> None:
        self.client = client
        self.layout = layout
        self.fence_path = fence_path
        self.actor = actor
        self.folder_version = read.folder_version
        self.versions = dict(read.versions)
        self.drain_versions = drain_versions

    def write(self, change: Change, now: float) -> WriteResult:
        """Whether the change landed, and if not, which guard refused it."""
        eid = change.decision.event_id
        txn = Txn(self.client)
        fence = txn.require(self.fence_path)
        stale = txn.bump(self.layout.decisions, self.folder_version)
        txn.put(self.layout.decision(eid), change.decision, self.versions.get(eid))
        for rec in change.drains:
            txn.put(self.layout.drain(rec.vm), rec, self.drain_versions.get(rec.vm))
        for vm in change.checks:  # the drain states this change relied on
            if vm in self.drain_versions:
                txn.require(self.layout.drain(vm), self.drain_versions[vm])
        for entry in audit_entries(change, self.actor, now):
            txn.audit(self.layout, entry)
        result = txn.commit()
        if not result.ok:
            log.info("write of %s refused (%s); will re-read", eid, result.reason)
            return (WriteResult.FENCED if result.refused in (None, fence) else
                    WriteResult.STALE if result.refused == stale else WriteResult.CONFLICT)
        self.folder_version += 1
        self.versions[eid] = self.versions.get(eid, -1) + 1
        for rec in change.drains:
            self.drain_versions[rec.vm] = self.drain_versions.get(rec.vm, -1) + 1
        return WriteResult.WRITTEN


def put_fenced(client: Client, fence_path: str, path: str, record: BaseModel,
               version: int | None) -> WriteResult:
    """A leader's write of one record: only while `fence_path` (its election znode)
    exists, and only over `version` (None: the node must not exist yet)."""
    txn = Txn(client)
    fence = txn.require(fence_path)
    txn.put(path, record, version)
    result = txn.commit()
    if result.ok:
        return WriteResult.WRITTEN
    if result.refused is None:
        log.warning("write of %s failed: %s", path, result.reason)
    return WriteResult.FENCED if result.refused in (None, fence) else WriteResult.CONFLICT


def audit_entries(change: Change, actor: str, now: float) -> Iterable[AuditEntry]:
    old = change.previous
    new = change.decision
    seen = len(old.history) if old else 0
    fresh = new.history[seen:] if len(new.history) > seen else []
    if old and len(new.history) == len(old.history) and new.history[-1:] != old.history[-1:]:
        fresh = new.history[-1:]  # history is capped: compare tails
    for transition in fresh:
        yield AuditEntry(at=transition.at, actor=actor, action=f"decision:{transition.to}",
                         event_id=new.event_id, detail=transition.reason)


def forget_finished(client: Client, layout: Layout, fence_path: str, read: DecisionsRead,
                    events: dict[str, PlatformEvent], older_than: float) -> list[str]:
    """Delete the records of events that are over, released and older than `older_than`
    (clock time), each in one fenced transaction. Returns the event ids forgotten.

    An event can only come back if an agent sees it in IMDS again, which a finished
    event never is; keeping it a while lets operators and dashboards see its history."""
    gone: list[str] = []
    version = read.folder_version
    for eid, item in sorted(read.decisions.items()):
        decision = item.record
        event = events.get(eid)
        finished = decision.state is DecisionState.RESTORED or (
            decision.state is DecisionState.CANCELLED and not decision.reserved)
        if not finished or decision.reserved or decision.updated_at >= older_than:
            continue
        if event is not None and event.status is not PlatformStatus.GONE:
            continue
        txn = Txn(client)
        txn.require(fence_path)
        txn.bump(layout.decisions, version)
        txn.delete(layout.decision(eid), item.version)
        for path in (layout.event(eid), layout.ack(eid), layout.override(eid)):
            if exists(client, path):
                txn.delete(path)
        if not txn.commit().ok:
            break  # something moved: the next round re-reads
        version += 1
        gone.append(eid)
    return gone


# ---------------------------------------------------------------- set-up writes


def put_record(client: Client, path: str, record: BaseModel,
               version: int | None = None) -> None:
    """Create or replace; with `version`, only over that version (compare-and-set)."""
    put(client, path, record, version)


def put_policy(client: Client, layout: Layout, policy: Policy) -> None:
    put_record(client, layout.config, policy)

