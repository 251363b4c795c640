"""`quorumgate topology`: the HDFS rack script run as HDFS runs it (a subprocess, timed),
with the coordinator up, down (cache) and absent; Kubernetes labels, Cassandra racks and
Kafka broker.rack against a real coordinator for an availability set, a zonal cluster, a
Flexible scale set and a mixed cluster; cassandra-rackdc.properties against the IMDS
emulator."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from coordinator.store import ensure_layout
from imds_sim.testing import running_emulator
from quorumgate import topology
from registry import labels
from registry.codec import encode
from registry.layout import Layout
from registry.records import VMRegistration, VMState
from tests.coordinator.test_api_support import OPERATOR, VIEWER, Api, foreign_leader, running
from tests.coordinator.test_domains_api import flex_cluster, put_vm, zonal_cluster

ROOT = Path(__file__).resolve().parents[1]
QUORUMGATE = str(ROOT / ".venv" / "bin" / "quorumgate")
TIMINGS: list[tuple[str, float]] = []


def _vm(zk: KazooClient, layout: Layout, name: str, fd: int, ud: int, address: str,
        zone: str = "", live: bool = True) -> None:
    fields = dict(name=name, fd=fd, ud=ud, address=address, zone=zone, location="westeurope")
    if live:
        zk.create(layout.vm(name), encode(VMRegistration(**fields)), ephemeral=True,
                  makepath=True)
    zk.create(layout.vm_state(name), encode(VMState(**fields)), makepath=True)


@pytest.fixture
def cluster(zk: KazooClient, zk_layout: Layout) -> Layout:
    """Three availability-set VMs and a zonal one: a mixed cluster (no maintenance domain
    until the policy names one); each VM's HDFS rack follows its own deployment."""
    ensure_layout(zk, zk_layout)
    _vm(zk, zk_layout, "dn-0", 0, 0, "10.1.0.4")
    _vm(zk, zk_layout, "dn-1", 1, 1, "10.1.0.5")
    _vm(zk, zk_layout, "dn-2", 2, 3, "10.1.0.6", live=False)  # down: its place is known
    _vm(zk, zk_layout, "zonal-1", 0, 2, "10.1.0.7", zone="2")
    return zk_layout


@pytest.fixture
def api(zk_hosts: str, cluster: Layout) -> Iterator[Api]:
    with running(zk_hosts, cluster) as api:
        from tests.helpers import wait_until
        wait_until(lambda: len(api.node.cache.view().vm_states) == 4, 10)
        yield api


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment of the NameNode running the script: a private cache file."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("QG_")}
    return {**clean, "QG_TOPOLOGY_CACHE": str(tmp_path / "topology.json")}


def _closed_port() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


