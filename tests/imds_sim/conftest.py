"""Fixtures: emulators reached over real HTTP on 127.0.0.1.

Two emulators live for the whole session (one on the real clock, one on a 600x
virtual clock); each test gets one of them reset to a fresh cluster through the
control API, which is much cheaper than starting uvicorn per test.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import httpx
import pytest

from imds_sim.testing import Emulator, running_emulator
from registry.clock import VirtualClock

H = {"Metadata": "true"}
SE = "/metadata/scheduledevents"
INSTANCE = "/metadata/instance"
UNTHROTTLED = {"rate_limit_per_s": 0}

needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=5.0) as client:
        yield client


@pytest.fixture(scope="session")
def _real_emulator() -> Iterator[Emulator]:
    with running_emulator() as emulator:
        yield emulator


@pytest.fixture(scope="session")
def _fast_emulator() -> Iterator[Emulator]:
    with running_emulator(clock=VirtualClock.starting_now(speed=600)) as emulator:
        yield emulator


@pytest.fixture
def emu(_real_emulator: Emulator) -> Emulator:
    """Real clock, 15 VMs (3 FDs x 5 UDs, availability set as-1), no throttling."""
    _real_emulator.reset(UNTHROTTLED)
    return _real_emulator


@pytest.fixture
def throttled_emu(_real_emulator: Emulator) -> Emulator:
    """Like `emu` but with Azure's 5 requests per second per VM."""
    _real_emulator.reset()
    return _real_emulator


@pytest.fixture
def fast_emu(_fast_emulator: Emulator) -> Emulator:
    """Virtual clock at 600x: 15 minutes of notice pass in 1.5 real seconds."""
    _fast_emulator.reset(UNTHROTTLED)
    return _fast_emulator
