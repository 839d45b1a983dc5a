"""The tunnel probe on the real Docker engine: one probe container per VPN, in the VPN's network
namespace, whose dial loop dials a target and writes its verdict to its log; a dead target (the
stand-in's "tunnel") hides the VPN's engines while Docker still calls Gluetun healthy, and they
come back when it answers again. The probe follows its VPN through restarts and recreations, goes
when it is turned off, and one whose image cannot run it is reported, not looped on."""

from __future__ import annotations

import io
import itertools
import os
import re
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest

from orchestrator.docker.probes import NO_NC
from testkit.harness import (
    Daemon,
    containers,
    docker,
    inspect,
    started_at,
    wait_for,
)
from testkit.internet import FAST_PROBE, Internet

MakeDaemon = Callable[..., Daemon]


def probes_of(daemon: Daemon) -> list[dict[str, Any]]:
    pool = daemon.config["engines"]["pool"]
    found = [
        inspect(c) for c in containers("label=orchestrator.role=probe", f"label=orchestrator.pool={pool}")
    ]
    return [p for p in found if p is not None]


def probed_daemon(make_daemon: MakeDaemon, vpn: str, target_ip: str, **extra: Any) -> Daemon:
    return make_daemon(
        engines={"min_replicas": 2},
        vpn={
            "mode": "single",
            "containers": [vpn],
            "port_range": "19000-19399",
            "tunnel_probe": {"target": f"{target_ip}:80", **FAST_PROBE, **extra},
        },
    )


def test_a_dead_tunnel_hides_the_engines_while_docker_still_says_healthy(
    make_daemon: MakeDaemon, internet: Internet
) -> None:
    vpn = "probe-g1"
    gluetun_id = internet.vpn_on(vpn)
    daemon = probed_daemon(make_daemon, vpn, internet.ip)
    listed = daemon.wait_engines(2, timeout=30)
    (probe,) = wait_for("one probe", lambda: p if len(p := probes_of(daemon)) == 1 else None)
    assert probe["HostConfig"]["NetworkMode"] == f"container:{gluetun_id}"
    assert probe["Image"] == (inspect(vpn) or {})["Image"], "the probe runs the VPN's own image"
    assert probe["Config"]["Healthcheck"]["Test"] == ["NONE"], "no exec through Docker per dial"
    wait_for(
        "the probe's first verdict",
        lambda: (daemon.get("/vpn/status")[1]["vpns"][0]["tunnel_probe"] or {}).get("tunnel_up") is True,
    )

    before = {e["container_id"]: started_at(e["container_id"]) for e in listed}
    internet.cut(vpn)  # the tunnel carries nothing any more
    wait_for("engines hidden by the probe", lambda: daemon.engines() == [], timeout=10)
    assert (inspect(vpn) or {})["State"]["Health"]["Status"] == "healthy"  # Docker noticed nothing
    vpn_view = daemon.get("/vpn/status")[1]["vpns"][0]
    assert vpn_view["state"] == "unhealthy" and vpn_view["tunnel_probe"]["tunnel_up"] is False

    internet.mend(vpn)
    back = daemon.wait_engines(2, timeout=30)
    assert {e["container_id"] for e in back} == set(before)
    # a blip the tunnel survived (same Gluetun run, same public IP): nothing restarted (issue 18)
    time.sleep(1.5)
    assert {cid: started_at(cid) for cid in before} == before, "engines restarted for a blip"
    assert not any(
        ev.get("event") == "VPN reconnected - triggering AceStream engine restart"
        for ev in daemon.log_events()
    )


def test_the_probe_follows_its_vpn_through_restart_and_recreate(
    make_daemon: MakeDaemon, internet: Internet
) -> None:
    vpn = "probe-g2"
    internet.vpn_on(vpn)
    daemon = probed_daemon(make_daemon, vpn, internet.ip)
    daemon.wait_engines(2, timeout=30)
    (first,) = wait_for("one probe", lambda: p if len(p := probes_of(daemon)) == 1 else None)

    docker("restart", "-t", "1", vpn)  # the probe stays in the dead namespace: restarted
    vpn_started = (inspect(vpn) or {})["State"]["StartedAt"]
    wait_for(
        "the probe restarted after its VPN",
        lambda: (
            (p := probes_of(daemon))
            and len(p) == 1
            and p[0]["Id"] == first["Id"]
            and p[0]["State"]["StartedAt"] > vpn_started
        ),
        timeout=20,
    )
    daemon.wait_engines(2, timeout=30)

    docker("rm", "-f", vpn)  # recreated under the same name: a new probe on the new container
    new_id = internet.vpn_on(vpn)
    wait_for(
        "a probe on the new VPN container",
        lambda: (
            (p := probes_of(daemon))
            and len(p) == 1
            and p[0]["HostConfig"]["NetworkMode"] == f"container:{new_id}"
        ),
        timeout=30,
    )
    assert inspect(first["Id"]) is None
    daemon.wait_engines(2, timeout=30)

    daemon.write_config(vpn={"tunnel_probe": {"target": ""}})  # turned off: the probe goes
    wait_for("no probe", lambda: probes_of(daemon) == [], timeout=10)


@pytest.fixture(scope="module")
def image_without_tools() -> Iterator[str]:
    """An image with a shell (dash) and nothing else: no nc, no sleep."""
    image = "acestream-orchestrator-test/dash-only:latest"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add("/bin/dash", arcname="bin/sh")
        for lib in re.findall(
            r"(/\S+\.so[.\d]*)",
            subprocess.run(["ldd", "/bin/dash"], capture_output=True, text=True, check=True).stdout,
        ):
            tar.add(os.path.realpath(lib), arcname=lib.lstrip("/"))
    subprocess.run(
        ["docker", "import", "-c", "LABEL acestream-orchestrator-test=1", "-", image],
        input=buffer.getvalue(),
        capture_output=True,
        check=True,
        timeout=60,
    )
    yield image
    docker("rmi", "-f", image, check=False)


def test_a_probe_that_cannot_run_is_reported_and_not_looped_on(
    make_daemon: MakeDaemon, internet: Internet, image_without_tools: str
) -> None:
    vpn = "probe-g3"
    internet.vpn_on(vpn)
    daemon = probed_daemon(make_daemon, vpn, internet.ip, image=image_without_tools)
    daemon.wait_engines(2, timeout=30)
    problem = wait_for(
        "a probe_broken problem",
        lambda: next((p for p in daemon.status()["problems"] if p["code"] == "probe_broken"), None),
        timeout=20,
    )
    # its loop may say so itself before it exits (no nc), or the daemon sees it exit (no sleep)
    assert problem["vpn"] == vpn
    assert "exited at once (exit code 127)" in problem["message"] or NO_NC in problem["message"]
    time.sleep(3)
    tries = [
        ev
        for ev in daemon.log_events()
        if ev.get("event") == "action_started" and ev.get("action") == "CreateProbe"
    ]
    # retried after a back-off that doubles (2 s, 4 s, ... 60 s), never in a loop
    assert 1 <= len(tries) <= 2, tries
    times = [datetime.fromisoformat(ev["timestamp"]) for ev in tries]
    assert all((b - a).total_seconds() >= 1.5 for a, b in itertools.pairwise(times))
    wait_for(
        "no probe container left behind",
        lambda: not containers("label=orchestrator.role=probe", f"label=orchestrator.vpn={vpn}"),
        timeout=5,
    )
    assert len(daemon.engines()) == 2  # Docker's health decides meanwhile
