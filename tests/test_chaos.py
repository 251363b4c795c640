"""A short chaos run in the test suite: the nemesis against a real stack, checked outside.

`make chaos` runs the long version; this one keeps every fault kind but fewer of them.
"""

from __future__ import annotations

import pytest

from quorumgate.chaos import FAULTS, Chaos, ChaosSpec
from quorumgate.zkserver import find_zookeeper
from tests.zk_fixtures import _unavailable


@pytest.mark.ensemble
def test_short_chaos_run_is_safe() -> None:
    if problem := find_zookeeper():
        _unavailable(problem)  # skipped locally, a failure under CI
    lines: list[str] = []
    spec = ChaosSpec(seed=7, duration_s=30, settle_s=120, vms=12, groups=5,
                     nemesis_every_s=(1.0, 2.5))
    report = Chaos(spec, out=lines.append).run()
    assert report.ok, report.table() + "\n" + "\n".join(lines[-40:])
    assert report.events >= 3
    assert sum(report.faults.values()) >= 8, report.faults
    assert set(report.faults) <= set(FAULTS)
