"""The monitoring profile against a real Prometheus: Debian's `prometheus` (2.42).

The profile's compose/monitoring/prometheus.yml, as shipped but for its target (this test's
daemon) and a 1 s scrape interval, scrapes a daemon of stand-in engines behind a stand-in
Gluetun; then every PromQL expression of the Grafana dashboards is run on that Prometheus, each
value of the dashboard's variables substituted as Grafana would. tests/http/test_dashboard.py
checks metric and label names against /metrics; this checks that the queries parse, evaluate
and find data. Grafana itself is not run (Debian does not package it).
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from testkit.harness import (
    REPO,
    Daemon,
    free_port,
    http_json,
    run_gluetun,
    stream_started,
    wait_for,
    wait_vpn_health,
)
from testkit.packages import ensure_package

MakeDaemon = Callable[..., Daemon]
MONITORING = REPO / "compose" / "monitoring"
PROMETHEUS_YML = MONITORING / "prometheus.yml"
DASHBOARDS = sorted((MONITORING / "grafana" / "dashboards").glob("*.json"))
RELEASE = "2.42"  # Debian 12's, the one docs/status-page.md says the queries are tested on
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
LABEL_VALUES = re.compile(r"^label_values\((\w+),\s*(\w+)\)$")

# No VPN fails in this test, so the VPN-failure-to-hidden histogram has no observations: its
# buckets are served (the query has series) but a quantile of nothing is NaN, which Grafana
# leaves blank. Every other query has data: the setup below gives each metric something.
NAN_WHEN_NOTHING_OBSERVED = "acestream_orchestrator_hide_latency_seconds_bucket"


@dataclass(frozen=True)
class Prometheus:
    url: str
    job: str
    metrics_path: str

    def get(self, path: str, **params: str) -> Any:
        status, body = http_json(f"{self.url}{path}?{urllib.parse.urlencode(params)}")
        assert status == 200 and body["status"] == "success", (path, params, status, body)
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", (expr, data)
        return list(data["result"])


def scrape_config(daemon: Daemon) -> dict[str, Any]:
    """The shipped prometheus.yml with only its target and scrape interval changed."""
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_YML.read_text())
    (job,) = config["scrape_configs"]
    (static,) = job["static_configs"]
    assert len(static["targets"]) == 1, static
    static["targets"] = [f"127.0.0.1:{daemon.port}"]
    config["global"]["scrape_interval"] = "1s"
    return config


@pytest.fixture
def prometheus_of(tmp_path: Path) -> Iterator[Callable[[Daemon], Prometheus]]:
    """Start Prometheus on loopback scraping a daemon; killed at teardown."""
    ensure_package("prometheus", "prometheus")
    running: list[subprocess.Popen[bytes]] = []

    def start(daemon: Daemon) -> Prometheus:
        config = scrape_config(daemon)
        path = tmp_path / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        address = f"127.0.0.1:{free_port()}"
        with (tmp_path / "prometheus.log").open("wb") as log:
            running.append(
                subprocess.Popen(
                    [
                        "prometheus",
                        f"--config.file={path}",
                        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                        f"--web.listen-address={address}",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        (job,) = config["scrape_configs"]
        prometheus = Prometheus(
            url=f"http://{address}", job=job["job_name"], metrics_path=job["metrics_path"]
        )
        wait_for("Prometheus ready", lambda: _ready(prometheus, running[-1], tmp_path), timeout=30)
        return prometheus

    yield start
    for process in running:
        process.kill()
        process.wait(timeout=10)


def _ready(prometheus: Prometheus, process: subprocess.Popen[bytes], tmp_path: Path) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"prometheus exited: {(tmp_path / 'prometheus.log').read_text()[-3000:]}")
    try:
        return http_json(f"{prometheus.url}/api/v1/status/buildinfo")[0] == 200
    except (OSError, ValueError):
        return False


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel, rows' panels included."""
    out = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            out += [(inner["title"], t["expr"]) for t in inner.get("targets", [])]
    return out


