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
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import threading
from collections.abc import Callable
from typing import Literal
from urllib.parse import urlparse

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from registry.records import Group, MinAvailable, Name, VMRegistration

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
                     vms: dict[str, VMRegistration]) -> list[Group]:
    assert config.path
    try:
        children = sorted(client.get_children(config.path))
    except NoNodeError as exc:
        raise ProviderError(f"{config.path} does not exist") from exc
    members: list[str] = []
    if config.member_to_vm == "name":
        members = [c for c in children if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", c)]
    else:
        by_address = {vm.address: name for name, vm in vms.items() if vm.address}
        for child in children:
            try:
                data, _ = client.get(f"{config.path}/{child}")
            except NoNodeError:
                continue
            host = member_host(data)
            if host in by_address:
                members.append(by_address[host])
            else:
                log.info("provider %s: member %s (%s) matches no VM address", config.id,
                         child, host)
    return [Group(name=config.group or config.id, members=members,
                  min_available=config.min_available, source=f"provider:{config.id}")]


class ProviderRunner:
    """Polls each provider on its own schedule in one thread; hands groups to `publish`."""

    def __init__(self, configs: list[ProviderConfig], client: KazooClient,
                 vms: Callable[[], dict[str, VMRegistration]],
                 publish: Callable[[list[Group]], None]) -> None:
        self.configs = configs
        self.client = client
        self.vms = vms
        self.publish = publish
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
        return zookeeper_groups(config, client, self.vms())

    def _run(self) -> None:
        import time

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
