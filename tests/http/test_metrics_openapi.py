"""/metrics reads the store at scrape time; /openapi.json describes every route, and only those."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from orchestrator.api.metrics import observe_hide_latency
from orchestrator.api.page import PAGE_ROUTES
from orchestrator.api.routing import is_fallback
from tests.http.conftest import TWO_VPNS, MakeApi, started_body


async def scrape(api: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = await api.client.get("/metrics")
    assert resp.status == 200 and resp.content_type == "text/plain"
    samples = {}
    for family in text_string_to_metric_families(await resp.text()):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


async def test_metrics_follow_the_store(make_api: MakeApi) -> None:
    api = await make_api(TWO_VPNS)
    api.add_vpn("g1")
    api.add_vpn("g2", state="unhealthy")
    engine = api.add_engine(0, "g1")
    api.add_engine(1, "g1", ready=False)
    api.add_engine(2, "g1")
    api.add_engine(0, "g2")
    await api.post("/events/stream_started", started_body("g1", engine.ports.http))
    await api.post("/provision/acestream", {})  # the one free engine behind g1 is handed out
    await api.post("/provision/acestream", {})  # none left, and 4 engines is max_replicas
    await api.post("/provision/acestream", {"labels": []})
    before = (await scrape(api)).get(("acestream_orchestrator_hide_latency_seconds_count", ()), 0)
    observe_hide_latency(0.004)

    m = await scrape(api)

    def engines(state: str, vpn: str) -> float:
        return m["acestream_orchestrator_engines", (("state", state), ("vpn", vpn))]

    assert (engines("total", "g1"), engines("running", "g1"), engines("ready", "g1")) == (3, 3, 2)
    assert engines("visible", "g1") == 2 and engines("visible", "g2") == 0
    assert engines("total", "g2") == 1
    assert m["acestream_orchestrator_vpn_healthy", (("vpn", "g1"),)] == 1
    assert m["acestream_orchestrator_vpn_healthy", (("vpn", "g2"),)] == 0
    assert m["acestream_orchestrator_streams_active", ()] == 1
    assert m["acestream_orchestrator_streams_started_total", ()] == 1
    provisions = "acestream_orchestrator_provision_requests_total"
    assert m[provisions, (("outcome", "engine"),)] == 1
    assert m[provisions, (("outcome", "max_capacity"),)] == 1
    assert m[provisions, (("outcome", "invalid_body"),)] == 1
    assert m["acestream_orchestrator_reconcile_passes_total", ()] == 0
    assert m["acestream_orchestrator_docker_events_total", ()] == 0
    assert m["acestream_orchestrator_hide_latency_seconds_count", ()] == before + 1
    assert m["acestream_orchestrator_hide_latency_seconds_bucket", (("le", "0.005"),)] >= 1


async def test_metrics_of_a_daemon_that_never_ran(make_api: MakeApi) -> None:
    api = await make_api(docker_connected=False)

    m = await scrape(api)

    assert m["acestream_orchestrator_streams_active", ()] == 0
    assert m["acestream_orchestrator_circuit_breaker_open", ()] == 0


async def test_openapi_covers_every_route_and_nothing_else(make_api: MakeApi) -> None:
    api = await make_api()
    served = set()
    for route in api.client.app.router.routes():
        if route.method == "HEAD" or is_fallback(route):  # aiohttp adds HEAD beside every GET
            continue
        served.add((route.resource.canonical, route.method.lower()))
    served -= PAGE_ROUTES  # the status page's HTML, sign-in and event streams: not JSON (page.py)

    status, doc = await api.get("/openapi.json")

    assert status == 200 and doc["openapi"].startswith("3.1")
    described = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert served - described == set(), "routes missing from openapi.py"
    assert described - served == set(), "openapi.py describes routes the app does not serve"
    for path, method in described:
        operation = doc["paths"][path][method]
        assert operation["summary"] and "200" in operation["responses"], (path, method)
        if method == "post":
            assert operation["security"] == [{"bearer": []}], path
            assert "requestBody" in operation, path


async def test_openapi_references_resolve(make_api: MakeApi) -> None:
    api = await make_api()
    _, doc = await api.get("/openapi.json")
    schemas = doc["components"]["schemas"]

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            own = [node["$ref"]] if "$ref" in node else []
            return own + [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    found = refs(doc)
    assert found
    for ref in found:
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
    assert "ignored" in doc["paths"]["/provision/acestream"]["post"]["description"]


async def test_openapi_describes_exactly_the_fields_engines_and_streams_carry(make_api: MakeApi) -> None:
    """One description of each wire shape: the views in orchestrator/api/views.py are what is
    served; the schema must name every field they carry, and no field they do not."""
    api = await make_api()
    engine = api.add_engine(0)
    status, started = await api.post("/events/stream_started", started_body(engine.name, 6878))
    assert status == 200
    _, doc = await api.get("/openapi.json")
    schemas = doc["components"]["schemas"]
    _, (listed,) = await api.get("/engines")
    assert set(schemas["Engine"]["properties"]) == set(listed)
    assert set(schemas["Engine"]["required"]) <= set(listed)
    # a stream as a key holder sees it, plus `redacted`, which only the narrowed view carries
    assert set(schemas["Stream"]["properties"]) == set(started) | {"redacted"}
    assert set(schemas["Stream"]["required"]) <= set(started)
