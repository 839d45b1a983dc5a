"""Who sees a stream's engine commands: loopback callers and holders of the API key only.

The app is served on one of this machine's non-loopback addresses, so a request really comes
from off loopback (`request.remote` is that address); the same requests over loopback see
everything. What acexy reads of `GET /streams?container_id=ID&status=started` (the list length
and each item's `status`) is in every view. Reads are never refused for a missing or wrong key.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from reconcilers import plan
from reconcilers.stalls import StatSample
from testkit.addresses import lan_address
from tests.http.conftest import NO_VPN, SECRET, WITH_KEY, Api, MakeApi, started_body

PRIVATE = {"id", "key", "playback_session_id", "stat_url", "command_url"}
OPEN = "api: {host: 0.0.0.0, allow_unauthenticated: true}\n"


async def with_stream(make_api: MakeApi, yaml_text: str, host: str) -> tuple[Api, str]:
    """An app served on `host` with one engine carrying one stream (reported with the key)."""
    api = await make_api(yaml_text, host=host)
    engine = api.add_engine(0)
    status, _ = await api.post("/events/stream_started", started_body(engine.name, 6878, session="sess-9"))
    assert status == 200
    return api, engine.container_id


async def get(api: Api, path: str, key: str | None = None, **params: str) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    resp = await api.client.get(path, params=params, headers=headers)
    assert resp.status == 200 and resp.content_type == "application/json", await resp.text()
    return await resp.json()


def assert_narrowed(item: dict[str, Any], container_id: str) -> None:
    assert not PRIVATE & set(item), item
    assert item["redacted"] is True
    assert item["status"] == "started" and item["container_id"] == container_id


@pytest.mark.parametrize("key", [None, "wrong-key", ""])
async def test_off_loopback_without_the_key_sees_no_commands(make_api: MakeApi, key: str | None) -> None:
    api, cid = await with_stream(make_api, NO_VPN + WITH_KEY, lan_address())

    acexy_view = await get(api, "/streams", key, container_id=cid, status="started")
    listing = await get(api, "/streams", key)
    engines = await get(api, "/engines", key)
    detail = await get(api, f"/engines/{cid}", key)

    assert len(acexy_view) == 1 and acexy_view[0]["status"] == "started"  # all acexy reads
    for item in (*acexy_view, *listing, *detail["stream_details"]):
        assert_narrowed(item, cid)
    assert engines[0]["streams"] == [] and engines[0]["stream_count"] == 1
    assert detail["streams"] == []
    body = str([acexy_view, listing, engines, detail])
    assert "sess-9" not in body and "/ace/cmd/" not in body and "/ace/stat/" not in body


async def test_off_loopback_with_the_key_sees_everything(make_api: MakeApi) -> None:
    api, cid = await with_stream(make_api, NO_VPN + WITH_KEY, lan_address())

    listing = await get(api, "/streams", SECRET, container_id=cid, status="started")
    engines = await get(api, "/engines", SECRET)
    detail = await get(api, f"/engines/{cid}", SECRET)

    assert listing[0]["playback_session_id"] == "sess-9" and "/ace/cmd/" in listing[0]["command_url"]
    assert "redacted" not in listing[0]
    assert engines[0]["streams"] == [listing[0]["id"]]
    assert detail["stream_details"][0]["command_url"] == listing[0]["command_url"]


async def test_the_two_views_of_engines_do_not_share_a_cache(make_api: MakeApi) -> None:
    api, _ = await with_stream(make_api, NO_VPN + WITH_KEY, lan_address())

    full = await get(api, "/engines", SECRET)
    narrowed = await get(api, "/engines", None)
    full_again = await get(api, "/engines", SECRET)

    assert full[0]["streams"] and narrowed[0]["streams"] == [] and full_again == full


@pytest.mark.parametrize("yaml_text", [NO_VPN, NO_VPN + WITH_KEY])
async def test_loopback_callers_see_everything_without_the_key(make_api: MakeApi, yaml_text: str) -> None:
    api, cid = await with_stream(make_api, yaml_text, "127.0.0.1")

    listing = await get(api, "/streams", None, container_id=cid, status="started")

    assert listing[0]["playback_session_id"] == "sess-9" and listing[0]["command_url"]


async def test_open_api_lets_remote_callers_write_but_not_see_commands(make_api: MakeApi) -> None:
    api = await make_api(NO_VPN + OPEN, host=lan_address())
    engine = api.add_engine(0)

    status, started = await api.post(
        "/events/stream_started", started_body(engine.name, 6878, session="sess-7"), key=None
    )
    listing = await get(api, "/streams", None)
    status_ended, ended = await api.post(
        "/events/stream_ended", {"stream_id": "a1b2c3|sess-7", "reason": "done"}, key=None
    )

    assert status == 200 and status_ended == 200  # allow_unauthenticated: true, as asked
    assert_narrowed(started, engine.container_id)
    assert_narrowed(listing[0], engine.container_id)
    assert not PRIVATE & set(ended) and ended["status"] == "ended"


async def stalled_plan(api: Api, container_id: str) -> None:
    """The engine's one stream made no progress for a minute, and the planner said so."""
    now = time.time()
    still = {"a1b2c3|sess-9": StatSample(peers=0, speed_down=0, downloaded=1000)}
    for ago in (70, 40, 10):
        api.store.record_progress(still, now - ago, api.desired.engines.stall_after_s, 120.0)
    assert container_id in api.store.stalled_engines
    api.store.telemetry.record_plan(plan(api.desired, api.store.observed(now), now), now, 0.0)


@pytest.mark.parametrize(
    ("host", "key", "sees_ids"), [(None, None, False), (None, SECRET, True), ("lo", None, True)]
)
async def test_status_names_stalled_streams_only_to_those_who_see_stream_details(
    make_api: MakeApi, host: str | None, key: str | None, sees_ids: bool
) -> None:
    api, cid = await with_stream(make_api, NO_VPN + WITH_KEY, "127.0.0.1" if host else lan_address())
    await stalled_plan(api, cid)

    status = await get(api, "/status", key)

    (stalled,) = [p for p in status["problems"] if p["code"] == "engine_stalled"]
    assert ("streams" in stalled) is sees_ids
    assert ("sess-9" in str(status)) is sees_ids
