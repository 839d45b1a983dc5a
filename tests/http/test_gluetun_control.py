"""The Gluetun control-server client against a real HTTP server that misbehaves on purpose."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from orchestrator.config import parse_config
from orchestrator.docker.containers import ContainerInfo, vpn_container
from orchestrator.errors import ControlApiAuthError, ControlApiUnreachable
from orchestrator.state.store import StateStore
from orchestrator.vpn import control
from orchestrator.vpn import poller as poller_module
from orchestrator.vpn.control import Credentials, GluetunControl
from orchestrator.vpn.poller import ControlPoller
from reconcilers.model import Plan, Problem
from reconcilers.vpn import ContainerSeen
from testkit.harness import free_port
from testkit.logs import logged

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


# -- the poller's log events (orchestrator/vpn/poller.py; docs/operations.md, gluetun-releases.md,
# stalls-and-freshness.md), the poller reading a stand-in control server on loopback -------------


@dataclasses.dataclass
class StandIn:
    """A control server whose answers the test changes between polls."""

    code: int = 200  # of GET /v1/vpn/status
    tunnel: str = "running"
    port: int = 51820
    put_code: int = 200
    puts: list[str] = dataclasses.field(default_factory=list)
    reads: int = 0  # of GET /v1/vpn/status: one a poll

    async def status(self, request: web.Request) -> web.StreamResponse:
        self.reads += 1
        return web.json_response({"status": self.tunnel}, status=self.code)

    async def forwarded(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"port": self.port, "ports": [self.port]})

    async def put_status(self, request: web.Request) -> web.StreamResponse:
        self.puts.append((await request.json())["status"])
        return web.json_response({"outcome": "ok"} if self.put_code == 200 else None, status=self.put_code)


def healthy_gluetun(container_id: str, *, started_at: float) -> ContainerSeen:
    """The container `gluetun`, running and healthy, its control server on loopback."""
    info = ContainerInfo(
        id=container_id,
        name="gluetun",
        status="running",
        health="healthy",
        started_at=started_at,
        created_at=started_at - 1,
    )
    return ContainerSeen(container=vpn_container(dataclasses.replace(info, ip="127.0.0.1")))


@contextlib.asynccontextmanager
async def polling(aiohttp_server: MakeServer) -> AsyncIterator[tuple[StandIn, ControlPoller, StateStore]]:
    """A poller of one VPN, `gluetun`, healthy, whose control server is a `StandIn` on loopback."""
    stand = StandIn()
    app = web.Application()
    app.router.add_get("/v1/vpn/status", stand.status)
    app.router.add_put("/v1/vpn/status", stand.put_status)
    app.router.add_get("/v1/publicip/ip", reply(body={"public_ip": "203.0.113.9"}))
    app.router.add_get("/v1/portforward", stand.forwarded)
    server = await aiohttp_server(app, host="127.0.0.1")
    config = parse_config(
        "engines: {image: engine:1, launch: {preset: acestream-http-proxy}, address: ip}\n"
        f"vpn: {{mode: single, containers: [gluetun], api_port: {server.port}, "
        "restart_tunnel_on_stall: true, tunnel_restart_interval_s: 600}\n",
        source="test.yaml",
        env={},
    )
    store = StateStore()
    now = time.time()
    store.apply_vpn("gluetun", healthy_gluetun("g" * 64, started_at=now - 60), now)
    async with aiohttp.ClientSession() as session:
        yield (
            stand,
            ControlPoller(GluetunControl(session, credentials=no_credentials), store, lambda: config),
            store,
        )


async def test_a_control_error_is_logged_once_per_distinct_message_and_its_end_once(
    aiohttp_server: MakeServer,
) -> None:
    async with polling(aiohttp_server) as (stand, poller, _):
        with capture_logs() as logs:
            await poller.poll("gluetun")  # answers: nothing to say
            stand.code = 500
            for _ in range(3):
                await poller.poll("gluetun")
            stand.code = 401  # a 401 means vpn.api_key is wrong
            for _ in range(2):
                await poller.poll("gluetun")
            stand.code = 200
            for _ in range(2):
                await poller.poll("gluetun")

    server_error, unauthorized, ok = logged(logs, "gluetun_control_error", "gluetun_control_ok")
    assert (server_error["event"], server_error["log_level"]) == ("gluetun_control_error", "warning")
    assert server_error["vpn"] == "gluetun" and server_error["auth_failed"] is False
    assert server_error["error"] == "/v1/vpn/status: HTTP 500"
    assert (unauthorized["event"], unauthorized["auth_failed"]) == ("gluetun_control_error", True)
    assert "401" in unauthorized["error"] and "vpn.api_key" in unauthorized["error"]
    assert (ok["event"], ok["vpn"]) == ("gluetun_control_ok", "gluetun")


async def test_a_forwarded_port_is_logged_once_per_change(aiohttp_server: MakeServer) -> None:
    async with polling(aiohttp_server) as (stand, poller, store):
        with capture_logs() as logs:
            for _ in range(2):
                await poller.poll("gluetun")
            stand.port = 51821
            for _ in range(2):
                await poller.poll("gluetun")
    assert store.vpns["gluetun"].forwarded_port == 51821
    first, changed = logged(logs, "vpn_forwarded_port")
    assert first["log_level"] == "info"
    assert (first["vpn"], first["port"], first["previous"]) == ("gluetun", 51820, None)
    assert (changed["vpn"], changed["port"], changed["previous"]) == ("gluetun", 51821, 51820)


async def test_a_tunnel_stopped_inside_gluetun_is_logged_once_per_change(aiohttp_server: MakeServer) -> None:
    async with polling(aiohttp_server) as (stand, poller, _):
        await poller.poll("gluetun")
        with capture_logs() as logs:
            stand.tunnel = "stopped"
            for _ in range(2):
                await poller.poll("gluetun")
            stand.tunnel = "running"
            for _ in range(2):
                await poller.poll("gluetun")
    stopped, running = logged(logs, "gluetun_tunnel_status")
    assert stopped["log_level"] == "info"
    assert (stopped["vpn"], stopped["status"]) == ("gluetun", "stopped")
    assert (running["vpn"], running["status"]) == ("gluetun", "running")


async def test_a_tunnel_restart_the_control_server_refuses_is_logged_and_not_retried_within_the_interval(
    aiohttp_server: MakeServer,
) -> None:
    """docs/stalls-and-freshness.md: with `vpn.restart_tunnel_on_stall`, a VPN reported
    `vpn_exit_stalling` with no engine progressing has its tunnel restarted at most once per
    `vpn.tunnel_restart_interval_s`; a failed restart is logged (`gluetun_tunnel_restart_failed`)."""
    async with polling(aiohttp_server) as (stand, poller, store):
        stand.put_code = 500
        stalling = Problem(code="vpn_exit_stalling", vpn="gluetun", message="its exit starves P2P")
        store.telemetry.record_plan(Plan(problems=(stalling,)), time.time(), 0.0)  # the planner's verdict
        now = time.time()
        with capture_logs() as logs:
            poller.restart_stalling_tunnels(now)
            await asyncio.wait_for(asyncio.gather(*poller._restarting), timeout=5)
            poller.restart_stalling_tunnels(now + 599)  # within the interval: not again
            await asyncio.wait_for(asyncio.gather(*poller._restarting), timeout=5)
            assert stand.puts == ["stopped"]
            stand.put_code = 200
            poller.restart_stalling_tunnels(now + 600)  # the interval passed: tried again
            await asyncio.wait_for(asyncio.gather(*poller._restarting), timeout=5)
    assert stand.puts == ["stopped", "stopped", "running"]
    failed, restarted = logged(logs, "gluetun_tunnel_restart_failed", "gluetun_tunnel_restarted")
    assert (failed["event"], failed["log_level"]) == ("gluetun_tunnel_restart_failed", "warning")
    assert (failed["vpn"], failed["error"]) == ("gluetun", "PUT /v1/vpn/status stopped: HTTP 500")
    assert (restarted["event"], restarted["vpn"]) == ("gluetun_tunnel_restarted", "gluetun")


async def test_a_vpn_that_changes_while_another_is_read_is_read_again_at_once() -> None:
    """Two VPNs' control servers read side by side; the first changes (here: its container
    restarted) while the second's answer is still awaited. The change woke the poller during the
    reads and was cleared with them, so the first was read again only at the next interval (60 s):
    a Gluetun turned healthy in that window left the pool without engines for a minute."""
    release, both_asked, g1_again = asyncio.Event(), asyncio.Event(), asyncio.Event()
    asked: dict[str, int] = {"127.0.0.1": 0, "127.0.0.2": 0}

    async def status(request: web.Request) -> web.StreamResponse:
        host = request.host.rpartition(":")[0]
        asked[host] += 1
        if asked == {"127.0.0.1": 1, "127.0.0.2": 1}:
            both_asked.set()
        if asked["127.0.0.1"] >= 2:
            g1_again.set()
        if host == "127.0.0.2":
            await release.wait()
        return web.json_response({"status": "running"})

    app = web.Application()
    app.router.add_get("/v1/vpn/status", status)
    app.router.add_get("/v1/publicip/ip", reply(body={"public_ip": "203.0.113.9"}))
    app.router.add_get("/v1/portforward", reply(body={"port": 0}))
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    for host in asked:
        await web.TCPSite(runner, host, port).start()
    config = parse_config(
        "engines: {image: engine:1, launch: {preset: acestream-http-proxy}, address: ip}\n"
        f"vpn: {{mode: redundant, containers: [g1, g2], api_port: {port}}}\n",
        source="test.yaml",
        env={},
    )
    store = StateStore()
    now = time.time()

    def seen(name: str, ip: str, started_at: float, health: str) -> ContainerSeen:
        info = ContainerInfo(
            id=name * 32,
            name=name,
            status="running",
            health=health,
            started_at=started_at,
            created_at=now - 61,
        )
        return ContainerSeen(container=vpn_container(dataclasses.replace(info, ip=ip)))

    store.apply_vpn("g1", seen("g1", "127.0.0.1", now - 60, "healthy"), now)
    store.apply_vpn("g2", seen("g2", "127.0.0.2", now - 60, "healthy"), now)
    try:
        async with aiohttp.ClientSession() as session:
            poller = ControlPoller(GluetunControl(session, credentials=no_credentials), store, lambda: config)
            task = asyncio.create_task(poller.run())
            await asyncio.wait_for(both_asked.wait(), 2)
            await asyncio.sleep(0.1)  # g1's reading applied; g2's still awaited
            store.apply_vpn("g1", seen("g1", "127.0.0.1", time.time(), "starting"), time.time())
            release.set()
            await asyncio.wait_for(g1_again.wait(), 2)  # not the 120 s ceiling
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        await runner.cleanup()


async def test_a_vpn_is_read_again_while_its_values_settle_after_a_change_then_at_the_ceiling(
    aiohttp_server: MakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gluetun negotiates the forwarded port at the end of tunnel-up: the first read after a
    change often says 0. The follow-up reads find the port with no other signal, long before the
    ceiling (120 s by default); then the poller reads nothing until the ceiling."""
    monkeypatch.setattr(poller_module, "FOLLOW_UPS_S", (0.3, 0.6, 0.9))
    async with polling(aiohttp_server) as (stand, poller, store):
        stand.port = 0
        task = asyncio.create_task(poller.run())
        try:
            changed = store.watch()
            async with asyncio.timeout(2):  # the first reading applied
                while not store.vpns["gluetun"].port_known:
                    changed.clear()
                    await changed.wait()
            assert store.vpns["gluetun"].forwarded_port in (0, None)
            stand.port = 51820
            async with asyncio.timeout(2):
                while store.vpns["gluetun"].forwarded_port != 51820:
                    changed.clear()
                    await changed.wait()
            await asyncio.sleep(1.0)  # the follow-ups are over
            reads = stand.reads
            assert reads == 1 + len(poller_module.FOLLOW_UPS_S)
            await asyncio.sleep(1.0)
            assert stand.reads == reads  # nothing until the ceiling
            # a later change (Gluetun recreated) is followed up the same way
            stand.port = 0
            now = time.time()
            store.apply_vpn("gluetun", healthy_gluetun("h" * 64, started_at=now), now)
            async with asyncio.timeout(2):  # its immediate read
                while stand.reads == reads:
                    changed.clear()
                    await changed.wait()
            await asyncio.sleep(0.1)
            stand.port = 51821  # negotiated after the change was read
            async with asyncio.timeout(2):
                while store.vpns["gluetun"].forwarded_port != 51821:
                    changed.clear()
                    await changed.wait()
            await asyncio.sleep(1.0)
            assert stand.reads == reads + 1 + len(poller_module.FOLLOW_UPS_S)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
