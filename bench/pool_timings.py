"""Pool figures: start-up to 5 and to 50 ready engines from cold, a YAML edit to the new count
ready, and the CPU the idle daemon uses over a minute with 10 engines (no polling: near zero).
Beside each 50-engine start, the same run times Docker's own floor: the same 50 stand-in engines
started with `docker run -d`, 16 at a time, until each answers its version (what no daemon can
beat on this machine). The 50-engine start is timed twice: without a VPN (each engine on
Docker's bridge, a network of its own to set up) and behind two stand-in Gluetuns, 25 engines
in each one's network namespace, as a real deployment runs them (nothing to set up per engine).

Run: `.venv/bin/python bench/pool_timings.py [--idle-seconds 60] [--only-50]`. Writes
bench/results/pool_timings.json (`--only-50`: bench/results/pool_timings_50.json).
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import bench_daemon, cpu_seconds, machine, stop_daemon, stop_pool, summary, write_result
from testkit.harness import (
    ENGINE_IMAGE,
    Daemon,
    docker,
    label_args,
    remove_test_containers,
    run_gluetun,
    wait_for,
    wait_vpn_health,
)

# the stand-in's own program and flags, for engines sharing one network namespace (the image's
# entrypoint has no variable for the API port, which each of them needs its own of)
STANDIN_ENGINE = ["--entrypoint", "/app/start-engine", ENGINE_IMAGE, "--client-console", "--bind-all"]


def new_daemon(min_replicas: int, vpns: list[str] | None = None) -> Daemon:
    return bench_daemon(
        "pool",
        {"min_replicas": min_replicas, "min_free": 0, "max_replicas": max(20, min_replicas)},
        {"mode": "redundant", "containers": vpns} if vpns else None,
    )


def startup_to_ready(n: int, vpns: list[str] | None = None) -> float:
    """From the daemon process's start, no engine container existing, to `GET /engines` listing
    `n` ready engines (behind `vpns`, shared out between them, when given)."""
    daemon = new_daemon(n, vpns)
    daemon.write_config()
    try:
        began = time.monotonic()
        daemon.start()
        daemon.wait_engines(n, timeout=max(60, 3 * n))
        return time.monotonic() - began
    finally:
        if vpns:
            stop_pool(daemon)  # the VPNs stay for the next run
        else:
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


def docker_floor_behind(vpns: list[str], n: int, at_once: int = 16) -> float:
    """`n` stand-in engines started by `docker run -d` in the network namespaces of `vpns` (in
    turn), each on ports of its own, `at_once` at a time, until each answers `get_version` on
    its VPN's address: Docker's own time for what the daemon does behind VPNs."""
    run = uuid.uuid4().hex[:8]

    def start(i: int) -> str:
        ports = [f"--http-port={7000 + i}", f"--api-port={9000 + i}", f"--port={11000 + i}"]
        network = ["--network", f"container:{vpns[i % len(vpns)]}"]
        return docker(
            "run", "-d", *label_args(), "--name", f"floor-{run}-{i}", *network, *STANDIN_ENGINE, *ports
        )

    began = time.monotonic()
    try:
        with ThreadPoolExecutor(at_once) as pool:
            list(pool.map(start, range(n)))
        ips = docker(
            "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", *vpns
        ).split()
        for i in range(n):
            endpoint = (ips[i % len(vpns)], 7000 + i)
            wait_for(f"{endpoint} answering", lambda at=endpoint: answers(*at), timeout=60, interval=0.05)
        return time.monotonic() - began
    finally:
        left = docker("ps", "-aq", "--filter", f"name=floor-{run}-").split()
        if left:
            docker("rm", "-f", *left, check=False)


def answers(ip: str, port: int = 6878) -> bool | None:
    url = f"http://{ip}:{port}/webui/api/service?method=get_version"
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


def fifty_from_cold(runs: int) -> dict[str, Any]:
    """50 engines from cold, each start alternated with Docker's floor (the same machine's state
    for both): without a VPN, then behind two stand-in Gluetuns."""
    start_50, floor_50, behind, floor_behind = [], [], [], []
    for _ in range(runs):
        start_50.append(startup_to_ready(50))
        floor_50.append(docker_floor(50))
    vpns = [f"bench-gluetun-{uuid.uuid4().hex[:6]}" for _ in range(2)]
    try:
        for vpn in vpns:
            run_gluetun(vpn, patient=True)  # a loaded machine's slow exec must not fail it
        for vpn in vpns:
            wait_vpn_health(vpn, "healthy")
        for _ in range(runs):
            behind.append(startup_to_ready(50, vpns))
            floor_behind.append(docker_floor_behind(vpns, 50))
    finally:
        remove_test_containers()
    return {
        "startup_to_50_ready_s": summary(start_50),
        "docker_run_50_answering_s": summary(floor_50),
        "startup_to_50_ready_behind_2_vpns_s": summary(behind),
        "docker_run_50_behind_2_vpns_answering_s": summary(floor_behind),
        "raw_50": {"daemon": start_50, "floor": floor_50, "daemon_vpn": behind, "floor_vpn": floor_behind},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--idle-seconds", type=float, default=60)
    parser.add_argument("--only-50", action="store_true", help="only the 50-engine starts and floors")
    args = parser.parse_args()
    remove_test_containers()
    fifty = fifty_from_cold(args.runs)
    if args.only_50:
        write_result("pool_timings_50", {**fifty, "machine": machine()})
        return 0
    start = [startup_to_ready(5) for _ in range(args.runs)]
    up = [edit_to_ready(2, 6) for _ in range(args.runs)]
    down = [edit_to_ready(6, 2) for _ in range(args.runs)]
    report = {
        "startup_to_5_ready_s": summary(start),
        **fifty,
        "yaml_edit_2_to_6_ready_s": summary(up),
        "yaml_edit_6_to_2_listed_s": summary(down),
        "idle_cpu_10_engines": idle_cpu(10, args.idle_seconds),
        "machine": machine(),
    }
    write_result("pool_timings", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
