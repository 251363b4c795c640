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
from registry.records import VMRegistration


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
    vms = {"vm-1": VMRegistration(name="vm-1", fd=0, ud=0, address="10.0.0.1"),
           "vm-2": VMRegistration(name="vm-2", fd=1, ud=1, address="10.0.0.2")}
    by_host = ProviderConfig(id="patroni", kind="zookeeper", path=path, group="pg",
                             member_to_vm="host", min_available=2)
    [group] = zookeeper_groups(by_host, zk, vms)
    assert group.name == "pg" and group.members == ["vm-1", "vm-2"]
    by_name = ProviderConfig(id="names", kind="zookeeper", path=path)
    assert zookeeper_groups(by_name, zk, vms)[0].members == ["n1", "n2", "n3"]
    with pytest.raises(ProviderError, match="does not exist"):
        zookeeper_groups(ProviderConfig(id="x", kind="zookeeper", path=path + "/nope"), zk, vms)
