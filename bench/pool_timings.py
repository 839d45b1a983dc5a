"""Pool figures without a VPN: start-up to 5 and to 50 ready engines from cold, a YAML edit to
the new count ready, and the CPU the idle daemon uses over a minute with 10 engines (no polling:
near zero). Beside the 50-engine start, the same run times Docker's own floor: the same 50
stand-in engines started with `docker run -d`, 16 at a time, until each answers its version
(what no daemon can beat on this machine).

Run: `.venv/bin/python bench/pool_timings.py [--idle-seconds 60]`. Writes
bench/results/pool_timings.json.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import bench_daemon, cpu_seconds, machine, stop_daemon, summary, write_result
from testkit.harness import (
    ENGINE_IMAGE,
    Daemon,
    docker,
    label_args,
    remove_test_containers,
    wait_for,
)


def new_daemon(min_replicas: int) -> Daemon:
    return bench_daemon(
        "pool", {"min_replicas": min_replicas, "min_free": 0, "max_replicas": max(20, min_replicas)}
    )


def startup_to_ready(n: int) -> float:
    """From the daemon process's start, no engine container existing, to `GET /engines` listing
    `n` ready engines."""
    daemon = new_daemon(n)
    daemon.write_config()
    try:
        began = time.monotonic()
        daemon.start()
        daemon.wait_engines(n, timeout=max(60, 3 * n))
        return time.monotonic() - began
    finally:
        stop_daemon(daemon)


def docker_floor(n: int, at_once: int = 16) -> float:
    """`n` stand-in engines started by `docker run -d`, `at_once` at a time, until each answers
    `get_version` on its bridge address: Docker's own time for what the daemon does."""
    run = uuid.uuid4().hex[:8]
    engine = ["-e", "HTTP_PORT=6878", "-e", "BIND_ALL=true", ENGINE_IMAGE]
    began = time.monotonic()
    try:
        with ThreadPoolExecutor(at_once) as pool:
            ids = list(
                pool.map(
                    lambda i: docker("run", "-d", *label_args(), "--name", f"floor-{run}-{i}", *engine),
                    range(n),
                )
            )
        ips = docker(
            "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", *ids
        ).split()
        for ip in ips:
            wait_for(f"{ip} answering", lambda ip=ip: answers(ip), timeout=60, interval=0.05)
        return time.monotonic() - began
    finally:
        remove_test_containers()


def answers(ip: str) -> bool | None:
    url = f"http://{ip}:6878/webui/api/service?method=get_version"
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200 or None
    except OSError:
        return None


def edit_to_ready(before: int, after: int) -> float:
    daemon = new_daemon(before)
    daemon.write_config()
    try:
        daemon.start()
        daemon.wait_engines(before, timeout=60)
        began = time.monotonic()
        daemon.write_config(engines={"min_replicas": after})
        daemon.wait_engines(after, timeout=60)
        return time.monotonic() - began
    finally:
        stop_daemon(daemon)


def idle_cpu(engines: int, seconds: float) -> dict[str, float]:
    daemon = new_daemon(engines)
    daemon.write_config()
    try:
        daemon.start()
        daemon.wait_engines(engines, timeout=60)
        time.sleep(2)
        assert daemon.process is not None
        used_before = cpu_seconds(daemon.process.pid)
        time.sleep(seconds)
        used = cpu_seconds(daemon.process.pid) - used_before
        return {
            "seconds": seconds,
            "cpu_seconds": round(used, 3),
            "cpu_percent_of_one_core": round(100 * used / seconds, 3),
        }
    finally:
        stop_daemon(daemon)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--idle-seconds", type=float, default=60)
    args = parser.parse_args()
    remove_test_containers()
    start = [startup_to_ready(5) for _ in range(args.runs)]
    start_50, floor_50 = [], []
    for _ in range(args.runs):  # alternated: the same machine's state for both
        start_50.append(startup_to_ready(50))
        floor_50.append(docker_floor(50))
    up = [edit_to_ready(2, 6) for _ in range(args.runs)]
    down = [edit_to_ready(6, 2) for _ in range(args.runs)]
    report = {
        "startup_to_5_ready_s": summary(start),
        "startup_to_50_ready_s": summary(start_50),
        "docker_run_50_answering_s": summary(floor_50),
        "yaml_edit_2_to_6_ready_s": summary(up),
        "yaml_edit_6_to_2_listed_s": summary(down),
        "idle_cpu_10_engines": idle_cpu(10, args.idle_seconds),
        "machine": machine(),
    }
    write_result("pool_timings", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
