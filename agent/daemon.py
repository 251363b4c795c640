"""The agent: one loop that registers, relays events, answers drains and acknowledges.

Everything runs from one polling loop in its own thread, except answering drain
requests: the drain worker has a thread of its own, so a drain never waits behind an IMDS
request. kazoo callbacks only set flags and wake a thread (they must never block kazoo's
thread), and hooks run in a worker thread. Every step is bounded and every failure is
logged and retried on the next tick, so the loop itself never dies. No global state:
many `Agent`s can share a process.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from agent.ack import Acknowledger
from agent.config import AgentConfig
from agent.drain import DrainWorker
from agent.imds import UNREACHABLE, ImdsClient, ImdsError
from agent.metrics import AgentMetrics, HealthServer
from agent.registration import Registrar
from agent.relay import EventRelay
from registry.clock import Clock, parse_clock
from registry.layout import Layout
from registry.records import VMRegistration
from registry.zookeeper import PERMANENT, Client, KazooState, make_client

log = logging.getLogger(__name__)

MIN_TICK_S = 0.05
"""Real-time floor between ticks: a fast virtual clock must not turn the loop into a spin."""


class Agent:
    """One VM's agent. `start()` returns at once; `stop()` closes the ZooKeeper session so
    the coordinator sees the VM go immediately."""

    def __init__(self, config: AgentConfig, clock: Clock | None = None, *,
                 imds_transport: Any = None) -> None:
        self.config = config
        self.clock = clock or parse_clock(config.clock)
        self.layout = Layout(cluster=config.cluster, root=config.zk_root)
        self.metrics = AgentMetrics()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._needs_registration = threading.Event()
        self._needs_registration.set()
        self.imds = ImdsClient(
            config.imds_url,
            instance_api_version=config.instance_api_version,
            events_api_version=config.events_api_version,
            timeout_s=config.imds_timeout_s,
            first_call_timeout_s=config.imds_first_call_timeout_s,
            max_attempts=config.imds_max_attempts,
            deadline_s=config.imds_deadline_s,
            rate_per_s=config.imds_rate_per_s,
            burst=config.imds_burst,
            transport=imds_transport,
            stop=self._stop,
            on_error=lambda code: self.metrics.imds_errors.labels(code=code).inc(),
        )
        self.zk: Client = make_client(config.zk_hosts, config.zk_session_timeout_s,
                                           config.zk_auth)
        self.zk.add_listener(self._on_zk_state)
        self.registration: VMRegistration | None = None
        self.vm_name: str | None = config.vm_name
        self.relay: EventRelay | None = None
        self.drain: DrainWorker | None = None
        self.acker: Acknowledger | None = None
        self._registrar: Registrar | None = None
        self._health: HealthServer | None = None
        self._thread: threading.Thread | None = None
        self._imds_ok = True
        self._unreachable_polls = 0
        self._offline_after = config.offline_after_failures or float("inf")
        self._offline = False
        self._started = False
        self._stopped = False
        self.problem: str | None = None
        """A permanent ZooKeeper refusal (credentials, ACLs): said once, shown in health."""

    # ------------------------------------------------------------ life cycle

    def start(self) -> None:
        if self._started:
            raise RuntimeError("agent already started")
        self._started = True
        if self.config.health_port:
            self._health = HealthServer(self.config.health_host, self.config.health_port,
                                        self.metrics, self.health)
            self._health.start()
        self.zk.start_async()
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name=f"agent-{self.vm_name or self.config.imds_url}")
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the agent to stop (safe from a signal handler or any thread)."""
        self._stop.set()
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop, close the ZooKeeper session (ephemeral node goes at once)."""
        self.request_stop()
        if self._stopped:
            return
        self._stopped = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("agent loop still busy after %.1fs; closing anyway", timeout)
        if self.drain is not None:
            self.drain.close()
            self.drain.join(min(1.0, timeout))
        try:
            self.zk.stop()
            self.zk.close()
        except Exception as exc:  # closing must not raise out of a shutdown path
            log.debug("closing ZooKeeper client: %s", exc)
        self.imds.close()
        if self._health is not None:
            self._health.stop()
        self.metrics.registered.set(0)
        self.registration = None

    def run_forever(self) -> None:
        """start(), block until request_stop() (e.g. SIGTERM), then stop()."""
        if not self._started:
            self.start()
        try:
            while not self._stop.wait(0.5):
                pass
        finally:
            self.stop()

    def wait_registered(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.registration is not None and not self._needs_registration.is_set():
                return True
            time.sleep(0.02)
        return False

    @property
    def health_port(self) -> int | None:
        return self._health.port if self._health else None

    def health(self) -> dict[str, Any]:
        registered = self.registration is not None and not self._needs_registration.is_set()
        connected = self.zk.connected
        out: dict[str, Any] = {"ok": bool(registered and connected and not self.problem),
                               "vm": self.vm_name, "zookeeper": connected,
                               "registered": registered, "imds": self._imds_ok}
        if self.problem:
            out["problem"] = self.problem
        return out

    # ------------------------------------------------------------ loop

    def _on_zk_state(self, state: str) -> None:
        # kazoo's thread: set flags only, the loop does the work.
        if state == KazooState.LOST:
            self._needs_registration.set()
            self.metrics.registered.set(0)
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self._wake.clear()
            try:
                self._tick()
                if self.problem is not None and self.registration is not None:
                    log.info("agent %s: ZooKeeper accepts this agent again", self.vm_name)
                    self.problem = None
            except PERMANENT as exc:
                reason = (f"ZooKeeper refuses this agent ({type(exc).__name__}): zk_auth "
                          "(QG_ZK_AUTH) must be the cluster's user:password, and the "
                          "cluster's ACLs must let it write")
                if reason != self.problem:
                    log.error("agent %s: %s", self.vm_name, reason)
                else:
                    log.debug("agent %s: %s (again)", self.vm_name, reason)
                self.problem = reason
            except Exception as exc:
                log.warning("agent %s: tick failed (%s: %s); continuing", self.vm_name,
                            type(exc).__name__, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            interval = max(MIN_TICK_S, self.clock.real_seconds(self.config.poll_interval_s))
            remaining = interval - (time.monotonic() - started)
            if remaining > 0:
                self._wake.wait(remaining)
            elif self._stop.wait(MIN_TICK_S):
                break

    def _tick(self) -> None:
        if self._offline:
            self._probe_back()
            return
        if not self.zk.connected:
            return
        if self._needs_registration.is_set() and not self._register():
            return
        assert self.relay is not None and self.drain is not None and self.acker is not None
        self.drain.check()  # before the (rate-limited) IMDS poll: a drain never waits on it
        doc = None
        fetched_at = self.clock.now()
        try:
            doc = self.imds.scheduled_events()
        except ImdsError as exc:
            self._imds_failed(exc)
            if self._unreachable_polls and self._unreachable_polls >= self._offline_after:
                self._go_offline()
                return
        else:
            if self._unreachable_polls:
                # IMDS was unreachable (the VM may have rebooted): register afresh.
                self._needs_registration.set()
            self._imds_recovered()
            self.metrics.polls.inc()
            self.metrics.events.set(len(doc.events))
        if doc is not None and self.imds.events_fresh:
            # a stale copy (the last good document after a malformed one) says nothing new
            self.relay.publish(doc, fetched_at=fetched_at)
        if doc is not None:
            self.acker.watch(doc)
        if doc is not None and self.imds.events_fresh and not self._stop.is_set():
            self.acker.check(doc)

    def _go_offline(self) -> None:
        """IMDS unreachable for a while: count the VM as down, as a reboot would."""
        log.warning("agent %s: IMDS unreachable for %d polls; VM considered down, "
                    "closing the ZooKeeper session until it answers again",
                    self.vm_name, self._unreachable_polls)
        self._offline = True
        self.registration = None
        self._needs_registration.set()
        self.metrics.registered.set(0)
        try:
            self.zk.stop()
        except Exception as exc:
            log.debug("stopping ZooKeeper client: %s", exc)

    def _probe_back(self) -> None:
        try:
            self.imds.instance()
        except ImdsError as exc:
            self._imds_failed(exc)
            return
        log.info("agent %s: IMDS answers again; reconnecting to ZooKeeper", self.vm_name)
        self._offline = False
        self._imds_recovered()
        self._needs_registration.set()
        self.zk.start_async()

    def _register(self) -> bool:
        try:
            meta = self.imds.instance()
        except ImdsError as exc:
            self._imds_failed(exc)
            return False
        self._imds_recovered()
        name = self.vm_name or meta.name
        if self._registrar is None:
            self._build_parts(name)
        assert self._registrar is not None and self.relay is not None and self.drain is not None
        self.registration = self._registrar.register(meta)
        self._needs_registration.clear()
        self.metrics.registered.set(1)
        self.relay.rescan()
        self.drain.watch()
        return True

    def _build_parts(self, name: str) -> None:
        self.vm_name = name
        agent_url = (f"http://{self.config.health_host}:{self._health.port}"
                     if self._health is not None else "")
        self._registrar = Registrar(self.zk, self.layout, self.clock, vm_name=name,
                                    groups=list(self.config.groups),
                                    min_available=self.config.min_available,
                                    agent_url=agent_url)
        self.relay = EventRelay(self.zk, self.layout, name, self.clock)
        self.drain = DrainWorker(
            self.zk, self.layout, name, self.clock,
            drain_hook=self.config.drain_hook, restore_hook=self.config.restore_hook,
            on_result=lambda action, result: self.metrics.hooks.labels(
                action=action, result=result).inc(),
            ready=lambda: not (self._offline or self._needs_registration.is_set()))
        self.acker = Acknowledger(
            self.zk, self.layout, name, self.imds, self.clock, retries=self.config.ack_retries,
            on_ack=lambda result: self.metrics.acks.labels(result=result).inc(),
            wake=self._wake.set)

    def _imds_failed(self, exc: ImdsError) -> None:
        if exc.code == "stopping":
            return
        if self._imds_ok:
            log.warning("agent %s: IMDS unavailable: %s", self.vm_name or "?", exc)
        self._imds_ok = False
        if exc.code in UNREACHABLE:
            self._unreachable_polls += 1

    def _imds_recovered(self) -> None:
        if not self._imds_ok:
            log.info("agent %s: IMDS answers again", self.vm_name or "?")
        self._imds_ok = True
        self._unreachable_polls = 0
