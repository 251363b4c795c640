"""A real Kafka behind quorumgate: a 3-broker KRaft cluster, an idempotent producer with
acks=all, a consumer that checks every acknowledged message arrives exactly once.

Apache Kafka 4.4.0's own server (`kafka_2.13`, `kafka-tools`, from Maven Central into
`.cache/jars`, see `quorumgate_testbed.workloads.jvm`):

- **three brokers, one per update domain**, each a JVM in combined KRaft mode
  (`process.roles=broker,controller`, no ZooKeeper), on its own loopback address,
  `broker.rack` = the rack `quorumgate topology kafka <vm>` answers (the VM's maintenance
  domain, `ud<M>` here, from the coordinators' view of the VMs). A reboot of the VM
  SIGKILLs the broker's JVM; its return starts it again on the same log directory;
- a topic `qg-load` with 3 partitions, replication 3, `min.insync.replicas=2`
  (`__consumer_offsets` likewise);
- the **deploy hooks** deploy/hooks/kafka-broker-drain.sh (reorder the replicas so this
  broker is last, preferred-replica election, wait until it leads nothing) and
  kafka-broker-restore.sh (wait until it is back in every ISR, put the order back,
  preferred election), run with the Kafka CLI tools from the cache;
- a **group provider** (`kind="kafka"` in coordinator/providers.py): one group per
  replica set, `min_available` = `min.insync.replicas` (+ lagging replicas);
- the **load**: a confluent-kafka (librdkafka) producer, `enable.idempotence=true`,
  `acks=all`, numbered messages, every delivery report kept; a consumer reading the
  topic from the start; an ISR watch (metadata every 0.5 s) for the time any partition
  had fewer in-sync replicas than `min.insync.replicas`.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coordinator.providers import ProviderConfig
from quorumgate_testbed.rollout import GroupSpec, RolloutSpec, Workload
from quorumgate_testbed.workloads import jvm
from quorumgate_testbed.workloads.hdfs import hook_logs, quorumgate_command
from quorumgate_testbed.workloads.waits import wait_groups, wait_registered
from quorumgate_testbed.zkserver import free_ports
from registry.records import Policy

if TYPE_CHECKING:
    from quorumgate_testbed.rollout import Rollout

HOOKS_DIR = Path(__file__).resolve().parents[3] / "deploy" / "hooks"
DRAIN_HOOK = HOOKS_DIR / "kafka-broker-drain.sh"
RESTORE_HOOK = HOOKS_DIR / "kafka-broker-restore.sh"
TOPIC = "qg-load"
MIN_ISR = 2


DRAIN_TIMEOUT_S = 800.0
"""The policy's drain timeout in virtual seconds (200 s real at x4): the hooks run the
JVM-based tools several times, which takes tens of seconds on a busy 2-core machine."""
RESTORE_TIMEOUT_S = 1200.0


class KafkaError(RuntimeError):
    """The Kafka cluster did not start, get healthy or stop in time."""


def find_kafka() -> str | None:
    """None when a real Kafka cluster can run here, else a one-line explanation."""
    if problem := jvm.jars_problem(jvm.KAFKA, "kafka"):
        return problem
    missing = [tool for tool in ("bash", "jq", "awk") if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)} (scripts/bootstrap.sh --with kafka installs them)"
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        return "the confluent-kafka Python client is not installed (pip install -e .)"
    return None


LOG4J2 = """status = error
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c{1})%n
rootLogger.level = {level}
rootLogger.appenderRef.out.ref = out
logger.req.name = kafka.request.logger
logger.req.level = warn
logger.state.name = state.change.logger
logger.state.level = warn
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = warn
"""

TOOL = """#!/bin/bash
# {script} of this simulated cluster: Kafka {version}'s own tool class from {lib}.
exec {java} {flags} -Xmx128m -Dlog4j2.configurationFile={conf}/log4j2-tools.properties \\
    -cp "{lib}/*" {cls} "$@"
