"""`quorumgate <command> ...`: one entry point, each command in its own module.

Commands are imported lazily so that `quorumgate agent` on a VM never imports the
coordinator's web stack, and a broken optional part cannot break the others.
A command is `module` (its `main(argv)`) or `module:function` (that function), so that
several commands can share one module.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "agent": ("agent.main", "per-VM daemon: IMDS -> ZooKeeper, drain hooks, acknowledgements"),
    "coordinator": ("coordinator.main", "leader-elected decision service with REST API"),
    # the test bed (`pip install ./testbed`): on one machine, never on a VM
    "imds-sim": ("imds_sim.cli", "Azure IMDS emulator serving many simulated VMs [test bed]"),
    "demo": ("quorumgate_testbed.demo", "local stack and a maintenance rollout [test bed]"),
    "chaos": ("quorumgate_testbed.chaos",
              "seeded nemesis against a real stack, with an outside checker [test bed]"),
    "zk": ("quorumgate_testbed.zkserver",
           "run a local ZooKeeper (standalone or ensemble) [test bed]"),
    "topology": ("quorumgate.topology",
                 "topology tools: HDFS rack script, Kubernetes labels, Cassandra rackdc, "
                 "Kafka broker.rack"),
    # operator commands against the coordinator API (quorumgate/ctl.py)
    "status": ("quorumgate.ctl:main_status", "cluster and coordinator status at a glance"),
    "vms": ("quorumgate.ctl:main_vms", "VMs with fault/update domain and state (--grid)"),
    "events": ("quorumgate.ctl:main_events", "scheduled events with our decision and reason"),
    "event": ("quorumgate.ctl:main_event", "one event: decision, timeline, acknowledgement"),
    "hold": ("quorumgate.ctl:main_hold", "hold an event with a reason"),
    "release": ("quorumgate.ctl:main_release", "release an operator hold"),
    "retry": ("quorumgate.ctl:main_retry", "drain a failed event again"),
    "force": ("quorumgate.ctl:main_force",
              "force-approve an event past the quorum check; still drains unless --skip-drain"),
    "pause": ("quorumgate.ctl:main_pause", "pause every new drain and approval"),
    "resume": ("quorumgate.ctl:main_resume", "resume drains and approvals"),
    "policy": ("quorumgate.ctl:main_policy", "the decision policy: show, set (dry-run, ...)"),
    "groups": ("quorumgate.ctl:main_groups", "replica groups: list, show, put, delete"),
    "forget": ("quorumgate.ctl:main_forget", "forget a VM that is gone for good (deleted)"),
    "unreadable": ("quorumgate.ctl:main_unreadable",
                   "records that do not decode (they block what they might touch); delete"),
    "audit": ("quorumgate.ctl:main_audit", "the audit log, newest last"),
    "placement": ("quorumgate.ctl:main_placement",
                  "choose VMs for N replicas spread over FDs and UDs"),
    "placement-audit": ("quorumgate.ctl:main_placement_audit",
                        "groups one UD or FD loss would break, with the fix"),
}

TESTBED = {"imds_sim", "quorumgate_testbed"}
"""Top-level packages of the separate test-bed distribution."""


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: quorumgate <command> [options]   (quorumgate --version)", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "`quorumgate <command> --help` for its options; operator commands read "
                  "$QG_URL and $QG_TOKEN."]
    return "\n".join(lines)


def version_text() -> str:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("quorumgate")
    except PackageNotFoundError:
        ours = "unknown (not installed)"
    return f"quorumgate {ours} (Python {platform.python_version()})"


def main(argv: list[str] | None = None) -> int:
    try:
        return dispatch(argv)
    except BrokenPipeError:
        # the reader went away (`quorumgate events | head`): not an error; keep Python
        # from complaining again when it flushes stdout at exit
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0


def dispatch(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help", "help"}:
        print(usage())
        return 0
    if args[0] in {"--version", "-V", "version"}:
        print(version_text())
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"quorumgate: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module_name, _, function = COMMANDS[name][0].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name not in TESTBED:
            raise
        print(f"quorumgate {name}: part of the test bed, which is not installed here; "
              "install it with `pip install ./testbed` from a checkout (`make demo` and "
              "`make test` do)", file=sys.stderr)
        return 2
    return int(getattr(module, function or "main")(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
