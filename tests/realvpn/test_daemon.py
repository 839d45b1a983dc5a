"""The daemon with its engines behind the lane's Gluetun (the stand-in with a real WireGuard tunnel,
or REALVPN_GLUETUN_IMAGE).

One bed and one daemon for the module (tests run in file order, the destructive ones last): two
engine stand-ins in Gluetun's network namespace, `engines.address: ip`, the control server read
with the bed's key every second, the tunnel probe dialling the bed's target (reachable only
through the tunnel; never a public address) every 1 s with a 1 s timeout and 2 misses in a row
(testkit/realvpn/daemon.py `PROBE`), and `vpn.unhealthy_restart_timeout_s: 45`, longer than the
outage the kill test makes.

What it proves: the engines reach the target through the tunnel only and serve a stream; the
control server is read with the key (a wrong key is reported as bad credentials, and the engines
still run); a killed tunnel hides the engines through the probe well before Docker's own
`unhealthy` (~15-20 s on the stand-in with the bed's small check; ~14 s measured on v3.39.1) and
they come back restarted once it works, with Gluetun left alone; a `docker restart` of Gluetun
and a recreation bring the engines back in the new namespace.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.harness import (
    ENGINE_IMAGE,
    Daemon,
    docker,
    engine_info,
    inspect,
    started_at,
    wait_for,
)
from testkit.realvpn.bed import RealVpnBed
from testkit.realvpn.daemon import (
    bed_daemon,
    probes,
    stop_daemon,
    stream_bytes,
    vpn_view,
    wait_ready,
    whoami,
)
from tests.realvpn.conftest import BedFactory

pytestmark = [pytest.mark.realvpn, pytest.mark.docker]

ENGINES = 2
RESTART_TIMEOUT_S = 45
OUTAGE_S = 25  # the killed tunnel stays dead this long: past Docker's unhealthy, short of the timeout
Record = Callable[[str, object], None]


@pytest.fixture(scope="module")
def real_vpn(real_vpn_factory: BedFactory) -> RealVpnBed:
    if not docker("images", "-q", ENGINE_IMAGE, check=False):
        pytest.fail(f"engine stand-in image {ENGINE_IMAGE} missing; run testbed/build-images.sh")
    return real_vpn_factory(1, control_server_log=False)


@pytest.fixture(scope="module")
def daemon(real_vpn: RealVpnBed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    made = bed_daemon(
        real_vpn,
        tmp_path_factory.mktemp("daemon"),
        engines=ENGINES,
        unhealthy_restart_timeout_s=RESTART_TIMEOUT_S,
    )
    try:
        made.start()
        yield made
    finally:
        stop_daemon(made)


@pytest.fixture
def bed(real_vpn: RealVpnBed, daemon: Daemon) -> RealVpnBed:
    """Each test starts from a healthy Gluetun and every engine listed."""
    real_vpn.wait_healthy(real_vpn.gluetun, timeout=90)
    wait_ready(daemon, ENGINES, timeout=60)
    return real_vpn


def answering(listed: list[dict[str, Any]]) -> bool:
    return all(
        (engine_info(e["host"], e["port"]) or {}).get("CONTAINER_ID") == e["container_id"] for e in listed
    )


def forced_restarts(daemon: Daemon) -> list[dict[str, Any]]:
    return [ev for ev in daemon.log_events() if ev.get("event") == "vpn_force_restart"]


def test_engines_reach_the_target_through_the_tunnel_and_serve_streams(
    bed: RealVpnBed, daemon: Daemon
) -> None:
    g = bed.gluetun
    gluetun_id = (inspect(g) or {})["Id"]
    listed = daemon.engines()
    assert len(listed) == ENGINES
    for engine in listed:
        assert engine["host"] == bed.gluetun_ip(g) and engine["vpn_container"] == g
        raw = inspect(engine["container_id"])
        assert raw is not None and raw["HostConfig"]["NetworkMode"] == f"container:{gluetun_id}"
        # the target sees the engine's traffic leave the tunnel's far end, not Gluetun's address
        seen = whoami(engine["container_id"], bed.target_address)
        assert seen is not None and bed.exit_ip(g) in seen, seen
        assert bed.gluetun_ip(g) not in seen
    session, data = stream_bytes(listed[0], want=16 * 1024)
    assert session["playback_url"].startswith(f"http://{listed[0]['host']}:{listed[0]['port']}/")
    assert len(data) == 16 * 1024 and data[0] == 0x47, data[:8]  # MPEG-TS sync byte
    (probe,) = probes(daemon)
    assert probe["HostConfig"]["NetworkMode"] == f"container:{gluetun_id}"
    assert probe["Image"] == (inspect(g) or {})["Image"], "the probe runs Gluetun's own image"


def test_the_control_server_is_read_with_the_key(bed: RealVpnBed, daemon: Daemon) -> None:
    vpn = wait_for(
        "a control-server reading",
        lambda: v if (v := vpn_view(daemon)).get("control_status") == "running" else None,
        timeout=10,
    )
    assert vpn["control_error"] is None, vpn
    assert vpn["state"] == "healthy" and vpn["docker_health"] == "healthy"
    assert vpn["container_id"] == (inspect(bed.gluetun) or {})["Id"]
    assert vpn["ip"] == bed.gluetun_ip(bed.gluetun)
    assert not any(ev.get("event") == "gluetun_control_error" for ev in daemon.log_events())


def test_a_wrong_key_is_reported_and_the_engines_still_run(
    bed: RealVpnBed, daemon: Daemon, tmp_path: Path
) -> None:
    assert bed.control_get(bed.gluetun, "/v1/vpn/status", key="not-the-key")[0] == 401
    wrong = bed_daemon(
        bed,
        tmp_path / "wrong-key",
        engines=1,
        max_replicas=1,
        port_range="19500-19503",
        api_key="not-the-key",
    )
    try:
        wrong.start()
        vpn = wait_for(
            "a 401 reported as bad credentials",
            lambda: v if "vpn.api_key" in ((v := vpn_view(wrong)).get("control_error") or "") else None,
            timeout=20,
        )
        assert "401" in vpn["control_error"], vpn
        assert vpn["control_status"] is None
        # Docker's health and the probe decide: the engine is placed and listed all the same
        (listed,) = wait_ready(wrong, 1, timeout=30)
        assert answering([listed])
        assert vpn_view(wrong)["state"] == "healthy"
        assert any(ev.get("event") == "gluetun_control_error" for ev in wrong.log_events())
    finally:
        stop_daemon(wrong)
    assert len(daemon.engines()) == ENGINES  # the other daemon's engines never noticed


def test_a_killed_tunnel_hides_the_engines_before_docker_notices_and_gluetun_is_left_alone(
    bed: RealVpnBed, daemon: Daemon, record_property: Record
) -> None:
    g = bed.gluetun
    gluetun_started = (inspect(g) or {})["State"]["StartedAt"]
    before = {e["container_id"]: started_at(e["container_id"]) for e in daemon.engines()}

    killed = time.time()
    bed.kill_tunnel(g)
    wait_for("engines hidden by the probe", lambda: daemon.engines() == [], timeout=15, interval=0.05)
    hidden_s = time.time() - killed
    assert bed.docker_health(g) == "healthy", "Docker noticed first: the probe proved nothing"
    assert set(daemon.managed(running_only=True)) >= set(before), "hidden, not removed"
    assert whoami(next(iter(before)), bed.target_address) is None
    unhealthy_s = bed.wait_health(g, "unhealthy", timeout=60, since=killed)
    assert hidden_s < unhealthy_s, (hidden_s, unhealthy_s)  # the figures: bench/real_gluetun.py
    view = vpn_view(daemon)
    assert view["state"] == "unhealthy" and view["tunnel_probe"]["tunnel_up"] is False, view

    time.sleep(max(0.0, killed + OUTAGE_S - time.time()))
    assert daemon.engines() == []
    restored = time.time()
    bed.restore_tunnel(g)
    back = wait_ready(daemon, ENGINES, timeout=60)
    back_s = time.time() - restored
    assert {e["container_id"] for e in back} == set(before)
    # the tunnel came back in the same Gluetun run with the same exit: a blip, not a reconnect.
    # The engines' namespace lives, so they serve again through the real tunnel unrestarted
    assert all(started_at(cid) == before[cid] for cid in before), "a blip restarted engines"
    assert answering(back)
    assert all(bed.exit_ip(g) in (whoami(cid, bed.target_address) or "") for cid in before)

    # an outage shorter than unhealthy_restart_timeout_s: Gluetun healed itself, nobody restarted it
    assert (inspect(g) or {})["State"]["StartedAt"] == gluetun_started
    assert forced_restarts(daemon) == []
    assert vpn_view(daemon)["forced_restarts"] == 0
    events = [ev.get("event") for ev in daemon.log_events()]
    assert "VPN reconnected - triggering AceStream engine restart" not in events
    assert "Gluetun VPN recovered and is now healthy" in events
    record_property("kill_to_hidden_s", round(hidden_s, 2))
    record_property("kill_to_docker_unhealthy_s", round(unhealthy_s, 2))
    record_property("restore_to_listed_s", round(back_s, 2))
    print(f"hidden {hidden_s:.2f}s after the kill (Docker unhealthy {unhealthy_s:.2f}s); back {back_s:.2f}s")


def test_docker_restart_of_gluetun_restarts_the_engines_into_the_new_namespace(
    bed: RealVpnBed, daemon: Daemon, record_property: Record
) -> None:
    g = bed.gluetun
    before = {e["container_id"]: started_at(e["container_id"]) for e in daemon.engines()}
    (old_probe,) = probes(daemon)
    began = time.time()
    bed.restart_gluetun(g, stop_timeout=2)
    gluetun_started = started_at(g)
    back = wait_for(
        "engines restarted after Gluetun and answering",
        lambda: (
            got
            if len(got := daemon.engines()) == ENGINES
            and {e["container_id"] for e in got} == set(before)
            and all(started_at(e["container_id"]) > gluetun_started for e in got)
            and answering(got)
            else None
        ),
        timeout=60,
        interval=0.2,
    )
    took = time.time() - began
    assert all(bed.exit_ip(g) in (whoami(e["container_id"], bed.target_address) or "") for e in back)
    # the probe is restarted (same container) when Gluetun runs, the engines when it is healthy:
    # the engines back say nothing of whether the probe's restart is done yet
    wait_for(
        "the probe restarted in the new namespace",
        lambda: (
            [p["Id"] for p in probes(daemon)] == [old_probe["Id"]]
            and started_at(old_probe["Id"]) > gluetun_started
        ),
    )
    assert forced_restarts(daemon) == []
    record_property("docker_restart_to_listed_s", round(took, 2))
    print(f"docker restart -> engines listed again in {took:.2f}s")


def test_recreated_gluetun_gets_its_engines_recreated_on_the_new_container(
    bed: RealVpnBed, daemon: Daemon, record_property: Record
) -> None:
    g = bed.gluetun
    old = {e["container_id"] for e in daemon.engines()}
    old_id = (inspect(g) or {})["Id"]
    began = time.time()
    bed.recreate_gluetun(g)
    new_id = (inspect(g) or {})["Id"]
    assert new_id != old_id
    listed = wait_for(
        "engines recreated on the new Gluetun and answering",
        lambda: (
            got
            if len(got := daemon.engines()) == ENGINES
            and not ({e["container_id"] for e in got} & old)
            and answering(got)
            else None
        ),
        timeout=60,
        interval=0.2,
    )
    took = time.time() - began
    for engine in listed:
        raw = inspect(engine["container_id"])
        assert raw is not None and raw["HostConfig"]["NetworkMode"] == f"container:{new_id}"
        assert bed.exit_ip(g) in (whoami(engine["container_id"], bed.target_address) or "")
    wait_for("the old engines removed", lambda: all(inspect(cid) is None for cid in old), timeout=30)
    wait_for(
        "one probe, on the new Gluetun",
        lambda: (
            (p := probes(daemon))
            and len(p) == 1
            and p[0]["HostConfig"]["NetworkMode"] == f"container:{new_id}"
        ),
        timeout=30,
    )
    assert vpn_view(daemon)["container_id"] == new_id
    record_property("recreate_to_listed_s", round(took, 2))
    print(f"recreate -> engines listed again in {took:.2f}s")
