"""Readiness and liveness probing: an engine is listed only while its HTTP API answers.

For every running engine that has not answered since it (re)started, one probe task asks
`GET /webui/api/service?method=get_version` until it gets JSON with `result`, then marks the
engine ready for that start: every 0.1 s at first, then less often, but at least every second for
the first `QUICK_PROBING_S` (an engine answers within that on a healthy host, and an answer missed
by 3 s of back-off cost a cold pool seconds), every 3 s after that. A probe stops by itself
when the engine stops, restarts or goes.
Ready engines are asked again every `engines.health_check_interval_s` (60 s), all in one round
(`version_round`). One that misses is asked again every `RECHECK_S` (10 s, at most the interval)
until it answers or has missed three in a row (hung, or its network gone without any Docker
event): it is then marked unready, which hides it until the readiness probe sees it answer
again. So an engine that hangs is hidden within one interval and two rechecks (86 s at most
with the defaults, timeouts included), while a pool that answers costs one round a minute.
The active streams are checked on a cadence of their own (`stream_checks`), every
`STREAM_CHECK_S` (30 s) or the engines' interval when that is shorter.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp
import structlog

from orchestrator.config import Config
from orchestrator.state.endpoints import engine_endpoint
from orchestrator.state.store import StateStore
from orchestrator.workers.stream_checks import StreamChecker
from orchestrator.workers.version_round import READY_PATH, is_ip_address, is_version, versions_answered

log = structlog.get_logger()

FIRST_INTERVAL_S = 0.1
QUICK_PROBING_S = 30.0
QUICK_MAX_INTERVAL_S = 1.0
MAX_INTERVAL_S = 3.0
NOT_READY_WARN_S = 90.0  # a healthy engine answers well within this, a slow host's too
REQUEST_TIMEOUT_S = 2.0
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
LIVENESS_FAILURES = 3
RECHECK_S = 10.0
STREAM_CHECK_S = 30.0


def next_probe_interval(interval: float, probing_for_s: float) -> float:
    """The wait before a readiness probe's next ask, `probing_for_s` after its first."""
    ceiling = QUICK_MAX_INTERVAL_S if probing_for_s < QUICK_PROBING_S else MAX_INTERVAL_S
    return min(interval * 1.5, ceiling)


def stream_check_interval_s(engine_check_interval_s: float) -> float:
    """How often the active streams are asked: every `STREAM_CHECK_S`, or the engines' interval
    when that is shorter (a stall is then seen as soon as the engines' round would see it)."""
    return min(engine_check_interval_s, STREAM_CHECK_S)


async def answers_version(session: aiohttp.ClientSession, host: str, port: int) -> bool:
    try:
        async with session.get(f"http://{host}:{port}{READY_PATH}", timeout=REQUEST_TIMEOUT) as resp:
            if resp.status != 200:
                return False
            body = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return False
    return is_version(body)


