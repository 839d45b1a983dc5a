"""The API key matrix: every mutating route, every way of (not) sending the key; reads stay open."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from orchestrator.api.page_auth import LOGIN_PATH
from orchestrator.api.routing import is_fallback
from orchestrator.config import ApiConfig
from tests.http.conftest import NO_VPN, SECRET, WITH_KEY, Api, MakeApi, started_body

MISSING = None


def bodies(api: Api) -> dict[str, dict[str, Any]]:
    engine = api.add_engine(0)
    return {
        "/events/stream_started": started_body(engine.name, 6878, stream_id="s1"),
        "/events/stream_ended": {"stream_id": "s1", "reason": "completed"},
        "/provision/acestream": {"labels": {}, "env": {}},
    }


POST_ROUTES = ["/events/stream_started", "/events/stream_ended", "/provision/acestream"]
GET_ROUTES = [
    "/engines",
    "/streams",
    "/health",
    "/status",
    "/vpn/status",
    "/orchestrator/status",
    "/openapi.json",
]


async def test_every_write_route_is_in_the_key_matrix(make_api: MakeApi) -> None:
    """The key check is put on each write route where it is added (routing.add_post): a route
    that is not a read must be one the matrix below asks without a key (the sign-in form
    checks the key itself: test_status_page.py)."""
    api = await make_api(NO_VPN + WITH_KEY)
    writes = {
        route.resource.canonical
        for route in api.client.app.router.routes()
        if route.method not in ("GET", "HEAD") and route.resource is not None and not is_fallback(route)
    }

    assert writes == {*POST_ROUTES, LOGIN_PATH}


@pytest.mark.parametrize("path", POST_ROUTES)
@pytest.mark.parametrize(
    ("header", "status", "code"),
    [
        (MISSING, 401, "unauthorized"),
        ("", 401, "unauthorized"),
        (SECRET, 401, "unauthorized"),  # no scheme
        (f"Basic {SECRET}", 401, "unauthorized"),
        ("Bearer", 401, "unauthorized"),
        ("Bearer ", 401, "unauthorized"),
        (f"Bearer {SECRET} extra", 401, "unauthorized"),
        ("Bearer wrong-key", 403, "forbidden"),
        (f"Bearer {SECRET}x", 403, "forbidden"),
        (f"Bearer {SECRET.upper()}", 403, "forbidden"),
        ("Bearer ключ", 403, "forbidden"),
    ],
)
async def test_refused(make_api: MakeApi, path: str, header: str | None, status: int, code: str) -> None:
    api = await make_api(NO_VPN + WITH_KEY)
    body = bodies(api)[path]
    headers = {} if header is None else {"Authorization": header}

    got, answer = await api.post(path, body, key=None, headers=headers)

    assert got == status and answer["error"] == code and answer["message"]
    assert answer["detail"]["should_wait"] is False  # proxies decoding `detail` do not wait
    assert not api.store.demand.streams.active and api.store.demand.demand_until is None


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
async def test_right_key_passes_on_every_route(make_api: MakeApi, scheme: str) -> None:
    api = await make_api(NO_VPN + WITH_KEY)
    sent = bodies(api)
    headers = {"Authorization": f"{scheme} {SECRET}"}

    statuses = [(await api.post(path, sent[path], key=None, headers=headers))[0] for path in POST_ROUTES]

    assert statuses == [200, 200, 200]


async def test_no_key_configured_needs_no_header(make_api: MakeApi) -> None:
    api = await make_api(NO_VPN)
    sent = bodies(api)

    statuses = [(await api.post(path, sent[path], key=None))[0] for path in POST_ROUTES]
    with_any_header = await api.post("/events/stream_ended", {"stream_id": "zz"}, key="whatever")

    assert statuses == [200, 200, 200]
    assert with_any_header[0] == 404  # the key is ignored, the stream is simply unknown


@pytest.mark.parametrize("path", GET_ROUTES)
async def test_reads_stay_open(make_api: MakeApi, path: str) -> None:
    api = await make_api(NO_VPN + WITH_KEY)

    status, _ = await api.get(path)

    assert status == 200


async def test_metrics_stays_open(make_api: MakeApi) -> None:
    api = await make_api(NO_VPN + WITH_KEY)

    resp = await api.client.get("/metrics")

    assert resp.status == 200


async def test_key_is_read_at_request_time(make_api: MakeApi) -> None:
    api = await make_api(NO_VPN)
    api.add_engine(0)
    api.add_engine(1)
    assert (await api.post("/provision/acestream", {}, key=None))[0] == 200

    api.apply_config(dataclasses.replace(api.config, api=ApiConfig(api_key="new-key")))

    assert (await api.post("/provision/acestream", {}, key=None))[0] == 401
    assert (await api.post("/provision/acestream", {}, key="new-key"))[0] == 200
