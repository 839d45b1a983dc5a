"""The import contracts in pyproject.toml (`make check` runs `lint-imports` on the tree) would
catch the breaks they exist for: each row plants one bad import in a copy of the sources and
expects the named contract to break."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        (
            "orchestrator/api/views.py",
            "from orchestrator.daemon import Daemon",
            "The daemon's layers point down",
        ),
        (
            "orchestrator/state/store.py",
            "from orchestrator.workers import executor",
            "The daemon's layers point down",
        ),
        (
            "orchestrator/workers/readiness.py",
            "import aiodocker",
            "Only the Docker gateway imports aiodocker",
        ),
        (
            "orchestrator/api/views.py",
            "from orchestrator.workers import executor",
            "The daemon's layers point down",
        ),
        (
            "orchestrator/workers/readiness.py",
            "from orchestrator.api import app",
            "The daemon's layers point down",
        ),
        (
            "orchestrator/vpn/poller.py",
            "from orchestrator.workers import executor",
            "The daemon's layers point down",
        ),
        (
            "orchestrator/state/store.py",
            "from orchestrator.config import Config",
            "The daemon's layers point down",
        ),
        (
            "orchestrator/api/views.py",
            "from orchestrator.docker import api",
            "Only the daemon and the workers use the Docker seam",
        ),
        (
            "orchestrator/vpn/poller.py",
            "from orchestrator.docker import api",
            "Only the daemon and the workers use the Docker seam",
        ),
        ("reconcilers/pool.py", "import structlog", "The planner is pure: no daemon, no I/O libraries"),
        (
            "reconcilers/health.py",
            "from orchestrator.errors import OrchestratorError",
            "The planner is pure: no daemon, no I/O libraries",
        ),
        ("reconcilers/health.py", "from reconcilers import ports", "The planner's modules point down"),
        ("reconcilers/model.py", "from reconcilers import vpn", "The planner's modules point down"),
        (
            "orchestrator/state/ledger.py",
            "from orchestrator.state.telemetry import Telemetry",
            "The state's parts are independent",
        ),
        (
            "orchestrator/state/demand.py",
            "from orchestrator.state import ledger",
            "The state's parts are independent",
        ),
        (
            "orchestrator/state/telemetry.py",
            "from orchestrator.state.store import StateStore",
            "The state's parts do not reach back into the store",
        ),
    ],
    ids=[
        "api_imports_daemon",
        "state_imports_workers",
        "api_imports_workers_sideways",
        "workers_import_api_sideways",
        "vpn_imports_workers_sideways",
        "state_imports_config_sideways",
        "api_imports_docker",
        "vpn_imports_docker",
        "aiodocker_outside_gateway",
        "planner_logs",
        "planner_imports_daemon",
        "planner_rule_imports_sibling_rule",
        "planner_vocabulary_imports_up",
        "ledger_imports_telemetry",
        "demand_imports_ledger",
        "telemetry_imports_store",
    ],
)
def test_a_planted_bad_import_breaks_its_contract(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    for package in ("orchestrator", "reconcilers"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    with (tmp_path / module).open("a", encoding="utf-8") as source:
        source.write(f"\n{line}  # noqa\n")
    done = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        timeout=60,
        check=False,
    )
    assert done.returncode != 0, done.stdout
    assert f"{contract} BROKEN" in done.stdout, done.stdout
