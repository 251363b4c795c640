"""The safety core alone: time per `decide` call by cluster size and event size.

Cluster: N VMs, 3 FDs x 20 UDs, N/3 groups of 3 (min 2), all live. One event touching
K VMs of UD 0, in three situations a leader meets:

- `new`: first sight: admit, reserve, write K drain requests (the costliest decision);
- `approve`: every drain reported: ready, then approved with an acker;
- `idle`: drains still running: nothing changes (what most resync passes are).

`index` is the part of every call that builds `Availability` (which VMs are
unavailable, per-group counts) from the whole snapshot.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import time
from dataclasses import dataclass, replace
from pathlib import Path

from coordinator.safety import Availability, Snapshot, VMView, decide
from registry.records import (
    DecisionState,
    DrainStatus,
    EventType,
    Group,
    PlatformEvent,
    PlatformStatus,
    Policy,
)

NOW = 1_700_000_000.0
UDS = 20


def cluster(n: int) -> tuple[dict[str, VMView], list[Group]]:
    vms = {f"vm-{i:05d}": VMView(f"vm-{i:05d}", i % 3, i % UDS, True) for i in range(n)}
    groups = [Group(name=f"g-{k:05d}", members=[f"vm-{3 * k + j:05d}" for j in range(3)],
                    min_available=2) for k in range(n // 3)]
    return vms, groups


def snapshots(n: int, k: int) -> dict[str, Snapshot]:
    vms, groups = cluster(n)
    resources = [name for name, v in vms.items() if v.ud == 0][:k]
    event = PlatformEvent(event_id="ev-1", event_type=EventType.REBOOT,
                          status=PlatformStatus.SCHEDULED, resources=resources,
                          not_before=NOW + 900, seen_by=resources)
    new = Snapshot(now=NOW, policy=Policy(), vms=vms, groups=groups, events={"ev-1": event})
    change = decide(new)[0]
    assert change.decision.state is DecisionState.DRAINING, change.decision.reason
    drains = {r.vm: r for r in change.drains}
    idle = replace(new, now=NOW + 1, decisions={"ev-1": change.decision},
                   drains={vm: r.model_copy(update={"status": DrainStatus.RUNNING})
                           for vm, r in drains.items()})
    done = replace(idle, drains={vm: r.model_copy(update={"status": DrainStatus.DRAINED})
                                 for vm, r in drains.items()})
    approved = decide(done)
    assert approved and approved[0].decision.state is DecisionState.APPROVED
    assert decide(idle) == []
    return {"new": new, "approve": done, "idle": idle}


def per_call(fn, budget_s: float = 0.5, min_calls: int = 7) -> tuple[float, float]:
    """(median, minimum) seconds per call over calls filling `budget_s`. On a shared
    machine the minimum is the intrinsic cost, the median what a pass typically pays."""
    samples = []
    started = time.perf_counter()
    while len(samples) < min_calls or time.perf_counter() - started < budget_s:
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
        if len(samples) >= 2000:
            break
    samples.sort()
    return samples[len(samples) // 2], samples[0]


@dataclass
class CoreRow:
    vms: int
    touched: int
    new_ms: float
    approve_ms: float
    idle_ms: float
    index_ms: float
    new_min_ms: float
    index_min_ms: float


def measure(sizes: list[int], touched: list[int]) -> list[CoreRow]:
    rows = []
    for n in sizes:
        for k in touched:
            if k > n // UDS:
                continue
            snaps = snapshots(n, k)
            new = per_call(lambda s=snaps["new"]: decide(s))
            index = per_call(lambda s=snaps["new"]: Availability(s))
            rows.append(CoreRow(
                vms=n, touched=k, new_ms=new[0] * 1000,
                approve_ms=per_call(lambda s=snaps["approve"]: decide(s))[0] * 1000,
                idle_ms=per_call(lambda s=snaps["idle"]: decide(s))[0] * 1000,
                index_ms=index[0] * 1000, new_min_ms=new[1] * 1000,
                index_min_ms=index[1] * 1000))
    return rows


def profile(n: int, k: int, out: Path, top: int = 12) -> str:
    """cProfile of `decide` on a new event; saves the stats, returns the top lines."""
    snap = snapshots(n, k)["new"]
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(20):
        decide(snap)
    prof.disable()
    out.parent.mkdir(parents=True, exist_ok=True)
    prof.dump_stats(str(out))
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).strip_dirs().sort_stats("tottime").print_stats(top)
    lines = [line for line in buf.getvalue().splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls"))
    return "\n".join(lines[start:])


def table(rows: list[CoreRow]) -> str:
    lines = [f"{'VMs':>6} {'touched':>7} {'new':>8} {'approve':>8} {'idle':>8} {'index':>8}"
             f" {'new min':>8} {'index min':>9}  (ms per decide call, median and minimum;"
             " index = the Availability build alone)"]
    for r in rows:
        lines.append(f"{r.vms:>6} {r.touched:>7} {r.new_ms:>8.2f} {r.approve_ms:>8.2f} "
                     f"{r.idle_ms:>8.2f} {r.index_ms:>8.2f} {r.new_min_ms:>8.2f} "
                     f"{r.index_min_ms:>9.2f}")
    return "\n".join(lines)
