"""The liveness schedule (orchestrator/workers/readiness.py) against engines on loopback: a pool
that answers is asked once a round; one engine that stops answering is asked again soon, not a
round later, and hidden after three misses in a row, while the others wait for their round."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import aiohttp
import pytest
from structlog.testing import capture_logs

from orchestrator.config import Config, parse_config
from orchestrator.state.store import StateStore
from orchestrator.workers import readiness
from orchestrator.workers.readiness import (
    FIRST_INTERVAL_S,
    ReadinessProber,
    next_probe_interval,
    stream_check_interval_s,
)
from testkit.logs import logged
from testkit.sightings import engine_info

VERSION = json.dumps({"result": {"version": "3.2.3", "code": 3020300}, "error": None}).encode()
CONFIG = "engines: {image: engine:1, launch: {preset: acestream-http-proxy}, address: ip}\n"


@dataclasses.dataclass
class Engine:
    """A stand-in engine on loopback that counts the checks it was asked and can fall silent."""

    port: int = 0
    asked: int = 0
    silent: bool = False

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.asked += 1
            if not self.silent:
                writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + VERSION)
                await writer.drain()
        finally:
            writer.close()


@asynccontextmanager
async def engines(count: int) -> AsyncIterator[list[Engine]]:
    async with AsyncExitStack() as stack:
        found = []
        for _ in range(count):
            engine = Engine()
            server = await asyncio.start_server(engine.handle, "127.0.0.1", 0)
            await stack.enter_async_context(server)
            engine.port = server.sockets[0].getsockname()[1]
            found.append(engine)
        yield found


def ready_store(found: list[Engine]) -> StateStore:
    store = StateStore()
    for i, engine in enumerate(found):
        seen = engine_info(f"e{i}", slot=i)
        obs = dataclasses.replace(seen.obs, ports=dataclasses.replace(seen.obs.ports, http=engine.port))
        store.upsert_engine(dataclasses.replace(seen, obs=obs, ip="127.0.0.1"))
        store.mark_ready(f"e{i}", obs.started_at)
    return store


def config(interval_s: float) -> Config:
    return parse_config(
        CONFIG.replace("address: ip", f"address: ip, health_check_interval_s: {interval_s}"),
        source="test.yaml",
        env={},
    )


async def until_hidden(store: StateStore, container_id: str, within: float) -> None:
    changed = store.watch()
    async with asyncio.timeout(within):
        while store.engines[container_id].ready:
            changed.clear()
            await changed.wait()


async def test_a_silent_engine_is_rechecked_before_the_next_round_and_hidden() -> None:
    async with engines(3) as found, aiohttp.ClientSession() as session:
        store = ready_store(found)
        prober = ReadinessProber(store, session, lambda: config(1.0), recheck_s=0.05)
        found[0].silent = True
        task = asyncio.create_task(prober.run_liveness())
        try:
            await until_hidden(store, "e0", within=5)
        finally:
            task.cancel()
        assert found[0].asked == 3  # one round, then two rechecks of it alone
        assert [e.asked for e in found[1:]] == [1, 1]  # the others waited for their round
        assert all(store.engines[f"e{i}"].ready for i in (1, 2))


async def test_an_engine_that_answers_its_recheck_is_kept_and_no_longer_rechecked() -> None:
    async with engines(2) as found, aiohttp.ClientSession() as session:
        store = ready_store(found)
        prober = ReadinessProber(store, session, lambda: config(1.0), recheck_s=0.05)
        found[0].silent = True
        assert await prober.check_liveness(every=True)  # a miss: a recheck is due
        found[0].silent = False
        assert not await prober.check_liveness(every=False)  # it answered: nothing pending
        assert [e.asked for e in found] == [2, 1]  # the recheck asked only the one that missed
        assert store.engines["e0"].ready
        found[0].silent = True
        assert await prober.check_liveness(every=False) is False  # no miss pending: asks nobody
        assert [e.asked for e in found] == [2, 1]
        assert await prober.check_liveness(every=True)  # the count started again from one miss
        assert await prober.check_liveness(every=False)
        assert store.engines["e0"].ready


async def test_an_engine_hidden_meanwhile_stops_the_rechecks_and_starts_afresh() -> None:
    async with engines(1) as found, aiohttp.ClientSession() as session:
        store = ready_store(found)
        prober = ReadinessProber(store, session, lambda: config(1.0), recheck_s=0.05)
        found[0].silent = True
        assert await prober.check_liveness(every=True)
        assert await prober.check_liveness(every=False)  # two misses
        store.mark_unready("e0", "restarted")  # hidden by something else meanwhile
        assert not await prober.check_liveness(every=False)  # nothing left to recheck
        store.mark_ready("e0", store.engines["e0"].started_at)
        assert await prober.check_liveness(every=True)  # one miss of the new ready period
        assert store.engines["e0"].ready


async def test_an_engine_that_answers_is_marked_ready_and_logs_engine_ready() -> None:
    async with engines(1) as [engine], aiohttp.ClientSession() as session:
        store = StateStore()
        seen = engine_info("e0")
        obs = dataclasses.replace(seen.obs, ports=dataclasses.replace(seen.obs.ports, http=engine.port))
        store.upsert_engine(dataclasses.replace(seen, obs=obs, ip="127.0.0.1"))
        prober = ReadinessProber(store, session, lambda: config(1.0))
        changed = store.watch()
        with capture_logs() as logs:
            task = asyncio.create_task(prober.run())
            try:
                store.changed()  # the readiness probe looks at every change
                async with asyncio.timeout(5):
                    while not store.engines["e0"].ready:
                        changed.clear()
                        await changed.wait()
            finally:
                task.cancel()
    (ready,) = logged(logs, "engine_ready")
    assert ready["log_level"] == "info"
    assert (ready["container"], ready["container_id"]) == (obs.name, "e0")


async def test_an_engine_hidden_after_three_misses_logs_engine_unready_with_the_reason() -> None:
    async with engines(2) as found, aiohttp.ClientSession() as session:
        store = ready_store(found)
        prober = ReadinessProber(store, session, lambda: config(1.0), recheck_s=0.05)
        found[0].silent = True
        with capture_logs() as logs:
            await prober.check_liveness(every=True)
            await prober.check_liveness(every=False)
            assert not logged(logs, "engine_unready")  # two misses
            await prober.check_liveness(every=False)
    assert not store.engines["e0"].ready
    (unready,) = logged(logs, "engine_unready")
    assert unready["log_level"] == "warning"
    assert (unready["container"], unready["container_id"]) == (store.engines["e0"].name, "e0")
    assert unready["reason"] == "missed 3 health checks"


@pytest.mark.parametrize(
    ("engines_s", "streams_s"),
    [(60.0, 30.0), (30.0, 30.0), (120.0, 30.0), (10.0, 10.0), (0.5, 0.5)],
)
def test_streams_are_checked_every_30_s_or_the_engines_interval_when_shorter(
    engines_s: float, streams_s: float
) -> None:
    assert stream_check_interval_s(engines_s) == streams_s


def probe_times(until_s: float) -> list[float]:
    """When a readiness probe asks an engine that never answers, over `until_s` (seconds after
    its first ask), as `next_probe_interval` spaces them."""
    asked, interval = [0.0], FIRST_INTERVAL_S
    while asked[-1] + interval <= until_s:
        asked.append(asked[-1] + interval)
        interval = next_probe_interval(interval, asked[-1])
    return asked


def test_an_engine_starting_is_asked_at_least_every_second_for_its_first_30_s_then_every_3_s() -> None:
    asked = probe_times(120.0)
    gaps = [(at, later - at) for at, later in itertools.pairwise(asked)]
    assert gaps[0] == (0.0, FIRST_INTERVAL_S)
    assert max(gap for at, gap in gaps if at < 29.0) == pytest.approx(1.0)
    assert [gap for at, gap in gaps if at > 35.0] == pytest.approx(
        [3.0] * len([a for a, _ in gaps if a > 35.0])
    )
    # an engine answering 8 s into its start is seen within a second, not up to 3 s later
    assert min(at for at in asked if at >= 8.0) <= 9.0


async def test_an_engine_that_never_answers_is_warned_about_once_after_a_while(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(readiness, "NOT_READY_WARN_S", 0.5)
    async with engines(1) as [engine], aiohttp.ClientSession() as session:
        engine.silent = True
        store = StateStore()
        seen = engine_info("e0")
        obs = dataclasses.replace(seen.obs, ports=dataclasses.replace(seen.obs.ports, http=engine.port))
        store.upsert_engine(dataclasses.replace(seen, obs=obs, ip="127.0.0.1"))
        prober = ReadinessProber(store, session, lambda: config(1.0))
        with capture_logs() as logs:
            task = asyncio.create_task(prober.run())
            try:
                store.changed()
                await asyncio.sleep(0.3)
                assert logged(logs, "engine_not_ready_yet") == []  # not before its time
                await asyncio.sleep(1.7)
            finally:
                task.cancel()
    (warning,) = logged(logs, "engine_not_ready_yet")
    assert (warning["log_level"], warning["container"]) == ("warning", obs.name)
    assert engine.asked >= 4 and not store.engines["e0"].ready
