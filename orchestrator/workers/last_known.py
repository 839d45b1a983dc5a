"""Serves the engines `/engines` last listed while Docker has not answered since the start.

A daemon restarted into a Docker outage knows no engine until its first resync. Waiting for
Docker would turn every viewer away although the engines still serve; guessing would hand out
dead ones. So after `GRACE_S` without a resync, every engine of the last listing (from the
journal, `orchestrator.state.served`) is asked for its version on its own HTTP API, as the
readiness check does, and those that answer are served, checked again every `RECHECK_S`. The
first resync ends it: from then on Docker's word is the truth again.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp
import structlog

from orchestrator.state.store import StateStore
from orchestrator.workers.readiness import answers_version

log = structlog.get_logger()

GRACE_S = 5.0  # a daemon connecting normally has resynced by then
RECHECK_S = 10.0


class LastKnownEngines:
    def __init__(self, store: StateStore, session: aiohttp.ClientSession) -> None:
        self._store = store
        self._session = session

    async def run(self) -> None:
        served = self._store.served
        if not served.listing:
            return
        wake = self._store.watch()
        if await self._resynced_within(wake, GRACE_S):
            return
        log.warning(
            "docker_silent_serving_last_known",
            engines=len(served.listing),
            hint="Docker has not answered since the start; /engines lists the engines last served "
            "that answer their own HTTP API until it does",
        )
        while True:
            answering = await self._answering(served.listing)
            if self._store.telemetry.resyncs:
                break
            served.serve_fallback(answering)
            if await self._resynced_within(wake, RECHECK_S):
                break
        served.serve_fallback(None)
        log.info("docker_answered_last_known_dropped")

    async def _resynced_within(self, wake: asyncio.Event, seconds: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not self._store.telemetry.resyncs:
            left = deadline - loop.time()
            if left <= 0:
                return False
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), left)
        return True

    async def _answering(self, listing: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], ...]:
        def endpoint(entry: dict[str, Any]) -> tuple[str, int] | None:
            host, port = entry.get("host"), entry.get("port")
            return (host, port) if isinstance(host, str) and isinstance(port, int) else None

        checks = [(entry, endpoint(entry)) for entry in listing]
        answers = await asyncio.gather(
            *(answers_version(self._session, *where) for _, where in checks if where is not None)
        )
        reachable = [entry for entry, where in checks if where is not None]
        return tuple(entry for entry, ok in zip(reachable, answers, strict=True) if ok)
