"""The chaos run's private network: filters are right, partitions are silent and
directional, and nothing is left behind (namespaces, links) however the lab ends."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from quorumgate_testbed import netns

# classic BPF: ldh [12]; jeq #0x800; ld [30]; jeq #10.1.2.3 -> match; ret #0; ret #-1
ONE_DESTINATION = "6,40 0 0 12,21 0 2 2048,32 0 0 30,21 1 0 167838211,6 0 0 0,6 0 0 4294967295"


def test_filter_programs() -> None:
    assert netns.bpf_program(["10.1.2.3"], 30, 0.0) == ONE_DESTINATION
    half = netns.bpf_program([], 26, 0.5).split(",")
    assert half[0] == "7" and half[4] == f"32 0 0 {netns.SKF_AD_RANDOM}"
    assert half[5] == "37 0 1 2147483647"  # random > half: keep, else drop


def _lab_or_skip() -> netns.NetLab:
    if problem := netns.problem():
        pytest.skip(problem)
    return netns.NetLab().start()


def _get(node: netns.Node | None, url: str) -> bool:
    code = ("import urllib.request,sys\n"
            f"try: urllib.request.urlopen('{url}', timeout=0.5).read()\n"
            "except Exception: sys.exit(1)")
    argv = [*(node.exec_prefix() if node else []), sys.executable, "-c", code]
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


def _links(prefix: str) -> list[str]:
    shown = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                           check=False).stdout
    spaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                            check=False).stdout
    return [line for line in (shown + spaces).splitlines() if prefix in line]


def test_partitions_are_directional_and_the_lab_cleans_up(tmp_path: Path) -> None:
    lab = _lab_or_skip()
    servers = []
    try:
        a, b = lab.add("a"), lab.add("b")
        servers.append(subprocess.Popen(
            [*b.exec_prefix(), sys.executable, "-m", "http.server", "8000", "--bind", b.ip],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        url = f"http://{b.ip}:8000/"
        deadline = time.monotonic() + 10
        while not _get(a, url) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _get(a, url) and _get(None, url)

        lab.partition([a], [b])
        assert not _get(a, url) and _get(None, url)  # only a and b are cut
        lab.heal([a])  # healing one side heals the link both ways
        assert _get(a, url)
        assert not b.out_block and not a.out_block

        lab.partition([lab.host_node()], [b], symmetric=False)
        assert not _get(None, url) and _get(a, url)
        lab.heal()
        assert _get(None, url)
        disk = lab.mount_tmpfs(tmp_path / "disk", 1)
        assert str(disk) in Path("/proc/mounts").read_text()
    finally:
        for proc in servers:
            proc.kill()
            proc.wait(5)
        lab.close()
    assert _links(lab.prefix) == []
    assert str(tmp_path / "disk") not in Path("/proc/mounts").read_text()


def test_a_lab_left_by_a_killed_run_is_removed_by_the_next() -> None:
    if problem := netns.problem():
        pytest.skip(problem)
    code = ("from quorumgate_testbed import netns; import os, sys\n"
            "lab = netns.NetLab().start(); lab.add('x')\n"
            "print(lab.prefix, flush=True); os.kill(os.getpid(), 9)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, cwd=os.path.dirname(os.path.dirname(__file__)))
    prefix = done.stdout.strip()
    assert prefix and _links(prefix), done.stderr
    assert prefix in netns.remove_stale()
    assert _links(prefix) == []
