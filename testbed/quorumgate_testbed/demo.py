"""`quorumgate demo`: the whole product on one machine, and a maintenance rollout.

It starts a standalone ZooKeeper (Debian's package, see `zkserver`) unless one is
given, the IMDS emulator with a simulated cluster (15 VMs over 3 FDs x 5 UDs, four
3-replica groups, one placed badly on purpose), one agent per VM under a VM supervisor,
and two coordinator replicas. Then the platform walks the update domains one by one on
a virtual clock; the terminal shows each event's drains, approval, acknowledgement,
reboot and restore, and the holds with their reasons; finally a summary table.
`--topology zonal` makes the VMs zonal (zones 1-3, no availability set) and the platform
walks zone by zone; `--topology flex` puts them in a Flexible scale set over 3 fault
domains (no update domains) and the platform walks fault domain by fault domain.
`--workload patroni` puts a real Patroni/PostgreSQL cluster on three of the VMs
(testbed/quorumgate_testbed/workloads/patroni.py) and reports lost writes, outages and failovers;
`--workload hdfs` and `--workload kafka` run real Hadoop and Kafka daemons
(testbed/quorumgate_testbed/workloads/hdfs.py, kafka.py) and print their figures as a table
(`--compare`: ack-on-sight and never-ack beside quorumgate).
Everything it starts it stops on the way out.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from quorumgate_testbed.zkserver import ZooKeeperError, ZooKeeperServer, find_zookeeper, server_mode
from registry.zookeeper import KazooClient

IMDS_API = "2021-02-01"


class DemoError(RuntimeError):
    """A part of the stack did not come up or did not answer."""


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="quorumgate demo", description=__doc__.splitlines()[0])
    parser.add_argument("--once", action="store_true",
                        help="run the rollout, print the summary, stop everything and exit")
    parser.add_argument("--json", action="store_true",
                        help="print the summary as JSON on stdout (progress goes to stderr)")
    parser.add_argument("--zk-hosts", default=os.environ.get("ZK_HOSTS", ""),
                        help="use this ZooKeeper instead of starting one (default: $ZK_HOSTS)")
    parser.add_argument("--zk-port", type=int, default=0, help="local ZooKeeper port (0: free)")
    parser.add_argument("--topology", choices=["availability-set", "zonal", "flex"],
                        default="availability-set",
                        help="availability-set: FDs x UDs, walked UD by UD; zonal: zonal VMs "
                             "in zones 1-3, walked zone by zone; flex: a Flexible scale set "
                             "over --fds fault domains, walked FD by FD")
    parser.add_argument("--fds", type=int, default=3, help="fault domains")
    parser.add_argument("--uds", type=int, default=5, help="update domains")
    parser.add_argument("--vms", type=int, default=15, help="simulated VMs")
    parser.add_argument("--speed", type=float, default=None,
                        help="virtual seconds per real second (default 60: 15 min in 15 s; "
                             "15 with --workload patroni, which runs in real time)")
    parser.add_argument("--walk", choices=["sequential", "together"], default="sequential",
                        help="one UD's event after the other (Azure's walk) or all at once")
    parser.add_argument("--coordinators", type=int, default=2, help="coordinator replicas")
    parser.add_argument("--drain-seconds", type=float, default=30.0,
                        help="how long each VM's drain hook takes, in virtual seconds")
    parser.add_argument("--timeout", type=float, default=180.0,
                        help="real seconds before the rollout gives up")
    parser.add_argument("--workload", choices=["none", "patroni", "hdfs", "kafka"],
                        default="none",
                        help="patroni: a real 3-member Patroni/PostgreSQL cluster on vm-0..2 "
                             "(one per UD), its group from Patroni's members in ZooKeeper, "
                             "switchover drains and a write load (6 VMs, 3 FDs x 3 UDs); "
                             "hdfs: a real NameNode and a DataNode on each of 6 VMs, racks "
                             "from quorumgate, groups from the NameNode, maintenance-state "
                             "drains, a WebHDFS client; kafka: 3 real KRaft brokers (one per "
                             "UD), leadership-moving drains, an idempotent acks=all producer "
                             "and a checking consumer")
    parser.add_argument("--compare", action="store_true",
                        help="hdfs, kafka: after the rollout, run the same rollout with "
                             "ack-on-sight and never-ack on fresh clusters and print the "
                             "three side by side (about 10 more minutes)")
    return parser.parse_args(list(argv))


@contextlib.contextmanager
def zookeeper(hosts: str, port: int, say: Any = print) -> Iterator[str]:
    """`hosts` as given, or a local standalone server for the duration of the block."""
    if hosts:
        say(f"ZooKeeper      {hosts} (given, not started by the demo)")
        yield hosts
        return
    if problem := find_zookeeper():
        raise DemoError(f"{problem} (or run `make demo`, which installs it)")
    with ZooKeeperServer(client_port=port) as server:
        say(f"ZooKeeper      {server.hosts} (standalone, pid {server.pid}, "
            f"log {server.log_path})")
        yield server.hosts


def check_zookeeper(hosts: str) -> str:
    """A real client round trip (not `ruok`, which answers without quorum)."""
    client = KazooClient(hosts=hosts, timeout=10.0)
    try:
        client.start(timeout=15)
        client.ensure_path("/quorumgate")
        clusters = client.get_children("/quorumgate")
    except Exception as exc:
        raise DemoError(f"ZooKeeper {hosts} does not answer: {exc!r}") from exc
    finally:
        client.stop()
        client.close()
    host, _, port = hosts.split(",")[0].rpartition(":")
    mode = server_mode(host, int(port.split("/")[0])) or "?"
    return f"mode {mode}, {len(clusters)} cluster(s) under /quorumgate"


def check_emulator(url: str, vm: str) -> dict[str, Any]:
    """Fetch one VM's compute metadata as an agent would (that VM's agent is polling too:
    IMDS's 5 requests/second limit applies, so a 429 is waited out, a few times)."""
    headers = {"Metadata": "true"}
    address = f"{url}/vms/{vm}/metadata/instance/compute"
    try:
        with httpx.Client(timeout=10.0, trust_env=False, headers=headers) as http:
            for _ in range(10):
                compute = http.get(address, params={"api-version": IMDS_API})
                if compute.status_code != 429:
                    break
                time.sleep(0.3)
            compute.raise_for_status()
    except httpx.HTTPError as exc:
        raise DemoError(f"IMDS emulator {url} does not answer: {exc!r}") from exc
    return {"compute": compute.json()}


