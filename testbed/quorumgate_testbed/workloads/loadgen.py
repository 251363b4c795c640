"""A write load generator for a PostgreSQL cluster behind a multi-host connection string.

`WriteLoad` commits numbered rows, one per transaction (autocommit), through whatever
server is the read-write one now: the connection string lists every member and asks for
`target_session_attrs=read-write`, so libpq finds the current leader; on any error the
generator closes the connection, waits a little and connects again. Every commit the
server acknowledged is recorded (row id, when), and every failed attempt too.

At the end `finish()` reads the table back from the leader and compares:

- **lost writes**: rows whose commit was acknowledged to the client but that are not in
  the table the leader serves (asynchronous replication loses them at a failover);
- **longest write outage**: the longest time between two consecutive acknowledged
  commits (also from the last one to the end when the load ended failing);
- **failed-write seconds**: the sum of those gaps that contain at least one failed
  attempt (from the last commit before the failures to the first one after them).

The analysis (`analyze`) is a pure function of the records, tested on its own.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg

TABLE = "qg_load"


@dataclass
class LoadReport:
    acknowledged: int
    """Commits the server acknowledged."""
    lost: int
    """Acknowledged commits missing from the leader's table at the end."""
    lost_ids: list[int]
    """The first few of them."""
    unacknowledged_present: int
    """Rows present whose commit the client never saw acknowledged (the ack was cut off)."""
    failed_attempts: int
    longest_outage_s: float
    """Longest gap between consecutive acknowledged commits (real seconds)."""
    failed_write_s: float
    """Total real seconds of the gaps that contain a failed attempt."""
    outages: list[tuple[float, float]]
    """(start, length) of each such gap, start in seconds since the load began."""
    errors: dict[str, int] = field(default_factory=dict)
    """Failed attempts by error class."""
    duration_s: float = 0.0
    read_back: bool = True
    """False when the table could not be read back (then `lost` is -1)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def analyze(started: float, ended: float, acks: Sequence[tuple[int, float]],
            failures: Sequence[float], present: Iterable[int] | None,
            attempted: Iterable[int] = (), errors: dict[str, int] | None = None,
            keep_ids: int = 20) -> LoadReport:
    """The figures from the records.

    `acks`: (row id, monotonic time of the acknowledgement), in order; `failures`:
    monotonic times of failed attempts; `present`: the ids in the table at the end
    (None: could not be read); `attempted`: every id an INSERT was sent for.
    """
    times = [at for _, at in acks]
    # The load is measured from its first acknowledged commit (before it, the client
    # was only connecting) to the end; a failing tail counts up to the end.
    points = [*times, ended] if times else [started, ended]
    fails = sorted(failures)
    longest = 0.0
    failed_total = 0.0
    outages: list[tuple[float, float]] = []
    j = 0
    for begin, end in zip(points, points[1:], strict=False):
        gap = end - begin
        while j < len(fails) and fails[j] < begin:
            j += 1
        failed_inside = j < len(fails) and fails[j] <= end
        if failed_inside:
            failed_total += gap
            outages.append((round(begin - started, 3), round(gap, 3)))
        longest = max(longest, gap)
    if not times and fails:
        failed_total = ended - started
    acked_ids = {row for row, _ in acks}
    if present is None:
        lost_ids: list[int] = []
        lost = -1
        unacked = 0
    else:
        present_ids = set(present)
        lost_ids = sorted(acked_ids - present_ids)
        lost = len(lost_ids)
        unacked = len((present_ids & set(attempted)) - acked_ids)
    return LoadReport(acknowledged=len(acks), lost=lost, lost_ids=lost_ids[:keep_ids],
                      unacknowledged_present=unacked, failed_attempts=len(fails),
                      longest_outage_s=round(longest, 3), failed_write_s=round(failed_total, 3),
                      outages=outages, errors=dict(errors or {}),
                      duration_s=round(ended - started, 3), read_back=present is not None)


def multi_host_dsn(ports: Sequence[int], password: str, *, host: str = "127.0.0.1",
                   user: str = "postgres", dbname: str = "postgres",
                   connect_timeout: int = 2) -> str:
    """A libpq connection string over every member that lands on the read-write one."""
    return (f"host={','.join([host] * len(ports))} port={','.join(map(str, ports))} "
            f"dbname={dbname} user={user} password={password} "
            f"target_session_attrs=read-write connect_timeout={connect_timeout} "
            "keepalives=1 keepalives_idle=2 keepalives_interval=1 keepalives_count=2 "
            "application_name=quorumgate-loadgen")


def create_table(dsn: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigint PRIMARY KEY, "
                             "client_at double precision, port int, "
                             "committed_at timestamptz DEFAULT clock_timestamp())")
                return
        except psycopg.Error:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


def read_ids(dsn: str, timeout_s: float = 60.0) -> set[int] | None:
    """Every id in the leader's table (None when no leader answered in time)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                return {row[0] for row in conn.execute(f"SELECT id FROM {TABLE}")}
        except psycopg.Error:
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.5)


class WriteLoad:
    """Commits numbered rows in a background thread until `finish()`."""

    def __init__(self, dsn: str, pause_s: float = 0.01, retry_s: float = 0.05) -> None:
        self.dsn = dsn
        self.pause_s = pause_s
        self.retry_s = retry_s
        self.acks: list[tuple[int, float]] = []
        self.acked_wall: list[float] = []
        self.failures: list[float] = []
        self.errors: Counter[str] = Counter()
        self.attempted: list[int] = []
        self.started = 0.0
        self.ended = 0.0
        self._next_id = 1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="write-load", daemon=True)

    def start(self) -> None:
        self.started = time.monotonic()
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def wait_acks(self, count: int, timeout_s: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while len(self.acks) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return len(self.acks) >= count

    def _fail(self, exc: BaseException) -> None:
        self.failures.append(time.monotonic())
        self.errors[type(exc).__name__] += 1

    def _run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        try:
            while not self._stop.is_set():
                if conn is None:
                    try:
                        conn = psycopg.connect(self.dsn, autocommit=True)
                    except psycopg.Error as exc:
                        self._fail(exc)
                        self._stop.wait(self.retry_s)
                        continue
                row = self._next_id
                self._next_id += 1
                self.attempted.append(row)
                try:
                    conn.execute(f"INSERT INTO {TABLE} (id, client_at, port) "
                                 "VALUES (%s, %s, inet_server_port())", (row, time.time()))
                except psycopg.Error as exc:
                    self._fail(exc)
                    with contextlib.suppress(Exception):
                        conn.close()
                    conn = None
                    self._stop.wait(self.retry_s)
                    continue
                self.acks.append((row, time.monotonic()))
                self.acked_wall.append(time.time())
                self._stop.wait(self.pause_s)
        finally:
            self.ended = time.monotonic()
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(15)

    def finish(self, read_back_timeout_s: float = 60.0) -> LoadReport:
        """Stop writing, read the table back from the leader, and compare."""
        self.stop()
        ended = self.ended or time.monotonic()
        present = read_ids(self.dsn, read_back_timeout_s)
        return analyze(self.started, ended, list(self.acks), list(self.failures), present,
                       self.attempted, dict(self.errors))
