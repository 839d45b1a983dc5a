"""The resync's listing against the real Docker engine: the uptime text Docker writes is one
`reconcilers.listing` reads, and a restart, a stop or a new address shows in the listing, so a
timed resync that keeps an earlier inspect cannot miss it (tests/workers/test_event_source.py
covers the resync itself on the in-memory Docker)."""

from __future__ import annotations

import asyncio
import uuid

from orchestrator.docker.gateway import DockerGateway
from reconcilers.listing import Inspected, Listed, health_text, must_inspect, uptime_bounds
from testkit.harness import ENGINE_IMAGE, docker, label_args


async def _listed(gateway: DockerGateway, label: str) -> Listed:
    [entry] = await gateway.list_containers([label])
    return entry


async def _held(gateway: DockerGateway, entry: Listed) -> Inspected:
    info = await gateway.inspect(entry.id)
    assert info is not None
    health = health_text(entry.status)
    return Inspected(state=info.status, health_text=health, digest=entry.digest, started_at=info.started_at)


def test_the_listing_shows_every_change_a_held_inspect_would_miss() -> None:
    label = f"acestream-orchestrator-test.listing={uuid.uuid4().hex[:8]}"
    name = f"listing-{uuid.uuid4().hex[:8]}"
    docker("run", "-d", "--name", name, *label_args(), "--label", label, ENGINE_IMAGE)

    async def scenario() -> None:
        gateway = DockerGateway()
        try:
            entry = await _listed(gateway, label)
            assert entry.state == "running"
            bounds = uptime_bounds(entry.status)
            assert bounds is not None and bounds[1] <= 120, entry.status  # Docker's text, read
            held = await _held(gateway, entry)
            assert held.started_at is not None
            # as if the inspect were three hours old: the same listing then vouches for it
            old = Inspected(state="running", health_text=held.health_text, digest=held.digest, started_at=0.0)
            docker("restart", "-t", "1", name)
            restarted = await _listed(gateway, label)
            assert must_inspect(restarted, held, held.started_at + 3 * 3600)  # young again
            docker("network", "disconnect", "bridge", name)
            moved = await _listed(gateway, label)
            assert moved.digest != held.digest  # its network and address are in the entry
            assert must_inspect(moved, old, 3 * 3600)
            docker("stop", "-t", "1", name)
            stopped = await _listed(gateway, label)
            assert stopped.state == "exited" and must_inspect(stopped, held, held.started_at + 10)
        finally:
            await gateway.close()

    try:
        asyncio.run(scenario())
    finally:
        docker("rm", "-f", name, check=False)
