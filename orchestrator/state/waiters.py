"""Proxy requests waiting for a new engine: how many free engines provisioning keeps wanted.

A deferred `POST /provision/acestream` (503, `should_wait`) means a proxy request is waiting.
acexy retries that request after half the ETA and again after the whole of it; the ETA is at
least 2 s, so a retry never comes sooner than 1 s after the same request's previous deferral,
and the body carries nothing that tells two requests apart. So a deferral that comes
`RETRY_GAP_S` or more after a waiter's last one is taken as that waiter's retry, and one that
comes within `RETRY_GAP_S` of every waiter's last as another request waiting at the same time:
two viewers at once want two new engines (one being prepared after the other would outlast
acexy's three attempts), one viewer retrying still wants exactly one. A waiter is met when an
engine is handed out to a request or a stream is reported on an engine nobody held, and is
forgotten at its `until` (each deferral pushes it on).
"""

from __future__ import annotations

from dataclasses import dataclass, field

RETRY_GAP_S = 0.9  # below acexy's shortest retry gap (half the 2 s minimum ETA)


@dataclass(slots=True, kw_only=True)
class _Waiter:
    last: float  # when its latest deferral was answered
    until: float  # when it stops counting


@dataclass(slots=True)
class Waiters:
    waiting: list[_Waiter] = field(default_factory=list)

    def defer(self, now: float, until: float) -> None:
        """A provisioning request was deferred at `now`; it keeps its waiter until `until`."""
        self._expire(now)
        retrying = [w for w in self.waiting if now - w.last >= RETRY_GAP_S]
        if retrying:
            waiter = min(retrying, key=lambda w: w.last)
            waiter.last, waiter.until = now, until
        else:
            self.waiting.append(_Waiter(last=now, until=until))

    def meet(self, now: float) -> None:
        """An engine went to a waiting request (the one waiting longest since its last try)."""
        self._expire(now)
        if self.waiting:
            self.waiting.remove(min(self.waiting, key=lambda w: w.last))

    def clear(self) -> None:
        self.waiting.clear()

    def count(self, now: float) -> int:
        return sum(1 for w in self.waiting if w.until > now)

    def until(self) -> float | None:
        """When the last waiter stops counting (None: nobody waits)."""
        return max((w.until for w in self.waiting), default=None)

    def _expire(self, now: float) -> None:
        self.waiting = [w for w in self.waiting if w.until > now]
