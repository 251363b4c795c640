"""Many simulated VMs' agents in a few processes: what a benchmark of hundreds or
thousands of agents needs on a small machine.

One process per VM (`procs.VMHost`, what the chaos run uses for its network namespaces)
costs ~40 MiB and an interpreter start per VM; threads in the harness's own process put
every agent behind one GIL with the emulator. A pool spreads the VMs over N host
processes, each running its agents in threads and taking commands on stdin:

    start <vm> <generation> <agent config as JSON>   ->  started <vm> <generation>
                                                         registered <vm> <generation>
    stop <vm> <generation>                           ->  stopped <vm> <generation>
    quit

`AgentPool.host` is a `rollout.AgentHost`: the VM supervisor starts and stops agents
through it across reboots as it would threads.
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from quorumgate_testbed.zkserver import spawn


class PooledAgent:
    """What the VM supervisor holds for an agent running in a pool process."""

    def __init__(self, process: PoolProcess, vm: str, generation: int) -> None:
        self.process = process
        self.vm = vm
        self.generation = generation

    def stop(self, timeout: float = 5.0) -> None:
        self.process.stop_agent(self.vm, self.generation, timeout)

    def wait_registered(self, timeout: float) -> bool:
        return self.process.wait_for("registered", self.vm, self.generation, timeout)


class PoolProcess:
    """One host process of the pool and its reply reader."""

    def __init__(self, index: int, workdir: Path) -> None:
        self.index = index
        self.log_path = workdir / f"agents-{index}.log"
        with self.log_path.open("ab") as err:
            self.proc = spawn([sys.executable, "-m", "quorumgate_testbed.agentpool"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                              start_new_session=True, bufsize=0)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._stdin: Any = self.proc.stdin
        self._seen: set[tuple[str, str, int]] = set()
        self._changed = threading.Condition()
        self._send_lock = threading.Lock()
        threading.Thread(target=self._read, name=f"agentpool-{index}", daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            parts = raw.decode(errors="replace").split()
            if len(parts) == 3:
                with self._changed:
                    self._seen.add((parts[0], parts[1], int(parts[2])))
                    self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()  # the process ended: waiters stop waiting

    def send(self, line: str) -> None:
        with self._send_lock, contextlib.suppress(OSError, ValueError):
            self._stdin.write(f"{line}\n".encode())
            self._stdin.flush()

    def wait_for(self, kind: str, vm: str, generation: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(
                lambda: (kind, vm, generation) in self._seen or self.proc.poll() is not None,
                timeout) and (kind, vm, generation) in self._seen

    def stop_agent(self, vm: str, generation: int, timeout: float) -> None:
        self.send(f"stop {vm} {generation}")
        self.wait_for("stopped", vm, generation, timeout)

    def close(self, timeout: float = 15.0) -> None:
        self.send("quit")
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


class AgentPool:
    """`processes` host processes; VM k runs in process k mod `processes`."""

    def __init__(self, processes: int, workdir: Path) -> None:
        if processes < 1:
            raise ValueError("an agent pool needs at least one process")
        self.processes = [PoolProcess(i, workdir) for i in range(processes)]
        self._slot: dict[str, PoolProcess] = {}
        self._generation: dict[str, int] = {}
        self._lock = threading.Lock()

    def host(self, vm: str, config: dict[str, Any]) -> PooledAgent:
        with self._lock:
            process = self._slot.setdefault(
                vm, self.processes[len(self._slot) % len(self.processes)])
            generation = self._generation[vm] = self._generation.get(vm, 0) + 1
        process.send(f"start {vm} {generation} {json.dumps(config, separators=(',', ':'))}")
        return PooledAgent(process, vm, generation)

    def close(self) -> None:
        for process in self.processes:
            process.send("quit")
        for process in self.processes:
            process.close()

    def __enter__(self) -> AgentPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- in the host process


def serve(lines: TextIO, out: TextIO) -> None:
    """Run agents on command until `quit` or the end of input; stop them all on exit."""
    from agent.config import build
    from agent.daemon import Agent
    from registry.clock import parse_clock

    agents: dict[str, tuple[int, Agent]] = {}
    lock = threading.Lock()

    def say(*parts: object) -> None:
        with lock:
            out.write(" ".join(str(p) for p in parts) + "\n")
            out.flush()

    def announce(vm: str, generation: int, agent: Agent) -> None:
        if agent.wait_registered(120):
            say("registered", vm, generation)

    def stop(vm: str, generation: int | None = None) -> None:
        current = agents.get(vm)
        if current is not None and (generation is None or current[0] <= generation):
            del agents[vm]
            current[1].stop(5.0)

    for line in lines:
        cmd, _, rest = line.strip().partition(" ")
        if cmd == "start":
            vm, generation_text, config_text = rest.split(" ", 2)
            generation = int(generation_text)
            stop(vm)
            data = json.loads(config_text)
            agent = Agent(build(data), parse_clock(data.get("clock")))
            agent.start()
            agents[vm] = (generation, agent)
            threading.Thread(target=announce, args=(vm, generation, agent),
                             daemon=True).start()
            say("started", vm, generation)
        elif cmd == "stop":
            vm, generation_text = rest.split(" ", 1)
            stop(vm, int(generation_text))
            say("stopped", vm, generation_text)
        elif cmd == "quit":
            break
    deadline = time.monotonic() + 10
    for vm in list(agents):
        if time.monotonic() > deadline:
            break
        stop(vm)


def main() -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(sys.stdin, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
