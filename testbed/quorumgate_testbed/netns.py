"""A private network for a chaos run: one Linux network namespace per process, as root.

Every simulated VM's agent, every coordinator and every ZooKeeper node gets its own
namespace (`ip netns`), joined to a bridge by a veth pair, with an address from a /24
that nothing else on the machine uses and that routes nowhere: the bridge has no uplink,
so no packet leaves the machine. The harness itself (and the IMDS emulator it serves)
sits on the bridge's own address.

Faults are packet filters, not process signals, so they hit the network and nothing
else: a classic-BPF classifier on each end of a node's veth (`tc ... bpf`, on a
`clsact` qdisc) drops the packets that leave the node for blocked addresses and the
packets that reach it from them, and a fraction of all its packets when it has loss;
matched packets are redirected to a down `ifb` device, which drops them (this kernel has
neither netem nor gact). Partitions are therefore silent, like a real one: connections
time out, nothing is refused. A symmetric partition blocks both directions, an
asymmetric one only one; a slow link is a token bucket (`tbf`) on both ends. This
kernel has no netem, so there is no pure latency fault: a slow link delays by queueing.

Names carry a per-run prefix (`qg` + 4 hex digits) so parallel runs do not collide, and
everything is removed at exit: `close()`, an `atexit` hook and the caller's
try/finally; `remove_stale()` removes what a killed run (SIGKILL) left behind.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import json
import os
import random
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

STATE_DIR = Path("/run/quorumgate-netlab")
"""One file per live lab (its prefix, owner pid and subnet): how stale labs are found."""
SKF_AD_RANDOM = 0xFFFFF000 + 56
"""Classic BPF's ancillary load of a random 32-bit number (`ld rand`)."""


class NetLabError(RuntimeError):
    """A command failed; the message holds the command and its output."""


def problem() -> str | None:
    """None when a lab can be built here, else why not (one line)."""
    if os.geteuid() != 0:
        return "network namespaces need root (run the chaos as root, or without partitions)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"`{tool}` not found (iproute2): network faults need it"
    return None


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise NetLabError(f"{' '.join(argv)}: {(done.stderr or done.stdout).strip()}")
    return done


def bpf_program(ips: Iterable[str], offset: int, loss: float) -> str:
    """A classic-BPF filter (tc's `bytecode` text) matching IPv4 packets whose address
    at `offset` (26: source, 30: destination, after a 14-byte Ethernet header) is one of
    `ips`, or, with `loss`, any packet with that probability."""
    addresses = [int(ipaddress.IPv4Address(ip)) for ip in ips]
    # (code, jt, jf, k) with jt/jf as absolute targets, resolved below
    NOMATCH, MATCH = "nomatch", "match"
    prog: list[tuple[int, object, object, int]] = [
        (0x28, 0, 0, 12),                      # ldh [12]            ethertype
        (0x15, "next", NOMATCH, 0x0800),      # jeq #IPv4
        (0x20, 0, 0, offset),                  # ld [offset]         address
    ]
    prog += [(0x15, MATCH, "next", a) for a in addresses]    # jeq #address -> match
    if loss > 0:
        threshold = max(0, min(0xFFFFFFFF, int(loss * 0x100000000) - 1))
        prog += [(0x20, 0, 0, SKF_AD_RANDOM),                 # ld rand
                 (0x25, NOMATCH, MATCH, threshold)]           # jgt #t -> keep, else drop
    labels = {NOMATCH: len(prog), MATCH: len(prog) + 1}
    prog += [(0x06, 0, 0, 0), (0x06, 0, 0, 0xFFFFFFFF)]      # ret #0 / ret #-1 (match)
    out = []
    for index, (code, jt, jf, k) in enumerate(prog):
        def offset_of(target: object, i: int = index) -> int:
            if target in ("next", 0):
                return 0
            return labels[str(target)] - i - 1
        out.append(f"{code} {offset_of(jt)} {offset_of(jf)} {k}")
    return f"{len(out)}," + ",".join(out)


@dataclass
class Node:
    """One namespace on the lab's bridge."""

    name: str
    netns: str
    ip: str
    host_if: str
    """The veth end on the bridge (the node's `eth0` is the other end)."""
    out_block: set[str] = field(default_factory=set)
    """Destinations whose packets from this node are dropped."""
    in_block: set[str] = field(default_factory=set)
    """Sources whose packets to this node are dropped."""
    loss: float = 0.0
    slow_kbit: int | None = None

    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns]