def domain_lines(labels: dict[str, str]) -> str:
    """One line per maintenance domain with its VMs (zonal and flex clusters)."""
    by_domain: dict[str, list[str]] = {}
    for vm, label in labels.items():
        by_domain.setdefault(label, []).append(vm)
    order = sorted(by_domain, key=lambda d: (d.split(" ")[0], d.split(" ")[-1].zfill(4)))
    return "\n".join(f"  {d:<8} {' '.join(by_domain[d])}" for d in order)


def topology_grid(vms: list[dict[str, Any]]) -> str:
    """The FD x UD placement as a text table, one VM name per cell (or several)."""
    fds = sorted({vm["fd"] for vm in vms})
    uds = sorted({vm["ud"] for vm in vms})
    cells: dict[tuple[int, int], list[str]] = {}
    for vm in vms:
        cells.setdefault((vm["fd"], vm["ud"]), []).append(vm["name"])
    rows = [[""] + [f"UD{ud}" for ud in uds]]
    rows += [[f"FD{fd}"] + [",".join(cells.get((fd, ud), [])) or "." for ud in uds] for fd in fds]
    width = max(len(cell) for row in rows for cell in row)
    return "\n".join("  " + " ".join(f"{cell:<{width}}" for cell in row).rstrip() for row in rows)


