"""Processes for the chaos run: coordinators and simulated VMs, each its own process.

Why processes: a network partition is per network namespace, and a namespace belongs to
a process; freezing (SIGSTOP) and crashing (SIGKILL) also need one. So every
coordinator is a `quorumgate coordinator` process, and every simulated VM is a long-lived
*VM host* process that runs its agent in-process and restarts it on command (a reboot
stops the agent, which closes its ZooKeeper session as a real shutdown would; the host
process, like the VM's hardware, stays). Keeping the host alive across reboots keeps
the interpreter start-up (imports) out of every reboot: the 2-core machine runs
thousands of them in a long run. A crash fault kills the host process itself (the
agent's session then lingers until it expires, as after a real crash).

Both kinds can have their clock skewed at run time: a `SkewClock` adds an offset to the
run's virtual clock (the VM host takes `skew SECONDS` on its stdin, a coordinator reads
its skew file).

`python -m quorumgate_testbed.procs vmhost --config FILE` and
`python -m quorumgate_testbed.procs coordinator --skew-file FILE COORDINATOR-FLAGS...` are the
two entry points; the classes below start and drive them from the harness.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

import httpx

from quorumgate_testbed.zkserver import spawn
from registry.clock import Clock, parse_clock

log = logging.getLogger(__name__)


class SkewClock:
    """The run's clock plus an adjustable offset (seconds of that clock)."""

    def __init__(self, base: Clock, offset: float = 0.0) -> None:
        self.base = base
        self.offset = offset

    def now(self) -> float:
        return self.base.now() + self.offset

    def real_seconds(self, seconds: float) -> float:
        return self.base.real_seconds(seconds)

    def sleep(self, seconds: float) -> None:
        self.base.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        await self.base.asleep(seconds)

    @property
    def spec(self) -> str:
        return self.base.spec

    def follow(self, path: Path, every_s: float = 0.05) -> None:
        """Keep `offset` equal to the number in `path` (a daemon thread polls it)."""

        def run() -> None:
            last = None
            while True:
                with contextlib.suppress(OSError, ValueError):
                    stamp = path.stat().st_mtime_ns
                    if stamp != last:
                        last = stamp
                        self.offset = float(path.read_text().strip() or 0)
                time.sleep(every_s)

        threading.Thread(target=run, name="skew-file", daemon=True).start()


# ---------------------------------------------------------------- in the child


def _vmhost(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="quorumgate_testbed.procs vmhost")
    parser.add_argument("--config", required=True, type=Path)
    args = parser.parse_args(argv)
    from agent.config import build
    from agent.daemon import Agent

    data = json.loads(args.config.read_text())
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    clock = SkewClock(parse_clock(data.get("clock")))
    config = build(data)
    lock = threading.Lock()
    agent: Agent | None = None
    generation = 0

    def say(line: str) -> None:
        with lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def stop_current() -> None:
        nonlocal agent
        if agent is not None:
            agent.stop(5.0)
            agent = None

    def announce(one: Agent, gen: int) -> None:
        if one.wait_registered(120):
            say(f"registered {gen}")

    say("ready")
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "start":
            gen = int(arg)
            if agent is None or gen != generation:
                stop_current()
                generation = gen
                agent = Agent(config, clock)
                agent.start()
                threading.Thread(target=announce, args=(agent, gen), daemon=True).start()
            say(f"started {gen}")
        elif cmd == "stop":
            gen = int(arg)
            if gen == generation:
                stop_current()
            say(f"stopped {gen}")
        elif cmd == "skew":
            clock.offset = float(arg)
            say(f"skewed {arg}")
        elif cmd == "quit":
            break
    stop_current()
    return 0


def _coordinator(argv: list[str]) -> int:
    skew: Path | None = None
    if "--skew-file" in argv:
        at = argv.index("--skew-file")
        skew = Path(argv[at + 1])
        argv = argv[:at] + argv[at + 2:]
    import coordinator.main as cm

    original = cm.serve

    def serve(config: Any, start_timeout: float, clock: Clock | None = None) -> int:
        skewed = SkewClock(clock or parse_clock(config.clock))
        if skew is not None:
            skewed.follow(skew)
        return original(config, start_timeout, skewed)

    cm.serve = serve  # type: ignore[assignment]
    return cm.main(argv)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in ("vmhost", "coordinator"):
        print("usage: python -m quorumgate_testbed.procs vmhost|coordinator ...", file=sys.stderr)
        return 2
    return (_vmhost if args[0] == "vmhost" else _coordinator)(args[1:])


