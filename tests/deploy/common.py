"""Shared by the deployment checks: paths, the `quorumgate` command, a clean environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

DEPLOY = ROOT / "deploy"
HOOKS = DEPLOY / "hooks"
HOOK_FILES = sorted(HOOKS.glob("*.sh"))
QUORUMGATE = Path(sys.executable).with_name("quorumgate")

needs_curl_jq = pytest.mark.skipif(
    not (shutil.which("curl") and shutil.which("jq")), reason="the hooks need curl and jq")
needs_jq_flock = pytest.mark.skipif(
    not (shutil.which("jq") and shutil.which("flock")), reason="the HDFS hooks need jq, flock")


def quorumgate(*args: str, env: dict[str, str] | None = None,
               timeout: float = 30) -> subprocess.CompletedProcess[str]:
    command = [str(QUORUMGATE)] if QUORUMGATE.exists() else [sys.executable, "-m",
                                                              "quorumgate.cli"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=env if env is not None else clean_env())


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test's environment without QG_* (so only what a test passes counts)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QG_")}
    env.update(extra or {})
    return env


def run_hook(name: str, env: dict[str, str], timeout: float = 20) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8",
            "QG_EVENT_ID": "602D9444-D2CD-49C7-8624-8643E7171297", "QG_EVENT_TYPE": "Reboot",
            "QG_NOT_BEFORE": f"{time.time() + 900:.3f}", "QG_VM": "vm-0"}
    return subprocess.run([str(HOOKS / name)], env={**base, **env}, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)
