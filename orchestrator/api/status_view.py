"""`GET /status`'s body, shared by the status page (`page.py`), which shows the same facts.

Built from the state store only, like every view: the page and the JSON can never disagree.
"""

from __future__ import annotations

from typing import Any

from orchestrator.api.context import ApiContext
from orchestrator.api.counts import EngineCounts
from orchestrator.api.views import history_view, rfc3339, vpn_views
from orchestrator.state.store import StateStore

STATUS_HISTORY = 10  # the last entries of the history on /status (all of it: GET /history)


def serving_last_known(store: StateStore) -> bool:
    """Docker has not answered since the start and `/engines` serves the last-known listing."""
    return store.served.fallback is not None and not store.telemetry.resyncs


def status_body(ctx: ApiContext, now: float, *, full: bool = True) -> dict[str, Any]:
    """`full` False: a caller off loopback without the key (no stream IDs in problems)."""
    store, watcher = ctx.store, ctx.watcher
    spec = ctx.desired.engines
    plan = store.telemetry.last_plan
    config_error = watcher.error
    counts = EngineCounts(store)
    last_known = (
        [
            {
                "code": "docker_silent_serving_last_known",
                "message": "Docker has not answered since the daemon started: /engines lists "
                f"the {len(store.served.fallback or ())} engines it last served that answer "
                "their own HTTP API",
                "vpn": None,
            }
        ]
        if serving_last_known(store)
        else []
    )
    return {
        "desired": {
            "min_replicas": spec.min_replicas,
            "min_free": spec.min_free,
            "max_replicas": spec.max_replicas,
            "image": spec.image,
            # what the tag resolved to at the last pull (engines.pull other than missing)
            "image_id": store.desired_image_id(spec.image),
            "target": plan.target if plan else None,
            "vpn_mode": ctx.desired.vpn.mode,
        },
        "observed": {
            "engines": counts["total"],
            "running": counts["running"],
            "ready": counts["ready"],
            "visible": counts["visible"],
            "pending_creates": store.ledger.pending_count,
            "busy": store.ledger.busy_count,
        },
        "engines_source": "last_known" if serving_last_known(store) else "docker",
        "problems": [
            {"code": p.code, "message": p.message, "vpn": p.vpn}
            | ({"engine": p.engine} if p.engine else {})
            # stream IDs name playback sessions: only for callers who see stream details
            | ({"streams": list(p.streams)} if p.streams and full else {})
            for p in (plan.problems if plan else ())
        ]
        + ([{"code": "config_held", "message": watcher.held, "vpn": None}] if watcher.held else [])
        + last_known,
        "last_reconcile": rfc3339(store.telemetry.last_reconcile_at),
        "reconcile_passes": store.telemetry.reconcile_passes,
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
            "connected": store.telemetry.docker_connected,
            "error": store.telemetry.docker_error,
            "events_received": store.telemetry.events_received,
            "resyncs": store.telemetry.resyncs,
            "last_event_at": rfc3339(store.telemetry.last_event_at),
        },
        "provisioning": {
            "circuit_breaker_state": store.ledger.breaker_state(now),
            "consecutive_failures": store.ledger.create_failures,
            "blocked_until": rfc3339(store.ledger.create_blocked_until),
            "recent_errors": [
                {
                    "at": rfc3339(e.at),
                    "action": e.action,
                    "target": e.target,
                    "message": e.message,
                    "transient": e.transient,
                }
                for e in store.ledger.action_errors
            ],
        },
        "vpn": vpn_views(store),
        "uptime_s": round(now - ctx.started_at, 3),
        "history": [history_view(e) for e in store.history.select(limit=STATUS_HISTORY)],
    }
