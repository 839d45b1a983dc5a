"""The stubs of testkit/proxy_client.py's tests and testkit/proxy_front.py's: an orchestrator
answering as ../shared/proxy-contract.md says and an engine as testbed/engine describes it, both
local aiohttp servers, so that the client's tests and the front's share one of each."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from testkit.proxy_client import ProxyClient, Timing

MakeServer = Callable[..., Awaitable[TestServer]]
FAST = Timing(status_every_s=60, engines_cache_s=2, settle_s=0.01, lookup_s=0.05, eta_scale=0.01)


def engine(
    cid: str, *, health: str = "healthy", forwarded: bool = False, used: str | None = None
) -> dict[str, Any]:
    return {
        "container_id": cid,
        "container_name": cid,
        "host": "127.0.0.1",
        "port": 1,
        "forwarded": forwarded,
        "health_status": health,
        "last_stream_usage": used,
        "last_health_check": None,
        "labels": {},
    }


@dataclass
class Orchestrator:
    engines: list[dict[str, Any]] = field(default_factory=list)
    started: dict[str, int] = field(default_factory=dict)
    provision: list[tuple[int, Any]] = field(default_factory=list)  # answers, in order
    seen: list[tuple[float, str, str | None]] = field(default_factory=list)  # (t, call, auth)

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.StreamResponse:
            call = f"{request.method} {request.path_qs}"
            self.seen.append((time.monotonic(), call, request.headers.get("Authorization")))
            if request.path == "/orchestrator/status":
                return web.json_response({"status": "healthy"})
            if request.path == "/engines":
                return web.json_response(self.engines)
            if request.path == "/streams":
                n = self.started.get(request.query["container_id"], 0)
                return web.json_response([{"status": "started"}] * n)
            if request.path == "/provision/acestream":
                status, body = self.provision.pop(0)
                if status == 200:
                    self.engines.append(engine(body["container_id"]))
                return web.json_response(body, status=status)
            return web.json_response({}, status=404)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        return app


async def client_for(aiohttp_server: MakeServer, orch: Orchestrator, **kw: Any) -> ProxyClient:
    server = await aiohttp_server(orch.app())
    session = aiohttp.ClientSession()
    return ProxyClient(session=session, orch_url=f"http://{server.host}:{server.port}", timing=FAST, **kw)


NO_WAIT = (
    500,
    {
        "detail": {
            "code": "general_error",
            "recovery_eta_seconds": None,
            "should_wait": False,
            "can_retry": False,
        }
    },
)


PACKET = b"\x47" + b"\xff" * 187  # one MPEG-TS packet


@dataclass
class EngineStub:
    """An engine as the contract and testbed/engine describe it: getstream hands out a session
    whose URLs are built from the Host header; the playback URL streams TS packets until the
    client leaves or the session is stopped; `command_url?method=stop` ends the session."""

    log: list[str]  # shared with the orchestrator's, so the order of both is one list
    sessions: set[str] = field(default_factory=set)
    stopped: list[str] = field(default_factory=list)
    getstream_query: dict[str, str] = field(default_factory=dict)
    # a getstream that fails: its HTTP status and the engine's `error` (then `response` is null)
    getstream_error: tuple[int, str] | None = None
    playback_base: str | None = None  # where playback URLs point (default: this stub)

    def app(self) -> web.Application:
        async def getstream(request: web.Request) -> web.StreamResponse:
            self.log.append(f"engine {request.path}")
            self.getstream_query = dict(request.query)
            if self.getstream_error is not None:
                status, error = self.getstream_error
                return web.json_response({"response": None, "error": error}, status=status)
            sid = f"s{len(self.sessions) + len(self.stopped)}"
            self.sessions.add(sid)
            base = f"http://{request.host}"
            return web.json_response(
                {
                    "response": {
                        "playback_session_id": sid,
                        "playback_url": f"{self.playback_base or base}/ace/r/ih/{sid}",
                        "stat_url": f"{base}/ace/stat/ih/{sid}",
                        "command_url": f"{base}/ace/cmd/ih/{sid}",
                        "is_live": 1,
                    },
                    "error": None,
                }
            )

        async def playback(request: web.Request) -> web.StreamResponse:
            sid = request.match_info["sid"]
            self.log.append(f"engine /ace/r/{sid}")
            response = web.StreamResponse(headers={"Content-Type": "video/mp2t"})
            await response.prepare(request)
            try:
                while sid in self.sessions:
                    await response.write(PACKET * 10)
                    await asyncio.sleep(0.01)
            except ConnectionResetError:
                pass
            return response

        async def command(request: web.Request) -> web.StreamResponse:
            sid = request.match_info["sid"]
            self.log.append(f"engine /ace/cmd/{sid}?method={request.query.get('method')}")
            if request.query.get("method") == "stop" and sid in self.sessions:
                self.sessions.discard(sid)
                self.stopped.append(sid)
            return web.json_response({"response": "ok", "error": None})

        app = web.Application()
        app.router.add_get("/ace/getstream", getstream)
        app.router.add_get("/ace/r/{ih}/{sid}", playback)
        app.router.add_get("/ace/cmd/{ih}/{sid}", command)
        return app


@dataclass
class EventOrchestrator(Orchestrator):
    """The orchestrator side of the viewer tests: also keeps the stream events' bodies."""

    log: list[str] = field(default_factory=list)
    bodies: dict[str, list[Any]] = field(default_factory=dict)

    def app(self) -> web.Application:
        app = super().app()

        async def event(request: web.Request) -> web.StreamResponse:
            name = request.match_info["name"]
            self.log.append(f"orch {name}")
            self.seen.append((time.monotonic(), f"POST {request.path}", request.headers.get("Authorization")))
            self.bodies.setdefault(name, []).append(await request.json())
            return web.json_response({"ok": True})

        events = web.Application()
        events.router.add_post("/{name}", event)
        app.add_subapp("/events/", events)
        return app


async def viewer_bed(aiohttp_server: MakeServer) -> tuple[EventOrchestrator, EngineStub, ProxyClient]:
    log: list[str] = []
    engine_stub = EngineStub(log=log)
    engine_server = await aiohttp_server(engine_stub.app())
    listed = engine("e1")
    listed["port"] = engine_server.port
    orch = EventOrchestrator(engines=[listed], log=log)
    client = await client_for(aiohttp_server, orch, api_key="k")
    return orch, engine_stub, client
