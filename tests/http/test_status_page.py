"""The status page (`/`), its live stream (`/events`), the history (`/history`,
`/history/stream`) and who may see the page, against the real app on a real port.

Off-loopback requests come from one of this machine's own non-loopback addresses (as in
test_access.py), so `request.remote` really is off loopback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from orchestrator.api.page import PAGE_PULSE, verdict
from orchestrator.api.page_auth import COOKIE
from orchestrator.api.status_view import status_body
from orchestrator.config import parse_config
from orchestrator.state.journal import StreamJournal
from orchestrator.state.store import StateStore
from reconcilers.vpn import HealthReported
from testkit.addresses import lan_address
from tests.http.conftest import SECRET, TWO_VPNS, WITH_KEY, Api, MakeApi, vpn_id


async def _pool(make_api: MakeApi, yaml_text: str = TWO_VPNS, host: str = "127.0.0.1") -> Api:
    api = await make_api(yaml_text, host=host)
    api.add_vpn("g1", forwarded_port=40000)
    api.add_vpn("g2", ip="172.20.0.3")
    api.add_engine(0, "g1", forwarded=True)
    api.add_engine(0, "g2")
    return api


async def read_event(resp: aiohttp.ClientResponse, name: str) -> str:
    """The data of the next SSE event called `name` (other events and comments skipped)."""
    async with asyncio.timeout(5.0):
        current, data = None, []
        while True:
            line = (await resp.content.readline()).decode().rstrip("\n")
            if line.startswith("event: "):
                current = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif line == "":
                if current == name:
                    return "\n".join(data)
                current, data = None, []


async def test_the_page_shows_vpns_engines_and_what_engines_serves(make_api: MakeApi) -> None:
    api = await _pool(make_api)

    resp = await api.client.get("/")
    html = await resp.text()

    assert resp.status == 200 and resp.content_type == "text/html"
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    for engine in api.store.engines.values():
        assert engine.name in html
    assert "g1" in html and "g2" in html and "40000 →" in html
    assert 'id="served-count">2<' in html
    assert "verdict ok" in html, html.split("<header", 1)[1][:300]
    assert "http://" not in html.split("<main", 1)[0]  # nothing fetched from anywhere


async def test_an_unhealthy_vpn_shows_hidden_engines_with_the_reason_live(make_api: MakeApi) -> None:
    api = await _pool(make_api)
    async with api.client.get("/events") as resp:
        assert resp.headers["Content-Type"] == "text/event-stream"
        first = await read_event(resp, "page")
        assert "verdict ok" in first

        api.store.apply_vpn("g2", HealthReported(container_id=vpn_id("g2"), health="unhealthy"), 1.0)
        update = await read_event(resp, "page")

    assert 'class="verdict degraded"' in update and "VPN g2 is unhealthy" in update
    assert "hidden" in update and "VPN g2 unhealthy" in update
    assert 'id="served-count">1<' in update
    assert "Docker `health_status: unhealthy` of g2" in update  # the trigger, in the last actions


async def test_history_filters_and_the_status_tail(make_api: MakeApi) -> None:
    api = await _pool(make_api)
    api.store.apply_vpn("g2", HealthReported(container_id=vpn_id("g2"), health="unhealthy"), 1.0)

    _, hidden = await api.get("/history", kind="hidden")
    _, on_g1 = await api.get("/history", vpn="g1")
    _, status = await api.get("/status")
    refused = await api.client.get("/history", params={"kind": "exploded"})

    assert [e["kind"] for e in hidden["entries"]] == ["hidden"]
    assert hidden["entries"][0]["reason"] == "VPN g2 unhealthy" and hidden["bound"] == 500
    assert {e["vpn"] for e in on_g1["entries"]} == {"g1"}
    assert status["history"][-1]["kind"] == "hidden"
    assert refused.status == 400


async def test_the_history_stream_resumes_after_the_last_event_id(make_api: MakeApi) -> None:
    api = await _pool(make_api)
    last = api.store.history.last_seq
    async with api.client.get("/history/stream", headers={"Last-Event-ID": str(last)}) as resp:
        api.store.record("restarted", "x", "not answering its API for 60s")
        entry: dict[str, Any] = json.loads(await read_event(resp, "entry"))
    assert entry["seq"] == last + 1 and entry["kind"] == "restarted"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data", b"key=x"),  # no boundary
        ("multipart/form-data; boundary=zz", b"key=x"),  # not the boundary it names
        ("application/x-www-form-urlencoded", b"key=\xff\xfe"),  # not UTF-8
    ],
)
async def test_a_sign_in_body_that_is_not_a_form_is_a_clear_400(
    make_api: MakeApi, content_type: str, body: bytes
) -> None:
    api = await _pool(make_api, TWO_VPNS + WITH_KEY, host=lan_address())

    async with api.client.post("/login", data=body, headers={"Content-Type": content_type}) as resp:
        status, answer = resp.status, await resp.json()

    assert status == 400 and answer["error"] == "invalid_form"
    assert "sign-in form could not be read" in answer["message"]
    assert (await api.client.get("/")).status == 401  # and nobody signed in


async def test_off_loopback_the_page_needs_the_key_and_never_shows_it(make_api: MakeApi) -> None:
    api = await _pool(make_api, TWO_VPNS + WITH_KEY, host=lan_address())

    refused = await api.client.get("/")
    stream = await api.client.get("/events")
    wrong = await api.client.post("/login", data={"key": "guess"})
    signed = await api.client.post("/login", data={"key": SECRET}, allow_redirects=False)
    cookie = signed.cookies[COOKIE]
    page = await api.client.get("/", cookies={COOKIE: cookie.value})
    bearer = await api.client.get("/", headers={"Authorization": f"Bearer {SECRET}"})
    basic = await api.client.get("/", headers={"Authorization": aiohttp.encode_basic_auth("any", SECRET)})

    assert refused.status == 401 and 'name="key"' in await refused.text()
    assert stream.status == 401
    assert wrong.status == 403
    assert signed.status == 303 and cookie["httponly"] and cookie["samesite"] == "Strict"
    assert SECRET not in cookie.value
    html = await page.text()
    assert page.status == 200 and "engines" in html and SECRET not in html
    assert bearer.status == 200 and basic.status == 200


async def test_on_loopback_the_page_needs_no_key(make_api: MakeApi) -> None:
    api = await _pool(make_api, TWO_VPNS + WITH_KEY)
    assert (await api.client.get("/")).status == 200


async def test_open_pages_are_woken_once_per_change_of_what_they_show_not_per_store_change(
    make_api: MakeApi,
) -> None:
    api = await _pool(make_api)
    pulse = api.client.app[PAGE_PULSE]
    shown = pulse.key
    computed: list[object] = []
    compared = asyncio.Event()

    def counted() -> object:
        key = shown()
        computed.append(key)
        compared.set()
        return key[:-1]  # without the time grain: the test may straddle one  # type: ignore[index]

    pulse.key = counted
    streams = [await api.client.get("/events") for _ in range(5)]
    try:
        for stream in streams:
            await read_event(stream, "page")
        moves = pulse.moves
        computed.clear()
        for _ in range(10):  # changes of the store the page does not show
            compared.clear()
            api.store.changed()
            async with asyncio.timeout(5):
                await compared.wait()
        # one comparison per change for all 5 pages (the app's own workers change the store
        # now and then too), not one per page: 50
        assert 10 <= len(computed) < 20
        assert pulse.moves == moves  # no open page woken
        api.store.apply_vpn("g2", HealthReported(container_id=vpn_id("g2"), health="unhealthy"), 1.0)
        for stream in streams:
            assert "VPN g2 is unhealthy" in await read_event(stream, "page")
    finally:
        for stream in streams:
            stream.close()


VERDICT_ROWS: list[tuple[str, dict[str, Any], str, str]] = [
    # (case, the /status fields changed, verdict, words in the reason)
    ("all_well", {}, "ok", "2 engines ready on /engines"),
    ("docker_down", {"docker": {"connected": False, "error": "socket gone"}}, "down", "socket gone"),
    (
        "none_listed_but_wanted",
        {"observed.visible": 0, "desired.min_replicas": 1},
        "down",
        "none on /engines",
    ),
    ("none_listed_none_wanted", {"observed.visible": 0, "desired.min_replicas": 0}, "ok", "0 engines"),
    ("fewer_than_wanted", {"desired.min_replicas": 3}, "degraded", "2 engines on /engines, 3 wanted"),
    (
        "a_plan_problem",
        {"problems": [{"code": "x", "message": "port clash", "vpn": None}]},
        "degraded",
        "port clash",
    ),
    (
        "edit_rejected",
        {"config.last_error": {"message": "o.yaml:3: bad"}},
        "degraded",
        "configuration edit rejected: o.yaml:3: bad",
    ),
    (
        "state_not_durable",
        {"state.durable": False, "state.error": "disk full"},
        "degraded",
        "streams kept in memory only: disk full",
    ),
]


@pytest.mark.parametrize(
    ("case", "changes", "expected", "words"), VERDICT_ROWS, ids=[r[0] for r in VERDICT_ROWS]
)
async def test_the_verdict_rules(
    make_api: MakeApi, case: str, changes: dict[str, Any], expected: str, words: str
) -> None:
    api = await _pool(make_api)
    status = status_body(api.ctx, time.time(), full=True)
    status["desired"]["min_replicas"] = 2
    for path, value in changes.items():
        *parents, leaf = path.split(".")
        target = status
        for part in parents:
            target = target[part]
        target[leaf] = value
    ctx = api.ctx
    if "state.durable" in changes:  # a state directory was given (and fails): not memory-only by choice
        ctx = dataclasses.replace(ctx, store=StateStore(journal=StreamJournal(Path("/nonexistent"))))
        ctx.store.telemetry.set_docker(connected=True)
    got, reason = verdict(ctx, status, time.time())
    assert (got, words in reason) == (expected, True), (case, reason)


async def test_streams_in_memory_by_choice_do_not_degrade_the_verdict(make_api: MakeApi) -> None:
    api = await _pool(make_api)  # no state directory configured
    status = status_body(api.ctx, time.time(), full=True)
    assert status["state"]["durable"] is False
    assert verdict(api.ctx, status, time.time())[0] == "ok"


async def test_a_new_key_signs_every_browser_out(make_api: MakeApi) -> None:
    api = await _pool(make_api, TWO_VPNS + WITH_KEY, host=lan_address())
    signed = await api.client.post("/login", data={"key": SECRET}, allow_redirects=False)
    cookie = {COOKIE: signed.cookies[COOKIE].value}
    assert (await api.client.get("/", cookies=cookie)).status == 200

    api.apply_config(parse_config(TWO_VPNS + "api: {api_key: another-key}\n", source="test.yaml", env={}))

    assert (await api.client.get("/", cookies=cookie)).status == 401
    assert (await api.client.get("/events", cookies=cookie)).status == 401


async def test_a_history_since_without_a_time_zone_is_a_400(make_api: MakeApi) -> None:
    api = await make_api()
    resp = await api.client.get("/history", params={"since": "2026-12-07T10:00:00"})
    assert resp.status == 400 and "no time zone" in (await resp.json())["message"]
    resp = await api.client.get("/history", params={"since": "2026-12-07T10:00:00Z"})
    assert resp.status == 200
