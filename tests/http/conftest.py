"""The real aiohttp app on a real state store and config watcher; Docker is never contacted.

`Api` fills the store through its public methods, exactly as the event source and readiness
prober do: containers as Docker would report them (labels written by `engine_labels`, converted
by the Docker edge, so ports and slots come from the real allocation), VPNs as sightings of the
VPN state machine.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from orchestrator.api.app import make_app
from orchestrator.api.context import ApiContext
from orchestrator.api.json_body import DEFAULT_LIMITS, Limits
from orchestrator.config import Config, parse_config
from orchestrator.config.watcher import ConfigWatcher
from orchestrator.docker.containers import ContainerInfo, vpn_container
from orchestrator.docker.engines import engine_labels, engine_sighting
from orchestrator.state.store import StateStore
from reconcilers import engine_spec_hash
from reconcilers.model import CreateEngine, Desired, EngineObs
from reconcilers.placement import ports_for
from reconcilers.vpn import ContainerSeen, ControlRead

NO_DOCKER = "http://127.0.0.1:9"  # never answers: Docker calls fail at once
SECRET = "s3cret-key"  # noqa: S105 - a test key
VPN_STARTED = time.time() - 1000.0
ENGINE_STARTED = time.time() - 500.0

LAUNCH = "launch: {preset: acestream-http-proxy}"  # the image name says nothing of its family
NO_VPN = f"engines: {{image: engine:1, {LAUNCH}, min_replicas: 1, min_free: 1, max_replicas: 4}}\n"
ONE_VPN = NO_VPN + "vpn: {mode: single, containers: [gluetun], port_range: 19000-19299}\n"
TWO_VPNS = NO_VPN + "vpn: {mode: redundant, containers: [g1, g2], port_range: 19000-19599}\n"
WITH_KEY = f"api: {{api_key: {SECRET}}}\n"

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")


def vpn_id(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


@dataclass(slots=True)
class Api:
    ctx: ApiContext
    client: TestClient  # type: ignore[type-arg]

    @property
    def store(self) -> StateStore:
        return self.ctx.store

    @property
    def config(self) -> Config:
        return self.ctx.config

    @property
    def desired(self) -> Desired:
        return self.ctx.desired

    def apply_config(self, config: Config) -> None:
        assert self.ctx.watcher.apply(config)

    def add_vpn(
        self,
        name: str,
        *,
        state: str = "healthy",
        ip: str = "172.20.0.2",
        forwarded_port: int | None = None,
        since: float | None = None,
    ) -> None:
        """A Gluetun container as Docker reports it: healthy, unhealthy, starting, stopped or
        missing."""
        info = (
            None
            if state == "missing"
            else ContainerInfo(
                id=vpn_id(name),
                name=name,
                status="exited" if state == "stopped" else "running",
                health=None if state == "stopped" else state,
                started_at=VPN_STARTED,
                created_at=VPN_STARTED - 5,
                ip=ip,
            )
        )
        self.store.apply_vpn(
            name, ContainerSeen(container=vpn_container(info)), time.time() if since is None else since
        )
        if forwarded_port is not None:
            self.store.apply_vpn(
                name,
                ControlRead(forwarded_port=forwarded_port, public_ip="1.2.3.4", status="running"),
                time.time(),
            )

    def add_engine(
        self,
        slot: int,
        vpn: str | None = None,
        *,
        ready: bool = True,
        ip: str | None = None,
        forwarded: bool = False,
    ) -> EngineObs:
        desired = self.desired
        seen = self.store.vpns.get(vpn) if vpn else None
        create = CreateEngine(
            vpn=vpn,
            vpn_id=seen.container_id if seen else None,
            slot=slot,
            ports=ports_for(desired, vpn, slot, None),
            forwarded=forwarded,
            spec_hash=engine_spec_hash(desired),
            reason="test",
        )
        container_id = hashlib.sha256(f"{vpn}/{slot}".encode()).hexdigest()
        info = ContainerInfo(
            id=container_id,
            name=f"acestream-{vpn or 'engine'}-{slot}",
            status="running",
            health=None,
            started_at=ENGINE_STARTED + slot,
            created_at=ENGINE_STARTED - 1,
            ip=None if vpn else (ip or f"172.18.0.{10 + slot}"),
            labels=engine_labels(create, desired.engines),
        )
        self.store.upsert_engine(engine_sighting(info))
        if ready:
            self.store.mark_ready(info.id, info.started_at)
        return self.store.engines[info.id]

    def restart_engine(self, engine: EngineObs) -> EngineObs:
        """The same container seen again in a later run (Docker restarted it)."""
        facts = self.store.facts[engine.container_id]
        info = ContainerInfo(
            id=engine.container_id,
            name=engine.name,
            status="running",
            health=None,
            started_at=time.time(),
            created_at=engine.created_at,
            ip=facts.ip,
            labels=facts.labels,
        )
        self.store.upsert_engine(engine_sighting(info))
        return self.store.engines[info.id]

    async def post(
        self,
        path: str,
        body: Any = None,
        *,
        key: str | None = SECRET,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        sent = dict(headers or {})
        if key is not None:
            sent.setdefault("Authorization", f"Bearer {key}")
        if raw is not None:  # sent as JSON, as the proxy does, unless `headers` say otherwise
            sent.setdefault("Content-Type", "application/json")
            resp = await self.client.post(path, data=raw, headers=sent)
        else:
            resp = await self.client.post(path, json=body, headers=sent)
        assert resp.content_type == "application/json", await resp.text()
        return resp.status, await resp.json()

    async def get(self, path: str, **params: str) -> tuple[int, Any]:
        resp = await self.client.get(path, params=params)
        assert resp.content_type == "application/json", await resp.text()
        return resp.status, await resp.json()


MakeApi = Callable[..., Awaitable[Api]]


@pytest.fixture
async def make_api(aiohttp_client: Any) -> AsyncIterator[MakeApi]:
    async def make(
        yaml_text: str = NO_VPN,
        *,
        docker_connected: bool = True,
        limits: Limits = DEFAULT_LIMITS,
        host: str = "127.0.0.1",
    ) -> Api:
        """`host`: the address the app is served on, and so the one requests come from."""
        config = parse_config(yaml_text, source="test.yaml", env={})
        watcher = ConfigWatcher(config)
        store = StateStore(
            restart_on_reconnect=lambda: watcher.current.desired.vpn.restart_engines_on_reconnect
        )
        if docker_connected:
            store.telemetry.set_docker(connected=True)
        ctx = ApiContext(store=store, watcher=watcher, started_at=time.time())
        client = await aiohttp_client(make_app(ctx, limits=limits), server_kwargs={"host": host})
        return Api(ctx=ctx, client=client)

    yield make


def snapshot(store: StateStore) -> dict[str, Any]:
    """Everything a request could change, through the store's read-only views: compare one taken
    before a refused request with one taken after."""
    now = time.time()
    return {
        "version": store.version,
        "engines": dict(store.engines),
        "visible": store.visible,
        "vpns": dict(store.vpns),
        "active": dict(store.demand.streams.active),
        "ended": tuple(store.demand.streams.ended),
        "started": store.demand.streams.total_started,
        "last_usage": dict(store.demand.streams.last_usage),
        "demand_until": store.demand.demand_until,
        "held": store.demand.held_engines(now),
        "pending": store.ledger.pending_count,
        "busy": store.ledger.busy_count,
    }


def started_body(
    host: str,
    port: int,
    *,
    key: str = "a1b2c3",
    session: str = "sess-1",
    stat_url: str | None = None,
    command_url: str | None = None,
    stream_id: str | None = None,
    container_id: str | None = "acexy-own-id",
) -> dict[str, Any]:
    """The exact body acexy's EmitStarted sends."""
    body: dict[str, Any] = {
        "engine": {"host": host, "port": port},
        "stream": {"key_type": "content_id", "key": key},
        "session": {
            "playback_session_id": session,
            "stat_url": f"http://{host}:{port}/ace/stat/{key}/{session}" if stat_url is None else stat_url,
            "command_url": f"http://{host}:{port}/ace/cmd/{key}/{session}"
            if command_url is None
            else command_url,
            "is_live": 1,
        },
        "labels": {"stream_id": stream_id or f"{key}|{session}"},
    }
    if container_id is not None:
        body["container_id"] = container_id
    return body


