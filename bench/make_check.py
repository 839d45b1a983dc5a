"""How long `make check` takes: the figure behind "make check in 30 s".

Clones this repository's HEAD into a temporary folder, installs its virtualenv there (`make
install`, not timed: `make check` assumes it, as `make test` does), then times `make check`
`--runs` times in a row: the first run starts with no cache (mypy's, ruff's, the docs build's,
pytest's), the later ones with the caches the first left, as on a developer's working tree. Each
run's wall time, whether it passed, the tests' own summary line and the machine's load go to
bench/results/make_check.json. Run: `.venv/bin/python bench/make_check.py [--runs 3]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, write_result
from bench.make_test import SUMMARY

REPO = Path(__file__).resolve().parents[1]


def head() -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


def timed_check(clone: Path) -> dict[str, object]:
    began = time.monotonic()
    done = subprocess.run(["make", "check"], cwd=clone, capture_output=True, text=True, check=False)
    wall = time.monotonic() - began
    output = done.stdout + done.stderr
    tests = [f"{m.group(1)} in {m.group(2)} s" for m in map(SUMMARY.match, output.splitlines()) if m]
    return {
        "wall_s": round(wall, 1),
        "passed": done.returncode == 0,
        "tests": tests,
        "load_average": " ".join(f"{v:.2f}" for v in os.getloadavg()),
        "tail": output.splitlines()[-15:] if done.returncode else [],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    commit = head()
    with tempfile.TemporaryDirectory(prefix="make-check-") as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        subprocess.run(["git", "-C", str(clone), "checkout", "-q", commit], check=True)
        subprocess.run(["make", "install"], cwd=clone, capture_output=True, check=True)
        runs = [timed_check(clone) for _ in range(args.runs)]
    warm = [float(r["wall_s"]) for r in runs[1:]]  # type: ignore[arg-type]
    write_result(
        "make_check",
        {
            "what": "make check in a clean clone of HEAD after make install: the first run with no "
            "cache, the others with the caches it left (a working tree's case)",
            "command": f".venv/bin/python bench/make_check.py --runs {args.runs}",
            "commit": commit,
            "passed": all(r["passed"] for r in runs),
            "first_run_s": runs[0]["wall_s"],
            "warm_median_s": round(statistics.median(warm), 1) if warm else None,
            "runs": runs,
            "machine": machine(),
        },
    )
    return 0 if all(r["passed"] for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
