"""`quorumgate topology hdfs | labels | cassandra | kafka | rackdc`: a VM's place for
other systems.

Every VM has a *maintenance domain*, the unit the platform takes down together (see
`registry.domains`): the update domain of an availability set, the zone of zonal VMs,
the fault domain of a regional Flexible scale set; the coordinator resolves it for the
cluster (policy `maintenance_domain`, `auto` by default) and GET /v1/vms gives it per
VM (`maintenance_domain`: "UD 3", "zone 2", "FD 1") with how the VM was deployed
(`kind`). What each output holds:

hdfs HOST_OR_IP...
    HDFS rack awareness (`net.topology.script.file.name`): one rack per argument, in
    order, by how the VM was deployed (its `kind`):
        availability set      /fd<N>/ud<M>     (as before)
        zonal VM              /zone<Z>/fd<N>   (the zone, then the fault domain in it)
        Flexible scale set    /fd<N>           (its fault domain is its maintenance domain)
    `/default-rack` (or `--default-rack`) for hosts it does not know or whose place is
    not known. An argument matches a VM by name, by short host name (first DNS label)
    or by IPv4 address, from the coordinator's GET /v1/vms. Answers come from a cache
    file while it is fresh (`--ttl`, 60 s); when the coordinator cannot be reached a
    stale cache still answers, and with neither every host is `/default-rack`. It
    always exits 0: the NameNode treats a failing script badly. Standard library only,
    no imports of the web stack: it runs on every DataNode registration.
    Cache: $QG_TOPOLOGY_CACHE, else /var/cache/quorumgate/topology.json when writable,
    else $XDG_CACHE_HOME (~/.cache)/quorumgate/topology.json.
    Note: HDFS wants every leaf at the same depth; `/fd<N>/ud<M>` and `/zone<Z>/fd<N>`
    have two levels, `/fd<N>` and `/default-rack` one, so a NameNode refuses an unknown
    host next to known ones (InvalidTopologyException): give the default the same depth
    (`--default-rack /fd-unknown/ud-unknown`, `/zone-unknown/fd-unknown`). A cluster
    that mixes Flexible scale sets with other deployments mixes depths too.

labels [VM...]
    Kubernetes-style node labels (see `registry.labels`) as `kubectl label node` lines,
    or JSON with --json: `topology.kubernetes.io/region` = the location;
    `topology.kubernetes.io/zone` = the zone for zonal VMs, in AKS's form
    `<location>-<zone>` (e.g. westeurope-2), and otherwise (availability sets, regional
    Flexible scale sets) the fault domain `<location>-fd<N>` as before, with
    `quorumgate.io/zone-source` saying which; `quorumgate.io/fault-domain`,
    `quorumgate.io/update-domain` when known; and `quorumgate.io/maintenance-domain` =
    the VM's maintenance domain (`ud-3`, `zone-2`, `fd-1`; left out when unknown) for
    `topologySpreadConstraints` that must survive a rollout.

cassandra [VM...]
    GossipingPropertyFileSnitch's `cassandra-rackdc.properties` from the coordinator:
    dc = the VM's location, rack = its maintenance domain (`ud3`, `zone2`, `fd1`), so
    NetworkTopologyStrategy puts each range's replicas in distinct maintenance domains
    and a rollout takes at most one of them. One VM: the file (`-o FILE` writes it);
    several or none (every VM): one `VM: dc=... rack=...` line each, or --json.

kafka [VM...]
    `broker.rack` = the broker VM's maintenance domain (`ud3`, `zone2`, `fd1`): Kafka's
    rack-aware replica assignment then puts a partition's replicas in distinct
    maintenance domains. One VM: the `broker.rack=...` line (append it to
    server.properties); several or none: one `VM: broker.rack=...` line each, or --json.

    cassandra and kafka fail (exit 1) for a VM whose maintenance domain is unknown, and
    say why (it reported none; or the cluster mixes deployments and the policy names
    no unit: `quorumgate policy set --maintenance-domain ...`).

rackdc
    `cassandra-rackdc.properties` for this VM from IMDS alone (no coordinator): dc =
    compute.location, rack = fd<platformFaultDomain>, prefer_local=true.

Coordinator: --url (default $QG_URL, else http://127.0.0.1:8080), --token (default
$QG_TOKEN, else the file named by $QG_TOKEN_FILE; the viewer role is enough).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import textwrap
import time
from collections.abc import Sequence
from typing import Any

from registry.domains import rack_name

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_RACK = "/default-rack"
DEFAULT_TTL_S = 60.0
REFETCH_UNKNOWN_S = 5.0
"""A fresh cache that misses a host is refreshed, but not more often than this."""
SYSTEM_CACHE = "/var/cache/quorumgate/topology.json"
IPV4 = re.compile(r"^(\d{1,3}(?:\.\d{1,3}){3})(?::\d+)?$")


def _say(message: str) -> None:
    print(f"quorumgate topology: {message}", file=sys.stderr)


# ---------------------------------------------------------------- coordinator access


def _token(given: str | None) -> str:
    if given:
        return given
    if token := os.environ.get("QG_TOKEN", ""):
        return token
    if path := os.environ.get("QG_TOKEN_FILE", ""):
        try:
            with open(path, encoding="utf-8") as f:
                return f.read().strip()
        except OSError as exc:
            _say(f"cannot read $QG_TOKEN_FILE {path}: {exc.strerror}")
    return ""


class FetchError(Exception):
    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
        """Worth retrying: a connection problem, a timeout, 429 or 5xx."""


def _opener() -> Any:
    """urllib without proxies from the environment and without following redirects."""
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any,
                             newurl: str) -> Any:
            raise FetchError(f"refusing to follow a redirect ({code}) to {newurl}")

    return urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect)


def get_json(url: str, headers: dict[str, str], timeout: float) -> Any:
    """GET `url` and decode its JSON; FetchError with a readable reason otherwise."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"Accept": "application/json", **headers})
    try:
        with _opener().open(request, timeout=timeout) as response:
            return json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read().decode("utf-8", "replace")).get("detail", "")
        except (ValueError, AttributeError, OSError):
            detail = ""
        raise FetchError(f"{exc.code} {exc.reason}" + (f": {detail}" if detail else ""),
                         transient=exc.code == 429 or exc.code >= 500) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        text = ("connection refused" if isinstance(reason, ConnectionRefusedError)
                else str(reason))
        raise FetchError(text, transient=True) from None
    except OSError as exc:  # timeouts, resets
        raise FetchError(str(exc) or type(exc).__name__, transient=True) from None
    except ValueError as exc:  # not JSON
        raise FetchError(f"the answer is not JSON ({exc})") from None


