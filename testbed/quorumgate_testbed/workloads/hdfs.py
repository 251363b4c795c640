"""A real HDFS behind quorumgate: a NameNode, one DataNode per simulated VM, a client.

Apache Hadoop 3.5.0's own daemons (`hadoop-hdfs`, from Maven Central into
`.cache/jars`, see `quorumgate_testbed.workloads.jvm`) run as separate JVMs:

- one **NameNode** (not on a simulated VM: it stands for the highly available pair a
  real cluster has), with `CombinedHostFileManager` and a JSON `dfs.hosts` file naming
  every DataNode, replication 3, and **rack awareness from quorumgate**: its
  `net.topology.script.file.name` is a script that runs `quorumgate topology hdfs`
  against the coordinators' API (`/fd<N>/ud<M>` per DataNode);
- one **DataNode per simulated VM**, on its own loopback address (127.x.y.i). The
  NameNode takes a DataNode's address from the source of its RPC connection, so each
  DataNode reaches the NameNode through an address of its own whose local route has the
  DataNode's address as source (`ip route add local R/32 dev lo src A`, root only): the
  NameNode then sees one IP per DataNode, as on real VMs. A reboot of the VM SIGKILLs
  the DataNode's JVM; its return starts it again (same storage directory);
- the **deploy hooks** (deploy/hooks/hdfs-datanode-drain.sh, -restore.sh) with a real
  `hdfs` command (a wrapper that runs the Hadoop classes from the cache);
- a **group provider** (`kind="hdfs"` in coordinator/providers.py) that reads the
  DataNodes and their blocks' replica sets from the NameNode's HTTP API: one group per
  distinct replica set, `min_available = dfs.namenode.maintenance.replication.min`;
- a **client** (`HdfsLoad`) that writes and reads files through WebHDFS for the whole
  rollout, and a **watch** (`HdfsWatch`) that polls the NameNode's JMX and fsck to
  measure low-redundancy block-seconds, blocks with no serving replica and
  re-replication.

The simulated VMs' addresses in IMDS are 10.0.0.x (data only); the rack script maps
each DataNode address to its VM name (what DNS does for a real cluster) and asks
`quorumgate topology hdfs` with it. Everything runs in real time; `hdfs_spec()` picks
the clock (x4) and the timeouts so a reboot outlasts the NameNode's dead-node
interval (20 s here), as a long Azure reboot outlasts the default 10.5 minutes. The
hooks read the node's state from the NameNode's JMX (`HDFS_NAMENODE_HTTP`) instead of
starting `hdfs dfsadmin -report` each poll; `-refreshNodes` is the real `hdfs`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from coordinator.providers import ProviderConfig
from quorumgate_testbed.rollout import GroupSpec, RolloutSpec, Workload
from quorumgate_testbed.workloads import jvm
from quorumgate_testbed.workloads.waits import wait_groups, wait_registered
from quorumgate_testbed.zkserver import free_ports
from registry.records import Policy

if TYPE_CHECKING:
    from quorumgate_testbed.rollout import Rollout

HOOKS_DIR = Path(__file__).resolve().parents[3] / "deploy" / "hooks"
DRAIN_HOOK = HOOKS_DIR / "hdfs-datanode-drain.sh"
RESTORE_HOOK = HOOKS_DIR / "hdfs-datanode-restore.sh"
BLOCK_SIZE = 1024 * 1024
USER = "qg"


DRAIN_TIMEOUT_S = 800.0
"""The policy's drain timeout in virtual seconds (200 s real at x4): the hooks run
`hdfs dfsadmin` (a JVM), tens of seconds on a busy 2-core machine."""
RESTORE_TIMEOUT_S = 1200.0


class HdfsError(RuntimeError):
    """The HDFS cluster did not start, get healthy or stop in time."""


def find_hdfs() -> str | None:
    """None when a real HDFS can run here, else a one-line explanation."""
    if problem := jvm.jars_problem(jvm.HADOOP, "hdfs"):
        return problem
    missing = [tool for tool in ("bash", "jq", "flock", "curl", "ip")
               if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)} (scripts/bootstrap.sh --with hdfs installs them)"
    if os.geteuid() != 0:
        return ("the HDFS simulation needs root: one loopback route per DataNode gives the "
                "NameNode one source address per DataNode")
    return None


# --------------------------------------------------------------------------- config


def _xml(props: dict[str, Any]) -> str:
    from xml.sax.saxutils import escape

    body = "".join(f"<property><name>{escape(k)}</name><value>{escape(str(v))}</value>"
                   f"</property>\n" for k, v in props.items())
    return f"<?xml version=\"1.0\"?>\n<configuration>\n{body}</configuration>\n"


LOG4J = """log4j.rootLogger=INFO,file
log4j.appender.file=org.apache.log4j.ConsoleAppender
log4j.appender.file.target=System.out
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=%d{ISO8601} %p %c{1}: %m%n
log4j.logger.org.apache.hadoop.hdfs.server.namenode.FSNamesystem.audit=WARN
log4j.logger.org.apache.hadoop.util.NativeCodeLoader=ERROR
log4j.logger.org.apache.hadoop.security.authentication.server.AuthenticationFilter=ERROR
log4j.logger.http.requests=WARN
log4j.logger.org.apache.hadoop.hdfs.server.datanode.DataNode.clienttrace=WARN
log4j.logger.org.apache.hadoop.hdfs.StateChange=WARN
"""

TOOL_LOG4J = """log4j.rootLogger=WARN,err
log4j.appender.err=org.apache.log4j.ConsoleAppender
log4j.appender.err.target=System.err
log4j.appender.err.layout=org.apache.log4j.PatternLayout
log4j.appender.err.layout.ConversionPattern=%p %c{1}: %m%n
log4j.logger.org.apache.hadoop.util.NativeCodeLoader=ERROR
"""

HDFS_WRAPPER = """#!/bin/bash
# The `hdfs` command of this simulated cluster: Hadoop {version}'s own tool classes from
# {lib}, configured by {conf}. Subcommands: dfsadmin, fsck, getconf, dfs, version.
set -euo pipefail
case "${{1:-}}" in
    dfsadmin) class=org.apache.hadoop.hdfs.tools.DFSAdmin ;;
    fsck) class=org.apache.hadoop.hdfs.tools.DFSck ;;
    getconf) class=org.apache.hadoop.hdfs.tools.GetConf ;;
    dfs) class=org.apache.hadoop.fs.FsShell ;;
    version) class=org.apache.hadoop.util.VersionInfo ;;
    *) echo "hdfs: unsupported subcommand '${{1:-}}'" >&2; exit 2 ;;
