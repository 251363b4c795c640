"""`quorumgate <command> ...`: one entry point, each command in its own module.

Commands are imported lazily so that `quorumgate agent` on a VM never imports the
coordinator's web stack, and a broken optional part cannot break the others.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "agent": ("agent.main", "per-VM daemon: IMDS -> ZooKeeper, drain hooks, acknowledgements"),
    "coordinator": ("coordinator.main", "leader-elected decision service with REST API"),
    "imds-sim": ("imds_sim.cli", "Azure IMDS emulator serving many simulated VMs"),
    "demo": ("quorumgate.demo", "local stack and a maintenance rollout"),
    "zk": ("quorumgate.zkserver", "run a local ZooKeeper (standalone or ensemble)"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: quorumgate <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help", "help"}:
        print(usage())
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"quorumgate: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
