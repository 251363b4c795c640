"""The HDFS hooks run for real against a fake `hdfs` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.common import (
    HOOKS,
    needs_jq_flock,
    run_hook,
)

# ------------------------------------------------------------------ hooks: HDFS

FAKE_HDFS = '''#!{python}
"""A fake `hdfs`: records its arguments; `dfsadmin -refreshNodes` and `dfsadmin -report`
answer from the dfs.hosts JSON file. A host set IN_MAINTENANCE shows "Entering
maintenance" for FAKE_HDFS_LAG reports after the refresh, then "In maintenance"."""
import json, os, sys
args = sys.argv[1:]
log = os.environ["FAKE_HDFS_LOG"]
with open(log, "a") as f:
    f.write(" ".join(args) + "\\n")
if args[:2] == ["dfsadmin", "-refreshNodes"]:
    if os.environ.get("FAKE_HDFS_REFRESH_FAILS"):
        print("refreshNodes: Connection refused", file=sys.stderr)
        sys.exit(255)
    print("Refresh nodes successful")
    sys.exit(0)
if args[:2] != ["dfsadmin", "-report"]:
    print("fake hdfs: unexpected arguments", args, file=sys.stderr)
    sys.exit(1)
calls = open(log).read().splitlines()
refresh = max(i for i, c in enumerate(calls) if c == "dfsadmin -refreshNodes")
reports = sum(1 for c in calls[refresh:] if c.startswith("dfsadmin -report"))
lag = int(os.environ.get("FAKE_HDFS_LAG", "0"))
down = set(os.environ.get("FAKE_HDFS_DEAD", "").split(","))
live = [e for e in json.load(open(os.environ["HDFS_HOSTS_FILE"])) if e["hostName"] not in down]
print("Configured Capacity: 1000 (1000 B)\\n-------------------------------------------------")
print(f"Live datanodes ({{len(live)}}):\\n")
for i, e in enumerate(live):
    state = e.get("adminState", "NORMAL")
    if state == "IN_MAINTENANCE":
        status = "In maintenance" if reports > lag else "Entering maintenance"
    elif state == "DECOMMISSIONED":
        status = "Decommissioned"
    else:
        status = "Normal"
    print(f"Name: 10.0.0.{{i + 4}}:9866 ({{e['hostName']}})\\nHostname: {{e['hostName']}}")
    print(f"Rack: /fd{{i % 3}}/ud{{i % 5}}\\nDecommission Status : {{status}}")
    print("Configured Capacity: 1000 (1000 B)\\nDFS Used: 10 (10 B)\\n")
