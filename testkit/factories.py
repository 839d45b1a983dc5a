"""Small builders for the planner's frozen model types, so each table row reads like the rule it checks.

Conventions (kept deliberately few):

- Time is a plain float; `NOW` is the planner's clock in every table. Engines start at 100 and
  VPNs at 50 unless a row says otherwise, so a default engine is fresh behind a default VPN.
- A VPN named `g1` runs in container `g1-id`; an engine behind `g1` was created against `g1-id`.
- `engine()` leaves its spec hash as `CURRENT` and its ports as zeros; `observed()` stamps them
  with the hash of the row's desired state and with the ports the slot really gets under it
  (a `p2p=` given to `engine()` is kept), exactly as the labels of an adopted container would.
  An engine behind a VPN the desired state no longer lists gets the slot's ports of the whole
  `vpn.port_range`.
- `describe()` turns an action into a short string, e.g. `create g1#0 fwd p2p=40000`,
  `recreate a -> g1#0 fwd p2p=40001`, `remove a`, `restart a`, `restart_vpn g1`;
  `problem_codes()` turns problems into `code` or `code@vpn` strings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from reconcilers.model import (
    Action,
    CreateEngine,
    CreateProbe,
    Desired,
    EngineObs,
    EnginePorts,
    EngineSpec,
    EngineStatus,
    Observed,
    PendingCreate,
    Plan,
    PortRange,
    ProbeObs,
    RecreateEngine,
    RemoveEngine,
    RemoveProbe,
    RestartEngine,
    RestartProbe,
    RestartVpn,
    SpecFailure,
    TunnelProbe,
    VpnMode,
    VpnObs,
    VpnSpec,
    VpnState,
)
from reconcilers.placement import ports_for
from reconcilers.pool import engine_spec_hash
from reconcilers.ports import vpn_slot_ports
from reconcilers.probes import probe_spec_hash

NOW = 1000.0
CURRENT = "<current-spec>"
UNSET_PORTS = EnginePorts(http=0, https=0, api=0, p2p=0)
DEFAULT_CONTAINERS: Mapping[str, tuple[str, ...]] = {
    "none": (),
    "single": ("g1",),
    "redundant": ("g1", "g2"),
}


def port_range(text: str) -> PortRange:
    start, end = text.split("-")
    return PortRange(start=int(start), end=int(end))


def desired(
    mode: VpnMode = "none",
    containers: tuple[str, ...] | None = None,
    *,
    min_replicas: int = 3,
    min_free: int = 1,
    max_replicas: int = 20,
    idle_ttl_s: float = 600.0,
    host_port_range: str = "19000-19999",
    vpn_port_range: str = "19000-19999",
    restart_on_reconnect: bool = True,
    unhealthy_restart_timeout_s: float = 60.0,
    wait_healthy_s: float = 30.0,
    image: str = "engine:1",
    probe: TunnelProbe | None = None,
) -> Desired:
    return Desired(
        engines=EngineSpec(
            image=image,
            min_replicas=min_replicas,
            min_free=min_free,
            max_replicas=max_replicas,
            idle_ttl_s=idle_ttl_s,
            host_port_range=port_range(host_port_range),
        ),
        vpn=VpnSpec(
            mode=mode,
            containers=DEFAULT_CONTAINERS[mode] if containers is None else containers,
            port_range=port_range(vpn_port_range),
            restart_engines_on_reconnect=restart_on_reconnect,
            unhealthy_restart_timeout_s=unhealthy_restart_timeout_s,
            wait_healthy_s=wait_healthy_s,
            probe=probe,
        ),
    )


def engine(
    id: str = "a",
    slot: int = 0,
    vpn: str | None = None,
    *,
    status: EngineStatus = "running",
    started_at: float | None = 100.0,
    vpn_id: str | None = None,
    forwarded: bool = False,
    p2p: int | None = None,
    ready: bool = True,
    streams: int = 0,
    last_stream_usage: float | None = None,
    created_at: float = 0.0,
    spec_hash: str = CURRENT,
    unready_since: float | None = None,
    ports: EnginePorts | None = None,
    delivered_at: float | None = None,
) -> EngineObs:
    """`ports`: the ports on its labels when they are not its slot's in the row's layout (an
    engine of an earlier layout); else `observed()` gives it the slot's real ports."""
    return EngineObs(
        container_id=id,
        name=f"engine-{id}",
        status=status,
        started_at=started_at,
        slot=slot,
        ports=ports or dataclasses.replace(UNSET_PORTS, p2p=p2p or 0),
        spec_hash=spec_hash,
        vpn=vpn,
        vpn_id=vpn_id if vpn_id is not None or vpn is None else f"{vpn}-id",
        forwarded=forwarded,
        ready=ready,
        streams=streams,
        last_stream_usage=last_stream_usage,
        created_at=created_at,
        unready_since=unready_since,
        delivered_at=delivered_at,
    )


