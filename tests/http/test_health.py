"""`/health` says 503 when the daemon answers but cannot do its job: Docker out of reach, or an
event source that stopped making progress."""

from __future__ import annotations

import time

from orchestrator.state.liveness import DOCKER_DOWN_S, PROGRESS_STALE_S
from tests.http.conftest import MakeApi


async def test_healthy_while_the_event_source_makes_progress(make_api: MakeApi) -> None:
    api = await make_api()
    api.store.telemetry.note_resync()
    status, body = await api.get("/health")
    assert status == 200 and body["status"] == "ok" and "reasons" not in body


async def test_an_event_source_stuck_past_the_limit_is_unhealthy_and_an_event_heals_it(
    make_api: MakeApi,
) -> None:
    api = await make_api()
    api.store.telemetry.note_resync(at=time.time() - PROGRESS_STALE_S - 1)  # nothing since

    status, body = await api.get("/health")
    assert status == 503 and body["status"] == "unhealthy"
    assert "no progress" in body["reasons"][0]

    api.store.telemetry.note_event()
    assert (await api.get("/health"))[0] == 200


async def test_docker_out_of_reach_past_the_limit_is_unhealthy(make_api: MakeApi) -> None:
    api = await make_api()
    api.store.telemetry.set_docker(connected=False, error="connection refused")
    assert (await api.get("/health"))[0] == 200  # a short outage: the daemon reconnects

    api.store.telemetry.set_docker(
        connected=False, error="connection refused", at=time.time() - DOCKER_DOWN_S - 1
    )
    status, body = await api.get("/health")
    assert status == 503 and "connection refused" in body["reasons"][0]

    api.store.telemetry.set_docker(connected=True)
    assert (await api.get("/health"))[0] == 200
