"""/orchestrator/status, /engines and /streams, checked against the types acexy decodes."""

from __future__ import annotations

import time
from typing import Any

from reconcilers.stalls import StatSample
from tests.http.conftest import (
    NO_VPN,
    ONE_VPN,
    TWO_VPNS,
    MakeApi,
    assert_engine_types,
    assert_int,
    assert_stream_types,
    assert_time,
    started_body,
)


def assert_status_types(doc: dict[str, Any]) -> None:
    assert set(doc) >= {"status", "engines", "streams", "capacity", "vpn", "provisioning", "timestamp"}
    assert doc["status"] in ("healthy", "degraded", "unavailable")
    for name in ("total", "running", "healthy", "unhealthy"):
        assert_int(doc["engines"][name])
    for name in ("active", "total"):
        assert_int(doc["streams"][name])
    for name in ("total", "used", "available", "max_replicas", "min_replicas"):
        assert_int(doc["capacity"][name])
    vpn = doc["vpn"]
    assert isinstance(vpn["enabled"], bool) and isinstance(vpn["connected"], bool)
    assert isinstance(vpn["health"], str)
    assert vpn["container"] is None or isinstance(vpn["container"], str)
    assert_int(vpn["forwarded_port"], nullable=True)
    prov = doc["provisioning"]
    assert isinstance(prov["can_provision"], bool)
    assert prov["circuit_breaker_state"] in ("closed", "open", "half_open")
    assert_time(prov["last_failure"])
    assert prov["blocked_reason"] is None or isinstance(prov["blocked_reason"], str)
    details = prov["blocked_reason_details"]
    assert (details is None) == (prov["blocked_reason"] is None) == prov["can_provision"]
    assert_time(doc["timestamp"], nullable=False)


async def test_status_answers_on_a_daemon_that_never_ran(make_api: MakeApi) -> None:
    for yaml_text in (NO_VPN, ONE_VPN, TWO_VPNS):
        api = await make_api(yaml_text, docker_connected=False)
        assert api.store.telemetry.last_plan is None

        status, doc = await api.get("/orchestrator/status")

        assert status == 200
        assert_status_types(doc)
        assert doc["status"] == "degraded"  # nothing observed yet, but nothing blocks either
        assert doc["provisioning"]["can_provision"] is True
        assert doc["engines"]["total"] == doc["capacity"]["total"] == 0
        assert doc["vpn"]["enabled"] is (yaml_text != NO_VPN)


async def test_status_healthy_pool(make_api: MakeApi) -> None:
    api = await make_api(ONE_VPN)
    api.add_vpn("gluetun", forwarded_port=45123)
    engine = api.add_engine(0, "gluetun", forwarded=True)
    api.add_engine(1, "gluetun")
    await api.post("/events/stream_started", started_body("gluetun", engine.ports.http))

    _, doc = await api.get("/orchestrator/status")

    assert_status_types(doc)
    assert doc["status"] == "healthy"
    assert doc["engines"] == {
        "total": 2,
        "running": 2,
        "healthy": 2,
        "unhealthy": 0,
        "starting": 0,
        "pending": 0,
    }
    assert doc["streams"] == {"active": 1, "total": 1}
    assert doc["capacity"] == {"total": 2, "used": 1, "available": 1, "max_replicas": 4, "min_replicas": 1}
    assert doc["vpn"]["connected"] is True and doc["vpn"]["health"] == "healthy"
    assert doc["vpn"]["container"] == "gluetun" and doc["vpn"]["forwarded_port"] == 45123


async def test_status_redundant_with_one_vpn_down_is_degraded(make_api: MakeApi) -> None:
    api = await make_api(TWO_VPNS)
    api.add_vpn("g1", state="unhealthy")
    api.add_vpn("g2")
    api.add_engine(0, "g1")
    api.add_engine(0, "g2")

    _, doc = await api.get("/orchestrator/status")

    assert_status_types(doc)
    assert doc["status"] == "degraded"
    assert doc["vpn"]["connected"] is True and doc["vpn"]["health"] == "degraded"
    assert doc["vpn"]["container"] == "g2"
    assert doc["engines"]["healthy"] == 1 and doc["engines"]["unhealthy"] == 1
    assert doc["provisioning"]["can_provision"] is True


async def test_status_unavailable_when_nothing_serves_and_nothing_can_be_made(make_api: MakeApi) -> None:
    api = await make_api(ONE_VPN)
    api.add_vpn("gluetun", state="unhealthy")
    api.add_engine(0, "gluetun")

    _, doc = await api.get("/orchestrator/status")

    assert doc["status"] == "unavailable" and doc["vpn"]["connected"] is False
    assert doc["vpn"]["health"] == "unhealthy"
    assert doc["provisioning"]["blocked_reason_details"]["code"] == "vpn_disconnected"


async def test_engines_list_types_and_stream_fields(make_api: MakeApi) -> None:
    api = await make_api()
    engine = api.add_engine(0)
    api.add_engine(1)
    api.add_engine(2, ready=False)  # not listed until it answers

    await api.post("/events/stream_started", started_body(engine.name, 6878))
    status, engines = await api.get("/engines")

    assert status == 200 and len(engines) == 2
    for item in engines:
        assert_engine_types(item)
    mine = next(e for e in engines if e["container_id"] == engine.container_id)
    assert mine["streams"] == ["a1b2c3|sess-1"] and mine["last_stream_usage"] is not None
    assert mine["labels"]["orchestrator.managed"] == "acestream"
    assert mine["host_http_port"] == 19000 and mine["port"] == 6878


