"""The HTTP API (aiohttp): what proxies and operators read.

Every answer is JSON, errors included: an unknown route is a JSON 404, an unexpected failure a
JSON 500 with no traceback leaked. Handlers only read the state store; they never wait on
Docker, so they answer in well under the proxy's 3-second timeout from the daemon's first second.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from orchestrator.auth import api_key_middleware
from orchestrator.metrics import add_metrics
from orchestrator.openapi import openapi_json
from orchestrator.proxy_api import add_proxy_routes
from orchestrator.views import engine_detail_view, engine_view, rfc3339, vpn_views

if TYPE_CHECKING:
    from orchestrator.daemon import Daemon

log = structlog.get_logger()

DAEMON: web.AppKey[Daemon] = web.AppKey("daemon")
ENGINES_CACHE: web.AppKey[list[Any]] = web.AppKey("engines_cache")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": code, "message": message, **extra}, status=status)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.content_type == "application/json":
            raise
        return json_error(exc.status, exc.reason.lower().replace(" ", "_"),
                          f"{exc.reason}: {request.method} {request.path}")
    except Exception:
        log.exception("http_handler_failed", path=request.path, method=request.method)
        return json_error(500, "internal_error", "unexpected error; see the daemon's log")


async def engines(request: web.Request) -> web.Response:
    """Serialised once per store change: proxies ask on every stream request."""
    daemon = request.app[DAEMON]
    key = (daemon.store.version, daemon.config.address)
    cached = request.app[ENGINES_CACHE]
    if cached[0] != key:
        views = [engine_view(daemon.store, e, daemon.config.address) for e in daemon.store.visible]
        cached[:] = [key, json.dumps(views).encode()]
    return web.Response(body=cached[1], content_type="application/json")


async def engine(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    ref = request.match_info["container_id"]
    found = daemon.store.engines.get(ref) or next(
        (e for e in daemon.store.engines.values()
         if e.name == ref or (len(ref) >= 12 and e.container_id.startswith(ref))), None)
    if found is None:
        return json_error(404, "engine_not_found", f"no managed engine {ref!r}")
    return web.json_response(engine_detail_view(daemon.store, found, daemon.config.address))


async def health(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    return web.json_response({"status": "ok", "uptime_s": round(time.time() - daemon.started_at, 3)})


async def status(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    store = daemon.store
    spec = daemon.desired.engines
    plan = store.last_plan
    executor = daemon.executor
    watcher = daemon.watcher
    config_error = watcher.error if watcher else None
    return web.json_response({
        "desired": {
            "min_replicas": spec.min_replicas, "min_free": spec.min_free,
            "max_replicas": spec.max_replicas, "image": spec.image,
            "target": plan.target if plan else None, "vpn_mode": daemon.desired.vpn.mode,
        },
        "observed": {
            "engines": len(store.engines),
            "running": sum(1 for e in store.engines.values() if e.status == "running"),
            "ready": sum(1 for e in store.engines.values() if e.ready),
            "visible": len(store.visible),
            "pending_creates": len(store.pending_creates),
            "busy": len(store.busy),
        },
        "problems": [{"code": p.code, "message": p.message, "vpn": p.vpn}
                     for p in (plan.problems if plan else ())],
        "last_reconcile": rfc3339(store.last_reconcile_at),
        "reconcile_passes": daemon.loop.passes if daemon.loop else 0,
        "config": {
            "path": str(daemon.config_path) if daemon.config_path else None,
            "loaded_at": rfc3339(watcher.loaded_at if watcher else None),
            "last_error": None if config_error is None else {
                "message": str(config_error), "file": config_error.source,
                "line": config_error.line, "key": config_error.key,
                "at": rfc3339(watcher.error_at if watcher else None)},
        },
        "docker": {"connected": store.docker_connected, "error": store.docker_error,
                   "events_received": daemon.events.events_received,
                   "resyncs": daemon.events.resyncs},
        "provisioning": {
            "circuit_breaker_state": executor.breaker_state if executor else "closed",
            "consecutive_failures": executor.create_failures if executor else 0,
            "blocked_until": rfc3339(store.create_blocked_until),
            "recent_errors": [
                {"at": rfc3339(e.at), "action": e.action, "target": e.target,
                 "message": e.message, "transient": e.transient}
                for e in (executor.errors if executor else ())],
        },
        "vpn": vpn_views(store),
        "uptime_s": round(time.time() - daemon.started_at, 3),
    })


async def vpn_status(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    return web.json_response({"mode": daemon.desired.vpn.mode, "vpns": vpn_views(daemon.store)})


def make_app(daemon: Daemon) -> web.Application:
    auth = api_key_middleware(lambda: daemon.config.api.api_key)
    app = web.Application(middlewares=[json_errors, auth], client_max_size=64 * 1024)
    app[DAEMON] = daemon
    app[ENGINES_CACHE] = [None, b"[]"]
    app.router.add_get("/engines", engines)
    app.router.add_get("/engines/{container_id}", engine)
    app.router.add_get("/health", health)
    app.router.add_get("/status", status)
    app.router.add_get("/vpn/status", vpn_status)
    add_proxy_routes(app, daemon)
    add_metrics(app, daemon)
    app.router.add_get("/openapi.json", openapi_json)
    return app
