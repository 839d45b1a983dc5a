"""Bad bodies come back as 4xx JSON naming the problem: never a 500, never a state change."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.http.conftest import Api, MakeApi, started_body

GOOD = started_body("acestream-engine-0", 6878)


def mutated(path: str, value: Any) -> dict[str, Any]:
    """GOOD with `path` (dotted) set to `value`, or removed when value is ...."""
    body = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node = body
    for part in parents:
        node = node[part]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return body


def assert_untouched(api: Api) -> None:
    assert not api.store.demand.streams.active and not api.store.demand.streams.ended
    assert api.store.demand.demand_until is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (mutated("engine.port", "6878"), "engine.port"),
        (mutated("engine.port", 6878.5), "engine.port"),
        (mutated("engine.port", True), "engine.port"),
        (mutated("engine.port", 0), "engine.port"),
        (mutated("engine.port", 70000), "engine.port"),
        (mutated("engine.port", ...), "engine.port"),
        (mutated("engine.host", 5), "engine.host"),
        (mutated("engine.host", ""), "engine.host"),
        (mutated("engine", ...), "engine"),
        (mutated("engine", "acestream-engine-0:6878"), "engine"),
        (mutated("stream", ...), "stream"),
        (mutated("stream", []), "stream"),
        (mutated("stream.key", ""), "stream.key"),
        (mutated("stream.key", None), "stream.key"),
        (mutated("stream.key_type", 1), "stream.key_type"),
        (mutated("session", "x"), "session"),
        (mutated("session.is_live", 2), "session.is_live"),
        (mutated("session.is_live", "1"), "session.is_live"),
        (mutated("labels", ["stream_id"]), "labels"),
        (mutated("labels.stream_id", 7), "labels.stream_id"),
        (mutated("container_id", 12), "container_id"),
        ([GOOD], None),
        ("just a string", None),
    ],
)
async def test_stream_started_bad_types(make_api: MakeApi, body: Any, field: str | None) -> None:
    api = await make_api()
    api.add_engine(0)

    status, answer = await api.post("/events/stream_started", body)

    assert status == 422, answer
    assert answer["error"] == "invalid_body" and answer["field"] == field
    if field:
        assert field in answer["message"]
    assert_untouched(api)


@pytest.mark.parametrize(
    "body",
    [
        mutated("session.stat_url", None),
        mutated("session", ...),
        mutated("session.is_live", True),
        mutated("session.is_live", 1.0),
        mutated("engine.port", 6878.0),  # JSON Schema's integer, as the OpenAPI document says
        mutated("container_id", ...),
        mutated("labels", {}),
    ],
)
async def test_stream_started_optional_parts(make_api: MakeApi, body: dict[str, Any]) -> None:
    api = await make_api()
    api.add_engine(0)

    status, _ = await api.post("/events/stream_started", body)

    assert status == 200 and len(api.store.demand.streams.active) == 1


@pytest.mark.parametrize("path", ["/events/stream_started", "/events/stream_ended"])
@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"", "invalid_json"),
        (b"   ", "invalid_json"),
        (b"{", "invalid_json"),
        (b"{'engine': 1}", "invalid_json"),
        (b'{"stream_id": NaN}', "invalid_json"),
        (b"\xff\xfe{}", "invalid_json"),
        (b"[" * 50_000, "invalid_json"),  # too deep for the decoder: still a clean 400
    ],
)
async def test_malformed_json_is_400(make_api: MakeApi, path: str, raw: bytes, code: str) -> None:
    api = await make_api()
    api.add_engine(0)

    status, answer = await api.post(path, raw=raw, headers={"Content-Type": "application/json"})

    assert status == 400 and answer["error"] == code
    assert_untouched(api)


@pytest.mark.parametrize("path", ["/events/stream_started", "/events/stream_ended"])
async def test_oversized_body_is_json_413(make_api: MakeApi, path: str) -> None:
    api = await make_api()
    api.add_engine(0)
    body = {**GOOD, "padding": "x" * (70 * 1024)}

    status, answer = await api.post(path, raw=json.dumps(body).encode())

    assert status == 413 and answer["error"] == "body_too_large"
    assert_untouched(api)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "stream_id"),
        ({"stream_id": ""}, "stream_id"),
        ({"stream_id": 5, "reason": "x"}, "stream_id"),
        ({"stream_id": "a|b", "reason": 5}, "reason"),
        ({"stream_id": "a|b", "container_id": ["x"]}, "container_id"),
        (["a|b"], None),
    ],
)
async def test_stream_ended_bad_types(make_api: MakeApi, body: Any, field: str | None) -> None:
    api = await make_api()
    engine = api.add_engine(0)
    await api.post("/events/stream_started", started_body(engine.name, 6878, stream_id="a|b"))

    status, answer = await api.post("/events/stream_ended", body)

    assert status == 422 and answer["field"] == field
    assert list(api.store.demand.streams.active) == ["a|b"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"labels": []}, 422, "invalid_body"),
        ({"labels": {"a": 1}}, 422, "invalid_body"),
        ({"env": {"A": None}}, 422, "invalid_body"),
        ({"env": "A=1"}, 422, "invalid_body"),
        ([], 422, "invalid_body"),
    ],
)
async def test_provision_bad_body_uses_the_detail_shape(
    make_api: MakeApi, body: Any, status: int, code: str
) -> None:
    api = await make_api()

    got, answer = await api.post("/provision/acestream", body)

    assert got == status
    assert answer["detail"]["code"] == code and answer["detail"]["should_wait"] is False
    assert api.store.demand.demand_until is None


HUGE = b'{"labels": {}, "x": "' + b"y" * 70_000 + b'"}'


@pytest.mark.parametrize(("raw", "status"), [(b"{", 400), (HUGE, 413)])
async def test_provision_malformed_or_huge(make_api: MakeApi, raw: bytes, status: int) -> None:
    api = await make_api()

    got, answer = await api.post("/provision/acestream", raw=raw)

    assert got == status and set(answer["detail"]) == {
        "error",
        "code",
        "message",
        "recovery_eta_seconds",
        "can_retry",
        "should_wait",
    }
    assert api.store.demand.demand_until is None


async def test_provision_accepts_an_empty_body(make_api: MakeApi) -> None:
    api = await make_api()
    api.add_engine(0)

    status, _ = await api.post("/provision/acestream", raw=b"")

    assert status == 200


@pytest.mark.parametrize("status", ["active", "STARTED", "1"])
async def test_streams_bad_status_is_400(make_api: MakeApi, status: str) -> None:
    api = await make_api()

    got, answer = await api.get("/streams", status=status)

    assert got == 400 and answer["field"] == "status"


async def test_unknown_route_and_wrong_method_are_json(make_api: MakeApi) -> None:
    api = await make_api()

    missing = await api.get("/nope")
    wrong = await api.get("/events/stream_started")
    post_missing = await api.post("/nope", {}, key=None)

    assert missing[0] == 404 and post_missing[0] == 404 and wrong[0] == 405
    assert {missing[1]["error"], wrong[1]["error"]} == {"not_found", "method_not_allowed"}