esac
shift
exec {java} {flags} -Xmx96m -Dlog4j.configuration=file:{conf}/log4j-tool.properties \\
    -Dhadoop.log.dir={logs} -cp "{conf}:{lib}/*" "$class" "$@"
"""

RACK_SCRIPT = """#!/bin/bash
# HDFS rack script of this simulated cluster (net.topology.script.file.name). The
# NameNode passes DataNode IPs; here each DataNode has a loopback address standing for
# its VM, so map it to the VM's name (DNS does that in a real cluster) and ask
# quorumgate, which answers /fd<N>/ud<M> from the coordinators' GET /v1/vms.
declare -A vm=({table})
args=()
for host in "$@"; do args+=("${{vm[$host]:-$host}}"); done
exec {quorumgate} topology hdfs --url {url} --token {token} --cache {cache} \\
    --timeout 10 --default-rack /fd-unknown/ud-unknown "${{args[@]}}"
"""


STATIC_RACK_SCRIPT = """#!/bin/bash
# HDFS rack script of this simulated cluster without quorumgate (the baselines): the
# same /fd<N>/ud<M> racks, from a table as an operator would write it by hand.
declare -A rack=({table})
for host in "$@"; do echo "${{rack[$host]:-/fd-unknown/ud-unknown}}"; done
"""


def static_racks(rollout: Rollout) -> dict[str, str]:
    """VM -> `/fd<N>/ud<M>` from the emulator (for runs without a coordinator)."""
    return {vm.name: f"/fd{vm.config.fd}/ud{vm.config.ud}"
            for vm in rollout.emu.sim.vms(rollout.clock.now())}


def quorumgate_command() -> str:
    script = Path(sys.executable).parent / "quorumgate"
    return str(script) if script.exists() else f"{sys.executable} -m quorumgate.cli"


@dataclass
class DataNodeSpec:
    vm: str
    address: str
    """The DataNode's own loopback address (what the NameNode sees)."""
    route: str
    """The address it reaches the NameNode at (its local route has `address` as source)."""
    xfer_port: int
    http_port: int
    ipc_port: int
    dir: Path = field(default_factory=Path)

    @property
    def http_url(self) -> str:
        return f"http://{self.address}:{self.http_port}"


