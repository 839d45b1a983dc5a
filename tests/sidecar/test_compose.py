"""The compose stacks in compose/: valid for a real Compose implementation, consistent with the
daemon's configuration, and running for real with stand-ins.

Debian's docker-compose (1.29) resolves every stack with its `.env.example` and the secrets an
operator must fill in; the resolved stack is then checked against the stack's own
config/orchestrator.yaml, read by the daemon's own loader: the Gluetun container names, the port
ranges published on each Gluetun (one VPN's share of vpn.port_range each), the API port, the
mounts and the health-gated start order. Finally every stack is brought up with
`docker-compose up`, the real images swapped for the stand-ins and the daemon's image built
here, to prove that the pieces find each other: the proxy's stand-in reaches the daemon at
ACEXY_ORCH_URL and every engine at the host:port `/engines` reports.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.config import Config, load_config
from reconcilers.model import PortRange
from reconcilers.ports import slots_in_share, usable_slots, vpn_share
from testkit.compose import (
    COMPOSE_DIR,
    SECRETS,
    SEED_VARS,
    SOCKET_PROXY_IMAGE,
    STACKS,
    compose_config,
    gluetun_services,
    published,
    resolved,
)
from testkit.harness import (
    ENGINE_IMAGE,
    ENGINE_LAUNCH,
    GLUETUN_IMAGE,
    NO_PROBE,
    TEST_LABEL,
    containers,
    docker,
    free_port,
    http_json,
    inspect,
    session_labels,
    wait_for,
)
from tests.sidecar.conftest import DAEMON_IMAGE


def api_port_of(orch: dict[str, Any], config: Config) -> int:
    """The host port the daemon's API is published on (its api.port inside the container)."""
    return next(port for (_, port), inner in published(orch).items() if inner == config.api.port)


def stack_config(stack: str) -> Config:
    """The stack's YAML as the daemon reads it, with the API key the stack passes."""
    env = {"ORCHESTRATOR_API_KEY": SECRETS["ORCHESTRATOR_API_KEY"]}
    return load_config(COMPOSE_DIR / stack / "config" / "orchestrator.yaml", env=env)


def test_compose_version_supports_the_syntax_used(compose_cli: str) -> None:
    """depends_on conditions and ${VAR:?error} need docker-compose 1.27+, profiles 1.28+ (or Compose v2)."""
    version = subprocess.run(
        [compose_cli, "version", "--short"], capture_output=True, text=True, timeout=30, check=True
    ).stdout.strip()
    major, minor = (int(x) for x in version.split(".")[:2])
    assert (major, minor) >= (1, 28), version


def test_there_are_the_three_stacks() -> None:
    assert STACKS == ["gluetun", "gluetun-redundant", "plain"]


