"""The import contracts in pyproject.toml (`make check` runs `lint-imports` on the tree) would
catch the breaks they exist for: every row's bad import is planted in one copy of the sources,
`lint-imports` runs once on it, and each row expects its own import (its module, the module it
imports, the planted line's number) reported under the contract it names."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


class Plant(NamedTuple):
    id: str
    module: str  # the file the bad import is appended to
    line: str
    contract: str


PLANTS = [
    Plant(
        "api_imports_daemon",
        "orchestrator/api/views.py",
        "from orchestrator.daemon import Daemon",
        "The daemon's layers point down",
    ),
    Plant(
        "state_imports_workers",
        "orchestrator/state/store.py",
        "from orchestrator.workers import executor",
        "The daemon's layers point down",
    ),
    Plant(
        "aiodocker_outside_gateway",
        "orchestrator/workers/readiness.py",
        "import aiodocker",
        "Only the Docker gateway imports aiodocker",
    ),
    Plant(
        "api_imports_workers_sideways",
        "orchestrator/api/views.py",
        "from orchestrator.workers import executor",
        "The daemon's layers point down",
    ),
    Plant(
        "workers_import_api_sideways",
        "orchestrator/workers/readiness.py",
        "from orchestrator.api import app",
        "The daemon's layers point down",
    ),
    Plant(
        "vpn_imports_workers_sideways",
        "orchestrator/vpn/poller.py",
        "from orchestrator.workers import executor",
        "The daemon's layers point down",
    ),
    Plant(
        "state_imports_config_sideways",
        "orchestrator/state/store.py",
        "from orchestrator.config import Config",
        "The daemon's layers point down",
    ),
    Plant(
        "api_imports_docker",
        "orchestrator/api/views.py",
        "from orchestrator.docker import api",
        "Only the daemon and the workers use the Docker seam",
    ),
    Plant(
        "vpn_imports_docker",
        "orchestrator/vpn/poller.py",
        "from orchestrator.docker import api",
        "Only the daemon and the workers use the Docker seam",
    ),
    Plant(
        "planner_logs",
        "reconcilers/pool.py",
        "import structlog",
        "The planner is pure: no daemon, no I/O libraries",
    ),
    Plant(
        "planner_imports_daemon",
        "reconcilers/health.py",
        "from orchestrator.errors import OrchestratorError",
        "The planner is pure: no daemon, no I/O libraries",
    ),
    Plant(
        "planner_rule_imports_sibling_rule",
        "reconcilers/health.py",
        "from reconcilers import ports",
        "The planner's modules point down",
    ),
    Plant(
        "planner_vocabulary_imports_up",
        "reconcilers/model.py",
        "from reconcilers import vpn",
        "The planner's modules point down",
    ),
    Plant(
        "ledger_imports_telemetry",
        "orchestrator/state/ledger.py",
        "from orchestrator.state.telemetry import Telemetry",
        "The state's parts are independent",
    ),
    Plant(
        "demand_imports_ledger",
        "orchestrator/state/demand.py",
        "from orchestrator.state import ledger",
        "The state's parts are independent",
    ),
    Plant(
        "telemetry_imports_store",
        "orchestrator/state/telemetry.py",
        "from orchestrator.state.store import StateStore",
        "The state's parts do not reach back into the store",
    ),
]


def imported(line: str, root: Path) -> str:
    """The module `line` imports as lint-imports names it: `from a import b` is `a.b` where b is
    a module of a, else `a`."""
    words = line.split()
    if words[0] == "import":
        return words[1]
    package, name = words[1], words[3]
    base = root.joinpath(*package.split("."))
    return f"{package}.{name}" if (base / f"{name}.py").exists() or (base / name).is_dir() else package


def section(report: str, contract: str) -> str:
    """What the report says under `contract`'s own heading (up to the next contract's)."""
    heading = f"\n{contract}\n{'-' * len(contract)}\n"
    assert heading in report, report
    rest = report.split(heading, 1)[1]
    ends = [rest.index(f"\n{p.contract}\n-") for p in PLANTS if f"\n{p.contract}\n-" in rest]
    return rest[: min(ends)] if ends else rest


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int], str]:
    """A copy of the sources with every row's import planted: (its root, each row's line
    number, lint-imports' report)."""
    root = tmp_path_factory.mktemp("planted")
    for package in ("orchestrator", "reconcilers"):
        shutil.copytree(REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", root)
    numbers = {}
    for plant in PLANTS:
        path = root / plant.module
        with path.open("a", encoding="utf-8") as source:
            source.write(f"\n{plant.line}  # noqa\n")
        numbers[plant.id] = len(path.read_text(encoding="utf-8").splitlines())
    done = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
        timeout=60,
        check=False,
    )
    assert done.returncode != 0, done.stdout
    return root, numbers, done.stdout


@pytest.mark.parametrize("plant", PLANTS, ids=[p.id for p in PLANTS])
def test_a_planted_bad_import_breaks_its_contract(
    planted: tuple[Path, dict[str, int], str], plant: Plant
) -> None:
    root, numbers, report = planted
    assert f"{plant.contract} BROKEN" in report, report
    importer = plant.module.removesuffix(".py").replace("/", ".")
    edge = f"{importer} -> {imported(plant.line, root)} (l.{numbers[plant.id]})"
    assert edge in section(report, plant.contract), report
