"""JSON shapes of the HTTP API, built from the state store (the contract other programs read).

Field names and types follow `shared/design.md` section 3 and the acexy proxy contract:
timestamps are RFC 3339 with a zone or null, labels a string-to-string map.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from orchestrator.state.endpoints import Address, engine_endpoint
from orchestrator.state.history import HistoryEntry
from orchestrator.state.store import StateStore
from orchestrator.state.streams import Stream
from reconcilers.model import EngineObs
from reconcilers.stalls import Progress


def rfc3339(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def _health(engine: EngineObs, visible: bool) -> str:
    if visible:
        return "healthy"
    return "unknown" if engine.status == "running" and not engine.ready else "unhealthy"


def engine_view(
    store: StateStore, engine: EngineObs, address: Address, *, full: bool = True
) -> dict[str, Any]:
    """`full=False` (a caller off loopback without the key): `streams` is empty, since a stream's
    ID names its playback session; `stream_count` still says how many there are."""
    host, port = engine_endpoint(store, engine, address)
    facts = store.facts.get(engine.container_id)
    visible = any(e.container_id == engine.container_id for e in store.visible)
    return {
        "container_id": engine.container_id,
        "container_name": engine.name,
        "host": host,
        "port": port,
        "host_http_port": engine.ports.host_http,
        "container_http_port": engine.ports.http,
        "https_port": engine.ports.https,
        "api_port": engine.ports.api,
        "p2p_port": engine.ports.p2p,
        "labels": dict(facts.labels) if facts else {},
        "forwarded": engine.forwarded,
        "vpn_container": engine.vpn,
        "status": engine.status,
        "ready": engine.ready,
        "visible": visible,
        "health_status": _health(engine, visible),
        "streams": [s.id for s in store.demand.streams.listing(engine.container_id, "started")]
        if full
        else [],
        "stream_count": store.demand.streams.count(engine.container_id),
        "first_seen": rfc3339(facts.first_seen if facts else None),
        "last_seen": rfc3339(facts.last_seen if facts else None),
        "last_health_check": rfc3339(facts.last_health_check if facts else None),
        "last_stream_usage": rfc3339(store.demand.streams.last_usage.get(engine.container_id)),
        "started_at": rfc3339(engine.started_at),
        "stalled_since": rfc3339(store.stalled_engines.get(engine.container_id)),
    }


# what a caller off loopback without the API key is not shown of a stream (access.py)
PRIVATE_STREAM_FIELDS = ("id", "key", "playback_session_id", "stat_url", "command_url")


def progress_view(progress: Progress | None, stalled: bool) -> dict[str, Any]:
    """What the engine last said of the stream's P2P side, and whether it counts as stalled."""
    return {
        "stalled": stalled,
        "progress": None
        if progress is None
        else {
            "peers": progress.sample.peers,
            "speed_down": progress.sample.speed_down,
            "downloaded": progress.sample.downloaded,
            "progressing": progress.progressing,
            "sampled_at": rfc3339(progress.sampled_at),
            "progress_at": rfc3339(progress.progress_at),
        },
    }


def stream_view(
    stream: Stream, *, full: bool = True, progress: Progress | None = None, stalled: bool = False
) -> dict[str, Any]:
    view = {
        "id": stream.id,
        "container_id": stream.container_id,
        "status": stream.status,
        "key_type": stream.key_type,
        "key": stream.key,
        "playback_session_id": stream.playback_session_id,
        "stat_url": stream.stat_url,
        "command_url": stream.command_url,
        "is_live": stream.is_live,
        "started_at": rfc3339(stream.started_at),
        "confirmed_at": rfc3339(stream.confirmed_at),
        "ended_at": rfc3339(stream.ended_at),
        "end_reason": stream.end_reason,
    } | progress_view(progress, stalled)
    if full:
        return view
    return {k: v for k, v in view.items() if k not in PRIVATE_STREAM_FIELDS} | {"redacted": True}


def engine_detail_view(
    store: StateStore,
    engine: EngineObs,
    address: Address,
    *,
    now: float,
    stall_after_s: float,
    full: bool = True,
) -> dict[str, Any]:
    """`GET /engines/{id}`: the list entry plus every stream the engine carries or carried, each
    with `stalled` and `progress` as on `GET /streams`."""
    view = engine_view(store, engine, address, full=full)
    view["stream_details"] = [
        stream_view(
            s,
            full=full,
            progress=store.demand.progress.get(s.id),
            stalled=s.status == "started" and store.demand.stream_stalled(s.id, now, stall_after_s),
        )
        for s in store.demand.streams.listing(engine.container_id)
    ]
    return view


def vpn_views(store: StateStore) -> list[dict[str, Any]]:
    out = []
    for name, obs in store.vpns.items():
        out.append(
            {
                "name": name,
                "container_id": obs.container_id,
                "state": obs.state,
                "healthy": obs.state == "healthy",
                "since": rfc3339(obs.state_since),
                "started_at": rfc3339(obs.started_at),
                "reconnected_at": rfc3339(obs.reconnected_at),
                "last_forced_restart": rfc3339(obs.last_forced_restart),
                "ip": obs.ip,
                "public_ip": obs.public_ip,
                "forwarded_port": obs.forwarded_port,
                "control_status": obs.control_status,
                "control_error": obs.control_error,
                "docker_health": obs.docker_state,
                "tunnel_probe": None
                if obs.probe_up is None and obs.probe_error is None
                else {"tunnel_up": obs.probe_up, "error": obs.probe_error},
                "forced_restarts": obs.forced_restarts,
                "engines": sum(1 for e in store.engines.values() if e.vpn == name),
                "visible_engines": sum(1 for e in store.visible if e.vpn == name),
                "last_heard": rfc3339(store.vpn_heard_at.get(name)),
            }
        )
    return out


def history_view(entry: HistoryEntry) -> dict[str, Any]:
    """One entry of `GET /history` (history.py says what each field means)."""
    return {
        "seq": entry.seq,
        "at": rfc3339(entry.at),
        "kind": entry.kind,
        "target": entry.target,
        "reason": entry.reason,
        "trigger": entry.trigger,
        "outcome": entry.outcome,
        "engine": entry.engine,
        "vpn": entry.vpn,
    }
