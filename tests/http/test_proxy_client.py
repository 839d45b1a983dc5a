"""testkit/proxy_client.py (acexy's calls, in acexy's order) against a local aiohttp server that
answers as ../shared/proxy-contract.md says: which engine it selects, how it retries
provisioning, the order of its calls, and where it sends the key."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import pytest

from testkit.proxy_client import ProvisionFailed
from testkit.proxy_stubs import FAST, NO_WAIT, MakeServer, Orchestrator, client_for, engine, viewer_bed

SELECTION = [
    # (id, engines, started streams, max per engine, chosen)
    ("healthy_before_unhealthy", [engine("u", health="unhealthy"), engine("h")], {}, 1, "h"),
    ("unhealthy_ranked_last_not_excluded", [engine("u", health="unhealthy"), engine("h")], {"h": 1}, 1, "u"),
    ("fewest_streams_first", [engine("a"), engine("b")], {"a": 1}, 2, "b"),
    ("forwarded_before_not", [engine("a"), engine("f", forwarded=True)], {}, 1, "f"),
    (
        "longest_unused_first",
        [engine("new", used="2026-01-02T00:00:00Z"), engine("old", used="2026-01-01T00:00:00Z")],
        {},
        1,
        "old",
    ),
    ("never_used_before_used", [engine("u", used="2026-01-01T00:00:00Z"), engine("n")], {}, 1, "n"),
    ("full_engines_skipped", [engine("a"), engine("b")], {"a": 1}, 1, "b"),
    ("all_full_none", [engine("a")], {"a": 1}, 1, None),
]


@pytest.mark.parametrize(
    ("engines", "started", "most", "chosen"), [c[1:] for c in SELECTION], ids=[c[0] for c in SELECTION]
)
async def test_selection(
    aiohttp_server: MakeServer,
    engines: list[dict[str, Any]],
    started: dict[str, int],
    most: int,
    chosen: str | None,
) -> None:
    orch = Orchestrator(engines=engines, started=started)
    client = await client_for(aiohttp_server, orch, max_streams_per_engine=most)
    async with client.session:
        got = await client.free_engine()
    assert (got.container_id if got else None) == chosen
    # /engines once, then one /streams per engine, in order
    assert [c for _, c, _ in orch.seen] == [
        "GET /engines",
        *(f"GET /streams?container_id={e['container_id']}&status=started" for e in engines),
    ]


def wait(eta: int) -> tuple[int, Any]:
    return 503, {
        "detail": {
            "code": "vpn_disconnected",
            "recovery_eta_seconds": eta,
            "should_wait": True,
            "can_retry": True,
        }
    }


OK = (
    200,
    {
        "container_id": "new",
        "container_name": "n",
        "host_http_port": 41234,
        "container_http_port": 6878,
        "container_https_port": 6879,
    },
)
RETRIES = [
    # (id, answers, posts made, provisioned?, waits before the 2nd and 3rd post in ETA seconds)
    ("first_try", [OK], 1, True, []),
    ("second_after_half_the_eta", [wait(10), OK], 2, True, [5]),
    ("third_after_the_whole_eta", [wait(10), wait(10), OK], 3, True, [5, 10]),
    ("three_failures_give_up", [wait(4), wait(4), wait(4)], 3, False, [2, 4]),
    ("no_retry_without_should_wait", [NO_WAIT], 1, False, []),
    ("retry_stops_at_a_no_wait", [wait(4), NO_WAIT], 2, False, [2]),
]


@pytest.mark.parametrize(
    ("answers", "posts", "ok", "waits"), [c[1:] for c in RETRIES], ids=[c[0] for c in RETRIES]
)
async def test_provisioning_retries(
    aiohttp_server: MakeServer, answers: list[tuple[int, Any]], posts: int, ok: bool, waits: list[float]
) -> None:
    orch = Orchestrator(provision=list(answers))
    client = await client_for(aiohttp_server, orch, api_key="k")
    async with client.session:
        if ok:
            got = await client.engine_for_stream()
            assert (got.host, got.port, got.container_id) == ("localhost", 41234, "new")
        else:
            with pytest.raises(ProvisionFailed):
                await client.engine_for_stream()
    calls = [c for _, c, _ in orch.seen]
    assert calls[:2] == ["GET /engines", "GET /orchestrator/status"]  # no engine listed: status first
    post_times = [t for t, c, _ in orch.seen if c == "POST /provision/acestream"]
    assert len(post_times) == posts
    gaps = [b - a for a, b in itertools.pairwise(post_times)]
    for gap, eta in zip(gaps, waits, strict=True):
        assert gap >= eta * FAST.eta_scale  # waited at least the share of the ETA
    if ok:
        assert calls[-1] == "GET /engines"  # looked for the new engine before dialling it


async def test_the_key_goes_everywhere_but_the_status_call(aiohttp_server: MakeServer) -> None:
    orch = Orchestrator(engines=[engine("a")], provision=[OK])
    client = await client_for(aiohttp_server, orch, api_key="sekret")
    async with client.session:
        await client.start()
        await client.free_engine()
        await client.provision()
        await client.close()
    for _, call, auth in orch.seen:
        want = None if call == "GET /orchestrator/status" else "Bearer sekret"
        assert auth == want, call
    assert orch.seen[0][1] == "GET /orchestrator/status"  # the status poll comes first


async def test_engines_are_cached_two_seconds(aiohttp_server: MakeServer) -> None:
    orch = Orchestrator(engines=[engine("a")])
    client = await client_for(aiohttp_server, orch)
    async with client.session:
        await client.free_engine()
        await client.free_engine()
    assert [c for _, c, _ in orch.seen].count("GET /engines") == 1
    assert [c for _, c, _ in orch.seen].count("GET /streams?container_id=a&status=started") == 2


async def test_play_then_end_makes_acexys_calls_in_order(aiohttp_server: MakeServer) -> None:
    orch, engine_stub, client = await viewer_bed(aiohttp_server)
    async with client.session:
        playback = await client.play("c0ffee", read=5000)
        assert engine_stub.log == ["engine /ace/getstream", "orch stream_started", "engine /ace/r/s0"]
        await client.end(playback)
        await client.close()  # waits for the background stream_ended
    # the engine: asked in acexy's form, its session stopped
    query = engine_stub.getstream_query
    assert (query["format"], query["id"]) == ("json", "c0ffee")
    assert str(uuid.UUID(query["pid"])) == query["pid"]
    assert engine_stub.stopped == ["s0"] and not engine_stub.sessions
    # the viewer got the playback bytes
    assert len(playback.first_bytes) == 5000 and playback.first_bytes[0] == 0x47
    # stream_started: synchronous, before any byte was read, with the contract's body
    base = f"http://127.0.0.1:{playback.engine.port}"
    assert orch.bodies["stream_started"] == [
        {
            "engine": {"host": "127.0.0.1", "port": playback.engine.port},
            "stream": {"key_type": "content_id", "key": "c0ffee"},
            "session": {
                "playback_session_id": "s0",
                "stat_url": f"{base}/ace/stat/ih/s0",
                "command_url": f"{base}/ace/cmd/ih/s0",
                "is_live": 1,
            },
            "labels": {"stream_id": "c0ffee|s0"},
        }
    ]
    assert orch.bodies["stream_ended"] == [{"stream_id": "c0ffee|s0", "reason": "client_disconnected"}]
    assert set(engine_stub.log[3:]) == {"orch stream_ended", "engine /ace/cmd/s0?method=stop"}
    # the orchestrator's calls, in order, all with the key
    assert [c for _, c, _ in orch.seen] == [
        "GET /engines",
        "GET /streams?container_id=e1&status=started",
        "POST /events/stream_started",
        "POST /events/stream_ended",
    ]
    assert {auth for _, _, auth in orch.seen} == {"Bearer k"}


async def test_a_container_id_is_sent_in_the_stream_events(aiohttp_server: MakeServer) -> None:
    orch, _, client = await viewer_bed(aiohttp_server)
    client.container_id = "proxy-itself"
    async with client.session:
        await client.end(await client.play("k", read=10))
        await client.close()
    assert orch.bodies["stream_started"][0]["container_id"] == "proxy-itself"
    assert orch.bodies["stream_ended"][0]["container_id"] == "proxy-itself"
