"""Follow-up inspects of the containers events name, off the event stream's path.

An event says something happened; an inspect says what the container is now. Awaiting each
inspect before reading the next event let one call that never returns (a stuck containerd shim)
stop every event for every container: a VPN turning unhealthy went unseen. So each container
gets its own queue of one: at most one inspect in flight per container, the latest request
waiting behind it, and a result that an event overtook while it was in flight is dropped and
asked again (it may be older than what the event already applied). A hung container only stops
news of itself, and the gateway's timeouts end even that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from orchestrator.errors import DockerError

log = structlog.get_logger()

# An inspect job: it asks Docker and returns what to apply to the store (None: nothing).
Job = Callable[[], Awaitable[Callable[[], None] | None]]


class Inspections:
    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._again: set[str] = set()
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def want(self, key: str, job: Job) -> None:
        """Run `job` for `key` now, or once the one in flight ends (the latest job wins)."""
        self._jobs[key] = job
        self._again.add(key)
        if key not in self._tasks:
            self._tasks[key] = asyncio.create_task(self._drain(key), name=f"inspect {key[:24]}")

    def overtaken(self, key: str) -> None:
        """An event about `key` was applied: an inspect in flight may be older than it."""
        if key in self._tasks:
            self._again.add(key)

    async def _drain(self, key: str) -> None:
        try:
            while key in self._again:
                self._again.discard(key)
                try:
                    apply = await self._jobs[key]()
                except DockerError as exc:
                    log.warning(
                        "inspect_failed", container=key[:24], error=str(exc), hint="the next resync retries"
                    )
                    continue
                except Exception:  # a bug in one follow-up must not stop the others
                    log.exception("inspect_crashed", container=key[:24])
                    continue
                if apply is not None and key not in self._again:
                    apply()
        finally:
            self._tasks.pop(key, None)
            self._jobs.pop(key, None)

    def cancel(self) -> None:
        for task in self._tasks.values():
            task.cancel()
