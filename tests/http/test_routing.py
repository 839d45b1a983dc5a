"""Every route answers its errors in JSON without app-wide middlewares (routing.py): a handler's
HTTP error and its unexpected failure, with no traceback leaked; whatever no route serves is a
JSON 405 or 404, overlapping patterns included; and no route can be added behind the
fallbacks."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from orchestrator.api.context import CONTEXT, ApiContext
from orchestrator.api.routing import add_fallbacks, add_get, add_post

Client = TestClient[web.Request, web.Application]
PRIVATE_DETAIL = "the handler's own words, never sent"


async def fails(_: web.Request) -> web.Response:
    raise RuntimeError(PRIVATE_DETAIL)


async def refuses(_: web.Request) -> web.Response:
    raise web.HTTPConflict(text="plain text from aiohttp")


async def answers(_: web.Request) -> web.Response:
    return web.json_response({"ok": True})


@pytest.fixture
async def client(aiohttp_client: Any) -> Client:
    app = web.Application()
    add_get(app, "/fails", fails)
    add_get(app, "/refuses", refuses)
    add_get(app, "/answers", answers)
    add_fallbacks(app)
    made: Client = await aiohttp_client(app)
    return made


async def test_an_unexpected_failure_is_a_json_500_without_its_details(client: Client) -> None:
    async with client.get("/fails") as resp:
        status, content_type, text = resp.status, resp.content_type, await resp.text()

    assert status == 500 and content_type == "application/json"
    assert '"error": "internal_error"' in text
    assert PRIVATE_DETAIL not in text and "Traceback" not in text


async def test_an_http_error_raised_by_a_handler_is_answered_in_json(client: Client) -> None:
    async with client.get("/refuses") as resp:
        status, body = resp.status, await resp.json()

    assert status == 409 and body["error"] == "conflict"
    assert body["message"] == "Conflict: GET /refuses"


async def test_fallbacks_leave_the_routes_they_sit_behind_alone(client: Client) -> None:
    async with client.get("/answers") as resp:
        assert resp.status == 200 and await resp.json() == {"ok": True}
    async with client.delete("/answers") as resp:
        assert resp.status == 405 and resp.headers["Allow"] == "GET,HEAD"
    async with client.get("/answers/more") as resp:
        assert resp.status == 404 and (await resp.json())["error"] == "not_found"


@pytest.mark.parametrize("path", ["/answers%0A", "/%0A", "/a%0Ab", "/%0D%0A"])
async def test_a_path_with_a_line_break_is_a_json_404(client: Client, path: str) -> None:
    """aiohttp decodes the path before matching it: a pattern's `.` matches no newline."""
    async with client.get(path) as resp:
        assert resp.status == 404 and resp.content_type == "application/json"


async def test_routes_whose_paths_overlap_are_each_served_and_counted_in_allow(aiohttp_client: Any) -> None:
    """Two patterns can match one path: each route is still reached, and a 405 names the methods
    of both (as aiohttp's router counts them)."""
    app = web.Application()
    no_key = SimpleNamespace(config=SimpleNamespace(api=SimpleNamespace(api_key=None)))
    app[CONTEXT] = cast(ApiContext, no_key)  # all a write's key check reads
    add_get(app, "/items/{item_id}", answers)
    add_get(app, "/other", answers)
    add_post(app, "/items/{name}", answers)
    add_fallbacks(app)
    client: Client = await aiohttp_client(app)

    async with client.post("/items/abc") as resp:
        assert resp.status == 200
    async with client.put("/items/abc") as resp:
        assert resp.status == 405 and resp.headers["Allow"] == "GET,HEAD,POST"


def test_no_route_can_be_added_behind_the_fallbacks() -> None:
    app = web.Application()
    add_get(app, "/answers", answers)
    add_fallbacks(app)

    with pytest.raises(RuntimeError, match="frozen"):
        add_get(app, "/late", answers)
