"""Latency and scale: the safety core alone, a real coordinator on real ZooKeeper, real
agents end to end, and the REST API under concurrent load.

    python -m bench.scale [--full] [--sizes 100,1000,10000] [--events 30] [--skip e2e,api]

1. Core: `decide` per call by cluster size and event size (bench.core), and a cProfile
   of the largest case (bench/out/decide-<N>.prof).
2. Coordinator: `quorumgate coordinator` in a child process on a private ZooKeeper, with
   N registered VMs (ephemeral `vms/<vm>` from 8 kazoo sessions), N/3 groups of 3 and
   one-UD events (3 FDs x 20 UDs: N/20 VMs per event) driven one at a time by
   bench.zkload acting as the agents: event -> drain request, last drain result ->
   approval; mean decision pass (the coordinator's own histogram); resident memory
   (/proc/<pid>/status); ZooKeeper's znode count (`mntr`).
3. API: requests/second and p50/p99 of `/v1/topology` and `/v1/events` at 1,000 VMs,
   50 concurrent closed-loop clients in a separate process (bench.loadgen).
4. End to end at 100 VMs with real agents polling the IMDS emulator every second
   (bench.e2e): event in IMDS -> acknowledgement received by IMDS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import core, e2e, hops
from bench.procs import (
    ROOT,
    TOKEN,
    CoordinatorProcess,
    collapsed_summary,
    memory,
    mntr,
    pyspy_record,
    zookeeper,
)
from bench.procs import coordinator as start_coordinator
from bench.zkload import EventCycles, Registrations, populate
from registry.layout import Layout
from registry.zk import make_client

OUT = Path(__file__).resolve().parent / "out"
UDS = 20
CLIENTS = 50


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def _loadgen(url: str, path: str, seconds: float, clients: int) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "bench.loadgen", url, path, "--clients", str(clients),
           "--seconds", str(seconds), "--warmup", "2", "--token", TOKEN]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _result(proc: subprocess.Popen[str], seconds: float) -> dict[str, Any]:
    stdout, stderr = proc.communicate(timeout=seconds + 120)
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen failed: {stderr[-2000:]}")
    return json.loads(stdout.strip().splitlines()[-1])


def api_load(coordinator: CoordinatorProcess, seconds: float,
             profile: Path | None) -> tuple[list[dict[str, Any]], str]:
    """Both routes under CLIENTS clients, then topology alone with one client (its bare
    service time); a py-spy profile of the coordinator during the topology load."""
    results, summary = [], ""
    for path in ("/v1/topology", "/v1/events"):
        proc = _loadgen(coordinator.url, path, seconds, CLIENTS)
        spy = None
        if path == "/v1/topology" and profile is not None and seconds >= 5:
            time.sleep(3.0)  # past the warm-up
            spy = pyspy_record(coordinator.pid, seconds - 2, profile)
        results.append(_result(proc, seconds))
        if spy is not None:
            spy.wait(timeout=seconds + 60)
            if profile is not None and profile.exists():
                summary = collapsed_summary(profile)
    results.append(_result(_loadgen(coordinator.url, "/v1/topology", min(seconds, 5.0), 1),
                           seconds))
    return results, summary


def coordinator_size(hosts: str, n: int, events: int, api_seconds: float | None,
                     baseline_znodes: int, profile_dir: Path,
                     profile_passes: bool = False) -> dict[str, Any]:
    cluster = f"bench-{n}-{uuid.uuid4().hex[:6]}"
    layout = Layout(cluster=cluster)
    admin = make_client(hosts)
    admin.start(timeout=15)
    regs = Registrations(hosts, layout, n, UDS)
    coordinator: CoordinatorProcess | None = None
    row: dict[str, Any] = {"vms": n, "events": events}
    try:
        t = time.perf_counter()
        row["groups"] = populate(admin, layout, n)
        regs.start()
        row["populate_s"] = time.perf_counter() - t
        coordinator = start_coordinator(hosts, cluster, profile_dir, resync_s=1.0)
        t = time.perf_counter()
        coordinator.wait_mirrored(n, row["groups"], TOKEN, timeout=300)
        row["mirror_s"] = time.perf_counter() - t
        row["rss_idle_kib"] = memory(coordinator.pid)["VmRSS"]
        spy_out = profile_dir / f"passes-{n}.txt"
        spy = pyspy_record(coordinator.pid, 3600, spy_out) if profile_passes else None
        cycles = EventCycles(admin, layout, n, UDS).run(events)
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes what it has on SIGINT
            spy.wait(timeout=120)
            if spy_out.exists():
                row["pass_profile"] = collapsed_summary(spy_out, root="run_pass")
        row["errors"] = cycles.errors
        row["to_drain_s"] = cycles.to_drain_s
        row["to_approval_s"] = cycles.to_approval_s
        row["touched"] = n // UDS
        metrics = coordinator.metrics()
        count = metrics.get("quorumgate_decision_pass_seconds_count", 0.0)
        row["passes"] = count
        row["pass_mean_s"] = (metrics.get("quorumgate_decision_pass_seconds_sum", 0.0) / count
                              if count else None)
        mem = memory(coordinator.pid)
        row["rss_kib"], row["rss_peak_kib"] = mem["VmRSS"], mem["VmHWM"]
        total = int(mntr(hosts).get("zk_znode_count", "0"))
        row["znodes_total"] = total
        row["znodes_cluster"] = total - baseline_znodes
        if api_seconds:
            row["api"], row["api_profile"] = api_load(coordinator, api_seconds,
                                                      profile_dir / f"api-topology-{n}.txt")
    finally:
        if coordinator is not None:
            coordinator.stop()
        regs.stop()
        admin.stop()
        admin.close()
    return row


def coordinator_table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'VMs':>6} {'groups':>6} {'touched':>7} {'events':>6} {'ev->drain p50':>13} "
            f"{'p99':>7} {'drained->approved p50':>21} {'p99':>7} {'pass mean':>9} "
            f"{'RSS MiB':>7} {'peak':>6} {'znodes':>7}")
    lines = [head + "   (latencies in ms)"]
    for r in rows:
        lines.append(
            f"{r['vms']:>6} {r['groups']:>6} {r['touched']:>7} {len(r['to_drain_s']):>6} "
            f"{ms(pct(r['to_drain_s'], 50)):>13} {ms(pct(r['to_drain_s'], 99)):>7} "
            f"{ms(pct(r['to_approval_s'], 50)):>21} {ms(pct(r['to_approval_s'], 99)):>7} "
            f"{ms(r['pass_mean_s']):>9} {r['rss_kib'] / 1024:>7.0f} "
            f"{r['rss_peak_kib'] / 1024:>6.0f} {r['znodes_cluster']:>7}")
        if r.get("errors"):
            lines.append(f"       errors: {'; '.join(r['errors'])}")
    return "\n".join(lines)


def api_table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'VMs':>6} {'route':<14} {'clients':>7} {'req/s':>7} {'p50 ms':>7} "
             f"{'p99 ms':>7} {'max ms':>7} {'errors':>6}"]
    for r in rows:
        for a in r.get("api", []):
            lines.append(f"{r['vms']:>6} {a['path']:<14} {a['clients']:>7} {a['rps']:>7.1f} "
                         f"{a.get('p50_ms', 0):>7.1f} {a.get('p99_ms', 0):>7.1f} "
                         f"{a.get('max_ms', 0):>7.1f} {a['errors']:>6}")
    return "\n".join(lines)


def hop_lines(r: e2e.E2EResult) -> list[str]:
    """Per hop p50 / p99 / max in ms, from the records' own times (`bench.hops`)."""
    if not r.hops:
        return ["  per hop: no event with every moment recorded"]
    lines = [f"  per hop over {len(r.hops)} events (ms)   p50    p99    max  what"]
    for key, label, what in hops.HOPS:
        values = [h[key] for h in r.hops]
        lines.append(f"    {label:<26} {ms(pct(values, 50)):>6} {ms(pct(values, 99)):>6} "
                     f"{ms(max(values)):>6}  {what}")
    return lines


