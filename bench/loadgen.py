"""Closed-loop HTTP load from a separate process: `python -m bench.loadgen URL PATH ...`.

`--clients` concurrent clients (asyncio tasks, one keep-alive connection each) send the
next request as soon as the previous answer arrives, for `--seconds` after a warm-up.
Prints one JSON line: requests, errors, requests/second, latency percentiles (ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Sequence

import httpx


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


async def run(url: str, path: str, clients: int, seconds: float, warmup: float,
              token: str, extra: dict[str, str] | None = None) -> dict[str, object]:
    latencies: list[float] = []
    errors = 0
    statuses: dict[int, int] = {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers.update(extra or {})
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60.0, trust_env=False,
                                 headers=headers) as http:
        start = time.perf_counter()
        measure_from = start + warmup
        stop_at = measure_from + seconds

        async def client() -> None:
            nonlocal errors
            while True:
                began = time.perf_counter()
                if began >= stop_at:
                    return
                try:
                    response = await http.get(path)
                    await response.aread()
                    ok = response.status_code in (200, 304)
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                except httpx.HTTPError:
                    ok = False
                ended = time.perf_counter()
                if began >= measure_from:
                    if ok:
                        latencies.append(ended - began)
                    else:
                        errors += 1

        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - measure_from
    out: dict[str, object] = {"path": path, "clients": clients, "seconds": elapsed,
                              "requests": len(latencies), "errors": errors,
                              "statuses": statuses,
                              "rps": len(latencies) / elapsed if elapsed > 0 else 0.0}
    if latencies:
        out.update({f"p{p}_ms": percentile(latencies, p) * 1000 for p in (50, 90, 99)})
        out["max_ms"] = max(latencies) * 1000
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("url")
    parser.add_argument("path")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--token", default="")
    parser.add_argument("--header", action="append", default=[], metavar="NAME:VALUE",
                        help="an extra request header (Accept-Encoding, If-None-Match)")
    args = parser.parse_args(argv)
    extra = dict(h.split(":", 1) for h in args.header)
    result = asyncio.run(run(args.url, args.path, args.clients, args.seconds, args.warmup,
                             args.token, {k.strip(): v.strip() for k, v in extra.items()}))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