@pytest.mark.parametrize("stack", STACKS)
def test_stack_validates_and_matches_its_config(compose_cli: str, stack: str) -> None:
    services = resolved(compose_cli, stack)["services"]
    config = stack_config(stack)
    vpn = config.desired.vpn

    orch = services["orchestrator"]
    assert f"{COMPOSE_DIR / stack / 'config'}:/config:ro" in orch["volumes"]
    # Docker only through the socket proxy (docs/security.md): the daemon has no Docker socket
    assert not any("docker.sock:" in v for v in orch["volumes"]), orch["volumes"]
    assert "docker-proxy:/run/docker-proxy:rw" in orch["volumes"] or any(
        v.startswith("docker-proxy:/run/docker-proxy") for v in orch["volumes"]
    ), orch["volumes"]
    assert orch["environment"]["DOCKER_HOST"] == "unix:///run/docker-proxy/docker.sock"
    assert orch["depends_on"]["socket-proxy"]["condition"] == "service_started"
    proxy = services["socket-proxy"]
    assert any(v.startswith("/var/run/docker.sock:/var/run/docker.sock") for v in proxy["volumes"])
    assert any(
        v.endswith("/compose/socket-proxy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro")
        for v in proxy["volumes"]
    ), proxy["volumes"]
    assert proxy["network_mode"] == "none", "nothing on a network reaches the proxy"
    # the streams outlive the container (a restart, an upgrade): a named volume on state_dir
    assert config.state_dir is not None
    state = [v for v in orch["volumes"] if v.split(":")[1:2] == [str(config.state_dir)]]
    assert len(state) == 1 and not state[0].startswith("/"), orch["volumes"]
    assert set(orch["environment"]) == SEED_VARS | {"DOCKER_HOST"}, "every seed variable reaches the daemon"
    # the keys come from .env (secrets stay out of the YAML); every other variable is empty by
    # default, so the YAML decides
    assert orch["environment"]["GLUETUN_API_KEY"] == SECRETS["GLUETUN_API_KEY"]
    assert orch["environment"]["ORCHESTRATOR_API_KEY"] == SECRETS["ORCHESTRATOR_API_KEY"]
    assert acexy_key(services) == SECRETS["ORCHESTRATOR_API_KEY"], "acexy sends the daemon's key"
    assert all(v == "" for k, v in orch["environment"].items() if k not in {*SECRETS, "DOCKER_HOST"}), (
        "empty by default: the YAML decides"
    )
    assert orch["restart"] == "unless-stopped"

    # acexy dials localhost:<host_http_port> after it provisioned an engine: only the host's
    # network has every engine's HTTP port there (published by the daemon, or on Gluetun)
    acexy = services["acexy"]
    assert acexy["depends_on"]["orchestrator"]["condition"] == "service_healthy"
    assert acexy["network_mode"] == "host", "acexy dials localhost:<host_http_port>"
    assert "ports" not in acexy and "networks" not in acexy
    assert acexy["environment"]["ACEXY_ADDR"] == "0.0.0.0:8080", "what acexy reads (not ACEXY_LISTEN_ADDR)"
    if orch.get("network_mode") == "host":  # the API is wherever the YAML puts it
        assert config.api.host == "127.0.0.1", "host networking: keep the API off the LAN"
        assert acexy["environment"]["ACEXY_ORCH_URL"] == f"http://127.0.0.1:{config.api.port}"
    else:
        api = published(orch)
        assert set(api.values()) == {config.api.port}, api
        assert acexy["environment"]["ACEXY_ORCH_URL"] == f"http://127.0.0.1:{api_port_of(orch, config)}"
        assert all(ip == "127.0.0.1" for ip, _ in api), "the API stays on the host's loopback"
    assert config.address == "ip", "acexy, on the host's network, reaches every container's IP"

    gluetuns = gluetun_services(services)
    names = [services[g]["container_name"] for g in gluetuns]
    assert tuple(names) == vpn.containers, "vpn.containers must name the Gluetun containers, in order"
    if vpn.mode == "none":
        assert orch["network_mode"] == "host", "from the host every bridge IP is reachable"
        return
    assert vpn.mode == ("single" if len(names) == 1 else "redundant")
    for index, name in enumerate(gluetuns):
        gluetun = services[name]
        share = vpn_share(vpn.port_range, index, len(gluetuns))
        http_band = range(share.start, share.start + slots_in_share(share))
        # each VPN publishes the HTTP ports of its share, nothing else, on the loopback only
        assert published(gluetun) == {("127.0.0.1", port): port for port in http_band}, name
        assert usable_slots(share) >= config.desired.engines.max_replicas, f"{name}: max_replicas fit"
        assert gluetun["environment"]["HTTP_CONTROL_SERVER_ADDRESS"] == f":{config.vpn_api_port}"
        assert gluetun["environment"]["HTTP_CONTROL_SERVER_LOG"] == "off", "one INFO line per poll"
        role = gluetun["environment"]["HTTP_CONTROL_SERVER_AUTH_DEFAULT_ROLE"]
        assert SECRETS["GLUETUN_API_KEY"] in role
        assert orch["environment"]["GLUETUN_API_KEY"] == SECRETS["GLUETUN_API_KEY"]
        # not service_healthy: a Gluetun unhealthy before its first healthy verdict aborts `up`
        assert orch["depends_on"][name]["condition"] == "service_started"
        assert set(gluetun["networks"]) == set(orch["networks"])
        volumes = [v.split(":") for v in gluetun.get("volumes", [])]
        assert any(target == "/gluetun" and not source.startswith("/") for source, target, *_ in volumes), (
            f"{name}: a named volume for /gluetun"
        )
    assert vpn.port_range == PortRange(start=19000, end=19199)


def acexy_key(services: dict[str, Any]) -> str:
    return str(services["acexy"]["environment"]["ACEXY_ORCH_APIKEY"])


@pytest.mark.parametrize("stack", STACKS)
def test_stack_refuses_to_start_without_the_api_key(compose_cli: str, stack: str) -> None:
    without = {k: v for k, v in SECRETS.items() if k != "ORCHESTRATOR_API_KEY"}
    done = compose_config(compose_cli, stack, without)
    assert done.returncode != 0
    assert "ORCHESTRATOR_API_KEY" in done.stderr, done.stderr


