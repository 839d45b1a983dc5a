"""The `/orchestrator/status` document the proxy polls every 30 seconds, without a key.

It is built from the state store as it is at that instant: it answers from the daemon's first
second, before Docker was reached and before anything was planned. Its provisioning block is the
very reason `POST /provision/acestream` would give (`provisioning.blocked_reason`), so the two
agree.
"""

from __future__ import annotations

from typing import Any

from orchestrator.api.context import ApiContext
from orchestrator.api.counts import EngineCounts
from orchestrator.api.provisioning import Blocked, blocked_reason, free_engine
from orchestrator.api.views import rfc3339


def vpn_summary(ctx: ApiContext) -> dict[str, Any]:
    """One VPN as the proxy sees it: the first healthy one, or the first configured."""
    spec = ctx.desired.vpn
    if spec.mode == "none" or not spec.containers:
        return {
            "enabled": False,
            "connected": False,
            "health": "disabled",
            "container": None,
            "forwarded_port": None,
            "mode": spec.mode,
            "containers": [],
        }
    store = ctx.store
    listed = []
    for name in spec.containers:
        vpn = store.vpns.get(name)
        listed.append(
            {
                "name": name,
                "state": vpn.state if vpn else "missing",
                "forwarded_port": vpn.forwarded_port if vpn else None,
                "public_ip": vpn.public_ip if vpn else None,
            }
        )
    healthy = [v for v in listed if v["state"] == "healthy"]
    primary = healthy[0] if healthy else listed[0]
    if len(healthy) == len(listed):
        health = "healthy"
    elif healthy:
        health = "degraded"
    else:
        health = str(primary["state"]) if len(listed) == 1 else "unhealthy"
    return {
        "enabled": True,
        "connected": bool(healthy),
        "health": health,
        "container": primary["name"],
        "forwarded_port": primary["forwarded_port"],
        "mode": spec.mode,
        "containers": listed,
    }


def _overall(ctx: ApiContext, blocked: Blocked | None, vpn_health: str, now: float) -> str:
    store = ctx.store
    if not store.visible and blocked is not None:
        return "unavailable"
    target = (
        store.telemetry.last_plan.target if store.telemetry.last_plan else ctx.desired.engines.min_replicas
    )
    trouble = (
        (blocked is not None and (blocked.code != "max_capacity" or free_engine(store) is None))
        or not store.telemetry.docker_connected
        or vpn_health not in ("healthy", "disabled")
        or len(store.visible) < target
        or store.ledger.breaker_state(now) != "closed"
    )
    return "degraded" if trouble else "healthy"


def orchestrator_status(ctx: ApiContext, now: float) -> dict[str, Any]:
    store = ctx.store
    counts = EngineCounts(store)
    used = sum(1 for e in store.visible if store.demand.streams.count(e.container_id) > 0)
    blocked = blocked_reason(ctx, now)
    vpn = vpn_summary(ctx)
    spec = ctx.desired.engines
    return {
        "status": _overall(ctx, blocked, str(vpn["health"]), now),
        "engines": {
            "total": counts["total"],
            "running": counts["running"],
            "healthy": counts["visible"],
            "unhealthy": counts["unhealthy"],
            "starting": counts["starting"],
            "pending": store.ledger.pending_count,
        },
        "streams": {"active": len(store.demand.streams.active), "total": store.demand.streams.total_started},
        "capacity": {
            "total": counts["visible"],
            "used": used,
            "available": counts["visible"] - used,
            "max_replicas": spec.max_replicas,
            "min_replicas": spec.min_replicas,
        },
        "vpn": vpn,
        "provisioning": {
            "can_provision": blocked is None,
            "circuit_breaker_state": store.ledger.breaker_state(now),
            "last_failure": rfc3339(store.ledger.last_create_failure),
            "blocked_reason": blocked.message if blocked else None,
            "blocked_reason_details": blocked.detail() if blocked else None,
            "demand_until": rfc3339(
                store.demand.demand_until if (store.demand.demand_until or 0) > now else None
            ),
        },
        "timestamp": rfc3339(now),
    }