def workload_lines(report: dict[str, Any]) -> str:
    """The workload's figures under the summary table (Patroni: writes and failovers)."""
    if "acknowledged_writes" not in report:
        return ""
    outage = report.get("longest_write_outage_s")
    failed = report.get("failed_write_s")
    return (f"writes acknowledged {report['acknowledged_writes']}  lost "
            f"{report['lost_writes']}  longest write outage "
            f"{outage if outage is not None else '-'} s  failed writes "
            f"{failed if failed is not None else '-'} s (real)\n"
            f"leader changes {len(report.get('leader_changes', []))}: switchovers by the "
            f"drain hook {report.get('switchovers_by_hook', 0)}, unplanned failovers "
            f"{report.get('unplanned_failovers', 0)}")


def compare(workload: str, hosts: str, speed: float, say: Any) -> dict[str, Any]:
    """The same rollout under ack-on-sight and never-ack, each on a fresh stack."""
    from quorumgate_testbed.rollout import rollout_stack
    from quorumgate_testbed.workloads import hdfs, kafka

    make = hdfs.hdfs_spec if workload == "hdfs" else kafka.kafka_spec
    rows = {}
    for strategy in ("ack-on-sight", "never-ack"):
        say(f"\n--- the same rollout under {strategy} (fresh cluster) ---")
        spec = make(strategy, speed=speed, say=say)
        with rollout_stack(spec, hosts, f"demo-{strategy}-{uuid.uuid4().hex[:6]}",
                           out=say) as rollout:
            spec.workload.wait_ready()  # type: ignore[attr-defined]
            summary = rollout.run()
        rows[strategy] = (summary, summary.workload)
    return rows


