"""Single-VPN mode against the Gluetun stand-in on the real Docker engine."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from testkit.harness import (
    Daemon,
    docker,
    engine_info,
    inspect,
    run_gluetun,
    set_vpn_health,
    started_at,
    vpn_ip,
    wait_for,
    wait_vpn_health,
)

MakeDaemon = Callable[..., Daemon]
FORWARDED = 40001


@pytest.fixture
def vpn_name() -> Iterator[str]:
    name = f"gluetun-test-{uuid.uuid4().hex[:6]}"
    yield name
    docker("rm", "-f", name, check=False)


def vpn_daemon(make_daemon: MakeDaemon, vpn: str, replicas: int = 3, **vpn_keys: Any) -> Daemon:
    return make_daemon(
        engines={"min_replicas": replicas},
        vpn={"mode": "single", "containers": [vpn], "health_check_interval_s": 0.5, **vpn_keys},
    )


def all_reachable(engines: list[dict[str, Any]]) -> bool:
    return all(
        (engine_info(e["host"], e["port"]) or {}).get("CONTAINER_ID") == e["container_id"] for e in engines
    )


def test_engines_share_the_vpn_namespace_on_distinct_ports(make_daemon: MakeDaemon, vpn_name: str) -> None:
    gluetun_id = run_gluetun(vpn_name, forwarded_port=FORWARDED)
    wait_vpn_health(vpn_name, "healthy")
    daemon = vpn_daemon(make_daemon, vpn_name)
    listed = daemon.wait_engines(3, where=lambda e: True)
    wait_for(
        "exactly one forwarded engine",
        lambda: sum(e["forwarded"] for e in daemon.engines()) == 1 and len(daemon.engines()) == 3,
    )
    listed = daemon.engines()
    assert {e["port"] for e in listed} == {19000, 19001, 19002}
    assert all(e["host"] == vpn_ip(vpn_name) and e["vpn_container"] == vpn_name for e in listed)
    for engine in listed:
        raw = inspect(engine["container_id"])
        assert raw is not None and raw["HostConfig"]["NetworkMode"] == f"container:{gluetun_id}"
        assert raw["HostConfig"]["PortBindings"] in (None, {})
        info = engine_info(engine["host"], engine["port"])
        assert info is not None and info["CONTAINER_ID"] == engine["container_id"]
        # what the engine really binds, from the flags its image's entrypoint gave it
        assert info["ports"] == {
            "http": engine["port"],
            "https": engine["https_port"],
            "api": engine["api_port"],
            "p2p": engine["p2p_port"],
        }
    bound = [p for e in listed for p in (engine_info(e["host"], e["port"]) or {})["ports"].values()]
    assert len(bound) == 12 and len(set(bound)) == 12, f"a port bound twice in one namespace: {bound}"
    (forwarded,) = [e for e in listed if e["forwarded"]]
    info = engine_info(forwarded["host"], forwarded["port"])
    assert info is not None and info["ports"]["p2p"] == FORWARDED and f"--port={FORWARDED}" in info["flags"]
    vpn = daemon.get("/vpn/status")[1]["vpns"][0]
    assert vpn["state"] == "healthy" and vpn["forwarded_port"] == FORWARDED
    assert vpn["public_ip"] == "203.0.113.7" and vpn["container_id"] == gluetun_id
    assert any(
        ev.get("event") == f"Gluetun monitor started for container '{vpn_name}'" for ev in daemon.log_events()
    )


def test_unhealthy_then_healthy_on_the_same_run_restarts_nothing(
    make_daemon: MakeDaemon, vpn_name: str
) -> None:
    """A blip the tunnel survived (same container run, same public IP): issue 18's rule."""
    run_gluetun(vpn_name)
    wait_vpn_health(vpn_name, "healthy")
    daemon = vpn_daemon(make_daemon, vpn_name, replicas=2)
    before = {e["container_id"]: started_at(e["container_id"]) for e in daemon.wait_engines(2)}
    set_vpn_health(vpn_name, False)
    wait_for("engines hidden", lambda: daemon.engines() == [], timeout=15)
    assert set(daemon.managed(running_only=True)) == set(before)  # hidden, not removed
    set_vpn_health(vpn_name, True)
    after = daemon.wait_engines(2, timeout=20)
    assert {e["container_id"] for e in after} == set(before)
    time.sleep(1.5)  # a restart planned on recovery would be under way by now
    assert {cid: started_at(cid) for cid in before} == before, "engines restarted for a blip"
    assert all_reachable(after)
    events = [ev.get("event") for ev in daemon.log_events()]
    assert "Gluetun VPN became unhealthy" in events
    assert "Gluetun VPN recovered and is now healthy" in events
    assert "VPN reconnected - triggering AceStream engine restart" not in events


