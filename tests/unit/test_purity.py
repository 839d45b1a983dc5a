"""Planning stays pure (design.md section 2): `reconcilers/` does no I/O, logging, asyncio or clock
reads, and imports nothing from the daemon or third parties.

Every module is parsed with `ast` (never imported) and may import only `reconcilers` itself and
an allow-list of side-effect-free standard-library modules; calls to `print`, `open` and the
dynamic-import/eval builtins are refused. A failure names file, line and the offending import.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "reconcilers"

PURE_STDLIB = frozenset(
    {
        "__future__",
        "abc",
        "bisect",
        "collections",
        "copy",
        "dataclasses",
        "enum",
        "functools",
        "hashlib",
        "heapq",
        "itertools",
        "json",
        "math",
        "numbers",
        "operator",
        "re",
        "statistics",
        "string",
        "types",
        "typing",
    }
)
FORBIDDEN = {
    "orchestrator": "the daemon; planning must not depend on it",
    "aiodocker": "Docker I/O belongs to the effect executor",
    "aiohttp": "HTTP I/O belongs to the daemon",
    "httpx": "network I/O",
    "requests": "network I/O",
    "asyncio": "planning is synchronous",
    "structlog": "the planner returns data and never logs",
    "logging": "the planner returns data and never logs",
    "socket": "network I/O",
    "subprocess": "process I/O",
    "os": "environment and file-system I/O",
    "pathlib": "file-system I/O",
    "time": "read the clock from the `now` argument instead",
    "random": "plans must be deterministic",
    "threading": "planning is single-threaded and synchronous",
}
FORBIDDEN_CALLS = {
    "print": "the planner returns data and never prints",
    "open": "file I/O",
    "input": "console I/O",
    "breakpoint": "debugger",
    "__import__": "dynamic import dodges this check",
    "exec": "dynamic code dodges this check",
    "eval": "dynamic code dodges this check",
}


def _import_problem(name: str) -> str | None:
    root = name.split(".", maxsplit=1)[0]
    if root == "reconcilers":
        return None
    if root in FORBIDDEN:
        return FORBIDDEN[root]
    if root not in PURE_STDLIB:
        return "not reconcilers nor a pure standard-library module"
    return None


def violations(source: str, filename: str) -> list[str]:
    """`file:line: what` for every impure import or call in `source`."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level > 1:
                found.append(f"{filename}:{node.lineno}: relative import leaves the package")
            elif node.level == 0:
                names = [node.module or ""]
        elif (
            isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS
        ):
            found.append(
                f"{filename}:{node.lineno}: calls {node.func.id}() ({FORBIDDEN_CALLS[node.func.id]})"
            )
        for name in names:
            problem = _import_problem(name)
            if problem:
                found.append(f"{filename}:{getattr(node, 'lineno', 0)}: imports {name!r} ({problem})")
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_the_package_has_modules_to_check() -> None:
    assert {"model.py", "pool.py", "health.py", "ports.py", "placement.py"} <= {p.name for p in MODULES}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_reconcilers_module_is_pure(path: Path) -> None:
    rel = str(path.relative_to(ROOT))
    found = violations(path.read_text(encoding="utf-8"), rel)
    assert not found, "reconcilers/ must stay pure:\n  " + "\n  ".join(found)


def test_allow_list_is_standard_library_and_disjoint_from_forbidden() -> None:
    assert sys.stdlib_module_names >= PURE_STDLIB
    assert not PURE_STDLIB & FORBIDDEN.keys()


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("import os", "x.py:1: imports 'os'"),
        ("import os.path", "imports 'os.path'"),
        ("import time as clock", "imports 'time'"),
        ("from asyncio import sleep", "imports 'asyncio'"),
        ("from orchestrator.config import Config", "imports 'orchestrator.config'"),
        ("import aiodocker", "imports 'aiodocker'"),
        ("\n\nimport structlog", "x.py:3: imports 'structlog'"),
        ("import yaml", "not reconcilers nor a pure standard-library module"),
        ("import importlib", "imports 'importlib'"),
        ("def f():\n    import random", "x.py:2: imports 'random'"),
        ("print('hello')", "x.py:1: calls print()"),
        ("with open('f') as fh:\n    pass", "calls open()"),
        ("m = __import__('os')", "calls __import__()"),
        ("from .. import orchestrator", "relative import leaves the package"),
    ],
)
def test_checker_refuses(source: str, says: str) -> None:
    found = violations(source, "x.py")
    assert len(found) == 1 and says in found[0], found


@pytest.mark.parametrize(
    "source",
    [
        "from __future__ import annotations",
        "from collections.abc import Mapping",
        "import hashlib, json",
        "from reconcilers.model import Plan",
        "import reconcilers.ports",
        "from . import ports",
        "logger.print('x')\nstream.open()",
    ],
)
def test_checker_allows(source: str) -> None:
    assert violations(source, "x.py") == []
