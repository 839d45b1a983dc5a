"""A daemon's observe/act half wired to the in-memory Docker: store, event source, executor and
reconcile loop, the same classes the daemon runs, in one TaskGroup per test."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from orchestrator.config import Config, parse_config
from orchestrator.state.store import StateStore
from orchestrator.workers.event_source import EventSource
from orchestrator.workers.executor import Executor
from orchestrator.workers.reconcile_loop import ReconcileLoop
from reconcilers.vpn import ControlRead
from testkit.fake_docker import FakeDocker

POOL = "fake"
NO_VPN = (
    f"engines: {{image: engine:1, launch: {{preset: acestream-http-proxy}}, pool: {POOL}, min_replicas: 2, "
    "min_free: 0}\n"
)
ONE_VPN = NO_VPN + "vpn: {mode: single, containers: [gluetun], port_range: 19000-19299}\n"


@dataclass(slots=True)
class World:
    docker: FakeDocker
    store: StateStore
    events: EventSource
    config: Config

    async def until(self, what: str, predicate: Callable[[], bool], within: float = 3.0) -> None:
        """Wait for the store to satisfy `predicate` (checked on every change)."""
        changed = self.store.watch()
        try:
            async with asyncio.timeout(within):
                while not predicate():
                    changed.clear()
                    await changed.wait()
        except TimeoutError:
            raise AssertionError(f"timed out after {within}s waiting for {what}") from None

    def reconfigure(self, yaml_text: str) -> None:
        """A valid YAML edit, as the config watcher applies one."""
        self.config = parse_config(yaml_text, source="test.yaml", env={})
        self.store.changed()

    def engines(self) -> list[str]:
        """IDs of the managed engines the fake Docker holds."""
        return [c.id for c in self.docker.containers.values() if c.labels.get("orchestrator.pool") == POOL]


async def _control_server_stand_in(store: StateStore) -> None:
    """What the control poller does on its first read: the forwarded port (none) is known."""
    changed = store.watch()
    while True:
        await changed.wait()
        changed.clear()
        for name, vpn in store.vpns.items():
            if not vpn.port_known:
                store.apply_vpn(
                    name, ControlRead(forwarded_port=None, public_ip=None, status="running"), time.time()
                )


@asynccontextmanager
async def world(
    yaml_text: str, docker: FakeDocker | None = None, *, act: bool = False, resync_deadline_s: float = 60.0
) -> AsyncIterator[World]:
    """The event source on `docker`; with `act`, the executor and reconcile loop too."""
    config = parse_config(yaml_text, source="test.yaml", env={})
    fake = docker or FakeDocker()
    store = StateStore()
    held: list[World] = []  # the world, once made: its config is the one in force
    events = EventSource(
        fake, store, lambda: held[0].config if held else config, resync_deadline_s=resync_deadline_s
    )
    executor = Executor(fake, store, lambda: held[0].config.desired)
    loop = ReconcileLoop(store, executor, lambda: held[0].config.desired)
    running: list[asyncio.Task[None]] = []
    async with asyncio.TaskGroup() as tasks:
        running.append(tasks.create_task(events.run()))
        running.append(tasks.create_task(events.probe_logs.run()))
        if act:
            running += [
                tasks.create_task(executor.run()),
                tasks.create_task(loop.run()),
                tasks.create_task(_control_server_stand_in(store)),
            ]
        w = World(docker=fake, store=store, events=events, config=config)
        held.append(w)
        await w.until("the first resync", lambda: store.telemetry.docker_connected)
        try:
            yield w
        finally:
            for task in running:
                task.cancel()
