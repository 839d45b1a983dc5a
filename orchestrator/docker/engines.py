"""How an engine is written onto Docker and read back: the create body and the labels.

Labels are the daemon's memory. Everything needed to rebuild the pool after a crash (slot,
ports, VPN and the VPN container it was created against, forwarded flag, spec hash) is written
on the container at creation and read back here, so a restarted daemon adopts what it finds.
The create body starts the engine through its image family's launch template
(`config.launch`), so every port the engine binds is the one allocated to it.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Mapping
from typing import Any

from orchestrator.config.launch import render
from orchestrator.docker.containers import ContainerInfo
from orchestrator.state.records import EngineSighting
from reconcilers.model import (
    MANAGED,
    MANAGED_VALUE,
    POOL,
    ROLE,
    CreateEngine,
    EngineObs,
    EnginePorts,
    EngineSpec,
    LaunchTemplate,
)

MANAGED_FILTER = f"{MANAGED}={MANAGED_VALUE}"
SLOT = "orchestrator.slot"
VPN = "orchestrator.vpn"
VPN_ID = "orchestrator.vpn_id"
FORWARDED = "orchestrator.forwarded"
SPEC_HASH = "orchestrator.spec_hash"
HTTP_PORT = "orchestrator.http_port"
HTTPS_PORT = "orchestrator.https_port"
API_PORT = "orchestrator.api_port"
P2P_PORT = "orchestrator.p2p_port"
HOST_HTTP_PORT = "orchestrator.host_http_port"
# The names the seed used, kept so existing dashboards and proxies keep reading them.
SEED_HTTP_PORT = "host.http_port"
SEED_FORWARDED = "acestream.forwarded"

KNOWN_STATUSES = ("created", "running", "paused", "restarting", "removing", "exited", "dead")


def pool_filters(pool: str) -> list[str]:
    return [MANAGED_FILTER, f"{POOL}={pool}"]


def engine_labels(create: CreateEngine, spec: EngineSpec) -> dict[str, str]:
    labels = dict(spec.labels)
    labels.update(
        {
            MANAGED: MANAGED_VALUE,
            POOL: spec.pool,
            ROLE: "engine",
            SLOT: str(create.slot),
            FORWARDED: "true" if create.forwarded else "false",
            SEED_FORWARDED: "true" if create.forwarded else "false",
            SPEC_HASH: create.spec_hash,
            HTTP_PORT: str(create.ports.http),
            HTTPS_PORT: str(create.ports.https),
            API_PORT: str(create.ports.api),
            P2P_PORT: str(create.ports.p2p),
        }
    )
    if create.ports.host_http is not None:
        labels[HOST_HTTP_PORT] = str(create.ports.host_http)
        labels[SEED_HTTP_PORT] = str(create.ports.host_http)
    if create.vpn is not None and create.vpn_id is not None:
        labels[VPN] = create.vpn
        labels[VPN_ID] = create.vpn_id
    return labels


def engine_launch(create: CreateEngine, spec: EngineSpec) -> LaunchTemplate:
    """The engine's entrypoint, command and environment: the spec's template with this engine's
    ports and the cache limit filled in. The template's variables win over `engines.env`, whose
    other entries every engine gets too."""
    ports = create.ports
    rendered = render(
        spec.launch,
        {
            "http_port": ports.http,
            "https_port": ports.https,
            "api_port": ports.api,
            "p2p_port": ports.p2p,
            "cache_limit_gb": spec.cache_limit_gb,
        },
    )
    return dataclasses.replace(rendered, env={**spec.env, **rendered.env})


def engine_name(create: CreateEngine) -> str:
    where = create.vpn or "engine"
    return f"acestream-{where}-{create.slot}-{secrets.token_hex(3)}"


# The image's own HEALTHCHECK turned off. The jopsis and AceServe images probe 127.0.0.1:6878,
# which no engine behind a VPN listens on (each has ports of its own): they would show
# `unhealthy` for life, and autoheal-style tools restart unhealthy containers under viewers.
# The daemon checks every engine on its real port itself (readiness and liveness rounds), so a
# Docker health check would add nothing but a second verdict nobody here reads.
NO_HEALTHCHECK = {"Test": ["NONE"]}


def create_body(create: CreateEngine, spec: EngineSpec) -> dict[str, Any]:
    """The Docker create request for one engine. No restart policy: the daemon restarts engines.
    Logs are bounded (json-file, `engines.log_max_size` x `engines.log_max_files`): an engine
    logs for its whole life, and some families log every request to stdout."""
    launch = engine_launch(create, spec)
    host_config: dict[str, Any] = {
        "RestartPolicy": {"Name": "no"},
        "LogConfig": {
            "Type": "json-file",
            "Config": {"max-size": spec.log_max_size, "max-file": str(spec.log_max_files)},
        },
    }
    body: dict[str, Any] = {
        "Image": spec.image,
        "Env": [f"{k}={v}" for k, v in launch.env.items()],
        "Labels": engine_labels(create, spec),
        "Healthcheck": NO_HEALTHCHECK,
        "HostConfig": host_config,
    }
    if launch.entrypoint is not None:
        body["Entrypoint"] = list(launch.entrypoint)
    if launch.command is not None:
        body["Cmd"] = list(launch.command)
    if create.vpn_id is not None:
        host_config["NetworkMode"] = f"container:{create.vpn_id}"
    else:
        port = f"{create.ports.http}/tcp"
        body["ExposedPorts"] = {port: {}}
        host_config["PortBindings"] = {port: [{"HostPort": str(create.ports.host_http)}]}
    return body


def _int_label(labels: Mapping[str, str], key: str, default: int = 0) -> int:
    try:
        return int(labels.get(key, default))
    except ValueError:
        return default


def engine_observation(info: ContainerInfo) -> EngineObs:
    labels = info.labels
    host_http = labels.get(HOST_HTTP_PORT)
    status = info.status if info.status in KNOWN_STATUSES else "dead"
    return EngineObs(
        container_id=info.id,
        name=info.name,
        status=status,  # type: ignore[arg-type]
        started_at=info.started_at,
        created_at=info.created_at,
        slot=_int_label(labels, SLOT, -1),
        ports=EnginePorts(
            http=_int_label(labels, HTTP_PORT),
            https=_int_label(labels, HTTPS_PORT),
            api=_int_label(labels, API_PORT),
            p2p=_int_label(labels, P2P_PORT),
            host_http=int(host_http) if host_http and host_http.isdigit() else None,
        ),
        spec_hash=labels.get(SPEC_HASH, ""),
        vpn=labels.get(VPN),
        vpn_id=labels.get(VPN_ID),
        forwarded=labels.get(FORWARDED) == "true",
        image_id=info.image,
    )


def engine_sighting(info: ContainerInfo) -> EngineSighting:
    """An engine container as the state store takes it."""
    return EngineSighting(
        obs=engine_observation(info),
        ip=info.ip,
        labels=dict(info.labels),
        ran_s=info.ran_s,
        exit_code=info.exit_code,
    )
