"""Operator writes: read, modify, compare-and-set, and the audit entry in one transaction.

An operator's intent (group, override, policy) and the audit entry that records it land
together or not at all. Every ZooKeeper call has a timeout, so a request never hangs
on an outage: it gets a 503 instead (see `coordinator.api.app`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from kazoo.client import KazooClient
from kazoo.exceptions import (
    BadVersionError,
    NodeExistsError,
    NoNodeError,
    RolledBackError,
    RuntimeInconsistency,
)
from pydantic import BaseModel

from coordinator.api.deps import Unavailable
from registry.codec import decode, encode
from registry.layout import Layout
from registry.records import AuditEntry

log = logging.getLogger(__name__)
R = TypeVar("R", bound=BaseModel)

ZK_TIMEOUT_S = 5.0
CONFLICTS = (BadVersionError, NodeExistsError, NoNodeError)


class Conflict(Exception):
    """The znode changed under us (compare-and-set failed): answered 409."""


@dataclass(frozen=True)
class Current(Generic[R]):
    record: R | None
    """Decoded record; None when absent or malformed."""
    version: int
    """Znode version; -1 when the znode does not exist."""

    @property
    def exists(self) -> bool:
        return self.version >= 0


def _wait(client: KazooClient, async_result, what: str):
    try:
        return async_result.get(timeout=ZK_TIMEOUT_S)
    except client.handler.timeout_exception as exc:
        raise Unavailable(f"ZooKeeper did not answer {what} within {ZK_TIMEOUT_S:g} s") from exc


def read(client: KazooClient, path: str, kind: type[R]) -> Current[R]:
    try:
        data, stat = _wait(client, client.get_async(path), f"a read of {path}")
    except NoNodeError:
        return Current(None, -1)
    return Current(decode(kind, data, path), stat.version)


def exists(client: KazooClient, path: str) -> bool:
    return _wait(client, client.exists_async(path), f"a check of {path}") is not None


def write(client: KazooClient, layout: Layout, path: str, kind: type[R],
          update: Callable[[Current[R]], R | None], audit: Callable[[R | None], AuditEntry],
          retries: int = 3) -> Current[R]:
    """Apply `update` to the znode at `path` (None from it deletes the znode) and append
    the audit entry, atomically, with compare-and-set on the version read.

    On a concurrent change, `update` runs again on the fresh record up to `retries`
    times; then `Conflict`. `update` may raise (e.g. an HTTPException) to refuse.
    Returns what was written and its new version (-1 after a delete).
    """
    for _ in range(retries + 1):
        current = read(client, path, kind)
        new = update(current)
        txn = client.transaction()
        if new is None:
            if current.exists:
                txn.delete(path, version=current.version)
        elif current.exists:
            txn.set_data(path, encode(new), version=current.version)
        else:
            txn.create(path, encode(new))
        entry = audit(new)
        txn.create(layout.audit_entry_prefix, encode(entry), sequence=True)
        results = _wait(client, txn.commit_async(), f"a write of {path}")
        failures = [r for r in results if isinstance(r, Exception)
                    and not isinstance(r, RolledBackError | RuntimeInconsistency)]
        if not failures:
            log.info("%s %s %s: %s", entry.actor, entry.action, entry.event_id or path,
                     entry.detail)
            if new is None:
                return Current(None, -1)
            return Current(new, current.version + 1 if current.exists else 0)
        if not all(isinstance(f, CONFLICTS) for f in failures):
            raise failures[0]
    raise Conflict(f"{path} changed concurrently; re-read and retry")


class OperatorWrites:
    """The API's writer: one audited compare-and-set write per operator action."""

    def __init__(self, client: KazooClient, layout: Layout, clock_now: Callable[[], float],
                 on_action: Callable[[str], None] | None = None) -> None:
        self.client = client
        self.layout = layout
        self.now = clock_now
        self.on_action = on_action

    def apply(self, who: str, action: str, path: str, kind: type[R],
              update: Callable[[Current[R]], R | None], *, event_id: str = "",
              detail: str = "", retries: int = 3) -> Current[R]:
        def entry(_: R | None) -> AuditEntry:
            return AuditEntry(at=self.now(), actor=who, action=action, event_id=event_id,
                              detail=detail)

        done = write(self.client, self.layout, path, kind, update, entry, retries=retries)
        if self.on_action is not None:
            self.on_action(action)
        return done
