"""Run real ZooKeeper servers as plain child processes, from Debian's `zookeeper` package.

Why not Docker or kazoo's own harness: CI machines have no Docker engine, and
`kazoo.testing` needs extra jars and packages and only fakes session expiry. A real
`QuorumPeerMain` per node starts in about half a second and lets tests stop, kill and
pause nodes (SIGSTOP) to exercise quorum loss and real session expiry.

Everything is bounded: start, readiness and stop all take timeouts, and every error
carries the tail of the server's log. Servers are stopped by PID, never by name.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import os
import queue
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

JAVA_DIR = Path("/usr/share/java")
ZOOKEEPER_JARS = ("zookeeper.jar", "slf4j-log4j12.jar", "log4j-1.2.jar")
MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
SERVING_MODES = frozenset({"standalone", "leader", "follower", "observer"})
INSTALL_HINT = (
    "install Debian's package (`apt-get install zookeeper`, or `scripts/bootstrap.sh` as "
    "root), or set ZK_HOSTS=host:port to use an existing ZooKeeper"
)

# Log to the console appender only; the console goes to the server's log file.
LOG4J_PROPERTIES = """\
log4j.rootLogger=INFO, CONSOLE
log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender
log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout
log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} %-5p [%t:%C{1}@%L] - %m%n
"""


class ZooKeeperError(RuntimeError):
    """A server did not start, serve or stop in time; the message ends with its log tail."""


class ZooKeeperNotFound(ZooKeeperError):
    """Java or the ZooKeeper jars are missing on this machine."""


@dataclass(frozen=True)
class ZooKeeperInstall:
    """Where the JVM and the jars are; the jar's manifest pulls in the other dependencies."""

    java: str
    classpath: tuple[str, ...]

    @classmethod
    def locate(cls, java_dir: Path = JAVA_DIR) -> ZooKeeperInstall:
        missing = [name for name in ZOOKEEPER_JARS if not (java_dir / name).is_file()]
        if missing:
            raise ZooKeeperNotFound(
                f"ZooKeeper not found: missing {', '.join(str(java_dir / m) for m in missing)}; "
                + INSTALL_HINT
            )
        java_home = os.environ.get("JAVA_HOME")
        java = shutil.which("java")
        if java_home and os.access(Path(java_home, "bin", "java"), os.X_OK):
            java = str(Path(java_home, "bin", "java"))
        if not java:
            raise ZooKeeperNotFound("ZooKeeper needs Java: no `java` on PATH nor in JAVA_HOME")
        return cls(java=java, classpath=tuple(str(java_dir / name) for name in ZOOKEEPER_JARS))


def find_zookeeper() -> str | None:
    """None when a local ZooKeeper can be started here, else a one-line explanation."""
    try:
        ZooKeeperInstall.locate()
    except ZooKeeperNotFound as exc:
        return str(exc)
    return None


# --------------------------------------------------------------------------- ports


_handed_out: set[int] = set()
_ports_lock = threading.Lock()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports that bind now, chosen *below* the kernel's ephemeral range.

    Outside that range a client's outgoing connection cannot grab the port of a node
    that a test stopped and is about to restart.
    """
    low, _ = _ephemeral_range()
    top = low - 1 if low > 12000 else 65535
    bottom = 10000 if low > 12000 else 50000
    found: list[int] = []
    held: list[socket.socket] = []
    try:
        with _ports_lock:
            for _ in range(count * 200):
                if len(found) == count:
                    break
                port = random.randint(bottom, top)
                if port in _handed_out:
                    continue
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                try:
                    sock.bind((host, port))
                except OSError:
                    sock.close()
                    continue
                held.append(sock)
                found.append(port)
            if len(found) < count:
                raise ZooKeeperError(f"could not find {count} free ports on {host}")
            _handed_out.update(found)
    finally:
        for sock in held:
            sock.close()
    return found


# --------------------------------------------------------------------------- four-letter words


def four_letter_word(host: str, port: int, word: str = "srvr", timeout: float = 1.0) -> str:
    """Send a four-letter word and return the whole answer ('' when refused or cut short)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(word.encode())
            chunks: list[bytes] = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
    except OSError:
        return ""
    return b"".join(chunks).decode(errors="replace")


