"""The Grafana dashboard (compose/monitoring/grafana/dashboards/) queries only what `/metrics`
serves: every metric name in every panel's PromQL exists, with every label the query selects
on, groups by or shows in its legend. A renamed metric or label fails here, not on a blank
panel at a user's. Also: the monitoring profile's files the stacks mount exist."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.http.conftest import TWO_VPNS, MakeApi, started_body

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "compose" / "monitoring" / "grafana" / "dashboards" / "acestream-orchestrator.json"
METRIC = re.compile(r"\b(acestream_orchestrator_[a-z_]+)(\{[^}]*\})?")
MATCHER = re.compile(r"([a-z_]+)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
LEGEND = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
PROMQL_ONLY = {"le"}  # a histogram's bucket label: on every _bucket sample


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(expression, legend) of every panel target and templating query."""
    out = [(t["expr"], t.get("legendFormat", "")) for p in dashboard["panels"] for t in p.get("targets", [])]
    out += [(v["query"]["query"], "") for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return out


def used(expr: str, legend: str) -> dict[str, set[str]]:
    """Metric name -> the labels the query relies on."""
    grouped = {g.strip() for group in GROUPING.findall(expr) for g in group.split(",") if g.strip()}
    labels_of_legend = set(LEGEND.findall(legend))
    found: dict[str, set[str]] = {}
    for name, selector in METRIC.findall(expr):
        found.setdefault(name, set()).update(MATCHER.findall(selector or ""), grouped, labels_of_legend)
    for label_values in re.findall(r"label_values\((\w+),\s*(\w+)\)", expr):
        found.setdefault(label_values[0], set()).add(label_values[1])
    return found


async def served(make_api: MakeApi) -> dict[str, set[str]]:
    """Metric sample name -> its label names, from a pool with something in every metric."""
    api = await make_api(TWO_VPNS)
    api.add_vpn("g1")
    api.add_vpn("g2", state="unhealthy")
    engine = api.add_engine(0, "g1")
    api.add_engine(1, "g1")
    await api.post("/events/stream_started", started_body("g1", engine.ports.http))
    await api.post("/provision/acestream", {})
    text = await (await api.client.get("/metrics")).text()
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    return out


async def test_every_metric_and_label_the_dashboard_queries_is_served(make_api: MakeApi) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    metrics = await served(make_api)
    checked = 0
    for expr, legend in queries(dashboard):
        for name, labels in used(expr, legend).items():
            assert name in metrics, f"{name} (in {expr!r}) is not on /metrics"
            missing = labels - metrics[name] - (PROMQL_ONLY if name.endswith("_bucket") else set())
            assert not missing, f"{name} has no label {missing} (in {expr!r})"
            checked += 1
    assert checked >= 10


@pytest.mark.parametrize(
    ("expr", "legend", "expected"),
    [
        ('sum by (outcome) (rate(acestream_orchestrator_x{vpn=~"$vpn"}[5m]))', "", {"outcome", "vpn"}),
        ("acestream_orchestrator_x", "{{vpn}} {{state}}", {"vpn", "state"}),
        ("label_values(acestream_orchestrator_x, vpn)", "", {"vpn"}),
    ],
)
def test_the_checker_sees_the_labels_a_query_uses(expr: str, legend: str, expected: set[str]) -> None:
    assert used(expr, legend) == {"acestream_orchestrator_x": expected}


def test_the_monitoring_profile_mounts_files_that_exist() -> None:
    for stack in ("plain", "gluetun", "gluetun-redundant"):
        compose = yaml.safe_load((REPO / "compose" / stack / "docker-compose.yml").read_text())
        for service in ("prometheus", "grafana"):
            svc = compose["services"][service]
            assert svc["profiles"] == ["monitoring"], (stack, service)
            for volume in svc["volumes"]:
                source = volume.split(":", 1)[0]
                if source.startswith("."):
                    assert (REPO / "compose" / stack / source).resolve().exists(), (stack, volume)