class HdfsCluster:
    """A NameNode and DataNodes on loopback, started and killed by process group."""

    def __init__(self, vms: Sequence[str], *, replication: int = 3,
                 maintenance_min: int = 1, heartbeat_s: int = 1,
                 recheck_ms: int = 5000, admin_interval_s: int = 1,
                 nn_heap_mb: int = 256, dn_heap_mb: int = 128) -> None:
        self.vms = list(vms)
        self.replication = replication
        self.maintenance_min = maintenance_min
        self.heartbeat_s = heartbeat_s
        self.recheck_ms = recheck_ms
        """The NameNode declares a DataNode dead after 2 x recheck + 10 x heartbeat."""
        self.admin_interval_s = admin_interval_s
        self.nn_heap_mb = nn_heap_mb
        self.dn_heap_mb = dn_heap_mb
        ports = free_ports(3 + 3 * len(self.vms))
        self.rpc_port, self.service_port, self.http_port = ports[:3]
        rnd = random.Random(uuid.uuid4().int)
        net = (rnd.randrange(64, 250), rnd.randrange(0, 254, 2))
        self.datanodes = {
            vm: DataNodeSpec(vm, f"127.{net[0]}.{net[1]}.{i + 1}",
                             f"127.{net[0]}.{net[1] + 1}.{i + 1}",
                             *ports[3 + 3 * i: 6 + 3 * i])
            for i, vm in enumerate(self.vms)}
        self.base: Path | None = None
        self.daemons = jvm.JavaDaemons()
        self.routes: list[str] = []
        self._atexit = False
        self.rack_url = ""
        self.rack_token = ""
        self._http = httpx.Client(timeout=5.0, trust_env=False)

    # paths

    @property
    def nn_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def conf_dir(self) -> Path:
        assert self.base is not None
        return self.base / "conf"

    @property
    def hosts_file(self) -> Path:
        assert self.base is not None
        return self.base / "dfs.hosts.json"

    @property
    def hdfs_bin(self) -> Path:
        assert self.base is not None
        return self.base / "bin" / "hdfs"

    def vm_of(self, address: str) -> str | None:
        host = address.rsplit(":", 1)[0] if address.count(":") == 1 else address
        return next((d.vm for d in self.datanodes.values() if d.address == host), None)

    # set-up

    def _common(self) -> dict[str, Any]:
        return {
            "dfs.replication": self.replication,
            "dfs.blocksize": BLOCK_SIZE,
            "dfs.permissions.enabled": "false",
            "dfs.heartbeat.interval": self.heartbeat_s,
            "dfs.client.retry.window.base": 200,
            "dfs.client.socket-timeout": 10000,
            "ipc.client.connect.max.retries": 3,
            "ipc.client.connect.retry.interval": 300,
            "hadoop.security.groups.cache.secs": 3600,
        }

    def prepare(self, rack_url: str, rack_token: str,
                racks: dict[str, str] | None = None) -> None:
        """Folders, configs and scripts. The rack script asks quorumgate at `rack_url`,
        or, with `racks` (VM -> rack), answers from that table."""
        if problem := find_hdfs():
            raise HdfsError(problem)
        self.base = Path(tempfile.mkdtemp(prefix="quorumgate-hdfs-"))
        self.rack_url, self.rack_token = rack_url, rack_token
        for sub in ("conf", "bin", "logs", "nn", "tmp"):
            (self.base / sub).mkdir()
        for app in ("hdfs", "datanode", "static", "secondary"):
            (self.base / "webapps" / app).mkdir(parents=True)  # HttpServer2 looks them up
        java = jvm.java()
        assert java is not None
        lib = jvm.lib_dir(jvm.HADOOP)
        (self.conf_dir / "log4j.properties").write_text(LOG4J)
        (self.conf_dir / "log4j-tool.properties").write_text(TOOL_LOG4J)
        self.hdfs_bin.write_text(HDFS_WRAPPER.format(
            version=jvm.HADOOP_VERSION, lib=lib, conf=self.conf_dir, java=java,
            flags=" ".join(jvm.JVM_SMALL), logs=self.base / "logs"))
        self.hdfs_bin.chmod(0o755)
        rack = self.base / "bin" / "rack"
        if racks is not None:
            table = " ".join(f"[{d.address}]={racks[d.vm]}" for d in self.datanodes.values())
            rack.write_text(STATIC_RACK_SCRIPT.format(table=table))
        else:
            table = " ".join(f"[{d.address}]={d.vm}" for d in self.datanodes.values())
            rack.write_text(RACK_SCRIPT.format(
                table=table, quorumgate=quorumgate_command(), url=rack_url,
                token=rack_token, cache=self.base / "topology.json"))
        rack.chmod(0o755)
        self.hosts_file.write_text(json.dumps(
            [{"hostName": d.address} for d in self.datanodes.values()], indent=1))
        core = {"fs.defaultFS": f"hdfs://127.0.0.1:{self.rpc_port}",
                "hadoop.tmp.dir": str(self.base / "tmp"),
                "net.topology.script.file.name": str(rack),
                "hadoop.http.staticuser.user": USER}
        nn = {
            **self._common(),
            "dfs.namenode.name.dir": str(self.base / "nn"),
            "dfs.namenode.rpc-address": f"127.0.0.1:{self.rpc_port}",
            "dfs.namenode.servicerpc-address": f"127.0.0.1:{self.service_port}",
            # DataNodes come in through their own addresses (see the module doc).
            "dfs.namenode.servicerpc-bind-host": "0.0.0.0",
            "dfs.namenode.http-address": f"127.0.0.1:{self.http_port}",
            "dfs.namenode.hosts.provider.classname":
                "org.apache.hadoop.hdfs.server.blockmanagement.CombinedHostFileManager",
            "dfs.hosts": str(self.hosts_file),
            "dfs.namenode.maintenance.replication.min": self.maintenance_min,
            "dfs.namenode.decommission.interval": f"{self.admin_interval_s}s",
            "dfs.namenode.heartbeat.recheck-interval": self.recheck_ms,
            "dfs.namenode.stale.datanode.interval": 3 * self.heartbeat_s * 1000,
            "dfs.namenode.avoid.read.stale.datanode": "true",
            "dfs.namenode.avoid.write.stale.datanode": "true",
            "dfs.namenode.datanode.registration.ip-hostname-check": "false",
            "dfs.namenode.safemode.extension": 0,
            "dfs.namenode.handler.count": 8,
            "dfs.namenode.service.handler.count": 4,
            "dfs.namenode.redundancy.interval.seconds": 2,
        }
        (self.conf_dir / "core-site.xml").write_text(_xml(core))
        (self.conf_dir / "hdfs-site.xml").write_text(_xml(nn))
        classpath = jvm.classpath(jvm.HADOOP, self.conf_dir, self.base)
        common = [java, *jvm.JVM_DAEMON, f"-Dhadoop.log.dir={self.base / 'logs'}",
                  "-Dhadoop.security.logger=ERROR,NullAppender"]
        self.daemons.add(jvm.Daemon(
            "namenode", [*common, f"-Xmx{self.nn_heap_mb}m", "-cp", classpath,
                         "org.apache.hadoop.hdfs.server.namenode.NameNode"],
            self.base / "logs" / "namenode.log"))
        for d in self.datanodes.values():
            d.dir = self.base / d.vm
            (d.dir / "conf").mkdir(parents=True)
            (d.dir / "data").mkdir()
            shutil.copy(self.conf_dir / "log4j.properties", d.dir / "conf")
            (d.dir / "conf" / "core-site.xml").write_text(_xml(core))
            (d.dir / "conf" / "hdfs-site.xml").write_text(_xml({
                **self._common(),
                "dfs.namenode.rpc-address": f"127.0.0.1:{self.rpc_port}",
                "dfs.namenode.servicerpc-address": f"{d.route}:{self.service_port}",
                "dfs.datanode.data.dir": str(d.dir / "data"),
                "dfs.datanode.address": f"{d.address}:{d.xfer_port}",
                "dfs.datanode.http.address": f"{d.address}:{d.http_port}",
                "dfs.datanode.ipc.address": f"{d.address}:{d.ipc_port}",
                "dfs.datanode.hostname": d.address,
                "dfs.blockreport.initialDelay": 0,
                "dfs.datanode.handler.count": 3,
                "dfs.datanode.du.reserved": 0,
            }))
            self.daemons.add(jvm.Daemon(
                d.vm, [*common, f"-Xmx{self.dn_heap_mb}m", "-cp",
                       jvm.classpath(jvm.HADOOP, d.dir / "conf", self.base),
                       "org.apache.hadoop.hdfs.server.datanode.DataNode"],
                d.dir / "datanode.log"))

    def resolve_racks(self, timeout: float = 60.0) -> dict[str, str]:
        """Run the rack script as the NameNode will, until it knows every DataNode
        (this also fills its cache, so the NameNode's own call answers at once)."""
        assert self.base is not None
        addresses = [d.address for d in self.datanodes.values()]
        deadline = time.monotonic() + timeout
        while True:
            done = jvm.run_tool([str(self.base / "bin" / "rack"), *addresses], 30)
            racks = dict(zip(self.vms, done.stdout.split(), strict=False))
            if len(racks) == len(self.vms) and all(
                    r.startswith("/fd") and "unknown" not in r for r in racks.values()):
                return racks
            if time.monotonic() > deadline:
                raise HdfsError(f"the rack script does not know every DataNode: {racks} "
                                f"{done.stderr.strip()[-300:]}")
            time.sleep(1.0)

    def add_routes(self) -> None:
        for d in self.datanodes.values():
            done = subprocess.run(["ip", "route", "replace", "local", f"{d.route}/32", "dev",
                                   "lo", "table", "local", "src", d.address],
                                  capture_output=True, text=True, timeout=10, check=False)
            if done.returncode != 0:
                raise HdfsError(f"ip route for {d.vm}: {done.stderr.strip()}")
            self.routes.append(d.route)
        if not self._atexit:
            import atexit

            atexit.register(self.remove_routes)  # a run that dies still cleans up
            self._atexit = True

    def remove_routes(self) -> None:
        for route in self.routes:
            subprocess.run(["ip", "route", "del", "local", f"{route}/32", "dev", "lo",
                            "table", "local"], capture_output=True, timeout=10, check=False)
        self.routes = []

    def format(self, timeout: float = 120.0) -> None:
        assert self.base is not None
        command = [*self.daemons.daemons["namenode"].command, "-format", "-nonInteractive",
                   "-force"]
        done = jvm.run_tool(command, timeout)
        if done.returncode != 0:
            raise HdfsError(f"namenode -format failed: {(done.stdout + done.stderr)[-800:]}")

    def start_namenode(self, timeout: float = 120.0) -> None:
        self.daemons.start("namenode")
        deadline = time.monotonic() + timeout
        while True:
            info = self.jmx("Hadoop:service=NameNode,name=NameNodeStatus")
            if info and info.get("State") == "active":
                safe = self.jmx("Hadoop:service=NameNode,name=NameNodeInfo") or {}
                if not safe.get("Safemode"):
                    return
            if not self.daemons.daemons["namenode"].running:
                raise HdfsError(f"NameNode exited\n{self.daemons.log_tail('namenode')}")
            if time.monotonic() > deadline:
                raise HdfsError(f"NameNode not active after {timeout:g}s\n"
                                f"{self.daemons.log_tail('namenode')}")
            time.sleep(0.5)

    def start_datanode(self, vm: str) -> int:
        return self.daemons.start(vm)

    def kill_datanode(self, vm: str) -> int | None:
        return self.daemons.kill(vm)

    def close(self, graceful: bool = True) -> None:
        self.daemons.close(graceful=graceful)
        self.remove_routes()
        self._http.close()
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None

    # the NameNode's HTTP API

    def jmx(self, query: str, url: str | None = None) -> dict[str, Any] | None:
        try:
            response = self._http.get(f"{url or self.nn_url}/jmx", params={"qry": query},
                                      timeout=3.0)
            beans = response.json().get("beans", [])
        except (httpx.HTTPError, ValueError):
            return None
        return beans[0] if beans else None

    def node_lists(self) -> dict[str, dict[str, Any]]:
        """DataNodes by VM: {"live"|"dead"|...: True, adminState, location...}."""
        info = self.jmx("Hadoop:service=NameNode,name=NameNodeInfo") or {}
        out: dict[str, dict[str, Any]] = {}
        for key in ("LiveNodes", "DeadNodes"):
            try:
                nodes = json.loads(info.get(key) or "{}")
            except ValueError:
                continue
            for name, node in nodes.items():
                vm = self.vm_of(node.get("xferaddr") or name)
                if vm:
                    out[vm] = {**node, "state": "live" if key == "LiveNodes" else "dead"}
        return out

    def wait_datanodes(self, vms: Sequence[str], timeout: float) -> None:
        """Every DataNode of `vms` live and in service, with a block report in."""
        deadline = time.monotonic() + timeout
        while True:
            nodes = self.node_lists()
            missing = [vm for vm in vms if nodes.get(vm, {}).get("state") != "live"
                       or nodes[vm].get("adminState") != "In Service"]
            if not missing:
                return
            exited = [vm for vm in vms if not self.daemons.daemons[vm].running]
            if exited:
                raise HdfsError(f"DataNode of {exited[0]} exited\n"
                                f"{self.daemons.log_tail(exited[0])}")
            if time.monotonic() > deadline:
                raise HdfsError(f"DataNodes not live after {timeout:g}s: {missing}\n"
                                f"{self.daemons.log_tail(missing[0])}")
            time.sleep(0.5)

    def racks(self) -> dict[str, str]:
        """VM -> the rack the NameNode placed its DataNode in."""
        return {vm: str(node.get("location", "")) for vm, node in self.node_lists().items()}

    def fsck_blocks(self, timeout: float = 20.0) -> dict[str, tuple[int, frozenset[str]]] | None:
        """Every complete block: id -> (length, VMs holding a replica), from the NameNode's
        fsck servlet; None when it did not answer."""
        try:
            response = self._http.get(
                f"{self.nn_url}/fsck", timeout=timeout,
                params={"ugi": USER, "path": "/", "files": "1", "blocks": "1",
                        "locations": "1"})
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        blocks: dict[str, tuple[int, frozenset[str]]] = {}
        for block, length, addresses in parse_fsck(response.text):
            vms = frozenset(vm for a in addresses if (vm := self.vm_of(a)))
            blocks[block] = (length, vms)
        return blocks


