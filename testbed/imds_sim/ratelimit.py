"""IMDS throttling: at most N answered requests per VM in any sliding real second.

Throttling is about the service's real capacity, so it uses the monotonic wall
clock even when the simulation runs on a fast virtual clock. Rejected requests do
not count, so a client that backs off recovers after one second.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class SlidingWindowLimiter:
    def __init__(
        self, window_s: float = 1.0, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.window_s = window_s
        self._monotonic = monotonic
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str, limit: int) -> bool:
        """Record a request for `key` and say whether it may be answered (limit 0: always)."""
        if limit <= 0:
            return True
        now = self._monotonic()
        with self._lock:
            seen = self._seen.setdefault(key, deque())
            while seen and now - seen[0] >= self.window_s:
                seen.popleft()
            if len(seen) >= limit:
                return False
            seen.append(now)
            return True

    def reset(self) -> None:
        with self._lock:
            self._seen.clear()
