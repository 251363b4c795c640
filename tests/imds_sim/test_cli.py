"""`quorumgate imds-sim` as a process: it prints where it listens and serves the cluster."""

from __future__ import annotations

import json
import re
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from registry.clock import VirtualClock, parse_clock
from tests.imds_sim.conftest import INSTANCE, H


@contextmanager
def imds_sim(*args: str, stop: signal.Signals = signal.SIGINT) -> Iterator[str]:
    """Run the command, yield its base URL, stop it with `stop` and expect exit 0."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "quorumgate.cli", "imds-sim", "--port", "0",
         "--log-level", "warning", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 15)
        assert ready, "imds-sim printed nothing"
        line = proc.stdout.readline()  # type: ignore[union-attr]
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        assert match, line
        yield match.group(1)
    finally:
        proc.send_signal(stop)
        try:
            assert proc.wait(timeout=10) == 0
        finally:
            proc.kill()
            proc.communicate()


def test_cli_generated_cluster_on_virtual_clock() -> None:
    with (
        imds_sim(
            "--speed", "60", "--cluster-vms", "6", "--cluster-fds", "2", "--cluster-uds", "3"
        ) as url,  # fmt: skip
        httpx.Client(trust_env=False, timeout=5) as http,
    ):
        vms = http.get(url + "/control/vms").json()
        assert [(v["name"], v["fd"], v["ud"]) for v in vms] == [
            ("vm-0", 0, 0), ("vm-1", 1, 1), ("vm-2", 0, 2),
            ("vm-3", 1, 0), ("vm-4", 0, 1), ("vm-5", 1, 2),
        ]  # fmt: skip
        clock = parse_clock(http.get(url + "/control/clock").json()["spec"])
        assert isinstance(clock, VirtualClock) and clock.speed == 60
        r = http.get(url + INSTANCE + "/compute/name?api-version=2017-04-02&format=text",
                     headers=H)  # fmt: skip
        assert r.text == "vm-0"


def test_cli_cluster_file_and_default_vm(tmp_path: Path) -> None:
    spec = {"vms": [{"name": "pg-a", "ud": 0}, {"name": "pg-b", "ud": 1}], "rate_limit_per_s": 0}
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(spec))
    with (
        imds_sim("--cluster-file", str(path), "--default-vm", "pg-b", stop=signal.SIGTERM) as url,
        httpx.Client(trust_env=False, timeout=5) as http,
    ):
        r = http.get(url + INSTANCE + "/compute/name?api-version=2017-04-02&format=text",
                     headers=H)  # fmt: skip
        assert r.text == "pg-b"
        assert http.get(url + "/control/clock").json()["spec"] == "real"


def test_cli_rejects_bad_options(tmp_path: Path) -> None:
    for args in (["--cluster-vms", "0"], ["--clock", "sundial"],
                 ["--cluster-file", str(tmp_path / "missing.json")]):  # fmt: skip
        run = subprocess.run([sys.executable, "-m", "imds_sim.cli", "--port", "0", *args],
                             capture_output=True, text=True, timeout=30)  # fmt: skip
        assert run.returncode == 2, (args, run)
        assert run.stderr.startswith("imds-sim: ")


def test_cli_zonal_topology() -> None:
    with imds_sim("--topology", "zonal", "--cluster-vms", "4", "--rate-limit", "0") as url:
        compute = httpx.get(url + "/vms/vm-1" + INSTANCE + "/compute?api-version=2025-04-07",
                            headers=H, trust_env=False, timeout=5).json()
        assert (compute["zone"], compute["platformUpdateDomain"]) == ("2", "0")
        assert compute["physicalZone"] == "westeurope-AZ02"
        walk = httpx.post(url + "/control/walks", json={"split": "vm"}, trust_env=False,
                          timeout=5).json()
        assert [s["domain"] for s in walk["steps"]] == ["zone 1", "zone 2", "zone 3"]
