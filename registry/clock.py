"""One notion of *now* for every component.

NotBefore is compared with each component's own now, so the emulator, agents and
coordinators must agree on the time. In production that is the wall clock; in the
demo, tests and benchmarks it is a virtual clock (epoch + speed factor) anchored to the
wall clock, so separate processes given the same spec agree without talking.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch, in this clock's time."""

    def real_seconds(self, seconds: float) -> float:
        """How many real seconds `seconds` of this clock's time take."""

    def sleep(self, seconds: float) -> None: ...

    async def asleep(self, seconds: float) -> None: ...

    @property
    def spec(self) -> str:
        """A string that `parse_clock` turns back into an equivalent clock."""


class RealClock:
    def now(self) -> float:
        return time.time()

    def real_seconds(self, seconds: float) -> float:
        return max(0.0, seconds)

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))

    async def asleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    @property
    def spec(self) -> str:
        return "real"


@dataclass(frozen=True)
class VirtualClock:
    """Time that starts at `epoch` when the wall clock reads `anchor` and runs `speed`x."""

    epoch: float
    speed: float = 1.0
    anchor: float = 0.0

    def __post_init__(self) -> None:
        if self.speed <= 0:
            raise ValueError("clock speed must be positive")

    @classmethod
    def starting_now(cls, epoch: float | None = None, speed: float = 1.0) -> VirtualClock:
        wall = time.time()
        return cls(epoch=wall if epoch is None else epoch, speed=speed, anchor=wall)

    def now(self) -> float:
        return self.epoch + (time.time() - self.anchor) * self.speed

    def real_seconds(self, seconds: float) -> float:
        return max(0.0, seconds) / self.speed

    def sleep(self, seconds: float) -> None:
        time.sleep(self.real_seconds(seconds))

    async def asleep(self, seconds: float) -> None:
        await asyncio.sleep(self.real_seconds(seconds))

    @property
    def spec(self) -> str:
        return f"virtual:{self.epoch!r}:{self.speed!r}:{self.anchor!r}"


def parse_clock(spec: str | None) -> Clock:
    """`real` (default) or `virtual:EPOCH:SPEED:ANCHOR` as printed by `VirtualClock.spec`."""
    if not spec or spec == "real":
        return RealClock()
    kind, _, rest = spec.partition(":")
    if kind != "virtual":
        raise ValueError(f"unknown clock {spec!r}: expected 'real' or 'virtual:EPOCH:SPEED:ANCHOR'")
    try:
        epoch, speed, anchor = (float(part) for part in rest.split(":"))
    except ValueError as exc:
        raise ValueError(f"bad virtual clock {spec!r}: want virtual:EPOCH:SPEED:ANCHOR") from exc
    return VirtualClock(epoch=epoch, speed=speed, anchor=anchor)
