"""The Gluetun control-server client against a real HTTP server that misbehaves on purpose."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from orchestrator.errors import ControlApiAuthError, ControlApiError
from orchestrator.vpn.control import GluetunControl

Route = Callable[[web.Request], Awaitable[web.StreamResponse]]
MakeServer = Callable[..., Awaitable[TestServer]]


def reply(status: int = 200, body: Any = None, text: str | None = None) -> Route:
    async def handler(request: web.Request) -> web.StreamResponse:
        if text is not None:
            return web.Response(status=status, text=text)
        return web.json_response(body, status=status)

    return handler


async def serve(aiohttp_server: MakeServer, routes: dict[str, Route]) -> str:
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    server = await aiohttp_server(app)
    return f"http://{server.host}:{server.port}"


GOOD_REST = {
    "/v1/publicip/ip": reply(body={"public_ip": "203.0.113.9"}),
    "/v1/vpn/status": reply(body={"status": "running"}),
}


@pytest.mark.parametrize(
    ("routes", "port"),
    [
        ({"/v1/portforward": reply(body={"port": 51820, "ports": [51820]})}, 51820),
        ({"/v1/portforward": reply(body={"port": 0})}, None),
        ({"/v1/portforward": reply(body={})}, None),
        # older Gluetun: only the old route exists
        ({"/v1/openvpn/portforwarded": reply(body={"port": 40000})}, 40000),
        # newer Gluetun answers the old route with 301; the new one is asked first anyway
        (
            {
                "/v1/portforward": reply(body={"port": 41000}),
                "/v1/openvpn/portforwarded": reply(301, text="moved"),
            },
            41000,
        ),
    ],
    ids=[
        "new_route",
        "port_zero_is_none",
        "port_missing_is_none",
        "old_route_fallback",
        "new_route_preferred",
    ],
)
async def test_reads_the_forwarded_port(
    aiohttp_server: MakeServer, routes: dict[str, Route], port: int | None
) -> None:
    base = await serve(aiohttp_server, {**GOOD_REST, **routes})
    async with aiohttp.ClientSession() as session:
        reading = await GluetunControl(session, api_key=lambda: None).read(base)
    assert reading.forwarded_port == port
    assert reading.public_ip == "203.0.113.9" and reading.vpn_status == "running"


@pytest.mark.parametrize(
    ("route", "error"),
    [
        (reply(text="<html>not json</html>"), "not JSON"),
        (reply(body={"port": "fifty"}), "unexpected port value"),
        (reply(body={"port": 70000}), "unexpected port value"),
    ],
    ids=["garbage", "port_not_a_number", "port_out_of_range"],
)
async def test_garbage_is_a_clear_error(aiohttp_server: MakeServer, route: Route, error: str) -> None:
    base = await serve(aiohttp_server, {"/v1/portforward": route, **GOOD_REST})
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ControlApiError, match=error):
            await GluetunControl(session, api_key=lambda: None).read(base)


async def test_401_is_bad_credentials_and_the_key_is_sent(aiohttp_server: MakeServer) -> None:
    async def guarded(request: web.Request) -> web.StreamResponse:
        if request.headers.get("X-API-Key") != "right":
            return web.json_response({"error": "unauthorized"}, status=401)
        return web.json_response({"port": 40001})

    base = await serve(aiohttp_server, {"/v1/portforward": guarded, **GOOD_REST})
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ControlApiAuthError, match="401"):
            await GluetunControl(session, api_key=lambda: "wrong").read(base)
        with pytest.raises(ControlApiAuthError):
            await GluetunControl(session, api_key=lambda: None).read(base)
        reading = await GluetunControl(session, api_key=lambda: "right").read(base)
    assert reading.forwarded_port == 40001


async def test_a_control_server_that_hangs_times_out(aiohttp_server: MakeServer) -> None:
    async def hang(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(10)
        return web.json_response({"port": 1})

    base = await serve(aiohttp_server, {"/v1/portforward": hang, **GOOD_REST})
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ControlApiError, match="Timeout"):
            await GluetunControl(session, api_key=lambda: None).read(base)


async def test_unreachable_control_server_is_an_error() -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ControlApiError):
            await GluetunControl(session, api_key=lambda: None).read("http://127.0.0.1:9")
