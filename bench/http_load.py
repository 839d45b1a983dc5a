"""HTTP API under load: requests per second and p99 latency of `GET /engines` with 20 and 50
engines (wrk, from Debian's packages), each side by side with a bare aiohttp handler serving the
same bytes in the same run (the ceiling of the HTTP server itself: on a shared machine only the
ratio means something); `GET /orchestrator/status`, and how long `POST /provision/acestream`
takes to answer (a free engine: 200; none free: 503 at once), with the first size.

Run: `make bench` (with the other benchmarks; it installs wrk when missing) or
`.venv/bin/python bench/http_load.py [--sizes 20 50]`. Writes bench/results/http_load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiohttp import web

from bench.common import bench_daemon, cpu_seconds, machine, stop_daemon, summary, write_result
from testkit.harness import (
    Daemon,
    free_port,
    http_json,
    wait_for,
)

UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, seconds: int, connections: int, server_pid: int | None = None) -> dict[str, Any]:
    """One wrk run; with `server_pid`, also the server's CPU time per request (user and system,
    from /proc): steadier than requests a second when other processes share the cores."""
    cpu_before = cpu_seconds(server_pid) if server_pid else 0.0
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    latency = {}
    for pct in ("50", "99"):
        value, unit = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        latency[f"p{pct}_ms"] = round(float(value) * UNIT_MS[unit], 3)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    served = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    cpu = (
        {"cpu_us_per_request": round((cpu_seconds(server_pid) - cpu_before) / served * 1e6, 1)}
        if server_pid
        else {}
    )
    return {
        "requests_per_s": rps,
        **cpu,
        **latency,
        "non_2xx": int(errors.group(1)) if errors else 0,
        "connections": connections,
        "seconds": seconds,
    }


def serve_bare(port: int, body: bytes, content_type: str) -> None:
    """The bare handler: one route returning `body` as it is, served like the daemon serves its
    API (AppRunner, no access log), in a process of its own."""

    async def handler(_: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def serve() -> None:
        app = web.Application()
        app.router.add_get("/engines", handler)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()

    asyncio.run(serve())


def start_bare(body: bytes, content_type: str) -> tuple[multiprocessing.process.BaseProcess, str]:
    port = free_port()
    process = multiprocessing.get_context("spawn").Process(
        target=serve_bare, args=(port, body, content_type), daemon=True
    )
    process.start()
    url = f"http://127.0.0.1:{port}/engines"

    def answers() -> bool | None:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return response.read() == body or None
        except OSError:
            return None

    wait_for("bare handler answering", answers, timeout=20)
    return process, url


def rounds_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "requests_per_s": round(statistics.median(r["requests_per_s"] for r in runs), 1),
        "p99_ms": round(statistics.median(r["p99_ms"] for r in runs), 3),
        "non_2xx": sum(r["non_2xx"] for r in runs),
        **(
            {"cpu_us_per_request": round(statistics.median(r["cpu_us_per_request"] for r in runs), 1)}
            if all("cpu_us_per_request" in r for r in runs)
            else {}
        ),
        "rounds": runs,
    }


def engines_vs_bare(daemon: Daemon, rounds: int, seconds: int, connections: int) -> dict[str, Any]:
    """`GET /engines` of the daemon and of a bare handler serving its body, alternated."""
    with urllib.request.urlopen(daemon.url + "/engines", timeout=10) as response:  # noqa: S310 (loopback)
        body, content_type = response.read(), response.headers["Content-Type"]
    bare_process, bare_url = start_bare(body, content_type)
    runs: dict[str, list[dict[str, Any]]] = {"daemon": [], "bare": []}
    try:
        for _ in range(rounds):
            assert daemon.process is not None
            runs["daemon"].append(wrk(daemon.url + "/engines", seconds, connections, daemon.process.pid))
            runs["bare"].append(wrk(bare_url, seconds, connections, bare_process.pid))
    finally:
        bare_process.terminate()
        bare_process.join(10)
    result = {name: rounds_summary(measured) for name, measured in runs.items()}
    return {
        "body_bytes": len(body),
        "content_type": content_type,
        **result,
        "ratio_daemon_to_bare": round(
            result["daemon"]["requests_per_s"] / result["bare"]["requests_per_s"], 3
        ),
        # the same comparison by the server's CPU per request (bare / daemon: 1.0 is as cheap)
        "cpu_ratio_bare_to_daemon": round(
            result["bare"]["cpu_us_per_request"] / result["daemon"]["cpu_us_per_request"], 3
        ),
    }


def provision_ms(daemon: Daemon, rounds: int) -> list[float]:
    took = []
    for _ in range(rounds):
        began = time.perf_counter()
        status, _ = http_json(daemon.url + "/provision/acestream", "POST", {"labels": {}, "env": {}})
        took.append((time.perf_counter() - began) * 1000)
        assert status in (200, 503), status
    return took


def status_and_provisioning(daemon: Daemon, engines: int, seconds: int, connections: int) -> dict[str, Any]:
    status = wrk(daemon.url + "/orchestrator/status", seconds, connections)
    free = provision_ms(daemon, 50)  # free engines exist: 200 with one of them
    daemon.write_config(engines={"max_replicas": engines})
    for engine in daemon.engines():  # make every engine busy: provisioning must say 503
        http_json(
            daemon.url + "/events/stream_started",
            "POST",
            {
                "engine": {"host": engine["host"], "port": engine["port"]},
                "stream": {"key_type": "content_id", "key": engine["container_id"][:8]},
                "session": {"playback_session_id": "s", "stat_url": "", "command_url": "", "is_live": 1},
            },
        )
    busy = provision_ms(daemon, 50)
    return {
        "get_orchestrator_status": status,
        "provision_with_free_engine_ms": summary(free),
        "provision_all_busy_503_ms": summary(busy),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--rounds", type=int, default=2, help="wrk runs of each side, alternated")
    args = parser.parse_args()
    report: dict[str, Any] = {
        "what": (
            f"wrk -t2 -c{args.connections} -d{args.seconds}s against the daemon's GET /engines with "
            f"{' and '.join(map(str, args.sizes))} engines, alternated {args.rounds} times each with a bare "
            "aiohttp handler returning the same body; status and provisioning with "
            f"{args.sizes[0]} engines"
        ),
        "machine_at_start": machine(),
        "get_engines_by_size": {},
    }
    for size in args.sizes:
        daemon = bench_daemon(
            "http", {"min_replicas": size, "min_free": 0, "max_replicas": size + 1}, log_level="WARNING"
        )
        daemon.write_config()
        try:
            daemon.start()
            daemon.wait_engines(size, timeout=180)
            report["get_engines_by_size"][str(size)] = engines_vs_bare(
                daemon, args.rounds, args.seconds, args.connections
            )
            if size == args.sizes[0]:
                report.update(status_and_provisioning(daemon, size, args.seconds, args.connections))
        finally:
            stop_daemon(daemon)
    report["get_engines"] = report["get_engines_by_size"][str(args.sizes[0])]["daemon"]
    report["machine"] = machine()
    write_result("http_load", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
