"""Registration and liveness against a real ZooKeeper and the emulator."""

from __future__ import annotations

import time

import httpx
import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError

from registry.layout import Layout
from registry.records import Group, VMRegistration, VMState
from tests.helpers import expire_session, wait_until

from .conftest import AgentFactory, record


def test_registers_topology_and_leaves_on_stop(zk: KazooClient, zk_layout: Layout,
                                              make_agent: AgentFactory, emulator) -> None:
    agent = make_agent("vm-4", groups=["hdfs"], min_available=1)
    reg = record(zk, zk_layout.vm("vm-4"), VMRegistration)
    view = emulator.vm("vm-4")
    assert reg is not None and reg.name == "vm-4"
    assert (reg.fd, reg.ud, reg.address, reg.vm_id) == (view["fd"], view["ud"],
                                                        view["private_ip"], view["vm_id"])
    assert reg.location == "westeurope" and reg.groups == ["hdfs"]
    _, stat = zk.get(zk_layout.vm("vm-4"))
    assert stat.ephemeralOwner == agent.zk.client_id[0]
    state = record(zk, zk_layout.vm_state("vm-4"), VMState)
    assert state is not None and (state.fd, state.ud) == (reg.fd, reg.ud)
    assert state.labels["quorumgate.io/fault-domain"] == str(reg.fd)
    assert state.labels["quorumgate.io/update-domain"] == str(reg.ud)
    assert state.labels["topology.kubernetes.io/region"] == "westeurope"
    group = record(zk, zk_layout.group("hdfs"), Group)
    assert group == Group(name="hdfs", members=["vm-4"], min_available=1, source="agent")

    agent.stop()
    assert zk.exists(zk_layout.vm("vm-4")) is None  # gone at once, not after the timeout
    assert zk.exists(zk_layout.vm_state("vm-4")) is not None


def test_static_group_members_join_with_cas(zk: KazooClient, zk_layout: Layout,
                                           make_agent: AgentFactory) -> None:
    names = [f"vm-{i}" for i in range(4)]
    for name in names:
        make_agent(name, groups=["kafka", "zk-ens"], wait=False)
    def members(name: str) -> list[str]:
        group = record(zk, zk_layout.group(name), Group)
        return sorted(group.members) if group else []

    wait_until(lambda: members("kafka") == names and members("zk-ens") == names, 15,
               message="every agent to join both groups")
    group = record(zk, zk_layout.group("zk-ens"), Group)
    assert group.min_available == "majority" and group.required() == 3


def test_reregisters_after_session_expiry(zk: KazooClient, zk_hosts: str, zk_layout: Layout,
                                          make_agent: AgentFactory) -> None:
    agent = make_agent("vm-2")
    old_session = agent.zk.client_id[0]
    expire_session(agent.zk, zk_hosts)
    def registered_again() -> bool:
        stat = zk.exists(zk_layout.vm("vm-2"))
        return stat is not None and stat.ephemeralOwner not in (0, old_session)
    wait_until(registered_again, 15, message="vm-2 to re-register in its new session")
    # the node lands a moment before the agent's own bookkeeping says so
    wait_until(lambda: agent.health()["ok"], 5, message="the agent to report healthy")


def test_replaces_registration_left_by_a_crashed_agent(zk: KazooClient, zk_hosts: str,
                                                       zk_layout: Layout,
                                                       make_agent: AgentFactory) -> None:
    ghost = KazooClient(hosts=zk_hosts, timeout=30)
    ghost.start(timeout=10)
    try:
        ghost.create(zk_layout.vm("vm-0"), b"{}", ephemeral=True, makepath=True)
        agent = make_agent("vm-0")
        _, stat = zk.get(zk_layout.vm("vm-0"))
        assert stat.ephemeralOwner == agent.zk.client_id[0]
    finally:
        ghost.stop()
        ghost.close()


def test_health_and_metrics(make_agent: AgentFactory) -> None:
    agent = make_agent("vm-3", health_port=0)
    assert agent.health_port is None  # 0 = off
    agent = make_agent("vm-5", health_port=_free_port())
    base = f"http://127.0.0.1:{agent.health_port}"
    assert agent.registration is not None and agent.registration.agent_url == base
    health = httpx.get(base + "/healthz", trust_env=False)
    assert health.status_code == 200 and health.json()["vm"] == "vm-5"
    wait_until(lambda: agent.metrics.value("quorumgate_agent_polls_total") >= 2, 10)
    text = httpx.get(base + "/metrics", trust_env=False).text
    assert "quorumgate_agent_polls_total" in text and "quorumgate_agent_registered 1.0" in text
    agent.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_survives_a_zookeeper_restart(zk_server, zk_layout: Layout, emulator,
                                      make_agent: AgentFactory) -> None:
    agent = make_agent("vm-1", zk_hosts=zk_server.hosts)
    zk_server.stop()
    wait_until(lambda: not agent.zk.connected, 10)
    time.sleep(0.5)  # the loop keeps ticking without ZooKeeper
    assert not agent.health()["ok"]
    zk_server.start()
    observer = KazooClient(hosts=zk_server.hosts, timeout=10)
    observer.start(timeout=15)
    try:
        eid = emulator.schedule(ud=1, type="Freeze")["event_id"]
        wait_until(lambda: observer.exists(zk_layout.event(eid)), 20,
                   message="the agent to relay again after ZooKeeper came back")
        wait_until(lambda: observer.exists(zk_layout.vm("vm-1")), 20)
        wait_until(lambda: agent.health()["ok"], 5, message="the agent to report healthy")
    finally:
        observer.stop()
        observer.close()


def test_digest_auth_protects_the_agents_nodes(zk: KazooClient, zk_layout: Layout,
                                               make_agent: AgentFactory) -> None:
    make_agent("vm-0", zk_auth="agent:s3cret")
    acls, _ = zk.get_acls(zk_layout.vm_state("vm-0"))
    assert {acl.id.scheme for acl in acls} == {"digest", "world"}
    with pytest.raises(NoAuthError):  # readable by all, writable with the credentials only
        zk.set(zk_layout.vm_state("vm-0"), b"{}")
    assert record(zk, zk_layout.vm_state("vm-0"), VMState) is not None
    zk.add_auth("digest", "agent:s3cret")  # so the fixture can clean up


def test_wrong_credentials_are_said_once_and_make_the_agent_unhealthy(
        zk: KazooClient, zk_layout: Layout, make_agent: AgentFactory,
        caplog: pytest.LogCaptureFixture) -> None:
    """Issue 14.4: a wrong zk_auth was logged as a failed tick every poll, health green."""
    make_agent("vm-0", zk_auth="agent:s3cret")  # the cluster's folders now carry its ACL
    zk.add_auth("digest", "agent:s3cret")
    with caplog.at_level("DEBUG", logger="agent.daemon"):
        wrong = make_agent("vm-1", zk_auth="agent:wrong", wait=False)
        health = wait_until(lambda: (h := wrong.health()).get("problem") and h, 15,
                            message="the agent to report the refusal")
        polls = wrong.metrics.value("quorumgate_agent_polls_total")
        wait_until(lambda: len([r for r in caplog.records if "refuses this agent"
                                in r.getMessage()]) >= 3, 15, message="a few more ticks")
    assert not health["ok"] and "QG_ZK_AUTH" in health["problem"]
    errors = [r for r in caplog.records if r.levelname == "ERROR"
              and "refuses this agent" in r.getMessage()]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert not [r for r in caplog.records if "tick failed" in r.getMessage()]
    assert polls == 0
