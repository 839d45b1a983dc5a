"""engines.pull's schedule (the image puller) against a registry stand-in that answers from a
table: when a pull happens, what reaches the store, and that a failure is said once."""

from __future__ import annotations

import asyncio
import time

from orchestrator.config import Config, parse_config
from orchestrator.errors import ImageNotFound
from orchestrator.state.store import StateStore
from orchestrator.workers.image_puller import ImagePuller


class Registry:
    """What a tag points at; None: the registry is out of reach."""

    def __init__(self) -> None:
        self.tags: dict[str, str | None] = {}
        self.pulls: list[str] = []

    async def pull_image(self, image: str) -> str:
        self.pulls.append(image)
        found = self.tags.get(image)
        if found is None:
            raise ImageNotFound(f"image {image} could not be pulled: connection refused")
        return found


def config(pull: str, **engines: object) -> Config:
    extra = "".join(f", {k}: {v}" for k, v in engines.items())
    return parse_config(
        "engines: {image: 'reg/engine:1', launch: {preset: acestream-http-proxy}, "
        f"pull: {pull}{extra}}}\n",
        source="t.yaml",
        env={},
    )


async def test_missing_never_pulls() -> None:
    registry, store = Registry(), StateStore()
    puller = ImagePuller(store, registry, lambda: config("missing"))
    assert not puller.due(0.0)
    assert store.desired_image_id("reg/engine:1") is None


async def test_always_pulls_at_start_and_on_each_spec_change_only() -> None:
    registry, store = Registry(), StateStore()
    registry.tags["reg/engine:1"] = "sha256:a"
    current = [config("always")]
    puller = ImagePuller(store, registry, lambda: current[0])
    assert puller.due(0.0)
    await puller.pull_once(current[0])
    assert store.desired_image_id("reg/engine:1") == "sha256:a"
    assert not puller.due(10_000.0)  # no time-based pull
    current[0] = config("always", cache_limit_gb=2)  # a spec change: pulled before the rollout
    assert puller.due(10_000.0)
    puller.config_changed()  # as the daemon calls it, before the planner sees the new spec
    assert store.observed().image_pulling  # the rollout waits
    await puller.pull_once(current[0])
    assert not store.observed().image_pulling


async def test_periodic_pulls_every_interval_and_a_new_digest_reaches_the_store() -> None:
    registry, store = Registry(), StateStore()
    registry.tags["reg/engine:1"] = "sha256:a"
    current = config("periodic", pull_interval_s=60)
    puller = ImagePuller(store, registry, lambda: current)
    await puller.pull_once(current)
    now = time.time()
    assert not puller.due(now + 30)
    assert puller.due(now + 61)
    assert 29 < (puller.until_due(now + 30) or 0) <= 30  # run() sleeps that long, then pulls
    registry.tags["reg/engine:1"] = "sha256:b"
    await puller.pull_once(current)
    assert store.desired_image_id("reg/engine:1") == "sha256:b"
    assert store.desired_image_id("reg/other:1") is None  # an ID is only for the image it is of


async def test_a_failed_pull_keeps_the_known_image_and_reports_until_a_pull_succeeds() -> None:
    registry, store = Registry(), StateStore()
    registry.tags["reg/engine:1"] = "sha256:a"
    current = config("periodic", pull_interval_s=60)
    puller = ImagePuller(store, registry, lambda: current)
    await puller.pull_once(current)
    registry.tags["reg/engine:1"] = None
    await puller.pull_once(current)
    await puller.pull_once(current)
    assert store.desired_image_id("reg/engine:1") == "sha256:a"  # the engines keep their image
    error = store.observed().image_error
    assert error is not None and "connection refused" in error
    registry.tags["reg/engine:1"] = "sha256:a"
    await puller.pull_once(current)
    assert store.observed().image_error is None


async def test_between_pulls_it_sleeps_until_a_config_change_calls_for_one() -> None:
    registry, store = Registry(), StateStore()
    registry.tags["reg/engine:1"] = "sha256:a"
    current = [config("missing")]
    puller = ImagePuller(store, registry, lambda: current[0])
    assert puller.until_due(time.time()) is None  # nothing time-based: no wake-up but a change
    running = asyncio.create_task(puller.run())
    try:
        for _ in range(5):
            await asyncio.sleep(0)
        assert registry.pulls == []
        current[0] = config("always")
        changed = store.watch()
        puller.config_changed()  # as the daemon calls it
        async with asyncio.timeout(5):
            while store.desired_image_id("reg/engine:1") is None:
                changed.clear()
                await changed.wait()
        assert registry.pulls == ["reg/engine:1"]
        assert puller.until_due(time.time()) is None  # `always`: the next pull waits for a change
    finally:
        running.cancel()
