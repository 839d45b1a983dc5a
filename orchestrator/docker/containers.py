"""Docker's JSON, converted once at the edge into the values the rest of the daemon uses.

`container_info` reads a `docker inspect` document into a `ContainerInfo`, `listed_container` an
entry of the container listing into a `Listed`; `vpn_container` and
`engine_sighting` (in `docker.engines`) turn that into the domain values the state store takes.
Nothing here does I/O, so it is tested without Docker.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from reconcilers.listing import Listed
from reconcilers.vpn import VpnContainer


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerInfo:
    id: str
    name: str
    status: str
    health: str | None
    started_at: float | None
    created_at: float
    labels: Mapping[str, str] = field(default_factory=dict)
    ip: str | None = None
    network_mode: str = ""
    error: str = ""
    exit_code: int | None = None
    image: str | None = None  # the image ID it runs
    # the last health check: its exit code and output (a probe that cannot run says why here)
    health_exit_code: int | None = None
    health_output: str = ""
    ran_s: float | None = None  # an exited container: how long its last run lasted
    # when its previous run ended (Docker keeps it while the container runs again): its output
    # since then is this run's, whatever `started_at` says (a process may write before it is set)
    finished_at: float | None = None


def parse_docker_time(value: str | None) -> float | None:
    """Docker's RFC 3339 timestamps with nanoseconds -> POSIX seconds; its zero time -> None."""
    if not value or value.startswith("0001-01-01"):
        return None
    head, _, frac = value.rstrip("Z").partition(".")
    zone = ""
    for sign in ("+", "-"):
        if sign in frac:
            frac, _, rest = frac.partition(sign)
            zone = sign + rest
    micro = (frac + "000000")[:6] if frac else "000000"
    return datetime.fromisoformat(f"{head}.{micro}{zone or '+00:00'}").timestamp()


def container_info(raw: Mapping[str, Any]) -> ContainerInfo:
    """Convert a `docker inspect` document."""
    state = raw.get("State") or {}
    health = (state.get("Health") or {}).get("Status")
    checks = (state.get("Health") or {}).get("Log") or []
    last_check = checks[-1] if checks and isinstance(checks[-1], dict) else {}
    networks = ((raw.get("NetworkSettings") or {}).get("Networks") or {}).values()
    ip = next((n.get("IPAddress") for n in networks if n.get("IPAddress")), None)
    return ContainerInfo(
        id=raw["Id"],
        name=str(raw.get("Name", "")).lstrip("/"),
        status=state.get("Status", "unknown"),
        health=health,
        started_at=parse_docker_time(state.get("StartedAt")) if state.get("Running") else None,
        created_at=parse_docker_time(raw.get("Created")) or 0.0,
        labels=dict((raw.get("Config") or {}).get("Labels") or {}),
        ip=ip,
        network_mode=(raw.get("HostConfig") or {}).get("NetworkMode", ""),
        error=state.get("Error", ""),
        exit_code=state.get("ExitCode") if not state.get("Running") else None,
        image=raw.get("Image") or None,
        health_exit_code=last_check.get("ExitCode"),
        ran_s=_ran_for(state),
        finished_at=parse_docker_time(state.get("FinishedAt")),
        health_output=str(last_check.get("Output") or "").strip()[-300:],
    )


def listed_container(raw: Mapping[str, Any]) -> Listed:
    """Convert an entry of Docker's container listing: its state, its status text, and the rest
    of the entry as one string that changes when any of it does."""
    rest = {key: value for key, value in raw.items() if key not in ("State", "Status")}
    return Listed(
        id=str(raw["Id"]),
        state=str(raw.get("State", "")),
        status=str(raw.get("Status", "")),
        digest=json.dumps(rest, sort_keys=True, default=str),
    )


def _ran_for(state: Mapping[str, Any]) -> float | None:
    started, finished = parse_docker_time(state.get("StartedAt")), parse_docker_time(state.get("FinishedAt"))
    if state.get("Running") or started is None or finished is None:
        return None
    return max(0.0, finished - started)


def vpn_container(info: ContainerInfo | None) -> VpnContainer | None:
    """A Gluetun container as the VPN state machine reads it."""
    if info is None:
        return None
    return VpnContainer(
        id=info.id,
        status=info.status,
        health=info.health,
        started_at=info.started_at,
        exit_code=info.exit_code,
        ip=info.ip,
        image=info.image,
    )