def substituted(expr: str, values: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        assert name in values, f"no value for the dashboard variable ${name} in {expr!r}"
        return values[name]

    return VARIABLE.sub(one, expr)


def variable_choices(prometheus: Prometheus, dashboard: dict[str, Any]) -> list[dict[str, str]]:
    """Each way a user can set the dashboard's variables: "All" (the variable's allValue) and
    each value its label_values query offers, one at a time; the values must not be empty."""
    choices: list[dict[str, str]] = []
    for variable in dashboard["templating"]["list"]:
        assert variable["type"] == "query", variable
        parsed = LABEL_VALUES.match(variable["query"]["query"])
        assert parsed, f"not a label_values(metric, label) query: {variable['query']!r}"
        metric, label = parsed.groups()
        offered = prometheus.get(f"/api/v1/label/{label}/values", **{"match[]": metric})
        assert offered, f"${variable['name']}: label_values({metric}, {label}) offers nothing"
        # Grafana escapes regex metacharacters in a value; this test's VPN names have none
        assert all(re.fullmatch(r"[\w-]+", v) for v in offered), offered
        values = ([variable["allValue"]] if variable.get("includeAll") else []) + offered
        choices += [{variable["name"]: value} for value in values]
    return choices or [{}]


def test_promtool_accepts_the_shipped_config() -> None:
    ensure_package("promtool", "prometheus")
    done = subprocess.run(
        ["promtool", "check", "config", str(PROMETHEUS_YML)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_dashboard_query_runs_on_prometheus_scraping_the_daemon(
    make_daemon: MakeDaemon, vpns: tuple[str, str], prometheus_of: Callable[[Daemon], Prometheus]
) -> None:
    vpn = vpns[0]
    run_gluetun(vpn)
    wait_vpn_health(vpn, "healthy")
    daemon = make_daemon(
        engines={"min_replicas": 2, "min_free": 0}, vpn={"mode": "single", "containers": [vpn]}
    )
    engine, _ = daemon.wait_engines(2)
    # something in every counter the dashboard rates: a stream started, a provisioning answer
    assert stream_started(daemon, engine["host"], engine["port"], "monitoring")[0] == 200
    assert http_json(daemon.url + "/provision/acestream", "POST", {}, timeout=5)[0] == 200

    prometheus = prometheus_of(daemon)
    version = prometheus.get("/api/v1/status/buildinfo")["version"]
    assert version.startswith(f"{RELEASE}."), f"Prometheus {version}: docs/status-page.md names {RELEASE}"
    (target,) = wait_for(
        "the daemon's target up",
        lambda: [t for t in prometheus.get("/api/v1/targets")["activeTargets"] if t["health"] == "up"],
    )
    assert target["labels"]["job"] == prometheus.job
    assert target["scrapeUrl"] == daemon.url + prometheus.metrics_path
    # rate() needs two samples in its range: wait for three scrapes of the daemon
    wait_for(
        "three scrapes",
        lambda: prometheus.query(f'count_over_time(up{{job="{prometheus.job}"}}[5m]) >= 3'),
        timeout=20,
    )

    assert DASHBOARDS
    checked = 0
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for values in variable_choices(prometheus, dashboard):
            for title, expr in panel_queries(dashboard):
                concrete = substituted(expr, values)
                result = prometheus.query(concrete)
                assert result, f"{path.name} panel {title!r}: {concrete!r} found no data"
                nan = [math.isnan(float(sample["value"][1])) for sample in result]
                assert set(nan) == {NAN_WHEN_NOTHING_OBSERVED in expr}, (title, concrete, result)
                checked += 1
    assert checked >= 2 * 13, checked  # "All" and the one VPN, each of the 13 expressions

    visible = prometheus.query('sum(acestream_orchestrator_engines{state="visible"})')
    assert float(visible[0]["value"][1]) == 2
    (healthy,) = prometheus.query("acestream_orchestrator_vpn_healthy")
    assert healthy["metric"]["vpn"] == vpn and healthy["value"][1] == "1"
    assert prometheus.query("acestream_orchestrator_streams_active")[0]["value"][1] == "1"
