"""Stream events as acexy sends them: the engine is found by (host, port), never invented, and
a stream ends only by its own ID."""

from __future__ import annotations

import time

import pytest

from reconcilers.vpn import HealthReported
from tests.http.conftest import (
    NO_VPN,
    ONE_VPN,
    TWO_VPNS,
    MakeApi,
    assert_stream_types,
    started_body,
    vpn_id,
)


async def test_started_by_container_name_records_the_stream(make_api: MakeApi) -> None:
    api = await make_api()
    engine = api.add_engine(0)
    api.store.demand.want_free_engine(time.time() + 60)

    status, stream = await api.post("/events/stream_started", started_body(engine.name, 6878))

    assert status == 200
    assert stream["id"] == "a1b2c3|sess-1"
    assert stream["container_id"] == engine.container_id
    assert stream["status"] == "started" and stream["is_live"] is True
    assert stream["stat_url"].endswith("/ace/stat/a1b2c3/sess-1")
    assert_stream_types(stream)
    assert api.store.demand.demand_until is None  # the provisioning demand is met
    assert api.store.demand.streams.count(engine.container_id) == 1


async def test_container_id_in_the_body_is_not_trusted(make_api: MakeApi) -> None:
    api = await make_api()
    first, second = api.add_engine(0), api.add_engine(1)
    body = started_body(second.name, 6878, container_id=first.container_id)

    status, stream = await api.post("/events/stream_started", body)

    assert status == 200 and stream["container_id"] == second.container_id


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "::1", "[::1]", "LOCALHOST"])
async def test_local_host_with_the_published_port_is_the_engine_owning_it(
    make_api: MakeApi, host: str
) -> None:
    api = await make_api()
    api.add_engine(0)
    engine = api.add_engine(1)
    assert engine.ports.host_http == 19001

    status, stream = await api.post("/events/stream_started", started_body(host, 19001))

    assert status == 200 and stream["container_id"] == engine.container_id


async def test_local_host_on_a_port_every_engine_shares_is_refused(make_api: MakeApi) -> None:
    api = await make_api()
    api.add_engine(0)
    api.add_engine(1)

    status, body = await api.post("/events/stream_started", started_body("localhost", 6878))

    assert status == 409 and body["error"] == "engine_ambiguous"
    assert not api.store.demand.streams.active


@pytest.mark.parametrize(
    ("host", "port", "why"),
    [
        ("localhost", 19999, "nobody owns the port"),
        ("127.0.0.1", 1, "nobody owns the port"),
        ("acestream-engine-7", 6878, "no such container"),
        ("acestream-engine-0", 6879, "wrong port"),
        ("10.9.9.9", 19000, "an IP that is not the engine's"),
    ],
)
async def test_unknown_engine_is_404_and_nothing_is_invented(
    make_api: MakeApi, host: str, port: int, why: str
) -> None:
    api = await make_api()
    api.add_engine(0)
    before = dict(api.store.engines)

    status, body = await api.post("/events/stream_started", started_body(host, port))

    assert status == 404, why
    assert body["error"] == "engine_not_found" and str(port) in body["message"]
    assert api.store.engines == before and not api.store.demand.streams.active


async def test_engine_found_by_ip_and_short_id(make_api: MakeApi) -> None:
    api = await make_api()
    engine = api.add_engine(0, ip="172.18.0.42")

    by_ip = await api.post("/events/stream_started", started_body("172.18.0.42", 6878, session="a"))
    by_id = await api.post(
        "/events/stream_started", started_body(engine.container_id[:12], 6878, session="b")
    )

    assert by_ip[0] == by_id[0] == 200
    assert api.store.demand.streams.count(engine.container_id) == 2


