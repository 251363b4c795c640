"""Java daemons for the HDFS and Kafka workloads: the jars, and processes we can kill.

The jars come from Maven Central into the git-ignored `.cache/jars/<name>-<version>/lib`
(`scripts/bootstrap.sh --with hdfs`, `--with kafka`; the versions are pinned there and
here). `jars_problem()` says why a cache cannot be used.

`JavaDaemons` starts each daemon as its own process group (`start_new_session`) from
one long-lived thread with a parent-death signal, so a crashed test run leaves no JVM
behind; `kill()` SIGKILLs the whole group at once, as a reboot would; `stop()` asks
politely (SIGTERM) for a bounded time first. Every start and stop is bounded.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from quorumgate_testbed.zkserver import spawn

ROOT = Path(__file__).resolve().parents[3]
CACHE = Path(os.environ.get("QG_JARS_CACHE", ROOT / ".cache" / "jars"))
HADOOP_VERSION = "3.5.0"
KAFKA_VERSION = "4.4.0"
HADOOP = f"hadoop-{HADOOP_VERSION}"
KAFKA = f"kafka-{KAFKA_VERSION}"
HINT = "run `scripts/bootstrap.sh --with {feature}` (Maven Central into .cache/jars)"


def lib_dir(name: str) -> Path:
    return CACHE / name / "lib"


def jars_problem(name: str, feature: str) -> str | None:
    """None when `.cache/jars/<name>` is complete and Java runs, else why not."""
    if not (CACHE / name / ".complete").is_file() or not any(lib_dir(name).glob("*.jar")):
        return f"{name} jars not in {CACHE / name}: {HINT.format(feature=feature)}"
    if java() is None:
        return "no java on PATH (install a JRE 17+)"
    return None


def java() -> str | None:
    from shutil import which

    home = os.environ.get("JAVA_HOME")
    if home and os.access(f"{home}/bin/java", os.X_OK):
        return f"{home}/bin/java"
    return which("java")


def classpath(name: str, *extra: Path | str) -> str:
    return ":".join([*(str(e) for e in extra), f"{lib_dir(name)}/*"])


JVM_SMALL = ["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xss512k",
             "-XX:-UsePerfData", "-Djava.net.preferIPv4Stack=true"]
"""Flags for short-lived tools (CLI calls): start fast, use little."""

JVM_DAEMON = ["-XX:+UseSerialGC", "-XX:-UsePerfData", "-Xss512k", "-XX:TieredStopAtLevel=1",
              "-XX:MaxMetaspaceSize=160m", "-XX:ReservedCodeCacheSize=48m",
              "-Djava.net.preferIPv4Stack=true"]
"""Flags for daemons on a 2-core machine shared with other work: the C1 compiler only
(a daemon starts with a fraction of the CPU; the loads here are small)."""


@dataclass
class Daemon:
    name: str
    command: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    kills: int = 0
    history: list[tuple[float, str]] = field(default_factory=list)
    """(wall time, "start" | "kill" | "stop") of every change."""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.running and self.proc is not None else None


_registries: weakref.WeakSet[JavaDaemons] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    for registry in list(_registries):
        with contextlib.suppress(Exception):
            registry.close(graceful=False)


class JavaDaemons:
    """Named daemons, each a process group started by one spawner thread."""

    def __init__(self) -> None:
        self.daemons: dict[str, Daemon] = {}
        self._locks: dict[str, threading.Lock] = {}
        _registries.add(self)

    def add(self, daemon: Daemon) -> Daemon:
        self.daemons[daemon.name] = daemon
        self._locks[daemon.name] = threading.Lock()
        return daemon

    def start(self, name: str) -> int:
        daemon = self.daemons[name]
        with self._locks[name]:
            if daemon.running:
                assert daemon.proc is not None
                return daemon.proc.pid

            daemon.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(daemon.log_path, "ab") as log:  # forked by the one spawner thread
                daemon.proc = spawn(daemon.command, cwd=daemon.cwd, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, env={**os.environ, **daemon.env})
            daemon.starts += 1
            daemon.history.append((time.time(), "start"))
            return daemon.proc.pid

    def kill(self, name: str, timeout: float = 10.0) -> int | None:
        """SIGKILL the daemon's whole process group at once (a reboot). Bounded."""
        daemon = self.daemons[name]
        with self._locks[name]:
            proc, daemon.proc = daemon.proc, None
            if proc is None:
                return None
            pid = proc.pid
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
            daemon.kills += 1
            daemon.history.append((time.time(), "kill"))
            return pid

    def stop(self, name: str, timeout: float = 15.0) -> None:
        """SIGTERM (a clean shutdown), then SIGKILL what is left after `timeout`."""
        daemon = self.daemons[name]
        with self._locks[name]:
            proc, daemon.proc = daemon.proc, None
            if proc is None:
                return
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)
            daemon.history.append((time.time(), "stop"))

    def close(self, graceful: bool = True, names: Sequence[str] | None = None) -> None:
        """Stop (or kill) every daemon, in parallel, bounded."""
        stop: Callable[[str], object] = self.stop if graceful else self.kill
        threads = [threading.Thread(target=stop, args=(n,), daemon=True)
                   for n in (names or list(self.daemons))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        for daemon in self.daemons.values():  # whatever is still there: kill its group
            if daemon.proc is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(daemon.proc.pid, signal.SIGKILL)

    def log_tail(self, name: str, lines: int = 20) -> str:
        try:
            text = self.daemons[name].log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


def run_tool(command: Sequence[str], timeout: float, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    """A bounded CLI call (its own process group, killed whole on time-out)."""
    proc = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,
                            env={**os.environ, **(env or {})})
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return subprocess.CompletedProcess(proc.args, 124, out, err + "\n(timed out)")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() not in {"", "0", "false", "no"}
