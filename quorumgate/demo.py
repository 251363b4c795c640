"""`quorumgate demo`: bring up the local stack and show that each part answers.

This first version starts a standalone ZooKeeper (Debian's package, see `zkserver`) and
the IMDS emulator with a sample cluster, checks both with real requests, prints where
they listen and the FD x UD placement, then runs until Ctrl-C (or exits with `--once`).
Everything it starts it stops on the way out: ZooKeeper by PID, the emulator's thread.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
from kazoo.client import KazooClient

from quorumgate.zkserver import ZooKeeperError, ZooKeeperServer, find_zookeeper, server_mode

IMDS_API = "2021-02-01"
EVENTS_API = "2020-07-01"


class DemoError(RuntimeError):
    """A part of the stack did not come up or did not answer."""


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="quorumgate demo", description=__doc__.splitlines()[0])
    parser.add_argument("--once", action="store_true",
                        help="start, check that everything answers, print, stop, exit")
    parser.add_argument("--zk-hosts", default=os.environ.get("ZK_HOSTS", ""),
                        help="use this ZooKeeper instead of starting one (default: $ZK_HOSTS)")
    parser.add_argument("--zk-port", type=int, default=0, help="local ZooKeeper port (0: free)")
    parser.add_argument("--imds-port", type=int, default=0, help="emulator port (0: free)")
    parser.add_argument("--fds", type=int, default=3, help="fault domains")
    parser.add_argument("--uds", type=int, default=5, help="update domains")
    parser.add_argument("--vms", type=int, default=15, help="simulated VMs")
    return parser.parse_args(list(argv))


@contextlib.contextmanager
def zookeeper(hosts: str, port: int) -> Iterator[str]:
    """`hosts` as given, or a local standalone server for the duration of the block."""
    if hosts:
        print(f"ZooKeeper      {hosts} (given, not started by the demo)", flush=True)
        yield hosts
        return
    if problem := find_zookeeper():
        raise DemoError(f"{problem} (or run `make demo`, which installs it)")
    with ZooKeeperServer(client_port=port) as server:
        print(f"ZooKeeper      {server.hosts} (standalone, pid {server.pid}, "
              f"log {server.log_path})", flush=True)
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
    """Fetch one VM's compute metadata and scheduled events as an agent would."""
    headers = {"Metadata": "true"}
    base = f"{url}/vms/{vm}/metadata"
    try:
        with httpx.Client(timeout=10.0, trust_env=False, headers=headers) as http:
            compute = http.get(f"{base}/instance/compute", params={"api-version": IMDS_API})
            events = http.get(f"{base}/scheduledevents", params={"api-version": EVENTS_API})
            compute.raise_for_status()
            events.raise_for_status()
    except httpx.HTTPError as exc:
        raise DemoError(f"IMDS emulator {url} does not answer: {exc!r}") from exc
    return {"compute": compute.json(), "events": events.json()}


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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    from imds_sim.testing import running_emulator  # lazy: the demo is the only user here

    stopping = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: stopping.set())
    cluster = {"fds": args.fds, "uds": args.uds, "vms": args.vms}
    try:
        with (
            zookeeper(args.zk_hosts, args.zk_port) as hosts,
            running_emulator(cluster=cluster, port=args.imds_port) as emulator,
        ):
            vms = emulator.control.get("/vms").json()
            print(f"IMDS emulator  {emulator.url} ({len(vms)} VMs; VM metadata at "
                  f"{emulator.url}/vms/<vm>/metadata/..., control API at {emulator.url}/control)",
                  flush=True)
            print(f"check ZooKeeper: {check_zookeeper(hosts)}")
            sample = check_emulator(emulator.url, vms[0]["name"])
            compute = sample["compute"]
            print(f"check IMDS: {compute['name']} is in FD {compute['platformFaultDomain']}, "
                  f"UD {compute['platformUpdateDomain']}; scheduled events incarnation "
                  f"{sample['events']['DocumentIncarnation']}")
            print(f"placement ({args.fds} FDs x {args.uds} UDs):\n{topology_grid(vms)}",
                  flush=True)
            if args.once:
                print("demo: everything answers; stopping (--once)")
                return 0
            print("demo: running; Ctrl-C stops", flush=True)
            while not stopping.wait(0.5):
                pass
    except KeyboardInterrupt:
        pass
    except (DemoError, ZooKeeperError) as exc:
        print(f"quorumgate demo: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("demo: stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