def vpn(
    name: str = "g1",
    state: VpnState = "healthy",
    *,
    container_id: str | None = None,
    state_since: float = 50.0,
    started_at: float | None = 50.0,
    reconnected_at: float | None = None,
    forwarded_port: int | None = None,
    last_forced_restart: float | None = None,
    port_known: bool = True,
    running: bool | None = None,
    forced_restarts: int = 0,
    control_unreachable_since: float | None = None,
    control_answered: bool = False,
    image: str | None = "gluetun:image",
) -> VpnObs:
    """`running` defaults to what the state says (a crash is `unhealthy` and not running)."""
    if container_id is None and state != "missing":
        container_id = f"{name}-id"
    return VpnObs(
        name=name,
        container_id=container_id,
        state=state,
        state_since=state_since,
        started_at=started_at,
        reconnected_at=reconnected_at,
        forwarded_port=forwarded_port,
        last_forced_restart=last_forced_restart,
        port_known=port_known,
        running=state in ("healthy", "unhealthy", "starting") if running is None else running,
        forced_restarts=forced_restarts,
        control_unreachable_since=control_unreachable_since,
        control_answered=control_answered,
        image=image,
    )


PROBE = TunnelProbe(host="10.0.0.1", port=443)


def probe(
    id: str = "p1",
    vpn: str = "g1",
    *,
    vpn_id: str | None = None,
    status: EngineStatus = "running",
    started_at: float | None = 100.0,
    spec_hash: str = CURRENT,
) -> ProbeObs:
    """A tunnel probe of VPN `vpn`, created against `<vpn>-id` and started at 100 (after the
    VPN's 50) unless a row says otherwise; `observed()` stamps the row's probe spec hash."""
    return ProbeObs(
        container_id=id,
        vpn=vpn,
        vpn_id=vpn_id or f"{vpn}-id",
        status=status,
        started_at=started_at,
        spec_hash=spec_hash,
    )


def pending(slot: int, vpn: str | None = None, *, forwarded: bool = False) -> PendingCreate:
    return PendingCreate(vpn=vpn, slot=slot, forwarded=forwarded)


def _stamp(d: Desired, e: EngineObs) -> EngineObs:
    spec_hash = engine_spec_hash(d) if e.spec_hash == CURRENT else e.spec_hash
    ports = e.ports
    if ports.http == 0:
        known = e.vpn is None or e.vpn in d.vpn.containers
        real = ports_for(d, e.vpn, e.slot, None) if known else vpn_slot_ports(d.vpn.port_range, e.slot)
        ports = dataclasses.replace(real, p2p=ports.p2p or real.p2p)
    return dataclasses.replace(e, spec_hash=spec_hash, ports=ports)


def observed(
    d: Desired,
    engines: Iterable[EngineObs] = (),
    vpns: Iterable[VpnObs] = (),
    *,
    pending_creates: Iterable[PendingCreate] = (),
    busy: Iterable[str] = (),
    removing: Iterable[str] = (),
    create_blocked_until: float | None = None,
    cooldowns: Mapping[str, float] | None = None,
    blocked_slots: Iterable[tuple[str | None, int]] = (),
    probes: Iterable[ProbeObs] = (),
    pending_probes: Iterable[str] = (),
    failed_spec: str | None = None,
    leaving_since: Mapping[str | None, float] | None = None,
) -> Observed:
    """`failed_spec`: CURRENT (this desired state's spec) or another hash that failed."""
    stamped = tuple(
        dataclasses.replace(p, spec_hash=probe_spec_hash(d)) if p.spec_hash == CURRENT else p for p in probes
    )
    return Observed(
        engines=tuple(_stamp(d, e) for e in engines),
        probes=stamped,
        pending_probes=frozenset(pending_probes),
        vpns={v.name: v for v in vpns},
        pending_creates=tuple(pending_creates),
        busy_containers=frozenset(busy) | frozenset(removing),
        removing=frozenset(removing),
        create_blocked_until=create_blocked_until,
        cooldowns=dict(cooldowns or {}),
        blocked_slots=frozenset(blocked_slots),
        leaving_since=dict(leaving_since or {}),
        spec_failure=None
        if failed_spec is None
        else SpecFailure(
            spec_hash=engine_spec_hash(d) if failed_spec == CURRENT else failed_spec,
            reason="image not found",
            at=NOW - 5,
        ),
    )


def _where(c: CreateEngine) -> str:
    text = f"{c.vpn or 'host'}#{c.slot}"
    return f"{text} fwd p2p={c.ports.p2p}" if c.forwarded else text


def describe(action: Action) -> str:
    match action:
        case CreateEngine():
            return f"create {_where(action)}"
        case RecreateEngine():
            return f"recreate {action.container_id} -> {_where(action.create)}"
        case RemoveEngine():
            return f"remove {action.container_id}"
        case RestartEngine():
            return f"restart {action.container_id}"
        case RestartVpn():
            return f"restart_vpn {action.name}"
        case CreateProbe():
            return f"create_probe {action.vpn}"
        case RemoveProbe():
            return f"remove_probe {action.container_id}"
        case RestartProbe():
            return f"restart_probe {action.container_id}"
    raise AssertionError(f"unknown action {action!r}")


def action_summary(p: Plan) -> list[str]:
    return sorted(describe(a) for a in p.actions)


def problem_codes(p: Plan) -> list[str]:
    return sorted(f"{x.code}@{x.vpn}" if x.vpn else x.code for x in p.problems)


def creates(p: Plan) -> list[CreateEngine]:
    return [a for a in p.actions if isinstance(a, CreateEngine)]
