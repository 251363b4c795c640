"""Processes of the scale benchmark: ZooKeeper, an out-of-process coordinator, its memory."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from quorumgate_testbed.procs import CoordinatorProcess
from quorumgate_testbed.zkserver import ZooKeeperServer, four_letter_word

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-viewer-token"


@contextlib.contextmanager
def zookeeper() -> Iterator[str]:
    """ZK_HOSTS when set, else a private standalone server (Debian's package).

    Its `maxClientCnxns` is lifted: ZooKeeper allows 60 connections per client address
    by default, and here a hundred agents share 127.0.0.1 (on VMs each has its own)."""
    hosts = os.environ.get("ZK_HOSTS")
    if hosts:
        yield hosts
        return
    server = ZooKeeperServer(heap="512m", extra_config={"maxClientCnxns": "0"})
    with server.start():
        yield server.hosts


def mntr(hosts: str) -> dict[str, str]:
    host, _, port = hosts.split(",")[0].partition(":")
    out = {}
    for line in four_letter_word(host, int(port or 2181), "mntr", timeout=5).splitlines():
        key, _, value = line.partition("\t")
        if key:
            out[key.strip()] = value.strip()
    return out


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in KiB, from /proc."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def coordinator(hosts: str, cluster: str, workdir: Path, resync_s: float = 1.0,
                log_level: str = "WARNING", extra: tuple[str, ...] = ()) -> CoordinatorProcess:
    """A started `quorumgate coordinator` for the benchmarks (the test bed's one helper),
    listening, with a viewer token (`TOKEN`)."""
    proc = CoordinatorProcess(
        f"bench-{cluster}", ["--cluster", cluster, "--zk-hosts", hosts, "--port", "0",
                             "--token", f"{TOKEN}:viewer", "--resync", str(resync_s),
                             "--log-level", log_level, *extra],
        workdir, skewable=False)
    proc.start()
    proc.wait_url()
    return proc


# ---------------------------------------------------------------- sampling profiles


def pyspy_record(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """Start `py-spy record` (collapsed stacks) on a process; None when py-spy is absent."""
    exe = Path(sys.executable).with_name("py-spy")
    if not exe.exists():
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([str(exe), "record", "--pid", str(pid), "--duration",
                             str(int(seconds)), "--rate", "200", "--format", "raw",
                             "--nonblocking", "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _frame(text: str) -> str:
    """`func (path/to/module.py:12)` -> `func (module.py)`."""
    name, _, where = text.partition(" (")
    file = where.split(":")[0].rstrip(")")
    return f"{name} ({Path(file).name})" if file else name


def _is(frame: str, function: str) -> bool:
    name = frame.split(" (")[0]
    return name == function or name.endswith("." + function)


def collapsed_summary(path: Path, top: int = 10, root: str = "get_topology") -> str:
    """From py-spy's collapsed stacks: where the process spends its samples.

    Idle waits (`Condition.wait`, selector waits) are left out. Shares are of the busy
    samples: first the split between the request handler `root` and the rest, then the
    functions under `root` by inclusive and by own time."""
    idle = ("Condition.wait", "EpollSelector.select", "Queue.get", "Event.wait",
            "select (", "sleep")
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    busy = handled = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";")]
        if any(frames[-1].startswith(i) or i in frames[-1] for i in idle):
            continue
        busy += count
        at = next((i for i, f in enumerate(frames) if _is(f, root)), None)
        if at is None:
            continue
        handled += count
        below = frames[at:]
        for frame in set(below):
            inclusive[frame] = inclusive.get(frame, 0) + count
        own[below[-1]] = own.get(below[-1], 0) + count
    if not handled:
        return f"    no busy samples in {root} ({busy} busy samples in all)"
    lines = [f"    {handled / busy:.0%} of the process's busy samples are in {root}; "
             f"within it (inclusive | own):"]
    ranked_in = sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]
    ranked_own = sorted(own.items(), key=lambda kv: -kv[1])[:top]
    for i in range(max(len(ranked_in), len(ranked_own))):
        left = (f"{ranked_in[i][1] / handled:6.1%} {ranked_in[i][0]}"
                if i < len(ranked_in) else "")
        right = (f"{ranked_own[i][1] / handled:6.1%} {ranked_own[i][0]}"
                 if i < len(ranked_own) else "")
        lines.append(f"    {left:<52} | {right}")
    return "\n".join(lines)
