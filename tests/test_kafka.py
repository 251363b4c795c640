"""A real Kafka behind quorumgate (quorumgate_testbed.workloads.kafka) and the `kafka` provider.

The end-to-end test rolls maintenance over the three update domains of a 3-broker KRaft
cluster (Apache Kafka 4.4.0's own brokers as JVMs, `broker.rack` from quorumgate's
topology, the group from the brokers' replicas and ISR, the drain and restore hooks of
deploy/hooks) under an idempotent acks=all producer and a checking consumer, and checks
that every acknowledged message arrived exactly once.

Needs the Kafka jars (`scripts/bootstrap.sh --with kafka`: Maven Central into
.cache/jars; `make test` does it) and confluent-kafka. Skipped, with the reason, where
they cannot be had; a failure under CI (`CI` set).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kazoo.client import KazooClient

from coordinator import providers
from coordinator.providers import ProviderConfig, kafka_groups
from quorumgate_testbed.rollout import rollout_stack
from quorumgate_testbed.workloads import jvm
from quorumgate_testbed.workloads.kafka import KafkaLoad, KafkaWorkload, find_kafka, kafka_spec
from registry.records import Group


def _unavailable(problem: str) -> None:
    if jvm.under_ci():
        pytest.fail(f"Kafka required under CI: {problem}", pytrace=False)
    reason = f"Kafka test skipped: {problem}"
    warnings.warn(reason, stacklevel=1)
    pytest.skip(reason)


@pytest.fixture
def kafka_here() -> None:
    if problem := find_kafka():
        _unavailable(problem)


# ---------------------------------------------------------------- the provider, pure


def _partition(pid: int, leader: int, replicas: list[int], isrs: list[int]) -> Any:
    return SimpleNamespace(id=pid, leader=leader, replicas=replicas, isrs=isrs)


class _FakeAdmin:
    """What confluent_kafka's AdminClient answers: metadata and topic configs."""

    brokers: dict[int, Any] = {}
    topics: dict[str, Any] = {}
    min_isr: dict[str, int] = {}

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def list_topics(self, timeout: float) -> Any:
        return SimpleNamespace(brokers=self.brokers, topics=self.topics)

    def describe_configs(self, resources: list[Any], request_timeout: float) -> Any:
        from concurrent.futures import Future

        out = {}
        for resource in resources:
            future: Future[Any] = Future()
            future.set_result({"min.insync.replicas":
                               SimpleNamespace(value=str(self.min_isr[resource.name]))})
            out[resource] = future
        return out


def _cluster(live: list[int], partitions: dict[str, list[Any]]) -> None:
    _FakeAdmin.brokers = {i: SimpleNamespace(id=i, host=f"127.7.7.{i}", port=9092)
                          for i in live}
    _FakeAdmin.topics = {name: SimpleNamespace(error=None,
                                               partitions={p.id: p for p in parts})
                         for name, parts in partitions.items()}


