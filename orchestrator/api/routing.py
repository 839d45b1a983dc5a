"""Routes that answer in JSON and check the API key, with no application-wide middleware.

aiohttp runs an application's middlewares around every request, and once there is one it adds
a layer of its own: three coroutine layers around `GET /engines`, the request proxies make for
every stream, about 5 % of what it costs (docs/performance.md). So their two jobs are done per
route instead. Each handler is wrapped once, when it is registered (`add_get`, `add_post`): an
HTTP error or an unexpected failure is answered as JSON, and a write needs the API key
(`auth.py`). Once every route is in, `add_fallbacks` answers what no handler serves, which
aiohttp would answer in plain text: a known path asked with another method (a JSON 405 with
`Allow`) and an unknown path (a JSON 404).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Collection

import structlog
from aiohttp import web

from orchestrator.api.auth import MUTATING, SIGN_IN_PATH, check_bearer
from orchestrator.api.context import CONTEXT
from orchestrator.api.responses import json_error

log = structlog.get_logger()

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
DROPPED_HEADERS = frozenset({"content-type", "content-length"})


def add_get(app: web.Application, path: str, handler: Handler) -> None:
    """`GET path` (and HEAD, as aiohttp answers it), in JSON on error."""
    app.router.add_get(path, _in_json(handler))


def add_post(app: web.Application, path: str, handler: Handler) -> None:
    """`POST path`, which needs the API key when one is set, in JSON on error."""
    app.router.add_post(path, _in_json(_key_required(handler)))


def add_fallbacks(app: web.Application) -> None:
    """After every route: each known path answers its other methods with a JSON 405, and any
    other path is a JSON 404. Raises when a path was registered as two resources (the first
    one's 405 would hide the second one's methods)."""
    paths: set[str] = set()
    for resource in list(app.router.resources()):
        if not isinstance(resource, web.Resource):
            continue  # a sub-app or static files (the API has neither) answer for themselves
        if resource.canonical in paths:
            raise RuntimeError(f"{resource.canonical} is registered twice: add its methods together")
        paths.add(resource.canonical)
        resource.add_route("*", _in_json(_method_not_allowed({route.method for route in resource})))
    app.router.add_route("*", "/{path:.*}", _in_json(_not_found))


def is_fallback(route: web.AbstractRoute) -> bool:
    """A route `add_fallbacks` added (it serves no API operation)."""
    return route.method == "*"


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
        if key and request.method in MUTATING and request.path != SIGN_IN_PATH:
            refused = check_bearer(request.headers.get("Authorization"), key)
            if refused is not None:
                return refused
        return await handler(request)

    return key_required


def _method_not_allowed(allowed: Collection[str]) -> Handler:
    async def method_not_allowed(request: web.Request) -> web.StreamResponse:
        raise web.HTTPMethodNotAllowed(request.method, allowed)

    return method_not_allowed


async def _not_found(request: web.Request) -> web.StreamResponse:
    raise web.HTTPNotFound()
