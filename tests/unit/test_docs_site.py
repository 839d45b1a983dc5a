"""The documentation site's strict build (`make docs`, part of `make check`) would catch what it
exists for: each row plants one defect in a copy of docs/ and mkdocs.yml and expects
`mkdocs build --strict` to fail naming it. Also: `make check` still runs that build, strictly.

(`mkdocs build --strict --quiet` exits 0 whatever the warnings, so the Makefile must not pass
`-q`: checked below.)
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _build(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(root / "site")],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("page", "content", "warning"),
    [
        ("http-api.md", "\n[a page that does not exist](no-such-page.md)\n", "no-such-page.md"),
        ("index.md", "\n[an anchor that does not exist](http-api.md#no-such-anchor)\n", "no-such-anchor"),
        ("not-in-the-nav.md", "# A page missing from the navigation\n", "not-in-the-nav.md"),
    ],
    ids=["broken_link", "broken_anchor", "page_missing_from_nav"],
)
def test_a_planted_defect_fails_the_strict_build(
    tmp_path: Path, page: str, content: str, warning: str
) -> None:
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    shutil.copy(REPO / "mkdocs.yml", tmp_path)
    with (tmp_path / "docs" / page).open("a", encoding="utf-8") as doc:
        doc.write(content)
    done = _build(tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "in strict mode" in output, output
    warnings = output[output.index("WARNING") :] if "WARNING" in output else ""
    assert warning in warnings, output


def _recipe(makefile: str, target: str) -> tuple[list[str], list[str]]:
    """A target's prerequisites and its recipe lines."""
    match = re.search(rf"^{target}:([^\n]*)\n((?:\t[^\n]*\n)*)", makefile, flags=re.M)
    assert match, f"Makefile: no target {target}"
    return match[1].split(), [line.strip() for line in match[2].splitlines()]


def test_make_check_builds_the_docs_strictly() -> None:
    makefile = (REPO / "Makefile").read_text()
    check, check_recipe = _recipe(makefile, "check")
    made = [line.split() for line in check_recipe if line.startswith("$(MAKE)")]  # its parts, side by side
    assert "docs" in check or any("docs" in words for words in made), "make check must run the docs build"
    _, recipe = _recipe(makefile, "docs")
    build = [line for line in recipe if "mkdocs build" in line]
    assert build, recipe
    assert all("--strict" in line for line in build), build
    assert not any(re.search(r"\s(-q|--quiet)\b", line) for line in build), (
        "mkdocs --quiet turns strict mode off in practice: its warnings are not counted"
    )


def test_what_make_check_leaves_out_make_test_runs() -> None:
    """The fuzz-marked tests are out of `make check` (`fast`) for its time, and in `make test`."""
    makefile = (REPO / "Makefile").read_text()
    _, fast = _recipe(makefile, "fast")
    assert any("-m 'not fuzz'" in line for line in fast), fast
    _, fuzz = _recipe(makefile, "fuzz")
    assert any("-m fuzz" in line and "tests/http" in line for line in fuzz), fuzz
    suites, _ = _recipe(makefile, "suites")
    assert "fuzz" in suites, suites
    assert "@pytest.mark.fuzz" in (REPO / "tests/http/test_schema_fuzz.py").read_text()


MAKE_TEST_PARTS = [
    # (target, words its recipe (or, with "<-", its prerequisites) must hold), as development.md says
    ("test", ["IN_TEST=1 suites", "$(MAKE) alone"]),
    ("suites", ["<-integration", "<-sidecar", "<-realvpn", "<-faults", "<-standins", "<-check", "<-fuzz"]),
    ("check", ["lint", "format-check", "types", "imports", "docs", "fast"]),
    ("fast", ["tests/unit tests/http tests/workers"]),
    ("integration", ["-n 2 --dist loadfile tests/integration -m 'not alone'"]),
    ("faults", ["tests/faults -m 'not soak'"]),
    ("realvpn", ["tests/realvpn"]),
    ("sidecar", ["tests/sidecar"]),
    ("alone", ["tests/integration -m alone"]),
    ("standins", ["testbed/engine/verify.sh", "testbed/gluetun/verify.sh"]),
    ("lint", ["ruff check"]),
    ("format-check", ["ruff format --check"]),
    ("types", ["mypy"]),
    ("imports", ["lint-imports"]),
]


@pytest.mark.parametrize(("target", "parts"), MAKE_TEST_PARTS, ids=[row[0] for row in MAKE_TEST_PARTS])
def test_make_test_and_make_check_run_what_the_docs_say(target: str, parts: list[str]) -> None:
    prerequisites, recipe = _recipe((REPO / "Makefile").read_text(), target)
    commands = "\n".join(recipe)
    for part in parts:
        if part.startswith("<-"):
            assert part[2:] in prerequisites, (target, prerequisites)
        else:
            assert part in commands, (target, recipe)
