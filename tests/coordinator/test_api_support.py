"""Support for the REST API tests (no tests here): a coordinator node serving its app over
real HTTP, and writers of the records the API reads."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from kazoo.client import KazooClient
from kazoo.recipe.election import Election

from coordinator.api import create_app
from coordinator.config import CoordinatorConfig
from coordinator.node import CoordinatorNode
from registry.codec import encode
from registry.layout import Layout
from registry.records import (
    Decision,
    DrainRecord,
    EventType,
    Group,
    PlatformEvent,
    PlatformStatus,
    VMRegistration,
    VMState,
)
from tests.helpers import wait_until

OPERATOR = "op-secret-0001"
VIEWER = "view-secret-01"
TOKENS = {OPERATOR: "operator", VIEWER: "viewer"}
OPERATOR_NAME = "operator:op-s…"


@dataclass
class Api:
    node: CoordinatorNode
    url: str
    layout: Layout

    def client(self, token: str | None = OPERATOR) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)

    @property
    def op(self) -> httpx.Client:
        return self.client(OPERATOR)

    @property
    def viewer(self) -> httpx.Client:
        return self.client(VIEWER)


@contextlib.contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """`app` on a free 127.0.0.1 port, served by uvicorn in a thread."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, 10, message="uvicorn to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextlib.contextmanager
def running(zk_hosts: str, layout: Layout, identity: str = "api-1",
            **config: Any) -> Iterator[Api]:
    settings: dict[str, Any] = {"tokens": TOKENS, "resync_s": 0.1,
                                "zk_session_timeout_s": 4, **config}
    node = CoordinatorNode(CoordinatorConfig(cluster=layout.cluster, zk_hosts=zk_hosts,
                                             identity=identity, **settings))
    node.start(timeout=15)
    try:
        with serve_app(create_app(node)) as url:
            yield Api(node, url, layout)
    finally:
        node.stop()


@contextlib.contextmanager
def foreign_leader(zk: KazooClient, layout: Layout, identity: str = "elsewhere") -> Iterator[None]:
    """Another replica holds the leadership: nodes started now stay followers, so the
    records a test writes are not changed by a decision pass."""
    election = Election(zk, layout.election, identifier=identity)
    leading, release = threading.Event(), threading.Event()

    def lead() -> None:
        leading.set()
        release.wait()

    thread = threading.Thread(target=election.run, args=(lead,), daemon=True)
    thread.start()
    assert leading.wait(10), "foreign leader not elected"
    try:
        yield
    finally:
        release.set()
        thread.join(10)


# ---------------------------------------------------------------- records


def register(zk: KazooClient, layout: Layout, name: str, fd: int, ud: int,
             live: bool = True) -> None:
    if live:
        zk.create(layout.vm(name), encode(VMRegistration(name=name, fd=fd, ud=ud,
                                                         address=f"10.0.0.{ud}")),
                  ephemeral=True, makepath=True)
    zk.create(layout.vm_state(name), encode(VMState(name=name, fd=fd, ud=ud)), makepath=True)


def put_group(zk: KazooClient, layout: Layout, name: str, members: list[str],
              min_available: int | str = "majority") -> None:
    zk.create(layout.group(name), encode(Group(name=name, members=members,
                                               min_available=min_available)), makepath=True)


def schedule(zk: KazooClient, layout: Layout, eid: str, resources: list[str],
             status: PlatformStatus = PlatformStatus.SCHEDULED, not_before: float = 2e9,
             first_seen: float = 0.0) -> None:
    zk.create(layout.event(eid), encode(PlatformEvent(
        event_id=eid, event_type=EventType.REBOOT, status=status, resources=resources,
        not_before=not_before, seen_by=resources, first_seen=first_seen)), makepath=True)


def put_decision(zk: KazooClient, layout: Layout, decision: Decision) -> None:
    zk.create(layout.decision(decision.event_id), encode(decision), makepath=True)


def put_drain(zk: KazooClient, layout: Layout, rec: DrainRecord) -> None:
    zk.create(layout.drain(rec.vm), encode(rec), makepath=True)
