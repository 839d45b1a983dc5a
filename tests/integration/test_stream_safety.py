"""A viewer's stream is never cut on a guess (issue 18), tried from outside on the real Docker
engine: the daemon as a process, stand-in Gluetun and engines, streams reported through the API
as the proxy reports them. Each test asserts on `/engines`, `/streams`, Docker's containers
(their IDs, StartedAt and labels) and Docker's events, never on the daemon's internals.

- A probe blip the tunnel survived (same Gluetun run, same public IP) restarts nothing.
- A reconnect inside the same Gluetun container (a new public IP) restarts idle engines at
  once and a busy one only once its stream ended; with `restart_engines_on_reconnect: false`,
  nothing.
- A forwarded port that another engine of the namespace binds is never handed to a second one.
- Gluetun's forced restart counts from the tunnel going down, not from a control server that has
  been out of reach since the start.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from testkit.harness import (
    Daemon,
    containers,
    docker,
    http_json,
    inspect,
    run_gluetun,
    started_at,
    stream_ended,
    stream_started,
    wait_for,
    wait_vpn_health,
)
from testkit.internet import FAST_PROBE, Internet

MakeDaemon = Callable[..., Daemon]
PORT_LABELS = (
    "orchestrator.http_port",
    "orchestrator.https_port",
    "orchestrator.api_port",
    "orchestrator.p2p_port",
)


@pytest.fixture
def vpn_name() -> Iterator[str]:
    name = f"gluetun-safety-{uuid.uuid4().hex[:6]}"
    yield name
    docker("rm", "-f", name, check=False)


def vpn_view(daemon: Daemon) -> dict[str, Any]:
    (vpn,) = daemon.get("/vpn/status")[1]["vpns"]
    return dict(vpn)


def streams(daemon: Daemon, status: str) -> list[dict[str, Any]]:
    code, body = http_json(f"{daemon.url}/streams?status={status}")
    assert code == 200, body
    return list(body)


def starts(ids: set[str]) -> dict[str, float]:
    """Docker's StartedAt of each container: a restart changes it, nothing else does."""
    return {cid: started_at(cid) for cid in ids}


def listed_ids(daemon: Daemon) -> set[str]:
    return {e["container_id"] for e in daemon.engines()}


# -- 1. a probe blip the tunnel survived ------------------------------------------------------


def test_a_probe_blip_hides_busy_engines_and_brings_them_back_unrestarted_with_their_streams(
    make_daemon: MakeDaemon, vpn_name: str, internet: Internet
) -> None:
    internet.vpn_on(vpn_name)
    daemon = make_daemon(
        engines={"min_replicas": 2, "min_free": 0},
        vpn={
            "mode": "single",
            "containers": [vpn_name],
            "port_range": "19000-19399",
            "health_check_interval_s": 0.5,
            "tunnel_probe": {"target": f"{internet.ip}:80", **FAST_PROBE},
        },  # restart_engines_on_reconnect: true, the default
    )
    engines = daemon.wait_engines(2, timeout=30)
    wait_for("the probe's first verdict", lambda: (vpn_view(daemon)["tunnel_probe"] or {}).get("tunnel_up"))
    started = []
    for key, engine in zip(("one", "two"), engines, strict=True):
        code, body = stream_started(daemon, engine["host"], engine["port"], key)
        assert code == 200 and body["container_id"] == engine["container_id"], body
        started.append(body["id"])
    ids = {e["container_id"] for e in engines}
    before = starts(ids)

    cut_at = time.monotonic()
    internet.cut(vpn_name)  # the probe's dials fail: the tunnel looks dead
    wait_for("the engines hidden while the tunnel is down", lambda: daemon.engines() == [], timeout=15)
    assert vpn_view(daemon)["state"] == "unhealthy"
    time.sleep(max(0.0, 6 - (time.monotonic() - cut_at)))  # a blip of about 6 s
    internet.mend(vpn_name)

    back = daemon.wait_engines(2, timeout=30)
    assert {e["container_id"] for e in back} == ids, "the same containers, not new ones"
    time.sleep(2)  # a restart planned on recovery would have happened by now
    assert starts(ids) == before, "an engine was restarted for a blip the tunnel survived"
    assert listed_ids(daemon) == ids
    assert sorted(s["id"] for s in streams(daemon, "started")) == sorted(started)
    assert streams(daemon, "ended") == []
    by_id = {e["container_id"]: e for e in daemon.engines()}
    assert sorted(s for e in by_id.values() for s in e["streams"]) == sorted(started)
    assert vpn_view(daemon)["reconnected_at"] is None


