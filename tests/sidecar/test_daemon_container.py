"""The daemon as a container, the way the compose stacks run it.

The image is built from the repository's Dockerfile FROM a Python base made locally
(`make sidecar-image`); it runs with the Docker socket mounted, the desired-state YAML mounted
read-only from a directory and the seed's variables passed empty (as compose passes them when
`.env` leaves them unset), next to the Gluetun and engine stand-ins on Docker's default bridge.
Asserted: engines appear in `/engines` and answer at the address it reports, the daemon runs as
an unprivileged user, Docker's HEALTHCHECK turns healthy, and `docker stop` is clean (exit 0)
well inside its 10-second grace period, leaving the engines for the next daemon to adopt.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.config import CONTAINER_NAME_VARS, ENV_OVERRIDES
from testkit.harness import (
    ENGINE_IMAGE,
    ENGINE_LAUNCH,
    NO_PROBE,
    TEST_LABEL,
    containers,
    docker,
    engine_info,
    http_json,
    inspect,
    label_args,
    listing_of,
    run_gluetun,
    session_labels,
    wait_for,
)

RUN_UID = 10001
STOP_GRACE_S = 10
SOCKET = "/var/run/docker.sock"
# what compose passes for every seed variable that `.env` leaves empty; the API key is the one a
# stack requires (docs/security.md), so it is passed set
API_KEY = "sidecar-api-key"
EMPTY_SEED_VARS = sorted({*ENV_OVERRIDES, *CONTAINER_NAME_VARS} - {"ORCHESTRATOR_API_KEY"})


@dataclass
class Sidecar:
    """One daemon container plus the stand-ins it manages; `cleanup()` removes all of them."""

    image: str
    workdir: Path
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    extra: list[str] = field(default_factory=list)  # other containers to remove

    @property
    def name(self) -> str:
        return f"sidecar-daemon-{self.run_id}"

    @property
    def labels(self) -> dict[str, str]:
        return session_labels(self.run_id)

    def write_config(self, config: dict[str, Any]) -> None:
        """In a container the API listens on every address (`api.host: 0.0.0.0`, as the
        gluetun stacks' YAML has it), which needs the key (passed as ORCHESTRATOR_API_KEY). Its
        engines are in a pool of the run's own unless the config names one."""
        config = {**config, "api": {"host": "0.0.0.0", **config.get("api", {})}}
        if "engines" in config:  # a pool of its own: the demo's daemon, run beside it, has the default
            config["engines"] = {"pool": f"sidecar-{self.run_id}", **config["engines"]}
        confdir = self.workdir / "config"
        confdir.mkdir(exist_ok=True)
        confdir.chmod(0o755)
        path = confdir / "orchestrator.yaml"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o644)  # readable by uid 10001, as an operator's file usually is

    def start(self) -> str:
        args = [
            "run",
            "-d",
            "--name",
            self.name,
            *label_args(self.run_id),
            "-v",
            f"{SOCKET}:/var/run/docker.sock",
            "-v",
            f"{self.workdir / 'config'}:/config:ro",
            "-p",
            "127.0.0.1::8000",
        ]
        for var in EMPTY_SEED_VARS:
            args += ["-e", f"{var}="]
        args += ["-e", f"ORCHESTRATOR_API_KEY={API_KEY}"]
        docker(*args, self.image)
        published = docker("port", self.name, "8000/tcp").splitlines()[0]
        url = "http://127.0.0.1:" + published.rsplit(":", 1)[1]
        wait_for("the daemon container's /health", lambda: self._healthy(url), timeout=30)
        return url

    def _healthy(self, url: str) -> bool:
        state = (inspect(self.name) or {}).get("State", {})
        if not state.get("Running"):
            raise AssertionError(f"daemon container not running: {state}\n{self.logs()}")
        try:
            return http_json(url + "/health", timeout=2)[0] == 200
        except OSError:
            return False

    def logs(self) -> str:
        """The container's output; the daemon logs JSON lines to stderr."""
        done = subprocess.run(
            ["docker", "logs", self.name],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=30,
            check=False,
        )
        return done.stdout

    def engines(self, url: str) -> list[dict[str, Any]]:
        status, body = http_json(url + "/engines")
        assert status == 200, body
        return [e for e in body if e["labels"].get(f"{TEST_LABEL}.run") == self.run_id]

    def cleanup(self) -> None:
        docker("rm", "-f", "-v", self.name, *self.extra, check=False)
        leftovers = containers(f"label={TEST_LABEL}.run={self.run_id}")
        if leftovers:
            docker("rm", "-f", "-v", *leftovers, check=False)