def hdfs(what: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the script exactly as HDFS does: a program with hosts as arguments."""
    started = time.perf_counter()
    done = subprocess.run([QUORUMGATE, "topology", "hdfs", *args], env=env, text=True,
                          capture_output=True, timeout=30, cwd="/")
    TIMINGS.append((what, time.perf_counter() - started))
    return done


@pytest.fixture(scope="module", autouse=True)
def _report_timings() -> Iterator[None]:
    yield
    if TIMINGS:
        lines = [f"  {seconds * 1000:6.0f} ms  {what}" for what, seconds in TIMINGS]
        text = "HDFS topology script run times (subprocess, wall clock):\n" + "\n".join(lines)
        (ROOT / "artifacts").mkdir(exist_ok=True)
        (ROOT / "artifacts" / "topology-timings.txt").write_text(text + "\n")
        print("\n" + text)


# ---------------------------------------------------------------- hdfs


HOSTS = ["10.1.0.5", "dn-0", "dn-1.corp.example.com", "DN-2", "10.1.0.6", "zonal-1",
         "10.9.9.9", "stranger.example.com", "10.1.0.4:9866"]
RACKS = ["/fd1/ud1", "/fd0/ud0", "/fd1/ud1", "/fd2/ud3", "/fd2/ud3", "/zone2/fd0",
         "/default-rack", "/default-rack", "/fd0/ud0"]


def test_hdfs_script_answers_names_short_names_and_ips_in_order(
        api: Api, env: dict[str, str]) -> None:
    env = {**env, "QG_URL": api.url, "QG_TOKEN": VIEWER}
    done = hdfs("coordinator up, cold cache", env, *HOSTS)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == RACKS  # ScriptBasedMapping splits on whitespace
    assert done.stdout == "\n".join(RACKS) + "\n"  # one line per argument
    cache = json.loads(Path(env["QG_TOPOLOGY_CACHE"]).read_text())
    assert cache["url"] == api.url and len(cache["vms"]) == 4
    assert VIEWER not in Path(env["QG_TOPOLOGY_CACHE"]).read_text()
    # warm cache: no coordinator call needed
    warm = hdfs("coordinator up, warm cache", env, *HOSTS)
    assert warm.stdout.split() == RACKS and warm.stderr == ""
    # HDFS passes up to net.topology.script.number.args (100) hosts per call
    many = [HOSTS[i % len(HOSTS)] for i in range(100)]
    batch = hdfs("100 arguments, warm cache", env, *many)
    assert batch.stdout.split() == [RACKS[i % len(RACKS)] for i in range(100)]
    # no argument: no output, success
    assert hdfs("no argument", env).stdout == ""


def test_hdfs_script_falls_back_to_the_cache_then_to_the_default(
        zk_hosts: str, cluster: Layout, env: dict[str, str], tmp_path: Path) -> None:
    with running(zk_hosts, cluster) as api:
        from tests.helpers import wait_until
        wait_until(lambda: len(api.node.cache.view().vm_states) == 4, 10)
        url = api.url
        env = {**env, "QG_URL": url, "QG_TOKEN": VIEWER}
        assert hdfs("prime the cache", env, "dn-0").stdout == "/fd0/ud0\n"
    # the coordinator is gone: a stale cache beats /default-rack
    stale = hdfs("coordinator down, stale cache", env, "--ttl", "0", *HOSTS)
    assert stale.returncode == 0 and stale.stdout.split() == RACKS
    assert "connection refused" in stale.stderr and "from the cache" in stale.stderr
    # a cache written for another coordinator does not answer for this one
    other = hdfs("other coordinator, no cache", {**env, "QG_URL": _closed_port()}, *HOSTS)
    assert other.returncode == 0 and other.stdout.split() == ["/default-rack"] * len(HOSTS)
    # no cache, no coordinator: every host is /default-rack, and still exit 0
    bare = {**env, "QG_TOPOLOGY_CACHE": str(tmp_path / "none" / "topology.json"),
            "QG_URL": _closed_port()}
    done = hdfs("no cache, no coordinator", bare, *HOSTS)
    assert done.returncode == 0 and done.stdout.split() == ["/default-rack"] * len(HOSTS)
    assert "every host is /default-rack" in done.stderr
    # the default rack can be given the same depth as the others
    deep = hdfs("no cache, --default-rack", bare, "--default-rack", "/fd-unknown/ud-unknown",
                "x")
    assert deep.stdout == "/fd-unknown/ud-unknown\n"


def test_hdfs_script_refreshes_a_fresh_cache_that_misses_a_new_host(
        api: Api, env: dict[str, str]) -> None:
    path = Path(env["QG_TOPOLOGY_CACHE"])
    path.write_text(json.dumps({"url": api.url, "fetched_at": time.time() - 10,
                                "vms": [{"name": "dn-0", "fd": 0, "ud": 0,
                                         "address": "10.1.0.4"}]}))
    env = {**env, "QG_URL": api.url, "QG_TOKEN": VIEWER}
    done = hdfs("fresh cache missing a host", env, "dn-0", "dn-1")
    assert done.stdout.split() == ["/fd0/ud0", "/fd1/ud1"]
    assert len(json.loads(path.read_text())["vms"]) == 4


def test_hdfs_path_imports_only_the_standard_library(api: Api, env: dict[str, str]) -> None:
    code = ("import sys\nfrom quorumgate.cli import main\n"
            f"main(['topology', 'hdfs', '--url', {api.url!r}, '--token', {VIEWER!r}, 'dn-1'])\n"
            "heavy = sorted(m for m in ('httpx', 'pydantic', 'fastapi', 'starlette', 'kazoo',"
            " 'uvicorn', 'yaml', 'registry.records') if m in sys.modules)\n"
            "print('heavy:', heavy)\n")
    done = subprocess.run([sys.executable, "-c", code], env=env, text=True,
                          capture_output=True, timeout=30, cwd=str(ROOT))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["/fd1/ud1", "heavy: []"]


def test_hdfs_script_without_coordinator_config_uses_defaults(tmp_path: Path) -> None:
    """As the NameNode would run it with nothing configured: exits 0 whatever happens."""
    cache = tmp_path / "c.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("QG_")}
    done = hdfs("unconfigured", {**env, "QG_TOPOLOGY_CACHE": str(cache),
                                 "QG_URL": _closed_port()}, "10.0.0.1")
    assert done.returncode == 0 and done.stdout == "/default-rack\n"
    cache.write_text("{not json")  # a corrupt cache is no cache
    done = hdfs("corrupt cache", {**env, "QG_TOPOLOGY_CACHE": str(cache),
                                  "QG_URL": _closed_port()}, "10.0.0.1")
    assert done.returncode == 0 and done.stdout == "/default-rack\n"


def test_cache_path_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("QG_TOPOLOGY_CACHE", "/somewhere/t.json")
    assert topology.default_cache_path() == "/somewhere/t.json"
    monkeypatch.delenv("QG_TOPOLOGY_CACHE")
    monkeypatch.setattr(topology, "SYSTEM_CACHE", "/nonexistent-dir/qg/topology.json")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert topology.default_cache_path() == str(tmp_path / "quorumgate" / "topology.json")
    monkeypatch.setattr(topology, "SYSTEM_CACHE", str(tmp_path / "sys" / "topology.json"))
    assert topology.default_cache_path() == str(tmp_path / "sys" / "topology.json")


# ---------------------------------------------------------------- labels


def test_label_computation_is_pure_and_valid() -> None:
    assert labels.node_labels(1, 3, "westeurope") == {
        labels.REGION: "westeurope", labels.ZONE: "westeurope-fd1",
        labels.ZONE_SOURCE: "fault-domain", labels.FAULT_DOMAIN: "1",
        labels.UPDATE_DOMAIN: "3"}
    zonal = labels.node_labels(0, 2, "westeurope", "2")
    assert zonal[labels.ZONE] == "westeurope-2" and zonal[labels.ZONE_SOURCE] == "zone"
    assert labels.node_labels(0, 0, "eastus", "eastus-1")[labels.ZONE] == "eastus-1"
    bare = labels.node_labels(2, None)
    assert bare == {labels.ZONE: "fd2", labels.ZONE_SOURCE: "fault-domain",
                    labels.FAULT_DOMAIN: "2"}
    assert labels.node_labels(None, None) == {}
    assert labels.label_value("-weird name/with:chars" + "x" * 80).startswith("weird-name")
    assert len(labels.label_value("x" * 100)) == 63


def _topology(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QG_")}
    return subprocess.run([QUORUMGATE, "topology", *args], env=env, text=True,
                          capture_output=True, timeout=60, cwd="/")


def test_labels_against_a_coordinator(api: Api) -> None:
    """A mixed cluster: the labels of each VM's own place, and no maintenance-domain label
    while the cluster has no unit."""
    done = _topology("labels", "--url", api.url, "--token", VIEWER, "dn-1", "zonal-1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "kubectl label node dn-1 --overwrite topology.kubernetes.io/region=westeurope "
        "topology.kubernetes.io/zone=westeurope-fd1 quorumgate.io/zone-source=fault-domain "
        "quorumgate.io/fault-domain=1 quorumgate.io/update-domain=1",
        "kubectl label node zonal-1 --overwrite topology.kubernetes.io/region=westeurope "
        "topology.kubernetes.io/zone=westeurope-2 quorumgate.io/zone-source=zone "
        "quorumgate.io/fault-domain=0 quorumgate.io/update-domain=2"]
    every = _topology("labels", "--url", api.url, "--token", VIEWER, "--json")
    data = json.loads(every.stdout)
    assert sorted(data) == ["dn-0", "dn-1", "dn-2", "zonal-1"]
    assert data["dn-2"]["quorumgate.io/update-domain"] == "3"
    unknown = _topology("labels", "--url", api.url, "--token", VIEWER, "dn-9")
    assert unknown.returncode == 1 and "unknown VM: dn-9" in unknown.stderr
    refused = _topology("labels", "--url", api.url, "--token", "wrong-token-123")
    assert refused.returncode == 1 and "401" in refused.stderr
    down = _topology("labels", "--url", _closed_port(), "--token", VIEWER)
    assert down.returncode == 1 and "connection refused" in down.stderr


# ---------------------------------------------------------------- rackdc


def test_rackdc_from_the_imds_emulator(tmp_path: Path) -> None:
    with running_emulator(cluster={"vms": 6, "fds": 3, "uds": 2}) as emu:
        done = _topology("rackdc", "--imds-url", emu.vm_url("vm-4"))
        assert done.returncode == 0, done.stderr
        body = [line for line in done.stdout.splitlines() if not line.startswith("#")]
        ud = emu.vm("vm-4")["ud"]
        assert body == ["dc=westeurope", f"rack=ud{ud}", "prefer_local=true"]
        assert "vm-4" in done.stdout and f"rack = UD {ud} (availability set)" in done.stdout
        by_fd = _topology("rackdc", "--imds-url", emu.vm_url("vm-4"), "--rack-by",
                          "fault-domain")
        assert "\nrack=fd1\n" in by_fd.stdout, by_fd.stderr
        # the default VM at the bare base URL, written to a file; 503s are retried
        emu.fault(kind="status", status=503, endpoint="instance", count=2)
        out = tmp_path / "cassandra-rackdc.properties"
        assert _topology("rackdc", "--imds-url", emu.url, "-o", str(out)).returncode == 0
        assert "dc=westeurope\nrack=ud0\nprefer_local=true\n" in out.read_text()
        # the agent's IMDS client: 404/410/429 and 5xx are retried (IMDS's own advice), any
        # other 4xx is final
        emu.fault(kind="status", status=404, endpoint="instance", count=1)
        assert _topology("rackdc", "--imds-url", emu.url, "--timeout", "5").returncode == 0
        emu.fault(kind="status", status=403, endpoint="instance", count=1)
        bad = _topology("rackdc", "--imds-url", emu.url, "--timeout", "5")
        assert bad.returncode == 1 and "403" in bad.stderr
    gone = _topology("rackdc", "--imds-url", _closed_port(), "--timeout", "1")
    assert gone.returncode == 1 and "connection refused" in gone.stderr


@pytest.mark.parametrize("topology,rack", [("zonal", "zone"), ("flex", "fd")])
def test_rackdc_rack_is_the_maintenance_domain(topology: str, rack: str) -> None:
    """Zonal VMs: the zone; a Flexible scale set (no update domain): the fault domain."""
    with running_emulator(cluster={"vms": 6, "fds": 3, "uds": 2,
                                   "topology": topology}) as emu:
        vm = emu.vm("vm-1")
        done = _topology("rackdc", "--imds-url", emu.vm_url("vm-1"))
        assert done.returncode == 0, done.stderr
        value = vm["zone"] if topology == "zonal" else vm["fd"]
        assert f"\nrack={rack}{value}\n" in done.stdout, done.stdout


def test_imds_redirects_are_not_followed(tmp_path: Path) -> None:
    """A redirect from "IMDS" (a proxy, a captive portal) is refused, not followed."""
    import http.server
    import threading

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:1/elsewhere")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        done = _topology("rackdc", "--imds-url", f"http://127.0.0.1:{server.server_port}",
                         "--timeout", "5")
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 1 and "redirect" in done.stderr


def test_topology_usage() -> None:
    assert _topology().returncode == 2
    helped = _topology("--help")
    assert helped.returncode == 0 and "hdfs" in helped.stdout and "rackdc" in helped.stdout
    words = " ".join(helped.stdout.split())
    for text in ("/zone<Z>/fd<N>", "cassandra", "broker.rack", "maintenance domain"):
        assert text in words, text
    hdfs_help = " ".join(_topology("hdfs", "--help").stdout.split())
    assert "/zone<Z>/fd<N>" in hdfs_help and "Flexible scale set" in hdfs_help
    assert _topology("nope").returncode == 2


def test_agent_rackdc_is_the_same_command() -> None:
    """`quorumgate agent rackdc`, as the placement issue names it, runs topology rackdc."""
    with running_emulator(cluster={"vms": 3, "fds": 3, "uds": 1}) as emu:
        done = subprocess.run([sys.executable, "-m", "quorumgate.cli", "agent", "rackdc",
                               "--imds-url", emu.vm_url("vm-2")], capture_output=True,
                              text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "dc=westeurope\nrack=ud0\nprefer_local=true" in done.stdout


# ---------------------------------------------------------------- maintenance domains


def _availability_set(zk: KazooClient, layout: Layout) -> list[str]:
    """a<i>: FD i, UD i (i = 0..2), address 10.5.0.<i+4>."""
    ensure_layout(zk, layout)
    for i in range(3):
        put_vm(zk, layout, f"a{i}", fd=i, ud=i, address=f"10.5.0.{i + 4}")
    return ["a0", "a1", "a2"]


CASES = {
    # builder, a VM and its address, its HDFS rack, its zone label and zone source, its
    # maintenance-domain label, its Cassandra rack / Kafka broker.rack
    "availability set": (_availability_set, "a1", "10.5.0.5", "/fd1/ud1",
                         ("westeurope-fd1", "fault-domain"), "ud-1", "ud1"),
    "zonal": (zonal_cluster, "z2-1", "10.2.2.5", "/zone2/fd1", ("westeurope-2", "zone"),
              "zone-2", "zone2"),
    "flex": (flex_cluster, "f1-0", "10.3.1.4", "/fd1", ("westeurope-fd1", "fault-domain"),
             "fd-1", "fd1"),
}


@pytest.fixture(params=list(CASES))
def deployed(request: pytest.FixtureRequest, zk_hosts: str, zk: KazooClient,
             zk_layout: Layout) -> Iterator[tuple[str, Api]]:
    """An availability set, a zonal cluster (zones 1-3 x FDs 0-1) or a Flexible scale set
    (FDs 0-2 x 2), registered as their agents do."""
    from tests.helpers import wait_until

    count = len(CASES[request.param][0](zk, zk_layout))
    with foreign_leader(zk, zk_layout), running(zk_hosts, zk_layout) as served:
        wait_until(lambda: len(served.node.cache.view().vm_states) == count, 10)
        yield request.param, served


def test_outputs_follow_the_maintenance_domain(deployed: tuple[str, Api],
                                              env: dict[str, str], tmp_path: Path) -> None:
    kind, api = deployed
    _, vm, address, rack, (zone, source), label, name = CASES[kind]
    env = {**env, "QG_URL": api.url, "QG_TOKEN": VIEWER}
    done = hdfs(f"{kind}: name and address", env, vm, address, "nowhere")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [rack, rack, "/default-rack"]
    cached = json.loads(Path(env["QG_TOPOLOGY_CACHE"]).read_text())["vms"]
    assert {"zone", "scale_set", "kind"} <= set(cached[0])  # the warm cache answers alike
    assert hdfs(f"{kind}: warm cache", env, vm).stdout == rack + "\n"

    coordinator = ("--url", api.url, "--token", VIEWER)
    labels_json = json.loads(_topology("labels", *coordinator, "--json", vm).stdout)[vm]
    assert labels_json["topology.kubernetes.io/zone"] == zone
    assert labels_json["quorumgate.io/zone-source"] == source
    assert labels_json["quorumgate.io/maintenance-domain"] == label
    assert ("quorumgate.io/update-domain" in labels_json) == (kind == "availability set")

    one = _topology("cassandra", *coordinator, vm)
    assert one.returncode == 0, one.stderr
    body = [line for line in one.stdout.splitlines() if not line.startswith("#")]
    assert body == ["dc=westeurope", f"rack={name}", "prefer_local=true"]
    out = tmp_path / "cassandra-rackdc.properties"
    assert _topology("cassandra", *coordinator, vm, "-o", str(out)).returncode == 0
    assert f"dc=westeurope\nrack={name}\nprefer_local=true\n" in out.read_text()
    every = _topology("cassandra", *coordinator)
    assert f"{vm}: dc=westeurope rack={name}" in every.stdout.splitlines()
    racks = {r["rack"] for r in json.loads(_topology("cassandra", *coordinator,
                                                     "--json").stdout).values()}
    assert len(racks) == 3  # three UDs, three zones, three FDs

    kafka = _topology("kafka", *coordinator, vm)
    assert kafka.returncode == 0 and kafka.stdout == f"broker.rack={name}\n"
    brokers = json.loads(_topology("kafka", *coordinator, "--json").stdout)
    assert brokers[vm] == {"broker.rack": name}
    assert len({b["broker.rack"] for b in brokers.values()}) == 3


def test_a_mixed_cluster_has_no_cassandra_or_kafka_rack_until_the_policy_names_one(
        api: Api) -> None:
    coordinator = ("--url", api.url, "--token", VIEWER)
    for command in ("cassandra", "kafka"):
        done = _topology(command, *coordinator, "dn-1")
        assert done.returncode == 1 and done.stdout == ""
        assert "no maintenance domain for dn-1: the cluster mixes deployments" in done.stderr
        assert "set policy maintenance_domain" in done.stderr
    api.client(OPERATOR).patch("/v1/policy", json={"maintenance_domain": "fault_domain"}
                               ).raise_for_status()
    from tests.helpers import wait_until

    wait_until(lambda: api.node.cache.view().policy.maintenance_domain == "fault_domain", 10)
    assert _topology("kafka", *coordinator, "zonal-1").stdout == "broker.rack=fd0\n"
    labels_json = json.loads(_topology("labels", *coordinator, "--json", "dn-1").stdout)
    assert labels_json["dn-1"]["quorumgate.io/maintenance-domain"] == "fd-1"
    unknown = _topology("cassandra", *coordinator, "dn-9")
    assert unknown.returncode == 1 and "unknown VM: dn-9" in unknown.stderr
