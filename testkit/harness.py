"""Test harness for the real Docker engine: the daemon as a subprocess, stand-in containers.

Tests drive the daemon the way an operator does (a YAML file, `docker` commands) and assert on
what results: the containers Docker reports and what `GET /engines` lists. Everything a test
creates carries the label `acestream-orchestrator-test=1` and is removed afterwards.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from orchestrator.docker.containers import parse_docker_time

REPO = Path(__file__).resolve().parents[1]
TEST_LABEL = "acestream-orchestrator-test"
ENGINE_IMAGE = "acestream-orchestrator-test/engine:latest"
# The stand-in image of each engine family (testbed/engine) and the launch preset it needs
# (`auto` cannot tell from the stand-ins' names).
ENGINE_FAMILIES = {
    "acestream-http-proxy": ENGINE_IMAGE,
    "jopsis": "acestream-orchestrator-test/engine-jopsis:latest",
    "jopsis-arm": "acestream-orchestrator-test/engine-jopsis-arm:latest",
    "aceserve": "acestream-orchestrator-test/engine-aceserve:latest",
}
ENGINE_LAUNCH = {"preset": "acestream-http-proxy"}
# The tunnel probe is off unless a test turns it on with a target of its own: its default dials a
# public address, which no test may do.
NO_PROBE = {"target": ""}
# GLUETUN_IMAGE: another tag of the stand-in (e.g. built from a second checkout, so that two
# checkouts sharing one Docker engine do not rebuild each other's `latest`)
GLUETUN_IMAGE = os.environ.get("GLUETUN_IMAGE") or "acestream-orchestrator-test/gluetun:latest"

T = TypeVar("T")


def docker(
    *args: str,
    check: bool = True,
    timeout: float = 60,
    input_text: str | None = None,
    env: dict[str, str] | None = None,
) -> str:
    done = subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        input=input_text,
        env={**os.environ, **env} if env else None,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def logs(ref: str) -> str:
    """A container's output, stdout and stderr together."""
    done = subprocess.run(["docker", "logs", ref], capture_output=True, text=True, timeout=30, check=False)
    return done.stdout + done.stderr


def inspect(ref: str) -> dict[str, Any] | None:
    found = json.loads(docker("inspect", ref, check=False) or "[]")
    return found[0] if found else None


def started_at(container_id: str) -> float:
    """Docker's StartedAt of a container, in POSIX seconds."""
    info = inspect(container_id)
    assert info is not None
    when = parse_docker_time(info["State"]["StartedAt"])
    assert when is not None
    return when


def containers(*filters: str, all_states: bool = True) -> list[str]:
    args = ["ps", "-q", "--no-trunc", *(f"--filter={f}" for f in filters)]
    if all_states:
        args.insert(1, "-a")
    return [c for c in docker(*args).splitlines() if c]


SESSION_LABEL = f"{TEST_LABEL}.session"  # the pid of the pytest (or bench) process that made it
SESSION = str(os.getpid())


def session_labels(run: str | None = None) -> dict[str, str]:
    """The labels of everything a test makes: cleaned up by this session, or by a later one
    once this session's process is gone (two sessions at once leave each other alone)."""
    labels = {TEST_LABEL: "1", SESSION_LABEL: SESSION}
    if run is not None:
        labels[f"{TEST_LABEL}.run"] = run
    return labels


def label_args(run: str | None = None) -> list[str]:
    return [arg for key, value in session_labels(run).items() for arg in ("--label", f"{key}={value}")]


def _session_alive(owner: str) -> bool:
    if owner == SESSION:
        return False  # ours: ours to clean
    if not owner.isdigit():
        return False  # no owner: a leftover of a harness that did not label its session
    try:
        cmdline = Path(f"/proc/{owner}/cmdline").read_bytes()
    except OSError:
        return False
    return b"python" in cmdline


def remove_test_containers() -> None:
    """Containers of this session, and leftovers of sessions that are gone (=verify, =dev: the
    stand-ins' self-checks and other tools, are never touched)."""
    listed = docker(
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        f"label={TEST_LABEL}=1",
        "--format",
        f'{{{{.ID}}}} {{{{.Label "{SESSION_LABEL}"}}}}',
    )
    leftovers = [
        cid
        for cid, _, owner in (line.partition(" ") for line in listed.splitlines())
        if not _session_alive(owner.strip())
    ]
    if leftovers:
        docker("rm", "-f", *leftovers, check=False)
    networks = docker(
        "network",
        "ls",
        "--filter",
        f"label={TEST_LABEL}=1",
        "--format",
        f'{{{{.ID}}}} {{{{.Label "{SESSION_LABEL}"}}}}',
    )
    for nid, _, owner in (line.partition(" ") for line in networks.splitlines()):
        if not _session_alive(owner.strip()):
            remove_network(nid)


