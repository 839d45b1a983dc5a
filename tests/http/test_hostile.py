"""Hostile HTTP input: every refused request is answered at once (or its connection closed within
a bound), in the project's JSON error shape, and changes nothing in the store.

Each case runs against a seeded store (a healthy VPN, an engine carrying a stream, a free one) in
which the same request, accepted, would change something: a valid `stream_ended` body ends the
stream, a valid provisioning call hands out the free engine. "Nothing changed" compares a
snapshot of the store's read-only views (streams, demand, reservations, engines, VPNs, version)
taken before with one taken after.

What is accepted on a POST (see `orchestrator/api/json_body.py`): a body of at most 64 KiB,
received within `body_timeout_s`, sent as `Content-Type: application/json` (any case, no charset
or `charset=utf-8`) in UTF-8; an empty body only on `/provision/acestream`, whatever its type.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from multidict import CIMultiDictProxy

from orchestrator.api.json_body import DEFAULT_LIMITS, Limits
from tests.http.conftest import ONE_VPN, SECRET, WITH_KEY, Api, MakeApi, snapshot, started_body

KEYED = ONE_VPN + WITH_KEY
FAST = Limits(body_timeout_s=0.3, idle_timeout_s=0.5, linger_s=0.2)
BOUND_S = 5.0  # an answer or a close must come well within this
LIVE = "live|sess-1"
PORT = 19000  # the HTTP port of the engine carrying LIVE (slot 0 of port_range 19000-19299)
STARTED = "/events/stream_started"
ENDED = "/events/stream_ended"
PROVISION = "/provision/acestream"
POSTS = (STARTED, ENDED, PROVISION)
DETAIL_KEYS = {"error", "code", "message", "recovery_eta_seconds", "can_retry", "should_wait"}
GET_ROUTES = (
    "/engines",
    "/engines/acestream-gluetun-0",
    "/health",
    "/status",
    "/vpn/status",
    "/streams",
    "/orchestrator/status",
    "/metrics",
    "/openapi.json",
)
LIMIT = DEFAULT_LIMITS.max_body


async def seeded(make_api: MakeApi, limits: Limits = DEFAULT_LIMITS) -> Api:
    api = await make_api(KEYED, limits=limits)
    api.add_vpn("gluetun", forwarded_port=40000)
    busy = api.add_engine(0, "gluetun", forwarded=True)
    api.add_engine(1, "gluetun")  # free: an accepted provisioning call would hand it out
    assert busy.ports.http == PORT, "the port layout changed: update PORT"
    status, _ = await api.post(STARTED, started_body("gluetun", PORT, stream_id=LIVE))
    assert status == 200
    return api


def valid_body(path: str) -> dict[str, Any]:
    """A body the route accepts, and that changes the seeded store when accepted."""
    if path == STARTED:
        return started_body("gluetun", PORT, stream_id="other|sess-2")
    if path == ENDED:
        return {"stream_id": LIVE, "reason": "hostile"}
    return {"labels": {}, "env": {}}


def padded(path: str, size: int) -> bytes:
    """`valid_body(path)` with an ignored field padding it to exactly `size` bytes."""
    body = valid_body(path)
    empty = len(json.dumps({**body, "padding": ""}).encode())
    raw = json.dumps({**body, "padding": "x" * (size - empty)}).encode()
    assert len(raw) == size
    return raw


async def send(
    api: Api,
    method: str,
    path: str,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    *,
    content_type: str | None = "application/json",
) -> tuple[int, CIMultiDictProxy[str], bytes]:
    """One request with the API key; `content_type=None` sends no Content-Type at all."""
    sent = {"Authorization": f"Bearer {SECRET}", **(headers or {})}
    if content_type is not None:
        sent["Content-Type"] = content_type
    async with api.client.request(
        method, path, data=raw, headers=sent, skip_auto_headers=["Content-Type"]
    ) as resp:
        return resp.status, resp.headers, await resp.read()


def assert_json_error(path: str, headers: CIMultiDictProxy[str], body: bytes) -> dict[str, Any]:
    """The project's error shape: `{error, message}`, or `{detail: {...}}` on provisioning."""
    assert headers["Content-Type"].startswith("application/json"), body[:200]
    doc = json.loads(body)
    assert isinstance(doc, dict)
    if path == PROVISION:
        assert set(doc["detail"]) == DETAIL_KEYS and doc["detail"]["should_wait"] is False
        return dict(doc["detail"])
    assert isinstance(doc["error"], str) and isinstance(doc["message"], str), doc
    return doc


