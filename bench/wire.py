"""Reads at wire speed: the coordinator's hot read against the floor, side by side.

`python -m bench.wire [--vms 1000] [--seconds 5] [--clients 1,10,50]`

One private ZooKeeper, N registered VMs, one `quorumgate coordinator` (the product's own
entry point). `GET /v1/topology` is measured, with the same closed-loop load generator
(`bench.loadgen`, a separate process) and the same clients, against:

- **floor**: a minimal ASGI app under the same uvicorn settings answering the very same
  bytes (no auth, no routing, no mirror): what this machine, this server and this load
  generator can do at all;
- **fast path**: the coordinator's `CachedReads` (bytes prepared once per mirror change,
  auth checked, ETag), identity and gzip;
- **304**: the same with `If-None-Match` (a dashboard or a script that already has it);
- **route**: the FastAPI route behind it (a query string skips the fast path), what every
  read cost before.

The load generator shares the 2 cores with the server: every figure is a floor of the
pair, which is why the floor row is there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.procs import ROOT, TOKEN, zookeeper
from bench.procs import coordinator as start_coordinator
from bench.zkload import Registrations, populate
from registry.layout import Layout
from registry.zookeeper import make_client

UDS = 20


def floor_app(body: bytes) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
    return app


def serve_floor(body_file: str) -> int:
    """The floor server (a child process): the coordinator's uvicorn settings."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)  # connections queue from now on, before uvicorn serves
    config = uvicorn.Config(floor_app(Path(body_file).read_bytes()), log_config=None,
                            access_log=True, timeout_graceful_shutdown=1)
    print(f"floor listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    for unit in ("us", "ms", "s"):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * _UNITS[unit]
    return float(text)


def wrk_load(url: str, path: str, clients: int, seconds: float,
             headers: Sequence[str] = ()) -> dict[str, Any]:
    """wrk (one thread: the server keeps the other core), closed loop, `clients`
    keep-alive connections."""
    cmd = ["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--latency",
           "-H", f"Authorization: Bearer {TOKEN}"]
    for header in headers:
        name, _, value = header.partition(":")
        cmd += ["-H", f"{name.strip()}: {value.strip()}"]
    done = subprocess.run([*cmd, url + path], capture_output=True, text=True,
                          timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} {url}{path}: {done.stdout[-500:]}"
                           f"{done.stderr[-500:]}")
    out: dict[str, Any] = {"errors": 0}
    for line in done.stdout.splitlines():
        words = line.split()
        if line.startswith("Requests/sec:"):
            out["rps"] = float(words[1])
        elif len(words) == 2 and words[0] in ("50%", "99%"):
            out[f"p{words[0][:-1]}_ms"] = _ms(words[1])
        elif "Non-2xx or 3xx responses" in line or line.strip().startswith("Socket errors"):
            out["errors"] += sum(int(w.rstrip(",")) for w in words if w.rstrip(",").isdigit())
    return out


def load(url: str, path: str, clients: int, seconds: float,
         headers: Sequence[str] = ()) -> dict[str, Any]:
    if shutil.which("wrk"):
        return wrk_load(url, path, clients, seconds, headers)
    cmd = [sys.executable, "-m", "bench.loadgen", url, path, "--clients", str(clients),
           "--seconds", str(seconds), "--warmup", "1", "--token", TOKEN]
    for header in headers:
        cmd += ["--header", header]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          timeout=seconds + 120, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == ["floor"]:
        return serve_floor(args_in[1])
    p = argparse.ArgumentParser(prog="python -m bench.wire", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vms", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--clients", default="1,10,50")
    args = p.parse_args(args_in)
    clients = [int(c) for c in args.clients.split(",") if c]
    print(f"== Reads at wire speed: GET /v1/topology, {args.vms} VMs ({os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} at start)")
    rows: list[tuple[str, int, dict[str, Any]]] = []
    with zookeeper() as hosts, tempfile.TemporaryDirectory(prefix="qg-wire-") as tmp:
        layout = Layout(cluster=f"bench-wire-{uuid.uuid4().hex[:6]}")
        admin = make_client(hosts)
        admin.start(timeout=15)
        regs = Registrations(hosts, layout, args.vms, UDS)
        coordinator = floor = None
        try:
            groups = populate(admin, layout, args.vms)
            regs.start()
            coordinator = start_coordinator(hosts, layout.cluster, Path(tmp))
            coordinator.wait_mirrored(args.vms, groups, TOKEN, timeout=300)
            with coordinator.client(TOKEN) as http:
                first = http.get("/v1/topology", headers={"Accept-Encoding": "identity"})
            body_file = Path(tmp) / "topology.json"
            body_file.write_bytes(first.content)
            etag = first.headers.get("etag", "")
            floor = subprocess.Popen([sys.executable, "-m", "bench.wire", "floor",
                                      str(body_file)], cwd=ROOT, stdout=subprocess.PIPE,
                                     text=True)
            assert floor.stdout is not None
            floor_url = floor.stdout.readline().split()[-1]
            identity = ["Accept-Encoding:identity"]
            variants = [("floor (same bytes, minimal ASGI)", floor_url, "/v1/topology",
                         identity),
                        ("fast path", coordinator.url, "/v1/topology", identity),
                        ("fast path, gzip", coordinator.url, "/v1/topology",
                         ["Accept-Encoding:gzip"]),
                        ("fast path, 304 (If-None-Match)", coordinator.url, "/v1/topology",
                         [*identity, f"If-None-Match:{etag}"]),
                        ("FastAPI route (before)", coordinator.url, "/v1/topology?route=1",
                         identity)]
            for n in clients:
                for name, url, path, headers in variants:
                    rows.append((name, n, load(url or "", path, n, args.seconds, headers)))
        finally:
            if floor is not None:
                floor.terminate()
                floor.wait(10)
            if coordinator is not None:
                coordinator.stop()
            regs.stop()
            admin.stop()
            admin.close()
    size = len(first.content)
    tool = "wrk, one thread" if shutil.which("wrk") else "bench.loadgen (Python: install wrk)"
    print(f"\nbody: {size:,} bytes ({args.vms} VMs); {args.seconds:.0f} s per row; load "
          f"generator: {tool}, on the same 2 cores")
    print("\n| variant | clients | req/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|---|")
    for name, n, r in rows:
        print(f"| {name} | {n} | {r['rps']:,.0f} | {r.get('p50_ms', 0):.1f} | "
              f"{r.get('p99_ms', 0):.1f} | {r['errors']} |")
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "wire.json").write_text(json.dumps(
        {"vms": args.vms, "bytes": size, "at": time.time(),
         "rows": [{"variant": a, "clients": b, **c} for a, b, c in rows]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