# ---------------------------------------------------------------- in the harness


class Child:
    """A child process (maybe in a network namespace) with a log file, restartable."""

    def __init__(self, name: str, command: list[str], log_path: Path,
                 prefix: list[str] | None = None) -> None:
        self.name = name
        self.command = command
        self.log_path = log_path
        self.prefix = prefix or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False
        self.starts = 0
        self._log_from = 0

    def spawn(self) -> None:
        self._log_from = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as out:
            self.proc = spawn([*self.prefix, *self.command], stdin=subprocess.DEVNULL,
                              stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.paused = False
        self.starts += 1

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive:
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self.signal(signal.SIGCONT)
        self.paused = False

    def kill(self) -> None:
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        self.paused = False

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self.paused = False

    def log_since_start(self, limit: int = 1 << 20) -> str:
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as f:
            f.seek(self._log_from)
            return f.read(limit).decode(errors="replace")


class CoordinatorProcess(Child):
    """`quorumgate coordinator` as a child process, found by its `listening on` line.

    The one coordinator-process helper: the chaos run skews its clock (a skew file it
    follows), the benchmarks measure it (pid, metrics, mirror completeness)."""

    def __init__(self, identity: str | int, args: list[str], workdir: Path,
                 prefix: list[str] | None = None, skewable: bool = True) -> None:
        self.identity = identity if isinstance(identity, str) else f"coordinator-{identity}"
        self.skew_file: Path | None = None
        # unskewed, it is exactly the product's entry point (what the benchmarks measure)
        entry = [sys.executable, "-m", "quorumgate.cli", "coordinator"]
        if skewable:
            self.skew_file = workdir / f"{self.identity}.skew"
            self.skew_file.write_text("0\n")
            entry = [sys.executable, "-m", "quorumgate_testbed.procs", "coordinator",
                     "--skew-file", str(self.skew_file)]
        super().__init__(self.identity, [*entry, "--identity", self.identity, *args],
                         workdir / f"{self.identity}.log", prefix)
        self.url: str | None = None
        self.wanted = True
        """False while the nemesis keeps it dead; the supervisor restarts it otherwise."""

    def start(self) -> None:
        self.url = None
        self.spawn()

    def find_url(self) -> str | None:
        if self.url is None:
            for line in self.log_since_start().splitlines():
                if "listening on http" in line:
                    self.url = "http" + line.split("listening on http", 1)[1].split()[0]
                    break
        return self.url

    def wait_url(self, timeout: float = 60.0) -> str:
        """Its API's URL once it listens; raises with the log's tail if it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive:
            if (url := self.find_url()) is not None:
                return url
            time.sleep(0.1)
        tail = "\n".join(self.log_since_start().splitlines()[-20:])
        self.stop()
        raise RuntimeError(f"{self.identity} did not start:\n{tail}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def client(self, token: str | None = None, timeout: float = 30.0) -> httpx.Client:
        assert self.url is not None, "not listening yet (wait_url)"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, timeout=timeout, trust_env=False,
                            headers=headers)

    def wait_mirrored(self, vms: int, groups: int, token: str | None = None,
                      timeout: float = 120.0) -> dict[str, Any]:
        """Until it leads and its mirror holds every registration and group."""
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        with self.client(token) as http:
            while time.monotonic() < deadline:
                try:
                    status = http.get("/v1/status").json()
                except httpx.HTTPError:
                    status = {}
                if (status.get("is_leader") and status.get("live_vms") == vms
                        and status.get("groups") == groups):
                    return status
                time.sleep(0.2)
        raise TimeoutError(f"coordinator mirror incomplete: {status}")

    def metrics(self) -> dict[str, float]:
        """Its Prometheus samples by name and labels."""
        with self.client() as http:
            text = http.get("/metrics").text
        out = {}
        for line in text.splitlines():
            if line.startswith("#") or " " not in line:
                continue
            key, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[key] = float(value)
        return out

    def skew(self, seconds: float) -> None:
        assert self.skew_file is not None, "started without a skew file"
        tmp = self.skew_file.with_suffix(".tmp")
        tmp.write_text(f"{seconds}\n")
        tmp.replace(self.skew_file)


class VMHost(Child):
    """One simulated VM's process: its agent starts and stops on command."""

    def __init__(self, vm: str, config: dict[str, Any], workdir: Path,
                 prefix: list[str] | None = None) -> None:
        self.vm = vm
        self.config_path = workdir / f"{vm}.agent.json"
        self.config_path.write_text(json.dumps(config))
        super().__init__(vm, [sys.executable, "-m", "quorumgate_testbed.procs", "vmhost",
                              "--config", str(self.config_path)],
                         workdir / f"{vm}.log", prefix)
        self.generation = 0
        self.registered: set[int] = set()
        self.stopped: set[int] = set()
        self.skew_s = 0.0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stdin: TextIO | None = None

    def ensure_running(self) -> None:
        with self._lock:
            if self.alive:
                return
            self.spawn()
            assert self.proc is not None and self.proc.stdin and self.proc.stdout
            self._stdin = self.proc.stdin  # type: ignore[assignment]
            reader = threading.Thread(target=self._read, args=(self.proc,),
                                      name=f"vmhost-{self.vm}", daemon=True)
            reader.start()
            if self.skew_s:
                self._send(f"skew {self.skew_s}")

    def spawn(self) -> None:  # commands on stdin, replies on stdout, logs to the file
        self._log_from = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as err:
            self.proc = spawn([*self.prefix, *self.command], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=err, start_new_session=True,
                              bufsize=0)
        self.paused = False
        self.starts += 1

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            kind, _, arg = raw.decode(errors="replace").strip().partition(" ")
            with self._changed:
                if kind == "registered":
                    self.registered.add(int(arg))
                elif kind == "stopped":
                    self.stopped.add(int(arg))
                self._changed.notify_all()

    def _send(self, line: str) -> None:
        stdin = self._stdin
        if stdin is None:
            return
        with contextlib.suppress(OSError, ValueError):
            stdin.write(f"{line}\n".encode())  # type: ignore[arg-type]
            stdin.flush()

    def start_agent(self) -> RemoteAgent:
        self.ensure_running()
        with self._lock:
            self.generation += 1
            gen = self.generation
            self._send(f"start {gen}")
        return RemoteAgent(self, gen)

    def stop_agent(self, gen: int, timeout: float) -> None:
        if self.paused:  # a frozen VM that reboots loses everything, mid-write or not
            self.kill()
            return
        with self._changed:
            if not self.alive:
                return
            self._send(f"stop {gen}")
            self._changed.wait_for(lambda: gen in self.stopped or not self.alive, timeout)

    def wait_registered(self, gen: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: gen in self.registered, timeout)

    def skew(self, seconds: float) -> None:
        with self._lock:
            self.skew_s = seconds
            self._send(f"skew {seconds}")

    def request_quit(self) -> None:
        """Ask the process to stop its agent and exit (see `close`)."""
        with self._lock:
            self._send("quit")

    def close(self, deadline: float | None = None) -> None:
        """Quit, waiting until `deadline` (monotonic; default 3 s from now), then kill."""
        self.request_quit()
        if self.proc is not None:
            wait = (deadline if deadline is not None else time.monotonic() + 3) - time.monotonic()
            try:
                self.proc.wait(max(0.01, wait))
            except subprocess.TimeoutExpired:
                self.kill()


class RemoteAgent:
    """What `rollout.VMSupervisor` holds for a VM whose agent runs in a VM host."""

    def __init__(self, host: VMHost, generation: int) -> None:
        self.host = host
        self.generation = generation

    def stop(self, timeout: float = 5.0) -> None:
        self.host.stop_agent(self.generation, timeout)

    def wait_registered(self, timeout: float) -> bool:
        return self.host.wait_registered(self.generation, timeout)


if __name__ == "__main__":
    sys.exit(main())
