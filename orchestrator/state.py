"""The observed state, and the visible engine set derived from it on every change.

All writers (event source, resync, executor, readiness prober, control-API poller) call the
methods here from the one event loop, so no locks are needed. Each mutation recomputes the
visible set at once (no debounce: a VPN turning unhealthy hides its engines within the same
call that applied Docker's event) and sets `dirty` so the reconcile loop plans again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass, field

import structlog

from orchestrator.docker_gateway import ContainerInfo
from orchestrator.engine_containers import engine_observation
from orchestrator.streams import Reservations, StreamRegistry
from reconcilers import visible_engines
from reconcilers.model import EngineObs, Observed, PendingCreate, Plan, VpnObs, VpnState

log = structlog.get_logger()


CLEAN_EXIT_CODES = (0, 143)  # exited by itself, or on SIGTERM (docker stop)


def vpn_state_of(info: ContainerInfo | None, on_purpose: bool = False) -> VpnState:
    """Docker's view of a VPN container. One that exited with an error without anybody asking
    it to stop crashed: it counts as unhealthy (restarted after the timeout), while one stopped
    on purpose is `stopped` and left alone."""
    if info is None:
        return "missing"
    if info.status == "restarting":
        return "starting"
    if info.status != "running":
        crashed = info.exit_code not in (None, *CLEAN_EXIT_CODES) and not on_purpose
        return "unhealthy" if crashed and info.status == "exited" else "stopped"
    if info.health in ("unhealthy", "starting"):
        return info.health  # type: ignore[return-value]
    return "healthy"  # "healthy", or no HEALTHCHECK at all


@dataclass(slots=True, kw_only=True)
class VpnRecord:
    obs: VpnObs
    ip: str | None = None
    public_ip: str | None = None
    control_status: str | None = None
    control_error: str | None = None
    docker_state: VpnState | None = None  # what Docker says; `obs.state` also heeds the control server
    control_down: bool = False  # the control server says the VPN tunnel is stopped
    # when a stop/kill event for it came: an exit after that, until it runs again, is on purpose
    stop_requested_at: float | None = None


@dataclass(slots=True, kw_only=True)
class EngineExtra:
    """What /engines shows beyond the planner's view."""

    ip: str | None
    labels: dict[str, str]
    first_seen: float
    last_seen: float
    last_health_check: float | None = None