"""

TOOLS = {
    "kafka-topics.sh": "org.apache.kafka.tools.TopicCommand",
    "kafka-reassign-partitions.sh": "org.apache.kafka.tools.reassign.ReassignPartitionsCommand",
    "kafka-leader-election.sh": "org.apache.kafka.tools.LeaderElectionCommand",
    "kafka-storage.sh": "kafka.tools.StorageTool",
    "kafka-metadata-quorum.sh": "org.apache.kafka.tools.MetadataQuorumCommand",
}


@dataclass
class Broker:
    vm: str
    node_id: int
    address: str
    port: int
    controller_port: int
    dir: Path = field(default_factory=Path)
    rack: str = ""

    @property
    def bootstrap(self) -> str:
        return f"{self.address}:{self.port}"


class KafkaCluster:
    """KRaft brokers (combined broker + controller) on loopback, by process group."""

    def __init__(self, vms: Sequence[str], *, heap_mb: int = 256,
                 session_timeout_ms: int = 9000, replica_lag_ms: int = 30000) -> None:
        self.vms = list(vms)
        self.heap_mb = heap_mb
        self.session_timeout_ms = session_timeout_ms
        self.replica_lag_ms = replica_lag_ms
        ports = free_ports(2 * len(self.vms))
        net = random.Random(uuid.uuid4().int)
        a, b = net.randrange(64, 250), net.randrange(0, 256)
        self.brokers = {vm: Broker(vm, i + 1, f"127.{a}.{b}.{i + 1}", ports[2 * i],
                                   ports[2 * i + 1]) for i, vm in enumerate(self.vms)}
        self.cluster_id = ""
        self.base: Path | None = None
        self.daemons = jvm.JavaDaemons()
        self._admin: Any = None

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers.values())

    @property
    def bin_dir(self) -> Path:
        assert self.base is not None
        return self.base / "bin"

    def vm_of_id(self, node_id: int) -> str | None:
        return next((b.vm for b in self.brokers.values() if b.node_id == node_id), None)

    def prepare(self) -> None:
        if problem := find_kafka():
            raise KafkaError(problem)
        self.base = Path(tempfile.mkdtemp(prefix="quorumgate-kafka-"))
        (self.base / "bin").mkdir()
        (self.base / "conf").mkdir()
        java = jvm.java()
        assert java is not None
        lib = jvm.lib_dir(jvm.KAFKA)
        conf = self.base / "conf"
        (conf / "log4j2.properties").write_text(LOG4J2.replace("{level}", "info"))
        (conf / "log4j2-tools.properties").write_text(LOG4J2.replace("{level}", "warn").replace(
            "appender.out.type = Console", "appender.out.type = Console\n"
            "appender.out.target = SYSTEM_ERR"))
        for script, cls in TOOLS.items():
            path = self.bin_dir / script
            path.write_text(TOOL.format(script=script, version=jvm.KAFKA_VERSION, lib=lib,
                                        java=java, flags=" ".join(jvm.JVM_SMALL), conf=conf,
                                        cls=cls))
            path.chmod(0o755)
        import base64

        self.cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        for b in self.brokers.values():
            b.dir = self.base / b.vm
            (b.dir / "logs").mkdir(parents=True)

    def write_configs(self) -> None:
        """server.properties of every broker (after the racks are known) and format."""
        voters = ",".join(f"{b.node_id}@{b.address}:{b.controller_port}"
                          for b in self.brokers.values())
        assert self.base is not None
        java = jvm.java()
        assert java is not None
        for b in self.brokers.values():
            props = {
                "process.roles": "broker,controller",
                "node.id": b.node_id,
                "controller.quorum.voters": voters,
                "listeners": f"PLAINTEXT://{b.address}:{b.port},"
                             f"CONTROLLER://{b.address}:{b.controller_port}",
                "advertised.listeners": f"PLAINTEXT://{b.address}:{b.port}",
                "controller.listener.names": "CONTROLLER",
                "inter.broker.listener.name": "PLAINTEXT",
                "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "log.dirs": str(b.dir / "logs"),
                "broker.rack": b.rack,
                "num.partitions": 3,
                "default.replication.factor": 3,
                "min.insync.replicas": MIN_ISR,
                "offsets.topic.replication.factor": 3,
                "offsets.topic.num.partitions": 3,
                "transaction.state.log.replication.factor": 3,
                "transaction.state.log.min.isr": MIN_ISR,
                "transaction.state.log.num.partitions": 3,
                "share.coordinator.state.topic.replication.factor": 3,
                "share.coordinator.state.topic.min.isr": MIN_ISR,
                "auto.create.topics.enable": "false",
                "unclean.leader.election.enable": "false",
                "group.initial.rebalance.delay.ms": 0,
                "broker.heartbeat.interval.ms": 1000,
                "broker.session.timeout.ms": self.session_timeout_ms,
                "replica.lag.time.max.ms": self.replica_lag_ms,
                "num.network.threads": 2,
                "num.io.threads": 2,
                "num.replica.fetchers": 1,
                "background.threads": 2,
                "log.segment.bytes": 16 * 1024 * 1024,
                "controlled.shutdown.enable": "true",
            }
            path = b.dir / "server.properties"
            path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
            done = jvm.run_tool([str(self.bin_dir / "kafka-storage.sh"), "format", "-t",
                                 self.cluster_id, "-c", str(path), "--ignore-formatted"], 120)
            if done.returncode != 0:
                raise KafkaError(f"kafka-storage format {b.vm}: "
                                 f"{(done.stdout + done.stderr)[-600:]}")
            self.daemons.add(jvm.Daemon(
                b.vm, [java, *jvm.JVM_DAEMON, f"-Xmx{self.heap_mb}m", f"-Xms{self.heap_mb}m",
                       f"-Dlog4j2.configurationFile={self.base / 'conf' / 'log4j2.properties'}",
                       f"-Dkafka.logs.dir={b.dir}", "-cp", f"{jvm.lib_dir(jvm.KAFKA)}/*",
                       "kafka.Kafka", str(path)],
                b.dir / "broker.log"))

    def start_broker(self, vm: str) -> int:
        return self.daemons.start(vm)

    def kill_broker(self, vm: str) -> int | None:
        return self.daemons.kill(vm)

    def admin(self) -> Any:
        """One admin client, kept: its futures fail when the client is collected."""
        if self._admin is None:
            from confluent_kafka.admin import AdminClient

            self._admin = AdminClient({"bootstrap.servers": self.bootstrap,
                                       "socket.timeout.ms": 5000, "log_level": 0})
        return self._admin

    def metadata(self, timeout: float = 5.0) -> Any:
        return self.admin().list_topics(timeout=timeout)

    def wait_brokers(self, vms: Sequence[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        want = {self.brokers[vm].node_id for vm in vms}
        seen: set[int] = set()
        while True:
            with contextlib.suppress(Exception):
                seen = set(self.metadata(3.0).brokers)
                if want <= seen:
                    return
            exited = [vm for vm in vms if not self.daemons.daemons[vm].running]
            if exited:
                raise KafkaError(f"broker of {exited[0]} exited\n"
                                 f"{self.daemons.log_tail(exited[0])}")
            if time.monotonic() > deadline:
                raise KafkaError(f"brokers not registered after {timeout:g}s: "
                                 f"{sorted(want - seen)}\n{self.daemons.log_tail(vms[0])}")
            time.sleep(0.5)

    def create_topic(self, timeout: float = 60.0) -> None:
        from confluent_kafka.admin import NewTopic

        admin = self.admin()
        futures = admin.create_topics(
            [NewTopic(TOPIC, num_partitions=3, replication_factor=3,
                      config={"min.insync.replicas": str(MIN_ISR)})],
            request_timeout=timeout)
        for future in futures.values():
            future.result(timeout=timeout)

    def under_min_isr(self, metadata: Any) -> list[tuple[str, int, int]]:
        """(topic, partition, ISR size) of every partition below MIN_ISR."""
        out = []
        for name, topic in metadata.topics.items():
            for pid, p in topic.partitions.items():
                if len(p.isrs) < MIN_ISR:
                    out.append((name, pid, len(p.isrs)))
        return out

    def wait_full_isr(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        problem = ""
        while True:
            with contextlib.suppress(Exception):
                md = self.metadata(3.0)
                short = [(t, p.id, p.isrs) for t, topic in md.topics.items()
                         for p in topic.partitions.values()
                         if len(p.isrs) < len(p.replicas) or p.leader < 0]
                if TOPIC in md.topics and not short:
                    return
                problem = str(short[:3])
            if time.monotonic() > deadline:
                raise KafkaError(f"partitions not fully in sync after {timeout:g}s: {problem}")
            time.sleep(0.5)

    def leaders(self) -> dict[str, int]:
        md = self.metadata(3.0)
        return {f"{t}-{p.id}": p.leader for t, topic in md.topics.items()
                for p in topic.partitions.values()}

    def close(self, graceful: bool = False) -> None:
        self.daemons.close(graceful=graceful)
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None


# --------------------------------------------------------------------------- the load


class KafkaLoad:
    """An idempotent acks=all producer of numbered messages and a checking consumer."""

    def __init__(self, bootstrap: str, *, rate_per_s: float = 40.0,
                 delivery_timeout_ms: int = 60000, late_s: float = 5.0) -> None:
        self.bootstrap = bootstrap
        self.rate_per_s = rate_per_s
        self.delivery_timeout_ms = delivery_timeout_ms
        self.late_s = late_s
        """An acknowledgement later than this counts as a producer error second too (a
        writer with a latency budget sees an outage, whatever the client retried)."""
        self.acked: dict[int, tuple[int, int]] = {}
        """message id -> (partition, offset) the broker acknowledged."""
        self.ack_times: list[float] = []
        self.sent_at: dict[int, float] = {}
        self.late: list[tuple[float, int, float]] = []
        """(sent at, message id, seconds to its acknowledgement) beyond `late_s`."""
        self.failed: list[tuple[float, int, str]] = []
        self.errors: Counter[str] = Counter()
        self.consumed: dict[tuple[int, int], int] = {}
        """(partition, offset) -> message id, as the consumer read them."""
        self.sent = 0
        self._stop = threading.Event()
        self._consumer_stop = threading.Event()
        self._lock = threading.Lock()
        self._producer_thread = threading.Thread(target=self._produce, name="kafka-producer",
                                                 daemon=True)
        self._consumer_thread = threading.Thread(target=self._consume, name="kafka-consumer",
                                                 daemon=True)
        self.started = 0.0
        self.ended = 0.0
        self.group = f"qg-check-{uuid.uuid4().hex[:6]}"

    def _delivered(self, err: Any, msg: Any) -> None:
        message_id = int(msg.key())
        now = time.time()
        with self._lock:
            sent = self.sent_at.pop(message_id, now)
            if err is None:
                self.acked[message_id] = (msg.partition(), msg.offset())
                self.ack_times.append(now)
                if now - sent > self.late_s:
                    self.late.append((sent, message_id, now - sent))
            else:
                self.failed.append((now, message_id, str(err.name())))
                self.errors[str(err.name())] += 1

    def _produce(self) -> None:
        from confluent_kafka import KafkaException, Producer

        producer = Producer({
            "bootstrap.servers": self.bootstrap, "enable.idempotence": True, "acks": "all",
            "linger.ms": 5, "delivery.timeout.ms": self.delivery_timeout_ms,
            "request.timeout.ms": min(5000, self.delivery_timeout_ms),
            "client.id": "quorumgate-producer", "log_level": 2})
        message_id = 0
        pause = 1.0 / self.rate_per_s
        try:
            while not self._stop.is_set():
                message_id += 1
                with self._lock:
                    self.sent_at[message_id] = time.time()
                try:
                    producer.produce(TOPIC, key=str(message_id).encode(),
                                     value=f"message {message_id}".encode(),
                                     on_delivery=self._delivered)
                    self.sent = message_id
                except (BufferError, KafkaException) as exc:
                    with self._lock:
                        self.failed.append((time.time(), message_id, type(exc).__name__))
                        self.errors[type(exc).__name__] += 1
                producer.poll(0)
                self._stop.wait(pause)
        finally:
            producer.flush(self.delivery_timeout_ms / 1000 + 5)

    def _consume(self) -> None:
        from confluent_kafka import Consumer

        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group,
                             "auto.offset.reset": "earliest", "enable.auto.commit": True,
                             "isolation.level": "read_committed",
                             "client.id": "quorumgate-consumer", "log_level": 2})
        consumer.subscribe([TOPIC])
        try:
            while not self._consumer_stop.is_set():
                msg = consumer.poll(0.5)
                if msg is None or msg.error() is not None:
                    continue
                with self._lock:
                    self.consumed[(msg.partition(), msg.offset())] = int(msg.key())
        finally:
            consumer.close()

    def start(self) -> None:
        self.started = time.monotonic()
        self._consumer_thread.start()
        self._producer_thread.start()

    def wait_acks(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.acked) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        return len(self.acked) >= count

    def stop_producing(self) -> None:
        self._stop.set()
        if self._producer_thread.is_alive():
            self._producer_thread.join(self.delivery_timeout_ms / 1000 + 20)
        self.ended = self.ended or time.monotonic()

    def drain_consumer(self, timeout: float = 60.0) -> None:
        """Let the consumer read everything acknowledged (or give up), then stop it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                seen = set(self.consumed.values())
                if all(mid in seen for mid in self.acked):
                    break
            time.sleep(0.3)
        self._consumer_stop.set()
        if self._consumer_thread.is_alive():
            self._consumer_thread.join(15)

    def stop(self) -> None:
        self._stop.set()
        self._consumer_stop.set()
        for thread in (self._producer_thread, self._consumer_thread):
            if thread.is_alive():
                thread.join(20)

    def figures(self) -> dict[str, Any]:
        with self._lock:
            counts = Counter(self.consumed.values())
            lost = sorted(mid for mid in self.acked if mid not in counts)
            duplicates = sorted(mid for mid, n in counts.items() if n > 1)
            acked_twice = [mid for mid in duplicates if mid in self.acked]
            failed_ids = {mid for _, mid, _ in self.failed}
            # every second in which a delivery failed or a message had waited more than
            # late_s for its acknowledgement: what a writer with a latency budget sees
            error_seconds = ({int(at) for at, _, _ in self.failed}
                             | {int(sent + self.late_s + k) for sent, _, took in self.late
                                for k in range(int(took - self.late_s) + 1)})
            times = sorted(self.ack_times)
            written_anyway = len(failed_ids & set(counts))
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        return {"messages_sent": self.sent, "acknowledged": len(self.acked),
                "lost_acknowledged": len(lost), "lost_ids": lost[:20],
                "duplicates": len(duplicates), "duplicate_ids": duplicates[:20],
                "acknowledged_twice": len(acked_twice),
                "consumed": len(self.consumed), "failed_deliveries": len(self.failed),
                "failed_but_written": written_anyway,
                "late_acknowledgements": len(self.late),
                "producer_error_s": len(error_seconds),
                "producer_errors": dict(self.errors),
                "longest_ack_gap_s": round(max(gaps), 2) if gaps else None}


