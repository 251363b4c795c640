"""Request pacing in real time: a token bucket and jittered exponential backoff.

IMDS throttles per VM in wall-clock seconds (429 past 5 requests/s), so these use the
monotonic clock even when the rest of the agent runs on a virtual clock. Waits take a
`threading.Event` so a stopping agent is never stuck in a sleep.
"""

from __future__ import annotations

import random
import threading
import time


class TokenBucket:
    """At most `rate` requests per second on average and `burst` back to back.

    No one-second window ever holds more than `burst + rate` requests, so the agent's
    defaults (burst 2, rate 3) keep it within IMDS's 5/s however the window falls.
    """

    def __init__(self, rate: float, burst: float = 1.0) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Take a token, waiting for one; False if `stop` was set meanwhile."""
        while True:
            with self._lock:
                now = time.monotonic()
                self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return True
                wait = (1 - self._tokens) / self.rate
            if stop is not None:
                if stop.wait(wait):
                    return False
            else:
                time.sleep(wait)


def backoff_delay(attempt: int, base: float = 0.2, cap: float = 5.0,
                  rng: random.Random | None = None) -> float:
    """Delay before retry number `attempt` (0-based): exponential, capped, jittered.

    Jitter (50-100 % of the step) keeps the many agents of one availability set from
    retrying in lockstep after a shared outage.
    """
    step = min(cap, base * 2.0 ** max(0, attempt))
    return float(step * (rng or random).uniform(0.5, 1.0))
