"""Operator writes: read, modify, compare-and-set, and the audit entry in one transaction.

An operator's intent (group, override, policy) and the audit entry that records it land
together or not at all. Every ZooKeeper call has a timeout, so a request never hangs
on an outage: it gets a 503 instead (see `coordinator.api.app`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from coordinator.api.deps import Unavailable
from registry.codec import decode
from registry.layout import Layout
from registry.records import AuditEntry
from registry.zookeeper import (
    DELETE,
    Client,
    KazooTimeoutError,
    NoNodeError,
    Read,
    Txn,
    cas_txn,
)
from registry.zookeeper import Conflict as AdapterConflict

log = logging.getLogger(__name__)
R = TypeVar("R", bound=BaseModel)

ZK_TIMEOUT_S = 5.0


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


def _wait(client: Client, async_result: Any, what: str) -> Any:
    try:
        return async_result.get(timeout=ZK_TIMEOUT_S)
    except KazooTimeoutError as exc:
        raise Unavailable(f"ZooKeeper did not answer {what} within {ZK_TIMEOUT_S:g} s") from exc


def read(client: Client, path: str, kind: type[R]) -> Current[R]:
    try:
        data, stat = _wait(client, client.get_async(path), f"a read of {path}")
    except NoNodeError:
        return Current(None, -1)
    return Current(decode(kind, data, path), stat.version)


def exists(client: Client, path: str) -> bool:
    return _wait(client, client.exists_async(path), f"a check of {path}") is not None


def write(client: Client, layout: Layout, path: str, kind: type[R],
          update: Callable[[Current[R]], R | None], audit: Callable[[R | None], AuditEntry],
          retries: int = 3) -> Current[R]:
    """Apply `update` to the znode at `path` (None from it deletes the znode) and append
    the audit entry, atomically, with compare-and-set on the version read (the adapter's
    one CAS loop). On a concurrent change `update` runs again on the fresh record up to
    `retries` times; then `Conflict`. `update` may raise (e.g. an HTTPException) to
    refuse. Returns what was written and its new version (-1 after a delete)."""
    entries: list[AuditEntry] = []

    def change(current: Read[R]) -> R | object:
        new = update(Current(current.record,
                             current.version if current.version is not None else -1))
        return DELETE if new is None else new

    def with_audit(txn: Txn, current: Read[R], new: R | None) -> None:
        entries[:] = [audit(new)]
        txn.audit(layout, entries[0])

    try:
        current, stored = cas_txn(client, path, kind, change, also=with_audit,
                                  attempts=retries + 1, timeout=ZK_TIMEOUT_S)
    except AdapterConflict as exc:
        raise Conflict(str(exc)) from exc
    except KazooTimeoutError as exc:
        raise Unavailable(f"ZooKeeper did not answer a write of {path} within "
                          f"{ZK_TIMEOUT_S:g} s") from exc
    entry = entries[0]
    log.info("%s %s %s: %s", entry.actor, entry.action, entry.event_id or path, entry.detail)
    if stored is None:
        return Current(None, -1)
    return Current(stored, current.version + 1 if current.version is not None else 0)


class OperatorWrites:
    """The API's writer: one audited compare-and-set write per operator action."""

    def __init__(self, client: Client, layout: Layout, clock_now: Callable[[], float],
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
