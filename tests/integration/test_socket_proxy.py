"""The daemon through the compose stacks' Docker socket proxy (compose/socket-proxy/haproxy.cfg).

The proxy runs in the image testbed/build-socket-proxy-image.sh builds from Debian's haproxy, with
the host's Docker socket mounted and its own socket in a directory shared with the test. Asserted
against the real Docker engine: the daemon pointed at the proxy (DOCKER_HOST) creates engines,
follows events (a removed engine is replaced) and lists them on `/engines`; calls the daemon
never makes, and creates that ask for the host, are 403 on the proxy's socket and never reach
Docker.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.harness import ENGINE_IMAGE, Daemon, docker, label_args, wait_for

PROXY_IMAGE = os.environ.get("SOCKET_PROXY_IMAGE", "acestream-orchestrator-test/socket-proxy:latest")


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(str(self.path))


def call(sock: Path, method: str, path: str, body: Any = None) -> int:
    """The HTTP status the proxy answers `method path` with."""
    conn = UnixConnection(sock)
    try:
        data = None if body is None else (body if isinstance(body, str) else json.dumps(body)).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, path, body=data, headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.fixture
def proxy_socket(tmp_path: Path) -> Iterator[Path]:
    if not docker("images", "-q", PROXY_IMAGE):
        pytest.fail(f"image {PROXY_IMAGE} missing; run testbed/build-socket-proxy-image.sh")
    shared = tmp_path / "docker-proxy"
    shared.mkdir()
    name = f"socket-proxy-{uuid.uuid4().hex[:8]}"
    docker(
        "run", "-d", "--name", name, *label_args(),
        "-v", "/var/run/docker.sock:/var/run/docker.sock",
        "-v", f"{shared}:/run/docker-proxy",
        PROXY_IMAGE,
    )  # fmt: skip
    sock = shared / "docker.sock"
    try:
        wait_for("the proxy's socket", lambda: sock.is_socket() or None, timeout=20)
        yield sock
    finally:
        docker("rm", "-f", name)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1.43/containers/abc/exec", {"Cmd": ["sh"]}),
        ("POST", "/containers/abc/kill", None),
        ("POST", "/containers/abc/stop", None),
        ("GET", "/containers/abc/archive?path=/", None),
        ("GET", "/v1.43/secrets", None),
        ("GET", "/networks", None),
        ("GET", "/volumes", None),
        ("POST", "/build", None),
        ("DELETE", "/v1.43/images/busybox", None),
        ("POST", "/images/create?fromSrc=-&repo=x", None),
        ("GET", "/containers/..%2Fsecrets/json", None),
        ("POST", "/containers/create", {"Image": ENGINE_IMAGE, "HostConfig": {"Privileged": True}}),
        ("POST", "/containers/create", {"Image": ENGINE_IMAGE, "hostconfig": {"privileged": True}}),
        ("POST", "/containers/create", {"Image": ENGINE_IMAGE, "HostConfig": {"Binds": ["/:/host"]}}),
        ("POST", "/containers/create", {"Image": ENGINE_IMAGE, "HostConfig": {"NetworkMode": "host"}}),
        ("POST", "/containers/create", {"Image": ENGINE_IMAGE, "HostConfig": {"\\u0050rivileged": True}}),
        ("POST", "/containers/create", {"Image": ENGINE_IMAGE, "HostConfig": {"MaskedPaths": []}}),
        ("POST", "/containers/create", {"Image": ENGINE_IMAGE, "HostConfig": {"ReadonlyPaths": []}}),
        *(
            ("POST", "/containers/create", {"Image": ENGINE_IMAGE, "HostConfig": {key: value}})
            for key, value in (
                ("Mounts", [{"Type": "bind", "Source": "/", "Target": "/host"}]),
                ("Devices", [{"PathOnHost": "/dev/sda", "PathInContainer": "/dev/sda"}]),
                ("DeviceRequests", [{"Count": -1}]),
                ("DeviceCgroupRules", ["a *:* rwm"]),
                ("CapAdd", ["SYS_ADMIN"]),
                ("SecurityOpt", ["apparmor=unconfined"]),
                ("PidMode", "host"),
                ("IpcMode", "host"),
                ("UTSMode", "host"),
                ("UsernsMode", "host"),
                ("CgroupnsMode", "host"),
                ("CgroupParent", "/"),
                ("VolumesFrom", ["other"]),
                ("VolumeDriver", "local"),
                ("Sysctls", {"kernel.shm_rmid_forced": "1"}),
            )
        ),
        # raw UTF-8 (a dotless i): Go's case folding could spell a key past the pattern
        ("POST", "/containers/create", '{"Image": "x", "HostConfig": {"Pr\u0131vileged": true}}'),
        ("POST", "/containers/abc/attach?stream=1&stdin=1", None),
        ("GET", "/system/df", None),
        # before API 1.24 a start's body is a HostConfig Docker applies: any version below, and
        # any body on a start, is refused
        ("POST", "/v1.23/containers/abc/start", None),
        ("GET", "/v1.12/containers/json", None),
        ("GET", "/v1.023/containers/json", None),
        ("POST", "/containers/abc/start", {"Binds": ["/:/host"]}),
        ("POST", "/v1.41/containers/abc/restart", {"Privileged": True}),
        ("POST", "/images/create", "fromImage=&fromSrc=http://127.0.0.1/x.tar"),
    ],
)
def test_calls_outside_the_list_are_refused(proxy_socket: Path, method: str, path: str, body: Any) -> None:
    assert call(proxy_socket, method, path, body) == 403


def test_a_create_body_not_read_whole_is_refused(proxy_socket: Path) -> None:
    """A chunked body has no length to check against the buffer, and one over 60000 bytes is not
    read whole: the proxy cannot vouch for either, harmless as the content looks."""
    harmless = json.dumps({"Image": ENGINE_IMAGE, "Labels": {"x": "y"}}).encode()
    conn = UnixConnection(proxy_socket)
    try:
        conn.request(
            "POST",
            "/containers/create",
            body=iter([harmless]),
            headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
            encode_chunked=True,
        )
        assert conn.getresponse().status == 403
    finally:
        conn.close()
    assert (
        call(
            proxy_socket, "POST", "/containers/create", {"Image": ENGINE_IMAGE, "Labels": {"x": "y" * 61000}}
        )
        == 403
    )


def test_calls_the_daemon_makes_pass(proxy_socket: Path) -> None:
    assert call(proxy_socket, "GET", "/version") == 200
    assert call(proxy_socket, "GET", "/containers/json?all=1") == 200
    assert call(proxy_socket, "GET", "/containers/no-such-container/json") == 404  # Docker's answer
    assert call(proxy_socket, "GET", "/containers/no-such-container/logs?stdout=1&tail=1") == 404


def test_the_daemon_works_through_the_proxy(proxy_socket: Path, make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon(
        env={"DOCKER_HOST": f"unix://{proxy_socket}"},
        engines={"min_replicas": 2, "min_free": 0, "max_replicas": 3},
    )

    listed = daemon.wait_engines(2)
    gone = listed[0]["container_id"]
    docker("rm", "-f", gone)  # seen through the proxy's event stream, and replaced

    def replaced() -> list[dict[str, Any]] | None:
        now = daemon.engines()
        ids = {e["container_id"] for e in now}
        return now if len(now) == 2 and gone not in ids else None

    again = wait_for("the removed engine replaced", replaced, timeout=60)

    assert len(again) == 2
    status, body = daemon.get("/status")
    assert status == 200 and body["docker"]["connected"] is True and body["docker"]["events_received"] > 0