_FSCK_BLOCK = re.compile(r"^\d+\. \S+:(blk_\d+)_\d+ len=(\d+)")
_FSCK_LOC = re.compile(r"DatanodeInfoWithStorage\[([0-9.]+:\d+)")


def parse_fsck(text: str) -> list[tuple[str, int, list[str]]]:
    """(block id, length, replica addresses) of every block line of `hdfs fsck -files
    -blocks -locations` output."""
    found = []
    for line in text.splitlines():
        match = _FSCK_BLOCK.match(line.strip())
        if match:
            found.append((match.group(1), int(match.group(2)), _FSCK_LOC.findall(line)))
    return found


# --------------------------------------------------------------------------- the client


def content(file_id: int, size: int) -> bytes:
    seed = hashlib.sha256(f"quorumgate-{file_id}".encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


class HdfsLoad:
    """Writes numbered files and reads acknowledged ones back, through WebHDFS.

    A write is acknowledged when the DataNode answers 201 to the data. Each operation
    gets `tries` attempts `retry_s` apart (as a client retries another DataNode); it
    fails only when all of them fail. At the end every acknowledged file is read back.
    """

    def __init__(self, nn_url: str, folder: str = "/load", *, size: int = 48 * 1024,
                 write_pause_s: float = 0.25, read_pause_s: float = 0.25, tries: int = 3,
                 retry_s: float = 0.4) -> None:
        self.nn_url = nn_url
        self.folder = folder
        self.size = size
        self.write_pause_s = write_pause_s
        self.read_pause_s = read_pause_s
        self.tries = tries
        self.retry_s = retry_s
        self.acked: list[tuple[int, float]] = []
        self.failed_writes: list[tuple[float, str]] = []
        self.failed_reads: list[tuple[float, int, str]] = []
        self.reads = 0
        self.attempt_errors: Counter[str] = Counter()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._write_loop, name="hdfs-writer",
                                          daemon=True),
                         threading.Thread(target=self._read_loop, name="hdfs-reader",
                                          daemon=True)]
        self._next = 1
        self.started = 0.0
        self.ended = 0.0

    def _url(self, file_id: int) -> str:
        return f"{self.nn_url}/webhdfs/v1{self.folder}/f-{file_id:07d}"

    def _location(self, http: httpx.Client, method: str, url: str,
                  params: dict[str, str]) -> str:
        response = http.request(method, url, params={**params, "user.name": USER,
                                                     "noredirect": "true"})
        if response.status_code != 200:
            raise httpx.HTTPStatusError(f"{response.status_code} {response.text[:160]}",
                                        request=response.request, response=response)
        return str(response.json()["Location"])

    def write(self, http: httpx.Client, file_id: int) -> None:
        location = self._location(http, "PUT", self._url(file_id),
                                  {"op": "CREATE", "overwrite": "true", "replication": "3",
                                   "blocksize": str(BLOCK_SIZE)})
        response = http.put(location, content=content(file_id, self.size))
        if response.status_code != 201:
            raise httpx.HTTPStatusError(f"{response.status_code} {response.text[:160]}",
                                        request=response.request, response=response)

    def read(self, http: httpx.Client, file_id: int) -> None:
        location = self._location(http, "GET", self._url(file_id), {"op": "OPEN"})
        response = http.get(location)
        if response.status_code != 200:
            raise httpx.HTTPStatusError(f"{response.status_code} {response.text[:160]}",
                                        request=response.request, response=response)
        if response.content != content(file_id, self.size):
            raise ValueError(f"file {file_id}: wrong content ({len(response.content)} bytes)")

    def _attempt(self, op: Callable[[], None]) -> str | None:
        """None when done within the tries, else the last error."""
        error = ""
        for attempt in range(self.tries):
            if attempt:
                self._stop.wait(self.retry_s)
            try:
                op()
                return None
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                error = f"{type(exc).__name__}: {str(exc)[:160]}"
                self.attempt_errors[type(exc).__name__] += 1
        return error

    def _write_loop(self) -> None:
        with httpx.Client(timeout=15.0, trust_env=False) as http:
            while not self._stop.is_set():
                file_id = self._next
                self._next += 1
                error = self._attempt(lambda i=file_id: self.write(http, i))
                if error is None:
                    self.acked.append((file_id, time.time()))
                else:
                    self.failed_writes.append((time.time(), error))
                self._stop.wait(self.write_pause_s)

    def _read_loop(self) -> None:
        rnd = random.Random(7)
        with httpx.Client(timeout=15.0, trust_env=False) as http:
            while not self._stop.is_set():
                if self.acked:
                    file_id = self.acked[rnd.randrange(len(self.acked))][0]
                    error = self._attempt(lambda i=file_id: self.read(http, i))
                    self.reads += 1
                    if error is not None:
                        self.failed_reads.append((time.time(), file_id, error))
                self._stop.wait(self.read_pause_s)

    def start(self) -> None:
        self.started = time.monotonic()
        for thread in self._threads:
            thread.start()

    def wait_acks(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.acked) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        return len(self.acked) >= count

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(40)
        self.ended = self.ended or time.monotonic()

    def read_back(self, timeout: float = 120.0) -> list[int]:
        """Acknowledged files that cannot be read back intact (after the retries)."""
        lost = []
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=15.0, trust_env=False) as http:
            for file_id, _ in self.acked:
                if time.monotonic() > deadline:
                    lost.append(file_id)
                    continue
                error = None
                for _ in range(3):
                    try:
                        self.read(http, file_id)
                        error = None
                        break
                    except (httpx.HTTPError, ValueError, KeyError) as exc:
                        error = exc
                        time.sleep(0.5)
                if error is not None:
                    lost.append(file_id)
        return lost