'''


@pytest.fixture
def hdfs(tmp_path: Path) -> dict[str, Any]:
    """A dfs.hosts JSON file of three DataNodes and a fake `hdfs` first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "hdfs"
    fake.write_text(FAKE_HDFS.format(python=sys.executable))
    fake.chmod(0o755)
    hosts = tmp_path / "conf" / "dfs.hosts.json"
    hosts.parent.mkdir()
    entries = [{"hostName": "dn0.example.com", "upgradeDomain": "ud0"},
               {"hostName": "dn1.example.com", "port": 9866},
               {"hostName": "dn2.example.com", "adminState": "NORMAL"}]
    hosts.write_text(json.dumps(entries, indent=2))
    log = tmp_path / "hdfs.log"
    env = {"PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
           "HDFS_HOSTS_FILE": str(hosts), "HDFS_DATANODE_HOST": "DN1.example.com",
           "HDFS_POLL_S": "0.1", "FAKE_HDFS_LOG": str(log), "QG_VM": "vm-1"}
    return {"env": env, "hosts": hosts, "entries": entries, "log": log}


def calls(hdfs: dict[str, Any]) -> list[str]:
    return hdfs["log"].read_text().splitlines() if hdfs["log"].exists() else []


@needs_jq_flock
def test_hdfs_drain_puts_the_datanode_in_maintenance(hdfs: dict[str, Any]) -> None:
    not_before = time.time() + 900  # the event's NotBefore: the expiry counts from it
    result = run_hook("hdfs-datanode-drain.sh", {**hdfs["env"], "QG_ACTION": "drain",
                                                 "FAKE_HDFS_LAG": "2",
                                                 "QG_NOT_BEFORE": f"{not_before:.3f}",
                                                 "HDFS_MAINTENANCE_S": "3600",
                                                 "HDFS_MAINTENANCE_MARGIN_S": "600"})
    assert result.returncode == 0, result.stderr
    entries = json.loads(hdfs["hosts"].read_text())
    assert entries[0] == hdfs["entries"][0] and entries[2] == hdfs["entries"][2]
    mine = entries[1]
    assert mine["hostName"] == "dn1.example.com" and mine["port"] == 9866
    assert mine["adminState"] == "IN_MAINTENANCE"
    expected_ms = (not_before + 3600 + 600) * 1000
    assert expected_ms - 5000 <= mine["maintenanceExpireTimeInMS"] <= expected_ms + 5000
    log = calls(hdfs)
    assert log[0] == "dfsadmin -refreshNodes"
    assert log[1:] == ["dfsadmin -report"] * 3       # Entering, Entering, In maintenance
    assert "Entering maintenance" in result.stderr and "drained" in result.stderr


@needs_jq_flock
def test_hdfs_restore_puts_it_back_to_normal(hdfs: dict[str, Any]) -> None:
    assert run_hook("hdfs-datanode-drain.sh", hdfs["env"]).returncode == 0
    result = run_hook("hdfs-datanode-restore.sh", {**hdfs["env"], "QG_ACTION": "restore"})
    assert result.returncode == 0, result.stderr
    entries = json.loads(hdfs["hosts"].read_text())
    assert entries[1] == {"hostName": "dn1.example.com", "port": 9866, "adminState": "NORMAL"}
    assert entries[0] == hdfs["entries"][0]
    # back and reporting while still in maintenance, then the refresh, then Normal
    assert calls(hdfs)[-3:] == ["dfsadmin -report -live", "dfsadmin -refreshNodes",
                                "dfsadmin -report -live"]
    # twice is harmless: nothing to change, it still checks the node is live and Normal
    result = run_hook("hdfs-datanode-restore.sh", hdfs["env"])
    assert result.returncode == 0, result.stderr
    assert json.loads(hdfs["hosts"].read_text())[1]["adminState"] == "NORMAL"


@needs_jq_flock
def test_hdfs_restore_waits_until_the_datanode_is_live(hdfs: dict[str, Any]) -> None:
    assert run_hook("hdfs-datanode-drain.sh", hdfs["env"]).returncode == 0
    result = run_hook("hdfs-datanode-restore.sh", {**hdfs["env"], "HDFS_WAIT_S": "1",
                                                   "FAKE_HDFS_DEAD": "dn1.example.com"})
    assert result.returncode == 6, result.stderr
    assert "not among the live DataNodes" in result.stderr
    # maintenance is not ended while the node is dead: its replicas would be re-copied
    assert json.loads(hdfs["hosts"].read_text())[1]["adminState"] == "IN_MAINTENANCE"
    assert "dfsadmin -refreshNodes" not in calls(hdfs)[1:]


@needs_jq_flock
def test_hdfs_drain_refuses_what_it_cannot_do_safely(hdfs: dict[str, Any]) -> None:
    original = hdfs["hosts"].read_text()
    # a host missing from the include list: adding it alone would exclude every other node
    result = run_hook("hdfs-datanode-drain.sh", {**hdfs["env"],
                                                 "HDFS_DATANODE_HOST": "dn9.example.com"})
    assert result.returncode == 3, result.stderr
    assert "not listed" in result.stderr
    assert hdfs["hosts"].read_text() == original and calls(hdfs) == []
    # refreshNodes failing
    result = run_hook("hdfs-datanode-drain.sh", {**hdfs["env"], "FAKE_HDFS_REFRESH_FAILS": "1"})
    assert result.returncode == 4, result.stderr
    # never reaching "In maintenance": bounded
    started = time.monotonic()
    result = run_hook("hdfs-datanode-drain.sh", {**hdfs["env"], "FAKE_HDFS_LAG": "100000",
                                                 "HDFS_WAIT_S": "1"})
    assert result.returncode == 6, result.stderr
    assert time.monotonic() - started < 10
    # not configured
    env = {k: v for k, v in hdfs["env"].items() if k != "HDFS_HOSTS_FILE"}
    assert run_hook("hdfs-datanode-drain.sh", env).returncode == 2
    # a decommissioned node has nothing to drain, and restore does not revive it
    entries = json.loads(original)
    entries[1]["adminState"] = "DECOMMISSIONED"
    hdfs["hosts"].write_text(json.dumps(entries))
    for hook in ("hdfs-datanode-drain.sh", "hdfs-datanode-restore.sh"):
        result = run_hook(hook, hdfs["env"])
        assert result.returncode == 0, result.stderr
        assert json.loads(hdfs["hosts"].read_text())[1]["adminState"] == "DECOMMISSIONED"


@needs_jq_flock
def test_hdfs_concurrent_drains_keep_every_change(hdfs: dict[str, Any]) -> None:
    """One update domain drains several DataNodes at once: the flock keeps both edits."""
    env = {**hdfs["env"], "HDFS_HOSTS_SYNC": "sleep 0.3"}
    procs = [subprocess.Popen([str(HOOKS / "hdfs-datanode-drain.sh")],
                              env={**env, "HDFS_DATANODE_HOST": host},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for host in ("dn0.example.com", "dn2.example.com")]
    for proc in procs:
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err.decode()
    states = [e.get("adminState") for e in json.loads(hdfs["hosts"].read_text())]
    assert states == ["IN_MAINTENANCE", None, "IN_MAINTENANCE"]


@needs_jq_flock
def test_hdfs_dispatcher_runs_the_hook_of_the_action(hdfs: dict[str, Any]) -> None:
    assert run_hook("hdfs-datanode.sh", {**hdfs["env"], "QG_ACTION": "drain"}).returncode == 0
    assert json.loads(hdfs["hosts"].read_text())[1]["adminState"] == "IN_MAINTENANCE"
    assert run_hook("hdfs-datanode.sh", {**hdfs["env"], "QG_ACTION": "restore"}).returncode == 0
    assert json.loads(hdfs["hosts"].read_text())[1]["adminState"] == "NORMAL"
    assert run_hook("hdfs-datanode.sh", {**hdfs["env"], "QG_ACTION": ""}).returncode == 2