def e2e_table(r: e2e.E2EResult, poll_s: float) -> str:
    phases = {k: statistics.fmean(p[k] for p in r.phases if k in p)
              for k in ("draining", "approved", "acknowledged")
              if any(k in p for p in r.phases)}
    p50, p99 = pct(r.delays_s, 50), pct(r.delays_s, 99)
    where = (f"agents in {r.agent_processes} processes" if r.agent_processes
             else "agents as threads of the benchmark")
    lines = [f"{r.vms} VMs, {where}, {len(r.delays_s)} events acknowledged (poll "
             f"{poll_s:g} s, hooks: the journaling script alone): event in IMDS -> ack "
             f"p50 {ms(p50)} ms, p99 {ms(p99)} ms, max "
             f"{ms(max(r.delays_s) if r.delays_s else None)} ms",
             "  mean time from the event's creation to: "
             + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in phases.items()),
             *hop_lines(r),
             f"  forced {r.forced}, quorum violations {len(r.violations)}, completed "
             f"{'yes' if r.completed else 'NO'}, relay writes given up after 10 CAS "
             f"conflicts: {r.cas_give_ups}, wall {r.wall_s:.0f} s"]
    return "\n".join(lines)


def verdicts(core_rows: list[core.CoreRow], coord: list[dict[str, Any]],
             e2e_results: list[e2e.E2EResult], poll_s: float) -> list[str]:
    out = []
    for r in e2e_results:
        p99 = pct(r.delays_s, 99)
        if p99 is None:
            continue
        target = poll_s + (0.2 if r.vms <= 100 else 0.3)
        where = (f"{r.agent_processes} agent processes" if r.agent_processes
                 else "agents as threads of one process")
        out.append(f"e2e ack p99 {p99:.2f} s at {r.vms} VMs ({where}) vs target <= "
                   f"{target:.1f} s: {'met' if p99 <= target else 'MISSED'}")
    big = [r for r in core_rows if r.vms == max(x.vms for x in core_rows)]
    if big:
        worst = max(max(r.new_ms, r.approve_ms, r.idle_ms) for r in big)
        best = max(r.new_min_ms for r in big)
        share = statistics.fmean(r.index_min_ms / max(r.new_min_ms, 1e-9) for r in big)
        out.append(f"core at {big[0].vms} VMs: worst median {worst:.1f} ms per decide "
                   f"(minimum {best:.1f} ms) vs target < 10 ms: "
                   f"{'met' if worst < 10 else 'MISSED'} (the O(cluster) Availability "
                   f"build alone is {share:.0%} of a new-event decision, by minima)")
    for r in coord:
        for a in r.get("api", []):
            if a["path"] == "/v1/topology" and a["clients"] == CLIENTS:
                ok = a.get("p99_ms", 1e9) < 50
                out.append(f"topology API p99 {a.get('p99_ms', 0):.1f} ms at {r['vms']} VMs, "
                           f"{a['clients']} clients vs target < 50 ms: "
                           f"{'met' if ok else 'MISSED'}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true",
                        help="more events per size, longer API runs, more e2e events")
    parser.add_argument("--sizes", default="100,1000,10000",
                        help="coordinator sizes in VMs (default 100,1000,10000)")
    parser.add_argument("--events", type=int, help="events per size (default 30; full 100)")
    parser.add_argument("--e2e-events", type=int, help="end-to-end events (default 15; full 40)")
    parser.add_argument("--e2e-vms", default="100:0,100:4,1000:8",
                        help="end-to-end runs as VMS:PROCESSES, comma-separated; PROCESSES 0 "
                        "runs the agents as threads of the benchmark, N in N agent processes "
                        "(default 100:0,100:4,1000:8)")
    parser.add_argument("--api-seconds", type=float, help="per route (default 10; full 30)")
    parser.add_argument("--skip", default="", help="comma list of: core, coordinator, api, e2e")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    sizes = [int(s) for s in args.sizes.split(",") if s]
    events = args.events or (100 if args.full else 30)
    e2e_events = args.e2e_events or (40 if args.full else 15)
    api_seconds = args.api_seconds or (30.0 if args.full else 10.0)
    poll_s = 1.0
    load_avg = os.getloadavg()[0]
    print(f"== Latency and scale ({platform.node()}, {os.cpu_count()} cores, load average "
          f"{load_avg:.1f} at start, Python {platform.python_version()})")
    results: dict[str, Any] = {"cores": os.cpu_count(), "load_avg_start": load_avg}
    started = time.perf_counter()

    core_rows: list[core.CoreRow] = []
    if "core" not in skip:
        print("\n-- Safety core: decide() per call, 3 FDs x 20 UDs, N/3 groups of 3, one event")
        core_rows = core.measure([s for s in (100, 1000, 10000) if s <= max(sizes + [100])],
                                 [5, 50, 500])
        print(core.table(core_rows))
        top = max(r.vms for r in core_rows)
        touched = max(r.touched for r in core_rows if r.vms == top)
        prof = args.out / f"decide-{top}.prof"
        print(f"  cProfile of decide() on a new event, {top} VMs, {touched} touched "
              f"(by own time; {prof}):")
        print("\n".join("    " + line for line in core.profile(top, touched, prof).splitlines()))
        results["core"] = [r.__dict__ for r in core_rows]

    coord_rows: list[dict[str, Any]] = []
    e2e_results: list[e2e.E2EResult] = []
    need_zk = not {"coordinator", "api", "e2e"} <= skip
    if need_zk:
        with zookeeper() as hosts:
            baseline = int(mntr(hosts).get("zk_znode_count", "0"))
            if not {"coordinator", "api"} <= skip:
                print(f"\n-- Coordinator on real ZooKeeper ({hosts}): {events} one-UD events "
                      "per size, one at a time")
                for n in sizes:
                    if "coordinator" in skip and n != 1000:
                        continue
                    api = api_seconds if n == 1000 and "api" not in skip else None
                    row = coordinator_size(hosts, n, events, api, baseline, args.out,
                                           profile_passes=n == max(sizes))
                    baseline = row["znodes_total"]
                    coord_rows.append(row)
                print(coordinator_table(coord_rows))
                for row in coord_rows:
                    if row.get("pass_profile"):
                        print(f"  py-spy profile of the coordinator during the events at "
                              f"{row['vms']} VMs:")
                        print(row["pass_profile"])
                print("  ev->drain: events/<id> create sent -> drain/<vm> request seen by a "
                      "watch; drained->approved: last drain result written -> decisions/<id> "
                      "approved seen by a watch; pass mean: the coordinator's own histogram "
                      "(idle resyncs included); znodes: this cluster's share of zk_znode_count")
                if any(r.get("api") for r in coord_rows):
                    print(f"\n-- REST API under load: {CLIENTS} concurrent clients (closed "
                          "loop, separate process), viewer token")
                    print(api_table(coord_rows))
                    for row in coord_rows:
                        if row.get("api_profile"):
                            print(f"  py-spy profile of the coordinator under the topology "
                                  f"load ({row['vms']} VMs):")
                            print(row["api_profile"])
                results["coordinator"] = coord_rows
            if "e2e" not in skip:
                print(f"\n-- End to end: real agents, IMDS emulator, out-of-process "
                      f"coordinator, {e2e_events} events one at a time")
                results["e2e"] = []
                for run in filter(None, args.e2e_vms.split(",")):
                    vms_text, _, procs_text = run.partition(":")
                    vms, procs = int(vms_text), int(procs_text or 0)
                    try:
                        found = e2e.run(hosts, vms=vms, events=e2e_events, poll_s=poll_s,
                                        agent_processes=procs)
                    except RuntimeError as exc:  # e.g. agents that never registered
                        print(f"{vms} VMs in {procs} agent processes: not measured ({exc})")
                        results["e2e"].append({"vms": vms, "agent_processes": procs,
                                               "error": str(exc)})
                        continue
                    print(e2e_table(found, poll_s))
                    results["e2e"].append(found.__dict__)
                    e2e_results.append(found)

    print("\n-- Targets")
    lines = verdicts(core_rows, coord_rows, e2e_results, poll_s)
    print("\n".join(f"  {line}" for line in lines))
    results["verdicts"] = lines
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"\nscale benchmark: {time.perf_counter() - started:.0f} s; figures in "
          f"{args.out / 'scale.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
