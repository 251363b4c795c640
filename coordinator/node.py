"""One coordinator replica: its ZooKeeper session, mirror and reconciler, started together."""

from __future__ import annotations

import logging

from coordinator.config import CoordinatorConfig
from coordinator.gates import GateRunner
from coordinator.metrics import CoordinatorMetrics
from coordinator.notify import Notifier
from coordinator.providers import ProviderRunner
from coordinator.reconciler import Reconciler
from coordinator.store import ClusterCache, put_record
from registry.clock import Clock, parse_clock
from registry.layout import Layout
from registry.records import Group
from registry.zk import make_client

log = logging.getLogger(__name__)


class CoordinatorNode:
    def __init__(self, config: CoordinatorConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or parse_clock(config.clock)
        self.layout = Layout(cluster=config.cluster, root=config.zk_root)
        self.client = make_client(config.zk_hosts, config.zk_session_timeout_s, config.zk_auth)
        self.metrics = CoordinatorMetrics()
        self.cache = ClusterCache(self.client, self.layout)
        self.notifier = Notifier(config.webhook_url) if config.webhook_url else None
        self.reconciler = Reconciler(
            self.client, self.layout, self.cache, self.clock, config.identity,
            metrics=self.metrics, gates=GateRunner(ttl_s=config.gate_ttl_s),
            notifier=self.notifier, resync_s=config.resync_s, audit_keep=config.audit_keep,
            retention_s=config.retention_s)
        self.providers = ProviderRunner(config.providers, self.client,
                                        lambda: self.cache.view().registrations,
                                        self._publish_groups)

    def start(self, timeout: float = 30.0) -> None:
        self.client.start(timeout=timeout)
        self.metrics.zk_connected.set(1)
        self.cache.start(timeout=timeout)
        self.reconciler.start()
        self.providers.start()
        log.info("coordinator %s started for cluster %s", self.config.identity,
                 self.config.cluster)

    def stop(self) -> None:
        self.providers.stop()
        self.reconciler.stop()
        self.cache.close()
        if self.notifier is not None:
            self.notifier.close()
        self.client.stop()
        self.client.close()

    def _publish_groups(self, groups: list[Group]) -> None:
        """Only the leader writes what providers found, and only what changed."""
        if not self.reconciler.is_leader:
            return
        current = self.cache.view().groups
        for group in groups:
            if current.get(group.name) != group:
                put_record(self.client, self.layout.group(group.name), group)

    @property
    def ready(self) -> bool:
        """Connected to ZooKeeper with a mirror; leader or follower."""
        return self.reconciler.connected and self.cache.ready
