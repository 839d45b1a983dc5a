"""Smoke tests of the real-tunnel bed itself (no daemon): the Gluetun stand-in (or
REALVPN_GLUETUN_IMAGE) over a real WireGuard tunnel to a server of our own.

The tests share one bed and run in file order; each starts from a healthy Gluetun.
"""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable

import pytest

from testkit.harness import docker, inspect, wait_for
from testkit.realvpn.bed import RealVpnBed, is_standin

pytestmark = [pytest.mark.realvpn, pytest.mark.docker]


@pytest.fixture
def bed(real_vpn: RealVpnBed) -> RealVpnBed:
    real_vpn.wait_healthy(real_vpn.gluetun, timeout=90)
    return real_vpn


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_gluetun_turns_healthy(bed: RealVpnBed) -> None:
    g = bed.gluetun
    assert bed.docker_health(g) == "healthy"
    assert bed.control_get(g, "/v1/vpn/status") == (200, {"status": "running"})
    assert bed.control_get(g, "/v1/version")[1]["version"] == "v3.39.1"


def test_namespace_reaches_target_only_through_tunnel(bed: RealVpnBed) -> None:
    g = bed.gluetun
    ns = bed.start_in_namespace(g)
    # the target sees the WireGuard server's address (NAT at the tunnel's far end), not Gluetun's
    seen = bed.fetch(ns)
    assert seen is not None and bed.exit_ip(g) in seen, seen
    assert bed.gluetun_ip(g) not in seen
    assert "tun0" in docker("exec", ns, "ip", "-o", "link")
    # DNS: Gluetun's resolv.conf points at the target's dnsmasq, reached through the tunnel too
    assert (bed.fetch(ns, "http://target.gt/") or "").startswith("gt-target says hello")
    # beside Gluetun on the bridge network, the target is not reachable at all
    beside = bed.start_on_vpn_network()
    assert bed.fetch(beside, timeout=2) is None
    docker("rm", "-f", ns, beside)


def test_control_server_routes(bed: RealVpnBed) -> None:
    g = bed.gluetun
    assert bed.control_get(g, "/v1/vpn/status") == (200, {"status": "running"})
    assert bed.control_get(g, "/v1/vpn/status", key=None) == (401, "Unauthorized")
    assert bed.control_get(g, "/v1/vpn/status", key="wrong")[0] == 401
    # v3.39.1 has no /v1/portforward: 401 whatever the key (no role may name it)
    assert bed.control_get(g, "/v1/portforward")[0] == 401
    assert bed.control_get(g, "/v1/openvpn/portforwarded") == (200, {"port": 0})
    status, body = bed.control_get(g, "/v1/publicip/ip")
    assert status == 200 and "public_ip" in body, body
    if is_standin():  # looked up through the tunnel: the far end's address (a real Gluetun asks ipinfo)
        assert body["public_ip"] == bed.exit_ip(g), body


def test_control_server_stops_and_starts_the_real_tunnel(bed: RealVpnBed) -> None:
    g = bed.gluetun
    ns = bed.start_in_namespace(g)
    assert bed.fetch(ns)
    assert bed.control_request(g, "PUT", "/v1/vpn/status", body={"status": "stopped"}) == (
        200,
        {"outcome": "stopped"},
    )
    assert bed.control_get(g, "/v1/vpn/status") == (200, {"status": "stopped"})
    assert bed.control_get(g, "/v1/publicip/ip") == (200, {"public_ip": ""})
    assert wait_for("the tunnel torn down", lambda: bed.fetch(ns, timeout=1) is None, timeout=10)
    assert bed.control_request(g, "PUT", "/v1/vpn/status", body={"status": "running"}) == (
        200,
        {"outcome": "running"},
    )
    assert wait_for("the target through the tunnel again", lambda: bed.fetch(ns), timeout=30)
    if is_standin():
        assert wait_for(
            "the public IP looked up again",
            lambda: bed.control_get(g, "/v1/publicip/ip")[1].get("public_ip") == bed.exit_ip(g),
            timeout=20,
        )
    docker("rm", "-f", ns)