# -- sizes -----------------------------------------------------------------------------------
async def chunks(raw: bytes, size: int = 8192) -> AsyncIterator[bytes]:
    for start in range(0, len(raw), size):
        yield raw[start : start + size]


@pytest.mark.parametrize("path", POSTS)
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_body_over_64_kib_is_413(make_api: MakeApi, path: str, framing: str) -> None:
    api = await seeded(make_api)
    raw = padded(path, LIMIT + 1)
    before = snapshot(api.store)

    sent = {"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"}
    data: Any = raw if framing == "content-length" else chunks(raw)
    async with api.client.post(path, data=data, headers=sent) as resp:
        status, headers, body = resp.status, resp.headers, await resp.read()

    assert status == 413
    assert assert_json_error(path, headers, body)["error"] == "body_too_large"
    assert snapshot(api.store) == before


@pytest.mark.parametrize("path", POSTS)
async def test_a_body_of_exactly_64_kib_is_read(make_api: MakeApi, path: str) -> None:
    api = await seeded(make_api)

    status, _, body = await send(api, "POST", path, padded(path, LIMIT))

    assert status in (200, 503), body[:200]  # accepted: the limit is "more than 64 KiB"


async def test_a_gzip_bomb_is_413(make_api: MakeApi) -> None:
    api = await seeded(make_api)
    bomb = gzip.compress(b'{"stream_id": "' + b"x" * 4_000_000 + b'"}')
    assert len(bomb) < LIMIT
    before = snapshot(api.store)

    status, headers, body = await send(api, "POST", ENDED, bomb, {"Content-Encoding": "gzip"})

    assert status == 413 and assert_json_error(ENDED, headers, body)["error"] == "body_too_large"
    assert snapshot(api.store) == before


async def test_a_huge_content_length_is_refused_before_reading(make_api: MakeApi) -> None:
    api = await seeded(make_api, FAST)
    before = snapshot(api.store)
    head = (
        f"POST {ENDED} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SECRET}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n"
    )

    async with raw_connection(api) as (reader, writer):
        writer.write(head.encode())
        answer = await asyncio.wait_for(reader.read(65536), BOUND_S)  # no body sent: answered anyway
        rest = await asyncio.wait_for(reader.read(), BOUND_S)  # then closed, the body unread

    assert answer.startswith(b"HTTP/1.1 413 ") and b'"body_too_large"' in answer + rest
    assert snapshot(api.store) == before


# -- nesting -----------------------------------------------------------------------------------
DEEP = 30_000  # far past the decoder's recursion limit, and still under 64 KiB


@pytest.mark.parametrize("path", POSTS)
@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"[" * DEEP + b"]" * DEEP, 400),
        (b'{"a":' * (DEEP // 5) + b"1" + b"}" * (DEEP // 5), 400),
        (b"[" * 60_000, 400),  # never closed
        (b'{"stream_id": "x", "reason": ' + b"[" * DEEP + b"]" * DEEP + b"}", 400),
        (b'{"labels": {"stream_id": ' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}}", 400),
        (b'{"stream_id": %b, "engine": %b, "labels": %b}' % ((b"[" * 200 + b"]" * 200,) * 3), 422),
    ],
    ids=["arrays", "objects", "unclosed", "deep-field", "deep-label", "nested-but-parsable"],
)
async def test_deep_nesting_is_a_clean_4xx(make_api: MakeApi, path: str, raw: bytes, status: int) -> None:
    api = await seeded(make_api)
    assert len(raw) <= LIMIT
    before = snapshot(api.store)

    got, headers, body = await send(api, "POST", path, raw)

    assert got == status, body[:300]
    assert_json_error(path, headers, body)
    assert snapshot(api.store) == before
    assert (await api.get("/health"))[0] == 200


# -- Content-Type ------------------------------------------------------------------------------
ACCEPTED_TYPES = ["application/json", "application/json; charset=utf-8", "Application/JSON; Charset=UTF-8"]
REFUSED_TYPES = [
    None,
    "",
    "text/plain",
    "text/plain; charset=utf-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/octet-stream",
    "application/json; charset=latin-1",
    "application/jsonx",
    "application/problem+json",
    "text/json",
]


@pytest.mark.parametrize("path", POSTS)
@pytest.mark.parametrize("content_type", REFUSED_TYPES)
async def test_a_body_not_sent_as_json_is_415(make_api: MakeApi, path: str, content_type: str | None) -> None:
    api = await seeded(make_api)
    before = snapshot(api.store)

    status, headers, body = await send(
        api, "POST", path, json.dumps(valid_body(path)).encode(), content_type=content_type
    )

    assert status == 415, body[:200]
    assert assert_json_error(path, headers, body)["error"] == "unsupported_media_type"
    assert snapshot(api.store) == before


