"""Drain/restore hooks: the operator's command or HTTP endpoint that moves replicas away.

A command gets the event in `QG_*` environment variables and succeeds with exit code
0; an HTTP hook gets the same fields as JSON and succeeds with a 2xx. Either fails on
its timeout. No hook configured means there is nothing to drain: done at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass

import httpx

from agent.config import HookConfig

TAIL_BYTES = 2048


@dataclass(frozen=True)
class HookContext:
    event_id: str
    event_type: str
    resources: list[str]
    not_before: float | None
    vm: str
    action: str
    """`drain` or `restore`."""
    duration_s: int = -1
    """IMDS's DurationInSeconds: -1 when the platform does not say."""

    def env(self) -> dict[str, str]:
        return {
            "QG_EVENT_ID": self.event_id,
            "QG_EVENT_TYPE": self.event_type,
            "QG_RESOURCES": ",".join(self.resources),
            "QG_NOT_BEFORE": "" if self.not_before is None else f"{self.not_before:.3f}",
            "QG_DURATION_S": str(self.duration_s),
            "QG_VM": self.vm,
            "QG_ACTION": self.action,
        }

    def payload(self) -> dict[str, object]:
        return {"event_id": self.event_id, "event_type": self.event_type,
                "resources": self.resources, "not_before": self.not_before,
                "duration_s": self.duration_s, "vm": self.vm, "action": self.action}


@dataclass(frozen=True)
class HookResult:
    ok: bool
    result: str
    """`done`, `failed`, `timeout` or `skipped` (no hook): a metrics label."""
    detail: str
    exit_code: int | None = None
    """A command's exit status (negative: killed by that signal); None otherwise."""
    http_status: int | None = None
    """A URL hook's HTTP status; None otherwise."""

    def summary(self) -> str:
        """How it ended, for a log line: `failed with exit code 3`, `timeout after 5s`."""
        if self.exit_code is not None and not self.ok:
            if self.exit_code < 0:
                return f"{self.result}: killed by signal {-self.exit_code}"
            return f"{self.result} with exit code {self.exit_code}"
        if self.http_status is not None and not self.ok:
            return f"{self.result} with HTTP {self.http_status}"
        return self.result


LOG_TAIL_LINES = 5
LOG_TAIL_CHARS = 600


def log_tail(detail: str, lines: int = LOG_TAIL_LINES, limit: int = LOG_TAIL_CHARS) -> str:
    """The last few lines of a hook's output (stdout and stderr) on one log line, without
    the closing `[exit code N]` note (the log line says that already)."""
    kept = [line.strip() for line in detail.splitlines() if line.strip()]
    if kept and kept[-1].startswith("[") and kept[-1].endswith("]"):
        kept.pop()
    text = " | ".join(kept[-lines:])
    return text if len(text) <= limit else "…" + text[-(limit - 1):]


def tail(text: str | bytes, note: str = "", limit: int = TAIL_BYTES) -> str:
    """The end of the output, then `note` (why it ended): what an operator reads first."""
    keep = max(0, limit - len(note) - 1)
    if isinstance(text, bytes):
        text = text[-keep:].decode("utf-8", "replace") if keep else ""
    text = text[-keep:] if keep else ""
    if not note:
        return text
    return f"{text}\n{note}" if text and not text.endswith("\n") else f"{text}{note}"


def run_hook(hook: HookConfig, ctx: HookContext) -> HookResult:
    """Run the hook to completion or timeout; never raises."""
    if hook.command is not None:
        return _run_command(hook, ctx)
    if hook.url is not None:
        return _call_url(hook, ctx)
    return HookResult(True, "skipped", "no hook configured")


def _run_command(hook: HookConfig, ctx: HookContext) -> HookResult:
    command = hook.command
    if command is None:
        return HookResult(True, "skipped", "no command configured")
    shell = isinstance(command, str)
    try:
        # A new session, so a timeout kills the whole process group (shell children too).
        proc = subprocess.Popen(command, shell=shell, env={**os.environ, **ctx.env()},
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as exc:
        return HookResult(False, "failed", f"cannot start hook: {exc}")
    try:
        output, _ = proc.communicate(timeout=hook.timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        try:
            output, _ = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            output = b""
        return HookResult(False, "timeout",
                          tail(output or b"", f"[timed out after {hook.timeout_s:g}s]"))
    if proc.returncode == 0:
        return HookResult(True, "done", tail(output or b""), exit_code=0)
    return HookResult(False, "failed", tail(output or b"", f"[exit code {proc.returncode}]"),
                      exit_code=proc.returncode)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def _call_url(hook: HookConfig, ctx: HookContext) -> HookResult:
    assert hook.url is not None
    try:
        with httpx.Client(trust_env=False, follow_redirects=False,
                          timeout=httpx.Timeout(hook.timeout_s)) as client:
            response = client.post(hook.url, json=ctx.payload())
    except httpx.TimeoutException:
        return HookResult(False, "timeout", f"[timed out after {hook.timeout_s:g}s]")
    except httpx.HTTPError as exc:
        return HookResult(False, "failed", tail(f"{type(exc).__name__}: {exc}"))
    text = tail(response.text, f"[HTTP {response.status_code}]")
    if 200 <= response.status_code < 300:
        return HookResult(True, "done", text, http_status=response.status_code)
    return HookResult(False, "failed", text, http_status=response.status_code)