@pytest.fixture
def sidecar(daemon_image: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Sidecar]:
    made = Sidecar(image=daemon_image, workdir=tmp_path)
    yield made
    report = getattr(request.node, "rep_call", None)
    if report is None or report.failed:
        print(f"--- logs of {made.name} ---\n{made.logs()[-20000:]}")
    made.cleanup()


def _process_status(name: str) -> dict[str, list[str]]:
    text = docker("exec", name, "cat", "/proc/1/status")
    return {k: v.split() for k, _, v in (line.partition(":") for line in text.splitlines())}


def _assert_unprivileged(name: str) -> None:
    status = _process_status(name)
    assert status["Uid"] == [str(RUN_UID)] * 4, status["Uid"]
    assert status["Gid"] == [str(RUN_UID)] * 4, status["Gid"]
    sock = os.stat(SOCKET)
    if sock.st_mode & stat.S_IRWXG >= stat.S_IRGRP | stat.S_IWGRP:
        assert status["Groups"] == [str(sock.st_gid)], status["Groups"]


def _stop_within_grace(sidecar: Sidecar) -> float:
    started = time.monotonic()
    docker("stop", "-t", str(STOP_GRACE_S), sidecar.name, timeout=STOP_GRACE_S + 20)
    elapsed = time.monotonic() - started
    state = (inspect(sidecar.name) or {})["State"]
    assert state["ExitCode"] == 0, (state, sidecar.logs())
    assert not state["OOMKilled"]
    events = [json.loads(line) for line in sidecar.logs().splitlines() if line.startswith("{")]
    assert [e["event"] for e in events][-2:] == ["daemon_stopping", "daemon_stopped"], events[-5:]
    return elapsed


def test_daemon_container_behind_gluetun(sidecar: Sidecar) -> None:
    gluetun = f"sidecar-gluetun-{sidecar.run_id}"
    sidecar.extra.append(gluetun)
    run_gluetun(gluetun, forwarded_port=40123)
    gluetun_info = inspect(gluetun) or {}
    gluetun_ip = gluetun_info["NetworkSettings"]["IPAddress"]
    sidecar.write_config(
        {
            "engines": {
                "image": ENGINE_IMAGE,
                "launch": ENGINE_LAUNCH,
                "min_replicas": 2,
                "min_free": 0,
                "max_replicas": 4,
                "address": "ip",
                "labels": sidecar.labels,
            },
            "vpn": {"mode": "single", "containers": [gluetun], "tunnel_probe": NO_PROBE},
            "log_level": "INFO",
        }
    )
    url = sidecar.start()

    listed = wait_for("2 engines in /engines", lambda: listing_of(sidecar.engines(url), 2), timeout=60)
    assert {e["vpn_container"] for e in listed} == {gluetun}
    assert {e["host"] for e in listed} == {gluetun_ip}
    assert sorted(e["forwarded"] for e in listed) == [False, True]
    for engine in listed:
        info = inspect(engine["container_id"]) or {}
        assert info["HostConfig"]["NetworkMode"] == f"container:{gluetun_info['Id']}"
        answered = engine_info(engine["host"], engine["port"])  # the proxy's view: host:port answers
        assert answered is not None and answered["CONTAINER_ID"] == engine["container_id"]
    _assert_unprivileged(sidecar.name)

    wait_for(
        "Docker health 'healthy' (the image's HEALTHCHECK)",
        lambda: (inspect(sidecar.name) or {})["State"]["Health"]["Status"] == "healthy",
        timeout=45,
        interval=0.5,
    )

    elapsed = _stop_within_grace(sidecar)
    assert elapsed < STOP_GRACE_S / 2, f"docker stop took {elapsed:.1f}s"
    still_running = containers(
        f"label={TEST_LABEL}.run={sidecar.run_id}", "label=orchestrator.managed=acestream", "status=running"
    )
    assert len(still_running) == 2, "engines must outlive the daemon, for the next one to adopt"


