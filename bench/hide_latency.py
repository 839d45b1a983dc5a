"""Hide latency in redundant mode: Docker's `health_status: unhealthy` event -> /engines without
the failed VPN's engines; and the way back: `health_status: healthy` -> all engines listed.

Two Gluetun stand-ins, four engines (2/2). For each of N flips of VPN A, a client polls
`GET /engines` back to back over keep-alive while `docker events` reports the health change;
the hide latency is the time from the event's own `timeNano` to the first answer that no longer
lists A's engines. Run: `make bench` (or `.venv/bin/python bench/hide_latency.py --flips 20`).
Writes bench/results/hide_latency.json.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import EventWatch, bench_daemon, machine, stop_daemon, summary, write_result
from testkit.harness import (
    Daemon,
    docker,
    run_gluetun,
    set_vpn_health,
    wait_vpn_health,
)


async def poll_until(session: aiohttp.ClientSession, url: str, done: Any) -> int:
    """Poll back to back; return time.time_ns() when the answer satisfies `done`."""
    while True:
        async with session.get(url) as resp:
            body = await resp.json()
        received = time.time_ns()
        if done(body):
            return received


async def measure(daemon: Daemon, a: str, flips: int) -> dict[str, Any]:
    hide_ms: list[float] = []
    back_ms: list[float] = []
    watch = EventWatch(a, "health_status")
    url = daemon.url + "/engines"

    def without_a(body: list[dict[str, Any]]) -> bool:
        return not any(e["vpn_container"] == a for e in body)

    def with_a(body: list[dict[str, Any]]) -> bool:
        return sum(e["vpn_container"] == a for e in body) == 2

    try:
        async with aiohttp.ClientSession() as session:
            await poll_until(session, url, with_a)
            for _ in range(flips):
                set_vpn_health(a, False)
                event_task = asyncio.create_task(watch.next("unhealthy"))
                seen = await poll_until(session, url, without_a)
                hide_ms.append((seen - await event_task) / 1e6)
                set_vpn_health(a, True)
                event_task = asyncio.create_task(watch.next("healthy"))
                seen = await poll_until(session, url, with_a)
                back_ms.append((seen - await event_task) / 1e6)
    finally:
        watch.close()
    return {"hide_ms": hide_ms, "back_ms": back_ms}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--flips", type=int, default=20)
    args = parser.parse_args()
    suffix = uuid.uuid4().hex[:6]
    a, b = f"bench-gluetun-a-{suffix}", f"bench-gluetun-b-{suffix}"
    daemon = bench_daemon(
        "hide",
        {"min_replicas": 4, "min_free": 0, "max_replicas": 4},
        {"mode": "redundant", "containers": [a, b], "unhealthy_restart_timeout_s": 600},
    )
    try:
        for port, name in enumerate((a, b), start=40001):
            run_gluetun(name, forwarded_port=port)
        wait_vpn_health(a, "healthy")
        wait_vpn_health(b, "healthy")
        daemon.write_config()
        daemon.start()
        daemon.wait_engines(4, timeout=60)
        result = asyncio.run(measure(daemon, a, args.flips))
    finally:
        docker("rm", "-f", a, b, check=False)
        stop_daemon(daemon)
    report = {
        "what": "health_status timeNano -> first GET /engines reflecting it (redundant, 2x2 engines)",
        "flips": args.flips,
        "hide_ms": summary(result["hide_ms"]),
        "recover_ms": summary(result["back_ms"]),
        "raw": result,
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    write_result("hide_latency", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
