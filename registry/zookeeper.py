"""The one ZooKeeper adapter: every agent and coordinator read and write goes through it.

kazoo is imported here and nowhere else in the product (tests and the test bed may).
What the rest of the code sees: typed records (`read`), compare-and-set on kazoo's own
retry (`cas`), one transaction builder for fenced multi-op writes (`Txn`), ephemeral
registration, the audit log, and thin wrappers over kazoo's recipes (watches, the tree
cache, election).

The rules of every write, in one place (`Layout` names the paths):

- `vms/<vm>`: that VM's agent, ephemeral (`put_ephemeral` replaces a stale one of its own).
- `vm-state/<vm>`: that VM's agent, `cas`; an operator's `forget` deletes it (`Txn`).
- `events/<id>`: every agent that sees the event, `cas` with the relay's pure merge.
- `drain/<vm>`: the leader sets `want` inside its fenced `Txn`; the VM's agent sets
  `status` with `cas`.
- `decisions/<id>`: the leader only, in a fenced `Txn`: its election znode exists
  (`require`), the `decisions` folder version it read is bumped (`bump`), the decision's
  own version, and the drain records an approval relied on.
- `acks/<id>`: the designated acker, in a `Txn` with an unchanged rewrite of the decision
  at the version it read, so a claim and a revocation cannot both land.
- `groups/<g>`: the API (`Txn` with its audit entry); providers through the leader,
  fenced by its election znode; agents' static groups by `cas`.
- `overrides/<id>`, `config`: the API, compare-and-set with its audit entry in one `Txn`.
- `audit/entry-`: sequential, in the same transaction as what it records.

A record that does not decode is reported (logged once per version by the readers) and
never overwritten by the leader; see docs/architecture.md.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import (
    AuthFailedError,
    BadVersionError,
    ConnectionClosedError,
    ConnectionLoss,
    InvalidACLError,
    KazooException,
    NoAuthError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    RolledBackError,
    RuntimeInconsistency,
    SessionExpiredError,
)
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.states import ZnodeStat
from kazoo.recipe.cache import TreeCache, TreeEvent
from kazoo.recipe.election import Election
from kazoo.recipe.watchers import DataWatch
from kazoo.retry import ForceRetryError, KazooRetry, RetryFailedError
from kazoo.security import ACL, Permissions, make_acl, make_digest_acl, make_digest_acl_credential
from pydantic import BaseModel

from registry.codec import decode, encode
from registry.layout import Layout
from registry.records import (
    AckRecord,
    AuditEntry,
    Decision,
    DrainRecord,
    Group,
    Override,
    PlatformEvent,
    VMRegistration,
    VMState,
)

log = logging.getLogger(__name__)

R = TypeVar("R", bound=BaseModel)
Client = KazooClient
"""The session type the rest of the code annotates with."""

__all__ = [
    "DELETE", "FOLDERS", "PERMANENT", "AuthFailedError", "BadVersionError", "CasConflict",
    "Client", "Conflict", "DataWatch", "KazooClient", "cas_txn",
    "ConnectionClosedError", "ConnectionLoss", "Election", "InvalidACLError",
    "KazooException", "KazooState", "KazooTimeoutError", "NoAuthError", "NoNodeError",
    "NodeExistsError", "NotEmptyError", "Read", "RolledBackError", "RuntimeInconsistency",
    "SessionExpiredError", "TreeCache", "TreeEvent", "Txn", "TxnResult", "ZnodeStat",
    "append_audit", "cas", "cluster_acl", "data_watch", "make_client", "put_ephemeral",
    "read", "read_foreign", "read_many", "put", "children", "exists", "ensure_folders",
    "trim_audit", "read_audit", "acl_problem", "read_acls",
]

PERMANENT = (NoAuthError, AuthFailedError, InvalidACLError)
"""Refusals retrying cannot fix (credentials, ACLs): say them once, then back off."""

FOLDERS: dict[str, type[BaseModel]] = {
    "vms": VMRegistration,
    "vm-state": VMState,
    "groups": Group,
    "events": PlatformEvent,
    "decisions": Decision,
    "drain": DrainRecord,
    "acks": AckRecord,
    "overrides": Override,
}
"""Folder name (as `Layout` spells it) → the record every child of it holds."""

DEFAULT_ATTEMPTS = 10


# ---------------------------------------------------------------- sessions


def cluster_acl(auth: str | None) -> list[ACL] | None:
    """With digest credentials: full rights for them, read-only for everyone else."""
    if not auth:
        return None
    user, _, password = auth.partition(":")
    return [make_digest_acl(user, password, all=True), make_acl("world", "anyone", read=True)]


def make_client(hosts: str, session_timeout_s: float = 10.0,
                auth: str | None = None) -> KazooClient:
    """A client that reconnects forever (bounded back-off) and retries commands briefly."""
    return KazooClient(
        hosts=hosts,
        timeout=session_timeout_s,
        auth_data=[("digest", auth)] if auth else None,
        default_acl=cluster_acl(auth),
        connection_retry={"max_tries": -1, "delay": 0.1, "backoff": 2, "max_delay": 2.0},
        command_retry={"max_tries": 2, "delay": 0.1, "max_delay": 1.0},
    )


# ---------------------------------------------------------------- reads


@dataclass(frozen=True)
class Read(Generic[R]):
    """One znode as read: the record (None when absent or malformed) and its version."""

    record: R | None
    version: int | None
    """None when the znode does not exist."""
    malformed: bool = False

    @property
    def exists(self) -> bool:
        return self.version is not None


def read(client: KazooClient, path: str, kind: type[R]) -> Read[R]:
    try:
        data, stat = client.get(path)
    except NoNodeError:
        return Read(None, None)
    record = decode(kind, data, path)
    return Read(record, stat.version, malformed=record is None and bool(data))


def read_many(client: KazooClient, paths: list[str], kind: type[R],
              timeout: float = 30.0) -> dict[str, tuple[bytes, ZnodeStat]]:
    """Raw bytes and stats of many znodes, pipelined on one session in order (absent ones
    left out): callers that must decode once per version do it themselves."""
    pending = [(path, client.get_async(path)) for path in paths]
    out = {}
    for path, result in pending:
        with contextlib.suppress(NoNodeError):
            out[path] = result.get(timeout=timeout)
    return out


# ---------------------------------------------------------------- compare-and-set


class CasConflict(RuntimeError):
    """Still conflicting after the allowed attempts (heavy contention)."""



class Conflict(Exception):
    """The znode kept changing under a compare-and-set (the caller may ask to retry)."""


DELETE = object()
"""Returned by a `cas_txn` change: delete the znode (at the version read)."""


def cas_txn(client: KazooClient, path: str, kind: type[R],
            change: Callable[[Read[R]], R | object | None], *,
            also: Callable[[Txn, Read[R], R | None], None] | None = None,
            attempts: int = DEFAULT_ATTEMPTS, timeout: float | None = None,
            ) -> tuple[Read[R], R | None]:
    """The one compare-and-set loop: read `path`, `change(current)` returns the record to
    write, `DELETE`, or None to write nothing; `also(txn, current, new)` adds operations
    that must land with it (an audit entry, a fence). A version conflict re-reads and
    re-applies, on kazoo's retry, up to `attempts` times (then `Conflict`); any other
    refusal is raised. Returns (what was read, what is stored now)."""
    def attempt() -> tuple[Read[R], R | None]:
        current = read(client, path, kind) if timeout is None else _read_within(
            client, path, kind, timeout)
        new = change(current)
        if new is None and also is None:
            return current, current.record
        txn = Txn(client)
        if new is DELETE:
            if current.version is not None:
                txn.delete(path, current.version)
            stored = None
        elif new is not None:
            assert isinstance(new, BaseModel)
            txn.put(path, new, current.version)
            stored = new
        else:
            stored = current.record
        if also is not None:
            also(txn, current, stored)  # type: ignore[arg-type]
        result = txn.commit(timeout)
        if result.ok:
            return current, stored  # type: ignore[return-value]
        if isinstance(result.error, (BadVersionError, NodeExistsError, NoNodeError)):
            raise ForceRetryError(f"{path} changed: {result.reason}")
        if result.error is not None:
            raise result.error
        raise ForceRetryError(f"{path}: {result.reason}")

    retry = KazooRetry(max_tries=attempts, delay=0.001, backoff=2, max_jitter=0.5,
                       max_delay=0.05, ignore_expire=False)
    retry.retry_exceptions = (ForceRetryError,)  # connection trouble is the caller's
    try:
        done: tuple[Read[R], R | None] = retry(attempt)
        return done
    except RetryFailedError as exc:
        raise Conflict(f"{path} changed concurrently {attempts} times; re-read and retry"
                       ) from exc


def cas(client: KazooClient, path: str, kind: type[R], mutate: Callable[[R | None], R | None],
        *, attempts: int = DEFAULT_ATTEMPTS, overwrite_malformed: bool = False) -> R | None:
    """Apply `mutate(current)` with compare-and-set; return the record stored now.

    `mutate` gets None when the node is absent and returns the record to write, or the
    unchanged input / None to write nothing. A malformed node is left alone (returns
    None) unless `overwrite_malformed`.
    """
    def change(current: Read[R]) -> R | None:
        if current.malformed and not overwrite_malformed:
            return None
        wanted = mutate(current.record)
        return None if wanted is None or wanted == current.record else wanted

    try:
        current, stored = cas_txn(client, path, kind, change, attempts=attempts)
    except Conflict as exc:
        raise CasConflict(str(exc)) from exc
    return None if current.malformed and stored is None else stored


def _read_within(client: KazooClient, path: str, kind: type[R], timeout: float) -> Read[R]:
    try:
        data, stat = client.get_async(path).get(timeout=timeout)
    except NoNodeError:
        return Read(None, None)
    record = decode(kind, data, path)
    return Read(record, stat.version, malformed=record is None and bool(data))


# ---------------------------------------------------------------- transactions


@dataclass(frozen=True)
class TxnResult:
    ok: bool
    refused: int | None = None
    """Index of the first operation ZooKeeper refused (None when ok, or when the
    transaction could not be sent: `error` then)."""
    reason: str = ""
    error: Exception | None = None


@dataclass
class Txn:
    """A multi-op transaction, named by what each operation guarantees."""

    client: KazooClient
    ops: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._txn = self.client.transaction()

    def require(self, path: str, version: int = 0) -> int:
        """The znode must exist at `version` (fencing: the leader's election znode)."""
        self._txn.check(path, version)
        return self._op(f"require {path}")

    def bump(self, path: str, version: int) -> int:
        """Bump a folder's version from `version` (a later stale decision then fails)."""
        self._txn.set_data(path, b"", version=version)
        return self._op(f"bump {path}")

    def put(self, path: str, record: BaseModel | bytes, version: int | None) -> int:
        """Create (`version` None) or replace at exactly `version`."""
        data = record if isinstance(record, bytes) else encode(record)
        if version is None:
            self._txn.create(path, data)
        else:
            self._txn.set_data(path, data, version=version)
        return self._op(f"put {path}")

    def delete(self, path: str, version: int = -1) -> int:
        self._txn.delete(path, version=version)
        return self._op(f"delete {path}")

    def audit(self, layout: Layout, entry: AuditEntry) -> int:
        self._txn.create(layout.audit_entry_prefix, encode(entry), sequence=True)
        return self._op("audit")

    def _op(self, what: str) -> int:
        self.ops.append(what)
        return len(self.ops) - 1

    def commit(self, timeout: float | None = None) -> TxnResult:
        try:
            if timeout is None:
                results = self._txn.commit()
            else:
                results = self._txn.commit_async().get(timeout=timeout)
        except KazooException as exc:
            return TxnResult(False, None, f"not sent: {exc!r}", exc)
        for index, result in enumerate(results):
            if isinstance(result, Exception) and not isinstance(
                    result, RolledBackError | RuntimeInconsistency):
                return TxnResult(False, index, f"{self.ops[index]}: {type(result).__name__}",
                                 result)
        if any(isinstance(r, Exception) for r in results):
            return TxnResult(False, 0, "rolled back")
        return TxnResult(True)


def put(client: KazooClient, path: str, record: BaseModel, version: int | None = None) -> None:
    """Create, or replace (with `version`: only over that version). For set-up and tests;
    the daemons write with `cas` or a `Txn`."""
    data = encode(record)
    try:
        client.create(path, data, makepath=True)
        return
    except NodeExistsError:
        pass
    client.set(path, data, version=-1 if version is None else version)


def children(client: KazooClient, path: str) -> list[str]:
    """The names under `path` ([] when it does not exist)."""
    try:
        return list(client.get_children(path))
    except NoNodeError:
        return []


def read_foreign(client: KazooClient, path: str) -> bytes | None:
    """The raw bytes of a znode another system owns (a Patroni member, a Kafka broker),
    or None when it is gone. Never for quorumgate's own records: those go through `read`."""
    try:
        data, _ = client.get(path)
    except NoNodeError:
        return None
    return bytes(data)


def exists(client: KazooClient, path: str) -> bool:
    return client.exists(path) is not None


def ensure_folders(client: KazooClient, paths: list[str]) -> None:
    for path in paths:
        client.ensure_path(path)


# ---------------------------------------------------------------- the audit log


def append_audit(client: KazooClient, layout: Layout, entry: AuditEntry) -> None:
    client.create(layout.audit_entry_prefix, encode(entry), sequence=True, makepath=True)


def trim_audit(client: KazooClient, layout: Layout, keep: int) -> int:
    """Delete the oldest audit entries beyond `keep`; returns how many went."""
    names = sorted(children(client, layout.audit))
    extra = names[: max(0, len(names) - keep)]
    for name in extra:
        with contextlib.suppress(NoNodeError):
            client.delete(f"{layout.audit}/{name}")
    return len(extra)


def read_audit(client: KazooClient, layout: Layout, limit: int) -> list[AuditEntry]:
    names = sorted(children(client, layout.audit))[-limit:]
    got = read_many(client, [f"{layout.audit}/{name}" for name in names], AuditEntry, 10)
    out = []
    for path, (data, _) in got.items():
        entry = decode(AuditEntry, data, path)
        if entry is not None:
            out.append(entry)
    return out


# ---------------------------------------------------------------- ephemeral nodes


def put_ephemeral(client: KazooClient, path: str, data: bytes, attempts: int = 3) -> None:
    """Create or refresh this session's ephemeral node; one left by an earlier session of
    the same owner (a crashed process whose session has not expired yet) is replaced."""
    session = client.client_id[0] if client.client_id else None
    for _ in range(attempts):
        try:
            client.create(path, data, ephemeral=True, makepath=True)
            return
        except NodeExistsError:
            pass
        try:
            _, stat = client.get(path)
        except NoNodeError:
            continue
        if stat.ephemeralOwner == session:
            client.set(path, data)
            return
        log.warning("replacing stale ephemeral %s of session %#x", path, stat.ephemeralOwner)
        with contextlib.suppress(NoNodeError, BadVersionError):
            client.delete(path, version=stat.version)
    raise CasConflict(f"could not create ephemeral {path}")


# ---------------------------------------------------------------- access


NEEDED = Permissions.READ | Permissions.WRITE | Permissions.CREATE | Permissions.DELETE
_PERM_NAMES = (("read", Permissions.READ), ("write", Permissions.WRITE),
               ("create", Permissions.CREATE), ("delete", Permissions.DELETE),
               ("admin", Permissions.ADMIN))


def _perms(value: int) -> str:
    if value & Permissions.ALL == Permissions.ALL:
        return "all"
    return ",".join(name for name, bit in _PERM_NAMES if value & bit) or "none"


def acl_problem(path: str, acls: Iterable[ACL], auth: str | None) -> str | None:
    """Why `auth` (digest `user:password`, or None) may not write at `path` with these
    ACLs, or None when it may — or when the ACLs use schemes this cannot judge (ip,
    sasl, x509: the server decides, so give it the benefit of the doubt)."""
    acls = list(acls)
    mine = make_digest_acl_credential(*auth.split(":", 1)) if auth else None
    granted = 0
    for acl in acls:
        scheme, ident = acl.id.scheme, acl.id.id
        if scheme == "world" and ident == "anyone":
            granted |= acl.perms
        elif scheme == "digest":
            if ident == mine:
                granted |= acl.perms
        else:
            return None
    missing = NEEDED & ~granted
    if not missing:
        return None
    who = (f"digest user {auth.split(':', 1)[0]!r}" if auth
           else "no credentials (zk_auth is not set)")
    grants = ", ".join(f"{a.id.scheme}:{a.id.id.split(':', 1)[0]} ({_perms(a.perms)})"
                       for a in acls) or "nothing"
    return (f"ZooKeeper will not let this coordinator ({who}) {_perms(missing)} under "
            f"{path}: its ACL grants {grants}. Set zk_auth (QG_ZK_AUTH) to the cluster's "
            "user:password, the same on every coordinator and agent")


def read_acls(client: KazooClient, paths: list[str], timeout: float = 10.0
              ) -> dict[str, list[ACL]]:
    """The ACLs of these znodes (absent ones left out), pipelined."""
    pending = [(path, client.get_acls_async(path)) for path in paths]
    out = {}
    for path, result in pending:
        with contextlib.suppress(NoNodeError):
            out[path] = list(result.get(timeout=timeout)[0])
    return out


# ---------------------------------------------------------------- watches


def data_watch(client: KazooClient, path: str,
               callback: Callable[[bytes | None, Any], bool | None]) -> DataWatch:
    """kazoo's DataWatch: `callback(data, stat)` on every change (and once at once),
    re-armed by kazoo; a False return ends it. Runs on kazoo's thread: never block."""
    return DataWatch(client, path, callback)


def jitter(seconds: float) -> float:
    """A small random pause for callers that back off outside `cas` (bounded)."""
    return random.uniform(0, seconds)
