"""Where an engine can be reached: the (host, port) that /engines reports and the prober uses.

Behind a VPN an engine has no network of its own: it is reached at the VPN container (by name,
or by its IP with `engines.address: ip`) on the engine's own HTTP port. Without a VPN it is
reached at its own container name or IP on its container HTTP port.
"""

from __future__ import annotations

from typing import Literal

from orchestrator.state.store import StateStore
from reconcilers.model import EngineObs

Address = Literal["name", "ip"]


def vpn_host(store: StateStore, name: str, address: Address) -> str:
    vpn = store.vpns.get(name)
    return vpn.ip if address == "ip" and vpn is not None and vpn.ip else name


def engine_endpoint(store: StateStore, engine: EngineObs, address: Address) -> tuple[str, int]:
    if engine.vpn is not None:
        return vpn_host(store, engine.vpn, address), engine.ports.http
    facts = store.facts.get(engine.container_id)
    host = facts.ip if address == "ip" and facts is not None and facts.ip else engine.name
    return host, engine.ports.http
