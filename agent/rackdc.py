"""`quorumgate agent rackdc` (also `quorumgate topology rackdc`): this VM's
cassandra-rackdc.properties from IMDS, through the agent's own IMDS client (the only one:
`Metadata: true`, no proxy, no redirects, rate limit, retries with backoff).

dc = compute.location, rack = the VM's maintenance domain (GossipingPropertyFileSnitch):
`ud<M>` in an availability set, `zone<Z>` for a zonal VM, `fd<N>` in a Flexible scale set
(registry/domains.py) — the unit the platform takes down together, so that Cassandra's
NetworkTopologyStrategy keeps replicas in different units. `--rack-by fault-domain` keeps
`fd<N>` everywhere (spread against hardware failure instead).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from agent.imds import DEFAULT_URL, ImdsClient, ImdsError
from agent.imds_models import InstanceMetadata
from registry.domains import DomainMode, Where, domain_of, kind_of, rack_name, resolve


class RackdcError(Exception):
    pass


def rackdc_properties(meta: InstanceMetadata, prefer_local: bool = True,
                      rack_by: str = "maintenance-domain") -> str:
    if not meta.location.strip():
        raise RackdcError("IMDS gave no compute.location (the dc)")
    where = Where(meta.fd, meta.ud, meta.zone, meta.scale_set, meta.flexible)
    if rack_by == "fault-domain":
        mode: DomainMode | None = DomainMode.FAULT_DOMAIN
    else:
        mode, _ = resolve(DomainMode.AUTO, [(meta.name, where)])
    domain = domain_of(mode, where) if mode is not None else None
    if domain is None:
        what = "platformFaultDomain" if mode is DomainMode.FAULT_DOMAIN else (
            "zone" if mode is DomainMode.ZONE else "platformUpdateDomain")
        raise RackdcError(f"IMDS gave no usable {what} ({kind_of(where)})")
    rack = rack_name(str(domain))
    return (f"# cassandra-rackdc.properties for {meta.name}, written by quorumgate topology "
            f"rackdc from IMDS\n"
            f"# dc = compute.location, rack = {domain} ({kind_of(where)})\n"
            f"dc={meta.location.strip()}\nrack={rack}\n"
            f"prefer_local={'true' if prefer_local else 'false'}\n")


def _reason(exc: ImdsError) -> str:
    if exc.code == "connect":
        return f"connection refused or unreachable ({exc})"
    if exc.code.isdigit() and 300 <= int(exc.code) < 400:
        return f"refusing to follow a redirect ({exc.code})"
    return str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="quorumgate topology rackdc",
                                description="cassandra-rackdc.properties for this VM, "
                                            "from IMDS (GossipingPropertyFileSnitch)")
    p.add_argument("--imds-url", default=os.environ.get("QG_IMDS_URL") or DEFAULT_URL,
                   help=f"IMDS base URL (default {DEFAULT_URL})")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds for IMDS, retries included (default 120: a VM's first "
                        "IMDS call may take that long)")
    p.add_argument("--no-prefer-local", action="store_true", help="prefer_local=false")
    p.add_argument("--rack-by", choices=["maintenance-domain", "fault-domain"],
                   default="maintenance-domain",
                   help="rack = the maintenance domain (ud<M>, zone<Z>, fd<N>; default) or "
                        "the fault domain (fd<N>)")
    p.add_argument("-o", "--output", help="write this file (atomically) instead of stdout")
    args = p.parse_args(sys.argv[1:] if argv is None else list(argv))
    client = ImdsClient(args.imds_url, first_call_timeout_s=args.timeout,
                        timeout_s=min(5.0, args.timeout), deadline_s=args.timeout,
                        max_attempts=8)
    try:
        text = rackdc_properties(client.instance(), prefer_local=not args.no_prefer_local,
                                 rack_by=args.rack_by)
    except ImdsError as exc:
        print(f"quorumgate topology rackdc: error: IMDS {args.imds_url}: {_reason(exc)}",
              file=sys.stderr)
        return 1
    except RackdcError as exc:
        print(f"quorumgate topology rackdc: error: IMDS {args.imds_url}: {exc}",
              file=sys.stderr)
        return 1
    finally:
        client.close()
    if not args.output:
        sys.stdout.write(text)
        return 0
    tmp = f"{args.output}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, args.output)
    except OSError as exc:
        print(f"quorumgate topology rackdc: error: cannot write {args.output}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0