@pytest.mark.parametrize("content_type", ACCEPTED_TYPES)
async def test_json_is_accepted_in_any_case_and_with_utf8(make_api: MakeApi, content_type: str) -> None:
    api = await seeded(make_api)

    status, _, body = await send(
        api, "POST", ENDED, json.dumps(valid_body(ENDED)).encode(), content_type=content_type
    )

    assert status == 200, body[:200]
    assert LIVE not in api.store.demand.streams.active


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/octet-stream"])
async def test_an_empty_provisioning_body_is_accepted_whatever_its_type(
    make_api: MakeApi, content_type: str | None
) -> None:
    api = await seeded(make_api)

    status, _, body = await send(api, "POST", PROVISION, b"", content_type=content_type)

    assert status == 200, body[:200]
    assert api.store.demand.held_engines(time.time())  # handed out


@pytest.mark.parametrize("path", [STARTED, ENDED])
@pytest.mark.parametrize("content_type", [None, "text/plain"])
async def test_an_empty_event_body_is_400(make_api: MakeApi, path: str, content_type: str | None) -> None:
    api = await seeded(make_api)
    before = snapshot(api.store)

    status, headers, body = await send(api, "POST", path, b"", content_type=content_type)

    assert status == 400 and assert_json_error(path, headers, body)["error"] == "invalid_json"
    assert snapshot(api.store) == before


# -- bytes and characters ------------------------------------------------------------------
@pytest.mark.parametrize("path", POSTS)
@pytest.mark.parametrize(
    "raw",
    [
        b'{"stream_id": "\xff"}',
        b'{"stream_id": "caf\xe9"}',  # Latin-1
        b'{"stream_id": "\xc0\xaf"}',  # overlong
        b'{"stream_id": "\xed\xa0\x80"}',  # an encoded surrogate (CESU-8)
        b"\xef\xbb\xbf" + json.dumps({"stream_id": LIVE}).encode(),  # UTF-8 BOM
        json.dumps({"stream_id": LIVE}).encode("utf-16"),
        json.dumps({"stream_id": LIVE}).encode("utf-32-le"),
    ],
    ids=["ff", "latin1", "overlong", "cesu8", "bom", "utf16", "utf32"],
)
async def test_a_body_not_in_utf8_is_400(make_api: MakeApi, path: str, raw: bytes) -> None:
    api = await seeded(make_api)
    before = snapshot(api.store)

    status, headers, body = await send(api, "POST", path, raw)

    assert status == 400 and assert_json_error(path, headers, body)["error"] == "invalid_json", body[:300]
    assert snapshot(api.store) == before


def with_field(path: str, dotted: str, value: Any) -> bytes:
    body = valid_body(path)
    *parents, last = dotted.split(".")
    node = body
    for part in parents:
        node = node[part]
    node[last] = value
    return json.dumps(body).encode()  # a lone surrogate goes out as the escape "\\ud800"


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        (STARTED, with_field(STARTED, "stream.key", "a\ud800")),
        (STARTED, with_field(STARTED, "labels.stream_id", "\udfff|x")),
        (STARTED, with_field(STARTED, "labels", {"\udc00": "x"})),
        (ENDED, with_field(ENDED, "stream_id", LIVE + "\ud800")),
        (ENDED, with_field(ENDED, "reason", "\ud800")),
        (PROVISION, with_field(PROVISION, "env", {"A": "\udc00"})),
        (PROVISION, with_field(PROVISION, "labels", {"\ud800": "x"})),
    ],
)
async def test_a_lone_surrogate_is_422(make_api: MakeApi, path: str, raw: bytes) -> None:
    api = await seeded(make_api)
    assert b"\\ud" in raw or b"\\udc" in raw
    before = snapshot(api.store)

    status, headers, body = await send(api, "POST", path, raw)

    assert status == 422 and "Unicode" in assert_json_error(path, headers, body)["message"], body[:300]
    assert snapshot(api.store) == before


@pytest.mark.parametrize(
    ("port", "status"),
    [(b"1" * 5000, 400), (b"1e400", 422), (b"-0.0", 422), (b"%d.5" % PORT, 422), (b"6.5e5", 422)],
)
async def test_odd_numbers_are_refused(make_api: MakeApi, port: bytes, status: int) -> None:
    api = await seeded(make_api)
    raw = json.dumps(valid_body(STARTED)).encode().replace(b'"port": %d' % PORT, b'"port": ' + port)
    assert port in raw
    before = snapshot(api.store)

    got, headers, body = await send(api, "POST", STARTED, raw)

    assert got == status, body[:300]
    assert_json_error(STARTED, headers, body)
    assert snapshot(api.store) == before


