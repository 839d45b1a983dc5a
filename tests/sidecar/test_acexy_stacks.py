"""The proxy streams through every compose stack, new engines included.

The proxy is testkit/proxy_front.py over testkit/proxy_client.py (acexy's calls in acexy's order,
../shared/proxy-contract.md), run on the host as the stack puts acexy on the host's network,
with the stack's own environment for acexy mapped onto it. With `ACEXY_BIN` naming a real acexy
build (opt-in; no build ships with the project), that binary takes the stack's acexy place
instead, in a busybox container on the host's network. The stand-ins take Gluetun's and the
engine's places, the daemon runs from its image. The pool is kept small (one engine ready, at
most three) so that the proxy has to provision: after a 200 it dials
`localhost:<host_http_port>`, which works only where the stack publishes that port on the host's
loopback. Then, for more viewers than ready engines:

- every viewer gets MPEG-TS from its engine;
- the engines made are exactly the ones needed (one per viewer, no slot used twice);
- each stream the daemon records is on the engine that really serves it (asked of the engines
  themselves), and the proxy's `stream_ended` ends exactly those streams once the viewers leave.
"""

from __future__ import annotations

import contextlib
import copy
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconcilers.model import PortRange
from reconcilers.ports import slots_in_share, vpn_share
from testkit.compose import (
    COMPOSE_DIR,
    SECRETS,
    SOCKET_PROXY_IMAGE,
    STACKS,
    free_range,
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
    logs,
    session_labels,
    wait_for,
)
from testkit.proxy_front import FrontSettings, real_acexy, running_front
from tests.sidecar.conftest import DAEMON_IMAGE

BUSYBOX = "acestream-orchestrator-test/busybox:latest"  # any image will do: acexy is static
MAX_REPLICAS = 3
VIEWERS = 3  # one on the ready engine, then two at once that need new engines
SLOTS_PER_VPN = 4  # the test's vpn.port_range: 4 bands of 4 ports per VPN
READ = 8192  # bytes each viewer must receive


@pytest.fixture(scope="module")
def acexy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """A copy of the real acexy binary named by ACEXY_BIN (it may sit on a read-only mount), to
    mount into a container; None without ACEXY_BIN: the front stands in for it."""
    try:
        binary = real_acexy()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    if binary is None:
        return None
    where = tmp_path_factory.mktemp("acexy")
    shutil.copy(binary, where / "acexy")
    (where / "acexy").chmod(0o755)
    where.chmod(0o755)
    return where


