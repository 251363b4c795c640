"""ZooKeeper for tests: a real server, found or started in this order of preference.

1. `ZK_HOSTS` (e.g. `127.0.0.1:2181`): an existing ZooKeeper, used as is.
2. Debian's `zookeeper` package: a local `QuorumPeerMain` on free loopback ports with a
   temporary data dir (see `quorumgate_testbed.zkserver`); `scripts/bootstrap.sh` installs it.
3. A Docker engine: testcontainers' generic container with the `zookeeper` image.

With none of them a test that needs ZooKeeper is skipped, except under CI (`CI` set),
where it fails: a green CI must not hide a missing ZooKeeper.

Isolation: tests share one server per session, so each test gets a unique cluster name
(`zk_cluster`) and writes only under `/quorumgate/<zk_cluster>` (`zk_layout.base`).
The `zk` fixture deletes that subtree at teardown. Servers are stopped by PID at
teardown, whether the test passed or not.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Iterator

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException

from quorumgate_testbed.zkserver import (
    ZooKeeperEnsemble,
    ZooKeeperError,
    ZooKeeperServer,
    find_zookeeper,
    server_mode,
)
from registry.layout import Layout

from .helpers import wait_until

# Short ticks make session expiry and quorum loss show within a second or two;
# minSessionTimeout = 2 ticks = 1 s lets tests ask for 1-second sessions.
TEST_TICK_MS = 500
TEST_MIN_SESSION_MS = 1000
ZK_IMAGE = os.environ.get("ZK_IMAGE", "zookeeper:3.8")


def _unavailable(reason: str) -> None:
    """Skip locally; fail under CI, where ZooKeeper must be there."""
    if os.environ.get("CI", "").lower() not in {"", "0", "false", "no"}:
        pytest.fail(f"ZooKeeper required under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def _docker_engine() -> str | None:
    """None when a Docker engine answers, else why not (fails fast without one)."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError as exc:
        return f"docker SDK not installed ({exc})"
    try:
        client = docker.from_env(timeout=5)
        try:
            client.ping()
        finally:
            client.close()
    except DockerException as exc:
        return f"no Docker engine ({type(exc).__name__})"
    return None


@contextlib.contextmanager
def _docker_zookeeper() -> Iterator[str]:
    from testcontainers.core.container import DockerContainer

    container = (
        DockerContainer(ZK_IMAGE)
        .with_exposed_ports(2181)
        .with_env("ZOO_4LW_COMMANDS_WHITELIST", "*")
        .with_env("ZOO_TICK_TIME", str(TEST_TICK_MS))
        .with_env("ZOO_CFG_EXTRA", f"minSessionTimeout={TEST_MIN_SESSION_MS}")
    )
    with container:
        host = container.get_container_host_ip()
        port = int(container.get_exposed_port(2181))
        wait_until(lambda: server_mode(host, port) is not None, timeout=60,
                   message=f"ZooKeeper container {host}:{port} to serve")
        yield f"{host}:{port}"


@pytest.fixture(scope="session")
def zk_hosts() -> Iterator[str]:
    """Hosts string of one ZooKeeper shared by the whole session."""
    if hosts := os.environ.get("ZK_HOSTS"):
        yield hosts
        return
    local_problem = find_zookeeper()
    if local_problem is None:
        server = ZooKeeperServer(tick_time_ms=TEST_TICK_MS,
                                 min_session_timeout_ms=TEST_MIN_SESSION_MS)
        try:
            server.start(timeout=60)
            yield server.hosts
        finally:
            server.close()
        return
    docker_problem = _docker_engine()
    if docker_problem is None:
        with _docker_zookeeper() as hosts:
            yield hosts
        return
    _unavailable(f"no ZooKeeper: ZK_HOSTS unset; {local_problem}; {docker_problem}")


@pytest.fixture
def zk_cluster(request: pytest.FixtureRequest) -> str:
    """A cluster name unique to this test, usable as a znode name."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    return f"t-{slug}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def zk_layout(zk_cluster: str) -> Layout:
    """The ZooKeeper layout of this test's cluster: `/quorumgate/<zk_cluster>/...`."""
    return Layout(cluster=zk_cluster)


@pytest.fixture
def zk(zk_hosts: str, zk_layout: Layout) -> Iterator[KazooClient]:
    """A connected KazooClient (no chroot); write under `zk_layout.base` to stay isolated.

    Closed at teardown, after the test's subtree is deleted.
    """
    client = KazooClient(hosts=zk_hosts, timeout=10.0)
    client.start(timeout=30)
    try:
        yield client
    finally:
        _delete_tree(client, zk_hosts, zk_layout.base)
        client.stop()
        client.close()


def _delete_tree(client: KazooClient, hosts: str, path: str) -> None:
    """Best effort: a test may have stopped its client, so fall back to a new one."""
    with contextlib.suppress(KazooException, ZooKeeperError, TimeoutError):
        if client.connected:
            client.delete(path, recursive=True)
            return
        cleaner = KazooClient(hosts=hosts, timeout=10.0)
        try:
            cleaner.start(timeout=10)
            cleaner.delete(path, recursive=True)
        finally:
            cleaner.stop()
            cleaner.close()


def _need_local(what: str) -> None:
    if os.environ.get("ZK_HOSTS"):
        pytest.skip(f"{what} needs local ZooKeeper processes that the test can stop; "
                    "ZK_HOSTS is set, so this machine may not have them")
    if problem := find_zookeeper():
        _unavailable(f"{what} needs Debian's zookeeper package: {problem}")


@pytest.fixture
def zk_server() -> Iterator[ZooKeeperServer]:
    """A private standalone server for this test only, which it may stop and restart."""
    _need_local("a private ZooKeeper server")
    server = ZooKeeperServer(tick_time_ms=TEST_TICK_MS, min_session_timeout_ms=TEST_MIN_SESSION_MS)
    try:
        server.start(timeout=60)
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def _zk_ensemble_module() -> Iterator[ZooKeeperEnsemble]:
    _need_local("a 3-node ensemble")
    ensemble = ZooKeeperEnsemble(3, tick_time_ms=TEST_TICK_MS,
                                 min_session_timeout_ms=TEST_MIN_SESSION_MS)
    try:
        ensemble.start(timeout=60)
        yield ensemble
    finally:
        ensemble.close()


@pytest.fixture
def zk_ensemble(_zk_ensemble_module: ZooKeeperEnsemble) -> Iterator[ZooKeeperEnsemble]:
    """A 3-node ensemble on loopback, all nodes serving when the test starts.

    Started once per module; before each test, nodes a previous test stopped or paused
    are brought back. Tests address nodes by index: `stop(i)`, `kill(i)`, `restart(i)`,
    `start_node(i)`, `pause(i)`/`resume(i)`, `leader()`; `hosts` lists all three.
    """
    ensemble = _zk_ensemble_module
    for node in ensemble.nodes:
        node.resume()
        node.start(wait=False)
    ensemble.wait_serving(timeout=60)
    try:
        yield ensemble
    finally:
        for node in ensemble.nodes:
            node.resume()  # a paused JVM must not outlive the test frozen
