"""How long `make test` takes from a clean clone: the figure behind "make test in 15 minutes".

Clones this repository's HEAD into a temporary folder (a clean clone: no virtualenv, no site/, no
caches; the Docker engine, the Debian packages and the images already on the machine are used as
they are: on a fresh machine add their install and build), runs `make test` there with
`TEST_JOBS` jobs at a time, and records the wall time, whether it passed, each suite's own
summary line, and the machine's load. `--jobs 1` runs the same jobs one at a time, for a
side-by-side figure. Run: `.venv/bin/python bench/make_test.py [--jobs 3]`. Writes
bench/results/make_test.json (`--out` another name); the whole output goes to a log in the
temporary folder, named in the result.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, write_result

REPO = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(r"^(?:=+ )?(\d+ (?:passed|failed).*?) in ([\d.]+)s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=3, help="TEST_JOBS: make's jobs at a time")
    parser.add_argument("--out", default="make_test", help="result name under bench/results/")
    args = parser.parse_args()
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="make-test-") as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        subprocess.run(["git", "-C", str(clone), "checkout", "-q", commit], check=True)
        began = time.monotonic()
        done = subprocess.run(
            ["make", "test", f"TEST_JOBS={args.jobs}"], cwd=clone, capture_output=True, text=True, check=False
        )
        wall = time.monotonic() - began
    output = done.stdout + done.stderr
    log = Path(tempfile.gettempdir()) / f"make-test-{commit}-j{args.jobs}.log"
    log.write_text(output)
    suites = [f"{m.group(1)} in {m.group(2)} s" for m in map(SUMMARY.match, output.splitlines()) if m]
    write_result(
        args.out,
        {
            "what": "make test from a clean clone of HEAD, the machine's Docker engine, packages and "
            "images as they were (a fresh machine adds their install and build)",
            "command": f".venv/bin/python bench/make_test.py --jobs {args.jobs}",
            "commit": commit,
            "jobs": args.jobs,
            "passed": done.returncode == 0,
            "wall_s": round(wall, 1),
            "suites": suites,
            "machine": machine(),
            "log": str(log),
            "tail": output.splitlines()[-15:] if done.returncode else [],
        },
    )
    return 0 if done.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