def test_docker_restart_of_vpn_brings_engines_back(make_daemon: MakeDaemon, vpn_name: str) -> None:
    run_gluetun(vpn_name)
    wait_vpn_health(vpn_name, "healthy")
    daemon = vpn_daemon(make_daemon, vpn_name, replicas=2)
    ids = {e["container_id"] for e in daemon.wait_engines(2)}
    docker("restart", "-t", "1", vpn_name)
    wait_for(
        "engines restarted and reachable",
        lambda: (
            len(listed := daemon.engines()) == 2
            and all_reachable(listed)
            and {e["container_id"] for e in listed} == ids
        ),
        timeout=30,
    )


def test_recreated_vpn_gets_its_engines_recreated(make_daemon: MakeDaemon, vpn_name: str) -> None:
    run_gluetun(vpn_name)
    wait_vpn_health(vpn_name, "healthy")
    daemon = vpn_daemon(make_daemon, vpn_name, replicas=2)
    old = {e["container_id"] for e in daemon.wait_engines(2)}
    docker("rm", "-f", vpn_name)
    wait_for("engines hidden while the VPN is gone", lambda: daemon.engines() == [])
    assert set(daemon.managed()) == old  # kept (with their ports) until the VPN returns
    new_id = run_gluetun(vpn_name)
    listed = wait_for(
        "engines recreated on the new VPN",
        lambda: (
            got
            if len(got := daemon.engines()) == 2
            and not ({e["container_id"] for e in got} & old)
            and all_reachable(got)
            else None
        ),
        timeout=30,
    )
    for engine in listed:
        raw = inspect(engine["container_id"])
        assert raw is not None and raw["HostConfig"]["NetworkMode"] == f"container:{new_id}"
    wait_for("old engines removed", lambda: set(daemon.managed()) == {e["container_id"] for e in listed})


def test_no_engine_starts_while_the_vpn_is_unhealthy(make_daemon: MakeDaemon, vpn_name: str) -> None:
    run_gluetun(vpn_name, unhealthy=True)
    wait_vpn_health(vpn_name, "unhealthy")
    daemon = vpn_daemon(make_daemon, vpn_name, replicas=2, wait_healthy_s=1)
    problems = wait_for(
        "vpn_wait_timeout on /status",
        lambda: (
            codes
            if "vpn_wait_timeout" in (codes := [p["code"] for p in daemon.status()["problems"]])
            else None
        ),
    )
    assert "vpn_unhealthy" in problems
    time.sleep(1)
    assert daemon.managed() == []
    set_vpn_health(vpn_name, True)
    listed = daemon.wait_engines(2, timeout=20)
    assert all_reachable(listed)
    assert daemon.status()["problems"] == []


def test_changed_forwarded_port_recreates_the_forwarded_engine(
    make_daemon: MakeDaemon, vpn_name: str
) -> None:
    run_gluetun(vpn_name, forwarded_port=FORWARDED)
    wait_vpn_health(vpn_name, "healthy")
    daemon = vpn_daemon(make_daemon, vpn_name, replicas=2)

    def forwarded() -> list[dict[str, Any]]:
        return [e for e in daemon.engines() if e["forwarded"]]

    (first,) = wait_for(
        "a forwarded engine", lambda: f if len(daemon.engines()) == 2 and len(f := forwarded()) == 1 else None
    )
    docker("exec", vpn_name, "standin-set-port", "40002")
    (second,) = wait_for(
        "forwarded engine recreated with the new port",
        lambda: f if len(f := forwarded()) == 1 and f[0]["container_id"] != first["container_id"] else None,
        timeout=20,
    )
    info = engine_info(second["host"], second["port"])
    assert info is not None and info["ports"]["p2p"] == 40002
    assert inspect(first["container_id"]) is None
    assert len(daemon.wait_engines(2)) == 2