@pytest.mark.parametrize("stack", [s for s in STACKS if s != "plain"])
def test_stack_refuses_to_start_without_the_control_key(compose_cli: str, stack: str) -> None:
    done = compose_config(compose_cli, stack, {})
    assert done.returncode != 0
    assert "GLUETUN_API_KEY" in done.stderr, done.stderr


FORWARDED_PORT = 40555  # the first stand-in VPN's; the next one's is one more


def _for_the_test_bed(stack: dict[str, Any], run: str, api_port: int, confdir: Path) -> dict[str, Any]:
    """A resolved stack, runnable here: stand-ins for Gluetun and acexy, the daemon's image built
    from the Dockerfile, names and network made unique, no engine port published (the host's
    ports are shared with other tests), every container and volume labelled for clean-up. The
    rest (networks, depends_on conditions, healthchecks, mounts, environment) stays as the stack
    has it."""
    out = copy.deepcopy(stack)
    services = out["services"]
    labels = session_labels(run)
    for index, name in enumerate(gluetun_services(services)):
        gluetun = services[name]
        gluetun.update(image=GLUETUN_IMAGE, container_name=f"{run}-{name}", labels=labels)
        gluetun.pop("ports")
        gluetun.pop("devices")
        gluetun["environment"].update(
            STANDIN_API_KEY=SECRETS["GLUETUN_API_KEY"], STANDIN_FORWARDED_PORT=str(FORWARDED_PORT + index)
        )
    proxy = services["socket-proxy"]
    proxy.update(image=SOCKET_PROXY_IMAGE, container_name=f"{run}-socket-proxy", labels=labels)
    orch = services["orchestrator"]
    orch.pop("build")
    orch.update(
        image=DAEMON_IMAGE,
        container_name=f"{run}-orchestrator",
        labels=labels,
        volumes=[*(v for v in orch["volumes"] if not v.endswith(":/config:ro")), f"{confdir}:/config:ro"],
    )
    if orch.get("network_mode") != "host":  # else the YAML's api.port is on the host already
        orch["ports"] = [f"127.0.0.1:{api_port}:8000"]
    # acexy's stand-in: same place in the stack (the host's network, depends_on), with a Python
    # to fetch what acexy fetches
    acexy = services["acexy"]
    for key in ("ports", "environment"):
        acexy.pop(key, None)
    acexy.update(
        image=DAEMON_IMAGE,
        container_name=f"{run}-proxy",
        labels=labels,
        entrypoint=["sleep"],
        command=["600"],
    )
    for network in out.get("networks", {}).values():
        network["name"] = f"{run}-{network['name']}"
    for volume in out.get("volumes", {}).values():
        volume["labels"] = labels
    return out


def _desired_for_the_test_bed(
    stack: str, run: str, services: dict[str, Any], api_port: int
) -> dict[str, Any]:
    """The stack's own YAML with the stand-in engine image, 2 engines and the renamed VPNs (and a
    free API port for a daemon on the host's network)."""
    desired = dict(yaml.safe_load((COMPOSE_DIR / stack / "config" / "orchestrator.yaml").read_text()))
    if services["orchestrator"].get("network_mode") == "host":
        desired["api"]["port"] = api_port
    desired["engines"].update(
        image=ENGINE_IMAGE,
        launch=ENGINE_LAUNCH,
        # a pool of its own: on the default pool it took the engines of `make demo` (run by the
        # integration suite beside this one) for its own, behind VPNs it does not know, and
        # removed them, and the demo's daemon did the same to its engines
        pool=run,
        min_replicas=2,
        min_free=0,
        max_replicas=4,
        labels=session_labels(run),
    )
    desired["vpn"]["tunnel_probe"] = NO_PROBE  # the stacks' probe dials a public address
    if desired["vpn"]["mode"] == "none":
        desired["engines"]["host_port_range"] = "29500-29509"
    else:
        renamed = {services[g]["container_name"]: f"{run}-{g}" for g in gluetun_services(services)}
        # vpn.api_key stays unset in the YAML: the stack passes it as GLUETUN_API_KEY from .env
        desired["vpn"].update(containers=[renamed[c] for c in desired["vpn"]["containers"]])
    return desired


def container_ip(name: str) -> str:
    """A container's IP on its (one) network."""
    info = inspect(name)
    assert info is not None, name
    networks = info["NetworkSettings"]["Networks"].values()
    return str(next(n["IPAddress"] for n in networks if n.get("IPAddress")))


