"""Which Docker socket the gateway keeps its own connections to (orchestrator/docker/gateway.py):
a local socket gets a keep-alive longer than the resync interval; any other transport is left
to aiodocker's defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.docker.gateway import SOCKET_PATHS, local_socket


@pytest.mark.parametrize(
    ("url", "docker_host", "path"),
    [
        ("unix:///srv/docker.sock", None, "/srv/docker.sock"),
        (None, "unix:///run/user/1000/docker.sock", "/run/user/1000/docker.sock"),
        ("unix:///srv/docker.sock", "tcp://proxy:2375", "/srv/docker.sock"),  # the setting wins
        (None, "tcp://socket-proxy:2375", None),
        ("tcp://127.0.0.1:2375", None, None),
        (None, "ssh://admin@docker-host", None),
        ("https://docker-host:2376", None, None),
    ],
)
def test_the_socket_named(url: str | None, docker_host: str | None, path: str | None) -> None:
    assert local_socket(url, docker_host) == path


def test_nothing_named_is_the_first_local_socket_present() -> None:
    present = next((p for p in SOCKET_PATHS if Path(p).is_socket()), None)
    assert local_socket(None, None) == present