def assert_time(value: Any, *, nullable: bool = True) -> None:
    if value is None and nullable:
        return
    assert isinstance(value, str) and RFC3339.match(value), f"not RFC 3339 with a zone: {value!r}"


def assert_int(value: Any, *, nullable: bool = False) -> None:
    if value is None and nullable:
        return
    assert isinstance(value, int) and not isinstance(value, bool), f"not an int: {value!r}"


def assert_engine_types(engine: dict[str, Any]) -> None:
    """What acexy's engineState decodes, field by field."""
    for name in ("container_id", "container_name", "host", "health_status"):
        assert isinstance(engine[name], str), name
    assert_int(engine["port"])
    assert isinstance(engine["forwarded"], bool)
    labels = engine["labels"]
    assert isinstance(labels, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    )
    assert isinstance(engine["streams"], list) and all(isinstance(s, str) for s in engine["streams"])
    for name in ("first_seen", "last_seen", "last_health_check", "last_stream_usage", "started_at"):
        assert_time(engine[name])
    assert engine["health_status"] in ("healthy", "unhealthy", "unknown")


def assert_stream_types(stream: dict[str, Any]) -> None:
    """What acexy's streamState decodes."""
    for name in (
        "id",
        "key_type",
        "key",
        "container_id",
        "playback_session_id",
        "stat_url",
        "command_url",
        "status",
    ):
        assert isinstance(stream[name], str), name
    assert isinstance(stream["is_live"], bool)
    assert_time(stream["started_at"], nullable=False)
    assert_time(stream["ended_at"])
    assert stream["end_reason"] is None or isinstance(stream["end_reason"], str)
