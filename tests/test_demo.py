"""The README's first command, headless: `quorumgate demo --once --json`."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_demo_rollout_completes_safely(zk_hosts: str) -> None:
    env = {**os.environ, "ZK_HOSTS": zk_hosts}
    done = subprocess.run([sys.executable, "-m", "quorumgate.cli", "demo", "--once", "--json",
                           "--speed", "120"], capture_output=True, text=True, env=env,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["completed"] and summary["violations"] == []
    assert len(summary["events"]) == 5
    assert all(e["state"] == "restored" for e in summary["events"])
    by_ud = {e["ud"]: e for e in summary["events"]}
    # pg-bad keeps two replicas (vm-5, vm-10) in UD 0: held with its reason, then forced
    assert by_ud[0]["start_cause"] == "not_before"
    assert by_ud[0]["held_reason"].startswith("unsafe: group pg-bad: event would take "
                                              "vm-10, vm-5, leaving 1 of 3 available")
    assert all(by_ud[ud]["start_cause"] == "ack" for ud in (1, 2, 3, 4))
    assert "platform schedules Reboot" in done.stderr and "approved" in done.stderr