async def test_behind_a_vpn_by_vpn_name_vpn_ip_and_localhost(make_api: MakeApi) -> None:
    api = await make_api(TWO_VPNS)
    api.add_vpn("g1", ip="172.20.0.2")
    api.add_vpn("g2", ip="172.20.0.3")
    on_g1, on_g2 = api.add_engine(0, "g1"), api.add_engine(0, "g2")
    assert on_g1.ports.http != on_g2.ports.http

    cases = [
        ("g1", on_g1.ports.http, on_g1),
        ("172.20.0.3", on_g2.ports.http, on_g2),
        ("localhost", on_g2.ports.http, on_g2),
    ]
    for index, (host, port, engine) in enumerate(cases):
        status, stream = await api.post(
            "/events/stream_started", started_body(host, port, session=str(index))
        )
        assert status == 200 and stream["container_id"] == engine.container_id, host

    wrong_vpn = await api.post("/events/stream_started", started_body("g2", on_g1.ports.http))
    assert wrong_vpn[0] == 404


async def test_empty_stat_and_command_urls_are_accepted(make_api: MakeApi) -> None:
    api = await make_api()
    engine = api.add_engine(0)

    status, stream = await api.post(
        "/events/stream_started", started_body(engine.name, 6878, stat_url="", command_url="", session="")
    )

    assert status == 200
    assert stream["stat_url"] == stream["command_url"] == ""
    assert stream["id"] == "a1b2c3|"


async def test_stream_id_defaults_to_key_and_session(make_api: MakeApi) -> None:
    api = await make_api()
    engine = api.add_engine(0)
    body = started_body(engine.name, 6878, key="abc", session="xyz", container_id=None)
    del body["labels"]

    status, stream = await api.post("/events/stream_started", body)

    assert status == 200 and stream["id"] == "abc|xyz"


async def test_one_key_on_two_engines_without_session_ids_is_two_streams(make_api: MakeApi) -> None:
    # a proxy that sends neither labels.stream_id nor a playback_session_id: "key|" for both
    # replaced the first viewer's stream with the second's, and its engine looked idle
    api = await make_api()
    engines = [api.add_engine(0), api.add_engine(1)]
    ids = []
    for engine in engines:
        body = started_body(engine.name, engine.ports.http, key="abc", container_id=None)
        del body["labels"], body["session"]
        status, stream = await api.post("/events/stream_started", body)
        assert status == 200 and stream["container_id"] == engine.container_id, stream
        ids.append(stream["id"])
    assert ids == [f"abc|{e.container_id[:12]}" for e in engines]
    assert sorted(s.container_id for s in api.store.demand.streams.active.values()) == sorted(
        e.container_id for e in engines
    )
    # "abc|", the ID such a proxy was told to end it by, is ambiguous with two: nothing ends
    status, _ = await api.post("/events/stream_ended", {"stream_id": "abc|", "reason": "completed"})
    assert status == 404 and len(api.store.demand.streams.active) == 2
    status, _ = await api.post("/events/stream_ended", {"stream_id": ids[0], "reason": "completed"})
    assert status == 200
    # with one left, "abc|" ends that one
    status, ended = await api.post("/events/stream_ended", {"stream_id": "abc|", "reason": "completed"})
    assert status == 200 and ended["id"] == ids[1] and not api.store.demand.streams.active


async def test_unknown_stream_id_ends_nothing(make_api: MakeApi) -> None:
    api = await make_api()
    engine = api.add_engine(0)
    await api.post("/events/stream_started", started_body(engine.name, 6878, session="1"))
    await api.post("/events/stream_started", started_body(engine.name, 6878, session="2"))

    status, body = await api.post(
        "/events/stream_ended",
        {"stream_id": "nope|nope", "reason": "completed", "container_id": engine.container_id},
    )

    assert status == 404 and body["error"] == "stream_not_found"
    assert sorted(api.store.demand.streams.active) == ["a1b2c3|1", "a1b2c3|2"]


