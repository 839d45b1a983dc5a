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
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import structlog

from orchestrator.state.endpoints import Address, engine_endpoint
from orchestrator.state.store import StateStore
from orchestrator.state.streams import Stream

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


async def session_gone(session: aiohttp.ClientSession, url: str) -> bool | None:
    """True: the engine says the playback session is over; False: it is alive; None: unknown."""
    try:
        async with session.get(url, timeout=TIMEOUT) as resp:
            if resp.status == 404:
                return True
            if resp.status != 200:
                return None
            body = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    if not isinstance(body, dict):
        return None
    return bool(body.get("error")) and body.get("response") is None


class StreamChecker:
    def __init__(self, store: StateStore, session: aiohttp.ClientSession) -> None:
        self._store = store
        self._session = session
        self._misses: dict[str, int] = {}

    async def check(self, address: Address, now: float, ttl_s: float) -> None:
        """Ask about every stream at once (one hung engine must not stretch the round)."""
        checks: list[tuple[Stream, str]] = []
        for stream in list(self._store.streams.active.values()):
            engine = self._store.engines.get(stream.container_id)
            if not stream.stat_url or engine is None:
                continue
            url = engine_url(stream.stat_url, *engine_endpoint(self._store, engine, address))
            if url is not None:
                checks.append((stream, url))
        answers = await asyncio.gather(*(session_gone(self._session, url) for _, url in checks))
        self._store.confirm_streams(
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
            if misses >= MISSES_TO_END and self._store.end_stream(stream.id, "stat_url_gone", now):
                log.warning(
                    "stream_ended_by_engine",
                    stream_id=stream.id,
                    container=engine.name,
                    reason="stat_url_gone",
                )
        for gone_id in set(self._misses) - set(self._store.streams.active):
            del self._misses[gone_id]
        self._store.end_unconfirmed(ttl_s, now)