# --------------------------------------------------------------------------- the watch


@dataclass
class WatchFigures:
    samples: int = 0
    low_redundancy_block_s: float = 0.0
    """Integral of the NameNode's LowRedundancyBlocks over time (block-seconds)."""
    max_low_redundancy: int = 0
    max_missing: int = 0
    """The NameNode's MissingBlocks, highest value seen."""
    unavailable_blocks: set[str] = field(default_factory=set)
    """Blocks that at some sample had no replica on a running, non-dead DataNode."""
    rereplicated: int = 0
    """Replicas added to blocks that already had all their replicas (re-replication:
    after a replica was lost)."""
    rereplicated_bytes: int = 0
    max_pending_reconstruction: int = 0
    fsck_failures: int = 0


class HdfsWatch:
    """Polls the NameNode: JMX every `interval_s`, fsck every `fsck_every` samples."""

    def __init__(self, cluster: HdfsCluster, interval_s: float = 1.0,
                 fsck_every: int = 2) -> None:
        self.cluster = cluster
        self.interval_s = interval_s
        self.fsck_every = fsck_every
        self.figures = WatchFigures()
        self.blocks: dict[str, tuple[int, frozenset[str]]] = {}
        self.timeline: list[dict[str, Any]] = []
        self.rereplications: list[tuple[float, str, list[str], list[str]]] = []
        """(when, block, replicas before, replicas added) of every re-replication."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hdfs-watch", daemon=True)
        self._last: tuple[float, int] | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(self.interval_s):
            with contextlib.suppress(Exception):
                self.sample(fsck=n % self.fsck_every == 0)
            n += 1

    def sample(self, fsck: bool = True) -> None:
        f = self.figures
        now = time.monotonic()
        ns = self.cluster.jmx("Hadoop:service=NameNode,name=FSNamesystem") or {}
        low = int(ns.get("LowRedundancyBlocks", ns.get("UnderReplicatedBlocks", 0)) or 0)
        if self._last is not None:
            f.low_redundancy_block_s += self._last[1] * (now - self._last[0])
        self._last = (now, low)
        f.samples += 1
        f.max_low_redundancy = max(f.max_low_redundancy, low)
        f.max_missing = max(f.max_missing, int(ns.get("MissingBlocks", 0) or 0))
        f.max_pending_reconstruction = max(
            f.max_pending_reconstruction,
            int(ns.get("PendingReconstructionBlocks", ns.get("PendingReplicationBlocks", 0))
                or 0))
        point = {"t": time.time(), "low_redundancy": low,
                 "missing": int(ns.get("MissingBlocks", 0) or 0),
                 "live": ns.get("NumLiveDataNodes"), "dead": ns.get("NumDeadDataNodes"),
                 "in_maintenance": ns.get("NumInMaintenanceLiveDataNodes", 0)
                 + ns.get("NumInMaintenanceDeadDataNodes", 0)}
        self.timeline.append(point)
        if not fsck:
            return
        blocks = self.cluster.fsck_blocks()
        if blocks is None:
            f.fsck_failures += 1
            return
        nodes = self.cluster.node_lists()
        serving = {vm for vm, node in nodes.items() if node.get("state") == "live"
                   and self.cluster.daemons.daemons[vm].running}
        replication = self.cluster.replication
        for block, (length, vms) in blocks.items():
            before = self.blocks.get(block)
            if before is not None:
                added = vms - before[1]
                # A block is complete once one replica is reported; the others' reports
                # follow within seconds. Only a block that had all its replicas gets
                # re-replicated ones.
                if added and len(before[1]) >= replication:
                    f.rereplicated += len(added)
                    f.rereplicated_bytes += len(added) * length
                    self.rereplications.append((time.time(), block, sorted(before[1]),
                                                sorted(added)))
                vms_known = before[1] | vms
            else:
                vms_known = vms
            self.blocks[block] = (length, vms_known)
            if not (vms & serving):
                f.unavailable_blocks.add(block)


# --------------------------------------------------------------------------- the workload


class HdfsWorkload(Workload):
    """A NameNode, a DataNode on each of `vms`, the client and the watch."""

    def __init__(self, vms: Sequence[str], *, group_prefix: str = "hdfs",
                 setup_timeout_s: float = 240.0, maintenance_min: int = 1,
                 say: Callable[[str], None] | None = None, **cluster: Any) -> None:
        self.vm_names = list(vms)
        self.group_prefix = group_prefix
        self.setup_timeout_s = setup_timeout_s
        self.say = say or (lambda line: None)
        self.cluster = HdfsCluster(self.vm_names, maintenance_min=maintenance_min, **cluster)
        self.load: HdfsLoad | None = None
        self.watch: HdfsWatch | None = None
        self.vm_events: list[tuple[float, str, str]] = []
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._starter: threading.Thread | None = None
        self._report: dict[str, Any] | None = None
        self._deadline = 0.0
        self._vms_up: set[str] = set(self.vm_names)
        self._lock = threading.Lock()

    def provider(self, interval_s: float = 2.0) -> ProviderConfig:
        """The coordinators' group provider: the NameNode's DataNodes and replica sets."""
        return ProviderConfig(id=self.group_prefix, kind="hdfs", group=self.group_prefix,
                              url=self.cluster.nn_url, interval_s=interval_s,
                              member_map={d.address: d.vm
                                          for d in self.cluster.datanodes.values()})

    def checked_groups(self) -> list[GroupSpec]:
        """For the ground-truth checker: any 3 DataNodes may hold a block's replicas, so
        every 3-subset must keep maintenance_min (the groups the provider will find are
        among them)."""
        from itertools import combinations

        return [GroupSpec(f"{self.group_prefix}-check-{i}", list(members),
                          self.cluster.maintenance_min)
                for i, members in enumerate(combinations(self.vm_names,
                                                         self.cluster.replication))]

    def describe(self) -> list[str]:
        c = self.cluster
        lines = [f"HDFS           NameNode {c.nn_url} (RPC 127.0.0.1:{c.rpc_port}), "
                 f"Hadoop {jvm.HADOOP_VERSION}, data in {c.base}"]
        racks = c.racks()
        for d in c.datanodes.values():
            lines.append(f"  DataNode {d.vm}: {d.address}:{d.xfer_port}, rack "
                         f"{racks.get(d.vm, '?')}, log {d.dir / 'datanode.log'}")
        lines.append(f"  groups {self.group_prefix}-* from the NameNode's replica sets "
                     f"(min_available {c.maintenance_min} = "
                     f"dfs.namenode.maintenance.replication.min)")
        return lines

    # Workload

    def setup(self, rollout: Rollout) -> None:
        """The NameNode now; the DataNodes once the agents have registered (their racks
        come from the coordinators' view of the VMs): `wait_ready()`."""
        self._deadline = time.monotonic() + self.setup_timeout_s
        url = rollout.api_urls[0] if rollout.api_urls else ""
        # Without a coordinator (the baselines) the same racks come from a fixed table.
        self.cluster.prepare(url, rollout.viewer_token,
                             None if url else static_racks(rollout))
        self.cluster.add_routes()
        self.cluster.format()
        self._starter = threading.Thread(target=self._start_rest, args=(rollout,),
                                         name="hdfs-start", daemon=True)
        self._starter.start()

    def _start_rest(self, rollout: Rollout) -> None:
        try:
            # The NameNode resolves the racks of every host in its include file when it
            # starts (and caches them): quorumgate must know the VMs by then.
            wait_registered(rollout, self.vm_names, self._deadline,
                            lambda: HdfsError("agents of the DataNode VMs did not register"))
            racks = self.cluster.resolve_racks(max(10.0, self._deadline - time.monotonic()))
            self.say(f"HDFS racks from quorumgate topology hdfs: {racks}")
            self.cluster.start_namenode(max(10.0, self._deadline - time.monotonic()))
            self.say(f"HDFS NameNode active at {self.cluster.nn_url}")
            for vm in self.vm_names:
                self.cluster.start_datanode(vm)
            self.cluster.wait_datanodes(self.vm_names,
                                        max(10.0, self._deadline - time.monotonic()))
            self.say(f"HDFS DataNodes live: racks {self.cluster.racks()}")
            self.load = HdfsLoad(self.cluster.nn_url)
            self.load.start()
            if not self.load.wait_acks(20, max(10.0, self._deadline - time.monotonic())):
                raise HdfsError(f"the client writes nothing: {self.load.failed_writes[-3:]}")
            self.watch = HdfsWatch(self.cluster)
            self.watch.sample()
            self.watch.start()
            if rollout.coordinators:
                wait_groups(rollout, self.group_prefix, self.vm_names, self._deadline,
                            lambda left: HdfsError(f"the hdfs provider published no group "
                                                   f"for {list(left)}"))
            self._ready.set()
        except BaseException as exc:
            self._failed = exc
            self._ready.set()

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until the DataNodes are live, the client writes and the groups are
        published (call it between the stack's start and `rollout.run()`)."""
        if self._starter is None:
            raise HdfsError("setup() has not run")
        limit = (timeout if timeout is not None
                 else max(1.0, self._deadline - time.monotonic()) + 60.0)
        if not self._ready.wait(limit):
            raise HdfsError("HDFS not ready in time")
        if self._failed is not None:
            raise HdfsError(f"HDFS did not start: {self._failed}") from self._failed

    def agent_settings(self, vm: str) -> dict[str, Any]:
        if vm not in self.cluster.datanodes or self.cluster.base is None:
            return {}
        d = self.cluster.datanodes[vm]
        log = self.cluster.base / f"hooks-{vm}.log"
        env = ["env", f"HDFS_HOSTS_FILE={self.cluster.hosts_file}",
               f"HDFS_DATANODE_HOST={d.address}", f"HDFS_BIN={self.cluster.hdfs_bin}",
               f"HDFS_DATANODE_HTTP={d.http_url}", f"HDFS_NAMENODE_HTTP={self.cluster.nn_url}",
               "HDFS_POLL_S=1", "HDFS_MAINTENANCE_S=600",
               f"QG_HOOK_LOG={log}"]
        tee = 'set -o pipefail; { "$@"; } 2>&1 | tee -a "$QG_HOOK_LOG"'
        drain = [*env, "HDFS_WAIT_S=150", "bash", "-c", tee, "hdfs-drain", str(DRAIN_HOOK)]
        restore = [*env, "HDFS_WAIT_S=200", "bash", "-c", tee, "hdfs-restore",
                   str(RESTORE_HOOK)]
        return {"drain_hook": {"command": drain, "timeout_s": 180},
                "restore_hook": {"command": restore, "timeout_s": 240}}

    def vm_down(self, vm: str) -> None:
        if vm in self.cluster.datanodes:
            pid = self.cluster.kill_datanode(vm)
            self.vm_events.append((time.time(), vm, "down"))
            self.say(f"  {vm} rebooting: killed its DataNode (pid {pid})")

    def vm_up(self, vm: str) -> None:
        if vm in self.cluster.datanodes and self.cluster.base is not None:
            if not self._ready.is_set():  # not started yet: the starter does it
                return
            pid = self.cluster.start_datanode(vm)
            self.vm_events.append((time.time(), vm, "up"))
            self.say(f"  {vm} back: DataNode started again (pid {pid})")

    def report(self, settle_timeout_s: float = 90.0) -> dict[str, Any]:
        """Let the DataNodes come back, stop the client, read every acknowledged file
        back and collect the watch's figures. Computed once."""
        if self._report is not None:
            return self._report
        healthy = True
        try:
            self.cluster.wait_datanodes(self.vm_names, settle_timeout_s)
        except HdfsError:
            healthy = False
        if self.load:
            self.load.stop()
        if self.watch:
            with contextlib.suppress(Exception):
                self.watch.sample()
            self.watch.stop()
        lost = self.load.read_back() if self.load else []
        f = self.watch.figures if self.watch else WatchFigures()
        load = self.load
        self._report = {
            "files_written": len(load.acked) if load else 0,
            "failed_writes": len(load.failed_writes) if load else -1,
            "reads": load.reads if load else 0,
            "failed_reads": len(load.failed_reads) if load else -1,
            "lost_files": len(lost),
            "lost_ids": lost[:20],
            "failed_write_samples": [e for _, e in (load.failed_writes if load else [])][:5],
            "failed_read_samples": [e for _, _, e in (load.failed_reads if load else [])][:5],
            "attempt_errors": dict(load.attempt_errors) if load else {},
            "blocks": len(self.watch.blocks) if self.watch else 0,
            "blocks_ever_unavailable": len(f.unavailable_blocks),
            "max_missing_blocks": f.max_missing,
            "low_redundancy_block_s": round(f.low_redundancy_block_s, 1),
            "max_low_redundancy_blocks": f.max_low_redundancy,
            "rereplicated_replicas": f.rereplicated,
            "rereplicated_bytes": f.rereplicated_bytes,
            "max_pending_reconstruction": f.max_pending_reconstruction,
            "rereplications": [list(r) for r in (self.watch.rereplications
                                                 if self.watch else [])][:20],
            "vm_events": [list(e) for e in self.vm_events],
            "hook_logs": hook_logs(self.cluster.base, self.vm_names),
            "healthy_at_end": healthy,
            "racks": self.cluster.racks(),
            "reboots": {vm: self.cluster.daemons.daemons[vm].kills for vm in self.vm_names},
        }
        return self._report

    def teardown(self) -> None:
        if self._starter is not None:
            self._starter.join(5)
        if self.load is not None:
            self.load.stop()
        if self.watch is not None:
            self.watch.stop()
        self.cluster.close()


def hook_logs(base: Path | None, vms: Sequence[str], lines: int = 12) -> dict[str, list[str]]:
    """The last lines of each VM's hook log (`<base>/hooks-<vm>.log`)."""
    out: dict[str, list[str]] = {}
    for vm in vms:
        if base is not None:
            with contextlib.suppress(OSError):
                out[vm] = (base / f"hooks-{vm}.log").read_text(
                    errors="replace").splitlines()[-lines:]
    return out


def hdfs_spec(strategy: str = "quorumgate", *, vms: int = 6, speed: float = 4.0,
              downtime_s: float = 80.0, timeout_s: float | None = None,
              coordinators: int = 2, say: Callable[[str], None] | None = None,
              **workload: Any) -> RolloutSpec:
    """The HDFS scenario: 3 FDs x 3 UDs, a DataNode on each of `vms` VMs (two per UD
    with the default 6), replication 3, racks from quorumgate, groups from the
    NameNode, a rollout of every UD. The clock runs at x4 (15 minutes of notice = 225 s
    real: a DataNode's JVM takes up to a minute to start on a busy 2-core machine). A
    reboot keeps a
    VM down `downtime_s` virtual seconds (20 s real), longer than the NameNode's
    dead-node interval (2 x 5 s recheck + 10 x 1 s heartbeat = 20 s) once the JVM's
    start is counted."""
    if vms < 4:
        raise ValueError("the HDFS scenario needs at least 4 VMs (replication 3)")
    names = [f"vm-{i}" for i in range(vms)]
    load = HdfsWorkload(names, say=say, **workload)
    if timeout_s is None:
        timeout_s = 1500.0 if strategy == "never-ack" else 900.0
    return RolloutSpec(cluster={"vms": vms, "fds": 3, "uds": 3}, groups=[],
                       speed=speed, downtime_s=downtime_s, strategy=strategy,
                       coordinators=coordinators, workload=load, timeout_s=timeout_s,
                       providers=[load.provider()], checked_groups=load.checked_groups(),
                       api=True, policy=Policy(drain_timeout_s=DRAIN_TIMEOUT_S,
                                               restore_timeout_s=RESTORE_TIMEOUT_S))


def report_table(rows: dict[str, tuple[Any, dict[str, Any]]]) -> str:
    """One line per strategy: {strategy: (Summary, workload report)}."""
    head = (f"{'strategy':<13} {'files':>6} {'failed writes':>13} {'reads':>6} "
            f"{'failed reads':>12} {'lost':>5} {'unavail. blocks':>15} "
            f"{'low-red. block-s':>16} {'re-replicated':>14} {'rollout':>9} "
            f"{'violations':>10}")
    lines = [head, "-" * len(head)]
    for name, (summary, rep) in rows.items():
        rerep = (f"{rep.get('rereplicated_replicas', 0)} "
                 f"({rep.get('rereplicated_bytes', 0) // 1024} KiB)")
        lines.append(
            f"{name:<13} {rep.get('files_written', 0):>6} {rep.get('failed_writes', -1):>13} "
            f"{rep.get('reads', 0):>6} {rep.get('failed_reads', -1):>12} "
            f"{rep.get('lost_files', -1):>5} {rep.get('blocks_ever_unavailable', -1):>15} "
            f"{rep.get('low_redundancy_block_s', 0):>16.0f} {rerep:>14} "
            f"{summary.rollout_s / 60:>5.1f} min {len(summary.violations):>10}"
            + ("" if summary.completed else "  (incomplete)"))
    return "\n".join(lines)
