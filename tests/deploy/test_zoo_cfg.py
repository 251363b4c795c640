"""deploy/zookeeper/zoo.cfg starts a real 3-node ensemble (Debian's ZooKeeper, loopback)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.deploy.common import (
    DEPLOY,
)

# ------------------------------------------------------------------ ZooKeeper


def test_zoo_cfg_runs_a_three_node_ensemble(tmp_path: Path) -> None:
    from quorumgate_testbed.zkserver import (
        ZooKeeperInstall,
        ZooKeeperNotFound,
        four_letter_word,
        free_ports,
        server_mode,
    )

    try:
        install = ZooKeeperInstall.locate()
    except ZooKeeperNotFound as exc:
        pytest.skip(str(exc))
    lines = (DEPLOY / "zookeeper" / "zoo.cfg").read_text().splitlines()
    settings = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert settings["admin.enableServer"] == "false"
    assert settings["4lw.commands.whitelist"] == "srvr,ruok,mntr"
    assert settings["standaloneEnabled"] == "false"
    assert sorted(k for k in settings if k.startswith("server.")) == [
        "server.1", "server.2", "server.3"]

    ports = free_ports(9)
    client, peer, election = ports[0:3], ports[3:6], ports[6:9]
    procs = []
    try:
        for i in (1, 2, 3):
            node = tmp_path / f"zk{i}"
            (node / "data").mkdir(parents=True)
            (node / "data" / "myid").write_text(f"{i}\n")
            cfg = []
            for line in lines:   # the file as it is, with this machine's paths and ports
                key = line.split("=", 1)[0]
                if key == "dataDir":
                    line = f"dataDir={node / 'data'}"
                elif key == "dataLogDir":
                    line = f"dataLogDir={node / 'datalog'}"
                elif key == "clientPort":
                    line = f"clientPort={client[i - 1]}\nclientPortAddress=127.0.0.1"
                elif key.startswith("server."):
                    n = int(key.split(".")[1]) - 1
                    line = f"{key}=127.0.0.1:{peer[n]}:{election[n]}"
                cfg.append(line)
            (node / "zoo.cfg").write_text("\n".join(cfg) + "\n")
            with open(node / "zookeeper.log", "wb") as log:
                procs.append(subprocess.Popen(
                    [install.java, "-Xmx128m", "-XX:+UseSerialGC",
                     "-Dzookeeper.root.logger=INFO,CONSOLE", "-cp",
                     os.pathsep.join(install.classpath),
                     "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(node / "zoo.cfg")],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        deadline = time.monotonic() + 45
        modes: list[str | None] = []
        while time.monotonic() < deadline:
            modes = [server_mode("127.0.0.1", port) for port in client]
            if all(m in ("leader", "follower") for m in modes):
                break
            assert all(p.poll() is None for p in procs), "a ZooKeeper node exited"
            time.sleep(0.2)
        assert sorted(modes) == ["follower", "follower", "leader"], modes
        assert four_letter_word("127.0.0.1", client[0], "ruok") == "imok"
        assert "zk_server_state" in four_letter_word("127.0.0.1", client[0], "mntr")
        assert "not in the whitelist" in four_letter_word("127.0.0.1", client[0], "conf")
        logs = "".join((tmp_path / f"zk{i}" / "zookeeper.log").read_text(errors="replace")
                       for i in (1, 2, 3))
        assert "Started AdminServer" not in logs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
