"""The rollout benchmark at its smallest size, in-process: are its numbers sane?

No wall-clock assertions: everything compared here is virtual time from a seeded
discrete-event simulation.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.rollout.model import Scenario
from bench.rollout.report import plot, table
from bench.rollout.run import LIMIT, run_scenario


@pytest.fixture(scope="module")
def bad_placement():
    return run_scenario(Scenario(vms=15, uds=5, bad_share=0.01, seed=1))


def test_quorumgate_is_safe_and_between_the_limit_and_never_ack(bad_placement) -> None:
    r = bad_placement.results
    assert any(g.bad for g in bad_placement.cluster.groups)
    assert all(res.completed for res in r.values())
    assert r["quorumgate"].violations == []
    assert r["never-ack"].violations == []
    assert r["never-ack"].rollout_s >= r["quorumgate"].rollout_s
    assert r[LIMIT].rollout_s <= r["quorumgate"].rollout_s
    # a badly placed group makes its UD unsafe: held until the platform forces it
    assert bad_placement.unsafe_uds
    assert r["quorumgate"].forced == len(bad_placement.unsafe_uds)
    assert r["quorumgate"].rollout_s >= bad_placement.safe_limit_s * 0.999


def test_ack_on_sight_breaks_the_badly_placed_group(bad_placement) -> None:
    ack = bad_placement.results["ack-on-sight"]
    assert len(ack.violations) > 0
    bad = {g.name for g in bad_placement.cluster.groups if g.bad}
    assert {i.group for i in ack.violations} <= bad
    assert ack.forced == 0
    assert all(d >= 0 for d in ack.ack_delays)


def test_well_placed_cluster_acknowledges_everything_close_to_the_limit() -> None:
    sr = run_scenario(Scenario(vms=15, uds=5, bad_share=0.0, seed=2))
    qg = sr.results["quorumgate"]
    assert qg.violations == [] and qg.forced == 0
    assert sr.results["ack-on-sight"].violations == []
    assert sr.limit_s <= qg.rollout_s < 1.5 * sr.limit_s
    assert sr.results["never-ack"].rollout_s > 2 * qg.rollout_s
    mean, p99 = qg.ack_stats()
    assert mean is not None and p99 is not None and 0 < mean <= p99


def test_all_at_once_variant_stays_safe() -> None:
    sr = run_scenario(Scenario(vms=15, uds=5, walk="together", seed=1))
    assert sr.results["quorumgate"].violations == []
    assert len(sr.results["ack-on-sight"].violations) > 0


def test_table_and_plot(bad_placement, tmp_path: Path) -> None:
    text = table(bad_placement)
    for name in ("quorumgate", "never-ack", "ack-on-sight", LIMIT):
        assert name in text
    pytest.importorskip("matplotlib")
    path = plot(bad_placement, tmp_path / "timeline.png")
    assert path.stat().st_size > 10_000
