"""The `/orchestrator/status` document the proxy polls every 30 seconds, without a key.

It is built from the state store and the daemon's parts as they are at that instant, every
part optional: it answers from the daemon's first second, before Docker was reached, before
the executor exists and before anything was planned. Its provisioning block is the very reason
`POST /provision/acestream` would give (`provisioning.blocked_reason`), so the two agree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.provisioning import Blocked, blocked_reason, free_engine
from orchestrator.views import rfc3339

if TYPE_CHECKING:
    from orchestrator.daemon import Daemon


def vpn_summary(daemon: Daemon) -> dict[str, Any]:
    """One VPN as the proxy sees it: the first healthy one, or the first configured."""
    spec = daemon.desired.vpn
    if spec.mode == "none" or not spec.containers:
        return {"enabled": False, "connected": False, "health": "disabled", "container": None,
                "forwarded_port": None, "mode": spec.mode, "containers": []}
    store = daemon.store
    listed = []
    for name in spec.containers:
        record = store.vpns.get(name)
        listed.append({"name": name, "state": record.obs.state if record else "missing",
                       "forwarded_port": record.obs.forwarded_port if record else None,
                       "public_ip": record.public_ip if record else None})
    healthy = [v for v in listed if v["state"] == "healthy"]
    primary = healthy[0] if healthy else listed[0]
    if len(healthy) == len(listed):
        health = "healthy"
    elif healthy:
        health = "degraded"
    else:
        health = str(primary["state"]) if len(listed) == 1 else "unhealthy"
    return {"enabled": True, "connected": bool(healthy), "health": health,
            "container": primary["name"], "forwarded_port": primary["forwarded_port"],
            "mode": spec.mode, "containers": listed}


def _overall(daemon: Daemon, blocked: Blocked | None, vpn_health: str) -> str:
    store = daemon.store
    if not store.visible and blocked is not None:
        return "unavailable"
    target = store.last_plan.target if store.last_plan else daemon.desired.engines.min_replicas
    executor = daemon.executor
    trouble = (
        (blocked is not None and (blocked.code != "max_capacity" or free_engine(store) is None))
        or not store.docker_connected
        or vpn_health not in ("healthy", "disabled")
        or len(store.visible) < target
        or (executor is not None and executor.breaker_state != "closed")
    )
    return "degraded" if trouble else "healthy"


def orchestrator_status(daemon: Daemon, now: float) -> dict[str, Any]:
    store = daemon.store
    engines = list(store.engines.values())
    visible = {e.container_id for e in store.visible}
    used = sum(1 for e in store.visible if store.streams.count(e.container_id) > 0)
    blocked = blocked_reason(daemon, now)
    executor = daemon.executor
    vpn = vpn_summary(daemon)
    spec = daemon.desired.engines
    return {
        "status": _overall(daemon, blocked, str(vpn["health"])),
        "engines": {
            "total": len(engines),
            "running": sum(1 for e in engines if e.status == "running"),
            "healthy": len(visible),
            "unhealthy": sum(1 for e in engines if e.container_id not in visible
                             and not (e.status == "running" and not e.ready)),
            "starting": sum(1 for e in engines if e.status == "running" and not e.ready),
            "pending": len(store.pending_creates),
        },
        "streams": {"active": len(store.streams.active), "total": store.streams.total_started},
        "capacity": {
            "total": len(visible),
            "used": used,
            "available": len(visible) - used,
            "max_replicas": spec.max_replicas,
            "min_replicas": spec.min_replicas,
        },
        "vpn": vpn,
        "provisioning": {
            "can_provision": blocked is None,
            "circuit_breaker_state": executor.breaker_state if executor else "closed",
            "last_failure": rfc3339(executor.last_failure if executor else None),
            "blocked_reason": blocked.message if blocked else None,
            "blocked_reason_details": blocked.detail() if blocked else None,
            "demand_until": rfc3339(store.demand_until if (store.demand_until or 0) > now else None),
        },
        "timestamp": rfc3339(now),
    }
