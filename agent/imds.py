"""Client for the Azure Instance Metadata Service (the only part of quorumgate that calls it).

Rules it keeps (docs: Azure IMDS and Scheduled Events):
- `Metadata: true` on every request; redirects are never followed; proxy environment
  variables are ignored (`trust_env=False`): IMDS traffic must never reach a proxy.
- Under 5 requests/second per VM (token bucket, real time); jittered exponential
  backoff on 429, 5xx, 404/410, timeouts and refused connections, bounded by attempts
  and a deadline so the caller's loop always gets control back.
- The first scheduled-events call may take up to two minutes (it enables the feature):
  it alone gets the long read timeout.
- Conditional GET with the ETag (`If-None-Match` → 304 → the last document).
- A malformed document is logged and the last good one kept; never an exception
  escaping as a crash.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import ValidationError

from agent.imds_models import InstanceMetadata, ScheduledEventsDocument
from agent.pacing import TokenBucket, backoff_delay

log = logging.getLogger(__name__)

DEFAULT_URL = "http://169.254.169.254"
INSTANCE_PATH = "/metadata/instance"
EVENTS_PATH = "/metadata/scheduledevents"
RETRY_STATUSES = frozenset({404, 410, 429})
UNREACHABLE = frozenset({"connect", "dropped", "timeout"})
"""Error codes meaning IMDS itself could not be reached (as when the VM is down)."""


class ImdsError(Exception):
    """IMDS did not give a usable answer; `code` is a status code or a short reason."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class ImdsUnavailable(ImdsError):
    """No answer worth keeping within the attempt/deadline budget."""


class ImdsRejected(ImdsError):
    """A final non-retryable HTTP status."""


class ImdsMalformed(ImdsError):
    """A document that does not parse, and no earlier good one to fall back on."""


