"""How many engines are in each state, counted once for every page that shows it.

`/status`, the proxy's `/orchestrator/status` and `/metrics` all report engines by state; each
used to count them its own way, and one of them could drift from `/engines`. They all read
these counts now, derived from the same observed world and visible set `/engines` serves.
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

from orchestrator.state.store import StateStore

EngineState = Literal["total", "running", "ready", "visible", "starting", "unhealthy"]
STATES: tuple[EngineState, ...] = ("total", "running", "ready", "visible", "starting", "unhealthy")


class EngineCounts:
    """Engines by state and VPN (None: behind no VPN). `starting`: running, not answering yet;
    `unhealthy`: neither listed on /engines nor starting."""

    def __init__(self, store: StateStore) -> None:
        visible = {e.container_id for e in store.visible}
        self.by_vpn: Counter[tuple[EngineState, str | None]] = Counter()
        for e in store.engines.values():
            starting = e.status == "running" and not e.ready
            listed = e.container_id in visible
            facts: dict[EngineState, bool] = {
                "total": True,
                "running": e.status == "running",
                "ready": e.ready,
                "visible": listed,
                "starting": starting,
                "unhealthy": not listed and not starting,
            }
            for state, holds in facts.items():
                self.by_vpn[state, e.vpn] += int(holds)

    def __getitem__(self, state: EngineState) -> int:
        return sum(n for (s, _), n in self.by_vpn.items() if s == state)
