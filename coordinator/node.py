"""One coordinator replica: its ZooKeeper session, mirror and reconciler, started together.

Misconfiguration is loud: before the replica campaigns for leadership it checks that the
ACLs of the cluster's znodes let its credentials (`zk_auth`) write. When they do not —
a wrong or missing `zk_auth` — it does not campaign (every attempt would fail with
NoAuth), logs one clear error line, and `/readyz` answers 503 with the reason in
`problem` until the ACLs or the credentials are fixed (checked again every
`ACCESS_CHECK_S`; the replica then campaigns without a restart).
"""

from __future__ import annotations

import logging
import threading

from coordinator.config import CoordinatorConfig
from coordinator.gates import GateRunner
from coordinator.metrics import CoordinatorMetrics
from coordinator.notify import Notifier
from coordinator.providers import ProviderRunner
from coordinator.reconciler import Reconciler
from coordinator.store import ClusterCache, WriteResult, put_fenced
from registry.clock import Clock, parse_clock
from registry.layout import Layout
from registry.records import Group
from registry.zookeeper import (
    KazooException,
    KazooTimeoutError,
    NoAuthError,
    acl_problem,
    make_client,
    read_acls,
)

log = logging.getLogger(__name__)

ACCESS_CHECK_S = 15.0
"""How often (real seconds) a replica checks again that ZooKeeper lets it write."""

class PermanentZooKeeperError(RuntimeError):
    """ZooKeeper refuses this replica for a reason retrying will not cure (credentials)."""


class CoordinatorNode:
    def __init__(self, config: CoordinatorConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or parse_clock(config.clock)
        self.layout = Layout(cluster=config.cluster, root=config.zk_root)
        self.client = make_client(config.zk_hosts, config.zk_session_timeout_s, config.zk_auth)
        self.metrics = CoordinatorMetrics()
        self.metrics.started_at = self.clock.now()
        self.cache = ClusterCache(self.client, self.layout)
        self.notifier = Notifier(config.webhook_url) if config.webhook_url else None
        self.reconciler = Reconciler(
            self.client, self.layout, self.cache, self.clock, config.identity,
            metrics=self.metrics, gates=GateRunner(ttl_s=config.gate_ttl_s),
            notifier=self.notifier, resync_s=config.resync_s, audit_keep=config.audit_keep,
            retention_s=config.retention_s)
        self.providers = ProviderRunner(config.providers, self.client, self._addresses,
                                        lambda name: self.cache.view().groups.get(name),
                                        self._publish_groups, now=self.clock.now)
        self.access_problem: str | None = None
        """Set while ZooKeeper's ACLs refuse this replica's writes (see the module doc)."""
        self._campaigning = False
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._checker: threading.Thread | None = None

    def start(self, timeout: float = 30.0) -> None:
        self.client.start(timeout=timeout)
        self.metrics.zk_connected.set(1)
        try:
            self.cache.start(timeout=timeout)
        except NoAuthError as exc:  # the cluster's folders exist under someone else's ACL
            raise PermanentZooKeeperError(
                f"ZooKeeper refused to create the cluster's folders under {self.layout.base} "
                "(NoAuth): zk_auth (QG_ZK_AUTH) must be the cluster's user:password") from exc
        self.check_access()
        if self.access_problem is None:
            self._campaign()
        self.providers.start()
        self._checker = threading.Thread(target=self._check_loop, daemon=True,
                                         name=f"access-{self.config.identity}")
        self._checker.start()
        log.info("coordinator %s started for cluster %s", self.config.identity,
                 self.config.cluster)

    def stop(self) -> None:
        self._stopping.set()
        self.providers.stop()
        self.reconciler.stop()
        self.cache.close()
        if self.notifier is not None:
            self.notifier.close()
        self.client.stop()
        self.client.close()
        if self._checker is not None:
            self._checker.join(5)

    # ------------------------------------------------------------ access

    def access_paths(self) -> list[str]:
        return [self.layout.base, *self.layout.folders()]

    def check_access(self) -> str | None:
        """Read the ACLs of the cluster's folders and judge them against our credentials;
        log one line when the verdict changes. Returns the problem (None: fine). Leaves
        the last verdict when ZooKeeper cannot be asked (disconnected)."""
        try:
            problem = None
            for path, acls in read_acls(self.client, self.access_paths()).items():
                problem = problem or acl_problem(path, acls, self.config.zk_auth)
        except (KazooException, KazooTimeoutError) as exc:
            log.debug("access check skipped: %r", exc)
            return self.access_problem
        with self._lock:
            before, self.access_problem = self.access_problem, problem
        if problem and problem != before:
            log.error("not ready: %s", problem)
        elif before and not problem:
            log.info("ZooKeeper now accepts this coordinator's writes: ready")
        return problem

    def _campaign(self) -> None:
        with self._lock:
            if self._campaigning or self._stopping.is_set():
                return
            self._campaigning = True
        self.reconciler.start()

    def _check_loop(self) -> None:
        while not self._stopping.wait(ACCESS_CHECK_S):
            if not self.reconciler.connected:
                continue
            if self.check_access() is None:
                self._campaign()

    @property
    def problem(self) -> str | None:
        """A configuration problem that makes this replica unready (None: none)."""
        fatal = getattr(self.reconciler, "fatal", None)  # the reconciler's own verdict
        return self.access_problem or (str(fatal) if fatal else None)

    def _addresses(self) -> dict[str, str]:
        """Every VM we know by address, live or not (a member whose agent is down still
        maps to its VM): the last known state, overridden by a live registration."""
        view = self.cache.view()
        out = {name: state.address for name, state in view.vm_states.items()}
        out.update({name: reg.address for name, reg in view.registrations.items()})
        return out

    def _publish_groups(self, groups: list[Group]) -> None:
        """Only the leader writes what providers found, only what changed, and fenced
        like its decisions: a deposed leader's write fails on its election znode."""
        fence = self.reconciler.fence
        if fence is None or not self.reconciler.connected:
            return
        view = self.cache.view()
        versions = view.versions("groups")
        for group in groups:
            if view.groups.get(group.name) == group:
                continue
            result = put_fenced(self.client, fence, self.layout.group(group.name), group,
                                versions.get(group.name))
            if result is not WriteResult.WRITTEN:
                log.info("group %s from a provider not written (%s); next poll retries",
                         group.name, result.value)

    @property
    def ready(self) -> bool:
        """Connected to ZooKeeper with a mirror, and allowed to write; leader or follower."""
        return self.reconciler.connected and self.cache.ready and self.problem is None