@dataclass
class Bed:
    """One stack on the test bed: its compose project, the daemon's API, acexy's address."""

    stack: str
    run: str
    workdir: Path
    compose_cli: str
    api_port: int = field(default_factory=free_port)
    acexy_port: int = field(default_factory=free_port)
    vpns: list[str] = field(default_factory=list)
    proxy: FrontSettings | None = None  # the front's settings (None: the real acexy runs)

    @property
    def base(self) -> list[str]:
        return [self.compose_cli, "-p", self.run, "-f", str(self.workdir / "docker-compose.yml")]

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def compose(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = [*self.base, *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)

    def get(self, path: str) -> Any:
        """As an operator with the stack's key: the full stream details (docs/security.md)."""
        key = {"Authorization": f"Bearer {SECRETS['ORCHESTRATOR_API_KEY']}"}
        status, body = http_json(self.api + path, headers=key)
        assert status == 200, (path, status, body)
        return body


def _test_bed(bed: Bed, original: dict[str, Any], acexy_dir: Path | None, ports: PortRange) -> dict[str, Any]:
    """The resolved stack with stand-ins, unique names, labels, and free host ports; the proxy
    gets the stack's own environment for acexy (addresses moved to free ports): the real binary
    in the stack's acexy service when there is one, else the front (the service dropped)."""
    out = copy.deepcopy(original)
    services = out["services"]
    labels = session_labels(bed.run)
    gluetuns = gluetun_services(services)
    for index, name in enumerate(gluetuns):
        gluetun = services[name]
        share = vpn_share(ports, index, len(gluetuns))
        addresses = {ip for ip, _ in published(gluetun)}
        assert len(addresses) == 1, addresses
        # the stack's publishing rule (the HTTP band of this VPN's share, on its address), applied
        # to the test's port range
        band = f"{share.start}-{share.start + slots_in_share(share) - 1}"
        gluetun.update(
            image=GLUETUN_IMAGE,
            container_name=f"{bed.run}-{name}",
            labels=labels,
            ports=[f"{addresses.pop()}:{band}:{band}"],
            # the stand-in's own check (every 0.5 s, 1 s timeout, 1 miss) is for tests that flip
            # health; here nothing does, and on a loaded machine one slow exec would call the VPN
            # unhealthy mid-stream (Gluetun's own: 5 s timeout)
            healthcheck={"interval": "1s", "timeout": "5s", "retries": 3},
        )
        gluetun.pop("devices")
        gluetun["environment"].update(STANDIN_API_KEY=SECRETS["GLUETUN_API_KEY"])
        bed.vpns.append(f"{bed.run}-{name}")
    services["socket-proxy"].update(
        image=SOCKET_PROXY_IMAGE, container_name=f"{bed.run}-socket-proxy", labels=labels
    )
    orch = services["orchestrator"]
    orch.pop("build")
    orch.update(
        image=DAEMON_IMAGE,
        container_name=f"{bed.run}-orchestrator",
        labels=labels,
        volumes=[
            *(v for v in orch["volumes"] if not v.endswith(":/config:ro")),
            f"{bed.workdir / 'config'}:/config:ro",
        ],
        # the image's HEALTHCHECK, probed every second instead of every 10 s: acexy waits for it
        healthcheck={"interval": "1s", "timeout": "5s", "retries": 3, "start_period": "20s"},
    )
    if orch.get("network_mode") != "host":
        [(address, _)] = [key for key, inner in published(orch).items() if inner == 8000]
        orch["ports"] = [f"{address}:{bed.api_port}:8000"]
    acexy = services["acexy"]
    env = {k: str(v) for k, v in acexy["environment"].items()}
    assert acexy.get("network_mode") == "host", "the stack puts acexy on the host's network"
    assert env["ACEXY_ADDR"].endswith(":8080"), env
    url = urllib.parse.urlsplit(env["ACEXY_ORCH_URL"])
    assert url.hostname == "127.0.0.1", env
    env.update(
        ACEXY_ADDR=f"127.0.0.1:{bed.acexy_port}",  # not 0.0.0.0: the test bed stays off the LAN
        ACEXY_ORCH_URL=f"http://127.0.0.1:{bed.api_port}",
        ACEXY_MAX_STREAMS_PER_ENGINE="1",
        ACEXY_LOG_LEVEL="DEBUG",
    )
    if acexy_dir is None:
        del services["acexy"]
        bed.proxy = FrontSettings(
            orch_url=env["ACEXY_ORCH_URL"],
            api_key=env.get("ACEXY_ORCH_APIKEY") or None,
            max_streams_per_engine=int(env["ACEXY_MAX_STREAMS_PER_ENGINE"]),
        )
        return _rename_networks(bed, out, labels)
    acexy.update(
        image=BUSYBOX,
        container_name=f"{bed.run}-acexy",
        labels=labels,
        entrypoint=["/acexy/acexy"],
        volumes=[f"{acexy_dir}:/acexy:ro"],
        environment=env,
        restart="no",
    )
    return _rename_networks(bed, out, labels)


def _rename_networks(bed: Bed, out: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    for network in out.get("networks", {}).values():
        network["name"] = f"{bed.run}-{network['name']}"
    for volume in out.get("volumes", {}).values():
        volume["labels"] = labels
    return out


def _desired(bed: Bed, services: dict[str, Any], ports: PortRange) -> dict[str, Any]:
    """The stack's own YAML: stand-in engines, a pool (named after the run) of 1 to MAX_REPLICAS,
    the renamed VPNs, the test's port range."""
    desired = dict(yaml.safe_load((COMPOSE_DIR / bed.stack / "config" / "orchestrator.yaml").read_text()))
    if services["orchestrator"].get("network_mode") == "host":
        desired["api"]["port"] = bed.api_port
    desired["engines"].update(
        image=ENGINE_IMAGE,
        launch=ENGINE_LAUNCH,
        # a pool of its own: a daemon of another run on this Docker host (another session's
        # stack, on the default pool) would take these engines for its own and remove them
        pool=bed.run,
        min_replicas=1,
        min_free=0,
        max_replicas=MAX_REPLICAS,
        labels=session_labels(bed.run),
    )
    desired["vpn"]["tunnel_probe"] = NO_PROBE  # the stacks' probe dials a public address
    if desired["vpn"]["mode"] == "none":
        desired["engines"]["host_port_range"] = f"{ports.start}-{ports.end}"
    else:
        renamed = {services[g]["container_name"]: f"{bed.run}-{g}" for g in gluetun_services(services)}
        desired["vpn"].update(
            containers=[renamed[c] for c in desired["vpn"]["containers"]],
            port_range=f"{ports.start}-{ports.end}",
        )
    return desired


@contextlib.contextmanager
def stack_on_the_bed(compose_cli: str, stack: str, tmp_path: Path, acexy_dir: Path | None) -> Iterator[Bed]:
    bed = Bed(stack=stack, run="acexy-" + uuid.uuid4().hex[:8], workdir=tmp_path, compose_cli=compose_cli)
    original = resolved(compose_cli, stack)
    vpn_count = len(gluetun_services(original["services"]))
    ports = free_range(4 * SLOTS_PER_VPN * vpn_count if vpn_count else MAX_REPLICAS)
    confdir = tmp_path / "config"
    confdir.mkdir()
    confdir.chmod(0o755)
    (confdir / "orchestrator.yaml").write_text(yaml.safe_dump(_desired(bed, original["services"], ports)))
    (confdir / "orchestrator.yaml").chmod(0o644)
    (tmp_path / "docker-compose.yml").write_text(yaml.safe_dump(_test_bed(bed, original, acexy_dir, ports)))
    try:
        yield bed
    finally:
        services = ["orchestrator"] if bed.proxy else ["orchestrator", "acexy"]
        output = bed.compose("logs", "--no-color", *services, timeout=60)
        print(f"--- compose logs ({stack}) ---\n{output.stdout[-30000:]}")
        bed.compose("down", "-v", "-t", "1")
        leftovers = containers(f"label={TEST_LABEL}.run={bed.run}")
        if leftovers:
            docker("rm", "-f", "-v", *leftovers, check=False)


class Viewer(threading.Thread):
    """One client of the proxy (acexy or the front): GET /ace/getstream?id=..., read READ bytes,
    hold on until told to go."""

    def __init__(self, acexy_port: int, content_id: str) -> None:
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{acexy_port}/ace/getstream?id={content_id}"
        self.content_id = content_id
        self.data = b""
        self.error: str | None = None
        self.received = threading.Event()
        self.leave = threading.Event()

    def run(self) -> None:
        try:
            with urllib.request.urlopen(self.url, timeout=40) as resp:
                while len(self.data) < READ:
                    chunk = resp.read(READ - len(self.data))
                    if not chunk:
                        break
                    self.data += chunk
                self.received.set()
                self.leave.wait(60)
        except urllib.error.HTTPError as exc:
            self.error = f"HTTP {exc.code}: {exc.read().decode(errors='replace')[:300]}"
        except OSError as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.received.set()


def _engine_of(url: str) -> str | None:
    """CONTAINER_ID of the stand-in engine answering at the host:port of a URL, from the host."""
    parts = urllib.parse.urlsplit(url)
    try:
        status, body = http_json(f"http://{parts.hostname}:{parts.port}/standin/info", timeout=3)
    except OSError:
        return None
    return str(body["CONTAINER_ID"]) if status == 200 else None


def _session_live(engine: dict[str, Any], stat_url: str) -> bool:
    """Whether the engine itself knows the playback session of stat_url."""
    path = urllib.parse.urlsplit(stat_url).path
    status, body = http_json(f"http://{engine['host']}:{engine['port']}{path}", timeout=3)
    return status == 200 and body.get("response") is not None


@pytest.mark.parametrize("stack", STACKS)
def test_the_proxy_streams_through_the_stack(
    compose_cli: str, daemon_image: str, acexy_dir: Path | None, tmp_path: Path, stack: str
) -> None:
    started = time.monotonic()
    with (
        stack_on_the_bed(compose_cli, stack, tmp_path, acexy_dir) as bed,
        contextlib.ExitStack() as proxy,
    ):
        # the daemon first, and the proxy once the one ready engine is listed and provisioning is
        # open: acexy reads /orchestrator/status at start and then only every 30 s
        up = bed.compose("up", "-d", "orchestrator", timeout=180)
        assert up.returncode == 0, up.stderr
        first = wait_for("the first engine", lambda: bed.get("/engines") if _ready(bed) else None, timeout=60)
        if bed.proxy is None:
            up = bed.compose("up", "-d", "acexy", timeout=180)
            assert up.returncode == 0, up.stderr
        else:
            front = proxy.enter_context(running_front(bed.proxy, bed.acexy_port))
        wait_for("the proxy listening", lambda: _listening(bed.acexy_port), timeout=20)

        ids = [uuid.uuid4().hex + uuid.uuid4().hex[:8] for _ in range(VIEWERS)]  # 40 hex: content ids
        viewers = [Viewer(bed.acexy_port, content_id) for content_id in ids]
        try:
            # one viewer takes the ready engine (acexy counts a stream once the daemon lists it) ...
            viewers[0].start()
            wait_for("the first stream", lambda: len(bed.get("/streams?status=started")) == 1, timeout=30)
            # ... then more viewers than free engines: the proxy has to provision for each. One
            # after the other (the next once the previous one's stream is reported): the daemon
            # keeps one demand for any number of provisioning calls, so two viewers arriving
            # together with a short ETA can see the second outlast the proxy's three attempts
            # (docs/proxy-client.md)
            for reported, viewer in enumerate(viewers[1:], start=2):
                viewer.start()
                _wait_reported(bed, viewer, reported)
            for viewer in viewers:
                assert viewer.received.wait(45), f"{viewer.content_id}: nothing after 45 s"
            for viewer in viewers:
                assert viewer.error is None, f"{viewer.content_id}: {viewer.error}"
                assert len(viewer.data) == READ and viewer.data[0] == 0x47, viewer.data[:16]

            # the engines made: one per viewer, each on its own slot, none made twice
            engines = {e["container_id"]: e for e in bed.get("/engines")}
            made = containers("label=orchestrator.managed=acestream", f"label={TEST_LABEL}.run={bed.run}")
            assert len(made) == VIEWERS <= MAX_REPLICAS, made
            assert set(made) == set(engines), (made, engines)
            assert first[0]["container_id"] in engines
            slots = []
            for cid in made:
                labels = (inspect(cid) or {})["Config"]["Labels"]
                slots.append((labels.get("orchestrator.vpn"), labels["orchestrator.slot"]))
            assert len(set(slots)) == len(slots), slots
            created = _daemon_events(bed, "engine_created")
            assert len(created) == VIEWERS, created  # the first one at start, then one per new viewer

            # each recorded stream: on the engine that serves it, one per engine
            streams = bed.get("/streams?status=started")
            assert sorted(s["key"] for s in streams) == sorted(ids), streams
            assert len({s["container_id"] for s in streams}) == VIEWERS, streams
            for stream in streams:
                assert stream["container_id"] in engines, stream
                # the address acexy really fetched from (the stat URL is built from it) ...
                assert _engine_of(stream["stat_url"]) == stream["container_id"], stream
                # ... and the engines' own word: only the recorded engine has the session
                owners = [cid for cid, e in engines.items() if _session_live(e, stream["stat_url"])]
                assert owners == [stream["container_id"]], (stream, owners)
            # the proxy dialled the engines it provisioned at localhost:<host_http_port>
            dialled = [urllib.parse.urlsplit(s["stat_url"]).hostname for s in streams]
            assert "localhost" in dialled, dialled
            if bed.proxy is not None:  # the front: one provisioning success per new engine
                provisions = front.client.calls.count("POST /provision/acestream")
                assert provisions >= VIEWERS - 1, front.client.calls
                assert front.outcomes == {}, front.outcomes  # nobody left yet
        finally:
            for viewer in viewers:
                viewer.leave.set()
            for viewer in viewers:
                viewer.join(10)

        # the viewers left: the proxy's stream_ended ends exactly their streams
        wait_for("every stream ended", lambda: not bed.get("/streams?status=started"), timeout=30)
        ended = bed.get("/streams?status=ended")
        assert sorted(s["id"] for s in ended) == sorted(s["id"] for s in streams), ended
        assert {s["id"]: s["container_id"] for s in ended} == {s["id"]: s["container_id"] for s in streams}
    print(f"{stack}: {time.monotonic() - started:.1f} s")


def _wait_reported(bed: Bed, viewer: Viewer, streams: int) -> None:
    """Until the daemon lists `streams` started streams (or the viewer failed)."""

    def reported() -> bool:
        return viewer.error is not None or len(bed.get("/streams?status=started")) == streams

    wait_for(f"{streams} streams reported", reported, timeout=45)


def _ready(bed: Bed) -> bool:
    try:
        engines = bed.get("/engines")
        status = bed.get("/orchestrator/status")
    except (OSError, AssertionError):
        return False
    return len(engines) == 1 and bool(status["provisioning"]["can_provision"])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _daemon_events(bed: Bed, event: str) -> list[dict[str, Any]]:
    """The daemon's JSON log lines for one event."""
    found = []
    for line in logs(f"{bed.run}-orchestrator").splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("event") == event:
                found.append(record)
    return found
