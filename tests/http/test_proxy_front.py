"""testkit/proxy_front.py, the viewer side the stacks' test and the soak use in acexy's place:
a viewer's `/ace/getstream?id=` gets the engine's MPEG-TS; once the viewer leaves,
`stream_ended` and the engine's stop command follow; a provisioning failure is a 503, as acexy
answers. Against local aiohttp servers (testkit/proxy_stubs.py's engine and
orchestrator), the front on its own loop and thread as the Docker tests run it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest

from testkit.harness import free_port
from testkit.proxy_client import Timing
from testkit.proxy_front import Front, FrontSettings, running_front
from testkit.proxy_stubs import NO_WAIT, EngineStub, EventOrchestrator, MakeServer, viewer_bed

FAST = Timing(status_every_s=60, engines_cache_s=0, settle_s=0.01, lookup_s=0.05, eta_scale=0.01)


@contextlib.asynccontextmanager
async def front_for(orch_url: str) -> AsyncIterator[tuple[Front, str]]:
    port = free_port()
    settings = FrontSettings(orch_url=orch_url, api_key="k", timing=FAST, empty_timeout_s=2)
    context = running_front(settings, port)
    front = await asyncio.to_thread(context.__enter__)
    try:
        yield front, f"http://127.0.0.1:{port}"
    finally:
        await asyncio.to_thread(context.__exit__, None, None, None)


async def until(what: str, check: Callable[[], bool]) -> None:
    """Wait (5 s at most) until check() holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while not check():
        assert loop.time() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.02)


async def test_a_viewer_is_served_then_its_stream_ended_and_stopped(aiohttp_server: MakeServer) -> None:
    orch, engine_stub, client = await viewer_bed(aiohttp_server)
    await client.session.close()  # only its server address is needed: the front has its own
    async with front_for(client.orch_url) as (front, url), aiohttp.ClientSession() as viewer:
        async with viewer.get(f"{url}/ace/getstream?id=c0ffee") as resp:
            assert resp.status == 200
            data = await resp.content.readexactly(8192)
            assert data[0] == 0x47
            assert len(orch.bodies["stream_started"]) == 1  # reported before the first byte
            assert "stream_ended" not in orch.bodies  # the viewer is still there
        # the viewer left: the front ends that stream and stops the engine's session
        await until("stream_ended", lambda: "stream_ended" in orch.bodies)
        await until("the engine's stop", lambda: engine_stub.stopped == ["s0"])
    assert orch.bodies["stream_ended"] == [{"stream_id": "c0ffee|s0", "reason": "client_disconnected"}]
    assert front.outcomes == {"served": 1}
    assert front.client.calls[0] == "GET /orchestrator/status"  # the start-up poll


async def one_viewer(
    aiohttp_server: MakeServer, prepare: Callable[[EventOrchestrator, EngineStub], None]
) -> tuple[EventOrchestrator, EngineStub, Front, int]:
    """One viewer's getstream through the front, after `prepare` set the stubs up: the stubs, the
    front and the status the viewer got."""
    orch, engine_stub, client = await viewer_bed(aiohttp_server)
    await client.session.close()
    prepare(orch, engine_stub)
    async with (
        front_for(client.orch_url) as (front, url),
        aiohttp.ClientSession() as viewer,
        viewer.get(f"{url}/ace/getstream?id=c0ffee") as resp,
    ):
        status = resp.status
    return orch, engine_stub, front, status


async def test_a_failed_provisioning_is_a_503(aiohttp_server: MakeServer) -> None:
    def full(orch: EventOrchestrator, _: EngineStub) -> None:
        orch.started = {"e1": 1}  # the one engine is full: the front must provision
        orch.provision = [NO_WAIT]

    orch, engine_stub, front, status = await one_viewer(aiohttp_server, full)
    assert status == 503
    assert front.outcomes == {"provision_failed": 1}
    assert "stream_started" not in orch.bodies and engine_stub.log == []


@pytest.mark.parametrize("engine_status", [200, 500])
async def test_an_engine_whose_getstream_fails_is_a_500_and_no_stream_is_reported(
    aiohttp_server: MakeServer, engine_status: int
) -> None:
    def failing(_: EventOrchestrator, engine_stub: EngineStub) -> None:
        engine_stub.getstream_error = (engine_status, "failed to load content")

    orch, _, front, status = await one_viewer(aiohttp_server, failing)
    assert status == 500
    assert front.outcomes == {"engine_failed": 1}
    assert "stream_started" not in orch.bodies and "stream_ended" not in orch.bodies


async def test_a_playback_that_fails_before_the_relay_starts_is_a_502_and_the_stream_ends(
    aiohttp_server: MakeServer,
) -> None:
    def unreachable(_: EventOrchestrator, engine_stub: EngineStub) -> None:
        engine_stub.playback_base = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    orch, _, front, status = await one_viewer(aiohttp_server, unreachable)
    assert status == 502
    assert front.outcomes == {"engine_failed": 1}
    assert len(orch.bodies["stream_started"]) == 1
    await until("stream_ended", lambda: "stream_ended" in orch.bodies)
    assert orch.bodies["stream_ended"] == [{"stream_id": "c0ffee|s0", "reason": "engine_error"}]
