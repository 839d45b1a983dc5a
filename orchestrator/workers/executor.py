"""The effect executor: carries out the planner's actions against Docker, one task per action.

`submit()` is synchronous: it marks each action's container busy (or holds its slot with a
pending creation) in the ledger (`state/ledger.py`) before returning, so the planner never plans
the same work twice; `run()` runs the actions, each in a task of its own. What an action sees of
its containers is written into the store at once, as the event source would; how it ended is
settled in the ledger as one change (`Outcome`): the busy mark or pending creation lifted, and
for a failure the error kept for `/status` (logged once per distinct message), a cool-down, and
the create circuit breaker fed instead of hot-looping on a bad image or a broken Docker. Every
action ends as an entry of the history (`state/history.py`): its kind, target, the planner's
reason, what the daemon had last seen when it planned it, and how it ended.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, assert_never

import structlog

from orchestrator.docker.api import DockerApi
from orchestrator.docker.engines import create_body, engine_name, engine_sighting
from orchestrator.docker.probes import cooldown_key, probe_body, probe_name, probe_observation
from orchestrator.errors import DockerError, PortInUse
from orchestrator.state.history import HistoryKind
from orchestrator.state.ledger import Outcome
from orchestrator.state.records import ActionError
from orchestrator.state.store import StateStore
from reconcilers.model import (
    Action,
    CreateEngine,
    CreateProbe,
    Desired,
    EngineObs,
    PendingCreate,
    RecreateEngine,
    RemoveEngine,
    RemoveProbe,
    RestartEngine,
    RestartProbe,
    RestartVpn,
    SpecFailure,
)
from reconcilers.vpn import ForcedRestart, ProbeReported

log = structlog.get_logger()

ACTION_TIMEOUT_S = 60.0
CREATE_TIMEOUT_S = 900.0  # a creation may first have to pull the engine image
ENGINE_STOP_TIMEOUT_S = 3
VPN_STOP_TIMEOUT_S = 10
COOLDOWN_MAX_S = 60.0
SLOT_BLOCK_S = 300.0
PROBE_SETTLE_S = 1.0  # a new probe still running this long after its start can run


@dataclass(frozen=True, slots=True)
class _Job:
    action: Action
    work: Coroutine[Any, Any, None]
    context: contextvars.Context
    trigger: str | None  # what the daemon had last seen when it planned the action
    token: int | None  # the pending creation it holds (`Ledger.begin_create`)


def _history_kind(action: Action) -> HistoryKind:
    match action:
        case CreateEngine(reason=reason) | RecreateEngine(reason=reason) if "spec changed" in reason:
            return "rollout_step"
        case CreateEngine():
            return "created"
        case RecreateEngine():
            return "recreated"
        case RemoveEngine():
            return "removed"
        case RestartEngine():
            return "restarted"
        case RestartVpn():
            return "vpn_restarted"
        case CreateProbe():
            return "probe_created"
        case RemoveProbe():
            return "probe_removed"
        case RestartProbe():
            return "probe_restarted"
        case _:
            assert_never(action)


class _RemoveStepFailed(DockerError):
    """A recreate's remove step failed: the engine is still there; nothing was created."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(f"removing it failed: {message}")
        self.transient = transient


def _target(action: Action) -> str:
    match action:
        case CreateEngine(vpn=vpn):
            return vpn or "engine"
        case CreateProbe(vpn=vpn):
            return f"probe of {vpn}"
        case (
            RecreateEngine(container_id=cid)
            | RemoveEngine(container_id=cid)
            | RestartEngine(container_id=cid)
            | RestartVpn(container_id=cid)
            | RemoveProbe(container_id=cid)
            | RestartProbe(container_id=cid)
        ):
            return cid
        case _:
            assert_never(action)


def _container_of(action: Action) -> str | None:
    return None if isinstance(action, CreateEngine | CreateProbe) else _target(action)


class RemovalCancelled(Exception):
    """An idle engine's removal called off: a stream was reported on it during its grace."""


