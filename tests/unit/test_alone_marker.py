"""A test that stops or restarts the Docker engine is marked `alone`.

`make test` runs the Docker suites side by side; a restarted dockerd stops every container on
it, the other suites' too. So such a test carries `@pytest.mark.alone`, which `make integration`
leaves out and `make alone` runs by itself afterwards. This finds every test function that calls
`scripts/ensure-docker.sh` with `restart` or `stop` (the only way the suites touch the engine's
process) and holds it to the marker.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENGINE_SCRIPT = "ensure-docker.sh"
ENGINE_STOPPING = {"restart", "stop"}


def _strings(node: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def _marked_alone(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    for decorator in function.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Attribute) and target.attr == "alone":
            return True
    return False


def unmarked(root: Path) -> list[str]:
    """`path::test` of every test that stops or restarts the engine without the marker."""
    found = []
    for path in sorted((root / "tests").rglob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or not node.name.startswith(
                "test"
            ):
                continue
            said = _strings(node)
            stops_engine = any(s.endswith(ENGINE_SCRIPT) for s in said) and bool(said & ENGINE_STOPPING)
            if stops_engine and not _marked_alone(node):
                found.append(f"{path.relative_to(root)}::{node.name}")
    return found


def test_every_test_that_stops_the_engine_runs_alone() -> None:
    assert unmarked(REPO) == []


def test_the_repository_has_such_a_test_and_it_is_found() -> None:
    """The check has something to check: the dockerd restart test exists and is marked."""
    text = (REPO / "tests/integration/test_pool.py").read_text(encoding="utf-8")
    assert "def test_survives_dockerd_restart" in text
    assert "@pytest.mark.alone" in text.split("def test_survives_dockerd_restart")[0].rsplit("\n\n\n", 1)[-1]


RESTARTS = 'subprocess.run(["bash", "scripts/ensure-docker.sh", "restart"])'
STOPS = RESTARTS.replace("restart", "stop")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (f"def test_x():\n    {RESTARTS}\n", ["tests/test_planted.py::test_x"]),
        (f"import pytest\n@pytest.mark.alone\ndef test_x():\n    {RESTARTS}\n", []),
        (
            f"async def test_x():\n    {RESTARTS.replace('restart', 'stop')}\n",
            ["tests/test_planted.py::test_x"],
        ),
        ('def test_x():\n    subprocess.run(["bash", "scripts/ensure-docker.sh"])\n', []),
        (f"def helper():\n    {RESTARTS}\n", []),
    ],
    ids=["restart_unmarked", "restart_marked", "stop_unmarked_async", "start_only", "not_a_test"],
)
def test_the_check_on_planted_tests(tmp_path: Path, source: str, expected: list[str]) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests/test_planted.py").write_text(source, encoding="utf-8")
    assert unmarked(tmp_path) == expected
