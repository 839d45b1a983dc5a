"""Redundant mode: two Gluetun stand-ins, failover, recovery and forced VPN restarts."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
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
    wait_for,
    wait_vpn_health,
)

MakeDaemon = Callable[..., Daemon]


def start_vpns(names: tuple[str, str], **kwargs: Any) -> None:
    for port, name in enumerate(names, start=40001):
        run_gluetun(name, forwarded_port=port, **kwargs)
    for name in names:
        wait_vpn_health(name, "healthy")


def redundant_daemon(
    make_daemon: MakeDaemon, names: tuple[str, str], replicas: int = 4, **vpn_keys: Any
) -> Daemon:
    return make_daemon(
        engines={"min_replicas": replicas, "max_replicas": 6},
        vpn={"mode": "redundant", "containers": list(names), "health_check_interval_s": 0.5, **vpn_keys},
    )


def split(engines: list[dict[str, Any]]) -> Counter[str]:
    return Counter(e["vpn_container"] for e in engines)


def reachable(engine: dict[str, Any]) -> bool:
    return bool(
        (engine_info(engine["host"], engine["port"]) or {}).get("CONTAINER_ID") == engine["container_id"]
    )


def test_even_split_with_one_forwarded_engine_per_vpn(make_daemon: MakeDaemon, vpns: tuple[str, str]) -> None:
    a, b = vpns
    start_vpns(vpns)
    daemon = redundant_daemon(make_daemon, vpns)
    listed = wait_for(
        "4 engines, 2 per VPN, one forwarded each",
        lambda: (
            got
            if len(got := daemon.engines()) == 4
            and split(got) == {a: 2, b: 2}
            and split([e for e in got if e["forwarded"]]) == {a: 1, b: 1}
            else None
        ),
        timeout=30,
    )
    assert {e["port"] for e in listed if e["vpn_container"] == a} == {19000, 19001}
    assert {e["port"] for e in listed if e["vpn_container"] == b} == {19500, 19501}
    for engine in listed:
        assert reachable(engine)
        if engine["forwarded"]:
            info = engine_info(engine["host"], engine["port"])
            assert info is not None
            assert info["ports"]["p2p"] == (40001 if engine["vpn_container"] == a else 40002)
    vpn_status = daemon.get("/vpn/status")[1]
    assert [v["name"] for v in vpn_status["vpns"]] == [a, b]
    assert all(v["state"] == "healthy" for v in vpn_status["vpns"])


def test_failover_hides_only_the_failed_vpn_and_recovers(
    make_daemon: MakeDaemon, vpns: tuple[str, str]
) -> None:
    a, b = vpns
    start_vpns(vpns)
    daemon = redundant_daemon(make_daemon, vpns, replicas=4, unhealthy_restart_timeout_s=300)
    listed = wait_for(
        "2/2 split", lambda: got if len(got := daemon.engines()) == 4 and split(got) == {a: 2, b: 2} else None
    )
    a_ids = {e["container_id"]: started_at(e["container_id"]) for e in listed if e["vpn_container"] == a}
    b_ids = {e["container_id"]: started_at(e["container_id"]) for e in listed if e["vpn_container"] == b}

    set_vpn_health(a, False)
    wait_for("A's engines hidden", lambda: not any(e["vpn_container"] == a for e in daemon.engines()))
    hidden = [
        line
        for line in daemon.text("/metrics").splitlines()
        if line.startswith("acestream_orchestrator_hide_latency_seconds_count")
    ]
    assert hidden and float(hidden[0].split()[-1]) >= 1, hidden
    # B's engines carry on untouched, and replacements for A's go to B while A is down
    on_b = wait_for(
        "A's share replaced on B",
        lambda: got if len(got := daemon.engines()) == 4 and split(got) == {b: 4} else None,
        timeout=30,
    )
    assert all(reachable(e) for e in on_b)
    assert all(started_at(cid) == when for cid, when in b_ids.items())
    assert {cid for cid in a_ids} <= set(daemon.managed(running_only=True))  # hidden, not removed

    set_vpn_health(a, True)
    back = wait_for(
        "A's engines listed again, pool back to 2/2",
        lambda: got if split(got := daemon.engines()) == {a: 2, b: 2} else None,
        timeout=40,
    )
    assert {e["container_id"] for e in back if e["vpn_container"] == a} == set(a_ids)
    # a blip A's tunnel survived (same run, same public IP): not restarted (issue 18)
    assert all(started_at(cid) == when for cid, when in a_ids.items()), "A's engines restarted for a blip"
    assert all(reachable(e) for e in back)
    wait_for("surplus on B removed", lambda: len(daemon.managed()) == 4, timeout=20)


def test_vpn_kept_unhealthy_is_restarted_after_the_timeout(
    make_daemon: MakeDaemon, vpns: tuple[str, str]
) -> None:
    a, b = vpns
    run_gluetun(a, forwarded_port=40001, unhealthy=True)  # stays unhealthy across restarts
    run_gluetun(b, forwarded_port=40002)
    wait_vpn_health(a, "unhealthy")
    wait_vpn_health(b, "healthy")
    first_start = started_at(a)
    timeout = 4
    daemon = redundant_daemon(make_daemon, vpns, replicas=2, unhealthy_restart_timeout_s=timeout)
    began = time.monotonic()
    daemon.wait_engines(2, where=lambda e: e["vpn_container"] == b)
    time.sleep(max(0.0, timeout - 1.5 - (time.monotonic() - began)))
    assert started_at(a) == first_start, "restarted before the timeout"
    wait_for("first forced restart", lambda: started_at(a) != first_start, timeout=timeout + 5)
    second_start = started_at(a)
    wait_for(
        "second forced restart after a further timeout",
        lambda: started_at(a) != second_start,
        timeout=2 * timeout + 5,
    )
    restarts = [ev for ev in daemon.log_events() if ev.get("event") == "vpn_force_restart"]
    assert len(restarts) in (2, 3) and all(ev["vpn"] == a for ev in restarts)
    assert started_at(b) is not None and not any(ev["vpn"] == b for ev in restarts)


def test_both_vpns_down_empties_engines_and_status_says_why(
    make_daemon: MakeDaemon, vpns: tuple[str, str]
) -> None:
    a, b = vpns
    start_vpns(vpns)
    daemon = redundant_daemon(make_daemon, vpns, replicas=2, unhealthy_restart_timeout_s=300)
    daemon.wait_engines(2)
    set_vpn_health(a, False)
    set_vpn_health(b, False)
    wait_for("no engines listed", lambda: daemon.engines() == [])

    def both_reported() -> list[dict[str, Any]] | None:
        got: list[dict[str, Any]] = daemon.status()["problems"]
        seen = {(p["code"], p["vpn"]) for p in got}
        return got if seen >= {("vpn_unhealthy", a), ("vpn_unhealthy", b)} else None

    problems = wait_for("both VPNs reported", both_reported)
    assert "vpn_disconnected" in {p["code"] for p in problems}
    assert all(not v["healthy"] for v in daemon.get("/vpn/status")[1]["vpns"])


@pytest.mark.parametrize("stop", [("stop", "-t", "1"), ("kill",)], ids=["docker_stop", "docker_kill"])
def test_vpn_stopped_on_purpose_is_not_restarted(
    make_daemon: MakeDaemon, vpns: tuple[str, str], stop: tuple[str, ...]
) -> None:
    """docker kill exits 137 like a crash, but somebody asked for it: neither is fought over."""
    a, b = vpns
    start_vpns(vpns)
    daemon = redundant_daemon(make_daemon, vpns, replicas=2, unhealthy_restart_timeout_s=1)
    daemon.wait_engines(2)
    docker(*stop, a)
    wait_for(
        "vpn_stopped reported",
        lambda: ("vpn_stopped", a) in {(p["code"], p["vpn"]) for p in daemon.status()["problems"]},
    )
    time.sleep(3)
    info = inspect(a)
    assert info is not None and info["State"]["Status"] == "exited"
    assert not any(ev.get("event") == "vpn_force_restart" for ev in daemon.log_events())
    assert split(daemon.wait_engines(2)) == {b: 2}  # B carries the pool meanwhile


def test_crashed_vpn_is_restarted_but_a_stopped_one_is_not(
    make_daemon: MakeDaemon, vpns: tuple[str, str]
) -> None:
    a, b = vpns
    start_vpns(vpns)
    daemon = redundant_daemon(make_daemon, vpns, replicas=2, unhealthy_restart_timeout_s=2)
    daemon.wait_engines(2)
    # the VPN process dies on its own (exit 137, no docker stop/kill): a crash
    # the exec may be cut off by the very exit it causes: its own status does not matter
    docker("exec", a, "sh", "-c", "kill -9 $(pidof nc)", check=False)
    wait_for("A exited", lambda: (inspect(a) or {}).get("State", {}).get("Status") == "exited")
    wait_for(
        "the crashed VPN restarted by the daemon",
        lambda: (inspect(a) or {}).get("State", {}).get("Status") == "running",
        timeout=15,
    )
    assert any(ev.get("event") == "vpn_force_restart" and ev["vpn"] == a for ev in daemon.log_events())
    wait_for("A's engines back", lambda: split(daemon.engines()) == {a: 1, b: 1}, timeout=30)
