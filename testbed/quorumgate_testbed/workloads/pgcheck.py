"""`python -m quorumgate_testbed.workloads.pgcheck`: wait until a Patroni member streams again.

The second half of the Patroni workload's restore hook (after
deploy/hooks/patroni-restore.sh, which checks role, state, lag and timeline from
Patroni's REST API): Patroni 3.0 reports a replica as `running` whether it streams or
not, so this asks PostgreSQL itself. Ready when the member leads (not in recovery), or
when the leader's `pg_stat_replication` shows it (`application_name` = the member name)
`streaming` with a replay lag of at most `--max-lag-bytes`.

    QG_PG_DSN="host=... target_session_attrs=read-write ..." \\
        python -m quorumgate_testbed.workloads.pgcheck --member vm-0 --port 5433

Exit codes: 0 ready; 6 not ready within `--timeout`. Progress goes to stderr.
Imports psycopg only (it runs once per restore, it must start fast).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

import psycopg


def member_state(member: str, member_dsn: str, leader_dsn: str, max_lag: int) -> str:
    """`ready: ...` or what is missing."""
    try:
        with psycopg.connect(member_dsn, autocommit=True, connect_timeout=2) as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
            if row is not None and not row[0]:
                return "ready: it leads"
    except psycopg.Error as exc:
        return f"member does not answer ({type(exc).__name__})"
    try:
        with psycopg.connect(leader_dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT state, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint "
                "FROM pg_stat_replication WHERE application_name = %s", (member,)).fetchone()
    except psycopg.Error as exc:
        return f"no leader answers ({type(exc).__name__})"
    if row is None:
        return "not in the leader's pg_stat_replication"
    state, lag = row
    if state != "streaming":
        return f"replication state {state}"
    if lag is None or lag > max_lag:
        return f"streaming, replay lag {lag} bytes (limit {max_lag})"
    return f"ready: streaming, replay lag {lag} bytes"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m quorumgate_testbed.workloads.pgcheck",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--member", required=True, help="the member's name (application_name)")
    parser.add_argument("--port", type=int, required=True, help="the member's PostgreSQL port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--max-lag-bytes", type=int, default=1024 * 1024)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--poll", type=float, default=0.5)
    args = parser.parse_args(argv)
    leader_dsn = os.environ.get("QG_PG_DSN", "")
    if not leader_dsn:
        print("pgcheck: QG_PG_DSN (a read-write connection string) is not set",
              file=sys.stderr)
        return 2
    # The member itself, with the same credentials, whatever its role.
    member_dsn = f"{leader_dsn} host={args.host} port={args.port} target_session_attrs=any"
    deadline = time.monotonic() + args.timeout
    last = ""
    while True:
        now = member_state(args.member, member_dsn, leader_dsn, args.max_lag_bytes)
        if now.startswith("ready:"):
            print(f"pgcheck: {args.member} {now[len('ready: '):]}", file=sys.stderr)
            return 0
        if now != last:
            print(f"pgcheck: {args.member} not yet: {now}", file=sys.stderr)
            last = now
        if time.monotonic() >= deadline:
            print(f"pgcheck: ERROR: {args.member} not streaming after {args.timeout:g}s: {now}",
                  file=sys.stderr)
            return 6
        time.sleep(args.poll)


if __name__ == "__main__":
    sys.exit(main())
