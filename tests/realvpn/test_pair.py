"""Smoke test of the two-Gluetun bed (the daemon's redundant mode): independent tunnels."""

from __future__ import annotations

import time

import pytest

from tests.integration.harness import docker
from tests.realvpn.bed import RealVpnBed

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
