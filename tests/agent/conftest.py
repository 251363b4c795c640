"""Agent test fixtures: a real IMDS emulator over HTTP, agents wired to it and to ZooKeeper.

Time runs fast (a shared VirtualClock at SPEED x), so minutes of notice or downtime pass
in a second; IMDS rate limiting stays in real time, as on Azure.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest
from kazoo.client import KazooClient
from pydantic import BaseModel

from agent.config import AgentConfig, build
from agent.daemon import Agent
from imds_sim.testing import Emulator, running_emulator
from registry.clock import VirtualClock
from registry.codec import decode
from registry.layout import Layout

R = TypeVar("R", bound=BaseModel)

SPEED = 60.0
"""Virtual seconds per real second."""

CLUSTER = {"vms": 6, "fds": 2, "uds": 3}
"""vm-0..vm-5 in availability set as-1; UD u holds vm-u and vm-(u+3)."""


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with running_emulator(clock=VirtualClock.starting_now(speed=SPEED), cluster=CLUSTER) as emu:
        yield emu


AgentFactory = Callable[..., Agent]


@pytest.fixture
def agent_config(zk_hosts: str, zk_layout: Layout,
                 emulator: Emulator) -> Callable[..., AgentConfig]:
    """Config for the agent of VM `name`: this test's cluster, the emulator's clock."""

    def make(name: str, **extra: Any) -> AgentConfig:
        data: dict[str, Any] = {
            "cluster": zk_layout.cluster, "zk_hosts": zk_hosts,
            "imds_url": emulator.vm_url(name), "clock": emulator.clock.spec,
            "poll_interval_s": 0.2 * SPEED, "zk_session_timeout_s": 4.0,
            "imds_timeout_s": 2.0, "imds_first_call_timeout_s": 10.0,
        }
        data.update(extra)
        return build(data)

    return make


@pytest.fixture
def make_agent(agent_config: Callable[..., AgentConfig],
               emulator: Emulator) -> Iterator[AgentFactory]:
    """Start an agent for a VM; every agent is stopped at teardown."""
    agents: list[Agent] = []

    def start(name: str, *, wait: bool = True, transport: Any = None, **extra: Any) -> Agent:
        agent = Agent(agent_config(name, **extra), emulator.clock, imds_transport=transport)
        agents.append(agent)
        agent.start()
        if wait:
            assert agent.wait_registered(15), f"agent {name} did not register"
        return agent

    yield start
    for agent in agents:
        agent.stop(timeout=5)


def record(zk: KazooClient, path: str, kind: type[R]) -> R | None:
    """The record at `path`, or None when absent."""
    stat = zk.exists(path)
    if stat is None:
        return None
    return decode(kind, zk.get(path)[0], path)


class CountingTransport(httpx.BaseTransport):
    """Real HTTP, with a count of requests per (method, path) and their status codes."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.requests: Counter[tuple[str, str]] = Counter()
        self.statuses: list[int] = []
        self.times: list[float] = []
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests[(request.method, request.url.path.rsplit("/metadata", 1)[-1])] += 1
            self.times.append(time.monotonic())
        response = self.inner.handle_request(request)
        with self._lock:
            self.statuses.append(response.status_code)
        return response

    def count(self, method: str = "GET", path: str = "/scheduledevents") -> int:
        with self._lock:
            return self.requests[(method, path)]

    def close(self) -> None:
        self.inner.close()
