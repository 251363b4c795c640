"""The ZooKeeper fixtures give real servers with real sessions, expiry and quorum.

The rest of the suite relies on these facts (ephemeral registrations vanish with their
agent, an ensemble tolerates one lost node), so they are checked here first.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import ConnectionLoss, SessionExpiredError
from kazoo.protocol.states import WatchedEvent

from quorumgate_testbed.zkserver import ZooKeeperEnsemble, ZooKeeperServer, server_mode
from registry.layout import Layout

from .helpers import expire_session, wait_until

# A child process that holds a session with an ephemeral node, then idles.
SESSION_HOLDER = """
import sys, time
from kazoo.client import KazooClient
hosts, path, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
client = KazooClient(hosts=hosts, timeout=timeout)
client.start(timeout=20)
client.create(path, b"held", ephemeral=True, makepath=True)
print(client._session_timeout, flush=True)
time.sleep(120)
"""


def _connect(hosts: str, timeout: float = 10.0) -> KazooClient:
    client = KazooClient(hosts=hosts, timeout=timeout)
    client.start(timeout=30)
    return client


def _close(client: KazooClient) -> None:
    client.stop()
    client.close()


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise AssertionError(f"child {proc.pid} printed nothing within {timeout}s")
    return proc.stdout.readline().strip()


def test_zk_hosts_serves(zk_hosts: str) -> None:
    host, _, port = zk_hosts.split(",")[0].rpartition(":")
    assert server_mode(host, int(port)) in {"standalone", "leader", "follower"}


def test_ephemeral_node_disappears_when_its_session_closes(
    zk: KazooClient, zk_hosts: str, zk_layout: Layout
) -> None:
    path = f"{zk_layout.vms}/vm-0"
    other = _connect(zk_hosts)
    other.create(path, b"{}", ephemeral=True, makepath=True)
    events: list[WatchedEvent] = []
    assert zk.exists(path, watch=events.append) is not None

    _close(other)

    wait_until(lambda: zk.exists(path) is None, timeout=5, message="ephemeral node to go")
    wait_until(lambda: events, timeout=5, message="the exists watch to fire")
    assert events[0].type == "DELETED"


def test_ephemeral_node_disappears_when_its_process_freezes_past_the_session_timeout(
    zk: KazooClient, zk_hosts: str, zk_layout: Layout
) -> None:
    path = f"{zk_layout.vms}/frozen"
    holder = subprocess.Popen(
        [sys.executable, "-c", SESSION_HOLDER, zk_hosts, path, "1.0"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        session_ms = int(_read_line(holder, timeout=30))
        assert zk.exists(path) is not None
        os.kill(holder.pid, signal.SIGSTOP)  # no heartbeats, socket stays open
        frozen_at = time.monotonic()

        wait_until(lambda: zk.exists(path) is None, timeout=session_ms / 1000 + 10,
                   message="the frozen session to expire")
        waited = time.monotonic() - frozen_at
        # The server, not a closed socket, ended it: not before the session timeout.
        assert waited >= session_ms / 1000 * 0.6, (waited, session_ms)
    finally:
        holder.kill()  # SIGKILL also ends a stopped process
        holder.wait(10)


def test_expire_session_ends_the_session_on_the_server(
    zk: KazooClient, zk_hosts: str, zk_layout: Layout
) -> None:
    path = f"{zk_layout.vms}/mine"
    zk.create(path, b"{}", ephemeral=True, makepath=True)
    old_session = zk.client_id[0]

    expire_session(zk, zk_hosts)

    assert zk.client_id[0] != old_session
    assert zk.exists(path) is None
    zk.create(path, b"again", ephemeral=True)  # the new session works


def test_private_server_restarts_with_its_data(zk_server: ZooKeeperServer) -> None:
    client = _connect(zk_server.hosts)
    try:
        client.create("/kept", b"1")
        zk_server.restart(timeout=30)
        wait_until(lambda: client.get("/kept")[0] == b"1", timeout=15,
                   message="data after restart")
    finally:
        _close(client)


def test_a_server_restarted_from_a_short_lived_thread_keeps_running(
        zk_server: ZooKeeperServer) -> None:
    """A JVM dies with the thread that forked it (PR_SET_PDEATHSIG): a node restarted
    from a `threading.Timer`, as the chaos nemesis does, must outlive that thread."""
    zk_server.stop()
    timer = threading.Timer(0.01, lambda: zk_server.start(wait=False))
    timer.start()
    timer.join(10)
    assert not timer.is_alive()
    zk_server.wait_serving(timeout=30)
    time.sleep(1.0)  # a child killed with its thread would be gone by now
    assert zk_server.is_running() and zk_server.is_serving()


# ---------------------------------------------------------------- 3-node ensemble


def _fails_fast(client: KazooClient, path: str, timeout: float = 1.0) -> bool:
    """True when a write fails (ConnectionLoss, expired, or no answer within `timeout`).

    Without quorum kazoo mostly queues the request while it looks for a serving node,
    so "no answer in time" is the usual failure.

    A write that timed out may still be applied once the quorum is back, so `path` must
    be a probe node, not data the test checks later.
    """
    try:
        client.set_async(path, b"x").get(timeout=timeout)
    except (ConnectionLoss, SessionExpiredError, client.handler.timeout_exception):
        return True
    return False


@pytest.mark.ensemble
def test_ensemble_survives_losing_its_leader(
    zk_ensemble: ZooKeeperEnsemble, zk_layout: Layout
) -> None:
    client = _connect(zk_ensemble.hosts)
    try:
        client.create(f"{zk_layout.groups}/g1", b"v1", makepath=True)
        client.create(f"{zk_layout.vms}/vm-1", b"{}", ephemeral=True, makepath=True)
        session = client.client_id[0]
        leader = zk_ensemble.leader()
        assert leader is not None

        zk_ensemble.stop(leader)

        wait_until(lambda: zk_ensemble.leader() not in (None, leader), timeout=15,
                   message="a new leader")
        wait_until(lambda: client.set_async(f"{zk_layout.groups}/g1", b"v2").get(timeout=2),
                   timeout=15, message="writes to go on")
        assert client.get(f"{zk_layout.groups}/g1")[0] == b"v2"
        assert client.client_id[0] == session, "the client kept its session"
        assert client.exists(f"{zk_layout.vms}/vm-1") is not None, "and its ephemeral node"
    finally:
        _close(client)


@pytest.mark.ensemble
def test_ensemble_loses_quorum_with_two_nodes_down_and_recovers_with_one_back(
    zk_ensemble: ZooKeeperEnsemble, zk_layout: Layout
) -> None:
    path, probe = f"{zk_layout.groups}/g1", f"{zk_layout.base}/probe"
    client = _connect(zk_ensemble.hosts)
    try:
        client.create(path, b"kept", makepath=True)
        client.create(probe, b"")
        down = [i for i in range(3) if i != zk_ensemble.leader()][:1] + [zk_ensemble.leader()]
        for index in down:
            zk_ensemble.stop(index)
        lost_at = time.monotonic()

        wait_until(lambda: _fails_fast(client, probe), timeout=15,
                   message="operations to fail without quorum")
        assert time.monotonic() - lost_at < 15
        survivor = next(i for i in range(3) if i not in down)
        wait_until(lambda: zk_ensemble.nodes[survivor].mode() is None, timeout=10,
                   message="the survivor to stop serving")
        assert _fails_fast(client, probe), "still no quorum"

        zk_ensemble.start_node(down[0], wait=False)

        # Bounded calls: a plain client.get() waits as long as the outage lasts.
        wait_until(lambda: client.get_async(path).get(timeout=2)[0] == b"kept", timeout=20,
                   message="reads with data intact after one node is back")
        wait_until(lambda: client.set_async(path, b"after").get(timeout=2), timeout=15,
                   message="writes again")
        assert zk_ensemble.leader() is not None
    finally:
        _close(client)