# -- 2. a reconnect inside the same Gluetun container ---------------------------------------


def reconnect_setup(make_daemon: MakeDaemon, vpn_name: str, restart_on_reconnect: bool) -> Daemon:
    run_gluetun(vpn_name)
    wait_vpn_health(vpn_name, "healthy")
    return make_daemon(
        engines={"min_replicas": 3, "min_free": 0},
        vpn={
            "mode": "single",
            "containers": [vpn_name],
            "health_check_interval_s": 0.5,
            "restart_engines_on_reconnect": restart_on_reconnect,
        },
    )


def new_public_ip(daemon: Daemon, vpn_name: str, ip: str) -> None:
    assert vpn_view(daemon)["public_ip"] == "203.0.113.7"
    docker("exec", vpn_name, "standin-public-ip", ip)  # healthy throughout: only the IP changes
    wait_for("the daemon read the new public IP", lambda: vpn_view(daemon)["public_ip"] == ip, timeout=15)


def test_a_reconnect_restarts_idle_engines_at_once_and_a_busy_one_once_its_stream_ended(
    make_daemon: MakeDaemon, vpn_name: str
) -> None:
    daemon = reconnect_setup(make_daemon, vpn_name, restart_on_reconnect=True)
    engines = daemon.wait_engines(3, timeout=30)
    busy = engines[0]["container_id"]
    idle = {e["container_id"] for e in engines[1:]}
    code, body = stream_started(daemon, engines[0]["host"], engines[0]["port"], "live")
    assert code == 200 and body["container_id"] == busy, body
    stream_id = body["id"]
    before = starts({busy, *idle})

    new_public_ip(daemon, vpn_name, "198.51.100.23")
    assert vpn_view(daemon)["reconnected_at"] is not None
    wait_for(
        "the idle engines restarted and listed again",
        lambda: all(started_at(c) > before[c] for c in idle) and idle <= listed_ids(daemon),
        timeout=30,
    )
    assert busy not in listed_ids(daemon), "a busy engine of the old tunnel is no place for new streams"
    assert started_at(busy) == before[busy], "the busy engine was restarted under its viewer"
    assert [s["id"] for s in streams(daemon, "started")] == [stream_id]
    time.sleep(2)  # still carrying its stream: still not restarted, still hidden
    assert started_at(busy) == before[busy]
    assert busy not in listed_ids(daemon)
    assert streams(daemon, "ended") == []

    assert stream_ended(daemon, stream_id)[0] == 200
    wait_for("the busy engine restarted once idle", lambda: started_at(busy) > before[busy], timeout=20)
    wait_for("it is listed again", lambda: busy in listed_ids(daemon), timeout=20)
    assert [(s["id"], s["end_reason"]) for s in streams(daemon, "ended")] == [
        (stream_id, "client_disconnected")
    ]


def test_without_restart_engines_on_reconnect_a_reconnect_restarts_nothing(
    make_daemon: MakeDaemon, vpn_name: str
) -> None:
    daemon = reconnect_setup(make_daemon, vpn_name, restart_on_reconnect=False)
    engines = daemon.wait_engines(3, timeout=30)
    ids = {e["container_id"] for e in engines}
    code, body = stream_started(daemon, engines[0]["host"], engines[0]["port"], "live")
    assert code == 200, body
    before = starts(ids)

    new_public_ip(daemon, vpn_name, "198.51.100.24")
    time.sleep(3)  # six control-server polls: any restart would be under way
    assert starts(ids) == before
    assert listed_ids(daemon) == ids
    assert [s["id"] for s in streams(daemon, "started")] == [body["id"]]


