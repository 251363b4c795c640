"""`quorumgate imds-sim`: run the IMDS emulator for a simulated cluster."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from pydantic import ValidationError

from imds_sim.app import build_app
from imds_sim.model import Simulation
from imds_sim.schemas import ClusterSpec
from imds_sim.server import bind, make_server
from registry.clock import Clock, VirtualClock, parse_clock


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="quorumgate imds-sim",
        description="Azure IMDS emulator: each VM at /vms/<vm>/metadata/..., the default "
        "VM at /metadata/..., control API at /control/... (see imds_sim/README.md).",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8169, help="0 picks a free port")
    clock = p.add_mutually_exclusive_group()
    clock.add_argument("--clock", help="'real' or virtual:EPOCH:SPEED:ANCHOR")
    clock.add_argument("--speed", type=float, help="virtual clock starting now at this speed")
    p.add_argument("--cluster-file", type=Path, help="JSON cluster spec (see README)")
    p.add_argument("--cluster-fds", type=int, default=3)
    p.add_argument("--cluster-uds", type=int, default=5)
    p.add_argument("--cluster-vms", type=int, default=15)
    p.add_argument("--topology", choices=["availability-set", "zonal", "flex", "flex-zonal"],
                   default="availability-set",
                   help="availability-set: FD x UD round robin; zonal: zonal VMs in zones "
                        "1..--zones (IMDS FD/UD 0); flex: a Flexible scale set over "
                        "--cluster-fds fault domains, no update domain; flex-zonal: a "
                        "zone-spanning Flexible scale set")
    p.add_argument("--zones", type=int, default=3, help="zonal topologies: zones 1..N")
    p.add_argument("--prefix", default="vm-", help="generated VM names: PREFIX0, PREFIX1...")
    p.add_argument("--availability-set", default="as-1")
    p.add_argument("--default-vm", help="VM served at bare /metadata (default: the first)")
    p.add_argument("--rate-limit", type=int, default=5, help="requests/s per VM, 0: off")
    p.add_argument("--log-level", default="info")
    return p


def make_clock(args: argparse.Namespace) -> Clock:
    if args.speed is not None:
        return VirtualClock.starting_now(speed=args.speed)
    return parse_clock(args.clock)


def make_spec(args: argparse.Namespace) -> ClusterSpec:
    if args.cluster_file:
        data = json.loads(args.cluster_file.read_text())
    else:
        data = {
            "fds": args.cluster_fds,
            "uds": args.cluster_uds,
            "vms": args.cluster_vms,
            "topology": args.topology,
            "zones": args.zones,
            "prefix": args.prefix,
            "availability_set": args.availability_set,
            "rate_limit_per_s": args.rate_limit,
        }
    if args.default_vm:
        data["default_vm"] = args.default_vm
    return ClusterSpec.model_validate(data)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        clock = make_clock(args)
        spec = make_spec(args)
        sim = Simulation.from_spec(spec, clock.now())
    except (OSError, ValueError, ValidationError) as exc:
        print(f"imds-sim: {exc}", file=sys.stderr)
        return 2
    try:
        sock = bind(args.host, args.port)
    except OSError as exc:
        print(f"imds-sim: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(
        f"imds-sim listening on http://{shown}:{port} "
        f"({len(sim.vm_names())} VMs; default VM {sim.default_vm} at /metadata; "
        f"others at /vms/<vm>/metadata; control at /control; clock {clock.spec})",
        flush=True,
    )
    server = make_server(build_app(sim, clock), log_level=args.log_level)
    # uvicorn re-raises the signal that stopped it once it has shut down cleanly;
    # a stop by Ctrl-C or SIGTERM is this command's normal end, so exit 0.
    previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
