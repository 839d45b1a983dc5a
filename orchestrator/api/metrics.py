"""Prometheus metrics at `GET /metrics`, read from the state store at scrape time.

Gauges of the pool (engines by state and VPN, VPN health, active streams, pending creations)
are not kept up to date by hand: a custom collector derives them from the store on every
scrape, so they cannot drift from what `/engines` shows. Only what cannot be derived is counted
as it happens: provisioning answers (by outcome) and the latency between a VPN failing and its
engines leaving `/engines` (`observe_hide_latency`, called by the visibility code). Each app has
its own registry, so tests can build several apps in one process.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from orchestrator.api.context import ApiContext
from orchestrator.api.counts import EngineCounts
from orchestrator.api.routing import add_get

PREFIX = "acestream_orchestrator"
NO_VPN = "none"

# Process-wide on purpose: the visibility code calls `observe_hide_latency` without an app at
# hand. It is registered in no global registry, only in each app's own registry.
HIDE_LATENCY = Histogram(
    f"{PREFIX}_hide_latency_seconds",
    "Time from a VPN failure being observed to its engines leaving /engines",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0),
    registry=None,
)


def observe_hide_latency(seconds: float) -> None:
    HIDE_LATENCY.observe(max(0.0, seconds))


class StoreCollector:
    """Derives the pool's gauges and the daemon's own counters from its parts at scrape time."""

    def __init__(self, ctx: ApiContext) -> None:
        self._ctx = ctx

    def collect(self) -> Iterable[Metric]:
        ctx = self._ctx
        store = ctx.store
        engines = GaugeMetricFamily(
            f"{PREFIX}_engines", "Managed engines by state and VPN", labels=["state", "vpn"]
        )
        counts = EngineCounts(store).by_vpn
        vpns = {e.vpn for e in store.engines.values()} | set(ctx.desired.vpn.containers)
        for vpn in sorted(vpns, key=lambda v: v or NO_VPN):
            for state in ("total", "running", "ready", "visible"):
                engines.add_metric([state, vpn or NO_VPN], counts[state, vpn])
        yield engines

        health = GaugeMetricFamily(
            f"{PREFIX}_vpn_healthy", "1 when the VPN container is healthy", labels=["vpn"]
        )
        for name in ctx.desired.vpn.containers:
            seen = store.vpns.get(name)
            health.add_metric([name], 1 if seen and seen.state == "healthy" else 0)
        yield health

        stalled = GaugeMetricFamily(
            f"{PREFIX}_streams_stalled",
            "Active streams whose engine reports no progress for engines.stall_after_s, by engine and VPN",
            labels=["engine", "vpn"],
        )
        now, after = time.time(), ctx.desired.engines.stall_after_s
        stalled_by: Tally[tuple[str, str]] = Tally()
        for s in store.demand.streams.active.values():
            engine = store.engines.get(s.container_id)
            if engine is not None and store.demand.stream_stalled(s.id, now, after):
                stalled_by[engine.name, engine.vpn or NO_VPN] += 1
        for (name, vpn), n in sorted(stalled_by.items()):
            stalled.add_metric([name, vpn], n)
        yield stalled
        yield GaugeMetricFamily(
            f"{PREFIX}_streams_active",
            "Streams the proxy reported as running",
            value=len(store.demand.streams.active),
        )
        yield CounterMetricFamily(
            f"{PREFIX}_streams_started", "Streams reported started", value=store.demand.streams.total_started
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_pending_creates", "Engine creations under way", value=store.ledger.pending_count
        )
        yield CounterMetricFamily(
            f"{PREFIX}_reconcile_passes", "Reconcile passes run", value=store.telemetry.reconcile_passes
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_reconcile_last_duration_seconds",
            "Duration of the last reconcile pass",
            value=store.telemetry.last_pass_duration_s,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_docker_events", "Docker events received", value=store.telemetry.events_received
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_circuit_breaker_open",
            "1 while engine creation is backed off after repeated failures",
            value=1 if store.ledger.breaker_state(time.time()) == "open" else 0,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Metrics:
    registry: CollectorRegistry
    provisioning: Counter

    def count_provision(self, outcome: str) -> None:
        self.provisioning.labels(outcome=outcome).inc()


METRICS: web.AppKey[Metrics] = web.AppKey("metrics")


def make_metrics(ctx: ApiContext) -> Metrics:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(ctx))
    registry.register(HIDE_LATENCY)
    provisioning = Counter(
        f"{PREFIX}_provision_requests",
        "POST /provision/acestream answers by outcome",
        labelnames=["outcome"],
        registry=registry,
    )
    return Metrics(registry=registry, provisioning=provisioning)


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_metrics(app: web.Application, ctx: ApiContext) -> Metrics:
    app[METRICS] = made = make_metrics(ctx)
    add_get(app, "/metrics", metrics)
    return made