# -- 3. a forwarded port another engine binds -----------------------------------------------


def namespace_ports(vpn: str, pool: str) -> dict[str, list[int]]:
    """The ports each live container of the namespace (created, running or restarting: not one
    that exited, or is being removed) says it binds, by its labels."""
    out = {}
    live = ("status=created", "status=running", "status=restarting")
    for cid in containers(f"label=orchestrator.vpn={vpn}", f"label=orchestrator.pool={pool}", *live):
        labels = (inspect(cid) or {}).get("Config", {}).get("Labels") or {}
        out[cid] = [int(labels[k]) for k in PORT_LABELS if labels.get(k, "0") not in ("", "0")]
    return out


def no_port_twice(vpn: str, pool: str) -> dict[str, list[int]]:
    held = namespace_ports(vpn, pool)
    every = [p for ports in held.values() for p in ports]
    assert len(every) == len(set(every)), f"a port given to two containers of the namespace: {held}"
    return held


def clashing_port_setup(
    make_daemon: MakeDaemon, vpn_name: str, busy: bool
) -> tuple[Daemon, dict[str, Any], str | None]:
    """Three engines behind a stand-in forwarding no port, then the stand-in forwards the HTTP
    port of one of them (the clasher), idle or carrying a stream: the daemon, the clasher and
    the stream's ID."""
    run_gluetun(vpn_name)  # no forwarded port yet
    wait_vpn_health(vpn_name, "healthy")
    daemon = make_daemon(
        engines={"min_replicas": 3, "min_free": 0, "idle_ttl_s": 2},
        vpn={"mode": "single", "containers": [vpn_name], "health_check_interval_s": 0.5},
    )
    engines = daemon.wait_engines(3, timeout=30)
    assert not any(e["forwarded"] for e in engines)
    clasher = max(engines, key=lambda e: e["port"])
    labels = (inspect(clasher["container_id"]) or {})["Config"]["Labels"]
    assert int(labels["orchestrator.http_port"]) == clasher["port"]
    stream_id = None
    if busy:
        code, body = stream_started(daemon, clasher["host"], clasher["port"], "live")
        assert code == 200 and body["container_id"] == clasher["container_id"], body
        stream_id = body["id"]
    docker("exec", vpn_name, "standin-set-port", str(clasher["port"]))
    wait_for(
        "the daemon read the forwarded port", lambda: vpn_view(daemon)["forwarded_port"] == clasher["port"]
    )
    return daemon, clasher, stream_id


def wait_forwarded_engine(daemon: Daemon, vpn_name: str, port: int) -> dict[str, Any]:
    """Three engines listed, one forwarding `port`, and no port on two live containers of the
    namespace at any step on the way; then it is the only container holding `port`."""
    pool = daemon.config["engines"]["pool"]

    def settled() -> list[dict[str, Any]] | None:
        no_port_twice(vpn_name, pool)
        got = daemon.engines()
        return got if len(got) == 3 and [e["p2p_port"] for e in got if e["forwarded"]] == [port] else None

    listed = wait_for(
        "three engines listed, one of them forwarding the port", settled, timeout=45, interval=0.3
    )
    time.sleep(1)
    held = no_port_twice(vpn_name, pool)
    (forwarded,) = [e for e in listed if e["forwarded"]]
    assert [cid for cid, ports in held.items() if port in ports] == [forwarded["container_id"]]
    assert "forwarded_port_taken" not in [p["code"] for p in daemon.status()["problems"]]
    return dict(forwarded)


