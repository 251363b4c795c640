"""Health gates: per-group checks that must pass before an approval and before a release.

A gate is an http(s) URL (2xx passes) or a shell command (exit 0 passes). Gates run in
background threads, never on the decision path: the leader asks for the groups it needs
and gets the latest result; a missing result means "not yet checked" (not safe).
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import httpx

from coordinator.safety import GateResult

log = logging.getLogger(__name__)


def run_gate(spec: str, timeout: float) -> GateResult:
    if spec.startswith(("http://", "https://")):
        try:
            response = httpx.get(spec, timeout=timeout, follow_redirects=False)
        except httpx.HTTPError as exc:
            return GateResult(False, f"{spec}: {exc!r}")
        ok = 200 <= response.status_code < 300
        return GateResult(ok, f"{spec}: HTTP {response.status_code} {response.text[:200]}")
    try:
        done = subprocess.run(spec, shell=True, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return GateResult(False, f"timed out after {timeout:g} s")
    tail = (done.stdout + done.stderr).strip()[-200:]
    return GateResult(done.returncode == 0, f"exit {done.returncode}: {tail}")


class GateRunner:
    """Keeps a fresh result per gated group, refreshing at most every `ttl_s` seconds."""

    def __init__(self, ttl_s: float = 5.0, timeout_s: float = 30.0, workers: int = 4) -> None:
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gate")
        self._lock = threading.Lock()
        self._results: dict[str, tuple[str, float, GateResult]] = {}
        self._running: dict[str, Future[None]] = {}

    def results(self, wanted: dict[str, str]) -> dict[str, GateResult]:
        """Latest results for `wanted` (group -> gate spec); stale ones are refreshed."""
        now = time.monotonic()
        out: dict[str, GateResult] = {}
        with self._lock:
            for group, spec in wanted.items():
                cached = self._results.get(group)
                if cached and cached[0] == spec:
                    out[group] = cached[2]
                fresh = cached and cached[0] == spec and now - cached[1] < self.ttl_s
                if not fresh and group not in self._running:
                    self._running[group] = self._pool.submit(self._check, group, spec)
        return out

    def _check(self, group: str, spec: str) -> None:
        try:
            result = run_gate(spec, self.timeout_s)
        except Exception as exc:  # a broken gate is a failing gate, never a crash
            result = GateResult(False, repr(exc))
        with self._lock:
            self._results[group] = (spec, time.monotonic(), result)
            self._running.pop(group, None)
        if not result.ok:
            log.info("health gate of group %s failing: %s", group, result.detail)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
