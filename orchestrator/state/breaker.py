"""The circuit breaker on engine creation: repeated failures back creation off exponentially.

One object for every create the daemon makes (new engines, recreates, forwarded-engine moves),
so a bad image or a broken Docker cannot hot-loop. `closed` while creates succeed; `open` while
backing off after `THRESHOLD` failures in a row; `half_open` once the back-off ran out and the
next create is the trial.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]
THRESHOLD = 3
MAX_BACKOFF_S = 60.0


@dataclass(slots=True)
class CreateBreaker:
    failures: int = 0
    blocked_until: float | None = None
    last_failure: float | None = None

    def state(self, now: float) -> BreakerState:
        if self.failures < THRESHOLD:
            return "closed"
        return "open" if self.blocked_until is not None and self.blocked_until > now else "half_open"

    def failed(self, now: float) -> None:
        self.failures += 1
        self.last_failure = now
        backoff = 1.0
        if self.failures >= THRESHOLD:
            backoff = min(MAX_BACKOFF_S, 2.0 ** (self.failures - THRESHOLD + 1))
        self.blocked_until = now + backoff

    def succeeded(self) -> None:
        self.failures = 0
        self.blocked_until = None
