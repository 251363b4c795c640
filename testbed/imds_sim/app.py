"""The emulator's web app: IMDS paths, the control API and the life-cycle ticker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from imds_sim.control import build_control_router
from imds_sim.imds import ImdsHandler, ImdsMiddleware
from imds_sim.model import Simulation
from imds_sim.state import EmulatorState
from registry.clock import Clock

log = logging.getLogger(__name__)

TICK_INTERVAL_S = 0.02
"""Real seconds between background ticks: NotBefore starts and recoveries happen even
when nobody polls, at most this late. Requests tick on their own, so answers never lag."""


async def _ticker(state: EmulatorState, interval_s: float) -> None:
    while True:
        try:
            state.sim.tick(state.now())
        except Exception:  # keep ticking: one bad transition must not freeze the platform
            log.exception("imds_sim: tick failed")
        await asyncio.sleep(interval_s)


def build_app(
    sim: Simulation, clock: Clock, *, tick_interval_s: float = TICK_INTERVAL_S
) -> FastAPI:
    """An ASGI app serving `sim` on `clock`. `app.state.emulator` holds the shared state."""
    state = EmulatorState(sim=sim, clock=clock)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_ticker(state, tick_interval_s))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(
        title="quorumgate IMDS emulator",
        description="Azure Instance Metadata Service for many simulated VMs, plus a "
        "control API. IMDS: /metadata/... (default VM) and /vms/<vm>/metadata/...",
        lifespan=lifespan,
    )
    app.state.emulator = state
    app.include_router(build_control_router(state), prefix="/control")
    app.add_middleware(ImdsMiddleware, handler=ImdsHandler(state))
    return app
