"""Stalled engines against the real Docker engine: stand-in engines whose stat_url says no peers,
no speed and no progress (their stall control) while their HTTP API keeps answering.

A stalled stream is reported within `stall_after_s` plus one liveness round; its engine leaves
/engines, a fresh one is ready, and the stalled engine goes only after its stream ended (reason
`stalled`, after the grace). An engine with one stalled and one progressing stream stays. The
times from the stall to the report and to a replacement ready are printed (`-s`).

The stand-ins are built for this module under a namespace of its own (testbed/engine/build.sh):
the shared test images may be rebuilt at any time by another checkout's `make images`."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from testkit.harness import REPO, Daemon, http_json, logs, wait_for
from testkit.rounds import start_vpns

MakeDaemon = Callable[..., Daemon]

STALL_AFTER_S = 6
ROUND_S = 2
GRACE_S = 8
STALL_NS = "acestream-orchestrator-test-stalls"
FAST = {
    "image": f"{STALL_NS}/engine:latest",
    "min_replicas": 2,
    "min_free": 0,
    "health_check_interval_s": ROUND_S,
    "stall_after_s": STALL_AFTER_S,
    "stall_grace_s": GRACE_S,
}


@pytest.fixture(scope="module", autouse=True)
def stall_standins() -> Iterator[None]:
    done = subprocess.run(
        ["bash", str(REPO / "testbed" / "engine" / "build.sh"), STALL_NS],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    yield


def open_session(engine: dict[str, Any]) -> dict[str, Any]:
    """A playback session on the stand-in engine, as acexy opens one."""
    base = f"http://{engine['host']}:{engine['port']}"
    status, body = http_json(f"{base}/ace/getstream?format=json&id={uuid.uuid4().hex}&pid={uuid.uuid4().hex}")
    assert status == 200 and body["error"] is None, body
    return dict(body["response"])


def report_started(daemon: Daemon, engine: dict[str, Any], session: dict[str, Any]) -> str:
    status, body = http_json(
        daemon.url + "/events/stream_started",
        "POST",
        {
            "container_id": "acexy",
            "engine": {"host": engine["host"], "port": engine["port"]},
            "stream": {"key_type": "content_id", "key": session["playback_session_id"][:16]},
            "session": {
                "playback_session_id": session["playback_session_id"],
                "stat_url": session["stat_url"],
                "command_url": session["command_url"],
                "is_live": 1,
            },
            "labels": {"stream_id": session["playback_session_id"]},
        },
    )
    assert status == 200, body
    return str(body["id"])


def stall(engine: dict[str, Any], on: bool, session: str | None = None) -> None:
    query = f"on={int(on)}" + (f"&session={session}" if session else "")
    status, body = http_json(f"http://{engine['host']}:{engine['port']}/standin/stall?{query}")
    assert status == 200, body


def stream(daemon: Daemon, stream_id: str) -> dict[str, Any]:
    return next(s for s in daemon.get("/streams")[1] if s["id"] == stream_id)


def problems(daemon: Daemon, code: str) -> list[dict[str, Any]]:
    return [p for p in daemon.status()["problems"] if p["code"] == code]


def test_a_stalled_engine_is_reported_replaced_and_removed_after_its_stream(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(engines=FAST)
    first, _ = daemon.wait_engines(2, timeout=60)
    session = open_session(first)
    stream_id = report_started(daemon, first, session)
    wait_for(
        "the stream's progress on /streams",
        lambda: (stream(daemon, stream_id)["progress"] or {}).get("progressing"),
        timeout=4 * ROUND_S,
    )
    assert stream(daemon, stream_id)["stalled"] is False

    stall(first, True)
    t0 = time.monotonic()
    found = wait_for(
        "engine_stalled on /status",
        lambda: problems(daemon, "engine_stalled") or None,
        timeout=STALL_AFTER_S + 3 * ROUND_S + 5,
    )
    reported = time.monotonic() - t0
    assert found[0]["engine"] == first["container_name"] and found[0]["streams"] == [stream_id], found
    listed = stream(daemon, stream_id)
    assert listed["stalled"] is True and listed["progress"]["peers"] == 0, listed
    assert 'acestream_orchestrator_streams_stalled{engine="' + first["container_name"] in daemon.text(
        "/metrics"
    )

    # out of /engines, a fresh engine ready beside it, the stalled one still there (its stream lives)
    fresh = daemon.wait_engines(2, timeout=60, where=lambda e: e["container_id"] != first["container_id"])
    replaced = time.monotonic() - t0
    assert first["container_id"] not in {e["container_id"] for e in daemon.engines()}
    assert first["container_id"] in daemon.managed(running_only=True)
    assert all(e["ready"] for e in fresh)

    # the stream ends (reason stalled) after the grace; then the engine goes
    wait_for(
        "the stalled stream ended",
        lambda: stream(daemon, stream_id)["status"] == "ended" or None,
        timeout=GRACE_S + 3 * ROUND_S + 10,
    )
    assert stream(daemon, stream_id)["end_reason"] == "stalled"
    wait_for("the stalled engine removed", lambda: first["container_id"] not in daemon.managed(), timeout=30)
    gone = time.monotonic() - t0
    assert len(daemon.wait_engines(2, timeout=30)) == 2
    print(
        f"\nstall -> reported {reported:.1f}s, -> replacement ready {replaced:.1f}s, -> stalled engine "
        f"removed {gone:.1f}s (stall_after_s={STALL_AFTER_S}, round {ROUND_S}s, grace {GRACE_S}s)"
    )


def test_an_engine_with_one_progressing_stream_is_never_touched(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(engines=FAST | {"min_replicas": 1})
    (engine,) = daemon.wait_engines(1, timeout=60)
    stalled_session, working_session = open_session(engine), open_session(engine)
    stalled_id = report_started(daemon, engine, stalled_session)
    working_id = report_started(daemon, engine, working_session)
    stall(engine, True, stalled_session["playback_session_id"])
    wait_for(
        "the one stream stalled",
        lambda: stream(daemon, stalled_id)["stalled"] or None,
        timeout=STALL_AFTER_S + 3 * ROUND_S + 5,
    )
    # well past the grace: nothing happens to the engine or to either stream
    time.sleep(GRACE_S + 2 * ROUND_S)
    assert stream(daemon, working_id)["stalled"] is False
    assert stream(daemon, stalled_id)["status"] == "started"
    assert engine["container_id"] in {e["container_id"] for e in daemon.engines()}
    assert not problems(daemon, "engine_stalled")
    assert engine["container_id"] in daemon.managed(running_only=True)
    assert (
        next(e for e in daemon.engines() if e["container_id"] == engine["container_id"])["started_at"]
        == (engine["started_at"])
    )  # not restarted either


def test_a_stall_that_clears_leaves_the_engine_in_place(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(engines=FAST | {"min_replicas": 1, "stall_grace_s": 600})
    (engine,) = daemon.wait_engines(1, timeout=60)
    stream_id = report_started(daemon, engine, open_session(engine))
    stall(engine, True)
    wait_for(
        "stalled", lambda: problems(daemon, "engine_stalled") or None, timeout=STALL_AFTER_S + 3 * ROUND_S + 5
    )
    assert engine["container_id"] not in {e["container_id"] for e in daemon.engines()}
    stall(engine, False)
    wait_for(
        "listed again once it progresses",
        lambda: engine["container_id"] in {e["container_id"] for e in daemon.engines()} or None,
        timeout=4 * ROUND_S + 5,
    )
    # /status's problems are the last reconcile pass's: the pass after the listing drops it
    wait_for(
        "the stall no longer reported", lambda: not problems(daemon, "engine_stalled") or None, timeout=10
    )
    assert stream(daemon, stream_id)["status"] == "started"


def tunnel_restarts(name: str) -> int:
    """PUT /v1/vpn/status requests the Gluetun stand-in logged (its log middleware's lines)."""
    return sum(1 for line in logs(name).splitlines() if "] 200 PUT /v1/vpn/status" in line)


@pytest.mark.parametrize("restart_tunnel", [False, True], ids=["report_only", "restart_tunnel"])
def test_a_stall_on_one_vpn_and_not_the_other_is_reported(
    make_daemon: MakeDaemon, vpns: tuple[str, str], restart_tunnel: bool
) -> None:
    a, b = vpns
    start_vpns(vpns)  # healthy, forwarding 40001 and 40002
    daemon = make_daemon(
        engines=FAST | {"min_replicas": 2, "stall_grace_s": 600},
        vpn={
            "mode": "redundant",
            "containers": list(vpns),
            "health_check_interval_s": 0.5,
            "restart_tunnel_on_stall": restart_tunnel,
            "tunnel_restart_interval_s": 600,
        },
    )
    engines = daemon.wait_engines(2, timeout=60, where=lambda e: e["ready"])
    behind = {e["vpn_container"]: e for e in engines}
    assert set(behind) == {a, b}, engines
    for engine in engines:
        report_started(daemon, engine, open_session(engine))
    stall(behind[a], True)
    found = wait_for(
        "vpn_exit_stalling on /status",
        lambda: problems(daemon, "vpn_exit_stalling") or None,
        timeout=STALL_AFTER_S + 3 * ROUND_S + 10,
    )
    assert [p["vpn"] for p in found] == [a], found
    assert behind[a]["container_name"] in found[0]["message"] and repr(b) in found[0]["message"]
    assert [p["engine"] for p in problems(daemon, "engine_stalled")] == [behind[a]["container_name"]]
    if not restart_tunnel:
        time.sleep(3)  # several control-server polls: nothing is asked of Gluetun (the default)
        assert tunnel_restarts(a) == tunnel_restarts(b) == 0
        return
    # stop then run, once (the interval is 600 s), on the stalling VPN only; never the container
    wait_for("the tunnel of the stalling VPN restarted", lambda: tunnel_restarts(a) == 2 or None, timeout=15)
    time.sleep(3)
    assert (tunnel_restarts(a), tunnel_restarts(b)) == (2, 0)
    assert [e for e in daemon.log_events() if e.get("event") == "gluetun_tunnel_restarted"]


def test_max_age_replaces_idle_engines_one_at_a_time_never_one_with_a_stream(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(engines=FAST | {"min_replicas": 2, "max_age_s": 15, "idle_ttl_s": 0})
    first, second = daemon.wait_engines(2, timeout=60)
    report_started(daemon, first, open_session(first))  # busy: never recycled
    seen: set[str] = set()

    def recycled() -> bool | None:
        listed = {e["container_id"] for e in daemon.engines()}
        seen.update(daemon.managed())
        # never more than one replacement at a time beside the two (create before remove)
        assert len(daemon.managed()) <= 3
        return (second["container_id"] not in listed and len(listed) == 2) or None

    wait_for("the idle engine replaced after max_age_s", recycled, timeout=60, interval=0.5)
    assert first["container_id"] in {e["container_id"] for e in daemon.engines()}
    assert len(seen) == 3  # one replacement, for the one idle engine