def test_daemon_container_without_vpn(sidecar: Sidecar) -> None:
    sidecar.write_config(
        {
            "engines": {
                "image": ENGINE_IMAGE,
                "launch": ENGINE_LAUNCH,
                "min_replicas": 2,
                "min_free": 0,
                "max_replicas": 4,
                "address": "ip",
                "host_port_range": "29400-29409",
                "labels": sidecar.labels,
            },
            "vpn": {"mode": "none"},
            "log_level": "INFO",
        }
    )
    url = sidecar.start()

    listed = wait_for("2 engines in /engines", lambda: listing_of(sidecar.engines(url), 2), timeout=60)
    for engine in listed:
        assert engine["vpn_container"] is None
        ip = (inspect(engine["container_id"]) or {})["NetworkSettings"]["IPAddress"]
        assert engine["host"] == ip
        assert 29400 <= engine["host_http_port"] <= 29409
        for host, port in ((engine["host"], engine["port"]), ("127.0.0.1", engine["host_http_port"])):
            answered = engine_info(host, port)
            assert answered is not None and answered["CONTAINER_ID"] == engine["container_id"], (host, port)
    _assert_unprivileged(sidecar.name)

    elapsed = _stop_within_grace(sidecar)
    assert elapsed < STOP_GRACE_S / 2, f"docker stop took {elapsed:.1f}s"


def _check_config(
    daemon_image: str, tmp_path: Path, text: str, mode: int
) -> subprocess.CompletedProcess[str]:
    """`--check` of a YAML with the given text and file mode, mounted as the stacks mount it."""
    confdir = tmp_path / "config"
    confdir.mkdir()
    confdir.chmod(0o755)
    (confdir / "orchestrator.yaml").write_text(text)
    (confdir / "orchestrator.yaml").chmod(mode)
    done = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            *label_args(),
            "-v",
            f"{confdir}:/config:ro",
            daemon_image,
            "--config",
            "/config/orchestrator.yaml",
            "--check",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done


def test_invalid_config_exits_2_with_file_line_and_key(daemon_image: str, tmp_path: Path) -> None:
    done = _check_config(daemon_image, tmp_path, "engines:\n  min_replicas: many\n", 0o644)
    assert done.returncode == 2, done
    assert "/config/orchestrator.yaml:2: engines.min_replicas:" in done.stderr, done.stderr


def test_listening_beyond_loopback_without_a_key_exits_2(daemon_image: str, tmp_path: Path) -> None:
    done = _check_config(daemon_image, tmp_path, "api:\n  host: 0.0.0.0\n", 0o644)
    assert done.returncode == 2, done
    assert "/config/orchestrator.yaml:2: api.api_key: api.host 0.0.0.0" in done.stderr, done.stderr


def test_private_config_keeps_root_and_says_why(daemon_image: str, tmp_path: Path) -> None:
    """A YAML readable only by its owner (root) cannot be read as uid 10001: the entrypoint stays
    root rather than fail, and says so on stderr."""
    done = _check_config(daemon_image, tmp_path, "log_level: INFO\n", 0o600)
    assert done.returncode == 0, done
    assert "not readable by uid 10001" in done.stderr and "running as root" in done.stderr, done.stderr
