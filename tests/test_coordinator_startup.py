"""A coordinator started before its ZooKeeper keeps trying, with /readyz failing, and
becomes ready once ZooKeeper answers (the chaos run starts coordinators mid-fault)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from quorumgate_testbed.zkserver import ZooKeeperServer

from .helpers import wait_until

ROOT = Path(__file__).resolve().parents[1]


def test_coordinator_waits_for_zookeeper_with_readiness_failing(
        zk_server: ZooKeeperServer, tmp_path: Path) -> None:
    zk_server.stop()  # same port and data when it comes back
    log = tmp_path / "coordinator.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "quorumgate.cli", "coordinator", "--host", "127.0.0.1",
             "--port", "0", "--zk-hosts", zk_server.hosts, "--cluster", "startup",
             "--identity", "early", "--zk-session-timeout", "2", "--anonymous", "viewer",
             "--log-level", "info"],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("QG_")})
    try:
        line = re.compile(r"listening on (http://[^\s:]+:\d+)\n")
        match = wait_until(lambda: line.search(log.read_text()), timeout=30,
                           message="the listening line")
        url = match.group(1)
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        down = httpx.get(f"{url}/readyz", timeout=5)
        assert down.status_code == 503 and down.json()["role"] == "down"
        time.sleep(3)  # longer than the old 1-second --start-timeout tests used
        assert proc.poll() is None, log.read_text()[-2000:]
        assert httpx.get(f"{url}/readyz", timeout=5).status_code == 503

        zk_server.start(timeout=30)
        wait_until(lambda: (r := httpx.get(f"{url}/readyz", timeout=5)).status_code == 200
                   and r.json()["role"] == "leader", timeout=30, message="ready, and leader")
    finally:
        proc.terminate()
        try:
            assert proc.wait(20) == 0, log.read_text()[-2000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
