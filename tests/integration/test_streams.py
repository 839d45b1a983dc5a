"""Streams drive the pool: stream events from a proxy on real engines, end to end."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime

import pytest

from testkit.harness import (
    Daemon,
    docker,
    http_json,
    run_gluetun,
    set_vpn_health,
    started_at,
    stream_ended,
    stream_started,
    wait_for,
    wait_vpn_health,
)

MakeDaemon = Callable[..., Daemon]


def test_streams_raise_the_pool_by_min_free_and_idle_engines_expire(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(engines={"min_replicas": 1, "min_free": 1, "idle_ttl_s": 4})
    (first,) = daemon.wait_engines(1)
    # the proxy's localhost:<published port> convention must find the engine
    status, body = stream_started(daemon, "localhost", first["host_http_port"], "content0")
    assert status == 200 and body["container_id"] == first["container_id"], body
    started = [body["id"]]
    second = next(
        e for e in daemon.wait_engines(2, timeout=20) if e["container_id"] != first["container_id"]
    )  # 1 busy + min_free 1
    status, body = stream_started(daemon, second["host"], second["port"], "content1")
    assert status == 200 and body["container_id"] == second["container_id"], body
    started.append(body["id"])
    grown = daemon.wait_engines(3, timeout=20)
    busy = [e for e in grown if e["streams"]]
    assert sorted(s for e in busy for s in e["streams"]) == sorted(started)
    assert all(e["last_stream_usage"] for e in busy)
    listed = http_json(f"{daemon.url}/streams?container_id={first['container_id']}&status=started")[1]
    assert [s["id"] for s in listed] == [started[0]]

    status, body = stream_ended(daemon, "no-such-stream")
    assert status == 404 and len(http_json(daemon.url + "/streams?status=started")[1]) == 2
    for stream_id in started:
        assert stream_ended(daemon, stream_id)[0] == 200
    # the never-used spare goes at once; the two just used stay idle_ttl_s, then one goes
    used = {first["container_id"], second["container_id"]}
    wait_for("the unused spare removed", lambda: {e["container_id"] for e in daemon.engines()} == used)
    wait_for(
        "pool back to min_replicas after idle_ttl_s",
        lambda: len(daemon.engines()) == 1 and len(daemon.managed()) == 1,
        timeout=20,
    )
    ended = http_json(daemon.url + "/streams?status=ended")[1]
    assert sorted(s["id"] for s in ended) == sorted(started)
    assert all(s["end_reason"] == "client_disconnected" for s in ended)
    # the daemon logs a removal once Docker answered it, a moment after the container is gone
    removed = wait_for(
        "both removals logged",
        lambda: (
            r
            if len(r := [ev for ev in daemon.log_events() if ev.get("event") == "engine_removed"]) == 2
            else None
        ),
    )
    assert all(ev["reason"] == "pool above target" for ev in removed)
    spare_gone, ttl_gone = (ev["timestamp"] for ev in removed)
    assert _seconds(ttl_gone) - _seconds(spare_gone) >= 3, "a just-used engine left before idle_ttl_s"


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_provisioning_answers_fast_and_never_overshoots(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(engines={"min_replicas": 1, "min_free": 0})
    (engine,) = daemon.wait_engines(1)
    assert stream_started(daemon, engine["host"], engine["port"], "busy")[0] == 200
    answers = [
        http_json(daemon.url + "/provision/acestream", "POST", {"labels": {}, "env": {}}, timeout=3)
        for _ in range(5)
    ]
    assert answers[0][0] == 503 and answers[0][1]["detail"]["should_wait"] is True
    assert answers[0][1]["detail"]["recovery_eta_seconds"] <= 5
    _, body = wait_for(
        "a provisioned engine",
        lambda: (
            got
            if (got := http_json(daemon.url + "/provision/acestream", "POST", {}, timeout=3))[0] == 200
            else None
        ),
        timeout=20,
    )
    assert body["container_id"] != engine["container_id"] and body["host_http_port"]
    assert len(daemon.managed()) == 2, "retries must not start more than one extra engine"
    time.sleep(1.5)  # the engine handed out is held for the proxy's stream, not scaled down
    assert body["container_id"] in daemon.managed()


def test_a_killed_daemon_restarts_knowing_every_stream_and_removes_no_busy_engine(
    make_daemon: MakeDaemon,
) -> None:
    daemon = make_daemon(engines={"min_replicas": 1, "min_free": 1, "idle_ttl_s": 2})
    started: list[str] = []
    for key in ("one", "two"):  # each stream raises the target by one: 3 engines, 2 busy
        engine = next(e for e in daemon.wait_engines(len(started) + 1) if not e["streams"])
        status, body = stream_started(daemon, engine["host"], engine["port"], key)
        assert status == 200
        started.append(body["id"])
    ids = {e["container_id"] for e in daemon.wait_engines(3)}
    daemon.stop(signal.SIGKILL)
    seen = len(daemon.log_events())

    daemon.start()  # returns at its first /health answer

    status, active = http_json(daemon.url + "/streams?status=started")
    assert status == 200 and sorted(s["id"] for s in active) == sorted(started)
    time.sleep(4)  # twice idle_ttl_s: without the streams it would have scaled down to 1
    assert set(daemon.managed()) == ids
    assert "engine_removed" not in [ev.get("event") for ev in daemon.log_events()[seen:]]
    assert daemon.status()["state"] == {"durable": True, "error": None}


def test_without_its_state_a_restarted_daemon_keeps_engines_whose_streams_it_cannot_know(
    make_daemon: MakeDaemon,
) -> None:
    daemon = make_daemon(engines={"min_replicas": 1, "min_free": 1, "idle_ttl_s": 600}, state_dir=None)
    (first,) = daemon.wait_engines(1)
    assert stream_started(daemon, first["host"], first["port"], "live")[0] == 200
    ids = {e["container_id"] for e in daemon.wait_engines(2)}
    daemon.stop(signal.SIGTERM)
    seen = len(daemon.log_events())
    daemon.start()  # the new daemon does not know the stream: it must not scale the pool down
    daemon.wait_engines(2)
    time.sleep(2)
    assert set(daemon.managed()) == ids
    assert "engine_removed" not in [ev.get("event") for ev in daemon.log_events()[seen:]]
    assert daemon.status()["state"]["durable"] is False


@pytest.fixture
def vpn_name() -> Iterator[str]:
    name = f"gluetun-streams-{uuid.uuid4().hex[:6]}"
    yield name
    docker("rm", "-f", name, check=False)


@pytest.mark.parametrize("restart_on_reconnect", [False, True])
def test_a_vpn_blip_the_tunnel_survived_keeps_the_stream_and_restarts_nothing(
    make_daemon: MakeDaemon, vpn_name: str, restart_on_reconnect: bool
) -> None:
    """Docker's health of Gluetun flips off and on, same container run, same public IP: a blip,
    not a reconnect. The engines are hidden meanwhile and come back as they were, whatever
    `restart_engines_on_reconnect` says (issue 18: a stream is never cut on a guess)."""
    run_gluetun(vpn_name)
    wait_vpn_health(vpn_name, "healthy")
    daemon = make_daemon(
        engines={"min_replicas": 2, "min_free": 0},
        vpn={
            "mode": "single",
            "containers": [vpn_name],
            "unhealthy_restart_timeout_s": 300,
            "restart_engines_on_reconnect": restart_on_reconnect,
        },
    )
    listed = daemon.wait_engines(2)
    engine = listed[0]
    before = {e["container_id"]: started_at(e["container_id"]) for e in listed}
    status, body = stream_started(daemon, engine["host"], engine["port"], "live")
    assert status == 200
    set_vpn_health(vpn_name, False)
    wait_for("its engines hidden", lambda: daemon.engines() == [])
    status, active = http_json(daemon.url + "/streams?status=started")
    assert [s["id"] for s in active] == [body["id"]], "hidden is not gone: the viewer may still watch"

    set_vpn_health(vpn_name, True)
    back = daemon.wait_engines(2, timeout=60)
    assert {e["container_id"] for e in back} == set(before)
    time.sleep(2)  # a restart planned on recovery would be under way by now
    assert {cid: started_at(cid) for cid in before} == before, "an engine restarted for a blip"
    (same,) = [e for e in daemon.engines() if e["container_id"] == engine["container_id"]]
    assert same["streams"] == [body["id"]]
    assert http_json(daemon.url + "/streams?status=ended")[1] == []