def test_a_forwarded_port_an_idle_engine_binds_makes_it_give_way_never_shared(
    make_daemon: MakeDaemon, vpn_name: str
) -> None:
    daemon, clasher, _ = clashing_port_setup(make_daemon, vpn_name, busy=False)
    wait_forwarded_engine(daemon, vpn_name, clasher["port"])
    assert inspect(clasher["container_id"]) is None, "the engine holding the port made way"
    assert clasher["container_id"] not in listed_ids(daemon)


def test_a_forwarded_port_a_busy_engine_binds_waits_for_its_stream_to_end(
    make_daemon: MakeDaemon, vpn_name: str
) -> None:
    daemon, clasher, stream_id = clashing_port_setup(make_daemon, vpn_name, busy=True)
    pool = daemon.config["engines"]["pool"]
    before = started_at(clasher["container_id"])
    wait_for(
        "forwarded_port_taken on /status",
        lambda: "forwarded_port_taken" in [p["code"] for p in daemon.status()["problems"]],
    )
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:  # the viewer keeps watching; nobody gets the port
        no_port_twice(vpn_name, pool)
        assert not any(e["forwarded"] for e in daemon.engines())
        time.sleep(0.3)
    assert started_at(clasher["container_id"]) == before
    assert [s["id"] for s in streams(daemon, "started")] == [stream_id]

    assert stream_id is not None and stream_ended(daemon, stream_id)[0] == 200
    wait_forwarded_engine(daemon, vpn_name, clasher["port"])  # after idle_ttl_s, it made way
    assert inspect(clasher["container_id"]) is None


# -- 4. Gluetun's forced restart counts from the tunnel going down -------------------------


def docker_restarts_since(container_id: str, since: float) -> list[dict[str, Any]]:
    out = docker(
        "events",
        "--since",
        f"{since:.3f}",
        "--until",
        f"{time.time():.3f}",
        "--filter",
        f"container={container_id}",
        "--format",
        "{{json .}}",
    )
    events = [json.loads(line) for line in out.splitlines() if line]
    return [ev for ev in events if ev.get("Action") in ("restart", "die", "kill", "stop", "start")]


def test_an_unreachable_control_server_does_not_make_a_probe_blip_a_gluetun_restart(
    make_daemon: MakeDaemon, vpn_name: str, internet: Internet
) -> None:
    gluetun_id = internet.vpn_on(vpn_name)
    daemon = make_daemon(
        engines={"min_replicas": 1, "min_free": 0},
        vpn={
            "mode": "single",
            "containers": [vpn_name],
            "port_range": "19000-19399",
            "api_port": 8765,  # nothing listens there: the control server is out of reach from the start
            "health_check_interval_s": 0.5,
            "tunnel_probe": {"target": f"{internet.ip}:80", **FAST_PROBE},
        },  # unhealthy_restart_timeout_s: 300, the default
    )
    unreachable_from = time.monotonic()
    daemon.wait_engines(1, timeout=30)
    wait_for("the control server reported out of reach", lambda: vpn_view(daemon)["control_error"])
    wait_for("the probe's first verdict", lambda: (vpn_view(daemon)["tunnel_probe"] or {}).get("tunnel_up"))
    # past the 60 s a silent control server is given: counted from its first failed connect, as
    # before, the tunnel going down now would be "down and control server dead" at once
    time.sleep(max(0.0, 62 - (time.monotonic() - unreachable_from)))
    before = (inspect(gluetun_id) or {})["State"]
    since = time.time()

    internet.cut(vpn_name)
    wait_for("the engines hidden", lambda: daemon.engines() == [], timeout=15)
    time.sleep(max(0.0, 8 - (time.time() - since)))
    after = (inspect(gluetun_id) or {})["State"]
    assert after["StartedAt"] == before["StartedAt"] and after["Running"]
    assert docker_restarts_since(gluetun_id, since) == [], "Gluetun was restarted through Docker"
    view = vpn_view(daemon)
    assert (
        view["state"] == "unhealthy" and view["forced_restarts"] == 0 and view["last_forced_restart"] is None
    )
    assert daemon.engines() == []

    internet.mend(vpn_name)
    daemon.wait_engines(1, timeout=30)
