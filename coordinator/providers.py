"""Replica groups that keep themselves current, from the systems that own the membership.

Static groups go stale the day a replica moves. A provider asks the system itself:

- `command`: runs a command that prints groups as JSON
  (`[{"name": "kafka-3", "members": ["vm-1", ...], "min_available": 2}, ...]`);
- `zookeeper`: reads the children of a znode where the system registers its members
  (a Patroni cluster's `/service/<scope>/members`, Kafka's `/brokers/ids`), mapping each
  member to a VM by name, by a JSON field of the member's data, or by the host in it.

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
from typing import Literal
from urllib.parse import urlparse

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from registry.records import Group, MinAvailable, Name

log = logging.getLogger(__name__)


class ProviderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Name
    kind: Literal["command", "zookeeper"]
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
    """kind=zookeeper: drop a member not listed for this long (None: never; an operator
    removes decommissioned members). Keep it far above any maintenance's duration."""


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


def zookeeper_groups(config: ProviderConfig, client: KazooClient,
                     addresses: dict[str, str], previous: Group | None = None,
                     now: float = 0.0) -> list[Group]:
    """The group from the members registered under `config.path`, merged with the
    members `previous` (the group as stored) already had.

    `addresses`: every VM quorumgate knows, live or not, by address (from the durable
    `vm-state` as well as the live registrations): a member whose agent is down still
    maps to its VM.
    """
    assert config.path
    try:
        children = sorted(client.get_children(config.path))
    except NoNodeError as exc:
        raise ProviderError(f"{config.path} does not exist") from exc
    listed: list[str] = []
    if config.member_to_vm == "name":
        listed = [c for c in children if _NAME.fullmatch(c)]
    else:
        by_address = {address: name for name, address in addresses.items() if address}
        for child in children:
            try:
                data, _ = client.get(f"{config.path}/{child}")
            except NoNodeError:
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


class ProviderRunner:
    """Polls each provider on its own schedule in one thread; hands groups to `publish`."""

    def __init__(self, configs: list[ProviderConfig], client: KazooClient,
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
        self._clients: dict[str, KazooClient] = {}

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
        client = self.client
        if config.hosts:
            if config.id not in self._clients:
                from registry.zk import make_client
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