def test_kafka_provider_groups_replica_sets_by_min_isr_and_lag(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import confluent_kafka.admin

    monkeypatch.setattr(confluent_kafka.admin, "AdminClient", _FakeAdmin)
    monkeypatch.setattr(providers, "_KAFKA_BROKERS", {})
    _FakeAdmin.min_isr = {"orders": 2, "logs": 1}
    config = ProviderConfig(id="kafka", kind="kafka", bootstrap="127.7.7.1:9092",
                            member_map={f"127.7.7.{i}": f"vm-{i - 1}" for i in (1, 2, 3, 4)})
    vms = {f"vm-{i}": f"10.0.0.{i + 4}" for i in range(4)}
    _cluster([1, 2, 3, 4], {
        "orders": [_partition(0, 1, [1, 2, 3], [1, 2, 3]), _partition(1, 2, [2, 3, 1], [2, 3, 1])],
        "logs": [_partition(0, 4, [4, 1, 2], [4, 1, 2])]})
    stored: dict[str, Group] = {}
    groups = {g.name: g for g in kafka_groups(config, vms, stored.get, 100.0)}
    assert groups["kafka-vm-0_vm-1_vm-2"].members == ["vm-0", "vm-1", "vm-2"]
    assert groups["kafka-vm-0_vm-1_vm-2"].min_available == 2  # min.insync.replicas
    assert groups["kafka-vm-0_vm-1_vm-3"].min_available == 1
    stored.update(groups)
    # broker 3 is up but lagging (out of one ISR): it cannot take over, so it must not
    # count as available: the group needs one more member up
    _cluster([1, 2, 3, 4], {
        "orders": [_partition(0, 1, [1, 2, 3], [1, 2]), _partition(1, 2, [2, 3, 1], [2, 3, 1])],
        "logs": [_partition(0, 4, [4, 1, 2], [4, 1, 2])]})
    lagging = {g.name: g for g in kafka_groups(config, vms, stored.get, 110.0)}
    assert lagging["kafka-vm-0_vm-1_vm-2"].min_available == 3
    # broker 3 down (gone from the metadata, out of every ISR): the core already counts
    # its VM out; the group keeps its three members and min.insync.replicas
    _cluster([1, 2, 4], {
        "orders": [_partition(0, 1, [1, 2, 3], [1, 2]), _partition(1, 2, [2, 3, 1], [2, 1])],
        "logs": [_partition(0, 4, [4, 1, 2], [4, 1, 2])]})
    down = {g.name: g for g in kafka_groups(config, vms, stored.get, 120.0)}
    assert down["kafka-vm-0_vm-1_vm-2"].members == ["vm-0", "vm-1", "vm-2"]
    assert down["kafka-vm-0_vm-1_vm-2"].min_available == 2


def test_kafka_provider_skips_partitions_of_a_broker_it_never_saw(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A coordinator that starts while a broker is down cannot tell that broker's VM:
    the partition is left out (its stored group stays), never turned into a smaller
    group or one with a made-up member."""
    import confluent_kafka.admin

    monkeypatch.setattr(confluent_kafka.admin, "AdminClient", _FakeAdmin)
    monkeypatch.setattr(providers, "_KAFKA_BROKERS", {})
    _FakeAdmin.min_isr = {"orders": 2}
    config = ProviderConfig(id="kafka", kind="kafka", bootstrap="127.7.7.1:9092",
                            member_map={f"127.7.7.{i}": f"vm-{i - 1}" for i in (1, 2, 3)})
    _cluster([1, 2], {"orders": [_partition(0, 1, [1, 2, 3], [1, 2])]})
    assert kafka_groups(config, {}, lambda _: None, 100.0) == []
    # with the id in member_map it is known even while down
    mapped = config.model_copy(update={"member_map": {**config.member_map, "3": "vm-2"}})
    (group,) = kafka_groups(mapped, {}, lambda _: None, 100.0)
    assert group.members == ["vm-0", "vm-1", "vm-2"] and group.min_available == 2


def test_load_figures_count_lost_duplicates_and_error_seconds() -> None:
    load = KafkaLoad("127.0.0.1:1", late_s=5.0)
    load.sent = 6
    load.acked = {1: (0, 0), 2: (0, 1), 3: (1, 0), 4: (1, 1)}
    load.ack_times = [100.0, 100.1, 108.0, 108.1]
    load.late = [(100.2, 3, 7.8)]             # waited 7.8 s: seconds 105, 106, 107
    load.failed = [(130.5, 5, "_MSG_TIMED_OUT")]
    load.consumed = {(0, 0): 1, (0, 1): 2, (0, 2): 2, (1, 1): 4, (1, 2): 5}
    figures = load.figures()
    assert figures["lost_acknowledged"] == 1 and figures["lost_ids"] == [3]
    assert figures["duplicates"] == 1 and figures["acknowledged_twice"] == 1
    assert figures["failed_but_written"] == 1  # 5 failed to the client, yet it is there
    assert figures["producer_error_s"] == 4    # 105, 106, 107 late; 130 failed
    assert figures["longest_ack_gap_s"] == pytest.approx(7.9)


def test_agent_settings_wire_the_deploy_hooks() -> None:
    workload = KafkaWorkload()
    workload.cluster.base = Path("/nonexistent")
    settings = workload.agent_settings("vm-2")
    drain = settings["drain_hook"]["command"]
    assert drain[-1].endswith("deploy/hooks/kafka-broker-drain.sh") and Path(drain[-1]).is_file()
    restore = settings["restore_hook"]["command"]
    assert restore[-1].endswith("deploy/hooks/kafka-broker-restore.sh")
    assert "KAFKA_BROKER_ID=3" in drain
    assert workload.agent_settings("vm-5") == {}
    provider = workload.provider()
    assert provider.kind == "kafka" and provider.bootstrap == workload.cluster.bootstrap
    workload.cluster.base = None


# ---------------------------------------------------------------- the real cluster


@pytest.mark.timeout(1200)
def test_rollout_over_real_kafka_loses_no_acknowledged_message(
        kafka_here: None, zk_hosts: str, zk_cluster: str, zk: KazooClient) -> None:
    from tests.test_patroni import _processes_mentioning

    spec = kafka_spec("quorumgate", timeout_s=800)
    workload = spec.workload
    assert isinstance(workload, KafkaWorkload)
    with rollout_stack(spec, zk_hosts, zk_cluster, out=lambda line: None) as rollout:
        workload.wait_ready()
        base = workload.cluster.base
        assert base is not None
        group = json.loads(zk.get(rollout.layout.group("kafka-vm-0_vm-1_vm-2"))[0])
        summary = rollout.run()
    report = summary.workload
    detail = f"{summary.table()}\n{json.dumps(report, indent=1, default=str)[:6000]}"
    assert _processes_mentioning(str(base)) == []
    assert not base.exists()
    # broker.rack from quorumgate's topology; the group from the brokers' ISR
    assert report["racks"] == {f"vm-{i}": f"ud{i}" for i in range(3)}, detail
    assert group["members"] == ["vm-0", "vm-1", "vm-2"] and group["min_available"] == 2
    assert summary.completed, detail
    assert summary.violations == [], detail
    # Each UD acknowledged by us; on a starved machine (the JVM tools can take 40 s a
    # call) the platform may start one at its NotBefore first: a late drain, not a
    # safety matter, but not more than once.
    assert summary.acknowledged + summary.forced == 3 and summary.forced <= 1, detail
    assert report["acknowledged"] > 1000, detail
    # every acknowledged message arrived, exactly once
    assert report["lost_acknowledged"] == 0, detail
    assert report["acknowledged_twice"] == 0 and report["duplicates"] == 0, detail
    assert report["healthy_at_end"], detail
    assert all(count == 1 for count in report["reboots"].values()), detail
    # each drain moved leadership off its broker; each restore gave it back
    logs = report["hook_logs"]
    assert all(any("leads no partition: drained" in line for line in logs[vm]) or
               any("restored" in line for line in logs[vm]) for vm in logs), detail