class IsrWatch:
    """Every `interval_s`: is any partition below min.insync.replicas? (time under it)."""

    def __init__(self, cluster: KafkaCluster, interval_s: float = 0.5) -> None:
        self.cluster = cluster
        self.interval_s = interval_s
        self.under_s = 0.0
        self.partition_under_s = 0.0
        self.leaderless_s = 0.0
        self.samples = 0
        self.failures = 0
        self.events: list[tuple[float, list[tuple[str, int, int]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kafka-isr", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(15)

    def _run(self) -> None:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.cluster.bootstrap,
                             "socket.timeout.ms": 3000, "log_level": 0})
        last = time.monotonic()
        while not self._stop.wait(self.interval_s):
            now = time.monotonic()
            dt, last = now - last, now
            try:
                md = admin.list_topics(timeout=3.0)
            except Exception:
                self.failures += 1
                continue
            self.samples += 1
            under = self.cluster.under_min_isr(md)
            leaderless = [1 for t in md.topics.values() for p in t.partitions.values()
                          if p.leader < 0]
            if under:
                self.under_s += dt
                self.partition_under_s += dt * len(under)
                if not self.events or self.events[-1][1] != under:
                    self.events.append((time.time(), under))
            if leaderless:
                self.leaderless_s += dt


# --------------------------------------------------------------------------- the workload


class KafkaWorkload(Workload):
    """Three KRaft brokers on `vms`, the producer/consumer and the ISR watch."""

    def __init__(self, vms: Sequence[str] = ("vm-0", "vm-1", "vm-2"), *,
                 group_prefix: str = "kafka", setup_timeout_s: float = 240.0,
                 say: Callable[[str], None] | None = None, **cluster: Any) -> None:
        self.vm_names = list(vms)
        self.group_prefix = group_prefix
        self.setup_timeout_s = setup_timeout_s
        self.say = say or (lambda line: None)
        self.cluster = KafkaCluster(self.vm_names, **cluster)
        self.load: KafkaLoad | None = None
        self.isr: IsrWatch | None = None
        self.vm_events: list[tuple[float, str, str]] = []
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._starter: threading.Thread | None = None
        self._report: dict[str, Any] | None = None
        self._deadline = 0.0
        self._api = ("", "")
        self._static: dict[str, str] = {}

    def provider(self, interval_s: float = 1.0) -> ProviderConfig:
        member_map = {b.address: b.vm for b in self.cluster.brokers.values()}
        return ProviderConfig(id=self.group_prefix, kind="kafka", group=self.group_prefix,
                              bootstrap=self.cluster.bootstrap, interval_s=interval_s,
                              member_map=member_map, timeout_s=5.0)

    def checked_group(self) -> GroupSpec:
        return GroupSpec(f"{self.group_prefix}-check", self.vm_names, MIN_ISR)

    def describe(self) -> list[str]:
        c = self.cluster
        lines = [f"Kafka          {len(c.brokers)} KRaft brokers (Kafka {jvm.KAFKA_VERSION}), "
                 f"bootstrap {c.bootstrap}, data in {c.base}"]
        for b in c.brokers.values():
            lines.append(f"  broker {b.node_id} on {b.vm}: {b.bootstrap}, rack {b.rack}, "
                         f"log {b.dir / 'broker.log'}")
        lines.append(f"  topic {TOPIC}: 3 partitions, replication 3, min.insync.replicas "
                     f"{MIN_ISR}; groups {self.group_prefix}-* from the brokers' ISR")
        return lines

    # Workload

    def setup(self, rollout: Rollout) -> None:
        """Prepare; the brokers start once the agents have registered (their racks come
        from quorumgate): `wait_ready()`."""
        self._deadline = time.monotonic() + self.setup_timeout_s
        self._api = (rollout.api_urls[0] if rollout.api_urls else "", rollout.viewer_token)
        # the maintenance domain as `topology kafka` names it (availability set: ud<M>)
        self._static = {vm.name: f"ud{vm.config.ud}"
                        for vm in rollout.emu.sim.vms(rollout.clock.now())}
        self.cluster.prepare()
        self._starter = threading.Thread(target=self._start_rest, args=(rollout,),
                                         name="kafka-start", daemon=True)
        self._starter.start()

    def _remaining(self) -> float:
        return max(10.0, self._deadline - time.monotonic())

    def _racks(self) -> None:
        """broker.rack of each broker from `quorumgate topology kafka <vm>`."""
        url, token = self._api
        if not url:  # no coordinator (the baselines): the same racks from a fixed table
            for vm, rack in self._static.items():
                if vm in self.cluster.brokers:
                    self.cluster.brokers[vm].rack = rack
            return
        deadline = time.monotonic() + 60
        while True:
            done = jvm.run_tool([*quorumgate_command().split(), "topology", "kafka", "--url",
                                 url, "--token", token, "--timeout", "10", "--json",
                                 *self.vm_names], 60)
            try:
                racks = {vm: row["broker.rack"] for vm, row in json.loads(done.stdout).items()}
            except (ValueError, KeyError, TypeError, AttributeError):
                racks = {}
            if set(racks) == set(self.vm_names):
                for vm, rack in racks.items():
                    self.cluster.brokers[vm].rack = rack
                return
            if time.monotonic() > deadline:
                raise KafkaError(f"no racks from quorumgate topology: {done.stderr[-300:]}")
            time.sleep(1)

    def _start_rest(self, rollout: Rollout) -> None:
        try:
            wait_registered(rollout, self.vm_names, self._deadline,
                            lambda: KafkaError("agents of the broker VMs did not register"))
            self._racks()
            self.cluster.write_configs()
            for vm in self.vm_names:
                self.cluster.start_broker(vm)
            self.cluster.wait_brokers(self.vm_names, self._remaining())
            self.cluster.create_topic(self._remaining())
            self.cluster.wait_full_isr(self._remaining())
            self.say(f"Kafka brokers up, racks "
                     f"{ {b.vm: b.rack for b in self.cluster.brokers.values()} }")
            self.load = KafkaLoad(self.cluster.bootstrap)
            self.load.start()
            if not self.load.wait_acks(50, self._remaining()):
                raise KafkaError(f"the producer gets nothing acknowledged: {self.load.errors}")
            # the consumer group's coordinator (__consumer_offsets) is in place too
            self.cluster.wait_full_isr(self._remaining())
            self.isr = IsrWatch(self.cluster)
            self.isr.start()
            if rollout.coordinators:
                wait_groups(rollout, self.group_prefix, self.vm_names, self._deadline,
                            lambda left: KafkaError(f"the kafka provider published no group "
                                                    f"for {list(left)}"))
            self._ready.set()
        except BaseException as exc:
            self._failed = exc
            self._ready.set()

    def wait_ready(self, timeout: float | None = None) -> None:
        if self._starter is None:
            raise KafkaError("setup() has not run")
        limit = (timeout if timeout is not None
                 else max(1.0, self._deadline - time.monotonic()) + 60.0)
        if not self._ready.wait(limit):
            raise KafkaError("Kafka not ready in time")
        if self._failed is not None:
            raise KafkaError(f"Kafka did not start: {self._failed}") from self._failed

    def agent_settings(self, vm: str) -> dict[str, Any]:
        if vm not in self.cluster.brokers or self.cluster.base is None:
            return {}
        b = self.cluster.brokers[vm]
        log = self.cluster.base / f"hooks-{vm}.log"
        env = ["env", f"KAFKA_BIN={self.cluster.bin_dir}",
               f"KAFKA_BOOTSTRAP={self.cluster.bootstrap}", f"KAFKA_BROKER_ID={b.node_id}",
               f"KAFKA_STATE_DIR={b.dir}", "KAFKA_POLL_S=1", f"QG_HOOK_LOG={log}"]
        tee = 'set -o pipefail; { "$@"; } 2>&1 | tee -a "$QG_HOOK_LOG"'
        drain = [*env, "KAFKA_WAIT_S=150", "bash", "-c", tee, "kafka-drain", str(DRAIN_HOOK)]
        restore = [*env, "KAFKA_WAIT_S=200", "bash", "-c", tee, "kafka-restore",
                   str(RESTORE_HOOK)]
        return {"drain_hook": {"command": drain, "timeout_s": 240},
                "restore_hook": {"command": restore, "timeout_s": 300}}

    def vm_down(self, vm: str) -> None:
        if vm in self.cluster.brokers:
            pid = self.cluster.kill_broker(vm)
            self.vm_events.append((time.time(), vm, "down"))
            self.say(f"  {vm} rebooting: killed its broker (pid {pid})")

    def vm_up(self, vm: str) -> None:
        if vm in self.cluster.brokers and self._ready.is_set() and self._failed is None:
            pid = self.cluster.start_broker(vm)
            self.vm_events.append((time.time(), vm, "up"))
            self.say(f"  {vm} back: broker started again (pid {pid})")

    def leads(self) -> dict[str, int]:
        """How many partitions each broker's VM leads now."""
        counts: Counter[str] = Counter()
        with contextlib.suppress(Exception):
            for leader in self.cluster.leaders().values():
                counts[self.cluster.vm_of_id(leader) or str(leader)] += 1
        return dict(counts)

    def report(self, settle_timeout_s: float = 90.0) -> dict[str, Any]:
        if self._report is not None:
            return self._report
        healthy = True
        try:
            self.cluster.wait_brokers(self.vm_names, settle_timeout_s)
            self.cluster.wait_full_isr(settle_timeout_s)
        except KafkaError:
            healthy = False
        figures: dict[str, Any] = {}
        if self.load:
            self.load.stop_producing()
            self.load.drain_consumer()
            figures = self.load.figures()
        if self.isr:
            self.isr.stop()
        isr = self.isr
        self._report = {
            **figures,
            "under_min_isr_s": round(isr.under_s, 1) if isr else None,
            "partition_under_min_isr_s": round(isr.partition_under_s, 1) if isr else None,
            "leaderless_s": round(isr.leaderless_s, 1) if isr else None,
            "isr_events": [[at, under] for at, under in (isr.events if isr else [])][:20],
            "leaders_at_end": self.leads(),
            "healthy_at_end": healthy,
            "racks": {b.vm: b.rack for b in self.cluster.brokers.values()},
            "reboots": {vm: self.cluster.daemons.daemons[vm].kills
                        for vm in self.vm_names if vm in self.cluster.daemons.daemons},
            "vm_events": [list(e) for e in self.vm_events],
            "hook_logs": hook_logs(self.cluster.base, self.vm_names),
        }
        return self._report

    def teardown(self) -> None:
        if self._starter is not None:
            self._starter.join(5)
        if self.load is not None:
            self.load.stop()
        if self.isr is not None:
            self.isr.stop()
        self.cluster.close()


def kafka_spec(strategy: str = "quorumgate", *, speed: float = 4.0,
               downtime_s: float = 60.0, timeout_s: float | None = None,
               coordinators: int = 2, say: Callable[[str], None] | None = None,
               **workload: Any) -> RolloutSpec:
    """The Kafka scenario: 3 FDs x 3 UDs, a broker on each of vm-0..vm-2 (one per UD
    and FD), their group from the brokers' ISR, a rollout of every UD. The clock runs at
    x4 (15 minutes of notice = 225 s real: the hooks start Kafka's JVM tools several
    times, up to 40 s each on a busy 2-core machine); a reboot keeps a VM down 60
    virtual seconds (15 s real)."""
    load = KafkaWorkload(("vm-0", "vm-1", "vm-2"), say=say, **workload)
    if timeout_s is None:
        timeout_s = 1500.0 if strategy == "never-ack" else 900.0
    return RolloutSpec(cluster={"vms": 3, "fds": 3, "uds": 3}, groups=[], speed=speed,
                       downtime_s=downtime_s, strategy=strategy, coordinators=coordinators,
                       workload=load, timeout_s=timeout_s, providers=[load.provider()],
                       checked_groups=[load.checked_group()], api=True,
                       policy=Policy(drain_timeout_s=DRAIN_TIMEOUT_S,
                                     restore_timeout_s=RESTORE_TIMEOUT_S))


def report_table(rows: dict[str, tuple[Any, dict[str, Any]]]) -> str:
    head = (f"{'strategy':<13} {'acked msgs':>10} {'lost acked':>10} {'duplicates':>10} "
            f"{'producer error s':>16} {'longest ack gap':>15} {'under min ISR':>13} "
            f"{'rollout':>9} {'violations':>10}")
    lines = [head, "-" * len(head)]
    for name, (summary, rep) in rows.items():
        gap = rep.get("longest_ack_gap_s")
        under = rep.get("under_min_isr_s")
        lines.append(
            f"{name:<13} {rep.get('acknowledged', 0):>10} {rep.get('lost_acknowledged', -1):>10} "
            f"{rep.get('duplicates', -1):>10} {rep.get('producer_error_s', -1):>16} "
            f"{(f'{gap:.1f} s' if gap is not None else '-'):>15} "
            f"{(f'{under:.1f} s' if under is not None else '-'):>13} "
            f"{summary.rollout_s / 60:>5.1f} min {len(summary.violations):>10}"
            + ("" if summary.completed else "  (incomplete)"))
    return "\n".join(lines)
