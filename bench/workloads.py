"""The side-by-side runner shared by `bench.hdfs` and `bench.kafka` (as `bench.patroni`
does for Patroni): one fresh stack and workload per strategy, a table, JSON results."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from quorumgate_testbed.rollout import RolloutSpec, Summary, rollout_stack
from quorumgate_testbed.zkserver import ZooKeeperServer, find_zookeeper

STRATEGIES = ("quorumgate", "ack-on-sight", "never-ack")
OUT = Path(__file__).resolve().parent / "out"


@contextlib.contextmanager
def zookeeper(hosts: str, name: str) -> Iterator[str]:
    if hosts:
        yield hosts
        return
    if problem := find_zookeeper():
        raise SystemExit(f"bench.{name}: {problem}")
    with ZooKeeperServer() as server:
        yield server.hosts


def run_one(name: str, make: Callable[..., RolloutSpec], strategy: str, hosts: str,
            speed: float, downtime_s: float, verbose: bool) -> tuple[Summary, dict[str, Any]]:
    started = time.monotonic()

    def say(line: str) -> None:
        if verbose:
            print(f"  {time.monotonic() - started:6.1f}s {line}", file=sys.stderr, flush=True)

    spec = make(strategy, speed=speed, downtime_s=downtime_s, say=say)
    cluster = f"bench-{name}-{strategy}-{uuid.uuid4().hex[:6]}"
    with rollout_stack(spec, hosts, cluster, out=say) as rollout:
        spec.workload.wait_ready()  # type: ignore[attr-defined]
        summary = rollout.run()
    print(f"{strategy}: done in {time.monotonic() - started:.0f} s real", file=sys.stderr,
          flush=True)
    return summary, summary.workload


def main_for(name: str, doc: str, find: Callable[[], str | None],
             make: Callable[..., RolloutSpec],
             table: Callable[[dict[str, tuple[Any, dict[str, Any]]]], str], title: str, *,
             downtime_s: float, check: Callable[[dict[str, Any]], bool],
             argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m bench.{name}",
                                     description=doc.splitlines()[0])
    parser.add_argument("--strategy", action="append", choices=STRATEGIES,
                        help="run only these (repeatable; default: all three)")
    parser.add_argument("--speed", type=float, default=4.0,
                        help="virtual seconds per real second (default 4)")
    parser.add_argument("--downtime", type=float, default=downtime_s,
                        help=f"virtual seconds a rebooted VM stays down (default {downtime_s:g})")
    parser.add_argument("--zk-hosts", default=os.environ.get("ZK_HOSTS", ""),
                        help="an existing ZooKeeper (default: start a local one)")
    parser.add_argument("--out", type=Path, default=OUT / f"{name}.json",
                        help="JSON results")
    parser.add_argument("-v", "--verbose", action="store_true", help="the rollouts' progress")
    args = parser.parse_args(argv)
    if problem := find():
        print(f"bench.{name}: {problem}", file=sys.stderr)
        return 2
    strategies = args.strategy or list(STRATEGIES)
    rows: dict[str, tuple[Summary, dict[str, Any]]] = {}
    print(f"{name} under a rollout of 3 UDs (clock x{args.speed:g}, reboot {args.downtime:g} s "
          f"virtual = {args.downtime / args.speed:.0f} s real); strategies: "
          f"{', '.join(strategies)} (never-ack takes ~13 min)", file=sys.stderr)
    with zookeeper(args.zk_hosts, name) as hosts:
        for strategy in strategies:
            rows[strategy] = run_one(name, make, strategy, hosts, args.speed, args.downtime,
                                     args.verbose)
    print()
    print(title)
    print(table(rows))
    print(f"rollout time virtual (clock x{args.speed:g}); everything else real")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(
        {strategy: {"summary": json.loads(summary.to_json()), "workload": report}
         for strategy, (summary, report) in rows.items()}, indent=2, default=str))
    print(f"results: {args.out}")
    ours = rows.get("quorumgate")
    if ours is not None and (not check(ours[1]) or not ours[0].completed or ours[0].violations):
        print(f"bench.{name}: quorumgate lost data or did not complete", file=sys.stderr)
        return 1
    return 0
