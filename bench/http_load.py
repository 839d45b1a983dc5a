"""HTTP API under load: requests per second and p99 latency of `GET /engines` and
`GET /orchestrator/status` with 20 engines (wrk, from Debian's packages), and how long
`POST /provision/acestream` takes to answer (a free engine: 200; none free: 503 at once).

Run: `make bench-http` (installs wrk when missing) or `.venv/bin/python bench/http_load.py`.
Writes bench/results/http_load.json.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import bench_daemon, machine, stop_daemon, summary, write_result
from testkit.harness import (
    Daemon,
    http_json,
)

ENGINES = 20
UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, seconds: int, connections: int) -> dict[str, Any]:
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
    return {
        "requests_per_s": rps,
        **latency,
        "non_2xx": int(errors.group(1)) if errors else 0,
        "connections": connections,
        "seconds": seconds,
    }


def provision_ms(daemon: Daemon, rounds: int) -> list[float]:
    took = []
    for _ in range(rounds):
        began = time.perf_counter()
        status, _ = http_json(daemon.url + "/provision/acestream", "POST", {"labels": {}, "env": {}})
        took.append((time.perf_counter() - began) * 1000)
        assert status in (200, 503), status
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=20)
    args = parser.parse_args()
    daemon = bench_daemon(
        "http", {"min_replicas": ENGINES, "min_free": 0, "max_replicas": ENGINES + 1}, log_level="WARNING"
    )
    daemon.write_config()
    try:
        daemon.start()
        daemon.wait_engines(ENGINES, timeout=120)
        engines = wrk(daemon.url + "/engines", args.seconds, args.connections)
        status = wrk(daemon.url + "/orchestrator/status", args.seconds, args.connections)
        free = provision_ms(daemon, 50)  # free engines exist: 200 with one of them
        daemon.write_config(engines={"max_replicas": ENGINES})
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
    finally:
        stop_daemon(daemon)
    write_result(
        "http_load",
        {
            "what": (
                f"wrk -t2 -c{args.connections} -d{args.seconds}s against the daemon with {ENGINES} engines"
            ),
            "get_engines": engines,
            "get_orchestrator_status": status,
            "provision_with_free_engine_ms": summary(free),
            "provision_all_busy_503_ms": summary(busy),
            "machine": machine(),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
