"""CPU of one run of the image's health check: the bash script against the Python one it
replaced (the code of `--before`, run with this venv's interpreter and packages), side by side
in one run, each `--runs` times against a local HTTP server answering `/health` with 200. CPU
is the children's user + system time (getrusage), the interpreter's start-up included. Run:
`.venv/bin/python bench/healthcheck_cost.py --runs 40`. Writes bench/results/healthcheck_cost.json.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, write_result
from testkit.harness import REPO


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def cpu_ms_per_run(command: list[str], env: dict[str, str], runs: int) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(runs):
        subprocess.run(command, env=env, capture_output=True, check=False, timeout=30)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return round(1000 * used / runs, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--before", default="0dfd87a")
    args = parser.parse_args()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    port = httpd.server_address[1]
    work = Path(tempfile.mkdtemp(prefix="bench-hc-"))
    old = work / "healthcheck.py"
    old.write_bytes(
        subprocess.run(
            ["git", "show", f"{args.before}:docker/healthcheck.py"], cwd=REPO, capture_output=True, check=True
        ).stdout
    )
    config = work / "orchestrator.yaml"
    config.write_text(f"api: {{host: 127.0.0.1, port: {port}}}\n")
    address = work / "api"
    address.write_text(f"127.0.0.1 {port}\n")
    # the old script finds the config through PID 1's --config: here it reads the default path,
    # so it is pointed at this file by a wrapper that patches only that constant
    wrapper = work / "old_check.py"
    wrapper.write_text(
        "import runpy, sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        f"mod = runpy.run_path({str(old)!r}, run_name='healthcheck')\n"
        f"mod['DEFAULT_CONFIG'] = {str(config)!r}\n"
        "mod['main'].__globals__['DEFAULT_CONFIG'] = mod['DEFAULT_CONFIG']\n"
        "sys.exit(mod['main']())\n"
    )
    env = {**os.environ, "ORCHESTRATOR_API_FILE": str(address)}
    ok_new = subprocess.run(
        ["bash", str(REPO / "docker" / "healthcheck.sh")], env=env, check=False
    ).returncode
    ok_old = subprocess.run([sys.executable, str(wrapper)], env=env, check=False).returncode
    report = {
        "what": "CPU of one run of the image's health check (ms, user + system, start-up included), "
        f"against a local 200 /health; before = docker/healthcheck.py of {args.before} with this "
        "venv's python, now = docker/healthcheck.sh with the host's bash, same run",
        "command": f".venv/bin/python bench/healthcheck_cost.py --runs {args.runs}",
        "machine": machine(),
        "exit_codes": {"before": ok_old, "now": ok_new},
        "before_cpu_ms_per_run": cpu_ms_per_run([sys.executable, str(wrapper)], env, args.runs),
        "now_cpu_ms_per_run": cpu_ms_per_run(
            ["bash", str(REPO / "docker" / "healthcheck.sh")], env, args.runs
        ),
    }
    httpd.shutdown()
    httpd.server_close()
    write_result("healthcheck_cost", report)


if __name__ == "__main__":
    main()