async def test_engine_detail_has_stream_details(make_api: MakeApi) -> None:
    api = await make_api()
    engine = api.add_engine(0)
    await api.post("/events/stream_started", started_body(engine.name, 6878, session="1"))
    await api.post("/events/stream_started", started_body(engine.name, 6878, session="2"))
    await api.post("/events/stream_ended", {"stream_id": "a1b2c3|1", "reason": "completed"})

    status, detail = await api.get(f"/engines/{engine.container_id[:12]}")

    assert status == 200
    assert_engine_types(detail)
    assert detail["streams"] == ["a1b2c3|2"]
    assert [(s["id"], s["status"]) for s in detail["stream_details"]] == [
        ("a1b2c3|2", "started"),
        ("a1b2c3|1", "ended"),
    ]
    for stream in detail["stream_details"]:
        assert_stream_types(stream)
    assert (await api.get("/engines/unknown"))[0] == 404


async def test_engine_detail_says_which_of_its_streams_stalled(make_api: MakeApi) -> None:
    # GET /engines/{id} lists `stalled` and `progress` per stream as GET /streams does (it said
    # `stalled: false` for every stream, a stalled one too)
    api = await make_api()
    engine = api.add_engine(0)
    await api.post("/events/stream_started", started_body(engine.name, 6878, session="frozen"))
    await api.post("/events/stream_started", started_body(engine.name, 6878, session="live"))
    after = api.desired.engines.stall_after_s
    assert after == 60
    now = time.time()
    # three answers 30 s apart, the last 10 s ago: `frozen` has shown no progress for 60 s since
    # the first answer, `live` downloads more each time
    for ago, peers, live in ((70, 3, 1000), (40, 0, 2000), (10, 0, 3000)):
        samples = {
            "a1b2c3|frozen": StatSample(peers=peers, speed_down=80 if peers else 0, downloaded=1000),
            "a1b2c3|live": StatSample(peers=3, speed_down=80, downloaded=live),
        }
        api.store.record_progress(samples, now - ago, after, 120.0)
    assert not api.store.stalled_engines  # one stream progresses: the engine is not stalled

    status, detail = await api.get(f"/engines/{engine.container_id[:12]}")

    assert status == 200
    details = {s["id"]: s for s in detail["stream_details"]}
    assert details["a1b2c3|frozen"]["stalled"] is True
    assert details["a1b2c3|frozen"]["progress"]["peers"] == 0
    assert details["a1b2c3|live"]["stalled"] is False
    assert details["a1b2c3|live"]["progress"]["progressing"] is True
    for stream in detail["stream_details"]:
        assert_stream_types(stream)
    _, listed = await api.get("/streams")
    assert {s["id"]: (s["stalled"], s["progress"]) for s in listed} == {
        i: (s["stalled"], s["progress"]) for i, s in details.items()
    }


async def test_streams_filters(make_api: MakeApi) -> None:
    api = await make_api()
    first, second = api.add_engine(0), api.add_engine(1)
    await api.post("/events/stream_started", started_body(first.name, 6878, session="1"))
    await api.post("/events/stream_started", started_body(second.name, 6878, session="2"))
    await api.post("/events/stream_started", started_body(second.name, 6878, session="3"))
    await api.post("/events/stream_ended", {"stream_id": "a1b2c3|3", "reason": "completed"})

    def ids(items: list[dict[str, Any]]) -> list[str]:
        return sorted(s["id"] for s in items)

    assert ids((await api.get("/streams"))[1]) == ["a1b2c3|1", "a1b2c3|2", "a1b2c3|3"]
    assert ids((await api.get("/streams", status="started"))[1]) == ["a1b2c3|1", "a1b2c3|2"]
    assert ids((await api.get("/streams", status="ended"))[1]) == ["a1b2c3|3"]
    started_on_second = (await api.get("/streams", container_id=second.container_id, status="started"))[1]
    assert ids(started_on_second) == ["a1b2c3|2"]
    assert all(s["status"] == "started" for s in started_on_second)
    assert ids((await api.get("/streams", container_id=second.name))[1]) == ["a1b2c3|2", "a1b2c3|3"]
    assert (await api.get("/streams", container_id="no-such-engine"))[1] == []
    for item in (await api.get("/streams"))[1]:
        assert_stream_types(item)


async def test_demand_shows_on_status_until_met(make_api: MakeApi) -> None:
    api = await make_api()
    engine = api.add_engine(0)
    await api.post("/events/stream_started", started_body(engine.name, 6878))
    await api.post("/provision/acestream", {})

    _, doc = await api.get("/orchestrator/status")

    assert_time(doc["provisioning"]["demand_until"], nullable=False)
    assert doc["capacity"]["available"] == 0
    api.store.demand.want_free_engine(time.time() - 1)
    assert (await api.get("/orchestrator/status"))[1]["provisioning"]["demand_until"] is None


async def test_an_engine_is_found_by_an_id_prefix_of_12_characters_not_fewer(make_api: MakeApi) -> None:
    api = await make_api()
    engine = api.add_engine(0)
    assert (await api.get(f"/engines/{engine.container_id[:12]}"))[0] == 200
    status, body = await api.get(f"/engines/{engine.container_id[:11]}")
    assert status == 404 and body["error"] == "engine_not_found"
