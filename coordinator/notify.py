"""Webhook notifications for what needs a human: holds, forced starts, failures, deadlines.

JSON with a Slack-compatible `text` field plus structured fields (`kind`, `event_id`,
`state`, `code`, `reason`, `resources`, `dry_run`). Branching reads the decision's `code`
(`DecisionCode`), never the sentence in `reason`. A hold for our own budget (a routine
code: another update domain's turn) is not news and sends nothing. Sent from a
background thread with a bounded queue: a slow or dead webhook never delays a decision.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

import httpx

from coordinator.safety import Change
from registry.records import ROUTINE_CODES, Decision, DecisionCode, DecisionState

log = logging.getLogger(__name__)
S = DecisionState


def is_stuck(decision: Decision) -> bool:
    """A restore that does not finish: the core's STUCK code (a decision written before
    codes existed says it in its reason)."""
    if decision.code is DecisionCode.STUCK:
        return True
    return decision.code is DecisionCode.SEEN and decision.reason.startswith("stuck")


def notification_for(change: Change, event: Any) -> dict[str, Any] | None:
    """The message a change deserves, or None."""
    new, old = change.decision, change.previous
    kind = None
    if new.state is S.HELD and (old is None or old.state is not S.HELD
                                or old.code in ROUTINE_CODES):
        kind = None if new.code in ROUTINE_CODES else "held"
    elif new.best_effort and not (old and old.best_effort):
        kind = "deadline"
    elif new.state is S.FORCED and (old is None or old.state is not S.FORCED):
        kind = "forced"
    elif new.state is S.FAILED and (old is None or old.state is not S.FAILED):
        kind = "failed"
    elif is_stuck(new) and not (old and is_stuck(old)):
        kind = "stuck"
    if kind is None:
        return None
    event_type = getattr(getattr(event, "event_type", None), "value", "")
    resources = ", ".join(getattr(event, "resources", [])[:10])
    dry = " (dry-run)" if new.dry_run else ""
    text = (f"quorumgate: event {new.event_id} ({event_type} on {resources}) {kind}{dry}: "
            f"{new.reason} [{new.code.value}]")
    return {"text": text, "kind": kind, "event_id": new.event_id, "state": new.state.value,
            "code": new.code.value, "reason": new.reason, "dry_run": new.dry_run,
            "resources": list(getattr(event, "resources", []))}


class Notifier:
    def __init__(self, url: str, timeout_s: float = 5.0, max_queue: int = 1000) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.sent = 0
        self.failed = 0
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(max_queue)
        self._thread = threading.Thread(target=self._run, name="notifier", daemon=True)
        self._thread.start()

    def on_change(self, change: Change, event: Any) -> None:
        message = notification_for(change, event)
        if message is None:
            return
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            log.warning("notification queue full; dropping %s", message["text"])

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout_s, trust_env=False) as http:
            while (message := self._queue.get()) is not None:
                try:
                    http.post(self.url, json=message).raise_for_status()
                    self.sent += 1
                except httpx.HTTPError as exc:
                    self.failed += 1
                    log.warning("webhook %s failed: %r", self.url, exc)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=self.timeout_s)
