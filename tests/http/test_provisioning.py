"""Provisioning answers at once: a free engine, or a structured reason and a single demand that
the planner meets with exactly one more engine, however often the proxy retries."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from orchestrator.docker.containers import ContainerInfo
from orchestrator.docker.engines import engine_labels, engine_sighting
from orchestrator.docker.gateway import DockerGateway
from orchestrator.workers.executor import Executor
from reconcilers import plan
from reconcilers.model import CreateEngine, Plan, Problem
from tests.http.conftest import LAUNCH, NO_DOCKER, ONE_VPN, Api, MakeApi, assert_int, started_body

DETAIL_KEYS = {"error", "code", "message", "recovery_eta_seconds", "can_retry", "should_wait"}
NO_SPARE = f"engines: {{image: engine:1, {LAUNCH}, min_replicas: 1, min_free: 0, max_replicas: 4}}\n"
SMALL = f"engines: {{image: engine:1, {LAUNCH}, min_replicas: 1, min_free: 0, max_replicas: 2}}\n"


def creates(api: Api, now: float | None = None) -> list[CreateEngine]:
    now = time.time() if now is None else now
    result = plan(api.desired, api.store.observed(now), now)
    return [a for a in result.actions if isinstance(a, CreateEngine)]


async def busy(api: Api, slot: int, vpn: str | None = None) -> None:
    engine = api.add_engine(slot, vpn)
    host, port = (vpn, engine.ports.http) if vpn else (engine.name, 6878)
    status, _ = await api.post("/events/stream_started", started_body(host, port, session=str(slot)))
    assert status == 200


def assert_detail(answer: dict[str, Any]) -> dict[str, Any]:
    detail = answer["detail"]
    assert set(detail) == DETAIL_KEYS
    assert all(isinstance(detail[k], str) for k in ("error", "code", "message"))
    assert isinstance(detail["can_retry"], bool) and isinstance(detail["should_wait"], bool)
    assert_int(detail["recovery_eta_seconds"], nullable=True)
    return dict(detail)


async def test_free_engine_is_handed_out_with_acexys_fields(make_api: MakeApi) -> None:
    api = await make_api()
    engine = api.add_engine(0)
    api.store.demand.want_free_engine(time.time() + 60)

    status, answer = await api.post("/provision/acestream", {"labels": {}, "env": {}})

    assert status == 200
    assert answer["container_id"] == engine.container_id
    assert answer["container_name"] == engine.name
    assert answer["host_http_port"] == 19000  # acexy connects to localhost:<host_http_port>
    assert answer["container_http_port"] == 6878 and answer["container_https_port"] == 6879
    for name in ("host_http_port", "container_http_port", "container_https_port", "port"):
        assert_int(answer[name])
    assert api.store.demand.demand_until is None


async def test_behind_a_vpn_the_host_port_is_the_engines_own(make_api: MakeApi) -> None:
    api = await make_api(ONE_VPN)
    api.add_vpn("gluetun", forwarded_port=45000)
    plain = api.add_engine(0, "gluetun")
    forwarded = api.add_engine(1, "gluetun", forwarded=True)

    status, answer = await api.post("/provision/acestream", {})

    assert status == 200 and answer["container_id"] == forwarded.container_id  # forwarded first
    assert answer["host_http_port"] == answer["container_http_port"] == forwarded.ports.http
    assert answer["host"] == "gluetun"
    second = await api.post("/provision/acestream", {})
    assert second[1]["container_id"] == plain.container_id  # the first is held for its stream


async def test_non_empty_labels_and_env_are_accepted(make_api: MakeApi) -> None:
    api = await make_api()
    api.add_engine(0)

    status, _ = await api.post("/provision/acestream", {"labels": {"a": "b"}, "env": {"X": "1"}})

    assert status == 200


async def test_none_free_answers_503_should_wait_and_raises_the_demand(make_api: MakeApi) -> None:
    api = await make_api(NO_SPARE)
    await busy(api, 0)
    started = time.time()

    resp = await api.client.post("/provision/acestream", json={"labels": {}, "env": {}})
    answer = await resp.json()

    assert time.time() - started < 0.5
    assert resp.status == 503 and resp.headers["Retry-After"] == "10"
    detail = assert_detail(answer)
    assert detail["code"] == "provisioning_in_progress" and detail["error"] == "provisioning"
    assert detail["should_wait"] is True and detail["can_retry"] is True
    assert detail["recovery_eta_seconds"] == 10  # no engine start seen yet: the default
    assert api.store.demand.demand_until is not None and api.store.demand.demand_until > started + 50


async def test_retries_extend_one_demand_and_the_planner_adds_exactly_one_engine(make_api: MakeApi) -> None:
    api = await make_api(NO_SPARE)
    await busy(api, 0)
    assert creates(api) == []

    answers = [await api.post("/provision/acestream", {"labels": {}, "env": {}}) for _ in range(10)]

    assert {status for status, _ in answers} == {503}
    assert {a["detail"]["code"] for _, a in answers} == {"provisioning_in_progress"}
    assert api.store.observed().extra_demand == 1
    assert len(creates(api)) == 1


async def test_a_reported_stream_meets_the_demand(make_api: MakeApi) -> None:
    api = await make_api(NO_SPARE)
    await busy(api, 0)
    await api.post("/provision/acestream", {})
    assert api.store.demand.demand_until is not None

    await busy(api, 1)

    assert api.store.demand.demand_until is None


# -- blocked reasons: each scenario is checked on provisioning and on /orchestrator/status -------


@asynccontextmanager
async def failing_executor(api: Api) -> AsyncIterator[Executor]:
    """A real executor whose creations really fail: its Docker address answers nothing."""
    gateway = DockerGateway(NO_DOCKER)
    executor = Executor(gateway, api.store, lambda: api.desired)
    try:
        async with asyncio.TaskGroup() as tasks:
            running = tasks.create_task(executor.run())
            for _ in range(3):
                # plan as if the back-off had passed
                blocked = api.store.ledger.create_blocked_until
                actions = tuple(creates(api, max(time.time(), (blocked or 0) + 0.001)))
                assert len(actions) == 1
                changed = api.store.watch()
                executor.submit(actions)
                async with asyncio.timeout(10):
                    while api.store.ledger.pending_count:
                        changed.clear()
                        await changed.wait()
            yield executor
            running.cancel()
    finally:
        await gateway.close()


async def vpn_unhealthy(api: Api) -> None:
    api.add_vpn("gluetun", state="unhealthy")


async def vpn_timed_out(api: Api) -> None:
    api.add_vpn("gluetun", state="unhealthy", since=time.time() - 300)
    now = time.time()
    api.store.telemetry.record_plan(plan(api.desired, api.store.observed(now), now), now, 0.0)


async def vpn_missing(api: Api) -> None:
    api.add_vpn("gluetun", state="missing")


async def vpn_missing_for_long(api: Api) -> None:
    api.add_vpn("gluetun", state="missing", since=time.time() - api.desired.vpn.wait_healthy_s - 1)


async def vpn_stopped(api: Api) -> None:
    api.add_vpn("gluetun", state="stopped")


async def at_max_replicas(api: Api) -> None:
    await busy(api, 0)
    await busy(api, 1)


async def ports_exhausted(api: Api) -> None:
    api.store.telemetry.record_plan(
        Plan(problems=(Problem(code="ports_exhausted", message="no slot"),)), time.time(), 0.0
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    yaml_text: str
    setup: Callable[[Api], Awaitable[None]]
    http: int
    code: str
    should_wait: bool
    eta: int | None


SCENARIOS = {
    "vpn unhealthy": Scenario(
        yaml_text=ONE_VPN, setup=vpn_unhealthy, http=503, code="vpn_disconnected", should_wait=True, eta=10
    ),
    "vpn never healthy": Scenario(
        yaml_text=ONE_VPN, setup=vpn_timed_out, http=503, code="vpn_error", should_wait=False, eta=None
    ),
    "vpn just missing": Scenario(
        yaml_text=ONE_VPN, setup=vpn_missing, http=503, code="vpn_disconnected", should_wait=True, eta=10
    ),
    "vpn missing too long": Scenario(
        yaml_text=ONE_VPN, setup=vpn_missing_for_long, http=503, code="vpn_error", should_wait=False, eta=None
    ),
    "vpn stopped": Scenario(
        yaml_text=ONE_VPN, setup=vpn_stopped, http=503, code="vpn_error", should_wait=False, eta=None
    ),
    "max replicas": Scenario(
        yaml_text=SMALL, setup=at_max_replicas, http=503, code="max_capacity", should_wait=True, eta=30
    ),
    "ports exhausted": Scenario(
        yaml_text=NO_SPARE, setup=ports_exhausted, http=500, code="general_error", should_wait=False, eta=None
    ),
}


@pytest.mark.parametrize("name", SCENARIOS)
async def test_blocked_provisioning_and_status_agree(make_api: MakeApi, name: str) -> None:
    scenario = SCENARIOS[name]
    api = await make_api(scenario.yaml_text)
    await scenario.setup(api)

    _, status_doc = await api.get("/orchestrator/status")
    got, answer = await api.post("/provision/acestream", {"labels": {}, "env": {}})

    detail = assert_detail(answer)
    assert (got, detail["code"], detail["should_wait"]) == (
        scenario.http,
        scenario.code,
        scenario.should_wait,
    )
    assert detail["recovery_eta_seconds"] == scenario.eta
    assert detail["can_retry"] is scenario.should_wait
    provisioning = status_doc["provisioning"]
    assert provisioning["can_provision"] is False
    assert provisioning["blocked_reason"] == detail["message"]
    assert provisioning["blocked_reason_details"] == detail
    assert (api.store.demand.demand_until is not None) == scenario.should_wait


async def test_circuit_breaker(make_api: MakeApi) -> None:
    api = await make_api(NO_SPARE)
    await busy(api, 0)
    await api.post("/provision/acestream", {})  # a demand the executor then fails to meet

    async with failing_executor(api):
        assert api.store.ledger.breaker_state(time.time()) == "open"
        got, answer = await api.post("/provision/acestream", {})
        _, status_doc = await api.get("/orchestrator/status")

    detail = assert_detail(answer)
    assert got == 503 and detail["code"] == "circuit_breaker" and detail["should_wait"] is True
    assert 1 <= detail["recovery_eta_seconds"] <= 2  # the executor's back-off after 3 failures
    provisioning = status_doc["provisioning"]
    assert provisioning["circuit_breaker_state"] == "open"
    assert provisioning["blocked_reason_details"]["code"] == "circuit_breaker"
    assert provisioning["last_failure"] is not None


@pytest.mark.parametrize(
    "error", ["cannot connect to the Docker socket", None], ids=["refused", "stream_ended"]
)
async def test_while_docker_reconnects_the_proxy_is_told_to_wait(
    make_api: MakeApi, error: str | None
) -> None:
    api = await make_api(NO_SPARE)
    await busy(api, 0)
    api.store.telemetry.note_resync()  # it was connected
    api.store.telemetry.set_docker(connected=False, error=error)

    got, answer = await api.post("/provision/acestream", {})

    assert got == 503, answer
    detail = answer["detail"]
    assert detail["code"] == "docker_unavailable" and "Docker" in detail["message"]
    assert detail["should_wait"] is True and detail["can_retry"] is True
    assert 0 < detail["recovery_eta_seconds"] <= 10
    status = (await api.get("/orchestrator/status"))[1]["provisioning"]
    assert status["blocked_reason_details"]["code"] == "docker_unavailable"
    assert status["can_provision"] is False and status["blocked_reason_details"]["should_wait"] is True


async def test_the_wait_while_an_engine_is_prepared_follows_how_long_engines_take(make_api: MakeApi) -> None:
    """The proxy retries after half the ETA, then the whole: the ETA must cover an engine's start."""
    api = await make_api(NO_SPARE)
    info = ContainerInfo(
        id="f" * 64,
        name="acestream-engine-9",
        status="running",
        health=None,
        started_at=time.time() - 3.5,
        created_at=time.time() - 5.0,
        ip="172.18.0.99",
        labels=engine_labels(creates(api)[0], api.desired.engines),
    )
    api.store.upsert_engine(engine_sighting(info))
    api.store.mark_ready(info.id, info.started_at)  # it took 3.5 s to answer
    await busy(api, 1)
    await api.post("/events/stream_started", started_body("acestream-engine-9", 6878, session="x"))

    _, answer = await api.post("/provision/acestream", {})

    assert answer["detail"]["code"] == "provisioning_in_progress"
    assert answer["detail"]["recovery_eta_seconds"] == 7  # ceil(3.5 s x 1.5 + 1)