async def test_stream_ended_ends_exactly_that_stream_and_twice_is_harmless(make_api: MakeApi) -> None:
    api = await make_api()
    engine = api.add_engine(0)
    await api.post("/events/stream_started", started_body(engine.name, 6878, session="1"))
    await api.post("/events/stream_started", started_body(engine.name, 6878, session="2"))

    first = await api.post(
        "/events/stream_ended",
        {"container_id": "acexy-own-id", "stream_id": "a1b2c3|1", "reason": "completed"},
    )
    again = await api.post("/events/stream_ended", {"stream_id": "a1b2c3|1", "reason": "other"})

    assert first[0] == 200 and first[1]["status"] == "ended"
    assert first[1]["end_reason"] == "completed"
    assert_stream_types(first[1])
    assert again[0] == 200 and again[1]["end_reason"] == "completed"  # the first end stands
    assert list(api.store.demand.streams.active) == ["a1b2c3|2"]
    assert len(api.store.demand.streams.ended) == 1


async def test_stream_ended_without_reason(make_api: MakeApi) -> None:
    api = await make_api()
    engine = api.add_engine(0)
    await api.post("/events/stream_started", started_body(engine.name, 6878))

    status, stream = await api.post("/events/stream_ended", {"stream_id": "a1b2c3|sess-1"})

    assert status == 200 and stream["end_reason"] == "unspecified"


async def test_streams_outlive_a_vpn_blip_that_hides_their_engine(make_api: MakeApi) -> None:
    api = await make_api(ONE_VPN.replace("port_range:", "restart_engines_on_reconnect: false, port_range:"))
    api.add_vpn("gluetun")
    engine = api.add_engine(0, "gluetun")
    await api.post("/events/stream_started", started_body("gluetun", engine.ports.http))

    api.store.apply_vpn(
        "gluetun", HealthReported(container_id=vpn_id("gluetun"), health="unhealthy"), time.time()
    )
    assert (await api.get("/engines"))[1] == []
    assert [s["id"] for s in (await api.get("/streams", status="started"))[1]] == ["a1b2c3|sess-1"]

    api.store.apply_vpn(
        "gluetun", HealthReported(container_id=vpn_id("gluetun"), health="healthy"), time.time()
    )
    # listed again once it has answered since (tests/unit/test_state_store.py)
    assert (await api.get("/engines"))[1] == []
    api.store.mark_ready(engine.container_id, engine.started_at)
    (listed,) = (await api.get("/engines"))[1]
    assert listed["streams"] == ["a1b2c3|sess-1"]
    assert (await api.get("/streams", status="ended"))[1] == []


async def test_streams_end_when_their_engine_restarts_or_goes(make_api: MakeApi) -> None:
    api = await make_api()
    first, second = api.add_engine(0), api.add_engine(1)
    await api.post("/events/stream_started", started_body(first.name, 6878, session="on-first"))
    await api.post("/events/stream_started", started_body(second.name, 6878, session="on-second"))

    api.restart_engine(first)
    api.store.drop_engine(second.container_id)

    status, ended = await api.get("/streams", status="ended")
    assert status == 200
    assert {(s["id"], s["end_reason"]) for s in ended} == {
        ("a1b2c3|on-first", "engine_restarted"),
        ("a1b2c3|on-second", "engine_gone"),
    }
    assert (await api.get("/streams", status="started"))[1] == []


async def test_streams_on_one_engine_are_capped_the_oldest_making_room(make_api: MakeApi) -> None:
    api = await make_api(NO_VPN.replace("max_replicas: 4", "max_replicas: 4, max_streams_per_engine: 2"))
    engine = api.add_engine(0)
    for session in ("s1", "s2", "s3"):
        status, _ = await api.post("/events/stream_started", started_body(engine.name, 6878, session=session))
        assert status == 200

    active = (await api.get("/streams", status="started"))[1]
    assert sorted(s["id"] for s in active) == ["a1b2c3|s2", "a1b2c3|s3"]
    (evicted,) = (await api.get("/streams", status="ended"))[1]
    assert (evicted["id"], evicted["end_reason"]) == ("a1b2c3|s1", "evicted_over_cap")
    # the same stream reported again is not one more
    await api.post("/events/stream_started", started_body(engine.name, 6878, session="s3"))
    assert len((await api.get("/streams", status="started"))[1]) == 2