def side_by_side(workload: str, rows: dict[str, Any]) -> str:
    """The workload's figures, one line per strategy (`bench.hdfs`, `bench.kafka`)."""
    from quorumgate_testbed.workloads import hdfs, kafka

    table = hdfs.report_table if workload == "hdfs" else kafka.report_table
    return table(rows)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    from quorumgate_testbed.rollout import (  # lazy: heavy imports
        RolloutSpec,
        demo_groups,
        rollout_stack,
    )

    out = sys.stderr if args.json else sys.stdout

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    handled: tuple[type[Exception], ...] = (DemoError, ZooKeeperError)
    if args.workload == "patroni":
        from quorumgate_testbed.rollout import GroupSpec
        from quorumgate_testbed.workloads.patroni import PatroniError, find_patroni, patroni_spec

        if problem := find_patroni():
            print(f"quorumgate demo: {problem}", file=sys.stderr)
            return 1
        args.speed = args.speed or 15.0
        args.fds, args.uds, args.vms = 3, 3, 6
        spec = patroni_spec(
            speed=args.speed, vms=args.vms, coordinators=args.coordinators, say=say,
            timeout_s=max(args.timeout, 300.0),
            groups=[GroupSpec("cache", ["vm-3", "vm-4", "vm-5"])])
        spec.walk = args.walk
        handled += (PatroniError,)
        spec.drain_command = f"sleep {args.drain_seconds / args.speed:.3f}"  # VMs 3-5
    elif args.workload in ("hdfs", "kafka"):
        from quorumgate_testbed.workloads import hdfs, kafka

        module: Any = hdfs if args.workload == "hdfs" else kafka
        find = hdfs.find_hdfs if args.workload == "hdfs" else kafka.find_kafka
        if problem := find():
            print(f"quorumgate demo: {problem}", file=sys.stderr)
            return 1
        args.speed = args.speed or 4.0
        make = hdfs.hdfs_spec if args.workload == "hdfs" else kafka.kafka_spec
        spec = make(speed=args.speed, coordinators=args.coordinators, say=say,
                    timeout_s=max(args.timeout, 900.0))
        args.fds, args.uds, args.vms = 3, 3, spec.cluster["vms"]
        spec.walk = args.walk
        handled += (module.HdfsError if args.workload == "hdfs" else module.KafkaError,)
    else:
        args.speed = args.speed or 60.0
        shape: dict[str, Any] = {"fds": args.fds, "uds": args.uds, "vms": args.vms}
        if args.topology != "availability-set":
            shape = {"topology": args.topology, "fds": args.fds, "vms": args.vms}
        spec = RolloutSpec(
            cluster=shape, speed=args.speed,
            walk=args.walk, coordinators=args.coordinators, timeout_s=args.timeout,
            drain_command=f"sleep {args.drain_seconds / args.speed:.3f}")
        if args.topology != "availability-set":
            spec.groups = demo_groups(args.topology)
        needed = {vm for g in spec.groups for vm in g.members}
        if any(int(vm.rsplit("-", 1)[1]) >= args.vms for vm in needed):
            spec.groups = []  # the default groups need vm-0 .. vm-11 (zonal, flex: vm-12)
    if args.topology != "availability-set" and args.workload != "none":
        print(f"quorumgate demo: --topology {args.topology} runs without a workload",
              file=sys.stderr)
        return 2
    spec.api = True  # REST API, dashboard and operator commands on every coordinator
    stopping = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: stopping.set())
    try:
        with zookeeper(args.zk_hosts, args.zk_port, say) as hosts:
            say(f"check ZooKeeper: {check_zookeeper(hosts)}")
            cluster = f"demo-{uuid.uuid4().hex[:6]}"
            with rollout_stack(spec, hosts, cluster, out=say) as rollout:
                emulator = rollout.emu
                vms = emulator.control.get("/vms").json()
                say(f"IMDS emulator  {emulator.url} ({len(vms)} VMs at "
                    f"{emulator.url}/vms/<vm>/metadata/..., control API {emulator.url}/control)")
                sample = check_emulator(emulator.url, vms[0]["name"])["compute"]
                say(f"check IMDS: {sample['name']} answers "
                    f"(FD {sample['platformFaultDomain'] or '-'}, "
                    f"UD {sample['platformUpdateDomain'] or '-'}, "
                    f"zone {sample['zone'] or '-'}, "
                    f"scale set {sample['vmScaleSetName'] or '-'})")
                if args.topology == "availability-set":
                    say(f"placement ({args.fds} FDs x {args.uds} UDs):\n{topology_grid(vms)}")
                else:
                    labels = {vm: rollout.watcher.ud_of[vm] for vm in rollout.domain_of}
                    say(f"placement ({args.topology}; maintenance domain: "
                        f"{rollout.domain_name}):\n{domain_lines(labels)}")
                for group in spec.groups:
                    say(f"group {group.name}: {', '.join(group.members)} "
                        f"(min_available {group.min_available})")
                for line in rollout.endpoints():
                    say(line)
                describe = getattr(spec.workload, "describe", None)
                if describe and not hasattr(spec.workload, "wait_ready"):
                    for line in describe():
                        say(line)
                if wait_ready := getattr(spec.workload, "wait_ready", None):
                    say(f"starting {args.workload} once the agents are registered "
                        f"(racks come from quorumgate) ...")
                    wait_ready()
                describe = getattr(spec.workload, "describe", None)
                for line in describe() if describe and wait_ready else []:
                    say(line)
                unit = {"availability-set": "update-domain", "zonal": "zone-by-zone",
                        "flex": "fault-domain"}[args.topology]
                say(f"cluster {cluster}: {len(vms)} agents and {args.coordinators} "
                    f"coordinators up; the platform starts its {unit} walk "
                    f"(clock x{args.speed:g})")
                summary = rollout.run()
                if args.json:
                    print(summary.to_json(), flush=True)
                else:
                    say("")
                    say(summary.table())
                    if summary.workload and args.workload in ("hdfs", "kafka"):
                        rows = {"quorumgate": (summary, summary.workload)}
                        if args.compare:
                            rows.update(compare(args.workload, hosts, args.speed, say))
                        say(side_by_side(args.workload, rows))
                    elif summary.workload:
                        say(workload_lines(summary.workload))
                ok = summary.completed and not summary.violations
                if args.once or stopping.is_set():
                    return 0 if ok else 1
                say("demo: rollout done; the stack stays up until Ctrl-C")
                while not stopping.wait(0.5):
                    pass
                return 0 if ok else 1
    except KeyboardInterrupt:
        return 0
    except handled as exc:
        print(f"quorumgate demo: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        print("demo: stopped", file=out)


if __name__ == "__main__":
    sys.exit(main())