def fetch_vms(url: str, token: str, timeout: float) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    vms = get_json(url.rstrip("/") + "/v1/vms", headers, timeout)
    if not isinstance(vms, list):
        raise FetchError("GET /v1/vms did not answer a list")
    return vms


# ---------------------------------------------------------------- hdfs


def default_cache_path() -> str:
    if path := os.environ.get("QG_TOPOLOGY_CACHE"):
        return path
    folder = os.path.dirname(SYSTEM_CACHE)
    if os.access(folder, os.W_OK) or (not os.path.exists(folder)
                                      and os.access(os.path.dirname(folder), os.W_OK)):
        return SYSTEM_CACHE
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "quorumgate", "topology.json")


def read_cache(path: str, url: str) -> dict[str, Any] | None:
    """The cache written for `url`, or None (missing, unreadable, another coordinator)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    if (not isinstance(data, dict) or data.get("url") != url
            or not isinstance(data.get("vms"), list)
            or not isinstance(data.get("fetched_at"), (int, float))):
        return None
    return data


def write_cache(path: str, url: str, vms: list[dict[str, Any]]) -> None:
    keep = ("name", "fd", "ud", "zone", "scale_set", "kind", "address")
    data = {"url": url, "fetched_at": time.time(),
            "vms": [{k: vm.get(k) for k in keep} for vm in vms if isinstance(vm, dict)]}
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, separators=(",", ":"))
        os.replace(tmp, path)  # atomic: a concurrent reader sees the old or the new file
    except OSError as exc:
        _say(f"cannot write the cache {path}: {exc.strerror or exc}")
        with contextlib.suppress(OSError):
            os.unlink(tmp)


ZONAL, FLEX = "zonal", "flexible scale set"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def kind(vm: dict[str, Any]) -> str:
    """How the VM was deployed: the API's `kind`, else as `registry.domains.kind_of`
    would say (an older coordinator, an older cache)."""
    given = vm.get("kind")
    if isinstance(given, str) and given:
        return given
    if vm.get("zone"):
        return ZONAL
    if vm.get("ud") is None and vm.get("scale_set"):
        return FLEX
    return "availability set"


def rack_of(vm: dict[str, Any]) -> str | None:
    """The HDFS rack of a VM row: `/fd<N>/ud<M>` (availability set), `/zone<Z>/fd<N>`
    (zonal), `/fd<N>` (Flexible scale set); None when its place is not known."""
    fd, ud = vm.get("fd"), vm.get("ud")
    if not isinstance(fd, int) or isinstance(fd, bool):
        return None
    how = kind(vm)
    if how == ZONAL:
        zone = _UNSAFE.sub("-", str(vm.get("zone") or "")).strip("-")
        return f"/zone{zone}/fd{fd}" if zone else None
    if how == FLEX:
        return f"/fd{fd}"
    if not isinstance(ud, int) or isinstance(ud, bool):
        return None
    return f"/fd{fd}/ud{ud}"


def rack_index(vms: list[dict[str, Any]]) -> dict[str, str]:
    """name, short name and address (lower case) -> the VM's rack (`rack_of`)."""
    index: dict[str, str] = {}
    short: dict[str, str] = {}
    for vm in vms:
        if not isinstance(vm, dict):
            continue
        rack = rack_of(vm)
        if rack is None:
            continue
        name = str(vm.get("name") or "").lower()
        if name:
            index[name] = rack
            short.setdefault(name.split(".")[0], rack)
        address = str(vm.get("address") or "").strip()
        if address:
            index[address] = rack
    for key, rack in short.items():
        index.setdefault(key, rack)
    return index


