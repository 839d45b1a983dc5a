"""An engine container as the state store receives it from Docker (an `EngineSighting` built from
the labels the daemon would have written), for the store's tests, the journal's and the
journal's benchmark, without a Docker engine."""

from __future__ import annotations

from orchestrator.docker.containers import ContainerInfo
from orchestrator.docker.engines import engine_labels, engine_sighting
from orchestrator.state.records import EngineSighting
from reconcilers.model import CreateEngine, EnginePorts, EngineSpec

SPEC = EngineSpec(image="engine:1")


def engine_info(
    cid: str,
    slot: int = 0,
    started_at: float = 1000.0,
    name: str = "",
    *,
    vpn: str | None = None,
    vpn_id: str | None = None,
) -> EngineSighting:
    create = CreateEngine(
        vpn=vpn,
        vpn_id=vpn_id,
        slot=slot,
        forwarded=False,
        spec_hash="h",
        reason="test",
        ports=EnginePorts(http=6878, https=0, api=1, p2p=2, host_http=19000 + slot),
    )
    return engine_sighting(
        ContainerInfo(
            id=cid,
            name=name or f"engine-{cid}",
            status="running",
            health=None,
            started_at=started_at,
            created_at=started_at - 1,
            labels=engine_labels(create, SPEC),
        )
    )
