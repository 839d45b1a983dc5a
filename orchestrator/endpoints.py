"""Where an engine can be reached: the (host, port) that /engines reports and the prober uses.

Behind a VPN an engine has no network of its own: it is reached at the VPN container (by name,
or by its IP with `engines.address: ip`) on the engine's own HTTP port. Without a VPN it is
reached at its own container name or IP on its container HTTP port.
"""

from __future__ import annotations

from typing import Literal

from orchestrator.state import StateStore
from reconcilers.model import EngineObs

Address = Literal["name", "ip"]


def engine_endpoint(store: StateStore, engine: EngineObs, address: Address) -> tuple[str, int]:
    if engine.vpn is not None:
        record = store.vpns.get(engine.vpn)
        host = record.ip if address == "ip" and record and record.ip else engine.vpn
        return host, engine.ports.http
    extra = store.extras.get(engine.container_id)
    host = extra.ip if address == "ip" and extra and extra.ip else engine.name
    return host, engine.ports.http


def vpn_host(store: StateStore, name: str, address: Address) -> str:
    record = store.vpns.get(name)
    return record.ip if address == "ip" and record and record.ip else name
