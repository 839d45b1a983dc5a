"""The whole Docker API hanging for minutes (a stuck dockerd): `/health` says so, then recovers.

Every request is held and the open event stream goes silent, as when dockerd stops answering
but keeps its sockets. The daemon must turn `/health` to 503 within the liveness bounds (no
progress for `PROGRESS_STALE_S`), name the Docker error on `/status`, keep serving the engines
it knows, and be healthy again once Docker answers, with the same engines.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from orchestrator.state.liveness import PROGRESS_STALE_S
from orchestrator.workers.event_source import RESYNC_DEADLINE_S, RESYNC_INTERVAL_S, RESYNC_JITTER_S
from testkit.docker_proxy import DockerProxy
from testkit.harness import Daemon, wait_for

MakeDaemon = Callable[..., Daemon]
# the last progress may be a resync just before the freeze; the next ones fail at their deadline
HANG_NOTICED_S = PROGRESS_STALE_S + RESYNC_INTERVAL_S + RESYNC_JITTER_S + RESYNC_DEADLINE_S
RECOVERED_S = RESYNC_INTERVAL_S + RESYNC_JITTER_S + RESYNC_DEADLINE_S


@pytest.mark.soak
def test_docker_hanging_for_minutes_turns_health_503_then_back(
    make_daemon: MakeDaemon, docker_proxy: DockerProxy
) -> None:
    daemon = make_daemon(env=docker_proxy.env, engines={"min_replicas": 2})
    before = {e["container_id"] for e in daemon.wait_engines(2)}

    docker_proxy.freeze()
    body = wait_for(
        "/health 503", lambda: (got := daemon.get("/health"))[0] == 503 and got[1], timeout=HANG_NOTICED_S
    )
    assert "no progress" in body["reasons"][0], body
    docker = daemon.status()["docker"]
    assert "did not answer" in (docker["error"] or ""), docker
    assert {e["container_id"] for e in daemon.engines()} == before  # what it knows, it still serves

    docker_proxy.thaw()
    wait_for(
        "/health 200 and a resync through (the error gone)",
        lambda: daemon.get("/health")[0] == 200 and daemon.status()["docker"]["error"] is None,
        timeout=RECOVERED_S,
    )
    assert {e["container_id"] for e in daemon.engines()} == before and set(daemon.managed()) == before
    assert daemon.process is not None and daemon.process.poll() is None
