"""Whether an engine can serve streams, and what it needs when it cannot.

Two questions the daemon asks about every engine on every observed change: is it *visible*
(listed on `/engines`), and is it *stale* (stuck in a VPN's dead or replaced network namespace).
Both are pure functions of the observed state, so `/engines` is derived, never stored, and the
rules can be checked as tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from reconcilers.model import EngineObs, VpnObs

Staleness = Literal["fresh", "restart", "reconnect", "recreate", "orphaned"]


def staleness(engine: EngineObs, vpn: VpnObs | None, *, restart_on_reconnect: bool) -> Staleness:
    """How an engine stands towards the VPN it was created behind.

    - `recreate`: the VPN's container was replaced (new ID); the engine is pinned to the old
      namespace and a restart cannot help.
    - `restart`: same VPN container, but it (re)started after the engine did: the engine's
      network namespace is dead, it cannot serve (its streams are gone already).
    - `reconnect`: the VPN reconnected its tunnel (a new public IP or forwarded port) after the
      engine started, and `restart_on_reconnect` asks for fresh engines: the namespace lives, a
      stream on the engine may still play; the planner restarts it once it is idle.
    - `orphaned`: the VPN container is gone; keep the engine (and its ports) until it returns.
    """
    if engine.vpn is None:
        return "fresh"
    if vpn is None or vpn.container_id is None:
        return "orphaned"
    if engine.vpn_id != vpn.container_id:
        return "recreate"
    if engine.status != "running" or engine.started_at is None:
        return "fresh"
    if vpn.started_at is not None and engine.started_at <= vpn.started_at:
        return "restart"
    if restart_on_reconnect and vpn.reconnected_at is not None and engine.started_at <= vpn.reconnected_at:
        return "reconnect"
    return "fresh"


def is_visible(engine: EngineObs, vpns: Mapping[str, VpnObs], *, restart_on_reconnect: bool) -> bool:
    """Running, answered its readiness check, and (behind a VPN) attached to a healthy VPN's
    current container with a network that is not stale."""
    if engine.status != "running" or not engine.ready:
        return False
    if engine.vpn is None:
        return True
    vpn = vpns.get(engine.vpn)
    if vpn is None or vpn.state != "healthy":
        return False
    return staleness(engine, vpn, restart_on_reconnect=restart_on_reconnect) == "fresh"


def visible_engines(
    engines: tuple[EngineObs, ...], vpns: Mapping[str, VpnObs], *, restart_on_reconnect: bool
) -> tuple[EngineObs, ...]:
    return tuple(e for e in engines if is_visible(e, vpns, restart_on_reconnect=restart_on_reconnect))


STALE_WORDS: Mapping[Staleness, str] = {
    "recreate": "its VPN container was replaced: it is pinned to the old one's network",
    "restart": "its VPN container restarted after it started: its network is gone",
    "reconnect": "its VPN reconnected after it started: it is restarted once idle",
    "orphaned": "its VPN container is gone",
}


def hidden_reason(engine: EngineObs, vpns: Mapping[str, VpnObs], *, restart_on_reconnect: bool) -> str | None:
    """Why `is_visible` says no, in words (None: it is visible); the rules are `is_visible`'s."""
    if engine.status != "running":
        return f"container {engine.status}"
    if not engine.ready:
        return "not answering its API yet"
    if engine.vpn is None:
        return None
    vpn = vpns.get(engine.vpn)
    if vpn is None:
        return f"VPN {engine.vpn} not seen"
    if vpn.state != "healthy":
        return f"VPN {engine.vpn} {vpn.state}"
    stale = staleness(engine, vpn, restart_on_reconnect=restart_on_reconnect)
    return None if stale == "fresh" else STALE_WORDS[stale]
