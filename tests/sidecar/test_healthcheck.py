"""The image's HEALTHCHECK script (docker/healthcheck.sh), run by the host's bash against a real
HTTP server on loopback: it asks `GET /health` where the daemon wrote it listens, says healthy
on 200 only, and falls back to the default address when no file was written.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from orchestrator.api.address_file import ENV, probe_address, write_address_file
from testkit.harness import REPO

SCRIPT = REPO / "docker" / "healthcheck.sh"


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    _Health.status = 200


def check(address_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT)],
        env={ENV: str(address_file)},
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def test_healthy_only_on_200_at_the_written_address(tmp_path: Path, server: ThreadingHTTPServer) -> None:
    address = tmp_path / "api"
    write_address_file("0.0.0.0", server.server_address[1], {ENV: str(address)})
    assert address.read_text() == f"127.0.0.1 {server.server_address[1]}\n"
    assert check(address).returncode == 0
    _Health.status = 503
    failed = check(address)
    assert failed.returncode == 1 and "503" in failed.stderr


def test_nothing_listening_is_unhealthy(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = tmp_path / "api"
    address.write_text(probe_address("127.0.0.1", port))
    assert check(address).returncode == 1


def test_no_file_probes_the_default_and_no_env_writes_nothing(tmp_path: Path) -> None:
    write_address_file("127.0.0.1", 8000, {})
    assert list(tmp_path.iterdir()) == []
    assert probe_address("::", 8000) == "127.0.0.1 8000\n"
    assert probe_address("10.0.0.5", 9000) == "10.0.0.5 9000\n"
