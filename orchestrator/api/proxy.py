"""The proxy-facing routes: stream events, stream listing, provisioning, orchestrator status.

These are the calls the acexy proxy makes (`shared/proxy-contract.md`). Every one answers from
the state store alone, well within the proxy's 3-second timeout, and never trusts what the
proxy cannot know: a stream's engine is found by the (host, port) the proxy connected to, never
by the `container_id` it sends, and an unknown host/port or stream ID changes nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from orchestrator.api.access import sees_full_details
from orchestrator.api.context import ApiContext
from orchestrator.api.json_body import BodyError, Fields, read_json
from orchestrator.api.metrics import METRICS
from orchestrator.api.provisioning import (
    DEMAND_S,
    Blocked,
    blocked_reason,
    free_engine,
    in_progress,
)
from orchestrator.api.proxy_status import orchestrator_status
from orchestrator.api.responses import json_error
from orchestrator.api.routing import add_get, add_post
from orchestrator.api.views import stream_view
from orchestrator.state.endpoints import engine_endpoint
from orchestrator.state.history import clock
from orchestrator.state.store import StateStore
from orchestrator.state.streams import Stream, StreamStatus
from reconcilers.model import EngineObs

log = structlog.get_logger()

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
STATUSES: dict[str, StreamStatus] = {"started": "started", "ended": "ended"}


def body_error(exc: BodyError) -> web.Response:
    return _closing(json_error(exc.status, exc.code, exc.message, field=exc.field), exc)


def _closing(resp: web.Response, exc: BodyError) -> web.Response:
    if exc.close:
        resp.force_close()  # what is left of a huge or trickled body is not read
    return resp


def query_value(request: web.Request, name: str) -> str | None:
    """One query parameter: None when absent; a BodyError (400) when empty or repeated."""
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise BodyError(400, "invalid_query", f"{name} given {len(values)} times; give it once", name)
    if values and not values[0]:
        raise BodyError(400, "invalid_query", f"{name} is empty; leave it out or give a value", name)
    return values[0] if values else None


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamStarted:
    host: str
    port: int
    stream_id: str
    key_type: str
    key: str
    playback_session_id: str
    stat_url: str
    command_url: str
    is_live: bool


def parse_started(body: Any) -> StreamStarted:
    fields = Fields.of(body)
    fields.text("container_id", required=False)  # type-checked only: it is the proxy's, not ours
    engine, stream = fields.nested("engine"), fields.nested("stream")
    session = fields.nested("session", required=False)
    labels = fields.string_map("labels")
    key = stream.text("key", empty_ok=False)
    playback = session.text("playback_session_id", required=False)
    return StreamStarted(
        host=engine.text("host", empty_ok=False).strip(),
        port=engine.integer("port", minimum=1, maximum=65535),
        # without either, the ID is made once the engine is known (`ProxyApi.stream_started`)
        stream_id=labels.get("stream_id") or (f"{key}|{playback}" if playback else ""),
        key_type=stream.text("key_type", empty_ok=False),
        key=key,
        playback_session_id=playback,
        stat_url=session.text("stat_url", required=False),
        command_url=session.text("command_url", required=False),
        is_live=session.flag("is_live", default=True),
    )


def _sessionless(store: StateStore, stream_id: str) -> str:
    """`key|` (the default ID of a stream started with no session ID, before such streams were
    named after their engine) stands for the one active stream of that key started without a
    session; with none or several (two engines: which one ended is unknown), `stream_id` as it is."""
    if not stream_id.endswith("|") or stream_id in store.demand.streams.active:
        return stream_id
    key = stream_id[:-1]
    found = [
        s.id
        for s in store.demand.streams.active.values()
        if s.key == key and not s.playback_session_id and s.id == f"{key}|{s.container_id[:12]}"
    ]
    return found[0] if len(found) == 1 else stream_id


def _identities(store: StateStore, engine: EngineObs) -> set[str]:
    """Every name the engine can be reached or addressed by."""
    names = {engine.name, engine.container_id}
    facts = store.facts.get(engine.container_id)
    if facts is not None and facts.ip:
        names.add(facts.ip)
    if engine.vpn is not None:
        names.add(engine.vpn)
        vpn = store.vpns.get(engine.vpn)
        if vpn is not None and vpn.ip:
            names.add(vpn.ip)
    return {n.lower() for n in names if n}


def engine_at(store: StateStore, host: str, port: int) -> EngineObs | web.Response:
    """The one engine behind (host, port), or the 404/409 answer explaining why there is none."""
    wanted = host.lower().strip("[]")
    owners = [e for e in store.engines.values() if port in (e.ports.http, e.ports.host_http)]
    if wanted not in LOCAL_HOSTS:
        owners = [
            e
            for e in owners
            if wanted in _identities(store, e) or (len(wanted) >= 12 and e.container_id.startswith(wanted))
        ]
    if len(owners) == 1:
        return owners[0]
    if not owners:
        return json_error(
            404, "engine_not_found", f"no managed engine listens on {host}:{port}", host=host, port=port
        )
    names = sorted(e.name for e in owners)
    return json_error(
        409,
        "engine_ambiguous",
        f"{len(owners)} engines own port {port} for host {host!r}: {', '.join(names)}",
        host=host,
        port=port,
        engines=names,
    )


def last_known_at(store: StateStore, host: str, port: int) -> tuple[str, str] | None:
    """While `/engines` serves the last-known listing (Docker silent since the start), the
    (container ID, name) of the one engine of it behind (host, port): a stream started on an
    engine the proxy picked there is recorded, so the engine counts as busy once Docker answers."""
    if store.served.fallback is None or store.telemetry.resyncs:
        return None
    wanted = host.lower().strip("[]")
    owners = [
        e
        for e in store.served.fallback
        if port in (e.get("port"), e.get("host_http_port"))
        and (
            wanted in LOCAL_HOSTS
            or wanted in {str(e.get(k, "")).lower() for k in ("host", "container_name", "container_id")}
        )
    ]
    if len(owners) != 1:
        return None
    return str(owners[0]["container_id"]), str(owners[0].get("container_name", ""))


class ProxyApi:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    async def stream_started(self, request: web.Request) -> web.Response:
        try:
            event = parse_started(await read_json(request))
        except BodyError as exc:
            return body_error(exc)
        store = self.ctx.store
        found = engine_at(store, event.host, event.port)
        if isinstance(found, web.Response):
            known = last_known_at(store, event.host, event.port)
            if known is None:
                log.warning(
                    "stream_started_unknown_engine",
                    host=event.host,
                    port=event.port,
                    stream_id=event.stream_id,
                )
                return found
            container_id, name = known
        else:
            container_id, name = found.container_id, found.name
        stream = store.demand.start_stream(
            Stream(
                # one key on two engines with no session ID: two streams, not one replacing the other
                id=event.stream_id or f"{event.key}|{container_id[:12]}",
                container_id=container_id,
                key_type=event.key_type,
                key=event.key,
                playback_session_id=event.playback_session_id,
                stat_url=event.stat_url,
                command_url=event.command_url,
                is_live=event.is_live,
                started_at=time.time(),
            ),
            cap=self.ctx.config.max_streams_per_engine,
        )
        log.info(
            "stream_started",
            stream_id=stream.id,
            container=name,
            active=store.demand.streams.count(container_id),
        )
        return web.json_response(stream_view(stream, full=sees_full_details(request)))

    async def stream_ended(self, request: web.Request) -> web.Response:
        try:
            fields = Fields.of(await read_json(request))
            stream_id = fields.text("stream_id", empty_ok=False)
            reason = fields.text("reason", required=False) or "unspecified"
            fields.text("container_id", required=False)  # type-checked only: proxies send their own
        except BodyError as exc:
            return body_error(exc)
        store = self.ctx.store
        stream_id = _sessionless(store, stream_id)
        ended = store.demand.end_stream(stream_id, reason, time.time())
        if ended is None:
            earlier = next((s for s in reversed(store.demand.streams.ended) if s.id == stream_id), None)
            if earlier is not None:  # a repeated end: answer as before, change nothing
                return web.json_response(stream_view(earlier, full=sees_full_details(request)))
            return json_error(
                404, "stream_not_found", f"no stream {stream_id!r}; nothing was ended", stream_id=stream_id
            )
        log.info("stream_ended", stream_id=stream_id, reason=reason, container_id=ended.container_id[:12])
        return web.json_response(stream_view(ended, full=sees_full_details(request)))

    async def streams(self, request: web.Request) -> web.Response:
        try:
            status, ref = query_value(request, "status"), query_value(request, "container_id")
        except BodyError as exc:
            return body_error(exc)
        if status is not None and status not in STATUSES:
            return json_error(
                400, "invalid_query", f"status must be started or ended, got {status[:100]!r}", field="status"
            )
        store = self.ctx.store
        if ref is not None:
            engine = store.find_engine(ref)
            ref = engine.container_id if engine is not None else ref
        listed = store.demand.streams.listing(ref, STATUSES.get(status or ""))
        full = sees_full_details(request)
        now, after = time.time(), self.ctx.desired.engines.stall_after_s
        return web.json_response(
            [
                stream_view(
                    s,
                    full=full,
                    progress=store.demand.progress.get(s.id),
                    stalled=s.status == "started" and store.demand.stream_stalled(s.id, now, after),
                )
                for s in listed
            ]
        )

    async def provision(self, request: web.Request) -> web.Response:
        metrics = request.app[METRICS]
        try:
            fields = Fields.of(await read_json(request, empty_ok=True))
            fields.string_map("labels")  # accepted and ignored: engines follow the YAML
            fields.string_map("env")
        except BodyError as exc:
            metrics.count_provision("invalid_body")
            refused = self._refuse(
                Blocked(
                    code="invalid_body",
                    error=exc.code,
                    message=exc.message,
                    eta=None,
                    should_wait=False,
                    can_retry=False,
                    http_status=exc.status,
                )
            )
            return _closing(refused, exc)
        store, now = self.ctx.store, time.time()
        engine = free_engine(store, store.demand.held_engines(now))
        if engine is not None:
            store.demand.hand_out(engine.container_id, now)  # the planner now counts it as busy
            store.record(
                "provisioned",
                engine.name,
                "a proxy asked for a free engine",
                trigger=f"POST {request.path} at {clock(now)}",
                engine=engine.name,
                vpn=engine.vpn,
                at=now,
            )
            metrics.count_provision("engine")
            return web.json_response(self._engine_answer(engine))
        blocked = blocked_reason(self.ctx, now) or in_progress(store)
        if blocked.should_wait:
            store.demand.want_free_engine(now + DEMAND_S)  # one demand, extended by every retry
        metrics.count_provision(blocked.code)
        log.info("provision_deferred", code=blocked.code, eta=blocked.eta)
        return self._refuse(blocked)

    def _engine_answer(self, engine: EngineObs) -> dict[str, Any]:
        host, port = engine_endpoint(self.ctx.store, engine, self.ctx.config.address)
        return {
            "container_id": engine.container_id,
            "container_name": engine.name,
            "host": host,
            "port": port,
            "host_http_port": engine.ports.host_http or engine.ports.http,
            "container_http_port": engine.ports.http,
            "container_https_port": engine.ports.https,
            "vpn_container": engine.vpn,
            "forwarded": engine.forwarded,
        }

    @staticmethod
    def _refuse(blocked: Blocked) -> web.Response:
        headers = {"Retry-After": str(blocked.eta)} if blocked.eta else None
        return web.json_response({"detail": blocked.detail()}, status=blocked.http_status, headers=headers)

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(orchestrator_status(self.ctx, time.time()))


def add_proxy_routes(app: web.Application, ctx: ApiContext) -> ProxyApi:
    api = ProxyApi(ctx)
    add_post(app, "/events/stream_started", api.stream_started)
    add_post(app, "/events/stream_ended", api.stream_ended)
    add_get(app, "/streams", api.streams)
    add_post(app, "/provision/acestream", api.provision)
    add_get(app, "/orchestrator/status", api.status)
    return api
