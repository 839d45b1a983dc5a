"""`GET /status`'s body, shared by the status page (`page.py`), which shows the same facts.

Built from the state store only, like every view: the page and the JSON can never disagree.
"""

from __future__ import annotations

from typing import Any

from orchestrator.api.context import ApiContext
from orchestrator.api.views import history_view, rfc3339, vpn_views

STATUS_HISTORY = 10  # the last entries of the history on /status (all of it: GET /history)


def status_body(ctx: ApiContext, now: float) -> dict[str, Any]:
    store, watcher = ctx.store, ctx.watcher
    spec = ctx.desired.engines
    plan = store.last_plan
    config_error = watcher.error
    return {
        "desired": {
            "min_replicas": spec.min_replicas,
            "min_free": spec.min_free,
            "max_replicas": spec.max_replicas,
            "image": spec.image,
            "target": plan.target if plan else None,
            "vpn_mode": ctx.desired.vpn.mode,
        },
        "observed": {
            "engines": len(store.engines),
            "running": sum(1 for e in store.engines.values() if e.status == "running"),
            "ready": sum(1 for e in store.engines.values() if e.ready),
            "visible": len(store.visible),
            "pending_creates": store.pending_count,
            "busy": store.busy_count,
        },
        "problems": [
            {"code": p.code, "message": p.message, "vpn": p.vpn} for p in (plan.problems if plan else ())
        ]
        + ([{"code": "config_held", "message": watcher.held, "vpn": None}] if watcher.held else []),
        "last_reconcile": rfc3339(store.last_reconcile_at),
        "reconcile_passes": store.reconcile_passes,
        "config": {
            "path": str(watcher.path) if watcher.path else None,
            "loaded_at": rfc3339(watcher.loaded_at),
            "held": watcher.held,
            "last_error": None
            if config_error is None
            else {
                "message": str(config_error),
                "file": config_error.source,
                "line": config_error.line,
                "key": config_error.key,
                "at": rfc3339(watcher.error_at),
            },
        },
        "state": {"durable": store.state_error is None, "error": store.state_error},
        "docker": {
            "connected": store.docker_connected,
            "error": store.docker_error,
            "events_received": store.events_received,
            "resyncs": store.resyncs,
            "last_event_at": rfc3339(store.last_event_at),
        },
        "provisioning": {
            "circuit_breaker_state": store.breaker_state(now),
            "consecutive_failures": store.create_failures,
            "blocked_until": rfc3339(store.create_blocked_until),
            "recent_errors": [
                {
                    "at": rfc3339(e.at),
                    "action": e.action,
                    "target": e.target,
                    "message": e.message,
                    "transient": e.transient,
                }
                for e in store.action_errors
            ],
        },
        "vpn": vpn_views(store),
        "uptime_s": round(now - ctx.started_at, 3),
        "history": [history_view(e) for e in store.history.select(limit=STATUS_HISTORY)],
    }
