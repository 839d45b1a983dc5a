"""Proxy demand: the streams the proxy reports, the engines handed out, the want of a free engine,
and how far each stream's playback has progressed.

Split from the observed world (`store.py`): the proxy API and the stream checks write it, the
planner reads it (through `StateStore.observed()`) as what makes an engine busy or keeps one more
free. Every change of a stream is written through to the journal, so a restarted daemon knows
them all.

Every write calls `on_change` (given at construction: the store's `changed`, which wakes the
watchers), except those that move nothing the planner sees (a confirmation, a progress sample)
and those documented as part of a change the store announces itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog

from orchestrator.state.journal import Loaded, StreamJournal
from orchestrator.state.streams import Reservations, Stream, StreamRegistry, StreamsView
from reconcilers.stalls import Progress, StatSample, is_stalled
from reconcilers.stalls import advance as advance_progress

log = structlog.get_logger()


class Demand:
    def __init__(self, journal: StreamJournal, on_change: Callable[[], None]) -> None:
        self._journal = journal
        self._on_change = on_change
        self._streams = StreamRegistry()
        self._reservations = Reservations()
        self._demand_until: float | None = None
        self._progress: dict[str, Progress] = {}  # by stream ID
        self.version = 0  # bumped on every write, notified or not

    def _changed(self) -> None:
        self.version += 1
        self._on_change()

    # -- read-only views -----------------------------------------------------------------------
    @property
    def streams(self) -> StreamsView:
        return self._streams

    @property
    def demand_until(self) -> float | None:
        return self._demand_until

    def extra_demand(self, now: float) -> int:
        """How many more free engines the proxy is waiting for."""
        return 1 if self._demand_until is not None and self._demand_until > now else 0

    def held_engines(self, now: float) -> frozenset[str]:
        """Engines handed out by provisioning whose stream has not been reported yet."""
        return self._reservations.held(now)

    def next_hold_expiry(self, now: float) -> float | None:
        return self._reservations.next_expiry(now)

    @property
    def progress(self) -> Mapping[str, Progress]:
        return self._progress

    def stream_stalled(self, stream_id: str, now: float, stall_after_s: float) -> bool:
        stream = self.streams.active.get(stream_id)
        is_live = stream.is_live if stream is not None else True
        return is_stalled(self._progress.get(stream_id), now, stall_after_s, is_live=is_live)

    # -- what the proxy says -------------------------------------------------------------------
    def load(self, loaded: Loaded) -> None:
        """The streams an earlier daemon recorded (once, before serving the proxy): their
        engines count as busy from the first plan."""
        self._streams.load(loaded.active, loaded.ended, loaded.last_usage)
        self._changed()

    def start_stream(self, stream: Stream, cap: int | None = None) -> Stream:
        """A stream the proxy reported: the engine it runs on is busy, any demand is met. With
        `cap` streams already on the engine, the one with the oldest sign of life makes room
        (the newest report is the freshest truth; the engine stays busy either way)."""
        streams = self._streams
        evicted: list[Stream] = []
        while (
            cap is not None and stream.id not in streams.active and streams.count(stream.container_id) >= cap
        ):
            oldest = streams.oldest(stream.container_id)
            done = streams.end(oldest.id, "evicted_over_cap", stream.started_at) if oldest else None
            if done is None:
                break
            evicted.append(done)
        if evicted:
            log.warning(
                "streams_ended",
                container_id=stream.container_id[:12],
                reason="evicted_over_cap",
                streams=[s.id for s in evicted],
                hint=f"more than engines.max_streams_per_engine={cap} streams reported on one engine",
            )
        started = streams.start(stream)
        self._demand_until = None
        self._reservations.release(stream.container_id)
        self._record([*evicted, started])
        self._changed()
        return started

    def end_stream(self, stream_id: str, reason: str, at: float) -> Stream | None:
        ended = self._streams.end(stream_id, reason, at)
        if ended is not None:
            self._record([ended])
            self._changed()
        return ended

    def confirm_streams(self, stream_ids: Iterable[str], at: float, ttl_s: float) -> None:
        """The engines say these sessions are alive (nothing to plan: it only moves their TTL).
        One call per liveness round; the journal writes them coarsely (see `confirm_every`)."""
        confirmed = [s for s in (self._streams.confirm(i, at) for i in stream_ids) if s is not None]
        if confirmed:
            self._journal.confirm([s.id for s in confirmed], at, ttl_s)
            self.version += 1

    def end_unconfirmed(self, ttl_s: float, now: float) -> list[Stream]:
        """End the streams with no sign of life for `ttl_s` (no end reported, no engine saying so)."""
        stale = [s.id for s in self._streams.active.values() if now - s.alive_at >= ttl_s]
        ended = self.end_streams(stale, "unconfirmed", now, ttl_s=ttl_s)
        if ended:
            self._changed()
        return ended

    def hand_out(self, container_id: str, now: float) -> None:
        """Provisioning gave the engine to a proxy: it counts as busy until its stream is
        reported (or the hold ends), so two requests never get the same free engine."""
        self._reservations.hold(container_id, now)
        self._demand_until = None
        self._changed()

    def want_free_engine(self, until: float) -> None:
        """A proxy asked for an engine and none was free: keep one more free until `until`."""
        self._demand_until = until
        self._changed()

    # -- parts of a change the store announces (no notification of their own) ------------------
    def end_streams(self, stream_ids: Iterable[str], reason: str, at: float, **why: Any) -> list[Stream]:
        """End these streams for `reason` (logged with `why`)."""
        ended = [e for e in (self._streams.end(i, reason, at) for i in stream_ids) if e is not None]
        if ended:
            log.warning("streams_ended", reason=reason, **why, streams=[s.id for s in ended])
            self._record(ended)
        return ended

    def end_streams_of(
        self,
        container_id: str,
        reason: str,
        at: float,
        *,
        name: str | None = None,
        started_before: float | None = None,
    ) -> None:
        """End the engine's streams (only those older than `started_before`, when given)."""
        ended = self._streams.end_for_engine(container_id, reason, at, started_before=started_before)
        if ended:
            log.warning(
                "streams_ended",
                container=name,
                container_id=container_id[:12],
                reason=reason,
                streams=[s.id for s in ended],
            )
            self._record(ended)

    def forget_engine(self, container_id: str) -> None:
        """The engine is gone: its last use no longer matters."""
        self._streams.forget_engine(container_id)
        self._journal.forget_engine(container_id)
        self.version += 1

    def note_progress(self, samples: Mapping[str, StatSample], now: float) -> None:
        """One liveness round's `stat_url` answers (by stream ID): move each stream's progress,
        forget that of the streams that ended."""
        active, progress = self._streams.active, self._progress
        for stream_id, sample in samples.items():
            if stream_id in active:
                # the first answer this process gets is a baseline (the start time of a stream
                # read back from the journal says nothing of its progress)
                progress[stream_id] = advance_progress(progress.get(stream_id), sample, now)
        for gone in set(progress) - set(active):
            del progress[gone]
        self.version += 1

    def _record(self, streams: list[Stream]) -> None:
        usage = self._streams.last_usage
        self._journal.put(
            streams, {s.container_id: usage[s.container_id] for s in streams if s.container_id in usage}
        )
        self.version += 1