def server_mode(host: str, port: int, timeout: float = 1.0) -> str | None:
    """`standalone`/`leader`/`follower` from `srvr`, or None when not serving.

    `ruok` is no use here: it answers `imok` even without quorum.
    """
    for line in four_letter_word(host, port, "srvr", timeout).splitlines():
        if line.startswith("Mode:"):
            return line.partition(":")[2].strip()
    return None


# --------------------------------------------------------------------------- one server


_PR_SET_PDEATHSIG = 1
try:  # resolved once here: the child of a fork must not load libraries (locks)
    _prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
except OSError:  # not glibc: children then outlive a crashed parent
    _prctl = None


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGKILL it when the thread that forked it ends.

    PR_SET_PDEATHSIG follows the *thread*, not the process: a child forked by a
    short-lived thread (a `threading.Timer`, a pool worker) is killed as soon as that
    thread returns. So every child is forked by `spawn`'s one long-lived thread, and a
    crashed run still leaves no JVM behind.
    """
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class _Spawner:
    """Forks children from one daemon thread that lives as long as the process."""

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue[
            tuple[tuple[Any, ...], dict[str, Any], Future[subprocess.Popen[bytes]]]
        ] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def popen(self, *args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        if threading.current_thread() is self._thread:
            return subprocess.Popen(*args, **kwargs)
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="child-spawner",
                                                daemon=True)
                self._thread.start()
        done: Future[subprocess.Popen[bytes]] = Future()
        self._requests.put((args, kwargs, done))
        return done.result()

    def _run(self) -> None:
        while True:
            args, kwargs, done = self._requests.get()
            try:
                done.set_result(subprocess.Popen(*args, **kwargs))
            except BaseException as exc:  # handed to the caller
                done.set_exception(exc)


_spawner = _Spawner()


def spawn(*args: Any, die_with_parent: bool = True, **kwargs: Any) -> subprocess.Popen[bytes]:
    """`subprocess.Popen` from the process-wide spawner thread, from any thread.

    With `die_with_parent` the child is SIGKILLed when this process dies, however it
    dies; which thread asked for the child does not matter.
    """
    if die_with_parent:
        kwargs["preexec_fn"] = _die_with_parent
    return _spawner.popen(*args, **kwargs)


_running: weakref.WeakSet[ZooKeeperServer] = weakref.WeakSet()
_ensembles: weakref.WeakSet[ZooKeeperEnsemble] = weakref.WeakSet()


@atexit.register
def _stop_leftovers() -> None:
    """Servers nobody closed: kill them (no time for a clean stop) and drop temp dirs."""
    for server in list(_running):
        with contextlib.suppress(Exception):
            server.kill()
            server.close()
    for ensemble in list(_ensembles):
        with contextlib.suppress(Exception):
            ensemble.close()


@dataclass(eq=False)  # identity semantics: servers are tracked in a WeakSet
class ZooKeeperServer:
    """One `QuorumPeerMain` process; restartable with the same data dir and ports.

    Alone it is a standalone server; `ZooKeeperEnsemble` sets `server_id` and `peers`.
    `base_dir` holds zoo.cfg, data/, log4j.properties and zookeeper.log; when not given,
    a temporary directory is made and removed by `close()`.
    """

    client_port: int = 0
    base_dir: Path | None = None
    tick_time_ms: int = 2000
    min_session_timeout_ms: int | None = None
    max_session_timeout_ms: int | None = None
    init_limit: int = 10
    sync_limit: int = 5
    heap: str = "128m"
    extra_config: dict[str, str] = field(default_factory=dict)
    server_id: int | None = None
    peers: dict[int, tuple[int, int]] = field(default_factory=dict)
    host: str = "127.0.0.1"
    install: ZooKeeperInstall | None = None
    peer_hosts: dict[int, str] = field(default_factory=dict)
    """Per server id, the address its quorum ports listen on (default: `host`)."""
    netns: str | None = None
    """Run the JVM in this network namespace (`ip netns exec`; see quorumgate_testbed.netns)."""
    jvm_flags: tuple[str, ...] = ()
    """More JVM options, e.g. `-Dzookeeper.preAllocSize=1024` (KB) for a small disk."""

    def __post_init__(self) -> None:
        # A port we picked may be taken before Java binds it: then the first start
        # retries on another one (standalone only: an ensemble's ports are shared).
        self._may_repick = not self.client_port and not self.peers
        if not self.client_port:
            self.client_port = free_ports(1, self.host)[0]
        self._own_dir = self.base_dir is None
        if self.base_dir is None:
            self.base_dir = Path(tempfile.mkdtemp(prefix="quorumgate-zk-"))
        self.base_dir = Path(self.base_dir).resolve()
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False

    # paths and config

    @property
    def hosts(self) -> str:
        return f"{self.host}:{self.client_port}"

    @property
    def data_dir(self) -> Path:
        assert self.base_dir is not None
        return self.base_dir / "data"

    @property
    def config_path(self) -> Path:
        assert self.base_dir is not None
        return self.base_dir / "zoo.cfg"

    @property
    def log_path(self) -> Path:
        assert self.base_dir is not None
        return self.base_dir / "zookeeper.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def config(self) -> dict[str, str]:
        cfg = {
            "tickTime": str(self.tick_time_ms),
            "initLimit": str(self.init_limit),
            "syncLimit": str(self.sync_limit),
            "dataDir": str(self.data_dir),
            "clientPort": str(self.client_port),
            "clientPortAddress": self.host,
            "admin.enableServer": "false",
            "4lw.commands.whitelist": "*",
        }
        if self.min_session_timeout_ms is not None:
            cfg["minSessionTimeout"] = str(self.min_session_timeout_ms)
        if self.max_session_timeout_ms is not None:
            cfg["maxSessionTimeout"] = str(self.max_session_timeout_ms)
        for sid, (peer, election) in sorted(self.peers.items()):
            cfg[f"server.{sid}"] = f"{self.peer_hosts.get(sid, self.host)}:{peer}:{election}"
        cfg.update(self.extra_config)
        return cfg

    def write_config(self) -> None:
        assert self.base_dir is not None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.server_id is not None:
            (self.data_dir / "myid").write_text(f"{self.server_id}\n")
        self.config_path.write_text("".join(f"{k}={v}\n" for k, v in self.config().items()))
        (self.base_dir / "log4j.properties").write_text(LOG4J_PROPERTIES)

    def command(self) -> list[str]:
        install = self.install or ZooKeeperInstall.locate()
        assert self.base_dir is not None
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        return [
            *prefix,
            install.java,
            f"-Xmx{self.heap}",
            *self.jvm_flags,
            "-XX:+UseSerialGC",  # fewer GC threads: several JVMs share 2 cores in CI
            f"-Dlog4j.configuration=file:{self.base_dir / 'log4j.properties'}",
            "-Dzookeeper.root.logger=INFO,CONSOLE",
            "-cp",
            os.pathsep.join(install.classpath),
            MAIN_CLASS,
            str(self.config_path),
        ]

    # life cycle

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def paused(self) -> bool:
        return self._paused and self.is_running()

    def mode(self, timeout: float = 1.0) -> str | None:
        """The `srvr` mode, or None when the process is down, paused or not serving."""
        if not self.is_running() or self._paused:
            return None
        return server_mode(self.host, self.client_port, timeout)

    def is_serving(self) -> bool:
        return self.mode() in SERVING_MODES

    def start(self, wait: bool = True, timeout: float = 30.0) -> ZooKeeperServer:
        """Start the process (no-op when running); with `wait`, return once it serves."""
        for _ in range(3 if wait and self._may_repick else 1):
            self._spawn()
            if not wait:
                return self
            try:
                self.wait_serving(timeout)
            except ZooKeeperError:
                if not (self._may_repick and self._lost_port_race()):
                    raise
                self.client_port = free_ports(1, self.host)[0]
                continue
            self._may_repick = False
            return self
        raise ZooKeeperError(f"ZooKeeper found no free port\n{self.log_tail()}")

    def _lost_port_race(self) -> bool:
        return not self.is_running() and "Address already in use" in self.log_tail(200)

    def _spawn(self) -> None:
        if not self.is_running():
            self.write_config()
            with open(self.log_path, "ab") as log:
                log.write(f"==== quorumgate: starting at {time.ctime()} ====\n".encode())
                log.flush()
                self._proc = spawn(
                    self.command(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.base_dir,
                    start_new_session=True,  # Ctrl-C reaches us; we stop it ourselves
                )
            self._paused = False
            _running.add(self)

    def wait_serving(self, timeout: float = 30.0) -> str:
        """Wait until `srvr` reports a serving mode; raise with the log tail otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.is_running():
                code = self._proc.returncode if self._proc else None
                raise ZooKeeperError(
                    f"ZooKeeper {self.hosts} is not running (exit code {code})\n{self.log_tail()}"
                )
            mode = self.mode(timeout=0.5)
            if mode in SERVING_MODES:
                assert mode is not None
                return mode
            if time.monotonic() > deadline:
                raise ZooKeeperError(
                    f"ZooKeeper {self.hosts} not serving after {timeout:.0f}s "
                    f"(srvr mode: {mode})\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            self._paused = False
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
            os.kill(proc.pid, signal.SIGCONT)  # a paused JVM must run to handle SIGTERM
        self._paused = False
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL: a crash, no clean shutdown."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired as exc:
                raise ZooKeeperError(f"ZooKeeper pid {proc.pid} survived SIGKILL") from exc
        self._paused = False

    def restart(self, wait: bool = True, timeout: float = 30.0) -> ZooKeeperServer:
        """Stop, then start with the same data dir and ports."""
        self.stop()
        return self.start(wait=wait, timeout=timeout)

    def pause(self) -> None:
        """SIGSTOP: the process hangs without closing its sockets, like a frozen VM."""
        if self.is_running() and self._proc is not None:
            os.kill(self._proc.pid, signal.SIGSTOP)
            self._paused = True

    def resume(self) -> None:
        if self.is_running() and self._proc is not None:
            os.kill(self._proc.pid, signal.SIGCONT)
        self._paused = False

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return f"(no log at {self.log_path})"
        return f"--- last {len(text)} lines of {self.log_path} ---\n" + "\n".join(text)

    def close(self) -> None:
        """Stop the server and remove its directory if we made it."""
        self.stop()
        _running.discard(self)
        if self._own_dir and self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> ZooKeeperServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --------------------------------------------------------------------------- an ensemble


class ZooKeeperEnsemble:
    """`size` servers on loopback forming one quorum; nodes are addressed by index 0..size-1."""

    def __init__(
        self,
        size: int = 3,
        base_dir: Path | None = None,
        client_ports: Sequence[int] | None = None,
        hosts: Sequence[str] | None = None,
        netns: Sequence[str | None] | None = None,
        **server_options: object,
    ) -> None:
        """`hosts`/`netns`: one address and network namespace per node (default: all on
        loopback in this namespace)."""
        if size < 1:
            raise ValueError("an ensemble needs at least one node")
        self._own_dir = base_dir is None
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="quorumgate-zk-ensemble-"))
        ports = free_ports(3 * size)
        clients = list(client_ports) if client_ports else ports[:size]
        if len(clients) != size:
            raise ValueError(f"need {size} client ports, got {len(clients)}")
        peers = {i + 1: (ports[size + 2 * i], ports[size + 2 * i + 1]) for i in range(size)}
        addresses = list(hosts) if hosts else [str(server_options.pop("host", "127.0.0.1"))] * size
        spaces = list(netns) if netns else [None] * size
        if len(addresses) != size or len(spaces) != size:
            raise ValueError(f"need {size} hosts and namespaces")
        self.nodes: list[ZooKeeperServer] = [
            ZooKeeperServer(
                client_port=clients[i],
                base_dir=self.base_dir / f"node{i + 1}",
                server_id=i + 1,
                peers=peers,
                host=addresses[i],
                peer_hosts={j + 1: addresses[j] for j in range(size)},
                netns=spaces[i],
                **server_options,  # type: ignore[arg-type]
            )
            for i in range(size)
        ]
        _ensembles.add(self)

    @property
    def size(self) -> int:
        return len(self.nodes)

    @property
    def hosts(self) -> str:
        return ",".join(node.hosts for node in self.nodes)

    def start(self, wait: bool = True, timeout: float = 30.0) -> ZooKeeperEnsemble:
        """Start every stopped node; with `wait`, return once every running node serves."""
        for node in self.nodes:
            node.start(wait=False)
        if wait:
            self.wait_serving(timeout)
        return self

    def wait_serving(self, timeout: float = 30.0) -> None:
        """Wait until every running, unpaused node serves (so the quorum has a leader)."""
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            if node.is_running() and not node.paused:
                node.wait_serving(max(0.1, deadline - time.monotonic()))

    def leader(self) -> int | None:
        """Index of the node whose `srvr` says leader, or None during an election."""
        for index, node in enumerate(self.nodes):
            if node.mode() == "leader":
                return index
        return None

    def modes(self) -> list[str | None]:
        return [node.mode() for node in self.nodes]

    def stop(self, index: int) -> None:
        self.nodes[index].stop()

    def kill(self, index: int) -> None:
        self.nodes[index].kill()

    def restart(self, index: int, wait: bool = True, timeout: float = 30.0) -> None:
        self.nodes[index].restart(wait=wait, timeout=timeout)

    def start_node(self, index: int, wait: bool = True, timeout: float = 30.0) -> None:
        self.nodes[index].start(wait=wait, timeout=timeout)

    def pause(self, index: int) -> None:
        self.nodes[index].pause()

    def resume(self, index: int) -> None:
        self.nodes[index].resume()

    def stop_all(self) -> None:
        for node in self.nodes:
            node.stop()

    def close(self) -> None:
        self.stop_all()
        for node in self.nodes:
            node.close()
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> ZooKeeperEnsemble:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@contextlib.contextmanager
def running_zookeeper(**options: object) -> Iterator[ZooKeeperServer]:
    """A started standalone server for the duration of the block."""
    with ZooKeeperServer(**options) as server:  # type: ignore[arg-type]
        yield server


