"""Small helpers for tests that wait on other processes or on ZooKeeper."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from kazoo.client import KazooClient, KazooState

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "",
) -> T:
    """Poll `predicate` until it returns something truthy, and return that.

    Exceptions raised by the predicate count as "not yet" (a ZooKeeper call may fail
    with ConnectionLoss while a quorum re-forms); the last one is shown on timeout.
    Raises AssertionError after `timeout` seconds so pytest reports a plain failure.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except Exception as exc:  # retried until the deadline
            last_error = exc
        if time.monotonic() >= deadline:
            what = message or getattr(predicate, "__name__", "condition")
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")
        time.sleep(interval)


def expire_session(client: KazooClient, hosts: str, timeout: float = 15.0) -> None:
    """Really end `client`'s ZooKeeper session, server side, and wait until it sees LOST.

    A second connection with the same session id and password closes the session on
    the server: its ephemeral nodes go, watches fire, and `client` gets a new session.
    """
    lost: list[KazooState] = []

    def listener(state: KazooState) -> None:
        if state == KazooState.LOST:
            lost.append(state)

    client.add_listener(listener)
    twin = KazooClient(hosts=hosts, client_id=client.client_id)
    try:
        twin.start(timeout=timeout)
        twin.stop()
    finally:
        twin.close()
    try:
        wait_until(lambda: lost, timeout, message="the session to be reported LOST")
        wait_until(lambda: client.connected, timeout, message="a new session")
    finally:
        client.remove_listener(listener)