@dataclass(slots=True, kw_only=True)
class StateStore:
    restart_on_reconnect: bool = True
    engines: dict[str, EngineObs] = field(default_factory=dict)
    extras: dict[str, EngineExtra] = field(default_factory=dict)
    vpns: dict[str, VpnRecord] = field(default_factory=dict)
    pending_creates: dict[int, PendingCreate] = field(default_factory=dict)
    pending_names: dict[int, str] = field(default_factory=dict)
    busy: set[str] = field(default_factory=set)
    cooldowns: dict[str, float] = field(default_factory=dict)
    blocked_slots: dict[tuple[str | None, int], float] = field(default_factory=dict)
    removing: set[str] = field(default_factory=set)
    create_blocked_until: float | None = None
    streams: StreamRegistry = field(default_factory=StreamRegistry)
    reservations: Reservations = field(default_factory=Reservations)
    # Engines adopted from an earlier daemon: their streams are unknown, so their idle clock
    # starts when this daemon first saw them (no scale-down of a possibly busy engine at once).
    adopted_at: dict[str, float] = field(default_factory=dict)
    unready_since: dict[str, float] = field(default_factory=dict)
    demand_until: float | None = None
    visible: tuple[EngineObs, ...] = ()
    last_plan: Plan | None = None
    last_reconcile_at: float | None = None
    docker_connected: bool = False
    docker_error: str | None = None
    watchers: list[asyncio.Event] = field(default_factory=list)
    _pending_seq: int = 0
    version: int = 0  # bumped on every change; lets readers cache what they derive
    generation: int = 0  # bumped on every write of a container's facts, see `touched`
    touched: dict[str, int] = field(default_factory=dict)

    # -- engines -------------------------------------------------------------------------------
    def upsert_engine(self, info: ContainerInfo) -> None:
        old = self.engines.get(info.id)
        same_run = old is not None and old.started_at == info.started_at
        self.engines[info.id] = engine_observation(
            info, ready=bool(old and same_run and old.ready and info.status == "running"))
        self._touch(info.id)
        now = time.time()
        extra = self.extras.get(info.id)
        self.extras[info.id] = EngineExtra(
            ip=info.ip, labels=dict(info.labels),
            first_seen=extra.first_seen if extra else (info.created_at or now), last_seen=now,
            last_health_check=extra.last_health_check if extra and same_run else None,
        )
        self.changed()

    def drop_engine(self, container_id: str) -> None:
        if container_id in self.engines:
            self._forget_engine(container_id)
            self.changed()

    def set_engine_status(self, container_id: str, status: str) -> None:
        """Apply a status carried by an event before the follow-up inspect confirms it."""
        engine = self.engines.get(container_id)
        if engine is not None and status not in (engine.status, "running"):
            self.engines[container_id] = dataclasses.replace(engine, status=status, ready=False)  # type: ignore[arg-type]
            self._touch(container_id)
            self.changed()

    def mark_ready(self, container_id: str, started_at: float | None) -> None:
        engine = self.engines.get(container_id)
        if engine is None or engine.started_at != started_at or engine.ready:
            return
        self.engines[container_id] = dataclasses.replace(engine, ready=True)
        self.unready_since.pop(container_id, None)
        self.extras[container_id].last_health_check = time.time()
        log.info("engine_ready", container=engine.name, container_id=container_id[:12])
        self.changed()

    def mark_unready(self, container_id: str, reason: str) -> None:
        engine = self.engines.get(container_id)
        if engine is None or not engine.ready:
            return
        self.engines[container_id] = dataclasses.replace(engine, ready=False)
        self.unready_since[container_id] = time.time()
        log.warning("engine_unready", container=engine.name, container_id=container_id[:12],
                    reason=reason)
        self.changed()

    def note_health_check(self, container_id: str) -> None:
        extra = self.extras.get(container_id)
        if extra is not None:
            extra.last_health_check = time.time()
            self.version += 1

    def replace_engines(self, infos: list[ContainerInfo], snapshot: int) -> None:
        """Full resync: the listed containers are the truth about engines, except for those an
        event or an action changed after `snapshot` (taken before listing): those are newer."""
        seen = {info.id for info in infos}
        for gone in [cid for cid in self.engines
                     if cid not in seen and not self.newer_than(cid, snapshot)]:
            self._forget_engine(gone)
        creating = set(self.pending_names.values())
        now = time.time()
        for info in infos:
            if self.newer_than(info.id, snapshot):
                continue
            if info.id not in self.engines and info.name not in creating:
                self.adopted_at[info.id] = now
            self.upsert_engine(info)
        self.changed()

    def newer_than(self, key: str, snapshot: int) -> bool:
        return self.touched.get(key, 0) > snapshot

    def _touch(self, key: str) -> None:
        self.generation += 1
        self.touched[key] = self.generation

    def _forget_engine(self, container_id: str) -> None:
        self.engines.pop(container_id, None)
        self.extras.pop(container_id, None)
        self.adopted_at.pop(container_id, None)
        self.unready_since.pop(container_id, None)
        self._touch(container_id)

    # -- VPNs ----------------------------------------------------------------------------------
    def set_vpn(self, name: str, info: ContainerInfo | None, at: float) -> None:
        record = self.vpns.get(name)
        if (record is not None and record.stop_requested_at is not None and info is not None
                and info.status == "running" and (info.started_at or 0.0) > record.stop_requested_at):
            record.stop_requested_at = None  # it runs again since
        # an exit counts as a crash only when this daemon saw it running and nobody stopped it;
        # one found exited at start-up may have been stopped on purpose: leave it alone
        witnessed = record is not None and record.obs.state not in ("missing", "stopped")
        on_purpose = record is None or record.stop_requested_at is not None or not witnessed
        self._set_vpn_state(name, vpn_state_of(info, on_purpose), at, info)

    def note_vpn_stop_requested(self, name: str, at: float) -> None:
        """Someone stopped or killed the VPN container (a Docker stop/kill event)."""
        record = self.vpns.get(name)
        if record is not None:
            record.stop_requested_at = at

    def set_vpn_state(self, name: str, state: VpnState, at: float) -> None:
        """Apply a state carried by an event (health status, death) before any inspect."""
        record = self.vpns.get(name)
        if record is None or record.obs.container_id is None:
            return
        self._set_vpn_state(name, state, at, None)

    def _set_vpn_state(self, name: str, state: VpnState, at: float,
                       info: ContainerInfo | None) -> None:
        self._touch(f"vpn:{name}")
        record = self.vpns.get(name)
        if record is not None and info is not None and (
                info.id != record.obs.container_id or info.started_at != record.obs.started_at):
            # a new container or a new run: what its control server said before no longer holds
            record.control_down, record.public_ip = False, None
        if record is not None:
            record.docker_state = state
            if state == "healthy" and record.control_down:
                state = "unhealthy"  # Docker's check has not noticed the tunnel is down yet
        old = record.obs if record else None
        container_id = info.id if info else (old.container_id if old and state != "missing" else None)
        started_at = info.started_at if info else (old.started_at if old else None)
        same = old is not None and old.state == state and old.container_id == container_id
        reconnected_at = old.reconnected_at if old else None
        if old is not None and not same:
            if old.state == "unhealthy" and state == "healthy" and old.container_id == container_id:
                reconnected_at = at
                log.info("Gluetun VPN recovered and is now healthy", vpn=name)
                if self.restart_on_reconnect:
                    log.info("VPN reconnected - triggering AceStream engine restart", vpn=name)
            elif state == "unhealthy":
                log.warning("Gluetun VPN became unhealthy", vpn=name)
            else:
                log.info("vpn_state_changed", vpn=name, state=state, previous=old.state)
        obs = VpnObs(
            name=name,
            container_id=container_id,
            state=state,
            state_since=old.state_since if same and old else at,
            started_at=started_at,
            reconnected_at=reconnected_at,
            forwarded_port=old.forwarded_port if old else None,
            last_forced_restart=old.last_forced_restart if old else None,
            port_known=(old.port_known if same and old else state != "healthy"),
        )
        if record is None:
            self.vpns[name] = VpnRecord(obs=obs, ip=info.ip if info else None, docker_state=state)
        else:
            record.obs = obs
            if info is not None:
                record.ip = info.ip
        self.changed()

    def set_vpn_control(self, name: str, *, forwarded_port: int | None, public_ip: str | None,
                        status: str | None, error: str | None) -> None:
        record = self.vpns.get(name)
        if record is None:
            return
        previous_ip = record.public_ip
        record.public_ip, record.control_status, record.control_error = public_ip, status, error
        # an unreadable control server (401, timeout) says nothing about the tunnel: Docker decides
        down = status == "stopped"
        if down != record.control_down:
            record.control_down = down
            log.info("gluetun_tunnel_status", vpn=name, status=status)
            self._set_vpn_state(name, record.docker_state or record.obs.state, time.time(), None)
        if previous_ip and public_ip and public_ip != previous_ip and record.obs.state == "healthy":
            # the tunnel reconnected inside Gluetun without any Docker health change
            log.info("VPN reconnected - triggering AceStream engine restart" if self.restart_on_reconnect
                     else "vpn_reconnected", vpn=name, public_ip=public_ip, previous_ip=previous_ip)
            record.obs = dataclasses.replace(record.obs, reconnected_at=time.time())
            self.changed()
        if not record.obs.port_known:
            record.obs = dataclasses.replace(record.obs, port_known=True)
            self.changed()
        if record.obs.forwarded_port != forwarded_port:
            log.info("vpn_forwarded_port", vpn=name, port=forwarded_port,
                     previous=record.obs.forwarded_port)
            record.obs = dataclasses.replace(record.obs, forwarded_port=forwarded_port)
            self.changed()

    def note_vpn_restart(self, name: str, at: float) -> None:
        record = self.vpns.get(name)
        if record is not None:
            record.obs = dataclasses.replace(record.obs, last_forced_restart=at)
            self.changed()

    def vpn_name_of(self, container_id: str) -> str | None:
        return next((n for n, r in self.vpns.items() if r.obs.container_id == container_id), None)

    # -- work under way ------------------------------------------------------------------------
    def begin_create(self, pending: PendingCreate, name: str) -> int:
        """Hold a slot for a creation under way. Until it ends, a container of that name seen
        through an event counts as this creation, not as an engine of its own."""
        self._pending_seq += 1
        self.pending_creates[self._pending_seq] = pending
        self.pending_names[self._pending_seq] = name
        return self._pending_seq

    def end_create(self, token: int) -> None:
        self.pending_creates.pop(token, None)
        self.pending_names.pop(token, None)
        self.changed()

    # -- derived -------------------------------------------------------------------------------
    def engine_with_streams(self, engine: EngineObs, now: float) -> EngineObs:
        """The engine as the planner sees it: an engine handed out by provisioning counts as
        busy until its stream is reported; an adopted one as used when it was adopted."""
        cid = engine.container_id
        held = 1 if cid in self.reservations.held(now) else 0
        used = [t for t in (self.streams.last_usage.get(cid), self.adopted_at.get(cid)) if t]
        unready = [t for t in (self.unready_since.get(cid), self.adopted_at.get(cid)) if t]
        return dataclasses.replace(engine, streams=self.streams.count(cid) + held,
                                   last_stream_usage=max(used) if used else None,
                                   unready_since=None if engine.ready or not unready else max(unready))

    def want_free_engine(self, until: float) -> None:
        """A proxy asked for an engine and none was free: keep one more free until `until`."""
        self.demand_until = until
        self.changed()

    def observed(self, now: float | None = None) -> Observed:
        now = time.time() if now is None else now
        demand = 1 if self.demand_until is not None and self.demand_until > now else 0
        creating = set(self.pending_names.values())
        return Observed(
            engines=tuple(self.engine_with_streams(e, now) for e in self.engines.values()
                          if e.name not in creating),
            extra_demand=demand,
            vpns={name: r.obs for name, r in self.vpns.items()},
            pending_creates=tuple(self.pending_creates.values()),
            busy_containers=frozenset(self.busy),
            cooldowns={c: t for c, t in self.cooldowns.items() if t > now},
            blocked_slots=frozenset(k for k, t in self.blocked_slots.items() if t > now),
            removing=frozenset(self.removing),
            create_blocked_until=self.create_blocked_until,
        )

    def block_slot(self, vpn: str | None, slot: int, until: float) -> None:
        self.blocked_slots[(vpn, slot)] = until
        log.warning("slot_blocked", vpn=vpn, slot=slot, hint="its ports are in use by something else")

    def engine_count(self) -> int:
        """Engines that exist or are being created, each counted once."""
        creating = set(self.pending_names.values())
        return sum(1 for e in self.engines.values() if e.name not in creating) + len(self.pending_creates)

    def changed(self) -> None:
        self.version += 1
        visible = tuple(e for e in visible_engines(
            tuple(self.engines.values()),
            {name: r.obs for name, r in self.vpns.items()},
            restart_on_reconnect=self.restart_on_reconnect,
        ) if e.container_id not in self.removing)
        if visible != self.visible:
            before, self.visible = self.visible, visible
            self._end_streams_of_lost(before, visible)
        for event in self.watchers:
            event.set()

    def _end_streams_of_lost(self, before: tuple[EngineObs, ...],
                             after: tuple[EngineObs, ...]) -> None:
        still = {e.container_id for e in after}
        now = time.time()
        for engine in before:
            if engine.container_id in still:
                continue
            reason = "engine_hidden" if engine.container_id in self.engines else "engine_gone"
            ended = self.streams.end_for_engine(engine.container_id, reason, now)
            if ended:
                log.warning("streams_ended", container=engine.name, reason=reason,
                            streams=[s.id for s in ended])
        for gone in [c for c in self.streams.last_usage if c not in self.engines]:
            self.streams.forget_engine(gone)

    def watch(self) -> asyncio.Event:
        """An event set on every change from now on; the watcher clears it when it looks."""
        event = asyncio.Event()
        event.set()
        self.watchers.append(event)
        return event
