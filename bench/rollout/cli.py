"""Command line of the rollout benchmark."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

from bench.rollout.model import DRAIN, REBOOT, REDEPLOY_FACTOR, RESTORE, Scenario, Timing
from bench.rollout.report import header, held_counts, plot, table
from bench.rollout.run import ScenarioResult, run_scenario

OUT = Path(__file__).resolve().parent.parent / "out"

DEFAULT = [
    (15, 5, "sequential", True), (200, 5, "sequential", True),
    (200, 20, "sequential", True), (1000, 5, "sequential", True),
    (1000, 20, "sequential", True),
    (15, 5, "sequential", False), (200, 20, "sequential", False),
    (15, 5, "together", True), (200, 5, "together", True),
]
FULL_EXTRA = [
    (1000, 5, "sequential", False), (1000, 20, "sequential", False),
    (1000, 5, "together", True), (1000, 20, "together", True),
]


def model_text(bad_share: float) -> str:
    t = Timing()
    return "\n".join([
        "model: VM i in FD i%3, UD i%UDs; groups of 3 replicas in distinct FDs and UDs, "
        f"min_available 2; {bad_share:.0%} of groups (at least 1) badly placed (2 replicas "
        "in one UD); one event per UD, Reboot (15 min notice) or 20% Redeploy (10 min)",
        f"  reboot {REBOOT.describe()} (x{REDEPLOY_FACTOR:g} for Redeploy); drain "
        f"{DRAIN.describe()}; restore {RESTORE.describe()}",
        f"  agents poll IMDS every {t.poll_s:g} s (random phase), ZooKeeper op "
        f"{t.zk_op_s * 1000:g} ms, watch {t.notify_s * 1000:g} ms, IMDS {t.imds_s * 1000:g} ms,"
        f" modelled decide {t.decide_s * 1000:g} ms, resync {t.resync_s:g} s, agent boot "
        f"{t.agent_boot_s:g} s after the VM is back",
        "  rollout = first event announced -> last VM back; ack = event in IMDS -> the "
        "acknowledgement that started it; violations = a group below min_available when "
        "our drain or our acknowledged reboot took a member",
    ])


def parse_sizes(text: str) -> list[tuple[int, int]]:
    out = []
    for part in filter(None, text.split(",")):
        vms, _, uds = part.partition("x")
        out.append((int(vms), int(uds or 5)))
    return out


def summary(sr: ScenarioResult) -> dict[str, object]:
    out: dict[str, object] = {"scenario": sr.scenario.slug, "limit_s": sr.limit_s,
                              "safe_limit_s": sr.safe_limit_s, "unsafe_uds": sr.unsafe_uds}
    for name, r in sr.results.items():
        mean, p99 = r.ack_stats()
        row: dict[str, object] = {
            "rollout_s": r.rollout_s, "x_limit": r.rollout_s / sr.limit_s,
            "x_safe_limit": r.rollout_s / sr.safe_limit_s, "ack_mean_s": mean,
            "ack_p99_s": p99, "violations": len(r.violations),
            "platform_breaks": len(r.platform_breaks), "forced": r.forced,
            "completed": r.completed, "wall_s": r.wall_s}
        if r.decisions:
            row["held_until_forced"], row["held_briefly"] = held_counts(r)
        out[name] = row
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rollout", description=__doc__)
    parser.add_argument("--full", action="store_true",
                        help="also 1,000 VMs well-placed and all-at-once")
    parser.add_argument("--sizes", help="only these, e.g. 15x5,200x20 (sequential, bad)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bad-share", type=float, default=0.01)
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if args.sizes:
        plan = [(v, u, "sequential", True) for v, u in parse_sizes(args.sizes)]
    else:
        plan = DEFAULT + (FULL_EXTRA if args.full else [])
    print("== Rollout benchmark (discrete-event simulation, virtual clock, real safety core)")
    print(model_text(args.bad_share))
    results = []
    started = time.perf_counter()
    for vms, uds, walk, bad in plan:
        scenario = Scenario(vms=vms, uds=uds, walk=walk, seed=args.seed,
                            bad_share=args.bad_share if bad else 0.0)
        sr = run_scenario(scenario)
        print(f"\n-- {header(sr)}")
        print(table(sr))
        if not args.no_plot:
            path = plot(sr, args.out / f"rollout-{scenario.slug}.png")
            print(f"  timeline: {path}")
        results.append(summary(sr))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rollout.json").write_text(json.dumps(results, indent=2))
    print(f"\nrollout benchmark: {len(plan)} scenarios in {time.perf_counter() - started:.0f} s;"
          f" figures in {args.out / 'rollout.json'}")
    return 0
