"""Routes that answer in JSON and check the API key, with no application-wide middleware.

aiohttp runs an application's middlewares around every request, and once there is one it adds
a layer of its own: three coroutine layers around `GET /engines`, the request proxies make for
every stream, about 5 % of what it costs (docs/performance.md). So their two jobs are done per
route instead. Each handler is wrapped once, when it is registered (`add_get`, `add_post`): an
HTTP error or an unexpected failure is answered as JSON, and a write needs the API key
(`auth.py`). Once every route is in, `add_fallbacks` answers what no handler serves, which
aiohttp would answer in plain text: a known path asked with another method (a JSON 405 with
`Allow`, the methods of every route whose path matches, as aiohttp's router counts them) and an
unknown path (a JSON 404); and it freezes the router, so that no route can be added behind it.
Only a request target that is not a path at all (`OPTIONS *`, `CONNECT host:443`) still gets
aiohttp's plain-text 404: no route can match it.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from orchestrator.api.auth import check_bearer
from orchestrator.api.context import CONTEXT
from orchestrator.api.responses import json_error

log = structlog.get_logger()

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
DROPPED_HEADERS = frozenset({"content-type", "content-length"})
FALLBACK = "fallback"  # the catch-all route's name


def add_get(app: web.Application, path: str, handler: Handler) -> None:
    """`GET path` (and HEAD, as aiohttp answers it), in JSON on error."""
    app.router.add_get(path, _in_json(handler))


def add_post(app: web.Application, path: str, handler: Handler, *, needs_key: bool = True) -> None:
    """`POST path`, which needs the API key when one is set (unless not `needs_key`: the status
    page's sign-in form, which checks the key itself), in JSON on error."""
    app.router.add_post(path, _in_json(_key_required(handler) if needs_key else handler))


def add_fallbacks(app: web.Application) -> None:
    """After every route: a JSON 405 or 404 for whatever no route serves; then no more routes."""
    app.router.add_route("*", r"/{path:[\s\S]*}", _in_json(_no_route), name=FALLBACK)
    app.router.freeze()


def is_fallback(route: web.AbstractRoute) -> bool:
    """The route `add_fallbacks` added (it serves no API operation)."""
    return route.resource is not None and route.resource.name == FALLBACK


def _in_json(handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def in_json(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.content_type == "application/json":
                raise
            kept = {k: v for k, v in exc.headers.items() if k.lower() not in DROPPED_HEADERS}  # Allow
            return json_error(
                exc.status,
                exc.reason.lower().replace(" ", "_"),
                f"{exc.reason}: {request.method} {request.path}",
                headers=kept,
            )
        except Exception:
            log.exception("http_handler_failed", path=request.path, method=request.method)
            return json_error(500, "internal_error", "unexpected error; see the daemon's log")

    return in_json


def _key_required(handler: Handler) -> Handler:
    """The key is read on every request, so a reloaded configuration applies at once."""

    @functools.wraps(handler)
    async def key_required(request: web.Request) -> web.StreamResponse:
        key = request.app[CONTEXT].config.api.api_key
        if key:
            refused = check_bearer(request.headers.get("Authorization"), key)
            if refused is not None:
                return refused
        return await handler(request)

    return key_required


async def _no_route(request: web.Request) -> web.StreamResponse:
    """The router found no route for this method and path (it reached the catch-all): 405 when
    another method is served at the path, else 404."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource.name != FALLBACK:
            allowed |= (await resource.resolve(request))[1]
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()
