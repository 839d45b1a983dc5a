"""Keeps the engine image fresh: `engines.pull` says when the tag is asked of its registry.

`missing` (the default) never asks: an image is pulled only when a create finds it absent, and a
tag that moved on in the registry changes nothing here. `always` pulls at start and whenever the
engine spec changes (before the rollout that change calls for); `periodic` also pulls every
`engines.pull_interval_s`. While a pull is due or under way, the next rollout step waits for it
(a YAML edit marks the pull due before the planner sees the new spec). The image ID the tag
resolves to goes to the store; the planner rolls every engine running another image over to it
through the usual safe rollout (idle engines first, one at a time, create before remove, paused
when the new one fails). A registry out of reach or a tag that vanished costs nothing: the
engines keep the image they run, the failure is logged once (until a pull succeeds again) and
shown on /status (`image_pull_failed`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Protocol

import structlog

from orchestrator.config import Config
from orchestrator.errors import DockerError
from orchestrator.state.store import StateStore
from reconcilers.pool import engine_spec_hash

log = structlog.get_logger()


class ImagePulling(Protocol):
    async def pull_image(self, image: str) -> str:
        """Pull the image and return the image ID its tag points at."""


class ImagePuller:
    def __init__(self, store: StateStore, docker: ImagePulling, config: Callable[[], Config]) -> None:
        self._store = store
        self._docker = docker
        self._config = config
        self._pulled_spec: str | None = None  # the engine spec hash of the last pull
        self._pulled_at = 0.0
        self._config_changed = asyncio.Event()

    def due(self, now: float) -> bool:
        config = self._config()
        if config.pull == "missing":
            return False
        if engine_spec_hash(config.desired) != self._pulled_spec:
            return True
        return config.pull == "periodic" and now - self._pulled_at >= config.pull_interval_s

    async def run(self) -> None:
        """Pull whenever due; between pulls sleep until a config change (`config_changed`) or
        the next periodic pull, not on a tick: an idle daemon is not woken for nothing."""
        while True:
            self._config_changed.clear()
            config = self._config()
            if config.pull == "missing":
                self._pulled_spec = None
                self._store.set_image(None, None, None)
                self._store.set_image_pulling(False)
            elif self.due(time.time()):
                await self.pull_once(config)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.until_due(time.time())):
                    await self._config_changed.wait()

    def until_due(self, now: float) -> float | None:
        """Seconds to the next time-based pull (None: only a config change makes one due)."""
        config = self._config()
        if config.pull != "periodic" or self._pulled_spec is None:
            return None
        return max(0.0, self._pulled_at + config.pull_interval_s - now)

    def config_changed(self) -> None:
        """Called as a new config goes in force, before the planner sees it: when the change
        calls for a pull, the rollout it starts waits for it."""
        if self.due(time.time()):
            self._store.set_image_pulling(True)
        self._config_changed.set()

    async def pull_once(self, config: Config) -> None:
        image = config.desired.engines.image
        self._pulled_spec, self._pulled_at = engine_spec_hash(config.desired), time.time()
        failed_before = self._store.image_error is not None
        self._store.set_image_pulling(True)
        try:
            image_id = await self._docker.pull_image(image)
        except DockerError as exc:
            self._store.set_image_pulling(False)
            if not failed_before:
                log.warning(
                    "engine_image_pull_failed",
                    image=image,
                    error=str(exc),
                    hint="the engines keep the image they run; said once until a pull succeeds",
                )
            self._store.set_image(image, None, str(exc))
            return
        previous = self._store.image_id if self._store.image_ref == image else None
        if previous is not None and previous != image_id:
            log.info("engine_image_updated", image=image, image_id=image_id[:19], previous=previous[:19])
        elif failed_before:
            log.info("engine_image_pull_recovered", image=image)
        self._store.set_image(image, image_id, None)
        self._store.set_image_pulling(False)