class ReadinessProber:
    def __init__(
        self,
        store: StateStore,
        session: aiohttp.ClientSession,
        config: Callable[[], Config],
        *,
        recheck_s: float = RECHECK_S,
    ) -> None:
        self._store = store
        self._config = config
        self._session = session
        self._recheck_s = recheck_s
        self._inflight: set[tuple[str, float | None]] = set()
        self._misses: dict[str, int] = {}
        self._streams = StreamChecker(store, session)

    async def run(self) -> None:
        wake = self._store.watch()
        async with asyncio.TaskGroup() as probes:
            while True:
                await wake.wait()
                wake.clear()
                for engine in list(self._store.engines.values()):
                    key = (engine.container_id, engine.started_at)
                    if engine.status == "running" and not engine.ready and key not in self._inflight:
                        self._inflight.add(key)
                        probes.create_task(self._probe(*key))

    async def run_liveness(self) -> None:
        """A round of every ready engine each interval; between rounds, while an engine has
        missed, a recheck of those that missed every `recheck_s` (at most the interval)."""
        loop = asyncio.get_running_loop()
        next_round = loop.time() + self._config().engine_check_interval_s
        recheck_at: float | None = None
        while True:
            await asyncio.sleep(max(0.0, min(next_round, recheck_at or next_round) - loop.time()))
            interval = self._config().engine_check_interval_s
            whole = loop.time() >= next_round
            if whole:
                next_round = loop.time() + interval
            missed = await self.check_liveness(every=whole)
            recheck_at = loop.time() + min(interval, self._recheck_s) if missed else None

    async def check_liveness(self, *, every: bool) -> bool:
        """Ask every ready engine (`every`) or those that missed their last check; True while
        one of them has missed and is not hidden yet."""
        address = self._config().address
        engines = [
            e for e in self._store.engines.values() if e.ready and (every or self._misses.get(e.container_id))
        ]
        answers = await self._answers([engine_endpoint(self._store, e, address) for e in engines])
        for engine, ok in zip(engines, answers, strict=True):
            misses = 0 if ok else self._misses.get(engine.container_id, 0) + 1
            self._misses[engine.container_id] = misses
            if ok:
                self._store.note_health_check(engine.container_id)
            elif misses >= LIVENESS_FAILURES:
                self._misses[engine.container_id] = 0
                self._store.mark_unready(engine.container_id, f"missed {misses} health checks")
        # an engine gone, or hidden meanwhile (restarted, stalled, its VPN down), starts its count
        # afresh once ready again; its old misses must not keep the rechecks going
        ready = {cid for cid, e in self._store.engines.items() if e.ready}
        for cid in set(self._misses) - ready:
            del self._misses[cid]
        return any(self._misses.values())

    async def run_stream_checks(self) -> None:
        """The active streams' `stat_url`s, every `STREAM_CHECK_S` or the engines' interval when
        shorter."""
        while True:
            await asyncio.sleep(stream_check_interval_s(self._config().engine_check_interval_s))
            config = self._config()
            await self._streams.check(
                config.address,
                time.time(),
                config.stream_ttl_s,
                config.desired.engines.stall_after_s,
                config.desired.engines.stall_grace_s,
            )

    async def _answers(self, endpoints: list[tuple[str, int]]) -> list[bool]:
        """Whether each engine answered: those at an IP address in one round of sockets (few
        wake-ups, `version_round`), those at a host name through the client session."""
        by_address = [is_ip_address(host) for host, _ in endpoints]
        dialled = [i for i, ip in enumerate(by_address) if ip]
        named = [i for i, ip in enumerate(by_address) if not ip]
        by_ip, by_name = await asyncio.gather(
            versions_answered([endpoints[i] for i in dialled], REQUEST_TIMEOUT_S),
            asyncio.gather(*(answers_version(self._session, *endpoints[i]) for i in named)),
        )
        answers = dict(zip(dialled, by_ip, strict=True)) | dict(zip(named, by_name, strict=True))
        return [answers[i] for i in range(len(endpoints))]

    def _same_run(self, container_id: str, started_at: float | None) -> bool:
        engine = self._store.engines.get(container_id)
        return engine is not None and engine.status == "running" and engine.started_at == started_at

    async def _probe(self, container_id: str, started_at: float | None) -> None:
        loop = asyncio.get_running_loop()
        interval, warned, began = FIRST_INTERVAL_S, False, loop.time()
        try:
            while self._same_run(container_id, started_at):
                engine = self._store.engines[container_id]
                host, port = engine_endpoint(self._store, engine, self._config().address)
                if await answers_version(self._session, host, port):
                    self._store.mark_ready(container_id, started_at)
                    return
                if not warned and loop.time() - began >= NOT_READY_WARN_S:
                    warned = True
                    log.warning(
                        "engine_not_ready_yet",
                        container=engine.name,
                        host=host,
                        port=port,
                        hint="check engines.address (ip when the daemon runs on the host)",
                    )
                await asyncio.sleep(interval)
                interval = next_probe_interval(interval, loop.time() - began)
        finally:
            self._inflight.discard((container_id, started_at))