class NetLab:
    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix or f"qg{uuid.uuid4().hex[:4]}"
        self.bridge = f"{self.prefix}br"
        self.nodes: dict[str, Node] = {}
        self.subnet: ipaddress.IPv4Network | None = None
        self._lock = threading.RLock()
        self._closed = False
        self._next_host = 10
        self.mounts: list[str] = []

    @property
    def host_ip(self) -> str:
        assert self.subnet is not None
        return str(self.subnet.network_address + 1)

    # ------------------------------------------------------------ building

    def start(self) -> NetLab:
        if why := problem():
            raise NetLabError(why)
        remove_stale()
        self.subnet = _free_subnet()
        atexit.register(self.close)
        self._save()
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{self.host_ip}/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        return self

    def add(self, name: str) -> Node:
        """A namespace `<prefix>-<name>` with `eth0` on the bridge and its own address."""
        with self._lock:
            assert self.subnet is not None, "start() first"
            host = self._next_host
            self._next_host += 1
            if host > 250:
                raise NetLabError("the lab's /24 is full")
            node = Node(name=name, netns=f"{self.prefix}-{name}",
                        ip=str(self.subnet.network_address + host),
                        host_if=f"{self.prefix}h{host}")
            self.nodes[name] = node
        ns = node.netns
        _run("ip", "netns", "add", ns)
        _run("ip", "link", "add", node.host_if, "type", "veth", "peer", "name", "eth0",
             "netns", ns)
        _run("ip", "link", "set", node.host_if, "master", self.bridge, "up")
        _run("ip", "-n", ns, "addr", "add", f"{node.ip}/24", "dev", "eth0")
        _run("ip", "-n", ns, "link", "set", "eth0", "up")
        _run("ip", "-n", ns, "link", "set", "lo", "up")
        _run("ip", "-n", ns, "link", "add", "drop0", "type", "ifb")  # stays down: a sink
        _run("ip", "link", "add", f"{node.host_if}x", "type", "ifb")  # the root side's sink
        _run("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "eth0", "clsact")
        _run("tc", "qdisc", "add", "dev", node.host_if, "clsact")
        return node

    # ------------------------------------------------------------ faults

    def partition(self, side_a: Iterable[Node], side_b: Iterable[Node],
                  symmetric: bool = True) -> None:
        """Drop packets from every node of `side_a` to every node of `side_b` (and back
        when `symmetric`). The harness's address counts as a node: use `host_node()`."""
        a, b = list(side_a), list(side_b)
        with self._lock:
            for x in a:
                for y in b:
                    self._block(x, y)
                    if symmetric:
                        self._block(y, x)
            self._apply({n.name for n in a + b})

    def _block(self, src: Node, dst: Node) -> None:
        if src.name == "host":
            dst.in_block.add(src.ip)  # filtered on the way into dst
        else:
            src.out_block.add(dst.ip)

    def set_loss(self, node: Node, loss: float) -> None:
        with self._lock:
            node.loss = loss
            self._apply({node.name})

    def set_slow(self, node: Node, kbit: int | None) -> None:
        """A token bucket of `kbit` on both ends of the node's link (None: remove)."""
        with self._lock:
            node.slow_kbit = kbit
            for argv in (["ip", "netns", "exec", node.netns, "tc"], ["tc"]):
                dev = "eth0" if len(argv) > 1 else node.host_if
                _run(*argv, "qdisc", "del", "dev", dev, "root", check=False)
                if kbit:
                    _run(*argv, "qdisc", "add", "dev", dev, "root", "tbf", "rate",
                         f"{kbit}kbit", "burst", "4kb", "latency", "2000ms")

    def heal(self, nodes: Iterable[Node] | None = None) -> None:
        """Remove every partition, loss and slow link touching `nodes` (default: all):
        their own filters and every other node's blocks of their addresses."""
        with self._lock:
            chosen = list(nodes) if nodes is not None else list(self.nodes.values())
            ips = {node.ip for node in chosen}
            names = set()
            for node in chosen:
                node.out_block.clear()
                node.in_block.clear()
                node.loss = 0.0
                names.add(node.name)
                if node.slow_kbit:
                    self.set_slow(node, None)
            for node in self.nodes.values():
                if node.out_block & ips or node.in_block & ips:
                    node.out_block -= ips
                    node.in_block -= ips
                    names.add(node.name)
            self._apply(names)

    def mount_tmpfs(self, path: Path, size_mb: int) -> Path:
        """A small RAM disk at `path` (a disk that can fill up); unmounted at close."""
        path.mkdir(parents=True, exist_ok=True)
        _run("mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(path))
        with self._lock:
            self.mounts.append(str(path))
            self._save()
        return path

    def _save(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        (STATE_DIR / self.prefix).write_text(json.dumps(
            {"pid": os.getpid(), "subnet": str(self.subnet), "bridge": self.bridge,
             "mounts": self.mounts}))

    def host_node(self) -> Node:
        """The harness's own address as a pseudo-node for `partition`."""
        return Node("host", "", self.host_ip, self.bridge)

    def _apply(self, names: set[str]) -> None:
        for name in sorted(names):
            node = self.nodes.get(name)
            if node is None:
                continue
            self._filter(["ip", "netns", "exec", node.netns, "tc"], "eth0",
                         node.out_block, 30, node.loss)
            self._filter(["tc"], node.host_if, node.in_block, 26, node.loss)

    @staticmethod
    def _filter(tc: list[str], dev: str, ips: set[str], offset: int, loss: float) -> None:
        _run(*tc, "filter", "del", "dev", dev, "egress", check=False)
        if not ips and loss <= 0:
            return
        _run(*tc, "filter", "add", "dev", dev, "egress", "bpf", "bytecode",
             bpf_program(sorted(ips), offset, loss), "action", "mirred", "egress",
             "redirect", "dev", "drop0" if tc[0] == "ip" else f"{dev}x")

    # ------------------------------------------------------------ teardown

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _teardown(self.prefix, self.bridge, self.mounts)
        with contextlib.suppress(OSError):
            (STATE_DIR / self.prefix).unlink()

    def __enter__(self) -> NetLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _teardown(prefix: str, bridge: str, mounts: Iterable[str] = ()) -> None:
    """Kill whatever still runs in the prefix's namespaces, then remove them, the links
    and the RAM disks."""
    for path in mounts:
        _run("umount", "-l", path, check=False)
    listed = _run("ip", "netns", "list", check=False).stdout.split("\n")
    names = [line.split()[0] for line in listed if line.startswith(f"{prefix}-")]
    for ns in names:
        pids = _run("ip", "netns", "pids", ns, check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), 9)
    for ns in names:
        _run("ip", "netns", "del", ns, check=False)  # its veth ends and ifb go with it
    links = _run("ip", "-o", "link", "show", check=False).stdout.splitlines()
    for line in links:
        name = line.split(":", 2)[1].strip().split("@")[0] if ":" in line else ""
        if name.startswith(prefix) and name != bridge:
            _run("ip", "link", "del", name, check=False)
    _run("ip", "link", "del", bridge, check=False)


def remove_stale() -> list[str]:
    """Remove labs whose owner process is gone (a run killed with SIGKILL)."""
    removed: list[str] = []
    if not STATE_DIR.is_dir():
        return removed
    for path in STATE_DIR.iterdir():
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            info = {}
        if _alive(info.get("pid")):
            continue
        _teardown(path.name, str(info.get("bridge") or f"{path.name}br"),
                  [str(m) for m in info.get("mounts", [])])
        with contextlib.suppress(OSError):
            path.unlink()
        removed.append(path.name)
    return removed


def _alive(pid: object) -> bool:
    try:
        os.kill(int(pid), 0)  # type: ignore[call-overload]
    except (ProcessLookupError, TypeError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def _free_subnet() -> ipaddress.IPv4Network:
    """A random 10.x.y.0/24 that no address on this machine (or another lab) uses."""
    used = []
    shown = _run("ip", "-j", "-4", "addr", "show", check=False).stdout or "[]"
    for link in json.loads(shown):
        for info in link.get("addr_info", []):
            used.append(ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}",
                                              strict=False))
    routes = _run("ip", "-j", "-4", "route", "show", "table", "all", check=False).stdout
    for route in json.loads(routes or "[]"):
        dst = route.get("dst", "")
        if dst and dst != "default" and "/" in dst:
            used.append(ipaddress.IPv4Network(dst, strict=False))
    for _ in range(500):
        candidate = ipaddress.IPv4Network(
            f"10.{random.randint(200, 254)}.{random.randint(0, 255)}.0/24")
        if not any(candidate.overlaps(u) for u in used):
            return candidate
    raise NetLabError("no free 10.x.y.0/24 for the lab")
