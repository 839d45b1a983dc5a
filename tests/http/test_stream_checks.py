"""Streams whose end the proxy never reported are ended once the engine says so."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from orchestrator.docker.containers import ContainerInfo
from orchestrator.docker.engines import engine_labels, engine_sighting
from orchestrator.state.records import EngineSighting
from orchestrator.state.store import StateStore
from orchestrator.state.streams import Stream
from orchestrator.workers.stream_checks import StreamChecker, engine_url
from reconcilers.model import CreateEngine, EnginePorts, EngineSpec

MakeServer = Callable[..., Awaitable[TestServer]]
TTL_S = 21600.0


def local_engine(http_port: int) -> EngineSighting:
    """A running engine whose API (and stat URLs) answer on 127.0.0.1:`http_port`."""
    create = CreateEngine(
        vpn=None,
        vpn_id=None,
        slot=0,
        forwarded=False,
        spec_hash="h",
        reason="t",
        ports=EnginePorts(http=http_port, https=0, api=1, p2p=2, host_http=19000),
    )
    return engine_sighting(
        ContainerInfo(
            id="e" * 64,
            name="engine-0",
            status="running",
            health=None,
            started_at=time.time(),
            created_at=time.time(),
            ip="127.0.0.1",
            labels=engine_labels(create, EngineSpec(image="x")),
        )
    )


async def watched_and_blind(
    aiohttp_server: MakeServer, stat: Callable[[web.Request], Awaitable[web.Response]]
) -> tuple[StateStore, float]:
    """A store with one engine whose stat URLs `stat` answers, and two streams on it: `watched`
    (with a stat_url) and `blind` (without one)."""
    app = web.Application()
    app.router.add_get("/ace/stat/{infohash}/{session}", stat)
    server = await aiohttp_server(app)
    assert server.port is not None
    store = StateStore()
    store.upsert_engine(local_engine(server.port))
    now = time.time()
    for stream_id, stat_url in (("watched", "http://localhost:19000/ace/stat/ih/s1"), ("blind", "")):
        store.start_stream(
            Stream(
                id=stream_id,
                container_id="e" * 64,
                key_type="content_id",
                key="k",
                stat_url=stat_url,
                started_at=now,
            )
        )
    return store, now


def test_stat_url_is_rewritten_to_the_engine_the_daemon_reaches() -> None:
    url = "http://localhost:19000/ace/stat/abc/def?x=1"
    assert engine_url(url, "172.17.0.5", 6878) == "http://172.17.0.5:6878/ace/stat/abc/def?x=1"


async def test_streams_end_after_two_gone_answers_and_only_then(aiohttp_server: MakeServer) -> None:
    answer: dict[str, Any] = {"response": {"status": "dl", "peers": 3}, "error": None}

    async def stat(request: web.Request) -> web.Response:
        return web.json_response(answer)

    store, now = await watched_and_blind(aiohttp_server, stat)

    async with aiohttp.ClientSession() as session:
        checker = StreamChecker(store, session)
        for _ in range(3):
            await checker.check("ip", now, TTL_S)
        assert set(store.streams.active) == {"watched", "blind"}  # alive: nothing ends

        answer.update(response=None, error="unknown playback session id")
        await checker.check("ip", now, TTL_S)
        assert set(store.streams.active) == {"watched", "blind"}  # one miss is not enough
        await checker.check("ip", now, TTL_S)
    assert set(store.streams.active) == {"blind"}
    (ended,) = store.streams.ended
    assert (ended.id, ended.end_reason) == ("watched", "stat_url_gone")


def test_a_malformed_stat_url_is_skipped_not_fatal() -> None:
    assert engine_url("http://[bad/ace/stat/abc/p1", "127.0.0.1", 6878) is None
    assert engine_url("ftp://engine/ace/stat/abc/p1", "127.0.0.1", 6878) is None


async def test_checking_a_stream_with_a_malformed_stat_url_ends_nothing() -> None:
    store = StateStore()
    store.upsert_engine(local_engine(9))
    store.start_stream(
        Stream(
            id="odd",
            container_id="e" * 64,
            key_type="content_id",
            key="k",
            stat_url="http://[bad/ace/stat/abc/p1",
            started_at=time.time(),
        )
    )
    async with aiohttp.ClientSession() as session:
        checker = StreamChecker(store, session)
        for _ in range(3):
            await checker.check("ip", time.time(), TTL_S)
    assert set(store.streams.active) == {"odd"}


async def test_a_stream_nobody_confirms_ends_after_the_ttl_and_a_confirmed_one_does_not(
    aiohttp_server: MakeServer,
) -> None:
    async def stat(request: web.Request) -> web.Response:
        return web.json_response({"response": {"status": "dl"}, "error": None})

    store, now = await watched_and_blind(aiohttp_server, stat)

    async with aiohttp.ClientSession() as session:
        checker = StreamChecker(store, session)
        await checker.check("ip", now + 50, 100)
        assert store.streams.active["watched"].confirmed_at == now + 50
        assert set(store.streams.active) == {"watched", "blind"}
        await checker.check("ip", now + 120, 100)  # blind: 120 s with no sign of life

    assert set(store.streams.active) == {"watched"}
    (ended,) = store.streams.ended
    assert (ended.id, ended.end_reason) == ("blind", "unconfirmed")