def test_missing_vpn_and_bad_credentials_are_reported(make_daemon: MakeDaemon, vpn_name: str) -> None:
    daemon = vpn_daemon(make_daemon, vpn_name, replicas=1)
    wait_for(
        "vpn_missing on /status", lambda: "vpn_missing" in [p["code"] for p in daemon.status()["problems"]]
    )
    run_gluetun(vpn_name, api_key="right-key")
    wait_vpn_health(vpn_name, "healthy")
    daemon.write_config(vpn={"api_key": "wrong-key"})
    # the read made while the container was starting may still be the last one shown (a refused
    # connection) until the read that its turning healthy sets off answers
    error = wait_for(
        "a 401 reported as bad credentials",
        lambda: (
            e if "401" in (e := daemon.get("/vpn/status")[1]["vpns"][0].get("control_error") or "") else None
        ),
        timeout=20,
    )
    assert "api_key" in error
    assert daemon.get("/vpn/status")[1]["vpns"][0]["state"] == "healthy"  # not "VPN down"
    daemon.wait_engines(1)
    daemon.write_config(vpn={"api_key": "right-key"})
    wait_for(
        "control server read with the right key",
        lambda: (
            (v := daemon.get("/vpn/status")[1]["vpns"][0])["control_error"] is None
            and v["public_ip"] == "203.0.113.7"
        ),
        timeout=20,
    )


def test_gluetun_master_without_credentials_is_diagnosed_not_down(
    make_daemon: MakeDaemon, vpn_name: str
) -> None:
    """Gluetun master has no public role: with no key configured on either side every route is
    401. /status names the setting to change (the default role), once, and the engines stay."""
    run_gluetun(vpn_name, release="master")
    wait_vpn_health(vpn_name, "healthy")
    daemon = vpn_daemon(make_daemon, vpn_name, replicas=2)

    def diagnosed() -> dict[str, Any] | None:
        found = [p for p in daemon.status()["problems"] if p["code"] == "gluetun_auth_required"]
        return found[0] if found else None

    problem = wait_for("gluetun_auth_required on /status", diagnosed, timeout=30)
    assert problem["vpn"] == vpn_name
    assert "HTTP_CONTROL_SERVER_AUTH_DEFAULT_ROLE" in problem["message"]
    assert "master" in problem["message"] and "vpn.api_key" in problem["message"]
    # not "the VPN is down": the VPN stays healthy and its engines listed and reachable
    engines = daemon.wait_engines(2)
    assert all_reachable(engines)
    assert daemon.get("/vpn/status")[1]["vpns"][0]["state"] == "healthy"
    codes = [p["code"] for p in daemon.status()["problems"]]
    assert not {"vpn_missing", "vpn_stopped", "vpn_unhealthy", "vpn_disconnected", "vpn_wait_timeout"} & set(
        codes
    ), codes
    time.sleep(3)  # several polls at 0.5 s: still one log line for it, with the setting
    logged = [e for e in daemon.log_events() if e.get("event") == "gluetun_auth_required"]
    assert len(logged) == 1, logged
    assert logged[0]["vpn"] == vpn_name and logged[0]["message"] == problem["message"]


def test_tunnel_down_or_new_public_ip_inside_gluetun_is_acted_on(
    make_daemon: MakeDaemon, vpn_name: str
) -> None:
    """What Docker's health check never shows: the control server says the tunnel stopped
    (engines hidden), then running again with the same exit (a blip: the engines come back as
    they were), then a new public IP (a reconnect: the idle engines are restarted)."""
    run_gluetun(vpn_name)
    wait_vpn_health(vpn_name, "healthy")
    daemon = vpn_daemon(make_daemon, vpn_name, replicas=2)
    before = {e["container_id"]: started_at(e["container_id"]) for e in daemon.wait_engines(2)}
    docker("exec", vpn_name, "standin-vpn-status", "stopped")
    wait_for("engines hidden while the tunnel is down", lambda: daemon.engines() == [])
    docker("exec", vpn_name, "standin-vpn-status", "running")
    listed = daemon.wait_engines(2, timeout=20)
    assert all(started_at(e["container_id"]) == before[e["container_id"]] for e in listed), (
        "the same exit again is no reconnect: nothing restarted"
    )
    restarted = {e["container_id"]: started_at(e["container_id"]) for e in listed}
    docker(
        "exec",
        vpn_name,
        "sh",
        "-c",
        'echo \'{"public_ip": "198.51.100.1"}\' > /run/standin/www/v1/publicip/ip',
    )
    wait_for(
        "engines restarted after the public IP changed",
        lambda: (
            len(got := daemon.engines()) == 2
            and all(started_at(e["container_id"]) > restarted[e["container_id"]] for e in got)
        ),
        timeout=20,
    )
    assert daemon.get("/vpn/status")[1]["vpns"][0]["public_ip"] == "198.51.100.1"