class Executor:
    def __init__(self, docker: DockerApi, store: StateStore, desired: Callable[[], Desired]) -> None:
        self._docker = docker
        self._store = store
        self._ledger = store.ledger
        self._desired = desired
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._failures_by_target: dict[str, int] = {}
        self._names: dict[str, EngineObs] = {}  # engines under an action, for the history's words
        self._made: dict[int, str] = {}  # id(action) -> the name of the engine it created
        self._running: set[int] = set()  # id(action) of the creates whose engine runs

    def submit(self, actions: tuple[Action, ...]) -> None:
        """Mark every action's container busy now; `run()` carries them out."""
        for action in actions:
            work, token = self._start(action)
            self._queue.put_nowait(
                _Job(
                    action=action,
                    work=work,
                    context=contextvars.copy_context(),
                    trigger=self._store.observation,
                    token=token,
                )
            )

    def _start(self, action: Action) -> tuple[Coroutine[Any, Any, None], int | None]:
        """The action's work, and the pending creation it holds (None: it creates no engine)."""
        match action:
            case CreateEngine():
                name, token = self._hold_slot(action)
                return self._create(action, name), token
            case RecreateEngine():
                name, token = self._hold_slot(action.create)
                self._ledger.mark_busy(action.container_id, removing=True)
                return self._recreate(action, name), token
            case RemoveEngine():
                self._ledger.mark_busy(action.container_id, removing=True)
                return self._remove(action), None
            case RestartEngine():
                self._ledger.mark_busy(action.container_id)
                return self._restart(action), None
            case RestartVpn():
                self._ledger.mark_busy(action.container_id)
                return self._restart_vpn(action), None
            case CreateProbe():
                self._ledger.begin_probe(action.vpn)
                return self._create_probe(action), None
            case RemoveProbe():
                self._ledger.mark_busy(action.container_id)
                return self._remove_probe(action), None
            case RestartProbe():
                self._ledger.mark_busy(action.container_id)
                return self._restart_probe(action), None
            case _:
                assert_never(action)

    async def run(self) -> None:
        """Carry out submitted actions, each in its own task (they end with the daemon)."""
        async with asyncio.TaskGroup() as tasks:
            while True:
                job = await self._queue.get()
                tasks.create_task(self._guard(job), context=job.context)

    def _record(self, action: Action, trigger: str | None, outcome: str) -> None:
        """The action's entry in the history: the engine or VPN it concerned, by name."""
        engine: EngineObs | None = None
        vpn: str | None = None
        match action:
            case CreateEngine(vpn=vpn) | CreateProbe(vpn=vpn):
                target = f"new engine on {vpn}" if isinstance(action, CreateEngine) else f"probe of {vpn}"
                if isinstance(action, CreateEngine) and vpn is None:
                    target = f"new engine in slot {action.slot}"
            case RestartVpn(name=vpn):
                target = vpn
            case _:
                cid = _target(action)
                engine = self._store.engines.get(cid) or self._names.get(cid)
                target = engine.name if engine is not None else cid[:12]
                vpn = engine.vpn if engine is not None else None
        if isinstance(action, CreateEngine | RecreateEngine):
            made = self._made.pop(id(action.create if isinstance(action, RecreateEngine) else action), None)
            if made is not None and outcome == "done":
                target = f"{target} -> {made}" if isinstance(action, RecreateEngine) else made
        self._store.record(
            _history_kind(action),
            target,
            action.reason,
            trigger=trigger,
            outcome=outcome,
            engine=engine.name if engine is not None else None,
            vpn=vpn,
        )

    async def _guard(self, job: _Job) -> None:
        action = job.action
        target, kind = _target(action), type(action).__name__
        log.info("action_started", action=kind, target=target[:24], reason=action.reason)
        cid = _container_of(action)
        if cid is not None and cid in self._store.engines:
            self._names[cid] = self._store.engines[cid]  # it may be gone when the entry is written
        settled = Outcome(ok=False, at=time.time(), container_id=cid)
        outcome = "interrupted (the daemon stopped)"
        try:
            creating = isinstance(action, CreateEngine | RecreateEngine)
            async with asyncio.timeout(CREATE_TIMEOUT_S if creating else ACTION_TIMEOUT_S):
                await job.work
            outcome = "done"
            settled = Outcome(ok=True, at=time.time(), container_id=cid, create=self._ran(action))
            self._failures_by_target.pop(target, None)
        except RemovalCancelled as exc:
            outcome = f"cancelled: {exc}"
            settled = Outcome(ok=True, at=time.time(), container_id=cid)
        except (DockerError, TimeoutError) as exc:
            outcome = f"failed: {exc or type(exc).__name__}"
            settled = self._failure(action, kind, target, exc)
        except Exception as exc:  # a bug in one action must not stop the daemon
            outcome = f"failed: {exc or type(exc).__name__}"
            log.exception("action_crashed", action=kind, target=target[:24])
            settled = self._failure(action, kind, target, exc)
        finally:
            self._record(action, job.trigger, outcome)
            if cid is not None:
                self._names.pop(cid, None)
            probe = action.vpn if isinstance(action, CreateProbe) else None
            self._ledger.settle(dataclasses.replace(settled, create_token=job.token, probe=probe))

    def _ran(self, action: Action) -> bool | None:
        """Whether the engine a create made runs (None: no create, or it exited at once)."""
        create = action.create if isinstance(action, RecreateEngine) else action
        if id(create) not in self._running:
            return None
        self._running.discard(id(create))
        return True

    def _hold_slot(self, create: CreateEngine) -> tuple[str, int]:
        """The new engine's name, held as a pending creation until the action is settled."""
        name = engine_name(create)
        pending = PendingCreate(
            vpn=create.vpn, slot=create.slot, forwarded=create.forwarded, ports=create.ports
        )
        return name, self._ledger.begin_create(pending, name)

    def _cool_down(self, key: str, now: float) -> float:
        """Until when to leave `key` alone after one more failure in a row."""
        failures = self._failures_by_target.get(key, 0) + 1
        self._failures_by_target[key] = failures
        return now + min(COOLDOWN_MAX_S, 2.0**failures)

    def _failure(self, action: Action, kind: str, target: str, exc: Exception) -> Outcome:
        """A failed action's outcome: its error, cool-downs, a blocked slot, a failed create."""
        now = time.time()
        message = str(exc) or type(exc).__name__
        transient = isinstance(exc, TimeoutError) or getattr(exc, "transient", False)
        repeated = self._ledger.repeats(message)
        cooldowns: dict[str, float] = {}
        removing_failed = isinstance(exc, _RemoveStepFailed)
        if removing_failed or isinstance(
            action, RemoveEngine | RestartEngine | RestartVpn | RemoveProbe | RestartProbe
        ):
            cooldowns[_target(action)] = self._cool_down(_target(action), now)
        if isinstance(action, CreateProbe):
            cooldowns[cooldown_key(action.vpn)] = self._cool_down(cooldown_key(action.vpn), now)
        blocked: tuple[str | None, int, float] | None = None
        create = action.create if isinstance(action, RecreateEngine) else action
        if isinstance(create, CreateEngine) and isinstance(exc, PortInUse) and create.vpn is None:
            # the slot's host port is taken by something else: skip the slot for a while
            blocked = (create.vpn, create.slot, now + SLOT_BLOCK_S)
        failed_create = isinstance(create, CreateEngine) and not removing_failed
        spec_failure = None
        if (
            failed_create
            and isinstance(create, CreateEngine)
            and isinstance(exc, DockerError)
            and not transient
        ):
            # a create Docker refuses for good (no such image, an invalid option) is the spec's
            # own fault: it stops a rollout to that spec
            spec_failure = SpecFailure(spec_hash=create.spec_hash, reason=message, at=now)
        settled = Outcome(
            ok=False,
            at=now,
            container_id=_container_of(action),
            error=ActionError(at=now, action=kind, target=target[:24], message=message, transient=transient),
            cooldowns=cooldowns,
            blocked_slot=blocked,
            create=False if failed_create else None,
            spec_failure=spec_failure,
        )
        failures = self._ledger.create_failures + (1 if failed_create else 0)
        (log.debug if repeated else log.error)(
            "action_failed",
            action=kind,
            target=target[:24],
            error=message,
            transient=transient,
            create_failures=failures,
        )
        return settled

    async def _create(self, action: CreateEngine, name: str) -> None:
        spec = self._desired().engines
        snapshot = self._store.generation
        info = await self._docker.create_and_start(name, create_body(action, spec))
        if self._store.newer_than(info.id, snapshot):
            # its events were seen while it was being made: ask again, for the latest word
            latest = await self._docker.inspect(info.id)
            if latest is None:
                self._store.drop_engine(info.id)
                raise DockerError(f"engine {name} was removed as soon as it was created")
            info = latest
        self._store.upsert_engine(engine_sighting(info))
        self._made[id(action)] = info.name
        if info.status == "running":  # not exited at once: the breaker closes when it is settled
            self._running.add(id(action))
        log.info(
            "engine_created",
            container=info.name,
            container_id=info.id[:12],
            vpn=action.vpn,
            slot=action.slot,
            http_port=action.ports.http,
            forwarded=action.forwarded,
        )

    async def _retire(self, container_id: str, grace_s: float) -> None:
        """An idle engine leaving /engines (hidden meanwhile: busy, removing) waits `grace_s`
        before it goes; a stream reported on it, or a proxy's hold, calls that off."""
        if not grace_s:
            return
        await asyncio.sleep(grace_s)
        store = self._store
        if store.demand.streams.count(container_id) or container_id in store.demand.held_engines(time.time()):
            why = "a stream was reported on it while it left /engines"
            log.info("engine_removal_cancelled", container_id=container_id[:12], reason=why)
            raise RemovalCancelled(why)

    async def _remove(self, action: RemoveEngine) -> None:
        await self._retire(action.container_id, action.grace_s)
        await self._docker.remove(action.container_id)
        self._store.drop_engine(action.container_id)
        log.info("engine_removed", container_id=action.container_id[:12], reason=action.reason)

    async def _restart(self, action: RestartEngine) -> None:
        await self._docker.restart(action.container_id, ENGINE_STOP_TIMEOUT_S)
        info = await self._docker.inspect(action.container_id)
        if info is None:
            self._store.drop_engine(action.container_id)
        else:
            self._store.upsert_engine(engine_sighting(info))
        log.info("engine_restarted", container_id=action.container_id[:12], reason=action.reason)

    async def _recreate(self, action: RecreateEngine, name: str) -> None:
        await self._retire(action.container_id, action.grace_s)
        try:
            await self._docker.remove(action.container_id)
            self._store.drop_engine(action.container_id)
        except DockerError as exc:
            raise _RemoveStepFailed(str(exc), transient=exc.transient) from exc
        await self._create(action.create, name)

    async def _create_probe(self, action: CreateProbe) -> None:
        spec = self._desired()
        if spec.vpn.probe is None:
            return  # turned off since it was planned
        body = probe_body(action, spec.vpn.probe, spec.engines)
        info = await self._docker.create_and_start(probe_name(action), body)
        await asyncio.sleep(PROBE_SETTLE_S)
        settled = await self._docker.inspect(info.id)
        if settled is None or settled.status != "running":
            # its image cannot run the probe (no sh, no sleep): say so, and retry after a
            # cool-down (the failure below), never in a loop
            why = (
                f"the probe container exited at once (exit code "
                f"{settled.exit_code if settled else 'unknown'}): its image needs sh, sleep and nc"
            )
            await self._docker.remove(info.id)
            verdict = ProbeReported(vpn_id=action.vpn_id, started_at=None, up=None, error=why)
            self._store.apply_vpn(action.vpn, verdict, time.time())
            raise DockerError(why)
        self._store.upsert_probe(probe_observation(settled))
        log.info(
            "tunnel_probe_created",
            vpn=action.vpn,
            container_id=info.id[:12],
            target=f"{spec.vpn.probe.host}:{spec.vpn.probe.port}",
        )

    async def _remove_probe(self, action: RemoveProbe) -> None:
        await self._docker.remove(action.container_id)
        self._store.drop_probe(action.container_id)
        log.info("tunnel_probe_removed", container_id=action.container_id[:12], reason=action.reason)

    async def _restart_probe(self, action: RestartProbe) -> None:
        await self._docker.restart(action.container_id, ENGINE_STOP_TIMEOUT_S)
        info = await self._docker.inspect(action.container_id)
        if info is None:
            self._store.drop_probe(action.container_id)
        else:
            self._store.upsert_probe(probe_observation(info))

    async def _restart_vpn(self, action: RestartVpn) -> None:
        self._store.apply_vpn(action.name, ForcedRestart(), time.time())
        log.warning("vpn_force_restart", vpn=action.name, reason=action.reason)
        await self._docker.restart(action.container_id, VPN_STOP_TIMEOUT_S)