async def test_escaped_characters_are_kept(make_api: MakeApi) -> None:
    api = await seeded(make_api)
    raw = json.dumps(started_body("gluetun", PORT, stream_id="\U0001f600|\x00|\u2028")).encode()

    status, _, body = await send(api, "POST", STARTED, raw)

    assert status == 200, body[:200]
    assert "\U0001f600|\x00|\u2028" in api.store.demand.streams.active


# -- slow and idle clients ---------------------------------------------------------------------
@contextlib.asynccontextmanager
async def raw_connection(api: Api) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A plain TCP connection to the app's loopback port."""
    server = api.client.server
    reader, writer = await asyncio.open_connection(str(server.host), server.port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def post_head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SECRET}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


async def trickle(writer: asyncio.StreamWriter, data: bytes, every_s: float) -> None:
    """Send `data` a byte at a time; stops quietly once the server has closed."""
    for i in range(len(data)):
        try:
            writer.write(data[i : i + 1])
            await writer.drain()
        except ConnectionError:
            return
        await asyncio.sleep(every_s)


async def read_until_closed(reader: asyncio.StreamReader, bound_s: float) -> bytes:
    """Everything the server sends until it closes (a reset is a close: the server may close while
    the client is still sending); fails if it is still open after `bound_s`."""
    got = b""
    async with asyncio.timeout(bound_s):
        with contextlib.suppress(ConnectionResetError):
            while chunk := await reader.read(65536):
                got += chunk
    return got


@pytest.mark.parametrize("path", POSTS)
async def test_a_trickled_body_gets_408_and_the_connection_closes(make_api: MakeApi, path: str) -> None:
    api = await seeded(make_api, FAST)
    raw = json.dumps(valid_body(path)).encode()
    before = snapshot(api.store)

    async with raw_connection(api) as (reader, writer):
        writer.write(post_head(path, len(raw)))
        sender = asyncio.create_task(trickle(writer, raw, every_s=0.2))  # 5 bytes/s: minutes
        started = time.monotonic()
        answer = await read_until_closed(reader, BOUND_S)
        took = time.monotonic() - started
        sender.cancel()

    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b'"body_timeout"' in answer and took < BOUND_S
    assert snapshot(api.store) == before


async def test_a_stalled_body_gets_408(make_api: MakeApi) -> None:
    api = await seeded(make_api, FAST)
    before = snapshot(api.store)

    async with raw_connection(api) as (reader, writer):
        writer.write(post_head(ENDED, 100) + b'{"stream_id": ')  # and then nothing
        answer = await read_until_closed(reader, BOUND_S)

    assert answer.startswith(b"HTTP/1.1 408 ") and b"Connection: close" in answer
    assert snapshot(api.store) == before


async def test_trickled_headers_are_cut_off(make_api: MakeApi) -> None:
    api = await seeded(make_api, FAST)
    before = snapshot(api.store)

    async with raw_connection(api) as (reader, writer):
        writer.write(f"POST {ENDED} HTTP/1.1\r\nHost: x\r\n".encode())
        sender = asyncio.create_task(trickle(writer, b"X-Slow: " + b"a" * 200, every_s=0.1))
        started = time.monotonic()
        answer = await read_until_closed(reader, BOUND_S)  # closed, nothing to answer
        took = time.monotonic() - started
        sender.cancel()

    assert answer == b"" and took < BOUND_S
    assert snapshot(api.store) == before


async def test_an_idle_connection_is_closed(make_api: MakeApi) -> None:
    api = await seeded(make_api, FAST)

    async with raw_connection(api) as (reader, _):
        assert await read_until_closed(reader, BOUND_S) == b""

    assert (await api.get("/health"))[0] == 200  # and the server is fine


# -- methods -----------------------------------------------------------------------------------
ROUTES = [(path, {"GET", "HEAD"}) for path in GET_ROUTES] + [(path, {"POST"}) for path in POSTS]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND", "MKCOL"]


