"""Compare-and-set on ZooKeeper records, the only way the agent writes shared znodes.

Many agents update the same `events/<id>` and the coordinator writes `drain/<vm>` too,
so every write names the znode version it read (or creates the node) and, on a
conflict, re-reads and re-applies its change — a bounded number of times.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError
from pydantic import BaseModel

from registry.codec import decode, encode

log = logging.getLogger(__name__)

R = TypeVar("R", bound=BaseModel)

DEFAULT_ATTEMPTS = 10


class CasConflict(RuntimeError):
    """Still conflicting after the allowed attempts (heavy contention)."""


def read(zk: KazooClient, path: str, kind: type[R]) -> tuple[R | None, int | None]:
    """(record, version); (None, None) if absent, (None, version) if malformed."""
    try:
        data, stat = zk.get(path)
    except NoNodeError:
        return None, None
    return decode(kind, data, path), stat.version


def update(zk: KazooClient, path: str, kind: type[R],
           mutate: Callable[[R | None], R | None], *,
           attempts: int = DEFAULT_ATTEMPTS, overwrite_malformed: bool = False) -> R | None:
    """Apply `mutate(current)` with compare-and-set; return the record now stored.

    `mutate` gets None when the node is absent and returns the record to write, or the
    unchanged input / None to write nothing. A malformed existing node is skipped
    (returns None) unless `overwrite_malformed`.
    """
    for attempt in range(attempts):
        try:
            data, stat = zk.get(path)
        except NoNodeError:
            data, stat = None, None
        current = decode(kind, data, path) if stat is not None else None
        if stat is not None and current is None and not overwrite_malformed:
            return None
        wanted = mutate(current)
        if wanted is None or wanted == current:
            return current
        try:
            if stat is None:
                zk.create(path, encode(wanted), makepath=True)
            else:
                zk.set(path, encode(wanted), version=stat.version)
            return wanted
        except (BadVersionError, NodeExistsError, NoNodeError):
            log.debug("conflict writing %s (attempt %d), re-reading", path, attempt + 1)
            time.sleep(random.uniform(0, 0.01 * (attempt + 1)))
    raise CasConflict(f"gave up writing {path} after {attempts} conflicting attempts")
