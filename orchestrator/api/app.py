"""The HTTP API (aiohttp): what proxies and operators read.

Every answer is JSON, errors included (`routing.py`): an unknown route is a JSON 404, a known
route asked with another method a JSON 405 carrying `Allow` (HEAD is answered wherever GET is),
an unexpected failure a JSON 500 with no traceback leaked. What a request may cost is bounded
(`Limits`): its body size and how long its body may take, and how long an idle or half-sent
connection is kept.
Only a request aiohttp cannot parse as HTTP at all gets aiohttp's own plain-text 400. Handlers
only read the state store; they never wait on Docker, so they answer in well under the proxy's
3-second timeout from the daemon's first second.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from orchestrator.api.access import sees_full_details
from orchestrator.api.context import CONTEXT, ApiContext
from orchestrator.api.history_api import add_history_routes
from orchestrator.api.json_body import DEFAULT_LIMITS, LIMITS, Limits
from orchestrator.api.metrics import add_metrics
from orchestrator.api.openapi import openapi_json
from orchestrator.api.page import add_page_routes
from orchestrator.api.proxy import add_proxy_routes
from orchestrator.api.responses import json_error
from orchestrator.api.routing import add_fallbacks, add_get
from orchestrator.api.status_view import status_body
from orchestrator.api.views import engine_detail_view, engine_view, vpn_views
from orchestrator.state.liveness import unhealthy_reasons
from orchestrator.state.served import LastServed

# one [key, body] per view: full (loopback or key holder) and narrowed (access.py)
ENGINES_CACHE: web.AppKey[dict[bool, list[Any]]] = web.AppKey("engines_cache")
# given as a header, not `content_type=`, which aiohttp parses again on every response
ENGINES_HEADERS = {"Content-Type": "application/json"}


async def engines(request: web.Request) -> web.Response:
    """Serialised once per store change and view (full or not): proxies ask on every stream
    request."""
    ctx = request.app[CONTEXT]
    address = ctx.config.address
    full = sees_full_details(request)
    key = (ctx.store.version, address)
    cached = request.app[ENGINES_CACHE][full]
    if cached[0] != key:
        fallback = ctx.store.served.fallback
        if fallback is not None and not ctx.store.telemetry.resyncs:
            # Docker has not answered since the start: what was last served and still answers
            views = [LastServed.as_served(e) for e in fallback]
            cached[:] = [key, json.dumps(views).encode()]
        else:
            views = [engine_view(ctx.store, e, address, full=full) for e in ctx.store.visible]
            body = json.dumps(views)
            if full and ctx.store.telemetry.resyncs and views:
                # (an empty listing, e.g. before the first readiness checks, says nothing new)
                ctx.store.served.remember(views)
            cached[:] = [key, body.encode()]
    return web.Response(body=cached[1], headers=ENGINES_HEADERS)


async def engine(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    ref = request.match_info["container_id"]
    found = ctx.store.find_engine(ref)
    if found is None:
        return json_error(404, "engine_not_found", f"no managed engine {ref!r}")
    return web.json_response(
        engine_detail_view(
            ctx.store,
            found,
            ctx.config.address,
            now=time.time(),
            stall_after_s=ctx.desired.engines.stall_after_s,
            full=sees_full_details(request),
        )
    )


async def health(request: web.Request) -> web.Response:
    """200 while the daemon does its job; 503 with the reasons when it answers HTTP but is stuck
    inside (the image's HEALTHCHECK reads this)."""
    ctx = request.app[CONTEXT]
    now = time.time()
    reasons = unhealthy_reasons(ctx.store.telemetry, now)
    body = {"status": "unhealthy" if reasons else "ok", "uptime_s": round(now - ctx.started_at, 3)}
    if reasons:
        return web.json_response({**body, "reasons": reasons}, status=503)
    return web.json_response(body)


async def status(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    return web.json_response(status_body(ctx, time.time(), full=sees_full_details(request)))


async def vpn_status(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    return web.json_response({"mode": ctx.desired.vpn.mode, "vpns": vpn_views(ctx.store)})


def make_app(ctx: ApiContext, *, limits: Limits = DEFAULT_LIMITS) -> web.Application:
    app = web.Application(
        client_max_size=limits.max_body,
        # closes a connection idle, or still sending its request line and headers, this long
        # after it opened or after its last answer (aiohttp's own default is an hour)
        handler_args={"keepalive_timeout": limits.idle_timeout_s, "lingering_time": limits.linger_s},
    )
    app[CONTEXT] = ctx
    app[LIMITS] = limits
    app[ENGINES_CACHE] = {True: [None, b"[]"], False: [None, b"[]"]}
    add_get(app, "/engines", engines)
    add_get(app, "/engines/{container_id}", engine)
    add_get(app, "/health", health)
    add_get(app, "/status", status)
    add_get(app, "/vpn/status", vpn_status)
    add_proxy_routes(app, ctx)
    add_metrics(app, ctx)
    add_history_routes(app)
    add_page_routes(app)
    add_get(app, "/openapi.json", openapi_json)
    add_fallbacks(app)
    return app
