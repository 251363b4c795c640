"""Replica groups that keep themselves current, from the systems that own the membership.

Static groups go stale the day a replica moves. A provider asks the system itself:

- `command`: runs a command that prints groups as JSON
  (`[{"name": "kafka-3", "members": ["vm-1", ...], "min_available": 2}, ...]`);
- `zookeeper`: reads the children of a znode where the system registers its members
  (a Patroni cluster's `/service/<scope>/members`, Kafka's `/brokers/ids`), mapping each
  member to a VM by name, by a JSON field of the member's data, or by the host in it;
- `hdfs`: asks a NameNode's HTTP API (`url`) for its DataNodes (JMX `NameNodeInfo`) and
  the replica locations of every block (the fsck servlet): **one group per distinct
  replica set**, `min_available` = the NameNode's
  `dfs.namenode.maintenance.replication.min` (read from its `/conf`; an int in the
  config overrides it). The core's rule then is HDFS's own: no block is left with fewer
  than that many replicas on live, in-service DataNodes;
- `kafka`: asks the brokers (`bootstrap`) for every partition's replicas and ISR and
  each topic's `min.insync.replicas`: **one group per distinct replica set**,
  `min_available` = the highest `min.insync.replicas` of its partitions, plus one for
  each replica that is out of the ISR while the group's members are all listed (a
  lagging follower cannot take over, so it must not count as available).

The leader polls its providers every `interval_s` and writes the groups they return to
`groups/<name>` (source `provider:<id>`), so every replica, the API and the dashboard
see them, and the next decision pass uses them.

A group's size is durable: a member whose (ephemeral) registration vanished is down, not
gone. The `zookeeper` provider keeps every member it has seen (the group record itself
is its durable memory) until `forget_after_s` passes or an operator rewrites the group;
a member whose host maps to no VM stays in the group under its host name, unknown and so
unavailable. Shrinking the list would lower the majority and let the core approve a
second member of a 4-node group with one already down.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from registry.records import Group, MinAvailable, Name
from registry.zookeeper import Client, exists, make_client, read_foreign
from registry.zookeeper import children as list_children

log = logging.getLogger(__name__)


class ProviderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Name
    kind: Literal["command", "zookeeper", "hdfs", "kafka"]
    interval_s: float = Field(default=10.0, gt=0)
    command: str | None = None
    """kind=command: a shell command printing a JSON list of groups."""
    path: str | None = None
    """kind=zookeeper: the znode whose children are the members."""
    hosts: str | None = None
    """kind=zookeeper: another ZooKeeper than quorumgate's own (default: the same)."""
    group: Name | None = None
    """kind=zookeeper: the group's name (default: the provider id)."""
    min_available: MinAvailable = "majority"
    member_to_vm: Literal["name", "host"] = "name"
    """How a member maps to a VM: its znode name is the VM name, or the host of a URL in
    its data (`conn_url`, `api_url`, `host`) is a VM's address."""
    timeout_s: float = Field(default=30.0, gt=0)
    forget_after_s: float | None = Field(default=None, gt=0)
    """kind=zookeeper, hdfs, kafka: drop a member not listed for this long (None: never;
    an operator removes decommissioned members). Keep it far above any maintenance's
    duration."""
    url: str | None = None
    """kind=hdfs: the NameNode's HTTP address, e.g. `http://nn1:9870`."""
    bootstrap: str | None = None
    """kind=kafka: bootstrap servers, `host:port[,host:port...]`."""
    member_map: dict[str, str] = {}
    """kind=hdfs, kafka: a DataNode's host (or host:port), a broker's host or node id ->
    VM name, for members that are neither named like their VM nor at its address."""


class ProviderError(RuntimeError):
    pass