def resolve(host: str, index: dict[str, str]) -> str | None:
    key = host.strip().lower().rstrip(".")
    if ip := IPV4.match(key):
        return index.get(ip.group(1))
    if key in index:
        return index[key]
    return index.get(key.split(".")[0])


def hdfs(hosts: Sequence[str], url: str, token: str, cache_path: str, ttl: float,
         timeout: float, default_rack: str) -> list[str]:
    """The racks of `hosts`, in order: cache, coordinator, stale cache, default."""
    if not hosts:
        return []
    cache = read_cache(cache_path, url)
    age = time.time() - cache["fetched_at"] if cache else None
    vms: list[dict[str, Any]] | None = cache["vms"] if cache else None
    index = rack_index(vms) if vms is not None else {}
    fresh = age is not None and 0 <= age < ttl
    unknown = any(resolve(h, index) is None for h in hosts)
    if not fresh or (unknown and age is not None and age >= REFETCH_UNKNOWN_S):
        try:
            vms = fetch_vms(url, token, timeout)
        except FetchError as exc:
            if cache is not None:
                _say(f"coordinator {url}: {exc}; answering from the cache of "
                     f"{age:.0f} s ago")
            else:
                _say(f"coordinator {url}: {exc}; no cache at {cache_path}: "
                     f"every host is {default_rack}")
        else:
            write_cache(cache_path, url, vms)
            index = rack_index(vms)
    return [resolve(h, index) or default_rack for h in hosts]


def main_hdfs(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="quorumgate topology hdfs",
                                description="HDFS rack-awareness script: one rack per "
                                            "host or IP, in order: /fd<N>/ud<M> for an "
                                            "availability set, /zone<Z>/fd<N> for zonal "
                                            "VMs, /fd<N> for a Flexible scale set")
    p.add_argument("hosts", nargs="*", metavar="HOST_OR_IP")
    _coordinator_args(p)
    p.add_argument("--cache", help="cache file (default: $QG_TOPOLOGY_CACHE, else "
                                   f"{SYSTEM_CACHE} when writable, else ~/.cache/...)")
    p.add_argument("--ttl", type=float, default=float(os.environ.get("QG_TOPOLOGY_TTL", 0)
                                                      or DEFAULT_TTL_S),
                   help="seconds a cache answers without asking (default 60)")
    p.add_argument("--timeout", type=float, default=2.0,
                   help="seconds to wait for the coordinator (default 2)")
    p.add_argument("--default-rack", default=os.environ.get("QG_DEFAULT_RACK") or DEFAULT_RACK,
                   help="rack of unknown hosts (default /default-rack; give it the depth "
                        "of the others, e.g. /fd-unknown/ud-unknown or "
                        "/zone-unknown/fd-unknown)")
    args = p.parse_intermixed_args(list(argv))
    url = args.url.rstrip("/")
    try:
        racks = hdfs(args.hosts, url, _token(args.token), args.cache or default_cache_path(),
                     args.ttl, args.timeout, args.default_rack)
    except Exception as exc:  # never fail the NameNode: answer the default
        _say(f"unexpected error, answering {args.default_rack}: {exc!r}")
        racks = [args.default_rack] * len(args.hosts)
    if racks:
        sys.stdout.write("\n".join(racks) + "\n")
    return 0


