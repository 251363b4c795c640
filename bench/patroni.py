"""`python -m bench.patroni`: a real Patroni/PostgreSQL cluster through a rollout of every
update domain, under quorumgate, acknowledge-on-sight and never-acknowledge, side by side.

Each strategy gets a fresh stack (IMDS emulator, agents, coordinators for quorumgate) and
a fresh 3-member Patroni cluster on vm-0..vm-2 (one per UD) with a continuous write load
(quorumgate_testbed.workloads.patroni). The platform walks the 3 UDs one after the other with
Azure's 15-minute Reboot notice; the clock runs at x15 (Patroni runs in real time) and a
reboot keeps a VM down 225 virtual seconds (15 s real, more than Patroni's ttl of 10 s).

Columns: acknowledged writes; of those, lost (not in the leader's table at the end);
the longest write outage and the total seconds of failed writes (real seconds); leader
changes that our drain hook did not ask for (unplanned failovers); switchovers by the
drain hook; rollout time (virtual); invariant violations seen by the ground-truth checker.
Needs ZooKeeper and Debian's patroni/postgresql/python3-kazoo
(`scripts/bootstrap.sh --with patroni`). Writes bench/out/patroni.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from quorumgate_testbed.rollout import Summary, rollout_stack
from quorumgate_testbed.workloads.patroni import find_patroni, patroni_spec, report_table
from quorumgate_testbed.zkserver import ZooKeeperServer, find_zookeeper

STRATEGIES = ("quorumgate", "ack-on-sight", "never-ack")
OUT = Path(__file__).resolve().parent / "out" / "patroni.json"


@contextlib.contextmanager
def zookeeper(hosts: str) -> Iterator[str]:
    if hosts:
        yield hosts
        return
    if problem := find_zookeeper():
        raise SystemExit(f"bench.patroni: {problem}")
    with ZooKeeperServer() as server:
        yield server.hosts


def run_one(strategy: str, hosts: str, speed: float, downtime_s: float,
            verbose: bool) -> tuple[Summary, dict[str, Any]]:
    started = time.monotonic()

    def say(line: str) -> None:
        if verbose:
            print(f"  {time.monotonic() - started:6.1f}s {line}", file=sys.stderr, flush=True)

    spec = patroni_spec(strategy, speed=speed, downtime_s=downtime_s, say=say)
    cluster = f"bench-pg-{strategy}-{uuid.uuid4().hex[:6]}"
    with rollout_stack(spec, hosts, cluster, out=say) as rollout:
        summary = rollout.run()
    print(f"{strategy}: done in {time.monotonic() - started:.0f} s real", file=sys.stderr,
          flush=True)
    return summary, summary.workload


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.patroni",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", action="append", choices=STRATEGIES,
                        help="run only these (repeatable; default: all three)")
    parser.add_argument("--speed", type=float, default=15.0,
                        help="virtual seconds per real second (default 15)")
    parser.add_argument("--downtime", type=float, default=225.0,
                        help="virtual seconds a rebooted VM stays down (default 225)")
    parser.add_argument("--zk-hosts", default=os.environ.get("ZK_HOSTS", ""),
                        help="an existing ZooKeeper (default: start a local one)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"JSON results (default {OUT})")
    parser.add_argument("-v", "--verbose", action="store_true", help="the rollouts' progress")
    args = parser.parse_args(argv)
    if problem := find_patroni():
        print(f"bench.patroni: {problem}", file=sys.stderr)
        return 2
    strategies = args.strategy or list(STRATEGIES)
    rows: dict[str, tuple[Summary, dict[str, Any]]] = {}
    print(f"Patroni under a rollout of 3 UDs (clock x{args.speed:g}, reboot "
          f"{args.downtime:g} s virtual = {args.downtime / args.speed:.0f} s real); "
          f"strategies: {', '.join(strategies)} (never-ack takes ~5 min)", file=sys.stderr)
    with zookeeper(args.zk_hosts) as hosts:
        for strategy in strategies:
            rows[strategy] = run_one(strategy, hosts, args.speed, args.downtime, args.verbose)
    print()
    print("Patroni (3 members, async replication, ttl 10 s) through a rollout of every UD")
    print(report_table(rows))
    print("outages and failed writes in real seconds; rollout time virtual "
          f"(clock x{args.speed:g}); lost = acknowledged commits missing at the end")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(
        {name: {"summary": json.loads(summary.to_json()), "workload": report}
         for name, (summary, report) in rows.items()}, indent=2, default=str))
    print(f"results: {args.out}")
    bad = rows.get("quorumgate")
    if bad is not None and (bad[1].get("lost_writes") != 0 or not bad[0].completed
                            or bad[0].violations):
        print("bench.patroni: quorumgate lost writes or did not complete", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