def _fetch(container: str, url: str) -> str:
    """GET url from inside a container (the proxy's place in the stack)."""
    return docker(
        "exec",
        container,
        "python",
        "-c",
        "import sys, urllib.request as u; print(u.urlopen(sys.argv[1], timeout=5).read().decode())",
        url,
    )


@pytest.mark.parametrize("stack", STACKS)
def test_stack_runs_with_standins(compose_cli: str, daemon_image: str, tmp_path: Path, stack: str) -> None:
    run = "compose-" + uuid.uuid4().hex[:8]
    api_port = free_port()
    original = resolved(compose_cli, stack)
    orch_url = original["services"]["acexy"]["environment"]["ACEXY_ORCH_URL"].replace(":8000", f":{api_port}")
    confdir = tmp_path / "config"
    confdir.mkdir()
    confdir.chmod(0o755)
    (confdir / "orchestrator.yaml").write_text(
        yaml.safe_dump(_desired_for_the_test_bed(stack, run, original["services"], api_port))
    )
    (confdir / "orchestrator.yaml").chmod(0o644)
    compose_file = tmp_path / "docker-compose.yml"
    compose_file.write_text(yaml.safe_dump(_for_the_test_bed(original, run, api_port, confdir)))
    base = [compose_cli, "-p", run, "-f", str(compose_file)]
    vpns = [f"{run}-{g}" for g in gluetun_services(original["services"])]
    try:
        # `up` returns once the proxy stand-in started, i.e. after the daemon turned healthy
        up = subprocess.run([*base, "up", "-d"], capture_output=True, text=True, timeout=180, check=False)
        assert up.returncode == 0, up.stderr
        health = docker("inspect", "-f", "{{.State.Health.Status}}", f"{run}-orchestrator")
        assert health == "healthy", health

        vpn_ips = {container_ip(v) for v in vpns}

        def listed() -> list[dict[str, Any]] | None:
            status, body = http_json(f"http://127.0.0.1:{api_port}/engines")
            if status != 200 or len(body) != 2:
                return None
            # with two VPNs the daemon may place both engines behind the first one healthy, and
            # moves one once the second is healthy and its port read: wait for that as well
            if vpns:
                if {e["host"] for e in body} != vpn_ips:
                    return None
                status, vpn_body = http_json(f"http://127.0.0.1:{api_port}/vpn/status")
                if status != 200 or any(v["forwarded_port"] is None for v in vpn_body["vpns"]):
                    return None
            found: list[dict[str, Any]] = body
            return found

        engines = wait_for(f"2 engines in the {stack} stack, one behind each VPN", listed, timeout=60)
        status, body = http_json(f"http://127.0.0.1:{api_port}/status")
        assert status == 200 and body["state"] == {"durable": True, "error": None}, body.get("state")
        # what acexy does: ACEXY_ORCH_URL, then each engine at the host:port /engines reports
        seen_by_proxy = json.loads(_fetch(f"{run}-proxy", f"{orch_url}/engines"))
        assert {e["container_id"] for e in seen_by_proxy} == {e["container_id"] for e in engines}
        for engine in engines:
            answer = _fetch(f"{run}-proxy", f"http://{engine['host']}:{engine['port']}/standin/info")
            assert engine["container_id"] in answer
        if vpns:
            assert {e["host"] for e in engines} == vpn_ips, "engines.address: ip"
            status, body = http_json(f"http://127.0.0.1:{api_port}/vpn/status")
            assert status == 200
            ports = {v["name"]: v["forwarded_port"] for v in body["vpns"]}
            assert ports == {name: FORWARDED_PORT + i for i, name in enumerate(vpns)}, body  # key worked
        else:
            assert all(re.fullmatch(r"[\d.]+", e["host"]) for e in engines), "engines.address: ip"
        stop = subprocess.run(
            [*base, "stop", "-t", "10", "orchestrator"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert stop.returncode == 0, stop.stderr
        assert docker("inspect", "-f", "{{.State.ExitCode}}", f"{run}-orchestrator") == "0"
    finally:
        logs = subprocess.run(
            [*base, "logs", "--no-color", "orchestrator"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        print(f"--- compose logs ---\n{logs.stdout[-20000:]}")
        print(
            "--- orchestrator state ---\n"
            + docker("inspect", "-f", "{{json .State}}", f"{run}-orchestrator", check=False)
        )
        subprocess.run([*base, "down", "-v", "-t", "1"], capture_output=True, timeout=120, check=False)
        leftovers = containers(f"label={TEST_LABEL}.run={run}")
        if leftovers:
            docker("rm", "-f", "-v", *leftovers, check=False)
