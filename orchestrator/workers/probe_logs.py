"""The tunnel probes' verdicts, as they are written: one followed log per running probe.

A probe (`orchestrator.docker.probes`) writes a line only when its verdict changes. Following
its log through Docker's logs API costs nothing between changes (dockerd watches the log file;
the daemon's task sleeps on the socket), and a change reaches the daemon as soon as dockerd
reads the line. Every stream opens with the last line the probe wrote in its current run, so a
reopened stream (after a drop, a Docker restart, a probe restart) starts from the verdict in
force, never from a stale one; the event source also reads that last line at every resync.

The followers live in a TaskGroup of their own, run by the daemon's TaskGroup (`run`): the event
source says which probes run (`want`, `drop`) and the followers come and go with them; a stream
that drops while its probe still runs is reopened after a back-off.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import structlog

from orchestrator.docker.api import DockerApi, LogLine
from orchestrator.errors import DockerError

log = structlog.get_logger()

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0

# (container ID, the run it belongs to (its StartedAt), the line)
OnLine = Callable[[str, float | None, LogLine], None]


class ProbeLogs:
    def __init__(self, docker: DockerApi, on_line: OnLine) -> None:
        self._docker = docker
        self._on_line = on_line
        self._wanted: dict[str, float | None] = {}  # container ID -> the run followed
        self._since: dict[str, float | None] = {}  # container ID -> where that run's log begins
        self._tasks: dict[str, tuple[float | None, asyncio.Task[None]]] = {}
        self._changed = asyncio.Event()

    def want(self, container_id: str, started_at: float | None, since: float | None) -> bool:
        """Follow this run of the probe (its log from `since`); True when it was not followed
        yet (a new run)."""
        new = self._wanted.get(container_id, -1.0) != started_at
        self._wanted[container_id] = started_at
        self._since[container_id] = since
        if new:
            self._changed.set()
        return new

    def drop(self, container_id: str) -> None:
        self._since.pop(container_id, None)
        if self._wanted.pop(container_id, -1.0) != -1.0:
            self._changed.set()

    def followed(self) -> dict[str, float | None]:
        return dict(self._wanted)

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as followers:
                while True:
                    await self._changed.wait()
                    self._changed.clear()
                    for cid, (run, task) in list(self._tasks.items()):
                        if self._wanted.get(cid, -1.0) != run or task.done():
                            task.cancel()
                            del self._tasks[cid]
                    for cid, run in self._wanted.items():
                        if cid not in self._tasks:
                            task = followers.create_task(self._follow(cid, run), name=f"probe-log-{cid[:12]}")
                            self._tasks[cid] = (run, task)
        finally:
            for _, task in self._tasks.values():
                task.cancel()
            self._tasks.clear()

    async def _follow(self, container_id: str, run: float | None) -> None:
        backoff = BACKOFF_FIRST_S
        while self._wanted.get(container_id, -1.0) == run:
            try:
                since = self._since.get(container_id)
                async with self._docker.follow_log(container_id, since=since) as lines:
                    async for line in lines:
                        backoff = BACKOFF_FIRST_S
                        self._on_line(container_id, run, line)
            except DockerError as exc:
                log.debug("probe_log_dropped", container_id=container_id[:12], error=str(exc))
            # the probe stopped (its die event drops it) or Docker closed the stream: reopen
            await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, BACKOFF_MAX_S)
