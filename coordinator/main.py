"""`quorumgate coordinator`: parse flags, load and validate the config, serve until a signal.

Settings: defaults < file (`--config` or $QG_CONFIG) < `QG_*` environment < flags.
`--token TOKEN:ROLE` (repeatable) replaces the config's tokens. The node connects to
ZooKeeper before the API listens; it cannot (within `--start-timeout`): exit 1, for
systemd or the orchestrator to restart it. SIGTERM/SIGINT: the HTTP server finishes
its requests, then the node leaves the election and closes its session. Exit codes:
0 after a signal, 1 when ZooKeeper or the listening socket fails, 2 for a bad config.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from coordinator.config import CoordinatorConfig, access_problem, load
from registry.logs import setup_logging as setup_log_format
from registry.settings import ConfigError

log = logging.getLogger("coordinator")

PLAIN_FLAGS = ("cluster", "zk_hosts", "zk_root", "zk_auth", "zk_session_timeout_s", "identity",
               "host", "port", "anonymous", "clock", "resync_s", "webhook_url", "gate_ttl_s",
               "audit_keep", "tls_cert", "tls_key", "log_level", "log_format")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="quorumgate coordinator",
        description="Leader-elected decision service with REST API. Settings: file < QG_* "
                    "environment < flags.")
    p.add_argument("--config", help="TOML or YAML file (default: $QG_CONFIG)")
    p.add_argument("--check", action="store_true",
                   help="validate the config, print it (secrets masked) and exit")
    p.add_argument("--cluster", help="cluster name: the ZooKeeper chroot is ZK_ROOT/CLUSTER")
    p.add_argument("--zk-hosts", dest="zk_hosts", help="e.g. zk1:2181,zk2:2181,zk3:2181")
    p.add_argument("--zk-root", dest="zk_root")
    p.add_argument("--zk-auth", dest="zk_auth", help="digest user:password")
    p.add_argument("--zk-session-timeout", dest="zk_session_timeout_s", type=float,
                   metavar="SECONDS")
    p.add_argument("--identity", help="this replica's name (default: host-pid)")
    p.add_argument("--host", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (0: any free port)")
    p.add_argument("--token", dest="tokens", action="append", metavar="TOKEN:ROLE",
                   help="bearer token and its role, viewer or operator (repeatable; "
                        "replaces the config's tokens)")
    p.add_argument("--anonymous", help="role for requests without a token: viewer or operator")
    p.add_argument("--clock", help="real | virtual:EPOCH:SPEED:ANCHOR")
    p.add_argument("--resync", dest="resync_s", type=float, metavar="SECONDS",
                   help="the leader decides at least this often")
    p.add_argument("--webhook-url", dest="webhook_url", help="POST decision changes here")
    p.add_argument("--gate-ttl", dest="gate_ttl_s", type=float, metavar="SECONDS")
    p.add_argument("--audit-keep", dest="audit_keep", type=int, metavar="N")
    p.add_argument("--tls-cert", dest="tls_cert", help="serve HTTPS with this certificate")
    p.add_argument("--tls-key", dest="tls_key", help="... and this private key")
    p.add_argument("--log-level", dest="log_level")
    p.add_argument("--log-format", dest="log_format", choices=("text", "json"),
                   help="text (default) or json: one JSON object per line")
    p.add_argument("--start-timeout", dest="start_timeout", type=float, default=60.0,
                   metavar="SECONDS", help="how long to wait for ZooKeeper at start (60)")
    return p


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The flags that were given, shaped like config fields."""
    out: dict[str, Any] = {k: getattr(args, k) for k in PLAIN_FLAGS
                           if getattr(args, k) is not None}
    if args.tokens:
        tokens: dict[str, str] = {}
        for item in args.tokens:
            token, sep, role = item.rpartition(":")
            if not sep or not token:
                raise ConfigError(f"--token wants TOKEN:ROLE, got {mask(item)!r}")
            tokens[token] = role
        out["tokens"] = tokens
    return out


def mask(token: str) -> str:
    return f"{token[:4]}…" if len(token) > 4 else "…"


def check_tls(config: CoordinatorConfig) -> None:
    given = [f for f in (config.tls_cert, config.tls_key) if f]
    if len(given) == 1:
        raise ConfigError("tls_cert and tls_key go together: give both or neither")
    for path in given:
        if not Path(path).is_file():
            raise ConfigError(f"TLS file {path!r} does not exist")


def shown(config: CoordinatorConfig) -> str:
    """The config as JSON with secrets masked."""
    data = config.model_dump(mode="json")
    data["tokens"] = [{"token": mask(t), "role": role} for t, role in config.tokens.items()]
    if data.get("zk_auth"):
        data["zk_auth"] = data["zk_auth"].split(":", 1)[0] + ":***"
    return json.dumps(data, indent=2, ensure_ascii=False)


def listen_socket(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def setup_logging(level: str, fmt: str = "text") -> None:
    setup_log_format(level, fmt)
    logging.getLogger("kazoo").setLevel(max(logging.getLevelName(level), logging.WARNING))


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # argparse already printed why
        return int(exc.code or 0)
    try:
        config = load(args.config, os.environ, overrides(args))
        check_tls(config)
    except ConfigError as exc:
        print(f"quorumgate coordinator: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if problem := access_problem(config):
            print(f"quorumgate coordinator: bad coordinator config: {problem}",
                  file=sys.stderr)
            return 2
        print(shown(config))
        return 0
    setup_logging(config.log_level, config.log_format)
    if problem := access_problem(config):
        log.error("%s", problem)
    return serve(config, args.start_timeout)


def serve(config: CoordinatorConfig, start_timeout: float) -> int:
    import uvicorn

    from coordinator.api import create_app
    from coordinator.node import CoordinatorNode

    stop = threading.Event()
    server: uvicorn.Server | None = None

    def on_signal(signum: int, frame: object) -> None:
        # uvicorn installs its own handlers while it serves and re-raises the signal
        # here after its graceful shutdown: this handler only has to not kill us.
        log.info("received %s; stopping", signal.Signals(signum).name)
        stop.set()
        if server is not None:
            server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)

    try:
        sock = listen_socket(config.host, config.port)
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", config.host, config.port, exc)
        return 1
    node = CoordinatorNode(config)
    try:
        try:
            node.start(timeout=start_timeout)
        except Exception as exc:
            log.error("cannot start on ZooKeeper %s: %r", config.zk_hosts, exc)
            return 1
        if stop.is_set():
            return 0
        app = create_app(node)
        tls = bool(config.tls_cert and config.tls_key)
        uv_config = uvicorn.Config(app, log_config=None, ssl_certfile=config.tls_cert,
                                   ssl_keyfile=config.tls_key, access_log=True,
                                   timeout_graceful_shutdown=10)
        server = uvicorn.Server(uv_config)
        host, port = sock.getsockname()[:2]
        shown_host = f"[{host}]" if ":" in host else host
        print(f"quorumgate coordinator {config.identity} (cluster {config.cluster}) listening "
              f"on {'https' if tls else 'http'}://{shown_host}:{port}", flush=True)
        server.run(sockets=[sock])
        return 0
    finally:
        sock.close()
        try:
            node.stop()
        except Exception:
            log.exception("error while stopping the node")
        log.info("coordinator %s stopped", config.identity)