def test_kill_switch_drops_what_would_leave_outside_the_tunnel(bed: RealVpnBed) -> None:
    if not is_standin():
        pytest.skip("reads the stand-in's iptables counters")
    g = bed.gluetun
    ns = bed.start_in_namespace(g, args=("--cap-add", "NET_ADMIN"))

    def dropped() -> int:  # packets the OUTPUT policy (DROP) has counted
        head = docker("exec", ns, "iptables", "-nvL", "OUTPUT", "-x").splitlines()[0]
        return int(head.split("policy DROP")[1].split()[0])

    assert "policy DROP" in docker("exec", ns, "iptables", "-nL", "OUTPUT")
    gateway = str(ipaddress.ip_network(bed.vpn_subnet).network_address + 1)
    before = dropped()
    # a leak attempt: the default route through eth0 instead of the tunnel
    docker("exec", ns, "ip", "route", "replace", "default", "via", gateway, "dev", "eth0")
    try:
        assert bed.fetch(ns, timeout=2) is None
        assert dropped() > before, "the kill switch did not drop the packets"
    finally:
        # the route back through the tunnel; Gluetun's small check, failing meanwhile, may have
        # restarted the tunnel (tun0 gone for a moment, then made again with its route)
        wait_for(
            "the default route through tun0 again",
            lambda: (
                subprocess.run(
                    ["docker", "exec", ns, "ip", "route", "replace", "default", "dev", "tun0"],
                    capture_output=True,
                    timeout=30,
                    check=False,
                ).returncode
                == 0
            ),
            timeout=60,
            interval=1,
        )
    assert wait_for("target through the tunnel again", lambda: bed.fetch(ns), timeout=30)
    docker("rm", "-f", ns)


def test_tunnel_outage_and_recovery(bed: RealVpnBed, record_property: Callable[[str, object], None]) -> None:
    g = bed.gluetun
    ns = bed.start_in_namespace(g)
    assert bed.fetch(ns)
    before = inspect(ns)
    assert before is not None

    t_kill = time.time()
    bed.kill_tunnel(g)
    assert bed.fetch(ns, timeout=2) is None, "the target answered with the WireGuard server stopped"
    unhealthy_s = bed.wait_health(g, "unhealthy", timeout=60, since=t_kill)
    assert bed.fetch(ns, timeout=2) is None

    t_restore = time.time()
    bed.restore_tunnel(g)
    healthy_s = bed.wait_healthy(g, timeout=60, since=t_restore)
    # reachable again from the same container, which was not restarted
    assert wait_for("target through the restored tunnel", lambda: bed.fetch(ns), timeout=10)
    after = inspect(ns)
    assert after is not None
    assert after["State"]["StartedAt"] == before["State"]["StartedAt"]
    assert after["RestartCount"] == 0
    record_property("kill_tunnel_to_unhealthy_s", round(unhealthy_s, 2))
    record_property("restore_tunnel_to_healthy_s", round(healthy_s, 2))
    print(f"kill_tunnel -> unhealthy {unhealthy_s:.2f}s; restore_tunnel -> healthy {healthy_s:.2f}s")
    docker("rm", "-f", ns)


def test_restart_gluetun_strands_its_namespace(bed: RealVpnBed) -> None:
    g = bed.gluetun
    ns = bed.start_in_namespace(g)
    assert bed.fetch(ns)
    bed.restart_gluetun(g)
    bed.wait_healthy(g, timeout=60)
    # the old container still shows Up, in a namespace that has only lo: the failure the daemon repairs
    state = (inspect(ns) or {})["State"]
    assert state["Status"] == "running" and state["Running"], state
    assert bed.fetch(ns, timeout=2) is None
    links = docker("exec", ns, "ip", "-o", "link").splitlines()
    assert [line.split(":")[1].strip() for line in links] == ["lo"], links
    # a container that joins now gets the new namespace
    fresh = bed.start_in_namespace(g)
    assert bed.fetch(fresh)
    docker("rm", "-f", ns, fresh)


def test_recreate_gluetun_keeps_name_ip_and_publishes(bed: RealVpnBed) -> None:
    g = bed.gluetun
    old = inspect(g)
    assert old is not None
    port = _free_port()
    bed.spec(g).publish(port)
    bed.recreate_gluetun(g)
    bed.wait_healthy(g, timeout=60)
    new = inspect(g)
    assert new is not None and new["Id"] != old["Id"]
    assert new["NetworkSettings"]["Networks"][bed.vpn_net]["IPAddress"] == bed.gluetun_ip(g)
    assert bed.control_get(g, "/v1/vpn/status") == (200, {"status": "running"})
    # a server in the namespace answers on the published port and on Gluetun's bridge address
    srv = bed.start_in_namespace(
        g,
        "sh",
        "-c",
        f"mkdir -p /www && echo engine-ok > /www/index.html && exec busybox httpd -f -p {port} -h /www",
    )
    probe = bed.start_on_vpn_network()
    for url, where in ((f"http://127.0.0.1:{port}/", None), (f"http://{bed.gluetun_ip(g)}:{port}/", probe)):

        def get(url: str = url, where: str | None = where) -> str | None:
            return _get(bed, url, where)

        assert wait_for(url, get, timeout=10) == "engine-ok"
    docker("rm", "-f", srv, probe)


def _get(bed: RealVpnBed, url: str, container: str | None) -> str | None:
    if container is not None:
        return bed.fetch(container, url, timeout=2)
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return str(resp.read().decode()).strip()
    except OSError:
        return None
