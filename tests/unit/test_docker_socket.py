"""Which Docker socket the gateway keeps its own connections to (orchestrator/docker/gateway.py):
a local socket gets a keep-alive longer than the resync interval; any other transport is left
to aiodocker's defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.docker.gateway import KEEPALIVE_S, SOCKET_PATHS, DockerGateway, local_socket
from orchestrator.workers.event_source import RESYNC_INTERVAL_S, RESYNC_JITTER_S


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


async def test_a_local_socket_keeps_its_idle_connection_past_a_resync_interval() -> None:
    """aiohttp's default (15 s) is shorter than the resync interval (45 +/- 15 s): the gateway's
    own connector keeps an idle connection `KEEPALIVE_S` (read from aiohttp's connector)."""
    gateway = DockerGateway("unix:///run/no-such-docker.sock")
    try:
        keepalive = gateway._connector._keepalive_timeout  # type: ignore[union-attr]
        assert keepalive == KEEPALIVE_S > RESYNC_INTERVAL_S + RESYNC_JITTER_S
    finally:
        await gateway.close()
    tcp = DockerGateway("tcp://127.0.0.1:2375")  # another transport: aiodocker's own connector
    try:
        assert tcp._connector is None
    finally:
        await tcp.close()
