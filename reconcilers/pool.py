"""The planner: from (desired, observed, now) to the actions that move the world towards desired.

`plan()` is the single entry point the daemon calls after every observed change. It is pure
and idempotent: called twice on the same input it returns the same plan, and an action whose
effect has landed is not planned again, so a missed or duplicated event is harmless. Work that
is already under way (`Observed.busy_containers`, `Observed.pending_creates`) is never planned
twice.

Order of concerns in one pass: VPN force-restarts, repair of broken or stale engines, pool
size (create / scale down / rebalance), the forwarded engine of each VPN, and finally the
rollout of a changed spec.

A rollout replaces one idle engine at a time, create-before-remove: one engine of the new spec
is started beside the old ones (while `max_replicas` and a free slot allow), and only once it
answers does the pool's own scale-down remove an old one (old-spec engines go first). Where
there is no room, or the engine holds its VPN's forwarded port, the engine is recreated in place
(remove, then create). Every create, recreates included, waits for the create circuit breaker.
The first failure of the new spec (`Observed.spec_failure`) stops the rollout with the old
engines left running, until the YAML changes again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field

from reconcilers.health import staleness
from reconcilers.model import (
    Action,
    CreateEngine,
    Desired,
    EngineObs,
    Observed,
    Plan,
    Problem,
    RecreateEngine,
    RemoveEngine,
    RemoveProbe,
    RestartEngine,
    RestartProbe,
    RestartVpn,
    VpnObs,
)
from reconcilers.placement import (
    Occupant,
    healthy_vpns,
    place_new_engines,
    ports_clash,
    ports_for,
    slot_capacity,
)
from reconcilers.ports import BANDS
from reconcilers.probes import plan_probes
from reconcilers.stalls import VpnStalls, delivers, exit_stalling


def engine_spec_hash(desired: Desired) -> str:
    """A short digest of everything that, when changed in the YAML, calls for new containers."""
    spec = desired.engines
    doc = {
        "image": spec.image,
        "env": dict(sorted(spec.env.items())),
        "labels": dict(sorted(spec.labels.items())),
        "launch": {
            "preset": spec.launch.preset,
            "entrypoint": spec.launch.entrypoint,
            "command": spec.launch.command,
            "env": dict(sorted(spec.launch.env.items())),
        },
        "cache_limit_gb": spec.cache_limit_gb,
        # bounded logs and no image health check: engines created before either are rolled over
        "logs": [spec.log_max_size, spec.log_max_files],
        "healthcheck": "none",
        "vpn_mode": desired.vpn.mode,
        # the port layout: engines of an earlier layout are rolled over to the new one
        "ports": str(desired.vpn.port_range) if desired.vpn.mode != "none" else str(spec.host_port_range),
        "port_bands": BANDS,
        "vpns": len(desired.vpn.containers),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


CRASH_RESTART_S = 10.0
CONTROL_DEAD_S = 60.0


@dataclass(slots=True)
class _Pass:
    """Scratch state of one planning pass."""

    desired: Desired
    observed: Observed
    now: float
    spec_hash: str
    actions: list[Action] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    wakes: list[float] = field(default_factory=list)
    kept: list[EngineObs] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)

    def act(self, action: Action) -> None:
        self.actions.append(action)
        if isinstance(action, RemoveEngine | RestartEngine | RecreateEngine | RemoveProbe | RestartProbe):
            self.touched.add(action.container_id)
        if isinstance(action, RemoveEngine | RecreateEngine):
            self.removed.add(action.container_id)

    def free_container(self, container_id: str) -> bool:
        cooldown = self.observed.cooldowns.get(container_id)
        if cooldown is not None and cooldown > self.now:
            self.wakes.append(cooldown)
            return False
        return container_id not in self.observed.busy_containers and container_id not in self.touched

    def free(self, engine: EngineObs) -> bool:
        """Not busy with an operation, not cooling down after a failed one, and not already
        acted upon in this pass."""
        return self.free_container(engine.container_id)

    def vpn(self, name: str | None) -> VpnObs | None:
        return self.observed.vpns.get(name) if name else None

    def may_create(self) -> bool:
        """False while the create circuit breaker is open (and says so once, with a wake-up)."""
        blocked = self.observed.create_blocked_until
        if blocked is None or blocked <= self.now:
            return True
        self.wakes.append(blocked)
        if not any(pr.code == "circuit_breaker" for pr in self.problems):
            self.problems.append(
                Problem(code="circuit_breaker", message="engine creation keeps failing; retrying later")
            )
        return False

    def stale(self, engine: EngineObs) -> bool:
        """Of an earlier spec, of an image the tag no longer points at, or older than
        `max_age_s`: a rollout replaces it (idle ones only, one at a time)."""
        spec = self.desired.engines
        if engine.spec_hash != self.spec_hash:
            return True
        if spec.image_id is not None and engine.image_id is not None and engine.image_id != spec.image_id:
            return True
        return spec.max_age_s is not None and self.now - engine.created_at >= spec.max_age_s


def plan(desired: Desired, observed: Observed, now: float) -> Plan:
    p = _Pass(desired=desired, observed=observed, now=now, spec_hash=engine_spec_hash(desired))
    _check_vpns(p)
    _keep_probes(p)
    _report_stalls(p)
    _report_image(p)
    _repair_engines(p)
    target = _size_pool(p)
    _keep_forwarded_engines(p)
    _roll_changed_spec(p)
    future = [w for w in p.wakes if w > now]
    return Plan(
        actions=tuple(p.actions),
        wake_at=min(future) if future else None,
        problems=tuple(p.problems),
        target=target,
    )


def _check_vpns(p: _Pass) -> None:
    """Report VPNs that are not healthy; restart one that Gluetun cannot heal by itself."""
    if p.desired.vpn.mode == "none":
        return
    for name in p.desired.vpn.containers:
        vpn = p.observed.vpns.get(name)
        if vpn is None or vpn.state == "missing":
            p.problems.append(
                Problem(code="vpn_missing", vpn=name, message=f"VPN container '{name}' does not exist")
            )
            continue
        if vpn.state == "stopped":
            p.problems.append(
                Problem(
                    code="vpn_stopped",
                    vpn=name,
                    message=f"VPN container '{name}' is stopped; not restarting "
                    "a container stopped on purpose",
                )
            )
            continue
        if vpn.control_problem is not None:
            # a setting to change in Gluetun, not a VPN that is down: nothing else follows from it
            p.problems.append(
                Problem(code=vpn.control_problem.code, vpn=name, message=vpn.control_problem.message)
            )
        if vpn.state != "unhealthy" or vpn.container_id is None:
            continue
        p.problems.append(
            Problem(
                code="vpn_unhealthy", vpn=name, message=f"VPN '{name}' unhealthy since {vpn.state_since:.0f}"
            )
        )
        due, why = restart_due(vpn, p.desired.vpn.unhealthy_restart_timeout_s)
        if p.now < due or vpn.container_id in p.observed.busy_containers:
            p.wakes.append(due)
        elif not vpn.running or not _held_while_delivering(  # a crash left nothing to deliver through
            p, [e for e in p.observed.engines if e.vpn == name], f"VPN '{name}'", why
        ):
            p.act(RestartVpn(name=name, container_id=vpn.container_id, reason=why))


def _held_while_delivering(p: _Pass, engines: list[EngineObs], what: str, why: str) -> bool:
    """A restart due on a guess (its tunnel said down, its API slow) is held while one of the
    engines it would cut still delivers a stream (`stalls.delivers`, within `stall_after_s`):
    said on /status (`restart_held`), planned again once the evidence is that old."""
    within = p.desired.engines.stall_after_s
    delivering = [e for e in engines if delivers(e.delivered_at, p.now, within)]
    if not delivering:
        return False
    p.problems.append(
        Problem(
            code="restart_held",
            vpn=delivering[0].vpn,
            engine=delivering[0].name if len(engines) == 1 else None,
            message=f"{what}: restart due ({why}) but held: "
            f"{', '.join(e.name for e in delivering)} still deliver their streams",
        )
    )
    p.wakes.append(max(e.delivered_at or 0.0 for e in delivering) + within)
    return True


def restart_due(vpn: VpnObs, timeout: float) -> tuple[float, str]:
    """When an unhealthy VPN is restarted through Docker, and why.

    Gluetun heals its tunnel itself (it restarts it inside the container at +6 s, then with
    back-off), and every container restart kills every attached engine's network and
    renegotiates port forwarding: so a running Gluetun is restarted only when its tunnel has been
    down for `timeout` (300 s by default: past Gluetun's own retries), or its control server,
    seen answering in this run, fell silent around the time the tunnel went down and has not even
    accepted a connection for `CONTROL_DEAD_S` since (Gluetun itself is stuck). A crashed
    container (exited with an error nobody asked for) cannot heal itself: it is restarted after
    `CRASH_RESTART_S`. Each further restart while it stays unhealthy waits twice as long (capped
    at 32x)."""
    backoff = 2.0 ** min(vpn.forced_restarts, 5)
    last = vpn.last_forced_restart or 0.0
    since = max(vpn.state_since, last)
    if not vpn.running:
        return since + CRASH_RESTART_S * backoff, "crashed (exited with an error nobody asked for)"
    due, why = since + timeout * backoff, f"tunnel down for {timeout * backoff:g}s"
    silent = vpn.control_unreachable_since
    if silent is not None and vpn.control_answered and silent >= since - CONTROL_DEAD_S:
        # Gluetun stuck: its control server answered in this run, then fell silent around the
        # time the tunnel went down. One out of reach long before (another network, a wrong
        # port), or never seen answering (the daemon started, or Gluetun was restarted, with it
        # out of reach) says nothing of Gluetun's state: the tunnel's own timeout applies then
        dead = max(silent, since) + min(CONTROL_DEAD_S, timeout) * backoff
        if dead < due:
            due, why = dead, "tunnel down and its control server not answering at all"
    return due, why


def _keep_probes(p: _Pass) -> None:
    planned = plan_probes(p.desired, p.observed, p.free_container)
    for action in planned.actions:
        p.act(action)
    p.problems.extend(planned.problems)


def _repair_engines(p: _Pass) -> None:
    """Remove engines that cannot come back, restart those stuck in a dead namespace."""
    configured = set(p.desired.vpn.containers) if p.desired.vpn.mode != "none" else set()
    reconnect = p.desired.vpn.restart_engines_on_reconnect
    for engine in p.observed.engines:
        if engine.container_id in p.observed.removing:
            continue
        if not p.free(engine):
            # an action under way counts it (a restart passes through "exited"); one cooling
            # down after a failed action counts only while it runs, else it just holds its slot
            if engine.container_id in p.observed.busy_containers or engine.status == "running":
                p.kept.append(engine)
            continue
        if (engine.vpn is None and configured) or (engine.vpn is not None and engine.vpn not in configured):
            _drain(p, engine)
            continue
        if engine.status in ("exited", "dead", "created", "paused"):
            p.act(RemoveEngine(container_id=engine.container_id, reason=f"engine {engine.status}"))
            continue
        if engine.stalled_since is not None and engine.streams == 0:
            # hidden since it stalled, a replacement started then; its streams are over now
            p.act(
                RemoveEngine(container_id=engine.container_id, reason="stalled: its streams made no progress")
            )
            continue
        vpn = p.vpn(engine.vpn)
        state = staleness(engine, vpn, restart_on_reconnect=reconnect)
        if state == "recreate":
            p.act(RemoveEngine(container_id=engine.container_id, reason="VPN container was recreated"))
            continue
        if state == "restart" and vpn is not None and vpn.state == "healthy":
            p.act(
                RestartEngine(
                    container_id=engine.container_id,
                    reason="VPN container restarted after the engine started: its network is gone",
                )
            )
        elif state == "reconnect" and vpn is not None and vpn.state == "healthy":
            # hidden from /engines meanwhile; a stream still playing on it is not cut for this,
            # one that makes no progress (the engine is stalled) is no longer playing
            if engine.streams == 0 or engine.stalled_since is not None:
                p.act(
                    RestartEngine(
                        container_id=engine.container_id,
                        reason="VPN reconnected (new public IP or forwarded port) after the engine started",
                    )
                )
        elif state == "fresh" and (vpn is None or vpn.state == "healthy"):
            _restart_if_never_ready(p, engine)
        p.kept.append(engine)


def _report_stalls(p: _Pass) -> None:
    """`engine_stalled` for each stalled engine still carrying streams; `vpn_exit_stalling`
    for a VPN whose exit looks like it starves P2P (reconcilers.stalls)."""
    for engine in p.observed.engines:
        if engine.stalled_since is None or not engine.stalled_streams:
            continue
        p.problems.append(
            Problem(
                code="engine_stalled",
                engine=engine.name,
                vpn=engine.vpn,
                streams=engine.stalled_streams,
                message=f"engine {engine.name}: {len(engine.stalled_streams)} stream(s) made no progress "
                f"for {p.desired.engines.stall_after_s:g}s; hidden from /engines and replaced, its streams "
                f"end after {p.desired.engines.stall_grace_s:g}s unless the proxy ends them first",
            )
        )
    if p.desired.vpn.mode == "none":
        return
    evidence = [
        VpnStalls(
            vpn=name,
            stalled_engines=tuple(
                e.name
                for e in p.observed.engines
                if e.vpn == name and e.stalled_since is not None and e.streams
            ),
            progressing_engines=tuple(e.name for e in p.observed.engines if e.vpn == name and e.progressing),
            recent_stalls=p.observed.recent_stalls.get(name, ()),
        )
        for name in p.desired.vpn.containers
    ]
    for verdict in exit_stalling(evidence, p.now):
        p.problems.append(Problem(code="vpn_exit_stalling", vpn=verdict.vpn, message=verdict.message))


def _report_image(p: _Pass) -> None:
    if p.observed.image_error is not None:
        p.problems.append(
            Problem(
                code="image_pull_failed",
                message=f"engines.image {p.desired.engines.image} could not be pulled "
                f"({p.observed.image_error}); the engines keep the image they run",
            )
        )
    max_age = p.desired.engines.max_age_s
    if max_age is not None:
        p.wakes.extend(e.created_at + max_age for e in p.observed.engines)


def _drain(p: _Pass, engine: EngineObs) -> None:
    """An engine the config no longer wants where it is (its VPN dropped or renamed, or VPNs
    turned on): hidden already; removed once idle, or once its streams outlived the grace."""
    why = (
        "engine is not behind a VPN" if engine.vpn is None else f"VPN '{engine.vpn}' is no longer configured"
    )
    if engine.streams == 0:
        p.act(RemoveEngine(container_id=engine.container_id, reason=why))
        return
    grace = p.desired.vpn.drain_grace_s
    due = p.observed.leaving_since.get(engine.vpn, p.now) + grace
    if p.now >= due:
        p.act(RemoveEngine(container_id=engine.container_id, reason=f"{why}; drain grace of {grace:g}s over"))
        return
    p.wakes.append(due)
    if not any(pr.code == "draining" for pr in p.problems):
        p.problems.append(
            Problem(
                code="draining",
                message=f"engines with streams stay until idle (at most {grace:g}s) on a VPN no longer "
                "configured; they take no new streams",
                vpn=engine.vpn,
            )
        )


def _restart_if_never_ready(p: _Pass, engine: EngineObs) -> None:
    """A running engine that has not answered its readiness check `ready_timeout_s` after it
    started (or that stopped answering: it started long ago) is restarted."""
    if engine.ready or engine.status != "running" or engine.started_at is None:
        return
    timeout = p.desired.engines.ready_timeout_s
    due = max(engine.started_at, engine.unready_since or 0.0) + timeout
    if p.now < due:
        p.wakes.append(due)
        return
    why = f"not answering its API for {timeout:g}s"
    if _held_while_delivering(p, [engine], f"engine {engine.name}", why):
        return
    p.act(RestartEngine(container_id=engine.container_id, reason=why))
    if not any(pr.code == "engines_not_answering" for pr in p.problems):
        p.problems.append(
            Problem(
                code="engines_not_answering",
                message="engines do not answer their API and are being restarted; "
                "if this repeats, check engines.address and the engine image",
            )
        )


def _counts_for_pool(p: _Pass, engine: EngineObs) -> bool:
    """Engines behind a VPN that is down do not count: replacements go to a healthy VPN. A
    stalled engine does not count either: its replacement starts before it goes."""
    if engine.stalled_since is not None:
        return False
    if engine.vpn is None:
        return True
    vpn = p.vpn(engine.vpn)
    return vpn is not None and vpn.state == "healthy"


def _occupants(
    p: _Pass, planned: tuple[CreateEngine, ...] = (), excluding: str | None = None
) -> list[Occupant]:
    """Everything holding a slot. An engine removed in this pass keeps its slot until it is
    gone, but no longer holds its VPN's forwarded port, so its replacement can take it."""
    held = [
        Occupant(vpn=e.vpn, slot=e.slot, ports=e.ports, forwarded=e.forwarded)
        if e.container_id not in p.removed
        else Occupant(vpn=e.vpn, slot=e.slot, ports=dataclasses.replace(e.ports, p2p=0), forwarded=False)
        for e in p.observed.engines
        if e.container_id != excluding
    ]
    held += [
        Occupant(vpn=c.vpn, slot=c.slot, forwarded=c.forwarded, ports=c.ports)
        for c in p.observed.pending_creates
    ]
    held += [Occupant(vpn=c.vpn, slot=c.slot, forwarded=c.forwarded, ports=c.ports) for c in planned]
    return held


def _size_pool(p: _Pass) -> int:
    spec = p.desired.engines
    busy = sum(1 for e in p.kept if e.streams > 0)
    free_wanted = max(spec.min_free, p.observed.extra_demand)
    wanted = max(spec.min_replicas, busy + free_wanted)
    target = min(spec.max_replicas, wanted)
    if wanted > spec.max_replicas:
        p.problems.append(
            Problem(
                code="max_capacity",
                message=f"{busy} busy engines + {free_wanted} free wanted is above "
                f"max_replicas={spec.max_replicas}",
            )
        )
    pending = p.observed.pending_creates
    counting = [e for e in p.kept if _counts_for_pool(p, e)]
    have = len(counting) + len(pending)
    if have < target:
        _grow(p, target - have, room=spec.max_replicas - len(p.kept) - len(pending))
    elif have > target:
        if have == target + 1 and _rollout_step_starting(p, counting):
            return target  # the rollout's new engine is starting: the old one goes once it answers
        _shrink(p, counting, have - target)
    elif not pending:
        _rebalance(p, counting)
    return target


def _grow(p: _Pass, deficit: int, room: int) -> None:
    if room <= 0:
        if not any(pr.code == "max_capacity" for pr in p.problems):
            p.problems.append(
                Problem(code="max_capacity", message=f"at max_replicas={p.desired.engines.max_replicas}")
            )
        return
    if not p.may_create():
        return
    if p.desired.vpn.mode != "none":
        healthy = healthy_vpns(p.desired, p.observed.vpns)
        if not healthy:
            _report_no_healthy_vpn(p)
            return
        if not all(v.port_known for v in healthy):
            # a forwarded port is being read (a few seconds at most): placing now would crowd
            # the VPNs already read and churn through a rebalance once the others are
            return
    creates = place_new_engines(
        p.desired,
        p.observed.vpns,
        _occupants(p),
        count=min(deficit, room),
        spec_hash=p.spec_hash,
        reason="pool below target",
        blocked=p.observed.blocked_slots,
    )
    if len(creates) < min(deficit, room):
        p.problems.append(
            Problem(code="ports_exhausted", message="no free port slot left for another engine")
        )
    for create in creates:
        p.act(create)


def _report_no_healthy_vpn(p: _Pass) -> None:
    wait = p.desired.vpn.wait_healthy_s
    since = min(
        (v.state_since for n, v in p.observed.vpns.items() if n in p.desired.vpn.containers), default=p.now
    )
    if p.now - since >= wait:
        p.problems.append(
            Problem(
                code="vpn_wait_timeout",
                message=f"no healthy VPN after waiting {wait:g}s; engines will "
                "be provisioned once a VPN recovers",
            )
        )
    else:
        p.wakes.append(since + wait)
        p.problems.append(
            Problem(code="vpn_disconnected", message="waiting for a healthy VPN before starting engines")
        )


def _idle_expired(p: _Pass, engine: EngineObs) -> bool:
    if engine.streams > 0:
        return False
    if engine.last_stream_usage is None:
        return True
    expires = engine.last_stream_usage + p.desired.engines.idle_ttl_s
    if expires > p.now:
        p.wakes.append(expires)
        return False
    return True


# acexy reads /engines at most 2 s old, then asks the engine for a stream and reports it: an idle
# engine leaving the pool is hidden for longer than that before it is removed
RETIRE_GRACE_S = 5.0


def _shrink(p: _Pass, counting: list[EngineObs], surplus: int) -> None:
    """Remove idle engines: those of an earlier spec first, then from the most loaded VPN,
    unready and unforwarded first."""
    load = Counter(e.vpn for e in counting)
    candidates = [e for e in counting if p.free(e) and _idle_expired(p, e)]
    for _ in range(surplus):
        if not candidates:
            return
        victim = min(
            candidates, key=lambda e: (not p.stale(e), -load[e.vpn], e.ready, e.forwarded, -e.created_at)
        )
        candidates.remove(victim)
        load[victim.vpn] -= 1
        p.act(
            RemoveEngine(container_id=victim.container_id, reason="pool above target", grace_s=RETIRE_GRACE_S)
        )


def _rebalance(p: _Pass, counting: list[EngineObs]) -> None:
    """With every VPN healthy, move one idle engine off a VPN holding two more than another."""
    if p.desired.vpn.mode != "redundant" or p.observed.busy_containers:
        return
    healthy = healthy_vpns(p.desired, p.observed.vpns)
    if len(healthy) != len(p.desired.vpn.containers):
        return
    load = Counter({v.name: 0 for v in healthy})
    load.update(e.vpn for e in counting if e.vpn is not None)
    most, high = max(load.items(), key=lambda kv: kv[1])
    if high - min(load.values()) < 2:
        return
    idle = [e for e in counting if e.vpn == most and p.free(e) and not e.forwarded and _idle_expired(p, e)]
    if idle:
        victim = max(idle, key=lambda e: e.created_at)
        p.act(
            RemoveEngine(
                container_id=victim.container_id, reason="rebalancing across VPNs", grace_s=RETIRE_GRACE_S
            )
        )


def _recreate(p: _Pass, engine: EngineObs, *, forwarded: bool, port: int | None, reason: str) -> None:
    """Replace an engine in its own slot; when the slot no longer exists in the current port
    layout, remove it instead and let the pool place a replacement."""
    vpn = p.vpn(engine.vpn)
    if not 0 <= engine.slot < slot_capacity(p.desired, engine.vpn):
        p.act(RemoveEngine(container_id=engine.container_id, reason=f"{reason}; slot gone"))
        return
    if not p.may_create():
        return  # never remove an engine whose replacement could not be created now
    ports = ports_for(p.desired, engine.vpn, engine.slot, port if forwarded else None)
    planned = tuple(
        a.create if isinstance(a, RecreateEngine) else a
        for a in p.actions
        if isinstance(a, CreateEngine | RecreateEngine)
    )
    others = [o for o in _occupants(p, planned, excluding=engine.container_id)]
    if ports_clash(engine.vpn, ports, others):
        # its slot's ports in today's layout belong to an engine of the old layout: free the
        # slot and let the pool place a replacement where nothing clashes
        p.act(RemoveEngine(container_id=engine.container_id, reason=f"{reason}; ports taken"))
        return
    create = CreateEngine(
        vpn=engine.vpn,
        vpn_id=vpn.container_id if vpn else None,
        slot=engine.slot,
        ports=ports,
        forwarded=forwarded,
        spec_hash=p.spec_hash,
        reason=reason,
    )
    # an idle engine the proxy may have just picked from /engines: hidden first (RETIRE_GRACE_S)
    grace = RETIRE_GRACE_S if engine.ready else 0.0
    p.act(RecreateEngine(container_id=engine.container_id, create=create, reason=reason, grace_s=grace))


def _keep_forwarded_engines(p: _Pass) -> None:
    """One engine per VPN runs with the VPN's forwarded port as its P2P port."""
    planned = {a.vpn for a in p.actions if isinstance(a, CreateEngine) and a.forwarded}
    pending = {c.vpn for c in p.observed.pending_creates if c.forwarded}
    for vpn in healthy_vpns(p.desired, p.observed.vpns):
        port = vpn.forwarded_port
        if not port or not vpn.port_known or vpn.name in planned or vpn.name in pending:
            continue
        mine = [e for e in p.kept if e.vpn == vpn.name and e.container_id not in p.removed]
        if _free_forwarded_port(p, vpn, port, mine):
            continue
        forwarded = [e for e in mine if e.forwarded]
        if forwarded:
            engine = forwarded[0]
            # a stream on it keeps working without inbound P2P: recreate once it is idle
            if engine.ports.p2p != port and p.free(engine) and _idle_expired(p, engine):
                _recreate(p, engine, forwarded=True, port=port, reason=f"forwarded port changed to {port}")
            continue
        idle = sorted((e for e in mine if p.free(e) and _idle_expired(p, e)), key=lambda e: (e.ready, e.slot))
        if idle:
            _recreate(p, idle[0], forwarded=True, port=port, reason="VPN has no forwarded engine")


def _free_forwarded_port(p: _Pass, vpn: VpnObs, port: int, mine: list[EngineObs]) -> bool:
    """Gluetun may forward a port that an engine of the namespace already binds (HTTP, HTTPS,
    API, or the P2P port of its own slot): two engines must never get one port. The holder is
    moved out of the way once it is idle (the pool replaces it in another slot); until then the
    VPN has no forwarded engine. True while the port is held."""
    holders = [e for e in mine if port in e.ports.listening() and not (e.forwarded and e.ports.p2p == port)]
    # an engine being removed, or a creation under way, holds its ports until it is done
    leaving = any(
        e.vpn == vpn.name and e.container_id in p.observed.removing and port in e.ports.listening()
        for e in p.observed.engines
    )
    creating = any(
        c.vpn == vpn.name and c.ports is not None and port in c.ports.listening() and not c.forwarded
        for c in p.observed.pending_creates
    )
    if not holders:
        return leaving or creating
    for engine in holders:
        if p.free(engine) and _idle_expired(p, engine):
            p.act(
                RemoveEngine(
                    container_id=engine.container_id,
                    reason=f"it binds port {port}, which VPN '{vpn.name}' now forwards",
                )
            )
    if any(e.container_id not in p.removed for e in holders):
        p.problems.append(
            Problem(
                code="forwarded_port_taken",
                vpn=vpn.name,
                message=f"the forwarded port {port} is bound by an engine that is busy (a stream, "
                "or not idle for engines.idle_ttl_s yet); the VPN gets a forwarded engine once it is",
            )
        )
    return True


def _rollout_step_starting(p: _Pass, counting: list[EngineObs]) -> bool:
    """A rollout is under way and its new engine is being created or has not answered yet."""
    return any(p.stale(e) for e in counting) and (
        bool(p.observed.pending_creates)
        or any(not p.stale(e) and not e.ready and e.status == "running" for e in counting)
    )


def _roll_changed_spec(p: _Pass) -> None:
    """Start the next step of a rollout: one idle engine of an earlier spec is replaced."""
    stale = [e for e in p.kept if p.stale(e) and e.container_id not in p.removed]
    if not stale:
        return
    failure = p.observed.spec_failure
    if failure is not None and failure.spec_hash == p.spec_hash:
        p.problems.append(
            Problem(
                code="rollout_paused",
                message=f"{len(stale)} engines keep the previous spec: the new one failed "
                f"({failure.reason}); fix the YAML and the rollout resumes",
            )
        )
        return
    if p.observed.pending_creates or any(
        isinstance(a, CreateEngine | RecreateEngine | RemoveEngine) for a in p.actions
    ):
        return  # one step at a time, after the pool's own work
    if p.observed.image_pulling:
        return  # engines.pull: the next step waits for the image the tag points at now
    new = [e for e in p.kept if not p.stale(e) and e.status == "running" and not e.ready]
    if new:
        _report_slow_new_engines(p, new)
        return
    candidates = [e for e in stale if p.free(e) and _idle_expired(p, e) and _vpn_healthy(p, e)]
    if not candidates or not p.may_create():
        return
    spec = p.desired.engines
    movable = [e for e in candidates if not e.forwarded]
    if movable and len(p.kept) < spec.max_replicas:
        creates = place_new_engines(
            p.desired,
            p.observed.vpns,
            _occupants(p),
            count=1,
            spec_hash=p.spec_hash,
            reason="engine spec changed: the replacement starts first",
            blocked=p.observed.blocked_slots,
        )
        if creates:
            p.act(creates[0])
            return
    engine = movable[0] if movable else candidates[0]
    vpn = p.vpn(engine.vpn)
    port = vpn.forwarded_port if vpn else None
    _recreate(p, engine, forwarded=engine.forwarded and bool(port), port=port, reason="engine spec changed")


def _vpn_healthy(p: _Pass, engine: EngineObs) -> bool:
    vpn = p.vpn(engine.vpn)
    return engine.vpn is None or (vpn is not None and vpn.state == "healthy")


def _report_slow_new_engines(p: _Pass, new: list[EngineObs]) -> None:
    """The rollout waits for its new engine; past `ready_timeout_s` that is a stop, said once."""
    timeout = p.desired.engines.ready_timeout_s
    late = [e for e in new if e.started_at is not None and p.now - e.started_at >= timeout]
    if late:
        p.problems.append(
            Problem(
                code="rollout_paused",
                message=f"the new spec's engine {late[0].name} has not answered its API for "
                f"{timeout:g}s; the engines of the previous spec are kept",
            )
        )