# --------------------------------------------------------------------------- `quorumgate zk`


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="quorumgate zk",
        description="Run a local ZooKeeper (Debian's package) in the foreground until Ctrl-C.",
    )
    parser.add_argument("--ensemble", type=int, default=1, metavar="N",
                        help="number of nodes (1 = standalone; 3 or 5 for a quorum)")
    parser.add_argument("--port", type=int, default=0,
                        help="client port (ensemble: first of N consecutive ports); 0 = free")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="keep config, data and logs here (default: a temp dir, removed)")
    parser.add_argument("--tick-time", type=int, default=2000, metavar="MS")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for the server(s) to serve")
    return parser.parse_args(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    problem = find_zookeeper()
    if problem:
        print(f"quorumgate zk: {problem}", file=sys.stderr)
        return 1
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    runner: ZooKeeperServer | ZooKeeperEnsemble
    if args.ensemble > 1:
        ports = [args.port + i for i in range(args.ensemble)] if args.port else None
        runner = ZooKeeperEnsemble(args.ensemble, base_dir=args.data_dir, client_ports=ports,
                                   tick_time_ms=args.tick_time)
    else:
        runner = ZooKeeperServer(client_port=args.port, base_dir=args.data_dir,
                                 tick_time_ms=args.tick_time)
    try:
        runner.start(timeout=args.timeout)
        print(runner.hosts, flush=True)
        where = runner.base_dir
        print(f"quorumgate zk: serving {runner.hosts} (files in {where}); Ctrl-C stops",
              file=sys.stderr, flush=True)
        while not stopping.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    except ZooKeeperError as exc:
        print(f"quorumgate zk: {exc}", file=sys.stderr)
        return 1
    finally:
        runner.close()
        signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