def command_groups(config: ProviderConfig) -> list[Group]:
    assert config.command
    try:
        done = subprocess.run(config.command, shell=True, capture_output=True, text=True,
                              timeout=config.timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ProviderError(f"timed out after {config.timeout_s:g} s") from exc
    if done.returncode != 0:
        raise ProviderError(f"exit {done.returncode}: {done.stderr.strip()[-300:]}")
    try:
        items = json.loads(done.stdout)
        if not isinstance(items, list):
            raise ProviderError("expected a JSON list of groups")
        return [Group.model_validate({**item, "source": f"provider:{config.id}"})
                for item in items]
    except (json.JSONDecodeError, ValidationError, TypeError) as exc:
        raise ProviderError(f"bad output: {exc}") from exc


_HOST_KEYS = ("conn_url", "api_url", "host", "address", "endpoints")


def member_host(data: bytes) -> str | None:
    """The host a member registered (Patroni's conn_url, Kafka's host/endpoints...)."""
    try:
        record = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(record, dict):
        return None
    for key in _HOST_KEYS:
        value = record.get(key)
        if isinstance(value, list) and value:
            value = value[0]
        if isinstance(value, str) and value:
            parsed = urlparse(value if "://" in value else f"x://{value}")
            if parsed.hostname:
                return parsed.hostname
    return None


def zookeeper_groups(config: ProviderConfig, client: Client,
                     addresses: dict[str, str], previous: Group | None = None,
                     now: float = 0.0) -> list[Group]:
    """The group from the members registered under `config.path`, merged with the
    members `previous` (the group as stored) already had.

    `addresses`: every VM quorumgate knows, live or not, by address (from the durable
    `vm-state` as well as the live registrations): a member whose agent is down still
    maps to its VM.
    """
    assert config.path
    if not exists(client, config.path):
        raise ProviderError(f"{config.path} does not exist")
    children = sorted(list_children(client, config.path))
    listed: list[str] = []
    if config.member_to_vm == "name":
        listed = [c for c in children if _NAME.fullmatch(c)]
    else:
        by_address = {address: name for name, address in addresses.items() if address}
        for child in children:
            data = read_foreign(client, f"{config.path}/{child}")
            if data is None:
                continue
            host = member_host(data)
            if host in by_address:
                listed.append(by_address[host])
            elif host and _NAME.fullmatch(host):
                log.warning("provider %s: member %s (%s) matches no VM address; kept as "
                            "an unknown member (unavailable)", config.id, child, host)
                listed.append(host)
            else:
                log.warning("provider %s: member %s has no usable host; ignored",
                            config.id, child)
    members, seen = durable_members(previous, listed, now, config.forget_after_s,
                                    config.id)
    return [Group(name=config.group or config.id, members=members,
                  min_available=config.min_available, source=f"provider:{config.id}",
                  health_gate=previous.health_gate if previous else "", member_seen=seen)]


def durable_members(previous: Group | None, listed: list[str], now: float,
                    forget_after_s: float | None,
                    who: str = "provider") -> tuple[list[str], dict[str, float]]:
    """The group's members once `listed` (what the system registers now) is folded into
    what the group already had: nobody leaves because their session ended, only after
    `forget_after_s` without being listed (None: never). Pure."""
    seen = dict(previous.member_seen) if previous else {}
    if forget_after_s is not None:
        for member in listed:  # coarse, so an unchanged group is not rewritten each poll
            if now - seen.get(member, float("-inf")) > forget_after_s / 10:
                seen[member] = now
    members = list(dict.fromkeys([*(previous.members if previous else []), *listed]))
    if forget_after_s is not None:
        forgotten = [m for m in members if m not in listed
                     and now - seen.get(m, now) > forget_after_s]
        if forgotten:
            log.warning("%s: forgetting %s, not listed for over %g s", who,
                        ", ".join(forgotten), forget_after_s)
        members = [m for m in members if m not in forgotten]
    seen = {m: t for m, t in seen.items() if m in members and forget_after_s}
    vanished = [m for m in members if m not in listed]
    if vanished:
        log.debug("%s: %s not listed now; still members (unavailable)", who,
                  ", ".join(vanished))
    return members, seen


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")


# ---------------------------------------------------------------- hdfs and kafka


def member_vm(config: ProviderConfig, host: str, addresses: dict[str, str],
              key: str | None = None) -> str | None:
    """The VM of a DataNode or broker: `member_map` (by `key`, host:port or host), a VM
    at that address, or a VM of that name (or short name). None: unknown."""
    host = host.strip().lower().rstrip(".")
    for candidate in (key, host):
        if candidate and candidate in config.member_map:
            return config.member_map[candidate]
    bare = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if bare in config.member_map:
        return config.member_map[bare]
    by_address = {address: name for name, address in addresses.items() if address}
    if bare in by_address:
        return by_address[bare]
    names = {name.lower(): name for name in addresses}
    return names.get(bare) or names.get(bare.split(".")[0])


def replica_set_name(prefix: str, members: list[str]) -> str:
    """`<prefix>-<vm>_<vm>_...` (sorted), or a digest of it when that is no valid name."""
    name = f"{prefix}-{'_'.join(sorted(members))}"
    if _NAME.fullmatch(name):
        return name
    import hashlib

    return f"{prefix[:100]}-{hashlib.sha256(name.encode()).hexdigest()[:16]}"


def _replica_set_groups(config: ProviderConfig, sets: dict[frozenset[str], int],
                        stored: Callable[[str], Group | None], now: float) -> list[Group]:
    groups = []
    prefix = config.group or config.id
    for members, minimum in sorted(sets.items(), key=lambda item: sorted(item[0])):
        name = replica_set_name(prefix, list(members))
        previous = stored(name)
        kept, seen = durable_members(previous, sorted(members), now, config.forget_after_s,
                                     config.id)
        groups.append(Group(name=name, members=kept, min_available=min(minimum, len(kept)),
                            source=f"provider:{config.id}",
                            health_gate=previous.health_gate if previous else "",
                            member_seen=seen))
    return groups


def _member_name(config: ProviderConfig, host: str, addresses: dict[str, str],
                 key: str | None = None) -> str | None:
    """A member's VM, or its host name kept as an unknown (so unavailable) member."""
    vm = member_vm(config, host, addresses, key)
    if vm:
        return vm
    bare = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if _NAME.fullmatch(bare):
        log.warning("provider %s: %s matches no VM; kept as an unknown member (unavailable)",
                    config.id, host)
        return bare
    return None


_FSCK_BLOCK = re.compile(r"^\d+\. \S+:(blk_\d+)_\d+ len=(\d+)")
_FSCK_LOCATION = re.compile(r"DatanodeInfoWithStorage\[([0-9A-Za-z.\-]+:\d+)")
_FSCK_FILE = re.compile(r" bytes, replicated: replication=(\d+),")


def hdfs_groups(config: ProviderConfig, addresses: dict[str, str],
                stored: Callable[[str], Group | None], now: float) -> list[Group]:
    """One group per distinct replica set of the NameNode's blocks (see the module doc)."""
    import httpx

    assert config.url
    base = config.url.rstrip("/")
    with httpx.Client(timeout=config.timeout_s, trust_env=False) as http:
        try:
            beans = http.get(f"{base}/jmx", params={
                "qry": "Hadoop:service=NameNode,name=NameNodeInfo"}).json()["beans"]
            if not beans:
                raise ProviderError(f"NameNode {base} is starting (no NameNodeInfo yet)")
            info = beans[0]
            minimum = config.min_available
            if not isinstance(minimum, int):
                minimum = _hdfs_maintenance_min(http, base)
            fsck = http.get(f"{base}/fsck", params={
                "ugi": "hdfs", "path": "/", "files": "1", "blocks": "1", "locations": "1"})
        except (httpx.HTTPError, ValueError, KeyError, IndexError) as exc:
            raise ProviderError(f"NameNode {base}: {exc!r}") from exc
    if fsck.status_code != 200:
        raise ProviderError(f"NameNode {base} fsck: HTTP {fsck.status_code}")
    datanodes: dict[str, str] = {}  # xfer address -> member
    for key in ("LiveNodes", "DeadNodes", "DecomNodes", "EnteringMaintenanceNodes"):
        try:
            nodes = json.loads(info.get(key) or "{}")
        except (TypeError, ValueError):
            continue
        for node_name, node in nodes.items():
            xfer = str(node.get("xferaddr") or node_name) if isinstance(node, dict) else node_name
            member = _member_name(config, xfer, addresses, xfer)
            if member:
                datanodes[xfer] = member
    sets: dict[frozenset[str], int] = {}
    expected = 0
    for line in fsck.text.splitlines():
        if file_line := _FSCK_FILE.search(line):
            expected = int(file_line.group(1))
            continue
        if not _FSCK_BLOCK.match(line.strip()):
            continue
        if len(_FSCK_LOCATION.findall(line)) < expected:
            # Fewer locations than the file's replication: a block whose replicas are
            # still being reported (or one waiting for re-replication). Its set would be
            # a smaller group that never goes away; the block's full set, seen before or
            # soon, is the one that counts.
            continue
        members = set()
        for location in _FSCK_LOCATION.findall(line):
            member = datanodes.get(location) or _member_name(config, location, addresses,
                                                             location)
            if member:
                members.add(member)
        if members:
            sets[frozenset(members)] = int(minimum)
    return _replica_set_groups(config, sets, stored, now)


def _hdfs_maintenance_min(http: Any, base: str) -> int:
    """dfs.namenode.maintenance.replication.min as the NameNode runs it (default 1)."""
    try:  # the conf servlet answers XML: <property><name>..</name><value>2</value>...
        response = http.get(f"{base}/conf",
                            params={"name": "dfs.namenode.maintenance.replication.min"})
        match = re.search(r"<name>dfs\.namenode\.maintenance\.replication\.min</name>"
                          r"\s*<value>\s*(\d+)\s*</value>", response.text)
        if match:
            return int(match.group(1))
    except Exception as exc:  # an HTTP error: the default, the next poll asks again
        log.debug("NameNode %s /conf: %r; assuming 1", base, exc)
    return 1


def kafka_groups(config: ProviderConfig, addresses: dict[str, str],
                 stored: Callable[[str], Group | None], now: float) -> list[Group]:
    """One group per distinct replica set of the cluster's partitions (module doc)."""
    try:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient
        from confluent_kafka.admin._config import ConfigResource
    except ImportError as exc:
        raise ProviderError(f"kind=kafka needs confluent-kafka: {exc}") from exc
    assert config.bootstrap
    admin = AdminClient({"bootstrap.servers": config.bootstrap,
                         "socket.timeout.ms": int(config.timeout_s * 1000),
                         "log_level": 0})  # a broker down is reported as ProviderError
    try:
        metadata = admin.list_topics(timeout=config.timeout_s)
        topics = sorted(metadata.topics)
        min_isr: dict[str, int] = {}
        if topics:
            futures = admin.describe_configs(
                [ConfigResource(ConfigResource.Type.TOPIC, t) for t in topics],
                request_timeout=config.timeout_s)
            for resource, future in futures.items():
                entry = future.result(timeout=config.timeout_s).get("min.insync.replicas")
                min_isr[resource.name] = int(entry.value) if entry is not None else 1
    except KafkaException as exc:
        raise ProviderError(f"Kafka {config.bootstrap}: {exc}") from exc
    known = _KAFKA_BROKERS.setdefault(config.id, {})
    for broker_id, broker in metadata.brokers.items():
        member = _member_name(config, f"{broker.host}:{broker.port}", addresses,
                              str(broker_id))
        if member:
            known[broker_id] = member
    sets: dict[frozenset[str], int] = {}
    for topic in topics:
        described = metadata.topics[topic]
        if described.error is not None:
            continue
        for partition in described.partitions.values():
            # A broker that is down is not in the metadata: its VM from an earlier poll
            # or member_map; unknown (this coordinator never saw it up): leave the
            # partition out this time (its group as stored stays as it is).
            members = {known.get(r) or config.member_map.get(str(r)) for r in partition.replicas}
            if not partition.replicas or None in members:
                continue
            # Out of the ISR while up (listed): lagging, it cannot take over.
            lagging = len([r for r in partition.replicas
                           if r not in partition.isrs and r in metadata.brokers])
            need = min(len(members), min_isr.get(topic, 1) + lagging)
            key = frozenset(m for m in members if m)
            sets[key] = max(sets.get(key, 0), need)
    return _replica_set_groups(config, sets, stored, now)


_KAFKA_BROKERS: dict[str, dict[int, str]] = {}
"""provider id -> broker id -> member, every broker this process has seen up."""


class ProviderRunner:
    """Polls each provider on its own schedule in one thread; hands groups to `publish`."""

    def __init__(self, configs: list[ProviderConfig], client: Client,
                 addresses: Callable[[], dict[str, str]],
                 stored: Callable[[str], Group | None],
                 publish: Callable[[list[Group]], None],
                 now: Callable[[], float] = time.time) -> None:
        self.configs = configs
        self.client = client
        self.addresses = addresses
        self.stored = stored
        self.publish = publish
        self.now = now
        self.errors: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="group-providers", daemon=True)
        self._due = {c.id: 0.0 for c in configs}
        self._clients: dict[str, Client] = {}

    def start(self) -> None:
        if self.configs:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        for client in self._clients.values():
            client.stop()
            client.close()

    def poll(self, config: ProviderConfig) -> list[Group]:
        if config.kind == "command":
            return command_groups(config)
        if config.kind == "hdfs":
            return hdfs_groups(config, self.addresses(), self.stored, self.now())
        if config.kind == "kafka":
            return kafka_groups(config, self.addresses(), self.stored, self.now())
        client = self.client
        if config.hosts:
            if config.id not in self._clients:
                other = make_client(config.hosts)
                other.start(timeout=config.timeout_s)
                self._clients[config.id] = other
            client = self._clients[config.id]
        return zookeeper_groups(config, client, self.addresses(),
                                self.stored(config.group or config.id), self.now())

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            now = time.monotonic()
            for config in self.configs:
                if now < self._due[config.id]:
                    continue
                self._due[config.id] = now + config.interval_s
                try:
                    self.publish(self.poll(config))
                    self.errors.pop(config.id, None)
                except Exception as exc:  # a broken provider never stops the others
                    self.errors[config.id] = str(exc)
                    log.warning("group provider %s failed: %s", config.id, exc)
