"""Edits of the VPN list on the real Docker engine: a typo is an error, not an outage; a VPN
dropped from the list lets its viewers finish."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from testkit.harness import (
    ENGINE_IMAGE,
    Daemon,
    docker,
    label_args,
    run_gluetun,
    set_vpn_health,
    stream_ended,
    stream_started,
    wait_for,
    wait_vpn_health,
)

MakeDaemon = Callable[..., Daemon]


def codes(daemon: Daemon) -> set[str]:
    return {p["code"] for p in daemon.status()["problems"]}


def docker_events(daemon: Daemon) -> int:
    """The Docker events the daemon has received (its /metrics counter)."""
    metric = "acestream_orchestrator_docker_events"
    line = next(x for x in daemon.text("/metrics").splitlines() if x.startswith(metric))
    return int(float(line.split()[-1]))


def test_only_its_own_containers_events_reach_it_and_a_vpn_a_reload_adds_is_followed(
    make_daemon: MakeDaemon, vpns: tuple[str, str]
) -> None:
    a, b = vpns
    for name in vpns:
        # any event of the daemon's own containers in the window below would count: no health
        # flip of a VPN on a loaded machine
        run_gluetun(name, patient=True)
        wait_vpn_health(name, "healthy")
    daemon = make_daemon(
        engines={"min_replicas": 2, "min_free": 0}, vpn={"mode": "single", "containers": [a]}
    )
    daemon.wait_engines(2)
    time.sleep(2)  # the creations' events in
    before = docker_events(daemon)
    other = f"unrelated-{a}"
    try:
        # this session's clean-up labels only: none the daemon follows (no managed, pool or VPN name)
        docker("run", "-d", "--name", other, *label_args(), ENGINE_IMAGE)
        docker("stop", "-t", "1", other)
    finally:
        docker("rm", "-f", other, check=False)
    time.sleep(2)
    assert docker_events(daemon) == before, "another container's events reached the daemon"

    daemon.write_config(vpn={"containers": [b]})  # b runs: the edit goes in force at once
    wait_for(
        "2 engines on the new VPN",
        lambda: len(got := daemon.engines()) == 2 and {e["vpn_container"] for e in got} == {b},
        timeout=60,
    )
    set_vpn_health(b, False)
    wait_for("its engines hidden by its health event", lambda: daemon.engines() == [], timeout=15)
    set_vpn_health(b, True)
    daemon.wait_engines(2, timeout=20)


def test_a_vpn_name_that_does_not_exist_changes_nothing_until_it_does(
    make_daemon: MakeDaemon, vpns: tuple[str, str]
) -> None:
    a, b = vpns
    run_gluetun(a)
    wait_vpn_health(a, "healthy")
    daemon = make_daemon(
        engines={"min_replicas": 2, "min_free": 0}, vpn={"mode": "single", "containers": [a]}
    )
    before = {e["container_id"] for e in daemon.wait_engines(2)}

    daemon.write_config(vpn={"containers": [b]})  # no container has that name (yet)
    wait_for("the edit held", lambda: "config_held" in codes(daemon))
    time.sleep(2)
    assert {e["container_id"] for e in daemon.engines()} == before
    assert set(daemon.managed()) == before
    status = daemon.status()
    assert b in (status["config"]["held"] or "")
    assert "config_held" in [ev.get("event") for ev in daemon.log_events()]

    run_gluetun(b)  # the container appears: the edit goes in force by itself
    wait_vpn_health(b, "healthy")
    moved = wait_for(
        "2 engines on the new VPN",
        lambda: (
            got if len(got := daemon.engines()) == 2 and {e["vpn_container"] for e in got} == {b} else None
        ),
        timeout=60,
    )
    wait_for(
        "the idle engines of the old VPN removed",
        lambda: set(daemon.managed()) == {e["container_id"] for e in moved},
    )
    assert "config_held" not in codes(daemon)


@pytest.mark.parametrize("grace", [600, 15])
def test_a_dropped_vpn_drains_its_streaming_engine(
    make_daemon: MakeDaemon, vpns: tuple[str, str], grace: int
) -> None:
    a, b = vpns
    for name in vpns:
        run_gluetun(name)
    for name in vpns:
        wait_vpn_health(name, "healthy")
    daemon = make_daemon(
        engines={"min_replicas": 2, "min_free": 0},
        vpn={"mode": "redundant", "containers": [a, b], "drain_grace_s": grace},
    )
    listed = daemon.wait_engines(2)
    (on_a,) = [e for e in listed if e["vpn_container"] == a]
    status, stream = stream_started(daemon, on_a["host"], on_a["port"], "live")
    assert status == 200

    daemon.write_config(vpn={"mode": "single", "containers": [b]})
    wait_for(
        "2 engines on the VPN kept",
        lambda: len(got := daemon.engines()) == 2 and {e["vpn_container"] for e in got} == {b},
        timeout=30,
    )
    assert on_a["container_id"] in daemon.managed(running_only=True), "a stream on it: drained, not removed"
    assert "draining" in codes(daemon)

    if grace > 60:  # the viewer leaves: the engine goes once idle
        assert stream_ended(daemon, stream["id"])[0] == 200
        reason = "client_disconnected"
    else:  # the viewer stays past the grace: the engine goes anyway, its stream ended with a reason
        reason = "engine_gone"
    wait_for("the drained engine removed", lambda: on_a["container_id"] not in daemon.managed(), timeout=45)
    # Docker's answer to the removal reaches the daemon a moment after the container is gone
    (ended,) = wait_for("its stream ended", lambda: daemon.get("/streams?status=ended")[1])
    assert (ended["id"], ended["end_reason"]) == (stream["id"], reason)