def remove_network(name: str) -> None:
    """Remove a network, first cutting off whatever is still attached to it."""
    attached = docker(
        "network", "inspect", "-f", "{{range $id, $c := .Containers}}{{$id}} {{end}}", name, check=False
    )
    for container in attached.split():
        docker("network", "disconnect", "-f", name, container, check=False)
    docker("network", "rm", name, check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.1) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


def listing_of(items: list[dict[str, Any]], count: int) -> list[dict[str, Any]] | None:
    """`items` when there are exactly `count` of them (a `wait_for` probe)."""
    return items if len(items) == count else None


def http_json(
    url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None, timeout: float = 5
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def run_gluetun(
    name: str,
    *,
    forwarded_port: int = 0,
    unhealthy: bool = False,
    api_key: str | None = None,
    publish: str | None = None,
    release: str | None = None,
    patient: bool = False,
) -> str:
    """A Gluetun stand-in; `publish` (`127.0.0.1:19000-19003:19000-19003`) publishes ports of its
    namespace on the host, as a stack does for a proxy dialling `localhost:<host_http_port>`;
    `release`: the Gluetun release line its control server answers as (STANDIN_RELEASE);
    `patient`: a health check that a loaded machine's slow exec does not fail (5 s timeout, 3
    misses, as Gluetun's own is patient) instead of the image's quick one (0.5 s, 1 s, 1 miss)."""
    args = [
        "run",
        "-d",
        "--name",
        name,
        *label_args(),
        "-e",
        f"STANDIN_FORWARDED_PORT={forwarded_port}",
    ]
    if unhealthy:
        args += ["-e", "STANDIN_START_UNHEALTHY=1"]
    if api_key:
        args += ["-e", f"STANDIN_API_KEY={api_key}"]
    if publish:
        args += ["-p", publish]
    if release:
        args += ["-e", f"STANDIN_RELEASE={release}"]
    if patient:
        args += ["--health-interval=1s", "--health-timeout=5s", "--health-retries=3"]
    return docker(*args, GLUETUN_IMAGE)


def vpn_ip(name: str) -> str:
    info = inspect(name)
    assert info is not None
    return str(info["NetworkSettings"]["IPAddress"])


def set_vpn_health(name: str, healthy: bool) -> None:
    docker("exec", name, "standin-health", "on" if healthy else "off")


def wait_vpn_health(name: str, status: str, timeout: float = 15) -> None:
    wait_for(
        f"{name} health {status}",
        lambda: (inspect(name) or {}).get("State", {}).get("Health", {}).get("Status") == status,
        timeout=timeout,
    )


def engine_info(host: str, port: int) -> dict[str, Any] | None:
    """The engine stand-in's /standin/info, or None when it does not answer (a reply cut short,
    as when its VPN restarts the tunnel mid-answer, counts as no answer)."""
    try:
        status, body = http_json(f"http://{host}:{port}/standin/info", timeout=2)
    except (OSError, ValueError, http.client.HTTPException):
        return None
    return body if status == 200 else None


@dataclass
class Daemon:
    """One `python -m orchestrator` process with its own YAML file, API port and log."""

    workdir: Path
    config: dict[str, Any]
    run_id: str
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        return self.workdir / "config.yaml"

    @property
    def log_path(self) -> Path:
        return self.workdir / "daemon.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self, **sections: Any) -> None:
        for key, value in sections.items():
            if isinstance(value, dict):
                self.config.setdefault(key, {}).update(value)
            else:
                self.config[key] = value
        self.config.setdefault("api", {})["port"] = self.port
        self.config.setdefault("state_dir", str(self.workdir / "state"))
        self.config_path.write_text(yaml.safe_dump(self.config))

    def write_raw(self, text: str) -> None:
        self.config_path.write_text(text)

    def start(self) -> Daemon:
        if not self.config_path.exists():
            self.write_config()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        for var in (
            "VPN_MODE",
            "GLUETUN_CONTAINER_NAME",
            "GLUETUN_CONTAINER_NAME_2",
            "MAX_ACTIVE_REPLICAS",
            "LOG_LEVEL",
        ):
            if var not in self.env:
                env.pop(var, None)
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the handle
            self.process = subprocess.Popen(
                [sys.executable, "-m", "orchestrator", "--config", str(self.config_path)],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        wait_for("daemon /health", self._healthy, timeout=20)
        return self

    def _healthy(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"daemon exited with {self.process.returncode}:\n{self.log()}")
        try:
            return self.get("/health")[0] == 200
        except OSError:
            return False

    def get(self, path: str) -> tuple[int, Any]:
        return http_json(self.url + path)

    def text(self, path: str) -> str:
        with urllib.request.urlopen(self.url + path, timeout=5) as resp:
            return str(resp.read().decode())

    def engines(self) -> list[dict[str, Any]]:
        status, body = self.get("/engines")
        assert status == 200, body
        return list(body)

    def status(self) -> dict[str, Any]:
        return dict(self.get("/status")[1])

    def wait_engines(
        self, count: int, timeout: float = 30, where: Callable[[dict[str, Any]], bool] = lambda e: True
    ) -> list[dict[str, Any]]:
        def probe() -> list[dict[str, Any]] | None:
            listed = [e for e in self.engines() if where(e)]
            return listed if len(listed) == count else None

        return wait_for(f"{count} engines listed", probe, timeout=timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> float:
        """Send `sig`, wait for exit; returns seconds it took."""
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(sig)
        self.process.wait(timeout=timeout)
        return time.monotonic() - started

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def managed(self, running_only: bool = False) -> list[str]:
        return containers(
            "label=orchestrator.managed=acestream",
            f"label={TEST_LABEL}.run={self.run_id}",
            all_states=not running_only,
        )


def host_port_band() -> tuple[int, int]:
    """The host ports a daemon's engines publish, unless a test says otherwise: one band per
    pytest process, so that daemons of suites run side by side (`make test`; the Makefile gives
    the fault suite TEST_HOST_PORT_RANGE of its own) or of pytest-xdist workers (gw1, gw2, ...:
    22000-22999, 23000-23999, ...) never race for one port."""
    lo, _, hi = os.environ.get("TEST_HOST_PORT_RANGE", "19000-19999").partition("-")
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    if worker == 0 or "TEST_HOST_PORT_RANGE" in os.environ:
        return int(lo), int(hi)
    return 21000 + worker * 1000, 21999 + worker * 1000


HOST_PORT_RANGE = "{}-{}".format(*host_port_band())


def build_daemon(workdir: Path, env: dict[str, str] | None = None, **sections: Any) -> Daemon:
    """A daemon (not started) of stand-in engines in a pool of its own, no VPN, no tunnel
    probe, its engines labelled with its run; `sections` override the base YAML."""
    run_id = uuid.uuid4().hex[:8]
    base: dict[str, Any] = {
        "engines": {
            "image": ENGINE_IMAGE,
            "launch": ENGINE_LAUNCH,
            "pool": f"test-{run_id}",
            "min_replicas": 2,
            "min_free": 0,
            "address": "ip",
            "labels": session_labels(run_id),
            "host_port_range": HOST_PORT_RANGE,
        },
        # the control server read every 5 s as before 30 s became the default ceiling: the suites
        # stage reconnects that only the control server shows (a new exit IP, no tunnel drop)
        "vpn": {"tunnel_probe": NO_PROBE, "health_check_interval_s": 5},
        "log_level": "DEBUG",
    }
    daemon = Daemon(workdir=workdir, config=base, run_id=run_id, env=env or {})
    daemon.write_config(**sections)
    return daemon


def kill_daemon(daemon: Daemon) -> None:
    """SIGKILL the daemon if it still runs (its engines stay for the clean-up)."""
    if daemon.process is not None and daemon.process.poll() is None:
        daemon.process.kill()
        daemon.process.wait(timeout=10)


def stream_started(daemon: Daemon, host: str, port: int, key: str) -> tuple[int, Any]:
    session = uuid.uuid4().hex[:8]
    return http_json(
        daemon.url + "/events/stream_started",
        "POST",
        {
            "container_id": "acexy-proxy-itself",
            "engine": {"host": host, "port": port},
            "stream": {"key_type": "content_id", "key": key},
            "session": {"playback_session_id": session, "stat_url": "", "command_url": "", "is_live": 1},
            "labels": {"stream_id": f"{key}|{session}"},
        },
    )


def stream_ended(daemon: Daemon, stream_id: str) -> tuple[int, Any]:
    return http_json(
        daemon.url + "/events/stream_ended", "POST", {"stream_id": stream_id, "reason": "client_disconnected"}
    )
