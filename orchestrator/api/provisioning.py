"""Whether a proxy can get an engine right now, and if not, why and for how long.

The proxy gives up after 3 seconds, so provisioning never waits on Docker: it hands out a ready
engine that carries no stream, or answers at once with a reason (`Blocked`) telling the proxy
whether to wait and for how long. The same reason is shown on `/orchestrator/status`, so the
proxy's periodic poll and its provisioning call never disagree. Engines are made by the
planner alone: a provisioning request only raises the store's single demand for one more free
engine, so retries extend that demand instead of starting more engines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from orchestrator.api.context import ApiContext
from orchestrator.state.store import StateStore
from reconcilers.model import EngineObs

DEMAND_S = 60.0  # how long one provisioning request keeps an extra free engine wanted
VPN_ETA_S = 10
DOCKER_ETA_S = 10
CAPACITY_ETA_S = 30
# while an engine is being prepared: how long a new engine takes to answer, as this pool's
# engines did lately (the proxy retries after half the ETA, then after the whole of it)
PROVISIONING_ETA_DEFAULT_S = 10
PROVISIONING_ETA_MIN_S, PROVISIONING_ETA_MAX_S = 2, 60


@dataclass(frozen=True, slots=True, kw_only=True)
class Blocked:
    """A provisioning answer other than an engine: the `detail` object proxies decode."""

    code: str
    message: str
    eta: int | None
    should_wait: bool
    can_retry: bool
    http_status: int = 503
    error: str = "provisioning_blocked"

    def detail(self) -> dict[str, Any]:
        return {
            "error": self.error,
            "code": self.code,
            "message": self.message,
            "recovery_eta_seconds": self.eta,
            "can_retry": self.can_retry,
            "should_wait": self.should_wait,
        }


def in_progress(store: StateStore) -> Blocked:
    typical = store.typical_ready_s()
    eta = PROVISIONING_ETA_DEFAULT_S if typical is None else math.ceil(typical * 1.5 + 1)
    return Blocked(
        code="provisioning_in_progress",
        error="provisioning",
        message="no free engine right now; one is being prepared, retry shortly",
        eta=min(PROVISIONING_ETA_MAX_S, max(PROVISIONING_ETA_MIN_S, eta)),
        should_wait=True,
        can_retry=True,
    )


def free_engine(store: StateStore, held: frozenset[str] = frozenset()) -> EngineObs | None:
    """A visible engine with no active stream: forwarded first, then the longest unused."""
    free = [
        e
        for e in store.visible
        if e.container_id not in held and store.demand.streams.count(e.container_id) == 0
    ]
    if not free:
        return None
    return min(
        free,
        key=lambda e: (not e.forwarded, store.demand.streams.last_usage.get(e.container_id, 0.0), e.name),
    )


def _vpn_block(ctx: ApiContext, problems: set[str], now: float) -> Blocked | None:
    """No healthy VPN: wait for one (`vpn_disconnected`) up to `vpn.wait_healthy_s`, after which,
    or when every VPN was stopped on purpose, waiting is pointless (`vpn_error`)."""
    vpn = ctx.desired.vpn
    if vpn.mode == "none":
        return None
    store = ctx.store
    seen = {n: store.vpns[n] for n in vpn.containers if n in store.vpns}
    if not store.telemetry.docker_connected and not seen:
        return None  # never observed yet: nothing known to block on
    states = {n: (seen[n].state if n in seen else "missing") for n in vpn.containers}
    if "healthy" in states.values():
        return None
    summary = ", ".join(f"{name}: {state}" for name, state in states.items())
    waited = now - min((v.state_since for v in seen.values()), default=now)
    stopped = all(s == "stopped" for s in states.values())
    if stopped or "vpn_wait_timeout" in problems or waited >= vpn.wait_healthy_s:
        why = (
            "every VPN container is stopped"
            if stopped
            else f"no healthy VPN for {waited:.0f}s (wait_healthy_s={vpn.wait_healthy_s:g})"
        )
        return Blocked(
            code="vpn_error",
            error="vpn_error",
            eta=None,
            should_wait=False,
            can_retry=False,
            message=f"{why} ({summary}); check the VPN container, its credentials and its logs",
        )
    return Blocked(
        code="vpn_disconnected",
        eta=VPN_ETA_S,
        should_wait=True,
        can_retry=True,
        message=f"waiting for a healthy VPN ({summary}); engines start once one is up",
    )


def blocked_reason(ctx: ApiContext, now: float) -> Blocked | None:
    """Why no new engine can be made right now, or None when one can."""
    store = ctx.store
    problems: set[str] = (
        {p.code for p in store.telemetry.last_plan.problems} if store.telemetry.last_plan else set()
    )
    vpn = _vpn_block(ctx, problems, now)
    if vpn is not None:
        return vpn
    if store.ledger.breaker_state(now) == "open":
        wait = (store.ledger.create_blocked_until or now) - now
        errors = store.ledger.action_errors
        last = errors[-1].message if errors else "unknown error"
        return Blocked(
            code="circuit_breaker",
            eta=max(1, math.ceil(wait)),
            should_wait=True,
            can_retry=True,
            message=f"engine creation failed {store.ledger.create_failures} times in a row "
            f"(last: {last}); backing off",
        )
    spec = ctx.desired.engines
    if "max_capacity" in problems or store.engine_count() >= spec.max_replicas:
        return Blocked(
            code="max_capacity",
            eta=CAPACITY_ETA_S,
            should_wait=True,
            can_retry=True,
            message=f"all {spec.max_replicas} engines (max_replicas) are in use; wait for a stream to end",
        )
    if "ports_exhausted" in problems:
        return Blocked(
            code="general_error",
            error="general_error",
            eta=None,
            should_wait=False,
            can_retry=False,
            http_status=500,
            message="no free port left for another engine; widen the port range",
        )
    if not store.telemetry.docker_connected and (store.telemetry.docker_error or store.telemetry.resyncs):
        # lost (not merely not connected yet at start-up): the daemon reconnects by itself,
        # backing off up to 10 s, so this is worth waiting for
        why = f": {store.telemetry.docker_error}" if store.telemetry.docker_error else ""
        return Blocked(
            code="docker_unavailable",
            eta=DOCKER_ETA_S,
            should_wait=True,
            can_retry=True,
            message=f"the daemon is reconnecting to Docker{why}; engines are made once it is back",
        )
    return None
