"""Ends streams whose end the proxy never reported.

`stream_ended` is fire-and-forget on the proxy's side: a proxy that crashes or restarts loses
it, and the stream would keep its engine busy forever (the pool creeping up to max_replicas).
So, with every liveness round, the daemon asks each active stream's `stat_url` (rewritten to
the engine's address as the daemon reaches it). The engine answers a finished playback session
with 404, or with JSON carrying an `error` and no `response`; two such answers in a row end the
stream with reason `stat_url_gone`; an answer saying the session is alive confirms the stream.
A stream with no sign of life (no confirmation, no report) for `engines.stream_ttl_s` ends with
reason `unconfirmed`: a stream without a `stat_url`, on an engine that never answers, cannot
keep an engine busy forever.

The same answer carries the P2P side (`peers`, `speed_down`, `downloaded`): each round's answers
go to the store as progress samples, where `reconcilers.stalls` tells a stalled stream (no
progress for `engines.stall_after_s`) from a working one.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import structlog

from orchestrator.state.endpoints import Address, engine_endpoint
from orchestrator.state.store import StateStore
from orchestrator.state.streams import Stream
from reconcilers.stalls import StatSample

log = structlog.get_logger()

TIMEOUT = aiohttp.ClientTimeout(total=3.0)
MISSES_TO_END = 2


def engine_url(url: str, host: str, port: int) -> str | None:
    """The same path on the engine as the daemon reaches it (the proxy's host may be
    `localhost` or a name only the proxy resolves); None for a URL that cannot be parsed."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https", ""):
        return None
    return urlunsplit((parts.scheme or "http", f"{host}:{port}", parts.path, parts.query, ""))


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def stat_sample(response: object) -> StatSample | None:
    """The P2P side of a live session's stat answer (None: it carries none of it)."""
    if not isinstance(response, dict):
        return None
    peers, speed, down = (_number(response.get(k)) for k in ("peers", "speed_down", "downloaded"))
    if peers is None and speed is None and down is None:
        return None
    return StatSample(
        peers=None if peers is None else int(peers),
        speed_down=speed,
        downloaded=None if down is None else int(down),
    )


async def read_stat(session: aiohttp.ClientSession, url: str) -> tuple[bool | None, StatSample | None]:
    """(gone, sample): gone True: the engine says the playback session is over; False: it is
    alive; None: unknown. The sample: what a live session's answer says of its progress."""
    try:
        async with session.get(url, timeout=TIMEOUT) as resp:
            if resp.status == 404:
                return True, None
            if resp.status != 200:
                return None, None
            body = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None, None
    if not isinstance(body, dict):
        return None, None
    gone = bool(body.get("error")) and body.get("response") is None
    return gone, None if gone else stat_sample(body.get("response"))


class StreamChecker:
    def __init__(self, store: StateStore, session: aiohttp.ClientSession) -> None:
        self._store = store
        self._session = session
        self._misses: dict[str, int] = {}

    async def check(
        self,
        address: Address,
        now: float,
        ttl_s: float,
        stall_after_s: float = 60.0,
        stall_grace_s: float = 120.0,
    ) -> None:
        """Ask about every stream at once (one hung engine must not stretch the round)."""
        checks: list[tuple[Stream, str]] = []
        for stream in list(self._store.demand.streams.active.values()):
            engine = self._store.engines.get(stream.container_id)
            if not stream.stat_url or engine is None:
                continue
            url = engine_url(stream.stat_url, *engine_endpoint(self._store, engine, address))
            if url is not None:
                checks.append((stream, url))
        results = await asyncio.gather(*(read_stat(self._session, url) for _, url in checks))
        answers = [gone for gone, _ in results]
        self._store.demand.confirm_streams(
            (stream.id for (stream, _), gone in zip(checks, answers, strict=True) if gone is False),
            now,
            ttl_s,
        )
        for (stream, _), gone in zip(checks, answers, strict=True):
            engine = self._store.engines.get(stream.container_id)
            if engine is None:
                continue
            misses = self._misses.get(stream.id, 0) + 1 if gone else 0
            self._misses[stream.id] = misses
            if misses >= MISSES_TO_END and self._store.demand.end_stream(stream.id, "stat_url_gone", now):
                log.warning(
                    "stream_ended_by_engine",
                    stream_id=stream.id,
                    container=engine.name,
                    reason="stat_url_gone",
                )
        for gone_id in set(self._misses) - set(self._store.demand.streams.active):
            del self._misses[gone_id]
        self._store.demand.end_unconfirmed(ttl_s, now)
        self._store.record_progress(
            {
                stream.id: sample
                for (stream, _), (gone, sample) in zip(checks, results, strict=True)
                if gone is False and sample is not None
            },
            now,
            stall_after_s,
            stall_grace_s,
        )