@dataclass(frozen=True)
class AckResponse:
    status: int
    body: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class ImdsClient:
    """One VM's IMDS, synchronous and thread-safe enough for one caller loop."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        instance_api_version: str = "2021-12-13",
        events_api_version: str = "2020-07-01",
        timeout_s: float = 5.0,
        first_call_timeout_s: float = 120.0,
        max_attempts: int = 4,
        deadline_s: float = 15.0,
        rate_per_s: float = 3.0,
        burst: int = 2,
        backoff_base_s: float = 0.2,
        backoff_cap_s: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        stop: threading.Event | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.instance_api_version = instance_api_version
        self.events_api_version = events_api_version
        self.timeout_s = timeout_s
        self.first_call_timeout_s = first_call_timeout_s
        self.max_attempts = max_attempts
        self.deadline_s = deadline_s
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self._stop = stop or threading.Event()
        self._on_error = on_error or (lambda code: None)
        self._bucket = TokenBucket(rate_per_s, burst=burst)
        self._http = httpx.Client(
            headers={"Metadata": "true"},
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
        )
        self._events_answered = False
        self.etag: str | None = None
        self.last_events: ScheduledEventsDocument | None = None
        self.events_fresh = False
        """True when `last_events` is what IMDS answered to the latest request."""
        self.last_instance: InstanceMetadata | None = None

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------ documents

    def instance(self) -> InstanceMetadata:
        """Compute/network facts; the last good ones if this answer is malformed."""
        response = self._get(INSTANCE_PATH, "instance")
        try:
            meta = InstanceMetadata.from_document(response.json())
        except (ValueError, ValidationError) as exc:
            return self._malformed_instance(exc)
        self.last_instance = meta
        return meta

    def scheduled_events(self) -> ScheduledEventsDocument:
        """The current document (conditional GET); the last good one if malformed."""
        headers = {}
        if self.etag and self.last_events is not None:
            headers["If-None-Match"] = self.etag
        first = not self._events_answered
        timeout = httpx.Timeout(self.timeout_s, read=self.first_call_timeout_s) if first else None
        self.events_fresh = False
        response = self._get(EVENTS_PATH, "events", headers=headers, timeout=timeout,
                             slow_ok=first)
        self._events_answered = True
        if response.status_code == 304 and self.last_events is not None:
            self.events_fresh = True
            return self.last_events
        try:
            doc = ScheduledEventsDocument.model_validate(response.json())
        except (ValueError, ValidationError) as exc:
            return self._malformed_events(exc, response)
        self.last_events = doc
        self.etag = response.headers.get("ETag")
        self.events_fresh = True
        return doc

    def start_requests(self, event_ids: Iterable[str], incarnation: int) -> AckResponse:
        """POST StartRequests: lets the events start now for all their Resources.

        Retried only where IMDS surely did not act on it (429, 5xx, refused connection);
        a read timeout is not retried, the caller records it.
        """
        body = {"StartRequests": [{"EventId": eid} for eid in event_ids],
                "DocumentIncarnation": incarnation}
        response = self._request("POST", EVENTS_PATH, "events", json_body=body,
                                 retry_timeouts=False)
        if not 200 <= response.status_code < 300:
            self._on_error(str(response.status_code))
        return AckResponse(response.status_code, response.text[:2048])

    # ------------------------------------------------------------ transport

    def _get(self, path: str, kind: str, *, headers: dict[str, str] | None = None,
             timeout: httpx.Timeout | None = None, slow_ok: bool = False) -> httpx.Response:
        response = self._request("GET", path, kind, headers=headers, timeout=timeout,
                                 slow_ok=slow_ok)
        if response.status_code in (200, 304):
            return response
        self._on_error(str(response.status_code))
        raise ImdsRejected(f"IMDS {path} answered {response.status_code}: {response.text[:200]}",
                           str(response.status_code))

    def _request(self, method: str, path: str, kind: str, *,
                 headers: dict[str, str] | None = None, json_body: Any = None,
                 timeout: httpx.Timeout | None = None, slow_ok: bool = False,
                 retry_timeouts: bool = True) -> httpx.Response:
        """One answer worth returning, after bounded retries; `slow_ok`: the time spent
        waiting for answers does not eat into the retry deadline (the first call)."""
        deadline = time.monotonic() + self.deadline_s
        reason = "no attempt"
        fell_back = False
        for attempt in range(self.max_attempts):
            if not self._bucket.acquire(self._stop):
                raise ImdsUnavailable("agent stopping", "stopping")
            retry_after: float | None = None
            sent = time.monotonic()
            try:
                response = self._http.request(
                    method, self.base_url + path, params={"api-version": self._version(kind)},
                    headers=headers, json=json_body,
                    timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT)
            except httpx.TimeoutException as exc:
                if slow_ok:
                    deadline += time.monotonic() - sent
                reason = "timeout"
                if not retry_timeouts:
                    self._on_error(reason)
                    raise ImdsUnavailable(f"IMDS {method} {path}: timeout", reason) from exc
            except (httpx.ConnectError, httpx.ProxyError):
                reason = "connect"
            except httpx.TransportError:
                reason = "dropped"  # connected, then no answer (e.g. the VM went down)
            else:
                code = response.status_code
                if code == 400 and not fell_back and self._fall_back(kind, response):
                    fell_back = True
                    continue
                if code not in RETRY_STATUSES and code < 500:
                    return response
                reason = str(code)
                retry_after = _retry_after(response)
            self._on_error(reason)
            if attempt + 1 >= self.max_attempts:
                break
            delay = backoff_delay(attempt, self.backoff_base_s, self.backoff_cap_s)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.backoff_cap_s))
            if time.monotonic() + delay > deadline:
                break
            log.debug("IMDS %s %s: %s, retrying in %.2fs", method, path, reason, delay)
            if self._stop.wait(delay):
                raise ImdsUnavailable("agent stopping", "stopping")
        raise ImdsUnavailable(f"IMDS {method} {path} unavailable: last error {reason}", reason)

    def _version(self, kind: str) -> str:
        return self.instance_api_version if kind == "instance" else self.events_api_version

    def _fall_back(self, kind: str, response: httpx.Response) -> bool:
        """On 400 naming `newest-versions`, switch to the best version the server has."""
        try:
            offered = response.json().get("newest-versions")
        except (ValueError, AttributeError):
            return False
        if not isinstance(offered, list) or not all(isinstance(v, str) for v in offered):
            return False
        current = self._version(kind)
        if not offered or current in offered:
            return False
        older = [v for v in offered if v < current]
        chosen = max(older) if older else min(offered)
        log.warning("IMDS rejected %s api-version %s; falling back to %s", kind, current, chosen)
        if kind == "instance":
            self.instance_api_version = chosen
        else:
            self.events_api_version = chosen
        return True

    # ------------------------------------------------------------ malformed answers

    def _malformed_events(self, exc: Exception,
                          response: httpx.Response) -> ScheduledEventsDocument:
        self._on_error("malformed")
        log.warning("malformed scheduled-events document (%s): %.200r; keeping the last good one",
                    _short(exc), response.text)
        if self.last_events is None:
            raise ImdsMalformed("malformed scheduled-events document", "malformed")
        return self.last_events

    def _malformed_instance(self, exc: Exception) -> InstanceMetadata:
        self._on_error("malformed")
        log.warning("malformed instance document (%s); keeping the last good one", _short(exc))
        if self.last_instance is None:
            raise ImdsMalformed("malformed instance document", "malformed")
        return self.last_instance


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None


def _short(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                         for e in exc.errors(include_url=False)[:3])
    if isinstance(exc, json.JSONDecodeError):
        return f"not JSON: {exc.msg}"
    return str(exc)[:200]
