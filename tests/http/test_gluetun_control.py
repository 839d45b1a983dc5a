"""The Gluetun control-server client against a real HTTP server that misbehaves on purpose."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from orchestrator.errors import ControlApiAuthError, ControlApiUnreachable
from orchestrator.vpn import control
from orchestrator.vpn.control import Credentials, GluetunControl

Route = Callable[[web.Request], Awaitable[web.StreamResponse]]
MakeServer = Callable[..., Awaitable[TestServer]]


def no_credentials() -> Credentials:
    return Credentials()


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
        # v3.41 with several forwarded ports: no `port` key
        ({"/v1/portforward": reply(body={"ports": [42000, 42001]})}, 42000),
        # v3.39-v3.40: the new route is 401 whatever the key, the old one answers
        (
            {
                "/v1/portforward": reply(401, text="Unauthorized"),
                "/v1/openvpn/portforwarded": reply(body={"port": 43000}),
            },
            43000,
        ),
        # <= v3.38: the new route is 400
        (
            {
                "/v1/portforward": reply(400, text="bad request"),
                "/v1/openvpn/portforwarded": reply(body={"port": 44000}),
            },
            44000,
        ),
    ],
    ids=[
        "new_route",
        "port_zero_is_none",
        "port_missing_is_none",
        "old_route_fallback",
        "new_route_preferred",
        "several_ports_no_port_key",
        "v3_40_new_route_401",
        "v3_38_new_route_400",
    ],
)
async def test_reads_the_forwarded_port(
    aiohttp_server: MakeServer, routes: dict[str, Route], port: int | None
) -> None:
    asked: list[str] = []

    def counted(route: Route) -> Route:
        async def handler(request: web.Request) -> web.StreamResponse:
            asked.append(request.path)
            return await route(request)

        return handler

    base = await serve(aiohttp_server, {p: counted(r) for p, r in {**GOOD_REST, **routes}.items()})
    async with aiohttp.ClientSession() as session:
        control = GluetunControl(session, credentials=no_credentials)
        reading = await control.read(base)
        assert reading.forwarded_port == port and reading.port_read
        assert reading.public_ip == "203.0.113.9" and reading.vpn_status == "running"
        asked.clear()
        again = await control.read(base)
    assert again == reading
    # the route that answered is asked first from then on: 3 requests a read, whatever the release
    assert len(asked) == 3, asked


@pytest.mark.parametrize(
    ("route", "error"),
    [
        (reply(text="<html>not json</html>"), "JSON object"),
        (reply(body={"port": "fifty"}), "unexpected port value"),
        (reply(body={"port": 70000}), "unexpected port value"),
        (reply(500, text="oops"), "HTTP 500"),
    ],
    ids=["garbage", "port_not_a_number", "port_out_of_range", "server_error"],
)
async def test_an_unreadable_port_is_said_and_the_rest_still_read(
    aiohttp_server: MakeServer, route: Route, error: str
) -> None:
    base = await serve(aiohttp_server, {"/v1/portforward": route, **GOOD_REST})
    async with aiohttp.ClientSession() as session:
        reading = await GluetunControl(session, credentials=no_credentials).read(base)
    assert not reading.port_read and reading.port_error is not None and error in reading.port_error
    assert reading.vpn_status == "running" and reading.public_ip == "203.0.113.9"


@pytest.mark.parametrize(
    "body", [{"public_ip": ""}, {"ip": "x"}, "garbage"], ids=["empty", "no_key", "garbage"]
)
async def test_an_empty_public_ip_is_unknown(aiohttp_server: MakeServer, body: Any) -> None:
    routes = {"/v1/publicip/ip": reply(body=body), "/v1/vpn/status": reply(body={"status": "stopping"})}
    base = await serve(aiohttp_server, routes)
    async with aiohttp.ClientSession() as session:
        reading = await GluetunControl(session, credentials=no_credentials).read(base)
    assert reading.public_ip is None and reading.vpn_status == "stopping"


async def test_only_a_401_on_the_status_route_is_bad_credentials(aiohttp_server: MakeServer) -> None:
    async def guarded(request: web.Request) -> web.StreamResponse:
        if request.headers.get("X-API-Key") != "right":
            return web.json_response({"error": "unauthorized"}, status=401)
        return web.json_response({"status": "running"})

    routes = {
        "/v1/vpn/status": guarded,
        "/v1/publicip/ip": reply(body={"public_ip": "203.0.113.9"}),
        "/v1/portforward": reply(401, text="Unauthorized"),  # as v3.39-v3.40: never a role for it
        "/v1/openvpn/portforwarded": reply(body={"port": 40001}),
    }
    base = await serve(aiohttp_server, routes)
    async with aiohttp.ClientSession() as session:
        for wrong in (Credentials(api_key="wrong"), Credentials()):
            with pytest.raises(ControlApiAuthError, match=r"vpn\.api_key"):
                await GluetunControl(session, credentials=functools.partial(lambda c: c, wrong)).read(base)
        reading = await GluetunControl(session, credentials=lambda: Credentials(api_key="right")).read(base)
    assert reading.forwarded_port == 40001 and reading.vpn_status == "running"


async def test_http_basic_credentials_are_sent(aiohttp_server: MakeServer) -> None:
    async def basic_only(request: web.Request) -> web.StreamResponse:
        expected = aiohttp.encode_basic_auth("operator", "hunter2")
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401, text="Unauthorized")
        return web.json_response({"status": "running"})

    base = await serve(aiohttp_server, {**GOOD_REST, "/v1/vpn/status": basic_only})
    basic = Credentials(user="operator", password="hunter2")  # noqa: S106 - a test password
    async with aiohttp.ClientSession() as session:
        reading = await GluetunControl(session, credentials=lambda: basic).read(base)
    assert reading.vpn_status == "running"


async def test_a_control_server_that_hangs_is_unreachable(
    aiohttp_server: MakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(control, "TIMEOUT", aiohttp.ClientTimeout(total=0.3))  # not the 3 s of a real read

    async def hang(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(10)
        return web.json_response({"status": "running"})

    base = await serve(aiohttp_server, {**GOOD_REST, "/v1/vpn/status": hang})
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ControlApiUnreachable, match="Timeout"):
            await GluetunControl(session, credentials=no_credentials).read(base)


async def test_a_refused_connection_is_unreachable() -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ControlApiUnreachable):
            await GluetunControl(session, credentials=no_credentials).read("http://127.0.0.1:9")
