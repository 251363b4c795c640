"""`quorumgate coordinator`: parse flags, load and validate the config, serve until a signal.

Settings: defaults < file (`--config` or $QG_CONFIG) < `QG_*` environment < flags.
`--token TOKEN:ROLE` (repeatable) replaces the config's tokens.

Start-up: the API listens at once and the node keeps trying to reach ZooKeeper in the
background for as long as it takes; until it is connected with a loaded mirror
`/readyz` answers 503 (role `down`) and `/healthz` 200, so a load balancer sends it
nothing and a supervisor sees a live process. Exiting instead would turn a ZooKeeper
outage at boot (or a coordinator started before its ensemble) into a restart loop that
a supervisor eventually gives up on. `--start-timeout SECONDS` (> 0) restores the old
behaviour: connect before listening, exit 1 when ZooKeeper is not reachable in time.
SIGTERM/SIGINT: the HTTP server finishes its requests, then the node leaves the
election and closes its session. Exit codes: 0 after a signal, 1 when the listening
socket fails (or ZooKeeper within a positive `--start-timeout`), 2 for a bad config.
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
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coordinator.config import CoordinatorConfig, access_problem, load
from registry.clock import Clock
from registry.logs import setup_logging as setup_log_format
from registry.settings import ConfigError

if TYPE_CHECKING:
    from coordinator.node import CoordinatorNode

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
    p.add_argument("--start-timeout", dest="start_timeout", type=float, default=0.0,
                   metavar="SECONDS",
                   help="0 (default): serve at once and keep trying to reach ZooKeeper, "
                        "/readyz failing meanwhile; > 0: exit 1 if ZooKeeper is not "
                        "reachable within that many seconds")
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


START_FOREVER_S = 365 * 86400.0
"""Wait for the mirror as long as it takes: kazoo itself reconnects forever."""


def start_when_reachable(node: CoordinatorNode, stop: threading.Event,
                         report_every_s: float = 30.0) -> None:
    """Keep trying to start `node` until it runs or `stop` is set (background thread).

    kazoo reconnects forever (`registry.zk.make_client`), so this only waits for the
    connection, then starts the node with no deadline; a start that fails before the
    mirror began (e.g. the layout write lost its connection) is retried.
    """
    node.client.start_async()
    since = time.monotonic()
    reported = since
    attempt = 0
    while not stop.is_set():
        if not node.client.connected:
            if time.monotonic() - reported >= report_every_s:
                reported = time.monotonic()
                log.warning("ZooKeeper %s not reachable for %.0f s; still trying "
                            "(/readyz answers 503 meanwhile)", node.config.zk_hosts,
                            reported - since)
            stop.wait(0.2)
            continue
        attempt += 1
        try:
            node.start(timeout=START_FOREVER_S)
        except Exception as exc:
            log.warning("start on ZooKeeper %s failed (attempt %d): %r; retrying",
                        node.config.zk_hosts, attempt, exc)
            stop.wait(min(5.0, 0.2 * 2 ** attempt))
            continue
        if attempt > 1 or time.monotonic() - since > 5:
            log.info("connected to ZooKeeper after %.1f s", time.monotonic() - since)
        return


def serve(config: CoordinatorConfig, start_timeout: float, clock: Clock | None = None) -> int:
    """Serve until a signal. `clock` replaces the config's (test harnesses skew it)."""
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
    node = CoordinatorNode(config, clock)
    try:
        if start_timeout > 0:
            try:
                node.start(timeout=start_timeout)
            except Exception as exc:
                log.error("cannot start on ZooKeeper %s: %r", config.zk_hosts, exc)
                return 1
        else:
            threading.Thread(target=start_when_reachable, args=(node, stop),
                             name="zookeeper-start", daemon=True).start()
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
        # One write of the whole line: log records go to stderr, the same file under a
        # supervisor, and must not land between the URL and its newline.
        sys.stdout.write(f"quorumgate coordinator {config.identity} (cluster {config.cluster}) "
                         f"listening on {'https' if tls else 'http'}://{shown_host}:{port}\n")
        sys.stdout.flush()
        server.run(sockets=[sock])
        return 0
    finally:
        sock.close()
        try:
            node.stop()
        except Exception:
            log.exception("error while stopping the node")
        stop.set()
        log.info("coordinator %s stopped", config.identity)
