"""Each engine image family, as its real image starts it (testbed/engine), behind one VPN: the
daemon's launch template gives every engine its own four ports, the engines become ready and
stream, and nothing clashes. And the stand-in would show a clash: a template that leaves the
API port at its default gets one engine per namespace, the others never ready."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from testkit.harness import (
    ENGINE_FAMILIES,
    Daemon,
    docker,
    engine_info,
    inspect,
    label_args,
    logs,
    run_gluetun,
    vpn_ip,
    wait_for,
    wait_vpn_health,
)

MakeDaemon = Callable[..., Daemon]


def vpn_engines(make_daemon: MakeDaemon, vpn: str, image: str, launch: dict[str, Any]) -> Daemon:
    return make_daemon(
        engines={"image": image, "launch": launch, "min_replicas": 3, "cache_limit_gb": 2},
        vpn={"mode": "single", "containers": [vpn], "port_range": "19000-19399"},
    )


def stream_some_bytes(host: str, port: int) -> bytes:
    """What a proxy does: ask for a session, then read the start of its playback URL."""
    url = f"http://{host}:{port}/ace/getstream?format=json&id=abc123&pid=test"
    with urllib.request.urlopen(url, timeout=5) as resp:
        session = json.loads(resp.read())["response"]
    with urllib.request.urlopen(session["playback_url"], timeout=5) as playback:
        return bytes(playback.read(4096))


@pytest.mark.parametrize("family", list(ENGINE_FAMILIES))
def test_family_starts_ready_distinct_and_streams(make_daemon: MakeDaemon, family: str) -> None:
    vpn = f"fam-{family}"
    run_gluetun(vpn)
    wait_vpn_health(vpn, "healthy")
    daemon = vpn_engines(make_daemon, vpn, ENGINE_FAMILIES[family], {"preset": family})

    listed = daemon.wait_engines(3, timeout=45)

    infos = [engine_info(vpn_ip(vpn), e["port"]) for e in listed]
    bound: list[int] = []
    for engine, info in zip(listed, infos, strict=True):
        assert info is not None and info["family"] == family
        assert info["CONTAINER_ID"] == engine["container_id"]
        assert info["ports"] == {
            "http": engine["port"],
            "https": engine["https_port"],
            "api": engine["api_port"],
            "p2p": engine["p2p_port"],
        }
        assert info["cache_limit"] == 2 and info["bind_all"] is True
        bound += info["ports"].values()
    assert len(bound) == len(set(bound)) == 12, f"a port bound twice in the VPN's namespace: {bound}"
    data = stream_some_bytes(vpn_ip(vpn), listed[0]["port"])
    assert len(data) == 4096 and data[0] == 0x47  # MPEG-TS sync byte


NO_API_PORT = [
    "--client-console",
    "--bind-all",
    "--http-port={http}",
    "--https-port={https}",
    "--port={p2p}",
]  # every flag but --api-port: every engine takes 62062


def test_the_stand_in_refuses_a_port_another_engine_in_its_namespace_holds() -> None:
    vpn = "fam-pair"
    run_gluetun(vpn)
    flags = [[f.format(http=7000 + i, https=7100 + i, p2p=7200 + i) for f in NO_API_PORT] for i in (0, 1)]
    first, second = (
        docker(
            "run",
            "-d",
            "--network",
            f"container:{vpn}",
            *label_args(),
            "--entrypoint",
            "/app/start-engine",
            ENGINE_FAMILIES["acestream-http-proxy"],
            *f,
        )
        for f in flags
    )
    wait_for(
        "the second engine to exit",
        lambda: docker("inspect", "-f", "{{.State.Status}}", second) == "exited",
        timeout=10,
    )
    assert docker("inspect", "-f", "{{.State.ExitCode}}", second) != "0"
    assert "cannot listen on TCP port 62062" in logs(second)
    assert docker("inspect", "-f", "{{.State.Status}}", first) == "running"


def test_a_template_that_leaves_a_port_at_its_default_never_gets_two_engines_up(
    make_daemon: MakeDaemon,
) -> None:
    """So a launch template that forgets a port fails every test that runs two engines."""
    vpn = "fam-clash"
    run_gluetun(vpn)
    wait_vpn_health(vpn, "healthy")
    launch = {
        "preset": "custom",
        "entrypoint": ["/usr/bin/catatonit", "--", "/app/start-engine"],
        "command": [
            f.replace("{http}", "{http_port}")
            .replace("{https}", "{https_port}")
            .replace("{p2p}", "{p2p_port}")
            for f in NO_API_PORT
        ],
    }
    daemon = vpn_engines(make_daemon, vpn, ENGINE_FAMILIES["acestream-http-proxy"], launch)
    wait_for(
        "an engine that exited at once",
        lambda: any(
            ev.get("event") == "action_started" and ev.get("reason") == "engine exited"
            for ev in daemon.log_events()
        ),
        timeout=30,
    )
    for _ in range(20):
        assert len(daemon.engines()) <= 1  # never more than the one holding 62062
        time.sleep(0.1)


@pytest.mark.parametrize("family", ["jopsis", "aceserve"])
def test_engines_get_bounded_logs_and_no_health_check_of_their_image(
    make_daemon: MakeDaemon, family: str
) -> None:
    """The jopsis and AceServe images (and their stand-ins) probe 127.0.0.1:6878, where no engine
    behind a VPN listens: left on, Docker shows the engine unhealthy for life."""
    image = ENGINE_FAMILIES[family]
    image_check = json.loads(docker("image", "inspect", "-f", "{{json .Config.Healthcheck}}", image))
    assert image_check and "6878" in " ".join(image_check["Test"])  # what the engine must not keep
    vpn = f"fam-logs-{family}"
    run_gluetun(vpn)
    wait_vpn_health(vpn, "healthy")
    daemon = make_daemon(
        engines={
            "image": image,
            "launch": {"preset": family},
            "min_replicas": 1,
            "log_max_size": "1m",
            "log_max_files": 2,
        },
        vpn={"mode": "single", "containers": [vpn], "port_range": "19000-19399"},
    )

    (engine,) = daemon.wait_engines(1, timeout=45)

    seen = inspect(engine["container_id"])
    assert seen is not None
    assert seen["HostConfig"]["LogConfig"] == {
        "Type": "json-file",
        "Config": {"max-size": "1m", "max-file": "2"},
    }
    assert seen["Config"]["Healthcheck"]["Test"] == ["NONE"]  # timings merged from the image stay
    assert "Health" not in seen["State"]  # no verdict at all, let alone `unhealthy`
