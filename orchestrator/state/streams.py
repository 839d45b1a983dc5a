"""Streams the proxy reports, per engine: what makes an engine busy and keeps it from scale-down.

The proxy says when a stream starts and ends; the registry keeps the active ones and a bounded
history of ended ones. A stream ends by its own ID (an unknown ID ends nothing), or when the
daemon knows its session cannot be alive any more: its engine is gone or restarted, the engine
says the session is over, or nothing confirmed it for `engines.stream_ttl_s`; always with a
reason. An engine merely leaving `/engines` for a while (a VPN blip) ends nothing: the session
lives in the engine, and the viewer may still be watching. The store writes every change
through to the journal (`journal.py`), so a restarted daemon knows them all.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

HISTORY = 1000
RESERVE_S = 10.0  # how long a handed-out engine is kept from the next provisioning request
StreamStatus = Literal["started", "ended"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Stream:
    id: str
    container_id: str
    key_type: str
    key: str
    playback_session_id: str = ""
    stat_url: str = ""
    command_url: str = ""
    is_live: bool = True
    started_at: float
    confirmed_at: float | None = None  # the engine last said the session is alive
    status: StreamStatus = "started"
    ended_at: float | None = None
    end_reason: str | None = None

    @property
    def alive_at(self) -> float:
        """The last sign that the session is alive."""
        return max(self.started_at, self.confirmed_at or 0.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reservations:
    """Engines handed out by provisioning whose stream has not been reported yet, so two
    concurrent requests never get the same free engine."""

    until: dict[str, float] = field(default_factory=dict)

    def hold(self, container_id: str, now: float) -> None:
        self.prune(now)
        self.until[container_id] = now + RESERVE_S

    def release(self, container_id: str) -> None:
        self.until.pop(container_id, None)

    def next_expiry(self, now: float) -> float | None:
        return min((t for t in self.until.values() if t > now), default=None)

    def held(self, now: float) -> frozenset[str]:
        return frozenset(c for c, t in self.until.items() if t > now)

    def prune(self, now: float) -> None:
        for expired in [c for c, t in self.until.items() if t <= now]:
            del self.until[expired]


class StreamRegistry:
    def __init__(self) -> None:
        self.active: dict[str, Stream] = {}
        self.ended: deque[Stream] = deque(maxlen=HISTORY)
        self.last_usage: dict[str, float] = {}
        self.total_started = 0

    def load(
        self, active: Iterable[Stream], ended: Iterable[Stream], last_usage: Mapping[str, float]
    ) -> None:
        """What an earlier daemon knew (from the journal), before anything else is recorded."""
        self.active = {s.id: s for s in active}
        self.ended.extend(ended)
        self.last_usage.update(last_usage)
        self.total_started = len(self.active)

    def start(self, stream: Stream) -> Stream:
        """Record a stream; the same ID reported again replaces the earlier record."""
        self.active[stream.id] = stream
        self.last_usage[stream.container_id] = stream.started_at
        self.total_started += 1
        return stream

    def end(self, stream_id: str, reason: str, at: float) -> Stream | None:
        stream = self.active.pop(stream_id, None)
        if stream is None:
            return None
        done = dataclasses.replace(stream, status="ended", ended_at=at, end_reason=reason)
        self.ended.append(done)
        self.last_usage[stream.container_id] = at
        return done

    def confirm(self, stream_id: str, at: float) -> Stream | None:
        stream = self.active.get(stream_id)
        if stream is None:
            return None
        self.active[stream_id] = confirmed = dataclasses.replace(stream, confirmed_at=at)
        return confirmed

    def end_for_engine(
        self, container_id: str, reason: str, at: float, *, started_before: float | None = None
    ) -> list[Stream]:
        """End the engine's streams (only those older than `started_before`, when given)."""
        ids = [
            s.id
            for s in self.active.values()
            if s.container_id == container_id and (started_before is None or s.started_at < started_before)
        ]
        return [s for s in (self.end(i, reason, at) for i in ids) if s is not None]

    def oldest(self, container_id: str) -> Stream | None:
        """The engine's stream with the oldest sign of life."""
        return min(
            (s for s in self.active.values() if s.container_id == container_id),
            key=lambda s: s.alive_at,
            default=None,
        )

    def forget_engine(self, container_id: str) -> None:
        self.last_usage.pop(container_id, None)

    def count(self, container_id: str) -> int:
        return sum(1 for s in self.active.values() if s.container_id == container_id)

    def listing(self, container_id: str | None = None, status: StreamStatus | None = None) -> list[Stream]:
        found: list[Stream] = []
        if status in (None, "started"):
            found += self.active.values()
        if status in (None, "ended"):
            found += self.ended
        return [s for s in found if container_id is None or s.container_id == container_id]


class StreamsView(Protocol):
    """What readers of the store may see of the registry (writes go through the store)."""

    @property
    def active(self) -> Mapping[str, Stream]: ...
    @property
    def ended(self) -> Sequence[Stream]: ...
    @property
    def last_usage(self) -> Mapping[str, float]: ...
    @property
    def total_started(self) -> int: ...
    def count(self, container_id: str) -> int: ...
    def listing(
        self, container_id: str | None = None, status: StreamStatus | None = None
    ) -> list[Stream]: ...
