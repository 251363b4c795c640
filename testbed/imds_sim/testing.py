"""Run the emulator inside a test: `with running_emulator() as emu: ...`.

    from imds_sim.testing import running_emulator
    from registry.clock import VirtualClock

    with running_emulator(clock=VirtualClock.starting_now(speed=600),
                          cluster={"fds": 3, "uds": 5, "vms": 15}) as emu:
        httpx.get(emu.vm_url("vm-3") + "/metadata/instance?api-version=2021-02-01",
                  headers={"Metadata": "true"})
        event = emu.schedule(ud=3, type="Reboot", duration_s=30)
        emu.control.get("/events").json()

The server runs in a daemon thread on a free 127.0.0.1 port (or `port`); leaving the
block stops it. `emu.sim` is the live simulation (take `emu.sim.lock` when reading
several things at once); `emu.clock` is the clock every component should share.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from imds_sim.app import build_app
from imds_sim.model import Simulation
from imds_sim.schemas import ClusterSpec
from imds_sim.server import bind, make_server
from registry.clock import Clock, RealClock


@dataclass
class Emulator:
    url: str
    """Base URL, e.g. `http://127.0.0.1:41234`; `url + "/metadata/..."` is the default VM."""
    host: str
    port: int
    sim: Simulation
    clock: Clock
    control: httpx.Client
    """httpx client with base URL `url + "/control"`: `emu.control.get("/vms")`."""
    app: FastAPI
    server: uvicorn.Server

    @property
    def hostport(self) -> str:
        """`127.0.0.1:PORT`: what replaces `169.254.169.254` in a client's URL."""
        return f"{self.host}:{self.port}"

    def vm_url(self, name: str) -> str:
        """Base URL of one VM's IMDS: append `/metadata/...`."""
        return f"{self.url}/vms/{name}"

    def reset(self, cluster: ClusterSpec | dict[str, Any] | None = None) -> None:
        """Start over with a fresh cluster (default spec when None): events, faults,
        history, throttle and incarnations are reset; the clock keeps running."""
        spec = cluster.model_dump() if isinstance(cluster, ClusterSpec) else (cluster or {})
        self.control.put("/cluster", json=spec).raise_for_status()

    def schedule(self, **body: Any) -> dict[str, Any]:
        """POST /control/events; returns the event (raises on 4xx)."""
        response = self.control.post("/events", json=body)
        response.raise_for_status()
        return response.json()

    def reshape(self, event_id: str, vms: list[str], allow_multi_ud: bool = False
                ) -> dict[str, Any]:
        """PATCH /control/events/{id}: the platform changes a Scheduled event's Resources."""
        response = self.control.patch(f"/events/{event_id}",
                                      json={"vms": vms, "allow_multi_ud": allow_multi_ud})
        response.raise_for_status()
        return response.json()

    def impact(self, event_id: str, downtime_s: float, delay_s: float = 0.0
               ) -> dict[str, Any]:
        """POST /control/events/{id}/impact: a Started event's VMs go down again."""
        response = self.control.post(f"/events/{event_id}/impact",
                                     json={"downtime_s": downtime_s, "delay_s": delay_s})
        response.raise_for_status()
        return response.json()

    def walk(self, **body: Any) -> dict[str, Any]:
        """POST /control/walks: the platform walks the maintenance domains; returns the walk."""
        response = self.control.post("/walks", json=body)
        response.raise_for_status()
        return response.json()

    def get_walk(self, walk_id: str) -> dict[str, Any]:
        response = self.control.get(f"/walks/{walk_id}")
        response.raise_for_status()
        return response.json()

    def fault(self, **body: Any) -> dict[str, Any]:
        """POST /control/faults; returns the fault (raises on 4xx)."""
        response = self.control.post("/faults", json=body)
        response.raise_for_status()
        return response.json()

    def clear_faults(self) -> None:
        self.control.delete("/faults").raise_for_status()

    def event(self, event_id: str) -> dict[str, Any]:
        response = self.control.get(f"/events/{event_id}")
        response.raise_for_status()
        return response.json()

    def vm(self, name: str) -> dict[str, Any]:
        response = self.control.get(f"/vms/{name}")
        response.raise_for_status()
        return response.json()


@contextmanager
def running_emulator(
    clock: Clock | None = None,
    cluster: ClusterSpec | dict[str, Any] | None = None,
    port: int = 0,
    *,
    host: str = "127.0.0.1",
    log_level: str = "warning",
    startup_timeout_s: float = 10.0,
) -> Iterator[Emulator]:
    """Serve a fresh simulation of `cluster` (default: 15 VMs, 3 FDs x 5 UDs, `as-1`)."""
    clock = clock or RealClock()
    spec = ClusterSpec.model_validate(cluster) if isinstance(cluster, dict) else cluster
    sim = Simulation.from_spec(spec, clock.now())
    app = build_app(sim, clock)
    sock = bind(host, port)
    server = make_server(app, log_level=log_level, access_log=False)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="imds-sim", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError("imds_sim: emulator did not start")
        time.sleep(0.01)
    bound_port = sock.getsockname()[1]
    url = f"http://{host}:{bound_port}"
    control = httpx.Client(base_url=url + "/control", timeout=10.0, trust_env=False)
    try:
        yield Emulator(url, host, bound_port, sim, clock, control, app, server)
    finally:
        control.close()
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
