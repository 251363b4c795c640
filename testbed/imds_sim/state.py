"""What the HTTP layers share: the simulation, the clock, faults and the throttle."""

from __future__ import annotations

from dataclasses import dataclass, field

from imds_sim.faults import FaultBook
from imds_sim.model import Simulation
from imds_sim.ratelimit import SlidingWindowLimiter
from registry.clock import Clock


@dataclass
class EmulatorState:
    sim: Simulation
    clock: Clock
    faults: FaultBook = field(default_factory=FaultBook)
    limiter: SlidingWindowLimiter = field(default_factory=SlidingWindowLimiter)

    def now(self) -> float:
        return self.clock.now()
