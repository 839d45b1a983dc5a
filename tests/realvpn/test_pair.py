"""Two Gluetun stand-ins, each with its own real tunnel: the bed's independence, then the daemon
in redundant mode over both with one tunnel killed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from testkit.harness import Daemon, docker, engine_info, wait_for
from testkit.realvpn.bed import RealVpnBed
from testkit.realvpn.daemon import bed_daemon, stop_daemon, whoami

pytestmark = [pytest.mark.realvpn, pytest.mark.docker]


def test_pair_has_independent_tunnels(real_vpn_pair: RealVpnBed) -> None:
    bed = real_vpn_pair
    a, b = bed.gluetun_names
    assert bed.gluetun_ip(a) != bed.gluetun_ip(b)
    assert bed.exit_ip(a) != bed.exit_ip(b)
    ns_a, ns_b = bed.start_in_namespace(a), bed.start_in_namespace(b)
    assert bed.exit_ip(a) in (bed.fetch(ns_a) or "")
    assert bed.exit_ip(b) in (bed.fetch(ns_b) or "")
    for g in (a, b):
        assert bed.control_get(g, "/v1/vpn/status") == (200, {"status": "running"})

    t_kill = time.time()
    bed.kill_tunnel(a)
    assert bed.fetch(ns_a, timeout=2) is None
    bed.wait_health(a, "unhealthy", timeout=60, since=t_kill)
    # the other VPN never noticed
    assert bed.docker_health(b) == "healthy"
    assert bed.exit_ip(b) in (bed.fetch(ns_b) or "")
    assert bed.health_event_time(b, "unhealthy", t_kill, time.time()) is None

    bed.restore_tunnel(a)
    bed.wait_healthy(a, timeout=60)
    assert bed.exit_ip(a) in (bed.fetch(ns_a) or "")
    docker("rm", "-f", ns_a, ns_b)


def test_redundant_mode_hides_the_killed_vpns_engines_and_keeps_the_other(
    real_vpn_pair: RealVpnBed, tmp_path: Path
) -> None:
    bed = real_vpn_pair
    a, b = bed.gluetun_names
    daemon = bed_daemon(bed, tmp_path / "daemon", engines=4, max_replicas=6, unhealthy_restart_timeout_s=600)
    try:
        daemon.start()
        _redundant_round(bed, daemon, a, b)
    finally:
        stop_daemon(daemon)


def _answering(engine: dict[str, Any]) -> bool:
    return bool(
        (engine_info(engine["host"], engine["port"]) or {}).get("CONTAINER_ID") == engine["container_id"]
    )


def _on(daemon: Daemon, name: str) -> list[dict[str, Any]]:
    return [e for e in daemon.engines() if e["vpn_container"] == name]


def _redundant_round(bed: RealVpnBed, daemon: Daemon, a: str, b: str) -> None:
    wait_for(
        "engines on both VPNs, answering",
        lambda: (
            (got := daemon.engines())
            and {e["vpn_container"] for e in got} == {a, b}
            and all(map(_answering, got))
        ),
        timeout=90,
        interval=0.2,
    )
    on_b = {e["container_id"] for e in _on(daemon, b)}
    for engine in _on(daemon, a):
        assert bed.exit_ip(a) in (whoami(str(engine["container_id"]), bed.target_address) or "")

    killed = time.time()
    bed.kill_tunnel(a)
    wait_for("a's engines hidden", lambda: not _on(daemon, a), timeout=20, interval=0.1)
    hidden_s = time.time() - killed
    assert bed.docker_health(a) == "healthy", "Docker noticed first: the probe proved nothing"
    # the other VPN's engines never left /engines and still reach the target through their tunnel
    listed_b = {e["container_id"] for e in _on(daemon, b)}
    assert on_b <= listed_b, (on_b, listed_b)
    for cid in on_b:
        assert bed.exit_ip(b) in (whoami(str(cid), bed.target_address) or "")
    print(f"redundant: {a}'s engines hidden {hidden_s:.2f}s after its tunnel was killed")

    bed.restore_tunnel(a)
    wait_for(
        "engines on both VPNs again",
        lambda: {e["vpn_container"] for e in daemon.engines() if _answering(e)} == {a, b},
        timeout=90,
        interval=0.2,
    )
