"""Docker events in, observed state out: subscribe, then list, then apply.

The stream is a hint, the world is the truth. An event's own facts (a health status, a death)
are applied to the store at once so visibility follows within the same call; then the
container is inspected and the store corrected from what Docker says. The stream ends
silently when Docker goes away: we reconnect with backoff, pass `since=` the last event seen,
and resync in full. A jittered periodic resync makes any missed event harmless.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

import structlog

from orchestrator.docker_gateway import DockerGateway
from orchestrator.engine_containers import is_engine, pool_filters
from orchestrator.errors import DockerError
from orchestrator.state import StateStore
from reconcilers.model import VpnState

log = structlog.get_logger()

RESYNC_INTERVAL_S = 45.0
RESYNC_JITTER_S = 15.0
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0
HEALTH_STATES: dict[str, VpnState] = {
    "healthy": "healthy", "unhealthy": "unhealthy", "starting": "starting"}
STOPPED_ACTIONS = {"die": "exited", "stop": "exited", "pause": "paused"}


class EventSource:
    def __init__(self, gateway: DockerGateway, store: StateStore,
                 vpn_names: Callable[[], tuple[str, ...]], pool: Callable[[], str],
                 on_hidden: Callable[[float], None] = lambda seconds: None) -> None:
        self._on_hidden = on_hidden
        self._gateway = gateway
        self._store = store
        self._vpn_names = vpn_names
        self._pool = pool
        self.last_time_nano: int | None = None
        self.events_received = 0
        self.resyncs = 0
        self._resync_floor_nano = 0
        self._resync_lock = asyncio.Lock()

    async def run(self) -> None:
        backoff = BACKOFF_FIRST_S
        while True:
            try:
                async with self._gateway.events(since_nano=self.last_time_nano) as stream:
                    await self.resync()
                    backoff = BACKOFF_FIRST_S
                    async for event in stream:
                        await self.apply(event)
                log.warning("docker_event_stream_ended", reconnect_in_s=backoff)
            except DockerError as exc:
                log.warning("docker_unreachable", error=str(exc), reconnect_in_s=backoff)
                self._store.docker_error = str(exc)
            self._store.docker_connected = False
            self._store.changed()
            await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def run_periodic_resync(self) -> None:
        while True:
            await asyncio.sleep(RESYNC_INTERVAL_S + random.uniform(-RESYNC_JITTER_S, RESYNC_JITTER_S))
            if not self._store.docker_connected:
                continue
            try:
                await self.resync()
            except DockerError as exc:
                log.warning("resync_failed", error=str(exc))

    async def resync(self) -> None:
        """List every engine and look up every VPN: the result replaces what the store knew."""
        async with self._resync_lock:
            self._resync_floor_nano = time.time_ns()
            snapshot = self._store.generation
            ids = await self._gateway.list_ids(pool_filters(self._pool()))
            infos = [info for info in await asyncio.gather(*(self._gateway.inspect(i) for i in ids))
                     if info is not None and is_engine(info.labels, self._pool())]
            now = time.time()
            vpns = {name: await self._gateway.inspect(name) for name in self._vpn_names()}
            self._store.replace_engines(infos, snapshot)
            for name, info in vpns.items():
                if not self._store.newer_than(f"vpn:{name}", snapshot):
                    self._store.set_vpn(name, info, now)
            self._store.docker_connected = True
            self._store.docker_error = None
            self.resyncs += 1
            self._store.changed()
            log.debug("resync_done", engines=len(infos), vpns=len(vpns))

    async def apply(self, event: dict[str, Any]) -> None:
        self.events_received += 1
        time_nano = int(event.get("timeNano") or int(event.get("time", 0)) * 1_000_000_000)
        self.last_time_nano = max(self.last_time_nano or 0, time_nano)
        actor = event.get("Actor") or {}
        container_id = str(actor.get("ID", ""))
        attributes = actor.get("Attributes") or {}
        action = str(event.get("Action") or event.get("status") or "")
        name = str(attributes.get("name", ""))
        at = time_nano / 1e9
        vpn = name if name in self._vpn_names() else self._store.vpn_name_of(container_id)
        if vpn is not None:
            await self._apply_vpn(vpn, container_id, action, at, time_nano)
        elif is_engine(attributes, self._pool()) or container_id in self._store.engines:
            await self._apply_engine(container_id, action, at)

    async def _apply_vpn(self, vpn: str, container_id: str, action: str, at: float,
                         time_nano: int) -> None:
        current = self._store.vpns.get(vpn)
        is_current = current is not None and current.obs.container_id == container_id
        if action.startswith("health_status"):
            health = action.partition(":")[2].strip()
            if is_current and time_nano >= self._resync_floor_nano and health in HEALTH_STATES:
                visible = len(self._store.visible)
                self._store.set_vpn_state(vpn, HEALTH_STATES[health], at)
                if len(self._store.visible) < visible:
                    # from Docker's own event time to the visible set no longer listing them
                    self._on_hidden((time.time_ns() - time_nano) / 1e9)
            return
        if action in ("stop", "kill") and is_current:
            self._store.note_vpn_stop_requested(vpn, at)
        # a replayed stop from before the container's current run must not stop it again
        if action in STOPPED_ACTIONS and is_current and current is not None \
                and at >= (current.obs.started_at or 0.0):
            # hide its engines at once; the inspect below refines the state
            crashed = action == "die" and current.stop_requested_at is None
            self._store.set_vpn_state(vpn, "unhealthy" if crashed else "stopped", at)
        if action == "destroy" and not is_current:
            return
        self._store.set_vpn(vpn, await self._gateway.inspect(vpn), at)

    async def _apply_engine(self, container_id: str, action: str, at: float) -> None:
        if action == "destroy":
            self._store.drop_engine(container_id)
            return
        engine = self._store.engines.get(container_id)
        if action in STOPPED_ACTIONS and engine is not None and at >= (engine.started_at or 0.0):
            self._store.set_engine_status(container_id, STOPPED_ACTIONS[action])
        info = await self._gateway.inspect(container_id)
        if info is None:
            self._store.drop_engine(container_id)
        elif is_engine(info.labels, self._pool()):
            self._store.upsert_engine(info)