# ---------------------------------------------------------------- labels


def _coordinator_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=os.environ.get("QG_URL") or DEFAULT_URL,
                   help=f"coordinator API (default $QG_URL, else {DEFAULT_URL})")
    p.add_argument("--token", default=None,
                   help="bearer token (default $QG_TOKEN, else the file $QG_TOKEN_FILE)")


def main_labels(argv: Sequence[str]) -> int:
    from registry.labels import node_labels

    p = argparse.ArgumentParser(prog="quorumgate topology labels",
                                description="Kubernetes node labels for each VM (all VMs "
                                            "when none is named): topology.kubernetes.io/"
                                            "zone is <location>-<zone> for zonal VMs, "
                                            "<location>-fd<N> otherwise; "
                                            "quorumgate.io/maintenance-domain is the VM's "
                                            "maintenance domain (ud-3, zone-2, fd-1)")
    p.add_argument("vms", nargs="*", metavar="VM")
    _coordinator_args(p)
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--json", action="store_true", help="{vm: {label: value}}")
    args = p.parse_intermixed_args(list(argv))
    url = args.url.rstrip("/")
    try:
        vms = fetch_vms(url, _token(args.token), args.timeout)
    except FetchError as exc:
        _say(f"error: coordinator {url}: {exc}")
        return 1
    by_name = {vm["name"]: vm for vm in vms if isinstance(vm, dict) and vm.get("name")}
    missing = [name for name in args.vms if name not in by_name]
    if missing:
        _say(f"error: unknown VM{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
        return 1
    names = args.vms or sorted(by_name)
    labels = {name: with_domain(node_labels(by_name[name].get("fd"), by_name[name].get("ud"),
                                            by_name[name].get("location") or "",
                                            by_name[name].get("zone") or ""),
                                by_name[name])
              for name in names}
    if args.json:
        print(json.dumps(labels, indent=2, sort_keys=True))
    else:
        for name, values in labels.items():
            pairs = " ".join(f"{k}={v}" for k, v in values.items())
            print(f"kubectl label node {name} --overwrite {pairs}")
    return 0


MAINTENANCE_DOMAIN = "quorumgate.io/maintenance-domain"


def with_domain(labels: dict[str, str], vm: dict[str, Any]) -> dict[str, str]:
    """`labels` and, when the VM's maintenance domain is known, MAINTENANCE_DOMAIN."""
    from registry.labels import label_value

    domain = vm.get("maintenance_domain")
    if isinstance(domain, str) and domain:
        labels[MAINTENANCE_DOMAIN] = label_value(domain.lower().replace(" ", "-"))
    return labels


# ---------------------------------------------------------------- cassandra, kafka


def _racks(argv: Sequence[str], prog: str, description: str,
           extra: Any = None) -> tuple[argparse.Namespace, dict[str, dict[str, Any]]] | int:
    """Parse, fetch the VMs, and give each wanted VM's row; an exit code on failure."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("vms", nargs="*", metavar="VM")
    _coordinator_args(p)
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--json", action="store_true", help="{vm: {...}}")
    if extra is not None:
        extra(p)
    args = p.parse_intermixed_args(list(argv))
    url = args.url.rstrip("/")
    token = _token(args.token)
    try:
        vms = fetch_vms(url, token, args.timeout)
    except FetchError as exc:
        _say(f"error: coordinator {url}: {exc}")
        return 1
    by_name = {vm["name"]: vm for vm in vms if isinstance(vm, dict) and vm.get("name")}
    missing = [name for name in args.vms if name not in by_name]
    if missing:
        _say(f"error: unknown VM{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
        return 1
    wanted = {name: by_name[name] for name in (args.vms or sorted(by_name))}
    blind = [name for name, vm in wanted.items() if not vm.get("maintenance_domain")]
    if blind:
        why = "it reported none"
        try:
            status = get_json(url + "/v1/status",
                              {"Authorization": f"Bearer {token}"} if token else {},
                              args.timeout)
            if isinstance(status, dict) and status.get("maintenance_domain_problem"):
                why = str(status["maintenance_domain_problem"])
        except FetchError:
            pass
        _say(f"error: no maintenance domain for {', '.join(blind)}: {why}")
        return 1
    return args, wanted


def main_cassandra(argv: Sequence[str]) -> int:
    def extra(p: argparse.ArgumentParser) -> None:
        p.add_argument("--no-prefer-local", action="store_true", help="prefer_local=false")
        p.add_argument("-o", "--output", help="write this file (atomically; one VM only)")

    got = _racks(argv, "quorumgate topology cassandra",
                 "cassandra-rackdc.properties from the coordinator: dc = the VM's "
                 "location, rack = its maintenance domain (ud3, zone2, fd1)", extra)
    if isinstance(got, int):
        return got
    args, wanted = got
    racks = {name: {"dc": str(vm.get("location") or ""),
                    "rack": rack_name(vm["maintenance_domain"])}
             for name, vm in wanted.items()}
    no_dc = [name for name, r in racks.items() if not r["dc"]]
    if no_dc:
        _say(f"error: no location (the dc) for {', '.join(no_dc)}")
        return 1
    if args.json:
        print(json.dumps(racks, indent=2, sort_keys=True))
        return 0
    if len(racks) != 1:
        if args.output:
            _say("error: -o writes one VM's file: name exactly one VM")
            return 1
        for name, r in racks.items():
            print(f"{name}: dc={r['dc']} rack={r['rack']}")
        return 0
    (name, r), = racks.items()
    domain = wanted[name]["maintenance_domain"]
    text = (f"# cassandra-rackdc.properties for {name}, written by quorumgate topology "
            f"cassandra\n# dc = location, rack = maintenance domain {domain}\n"
            f"dc={r['dc']}\nrack={r['rack']}\n"
            f"prefer_local={'false' if args.no_prefer_local else 'true'}\n")
    return _write(text, args.output, "cassandra")


def _write(text: str, output: str | None, command: str) -> int:
    if not output:
        sys.stdout.write(text)
        return 0
    tmp = f"{output}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, output)
    except OSError as exc:
        _say(f"{command}: error: cannot write {output}: {exc.strerror or exc}")
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        return 1
    return 0


def main_kafka(argv: Sequence[str]) -> int:
    got = _racks(argv, "quorumgate topology kafka",
                 "broker.rack for each broker VM from the coordinator: its maintenance "
                 "domain (ud3, zone2, fd1)")
    if isinstance(got, int):
        return got
    args, wanted = got
    racks = {name: rack_name(vm["maintenance_domain"]) for name, vm in wanted.items()}
    if args.json:
        print(json.dumps({name: {"broker.rack": rack} for name, rack in racks.items()},
                         indent=2, sort_keys=True))
    elif len(racks) == 1:
        print(f"broker.rack={next(iter(racks.values()))}")
    else:
        for name, rack in racks.items():
            print(f"{name}: broker.rack={rack}")
    return 0


# ---------------------------------------------------------------- rackdc


def main_rackdc(argv: Sequence[str]) -> int:
    """On the agent's own IMDS client (there is one IMDS client: agent/imds.py)."""
    from agent.rackdc import main

    return main(argv)


# ---------------------------------------------------------------- dispatch

SUBCOMMANDS = {
    "hdfs": (main_hdfs, "HDFS rack-awareness script: HOST_OR_IP... -> /fd<N>/ud<M> "
                        "(availability set), /zone<Z>/fd<N> (zonal), /fd<N> (Flexible "
                        "scale set)"),
    "labels": (main_labels, "Kubernetes node labels per VM (kubectl lines or --json): "
                            "zone = <location>-<zone> for zonal VMs, <location>-fd<N> "
                            "otherwise; quorumgate.io/maintenance-domain"),
    "cassandra": (main_cassandra, "cassandra-rackdc.properties from the coordinator: dc = "
                                  "location, rack = the maintenance domain (ud3, zone2, "
                                  "fd1)"),
    "kafka": (main_kafka, "broker.rack = the broker VM's maintenance domain (ud3, zone2, "
                          "fd1)"),
    "rackdc": (main_rackdc, "cassandra-rackdc.properties for this VM from IMDS alone "
                            "(rack = its fault domain)"),
}


def usage() -> str:
    lines = ["usage: quorumgate topology <hdfs|labels|cassandra|kafka|rackdc> [options]", "",
             "The maintenance domain is the unit a rollout takes down: the update domain of "
             "an", "availability set, the zone of zonal VMs, the fault domain of a "
             "Flexible scale set.", ""]
    for name, (_, summary) in SUBCOMMANDS.items():
        lines += textwrap.wrap(summary, width=88, initial_indent=f"  {name:<10}",
                               subsequent_indent=" " * 12)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(usage(), file=sys.stderr)
        return 2
    if args[0] in {"-h", "--help", "help"}:
        print(usage())
        return 0
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        print(f"quorumgate topology: unknown subcommand {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    return SUBCOMMANDS[name][0](rest)


if __name__ == "__main__":
    sys.exit(main())
