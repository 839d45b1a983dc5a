"""Nothing imports a test module, and the daemon imports nothing of the tests, the test kit or
the benchmarks.

A helper defined in a `test_*.py` file and imported from elsewhere (a benchmark, another suite)
is shared code nobody sees as such: it changes with the tests around it, and pytest may collect its
tests twice. Shared helpers live in the test kit (testkit/), which bench/ and tests/ import and
which itself imports no test module. import-linter sees only `orchestrator` and `reconcilers`
(bench/ and tests/ are not among its root packages, and a forbidden contract cannot say "a module
whose last component starts with test_"), so this walks the sources' syntax trees instead: every
`import` and `from ... import` (relative ones resolved, `from pkg import test_x` included) in
orchestrator/, reconcilers/, bench/, tests/ and testkit/.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TREES = ("orchestrator", "reconcilers", "bench", "tests", "testkit")
SHIPPED = ("orchestrator", "reconcilers")  # the daemon: imports nothing of these
NOT_SHIPPED = {"tests", "testkit", "bench"}


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(root: Path, path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every module `path` imports, or may import: for `from a import b`
    both `a` and `a.b` (b may be a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_name(root, path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def is_test_module(name: str, root: Path) -> bool:
    """A module whose last component starts with `test_` and which exists as a file (so that
    `from x import test_thing`, a function, does not count)."""
    last = name.rsplit(".", 1)[-1]
    if not last.startswith("test_"):
        return False
    path = root.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def offenders(root: Path, trees: tuple[str, ...] = TREES) -> list[str]:
    out = []
    for tree in trees:
        for path in sorted((root / tree).rglob("*.py")):
            for line, name in imported_modules(root, path):
                if is_test_module(name, root):
                    out.append(f"{path.relative_to(root)}:{line} imports {name}")
    return out


def shipped_offenders(root: Path) -> list[str]:
    out = []
    for tree in SHIPPED:
        for path in sorted((root / tree).rglob("*.py")):
            lines = sorted(
                {line for line, name in imported_modules(root, path) if name.split(".")[0] in NOT_SHIPPED}
            )
            out += [
                f"{path.relative_to(root)}:{line} imports the tests, the test kit or the benchmarks"
                for line in lines
            ]
    return out


def test_nothing_imports_a_test_module() -> None:
    found = offenders(REPO)
    assert not found, "\n".join(found)


def test_the_daemon_imports_nothing_of_the_tests_the_kit_or_the_benchmarks() -> None:
    found = shipped_offenders(REPO)
    assert not found, "\n".join(found)


# -- the checker itself, on planted trees ----------------------------------------------------------


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


BASE = {
    "tests/__init__.py": "",
    "tests/suite/__init__.py": "",
    "tests/suite/test_streams.py": "def helper() -> None: ...\n",
    "tests/suite/harness.py": "def helper() -> None: ...\n",
    "bench/__init__.py": "",
    "testkit/__init__.py": "",
    "testkit/harness.py": "def helper() -> None: ...\n",
    "orchestrator/__init__.py": "",
}


@pytest.mark.parametrize(
    ("name", "line", "expected"),
    [
        ("bench/run.py", "from tests.suite.test_streams import helper", ["tests.suite.test_streams"]),
        ("bench/run.py", "import tests.suite.test_streams", ["tests.suite.test_streams"]),
        ("bench/run.py", "from tests.suite import test_streams", ["tests.suite.test_streams"]),
        ("tests/suite/rounds.py", "from .test_streams import helper", ["tests.suite.test_streams"]),
        ("tests/other.py", "from .suite import test_streams", ["tests.suite.test_streams"]),
        ("bench/run.py", "from tests.suite.harness import helper", []),
        ("bench/run.py", "from tests.suite.harness import test_helper", []),  # a name, not a module
        ("orchestrator/x.py", "from tests.suite.test_streams import helper", ["tests.suite.test_streams"]),
        ("testkit/rounds.py", "from tests.suite.test_streams import helper", ["tests.suite.test_streams"]),
        ("testkit/rounds.py", "from tests.suite import test_streams", ["tests.suite.test_streams"]),
        ("bench/run.py", "from testkit.harness import helper", []),
        ("tests/suite/test_more.py", "from testkit import harness", []),
    ],
    ids=[
        "from_test_module",
        "import_test_module",
        "test_module_from_its_package",
        "relative",
        "relative_package",
        "kit_module_is_fine",
        "test_named_function_is_fine",
        "daemon_imports_test_module",
        "kit_imports_test_module",
        "kit_imports_test_module_from_its_package",
        "bench_imports_the_kit",
        "suite_imports_the_kit",
    ],
)
def test_the_checker_finds_a_planted_import(
    tmp_path: Path, name: str, line: str, expected: list[str]
) -> None:
    root = _tree(tmp_path, {**BASE, name: line + "\n"})
    found = offenders(root)
    assert [entry.rsplit(" imports ", 1)[1] for entry in found] == expected, found
    assert all(entry.startswith(name) for entry in found), found


@pytest.mark.parametrize(
    "line",
    [
        "from tests.suite.harness import helper",
        "from testkit.harness import helper",
        "import testkit",
        "from bench import run",
    ],
    ids=["tests", "the_kit", "the_kit_package", "bench"],
)
def test_the_checker_finds_the_daemon_importing_what_is_not_shipped(tmp_path: Path, line: str) -> None:
    root = _tree(tmp_path, {**BASE, "orchestrator/x.py": line + "\n"})
    assert shipped_offenders(root) == [
        "orchestrator/x.py:1 imports the tests, the test kit or the benchmarks"
    ]


def test_the_checker_lets_the_daemon_import_itself(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"orchestrator/x.py": "from orchestrator import y\n"})
    assert shipped_offenders(root) == []
