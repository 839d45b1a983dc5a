"""A daemon restarted while Docker hangs serves the engines it last served that still answer.

Docker frozen (every request held, as a stuck dockerd) when the daemon starts: it cannot list a
single container. Before, `/engines` stayed empty for as long as Docker hung, though every
engine still served. Now the listing `/engines` last served comes back from the journal, each
engine is asked on its own HTTP API, and those that answer are served, marked on `/status`; an
engine that stops answering is dropped; the first resync after Docker answers again ends it.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

from orchestrator.workers.event_source import RESYNC_DEADLINE_S, RESYNC_INTERVAL_S, RESYNC_JITTER_S
from orchestrator.workers.last_known import GRACE_S, RECHECK_S
from testkit.docker_proxy import DockerProxy
from testkit.harness import Daemon, docker, stream_started, wait_for

MakeDaemon = Callable[..., Daemon]


def ids(engines: list[dict[str, object]]) -> set[object]:
    return {e["container_id"] for e in engines}


def test_restarted_into_a_docker_hang_it_serves_what_it_last_served(
    make_daemon: MakeDaemon, docker_proxy: DockerProxy
) -> None:
    daemon = make_daemon(env=docker_proxy.env, engines={"min_replicas": 2})
    before = daemon.wait_engines(2)
    time.sleep(0.5)  # the journal's writer commits what /engines served within milliseconds
    daemon.stop(signal.SIGKILL)

    docker_proxy.freeze()
    daemon.start()
    assert daemon.engines() == [], "nothing is served on a guess before the engines answered"
    listed = wait_for("the engines last served", lambda: daemon.engines() or None, timeout=GRACE_S + 15)
    assert ids(listed) == ids(before)
    assert [(e["host"], e["port"]) for e in listed] == [(e["host"], e["port"]) for e in before]
    status = daemon.status()
    assert status["engines_source"] == "last_known", status
    assert "docker_silent_serving_last_known" in {p["code"] for p in status["problems"]}

    # the proxy starts a stream on an engine it picked from that listing: it is recorded, so the
    # engine counts as busy (and is never cut as idle) once Docker answers
    busy = before[1]
    code, stream = stream_started(daemon, busy["host"], busy["port"], "during-the-hang")
    assert code == 200 and stream["container_id"] == busy["container_id"], stream

    gone = before[0]["container_id"]
    docker("pause", gone)  # alive for Docker, silent on its HTTP API
    try:
        wait_for(
            "the silent engine dropped",
            lambda: ids(daemon.engines()) == ids(before) - {gone},
            timeout=RECHECK_S + 15,
        )
    finally:
        docker("unpause", gone)

    docker_proxy.thaw()
    wait_for(
        "Docker's word again",
        lambda: daemon.status()["engines_source"] == "docker" and ids(daemon.engines()) == ids(before),
        timeout=RESYNC_INTERVAL_S + RESYNC_JITTER_S + RESYNC_DEADLINE_S + 30,
    )
    assert "docker_silent_serving_last_known" not in {p["code"] for p in daemon.status()["problems"]}
    (after,) = [e for e in daemon.engines() if e["container_id"] == busy["container_id"]]
    assert after["streams"] == [stream["id"]], after
