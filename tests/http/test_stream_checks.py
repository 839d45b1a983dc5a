"""Streams whose end the proxy never reported are ended once the engine says so."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from orchestrator.docker.containers import ContainerInfo
from orchestrator.docker.engines import engine_labels, engine_sighting
from orchestrator.state.records import EngineSighting
from orchestrator.state.store import StateStore
from orchestrator.state.streams import Stream
from orchestrator.workers.stream_checks import StreamChecker, engine_url
from reconcilers.model import CreateEngine, EnginePorts, EngineSpec
from testkit.logs import logged

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
        store.demand.start_stream(
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
        assert set(store.demand.streams.active) == {"watched", "blind"}  # alive: nothing ends

        answer.update(response=None, error="unknown playback session id")
        await checker.check("ip", now, TTL_S)
        assert set(store.demand.streams.active) == {"watched", "blind"}  # one miss is not enough
        await checker.check("ip", now, TTL_S)
    assert set(store.demand.streams.active) == {"blind"}
    (ended,) = store.demand.streams.ended
    assert (ended.id, ended.end_reason) == ("watched", "stat_url_gone")


async def test_a_stream_the_engine_says_is_over_logs_stream_ended_by_engine_once(
    aiohttp_server: MakeServer,
) -> None:
    async def stat(request: web.Request) -> web.Response:
        return web.Response(status=404)  # the engine no longer knows the playback session

    store, now = await watched_and_blind(aiohttp_server, stat)

    async with aiohttp.ClientSession() as session:
        checker = StreamChecker(store, session)
        with capture_logs() as logs:
            for _ in range(4):
                await checker.check("ip", now, TTL_S)
    assert set(store.demand.streams.active) == {"blind"}
    (ended,) = logged(logs, "stream_ended_by_engine")
    assert ended["log_level"] == "warning"
    assert (ended["stream_id"], ended["container"], ended["reason"]) == (
        "watched",
        "engine-0",
        "stat_url_gone",
    )


def test_a_malformed_stat_url_is_skipped_not_fatal() -> None:
    assert engine_url("http://[bad/ace/stat/abc/p1", "127.0.0.1", 6878) is None
    assert engine_url("ftp://engine/ace/stat/abc/p1", "127.0.0.1", 6878) is None


async def test_checking_a_stream_with_a_malformed_stat_url_ends_nothing() -> None:
    store = StateStore()
    store.upsert_engine(local_engine(9))
    store.demand.start_stream(
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
    assert set(store.demand.streams.active) == {"odd"}


async def test_a_stream_nobody_confirms_ends_after_the_ttl_and_a_confirmed_one_does_not(
    aiohttp_server: MakeServer,
) -> None:
    async def stat(request: web.Request) -> web.Response:
        return web.json_response({"response": {"status": "dl"}, "error": None})

    store, now = await watched_and_blind(aiohttp_server, stat)

    async with aiohttp.ClientSession() as session:
        checker = StreamChecker(store, session)
        await checker.check("ip", now + 50, 100)
        assert store.demand.streams.active["watched"].confirmed_at == now + 50
        assert set(store.demand.streams.active) == {"watched", "blind"}
        await checker.check("ip", now + 120, 100)  # blind: 120 s with no sign of life

    assert set(store.demand.streams.active) == {"watched"}
    (ended,) = store.demand.streams.ended
    assert (ended.id, ended.end_reason) == ("blind", "unconfirmed")


async def test_a_stream_without_progress_stalls_hides_its_engine_and_ends_after_the_grace(
    aiohttp_server: MakeServer,
) -> None:
    answer: dict[str, Any] = {"response": {"status": "dl", "peers": 3, "speed_down": 80, "downloaded": 0}}

    async def stat(request: web.Request) -> web.Response:
        return web.json_response(answer | {"error": None})

    store, now = await watched_and_blind(aiohttp_server, stat)
    store.demand.end_stream("blind", "test", now)
    cid = "e" * 64
    store.mark_ready(cid, store.engines[cid].started_at)
    assert [e.container_id for e in store.visible] == [cid]

    async with aiohttp.ClientSession() as session:
        checker = StreamChecker(store, session)

        async def round_at(t: float, downloaded: int, peers: int = 3) -> None:
            answer["response"] |= {"downloaded": downloaded, "peers": peers, "speed_down": 80 if peers else 0}
            await checker.check("ip", now + t, TTL_S, 60.0, 120.0)

        await round_at(10, 1000)
        await round_at(40, 5000)
        assert store.demand.progress["watched"].progressing and not store.stalled_engines
        await round_at(70, 5000, peers=0)  # no progress since 40 s
        assert not store.demand.stream_stalled("watched", now + 70, 60.0) and store.visible
        await round_at(100, 5000, peers=0)  # 60 s without progress: stalled, hidden
        assert store.demand.stream_stalled("watched", now + 100, 60.0)
        assert store.stalled_engines == {cid: now + 100} and not store.visible
        await round_at(130, 9000)  # progress again: listed again
        assert not store.stalled_engines and [e.container_id for e in store.visible] == [cid]
        await round_at(160, 9000, peers=0)
        await round_at(190, 9000, peers=0)  # stalled again at 190
        await round_at(300, 9000, peers=0)
        assert set(store.demand.streams.active) == {"watched"}  # 110 s: within the 120 s grace
        await round_at(310, 9000, peers=0)
    assert not store.demand.streams.active
    assert (store.demand.streams.ended[-1].id, store.demand.streams.ended[-1].end_reason) == (
        "watched",
        "stalled",
    )
    observed = store.observed(now + 310).engines[0]
    assert observed.stalled_since == now + 190 and observed.streams == 0  # the planner removes it