@pytest.mark.parametrize(
    ("path", "allowed", "method"),
    [(path, allowed, method) for path, allowed in ROUTES for method in METHODS if method not in allowed],
)
async def test_another_method_is_405_with_allow(
    make_api: MakeApi, path: str, allowed: set[str], method: str
) -> None:
    api = await seeded(make_api)
    before = snapshot(api.store)

    # without the key: a 405 is a 405 for everyone, not a 401
    async with api.client.request(method, path, json=valid_body(path)) as resp:
        status, headers, body = resp.status, resp.headers, await resp.read()

    assert status == 405
    assert {m.strip() for m in headers["Allow"].split(",")} == allowed
    assert assert_json_error(ENDED, headers, body)["error"] == "method_not_allowed"
    assert snapshot(api.store) == before


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PROPFIND"])
async def test_an_unknown_route_is_a_json_404(make_api: MakeApi, method: str) -> None:
    api = await seeded(make_api)
    before = snapshot(api.store)

    async with api.client.request(method, "/events/stream_paused", json={"stream_id": LIVE}) as resp:
        status, headers, body = resp.status, resp.headers, await resp.read()

    assert status == 404 and assert_json_error(ENDED, headers, body)["error"] == "not_found"
    assert snapshot(api.store) == before


@pytest.mark.parametrize(
    ("path", "status", "content_type"),
    [(path, 200, "text/plain" if path == "/metrics" else "application/json") for path in GET_ROUTES]
    + [
        ("/engines/nope", 404, "application/json"),
        ("/streams?status=bogus", 400, "application/json"),
        ("/nope", 404, "application/json"),
    ]
    + [(path, 405, "application/json") for path in POSTS],
)
async def test_head_answers_like_get_without_a_body(
    make_api: MakeApi, path: str, status: int, content_type: str
) -> None:
    api = await seeded(make_api)
    before = snapshot(api.store)

    async with api.client.head(path, headers={"Authorization": f"Bearer {SECRET}"}) as resp:
        got, headers, body = resp.status, resp.headers, await resp.read()

    assert got == status and body == b""
    assert headers["Content-Type"].startswith(content_type)
    if status == 405:
        assert headers["Allow"] == "POST"
    assert snapshot(api.store) == before


# -- query strings -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "query",
    [
        "status=",
        "container_id=",
        "status=started&status=ended",
        "container_id=a&container_id=b",
        "status=STARTED",
        "status=%00",
        "status=%FF",
    ],
)
async def test_a_bad_streams_query_is_400(make_api: MakeApi, query: str) -> None:
    api = await seeded(make_api)

    async with api.client.get(f"/streams?{query}") as resp:
        status, headers, body = resp.status, resp.headers, await resp.read()

    assert status == 400 and assert_json_error(ENDED, headers, body)["error"] == "invalid_query"


@pytest.mark.parametrize(
    ("query", "listed"),
    [
        ("container_id=%FF%FE", 0),
        ("container_id=%00", 0),
        ("container_id=" + "a" * 4000, 0),
        ("container_id=acestream-gluetun-0&status=started", 1),
        ("unknown=1&status=started", 1),  # unknown parameters are ignored
    ],
)
async def test_an_odd_container_id_lists_nothing(make_api: MakeApi, query: str, listed: int) -> None:
    api = await seeded(make_api)

    async with api.client.get(f"/streams?{query}") as resp:
        status, streams = resp.status, await resp.json()

    assert status == 200 and len(streams) == listed


@pytest.mark.parametrize("ref", ["%FF%FE", "%00", "a%2Fb", "..%2F..%2Fetc", "x" * 4000])
async def test_an_odd_engine_id_is_a_json_404(make_api: MakeApi, ref: str) -> None:
    api = await seeded(make_api)

    async with api.client.get(f"/engines/{ref}") as resp:
        status, headers, body = resp.status, resp.headers, await resp.read()

    assert status == 404 and assert_json_error(ENDED, headers, body)["error"] in (
        "engine_not_found",
        "not_found",
    )


# -- not HTTP at all ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "request_bytes",
    [
        b"\x00\x01\x02\x03 / HTTP/1.1\r\n\r\n",
        b"BREW /events/stream_ended HTTP/1.1\r\nHost: x\r\n\r\n",  # a method token HTTP parsers do not know
        b"GET /engines HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n",
        post_head(ENDED, 2).replace(b"\r\n\r\n", b"\r\nTransfer-Encoding: chunked\r\n\r\n") + b"{}",
        b"POST /events/stream_ended HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
    ids=["garbage", "unknown-method", "nul-in-header", "smuggling", "two-lengths", "long-line"],
)
async def test_what_is_not_http_is_400_and_changes_nothing(make_api: MakeApi, request_bytes: bytes) -> None:
    api = await seeded(make_api, FAST)
    before = snapshot(api.store)

    async with raw_connection(api) as (reader, writer):
        writer.write(request_bytes)
        answer = await read_until_closed(reader, BOUND_S)

    assert answer.startswith((b"HTTP/1.1 400 ", b"HTTP/1.0 400 ")), answer[:200]
    assert snapshot(api.store) == before
    assert (await api.get("/health"))[0] == 200
