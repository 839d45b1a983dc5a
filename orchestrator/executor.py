"""The effect executor: carries out the planner's actions against Docker, one task per action.

While an action runs, its container is marked busy (or its slot held by a pending creation) in
the state store, so the planner never plans the same work twice. Results are written back into
the store at once (before the busy mark is lifted), so the next plan sees them. Failures are
logged once per distinct message, kept for `/status`, and feed a circuit breaker that backs off
engine creation instead of hot-looping on a bad image or a broken Docker.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import structlog

from orchestrator.docker_gateway import DockerGateway
from orchestrator.engine_containers import create_body, engine_name
from orchestrator.errors import DockerConflict, DockerError
from orchestrator.state import StateStore
from reconcilers.model import (
    Action,
    CreateEngine,
    Desired,
    PendingCreate,
    RecreateEngine,
    RemoveEngine,
    RestartEngine,
    RestartVpn,
)

log = structlog.get_logger()

ACTION_TIMEOUT_S = 60.0
CREATE_TIMEOUT_S = 900.0  # a creation may first have to pull the engine image
ENGINE_STOP_TIMEOUT_S = 3
VPN_STOP_TIMEOUT_S = 10
BREAKER_THRESHOLD = 3
BREAKER_MAX_BACKOFF_S = 60.0
SLOT_BLOCK_S = 300.0

BreakerState = Literal["closed", "open", "half_open"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionError:
    at: float
    action: str
    target: str
    message: str
    transient: bool


class Executor:
    def __init__(self, gateway: DockerGateway, store: StateStore,
                 desired: Callable[[], Desired], tasks: asyncio.TaskGroup) -> None:
        self._gateway = gateway
        self._store = store
        self._desired = desired
        self._tasks = tasks
        self.create_failures = 0
        self.last_failure: float | None = None
        self.errors: deque[ActionError] = deque(maxlen=20)
        self._failures_by_target: dict[str, int] = {}
        self.completed = 0

    @property
    def breaker_state(self) -> BreakerState:
        if self.create_failures < BREAKER_THRESHOLD:
            return "closed"
        blocked = self._store.create_blocked_until
        return "open" if blocked is not None and blocked > time.time() else "half_open"

    def submit(self, actions: tuple[Action, ...]) -> None:
        for action in actions:
            if isinstance(action, CreateEngine):
                name, token = self._hold_slot(action)
                self._tasks.create_task(self._guard(action, self._create(action, name, token)))
            elif isinstance(action, RecreateEngine):
                name, token = self._hold_slot(action.create)
                self._store.busy.add(action.container_id)
                self._store.removing.add(action.container_id)
                self._tasks.create_task(self._guard(action, self._recreate(action, name, token)))
            elif isinstance(action, RestartVpn):
                self._store.busy.add(action.container_id)
                self._tasks.create_task(self._guard(action, self._restart_vpn(action)))
            else:
                self._store.busy.add(action.container_id)
                if isinstance(action, RemoveEngine):
                    self._store.removing.add(action.container_id)
                runner = self._remove(action) if isinstance(action, RemoveEngine) else self._restart(action)
                self._tasks.create_task(self._guard(action, runner))
        if any(isinstance(a, RemoveEngine | RecreateEngine) for a in actions):
            self._store.changed()  # an engine being removed leaves /engines now

    def _hold_slot(self, create: CreateEngine) -> tuple[str, int]:
        name = engine_name(create)
        pending = PendingCreate(vpn=create.vpn, slot=create.slot, forwarded=create.forwarded,
                                ports=create.ports)
        return name, self._store.begin_create(pending, name)

    async def _guard(self, action: Action, work: object) -> None:
        target = getattr(action, "container_id", None) or getattr(action, "vpn", None) or "engine"
        kind = type(action).__name__
        log.info("action_started", action=kind, target=str(target)[:24], reason=action.reason)
        try:
            creating = isinstance(action, CreateEngine | RecreateEngine)
            async with asyncio.timeout(CREATE_TIMEOUT_S if creating else ACTION_TIMEOUT_S):
                await work  # type: ignore[misc]
            self.completed += 1
            target_id = getattr(action, "container_id", None)
            if target_id is not None:
                self._failures_by_target.pop(target_id, None)
                self._store.cooldowns.pop(target_id, None)
        except (DockerError, TimeoutError) as exc:
            self._record_failure(action, kind, str(target), exc)
        except Exception as exc:  # a bug in one action must not stop the daemon
            log.exception("action_crashed", action=kind, target=str(target)[:24])
            self._record_failure(action, kind, str(target), exc)
        finally:
            if isinstance(action, RemoveEngine | RestartEngine | RecreateEngine | RestartVpn):
                self._store.busy.discard(action.container_id)
                self._store.removing.discard(action.container_id)
            self._store.changed()

    def _cool_down(self, container_id: str, now: float) -> None:
        failures = self._failures_by_target.get(container_id, 0) + 1
        self._failures_by_target[container_id] = failures
        self._store.cooldowns[container_id] = now + min(BREAKER_MAX_BACKOFF_S, 2.0 ** failures)

    def _record_failure(self, action: Action, kind: str, target: str, exc: Exception) -> None:
        now = time.time()
        message = str(exc) or type(exc).__name__
        transient = isinstance(exc, TimeoutError) or getattr(exc, "transient", False)
        repeated = bool(self.errors) and self.errors[-1].message == message
        self.errors.append(ActionError(at=now, action=kind, target=target[:24], message=message,
                                       transient=transient))
        if isinstance(action, RemoveEngine | RestartEngine | RestartVpn):
            self._cool_down(action.container_id, now)
        create = action.create if isinstance(action, RecreateEngine) else action
        port_taken = "already allocated" in message or "address already in use" in message
        if isinstance(create, CreateEngine) and isinstance(exc, DockerConflict) \
                and create.vpn is None and port_taken:
            # the slot's host port is taken by something else: skip the slot for a while
            self._store.block_slot(create.vpn, create.slot, now + SLOT_BLOCK_S)
        if isinstance(action, CreateEngine | RecreateEngine):
            self.create_failures += 1
            self.last_failure = now
            backoff = 1.0
            if self.create_failures >= BREAKER_THRESHOLD:
                backoff = min(BREAKER_MAX_BACKOFF_S, 2.0 ** (self.create_failures - BREAKER_THRESHOLD + 1))
            self._store.create_blocked_until = now + backoff
        (log.debug if repeated else log.error)(
            "action_failed", action=kind, target=target[:24], error=message, transient=transient,
            create_failures=self.create_failures)

    async def _create(self, action: CreateEngine, name: str, token: int) -> None:
        try:
            spec = self._desired().engines
            info = await self._gateway.create_and_start(name, create_body(action, spec))
            self._store.upsert_engine(info)
            self.create_failures = 0
            self._store.create_blocked_until = None
            log.info("engine_created", container=info.name, container_id=info.id[:12],
                     vpn=action.vpn, slot=action.slot, http_port=action.ports.http,
                     forwarded=action.forwarded)
        finally:
            self._store.end_create(token)

    async def _remove(self, action: RemoveEngine) -> None:
        await self._gateway.remove(action.container_id)
        self._store.drop_engine(action.container_id)
        log.info("engine_removed", container_id=action.container_id[:12], reason=action.reason)

    async def _restart(self, action: RestartEngine) -> None:
        await self._gateway.restart(action.container_id, ENGINE_STOP_TIMEOUT_S)
        info = await self._gateway.inspect(action.container_id)
        if info is None:
            self._store.drop_engine(action.container_id)
        else:
            self._store.upsert_engine(info)
        log.info("engine_restarted", container_id=action.container_id[:12], reason=action.reason)

    async def _recreate(self, action: RecreateEngine, name: str, token: int) -> None:
        try:
            await self._gateway.remove(action.container_id)
            self._store.drop_engine(action.container_id)
        except BaseException:
            self._store.end_create(token)
            raise
        await self._create(action.create, name, token)

    async def _restart_vpn(self, action: RestartVpn) -> None:
        self._store.note_vpn_restart(action.name, time.time())
        log.warning("vpn_force_restart", vpn=action.name, reason=action.reason)
        await self._gateway.restart(action.container_id, VPN_STOP_TIMEOUT_S)
