"""Group providers: command output and members registered in ZooKeeper (Patroni-style)."""

from __future__ import annotations

import json

import pytest
from kazoo.client import KazooClient

from coordinator.providers import (
    ProviderConfig,
    ProviderError,
    command_groups,
    member_host,
    zookeeper_groups,
)
from registry.layout import Layout


def test_command_provider_parses_and_rejects_bad_output():
    good = ProviderConfig(id="p", kind="command",
                          command='echo \'[{"name": "g", "members": ["a", "b"]}]\'')
    [group] = command_groups(good)
    assert group.members == ["a", "b"] and group.source == "provider:p"
    for command, message in (("exit 3", "exit 3"), ("echo '{'", "bad output"),
                             ("echo '{}'", "expected a JSON list"),
                             ("echo '[{\"name\": \"bad/name\", \"members\": []}]'",
                              "bad output")):
        with pytest.raises(ProviderError, match=message):
            command_groups(ProviderConfig(id="p", kind="command", command=command))


def test_member_host_reads_patroni_and_kafka_records():
    patroni = {"conn_url": "postgres://10.0.0.7:5432/postgres",
               "api_url": "http://10.0.0.7:8008/patroni", "role": "replica"}
    assert member_host(json.dumps(patroni).encode()) == "10.0.0.7"
    kafka = {"endpoints": ["PLAINTEXT://broker-2.example:9092"], "host": None}
    assert member_host(json.dumps(kafka).encode()) == "broker-2.example"
    assert member_host(b"not json") is None


def test_zookeeper_provider_maps_members_to_vms(zk: KazooClient, zk_layout: Layout) -> None:
    path = f"{zk_layout.base}/service/pg/members"
    for member, ip in (("n1", "10.0.0.1"), ("n2", "10.0.0.2"), ("n3", "10.9.9.9")):
        zk.create(f"{path}/{member}", json.dumps(
            {"conn_url": f"postgres://{ip}:5432/postgres"}).encode(), makepath=True)
    vms = {"vm-1": "10.0.0.1", "vm-2": "10.0.0.2"}
    by_host = ProviderConfig(id="patroni", kind="zookeeper", path=path, group="pg",
                             member_to_vm="host", min_available=2)
    [group] = zookeeper_groups(by_host, zk, vms)
    # a member whose host maps to no VM stays, unknown, so unavailable: never dropped
    assert group.name == "pg" and group.members == ["vm-1", "vm-2", "10.9.9.9"]
    by_name = ProviderConfig(id="names", kind="zookeeper", path=path)
    assert zookeeper_groups(by_name, zk, vms)[0].members == ["n1", "n2", "n3"]
    with pytest.raises(ProviderError, match="does not exist"):
        zookeeper_groups(ProviderConfig(id="x", kind="zookeeper", path=path + "/nope"), zk, vms)


def test_a_vanished_member_stays_in_the_group(zk: KazooClient, zk_layout: Layout) -> None:
    """Issue 12.3: one of 4 members down must not shrink the group to 3 (majority 2)."""
    path = f"{zk_layout.base}/service/pg4/members"
    for i in range(4):
        zk.create(f"{path}/vm-{i}", b"{}", makepath=True)
    config = ProviderConfig(id="pg4", kind="zookeeper", path=path)
    [group] = zookeeper_groups(config, zk, {}, None, now=100.0)
    assert group.members == ["vm-0", "vm-1", "vm-2", "vm-3"] and group.required() == 3
    zk.delete(f"{path}/vm-2")  # its session ended: the member is down, not gone
    [again] = zookeeper_groups(config, zk, {}, group, now=200.0)
    assert again.members == group.members and again.required() == 3
    expiring = config.model_copy(update={"forget_after_s": 1000.0})
    [seen] = zookeeper_groups(expiring, zk, {}, None, now=100.0)
    zk.delete(f"{path}/vm-3")
    [kept] = zookeeper_groups(expiring, zk, {}, seen, now=900.0)
    assert "vm-3" in kept.members
    [gone] = zookeeper_groups(expiring, zk, {}, kept, now=1200.0)
    assert gone.members == ["vm-0", "vm-1"], "forgotten only after forget_after_s"


def test_host_mapping_uses_the_last_known_address_of_a_vm_that_is_down(
        zk: KazooClient, zk_layout: Layout) -> None:
    path = f"{zk_layout.base}/service/pgh/members"
    zk.create(f"{path}/n1", json.dumps({"conn_url": "postgres://10.0.0.1:5432/x"}).encode(),
              makepath=True)
    config = ProviderConfig(id="pgh", kind="zookeeper", path=path, member_to_vm="host")
    # vm-1's agent is not registered now; its vm-state still has its address
    [group] = zookeeper_groups(config, zk, {"vm-1": "10.0.0.1"})
    assert group.members == ["vm-1"]
