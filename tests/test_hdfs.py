"""A real HDFS behind quorumgate (quorumgate_testbed.workloads.hdfs) and the `hdfs` provider.

The end-to-end test rolls maintenance over the three update domains of six DataNode VMs
(Apache Hadoop 3.5.0's own NameNode and DataNodes as separate JVMs, replication 3, racks
from `quorumgate topology hdfs`, groups from the NameNode's replica sets, the drain and
restore hooks of deploy/hooks) while a client writes and reads files, and checks that no
read failed, no acknowledged file was lost, no block lost its last serving replica and
maintenance caused no re-replication.

Needs the Hadoop jars (`scripts/bootstrap.sh --with hdfs`: Maven Central into
.cache/jars; `make test` does it) and root (one loopback route per DataNode). Skipped,
with the reason, where they cannot be had; a failure under CI (`CI` set).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from kazoo.client import KazooClient

from coordinator.providers import (
    ProviderConfig,
    hdfs_groups,
    member_vm,
    replica_set_name,
)
from quorumgate_testbed.rollout import rollout_stack
from quorumgate_testbed.workloads import jvm
from quorumgate_testbed.workloads.hdfs import (
    DRAIN_HOOK,
    RESTORE_HOOK,
    HdfsWorkload,
    find_hdfs,
    hdfs_spec,
    parse_fsck,
)
from registry.records import Group


def _fsck_block(block: str, locations: list[str]) -> str:
    """A block line of `hdfs fsck / -files -blocks -locations` (Hadoop 3.5)."""
    where = ", ".join(f"DatanodeInfoWithStorage[{loc},DS-{i},DISK]"
                      for i, loc in enumerate(locations))
    return (f"0. BP-1-127.0.0.1-1:{block}_1001 len=49152 Live_repl={len(locations)}  "
            f"[{where}]")


FSCK = "\n".join([
    "Connecting to namenode via http://127.0.0.1:9870/fsck?ugi=hdfs&path=%2F",
    "FSCK started by hdfs (auth:SIMPLE) from /127.0.0.1 for path / at Thu Dec 03 2026", "",
    "/load/f-0000001 49152 bytes, replicated: replication=3, 1 block(s):  OK",
    _fsck_block("blk_1073741825", ["127.9.8.1:9866", "127.9.8.2:9866", "127.9.8.4:9866"]),
    "", "/load/f-0000002 49152 bytes, replicated: replication=3, 1 block(s):  OK",
    _fsck_block("blk_1073741826", ["127.9.8.4:9866", "127.9.8.2:9866", "127.9.8.1:9866"]),
    "", "/load/f-0000003 49152 bytes, replicated: replication=2, 1 block(s):  OK",
    _fsck_block("blk_1073741827", ["127.9.8.3:9866", "10.1.1.9:9866"]),
    "", "Status: HEALTHY", ""])


def _unavailable(problem: str) -> None:
    if jvm.under_ci():
        pytest.fail(f"HDFS required under CI: {problem}", pytrace=False)
    reason = f"HDFS test skipped: {problem}"
    warnings.warn(reason, stacklevel=1)
    pytest.skip(reason)


@pytest.fixture
def hdfs_here() -> None:
    if problem := find_hdfs():
        _unavailable(problem)


# ---------------------------------------------------------------- pure parts


def test_parse_fsck_reads_blocks_and_their_replicas() -> None:
    blocks = parse_fsck(FSCK)
    assert [b[0] for b in blocks] == ["blk_1073741825", "blk_1073741826", "blk_1073741827"]
    assert blocks[0][1] == 49152
    assert blocks[0][2] == ["127.9.8.1:9866", "127.9.8.2:9866", "127.9.8.4:9866"]
    assert blocks[2][2] == ["127.9.8.3:9866", "10.1.1.9:9866"]


class _FakeNameNode(BaseHTTPRequestHandler):
    """/jmx NameNodeInfo, /fsck and /conf as a Hadoop 3 NameNode answers them."""

    nodes: dict[str, Any] = {}
    fsck = FSCK
    maintenance_min = 2

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        url = urlparse(self.path)
        query = parse_qs(url.query)
        if url.path == "/jmx":
            info = {"name": "Hadoop:service=NameNode,name=NameNodeInfo",
                    "LiveNodes": json.dumps(self.nodes), "DeadNodes": "{}"}
            body = json.dumps({"beans": [info]})
        elif url.path == "/fsck" and query.get("locations") == ["1"]:
            body = self.fsck
        elif url.path == "/conf":
            body = ("<?xml version=\"1.0\"?><configuration><property><name>"
                    f"{query['name'][0]}</name><value>{self.maintenance_min}</value>"
                    "<final>false</final></property></configuration>")
        else:
            self.send_error(404)
            return
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def namenode() -> Iterator[str]:
    _FakeNameNode.nodes = {
        f"dn{i}:9866": {"xferaddr": f"127.9.8.{i}:9866", "location": f"/fd{i % 3}/ud{i % 3}",
                        "adminState": "In Service"} for i in (1, 2, 3, 4)}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeNameNode)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_hdfs_provider_makes_a_group_per_replica_set(namenode: str) -> None:
    vms = {"vm-0": "10.0.0.4", "vm-1": "10.0.0.5", "vm-2": "10.0.0.6", "vm-3": "10.0.0.7"}
    config = ProviderConfig(id="hdfs", kind="hdfs", url=namenode,
                            member_map={f"127.9.8.{i}": f"vm-{i - 1}" for i in (1, 2, 3, 4)})
    stored: dict[str, Group] = {}
    groups = hdfs_groups(config, vms, stored.get, now=100.0)
    by_name = {g.name: g for g in groups}
    # two blocks on the same three DataNodes make one group; the NameNode's own
    # dfs.namenode.maintenance.replication.min (2 here) is its minimum
    assert by_name["hdfs-vm-0_vm-1_vm-3"].members == ["vm-0", "vm-1", "vm-3"]
    assert by_name["hdfs-vm-0_vm-1_vm-3"].min_available == 2
    # a replica on a DataNode that maps to no VM stays as an unknown member (unavailable)
    odd = next(g for name, g in by_name.items() if "vm-2" in g.members)
    assert sorted(odd.members) == ["10.1.1.9", "vm-2"] and odd.min_available == 2
    assert all(g.source == "provider:hdfs" for g in groups)
    # an int in the config overrides the NameNode's value
    fixed = config.model_copy(update={"min_available": 1})
    assert {g.min_available for g in hdfs_groups(fixed, vms, stored.get, 100.0)} == {1}


def test_hdfs_provider_never_shrinks_a_group(namenode: str) -> None:
    vms = {f"vm-{i}": f"10.0.0.{i + 4}" for i in range(4)}
    config = ProviderConfig(id="hdfs", kind="hdfs", url=namenode, min_available=1,
                            member_map={f"127.9.8.{i}": f"vm-{i - 1}" for i in (1, 2, 3, 4)})
    first = {g.name: g for g in hdfs_groups(config, vms, lambda _: None, 100.0)}
    # the NameNode declared vm-3's DataNode dead and forgot its replicas: the block now
    # lists two locations, a new replica set; the stored group keeps its three members
    _FakeNameNode.fsck = FSCK.replace(
        _fsck_block("blk_1073741825", ["127.9.8.1:9866", "127.9.8.2:9866", "127.9.8.4:9866"]),
        _fsck_block("blk_1073741825", ["127.9.8.1:9866", "127.9.8.2:9866"]))
    try:
        later = hdfs_groups(config, vms, first.get, 200.0)
    finally:
        _FakeNameNode.fsck = FSCK
    names = {g.name for g in later}
    # a block with fewer locations than its replication (a replica lost, or reports
    # still on their way for a new block) makes no group of its own: it would be a
    # smaller group that never goes away, and could hold a VM forever
    assert "hdfs-vm-0_vm-1" not in names
    # the stored group is what counts for it; the other block still lists all three
    assert "hdfs-vm-0_vm-1_vm-3" in names
    assert first["hdfs-vm-0_vm-1_vm-3"].members == ["vm-0", "vm-1", "vm-3"]


def test_member_vm_and_group_names() -> None:
    config = ProviderConfig(id="p", kind="hdfs", url="http://nn:9870",
                            member_map={"127.0.0.9": "vm-9", "4": "vm-4"})
    vms = {"vm-0": "10.0.0.4", "dn-west.example": "10.0.0.5"}
    assert member_vm(config, "127.0.0.9:9866", vms) == "vm-9"
    assert member_vm(config, "broker:9092", vms, key="4") == "vm-4"
    assert member_vm(config, "10.0.0.4:9866", vms) == "vm-0"
    assert member_vm(config, "DN-WEST.example:9866", vms) == "dn-west.example"
    assert member_vm(config, "10.9.9.9:9866", vms) is None
    assert replica_set_name("hdfs", ["vm-2", "vm-0"]) == "hdfs-vm-0_vm-2"
    long = replica_set_name("hdfs", [f"datanode-{i}.example.com" for i in range(12)])
    assert long.startswith("hdfs-") and len(long) <= 128


def test_agent_settings_wire_the_deploy_hooks() -> None:
    workload = HdfsWorkload(["vm-0", "vm-1", "vm-2", "vm-3"])
    assert workload.agent_settings("vm-0") == {}  # before set-up: no cluster folder
    workload.cluster.base = Path("/nonexistent")
    settings = workload.agent_settings("vm-1")
    drain = settings["drain_hook"]["command"]
    assert drain[-1].endswith("deploy/hooks/hdfs-datanode-drain.sh") and Path(drain[-1]).is_file()
    restore = settings["restore_hook"]["command"]
    assert restore[-1].endswith("deploy/hooks/hdfs-datanode-restore.sh")
    address = workload.cluster.datanodes["vm-1"].address
    assert f"HDFS_DATANODE_HOST={address}" in drain
    assert any(part.startswith("HDFS_DATANODE_HTTP=http://") for part in restore)
    assert workload.agent_settings("vm-9") == {}
    provider = workload.provider()
    assert provider.kind == "hdfs" and provider.member_map[address] == "vm-1"
    workload.cluster.base = None


# ---------------------------------------------------------------- the real cluster


def _hooks_by_hand(workload: HdfsWorkload, vm: str) -> dict[str, Any]:
    """Run the drain and restore hooks for `vm` with `hdfs dfsadmin` polling."""
    cluster = workload.cluster
    d = cluster.datanodes[vm]
    env = {**os.environ, "HDFS_HOSTS_FILE": str(cluster.hosts_file),
           "HDFS_DATANODE_HOST": d.address, "HDFS_BIN": str(cluster.hdfs_bin),
           "HDFS_POLL_S": "1", "HDFS_WAIT_S": "120", "QG_EVENT_ID": "by-hand"}
    env.pop("HDFS_NAMENODE_HTTP", None)
    out: dict[str, Any] = {}
    done = subprocess.run(["bash", str(DRAIN_HOOK)], env={**env, "QG_ACTION": "drain"},
                          capture_output=True, text=True, timeout=200, check=False)
    out["drain"] = (done.returncode, done.stderr[-1500:])
    node = cluster.node_lists().get(vm, {})
    out["state"] = (node.get("adminState"), node.get("state"))
    done = subprocess.run(["bash", str(RESTORE_HOOK)], env={**env, "QG_ACTION": "restore"},
                          capture_output=True, text=True, timeout=300, check=False)
    out["restore"] = (done.returncode, done.stderr[-1500:])
    return out



def _processes_mentioning(text: str) -> list[int]:
    from tests.test_patroni import _processes_mentioning as find

    return find(text)


@pytest.mark.timeout(1200)
def test_rollout_over_real_hdfs_loses_no_read(
        hdfs_here: None, zk_hosts: str, zk_cluster: str, zk: KazooClient) -> None:
    spec = hdfs_spec("quorumgate", timeout_s=800)
    workload = spec.workload
    assert isinstance(workload, HdfsWorkload)
    with rollout_stack(spec, zk_hosts, zk_cluster, out=lambda line: None) as rollout:
        workload.wait_ready()
        base = workload.cluster.base
        assert base is not None
        racks = workload.cluster.racks()
        hooks = _hooks_by_hand(workload, "vm-5")
        groups = {}
        for name in zk.get_children(rollout.layout.groups):
            if name.startswith("hdfs-"):
                groups[name] = json.loads(zk.get(rollout.layout.group(name))[0])
        summary = rollout.run()
    report = summary.workload
    detail = f"{summary.table()}\n{json.dumps(report, indent=1, default=str)[:6000]}"
    # Everything it started is stopped, the routes too.
    assert _processes_mentioning(str(base)) == []
    assert not base.exists()
    routes = subprocess.run(["ip", "route", "show", "table", "local"], capture_output=True,
                            text=True, check=False).stdout
    assert not any(d.route in routes for d in workload.cluster.datanodes.values())
    # Rack awareness came from quorumgate: /fd<N>/ud<M> of each DataNode's VM.
    assert racks == {f"vm-{i}": f"/fd{i % 3}/ud{i % 3}" for i in range(6)}, racks
    # Groups came from the NameNode: replica sets of 3 with HDFS's minimum (1).
    assert groups and all(len(g["members"]) == 3 and g["min_available"] == 1
                          and g["source"] == "provider:hdfs" for g in groups.values()), groups
    # The hooks as operators run them by hand (`hdfs dfsadmin -report`, no JMX): into
    # maintenance and back, on the real NameNode.
    assert hooks["drain"][0] == 0, hooks
    assert "is In maintenance: drained" in hooks["drain"][1], hooks
    assert hooks["state"] == ("In Maintenance", "live"), hooks
    assert hooks["restore"][0] == 0 and "live and Normal" in hooks["restore"][1], hooks
    assert summary.completed, detail
    assert summary.violations == [], detail
    # Each UD acknowledged by us; on a starved machine a DataNode's JVM can take a
    # minute to start, and the platform may start one event at its NotBefore first
    # (a late drain, not a safety matter), but not more than once.
    assert summary.acknowledged + summary.forced == 3 and summary.forced <= 1, detail
    assert report["files_written"] > 100 and report["reads"] > 100, detail
    assert report["lost_files"] == 0, detail
    assert report["blocks_ever_unavailable"] == 0, detail
    if summary.forced == 0:
        # Every VM went through maintenance: no read or write failed, and the NameNode
        # neither counted the drained replicas as missing nor copied them elsewhere
        # (a VM the platform takes without a drain may cause all of these).
        assert report["failed_reads"] == 0, detail
        assert report["failed_writes"] == 0, detail
        assert report["rereplicated_replicas"] == 0, detail
        assert report["low_redundancy_block_s"] == 0, detail
    assert report["healthy_at_end"], detail
    assert all(count == 1 for count in report["reboots"].values()), detail
