"""`quorumgate agent`: parse flags, load and validate the config, run until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Any

from agent.config import AgentConfig, ConfigError, check_hooks, load
from agent.daemon import Agent
from registry.logs import setup_logging

__all__ = ["Agent", "AgentConfig", "main", "parser"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="quorumgate agent",
        description="Per-VM daemon: IMDS scheduled events -> ZooKeeper, drain hooks, "
                    "acknowledgements. Settings: file < QG_* environment < flags.")
    p.add_argument("--config", help="TOML or YAML file (default: $QG_CONFIG)")
    p.add_argument("--check", action="store_true",
                   help="validate the config (and that the hooks' programs exist and are "
                        "executable here), print it and exit: 0 good, 2 bad")
    p.add_argument("--cluster")
    p.add_argument("--zk-hosts", dest="zk_hosts")
    p.add_argument("--zk-root", dest="zk_root")
    p.add_argument("--zk-auth", dest="zk_auth", help="digest user:password")
    p.add_argument("--zk-session-timeout", dest="zk_session_timeout_s", type=float)
    p.add_argument("--imds-url", dest="imds_url")
    p.add_argument("--instance-api-version", dest="instance_api_version")
    p.add_argument("--events-api-version", dest="events_api_version")
    p.add_argument("--poll-interval", dest="poll_interval_s", type=float,
                   help="seconds between polls, in the clock's time")
    p.add_argument("--clock", help="real | virtual:EPOCH:SPEED:ANCHOR")
    p.add_argument("--vm-name", dest="vm_name", help="override IMDS compute.name")
    p.add_argument("--group", dest="groups", action="append",
                   help="static replica group to join (repeatable)")
    p.add_argument("--min-available", dest="min_available",
                   help="for static groups: a number or 'majority'")
    for action in ("drain", "restore"):
        p.add_argument(f"--{action}-command", help=f"{action} hook: shell command")
        p.add_argument(f"--{action}-url", help=f"{action} hook: URL to POST the event to")
        p.add_argument(f"--{action}-timeout", type=float, help=f"{action} hook timeout (s)")
    p.add_argument("--health-port", dest="health_port", type=int,
                   help="serve /healthz and /metrics here (0 = off)")
    p.add_argument("--health-host", dest="health_host")
    p.add_argument("--log-level", dest="log_level")
    p.add_argument("--log-format", dest="log_format", choices=("text", "json"),
                   help="text (default) or json: one JSON object per line")
    return p


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The flags that were given, shaped like config fields."""
    plain = ("cluster", "zk_hosts", "zk_root", "zk_auth", "zk_session_timeout_s", "imds_url",
             "instance_api_version", "events_api_version", "poll_interval_s", "clock",
             "vm_name", "groups", "health_port", "health_host", "log_level", "log_format")
    out: dict[str, Any] = {k: getattr(args, k) for k in plain if getattr(args, k) is not None}
    if args.min_available is not None:
        value = args.min_available
        out["min_available"] = int(value) if value.lstrip("-").isdigit() else value
    for action in ("drain", "restore"):
        hook = {key: getattr(args, f"{action}_{flag}")
                for key, flag in (("command", "command"), ("url", "url"),
                                  ("timeout_s", "timeout"))
                if getattr(args, f"{action}_{flag}") is not None}
        if hook:
            out[f"{action}_hook"] = hook
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["rackdc"]:  # `quorumgate agent rackdc`: the VM's Cassandra rack from IMDS
        from agent.rackdc import main as main_rackdc

        return main_rackdc(argv[1:])
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # argparse already printed why
        return int(exc.code or 0)
    try:
        config = load(args.config, os.environ, overrides(args))
    except ConfigError as exc:
        print(f"quorumgate agent: {exc}", file=sys.stderr)
        return 2
    problems = check_hooks(config)
    if args.check:
        if problems:
            print("quorumgate agent: bad agent config: " + "; ".join(problems),
                  file=sys.stderr)
            return 2
        print(config.model_dump_json(indent=2, exclude={"zk_auth"}))
        return 0
    setup_logging(config.log_level, config.log_format)
    if config.log_level != "DEBUG":
        # one line per IMDS request would drown everything else
        for noisy in ("httpx", "httpcore"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    log = logging.getLogger("agent")
    for problem in problems:  # loud, but a hook installed later still works
        log.error("hook problem: %s: drains will fail until it is fixed", problem)
    agent = Agent(config)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: agent.request_stop())
    log.info("agent starting (cluster %s, zk %s, imds %s)", config.cluster, config.zk_hosts,
             config.imds_url)
    try:
        agent.run_forever()
    except OSError as exc:  # e.g. the health port is taken
        log.error("agent cannot run: %s", exc)
        return 1
    log.info("agent stopped")
    return 0
