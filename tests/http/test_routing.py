"""Every route answers its errors in JSON without app-wide middlewares (routing.py): a handler's
HTTP error and its unexpected failure, with no traceback leaked, and a path registered twice is
refused when the routes are put together."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from orchestrator.api.routing import add_fallbacks, add_get

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


def test_a_path_registered_as_two_resources_is_refused() -> None:
    """The first resource's 405 would answer the second one's methods."""
    app = web.Application()
    add_get(app, "/twice", answers)
    add_get(app, "/other", answers)
    app.router.add_post("/twice", answers)  # not next to its GET: aiohttp makes a second resource

    with pytest.raises(RuntimeError, match="/twice is registered twice"):
        add_fallbacks(app)
