"""Single-VPN recovery figures: how long engines stay unusable after Gluetun restarts.

- restart: `docker restart` of the VPN; from its `start` event (timeNano) to every engine
  listed on /engines again and answering through the VPN.
- recreate: `docker rm -f` + `docker run` under the same name; from the new container's
  `start` event to every (recreated) engine listed and answering.
- reconnect: health off then on; from `health_status: healthy` to every engine listed again
  and answering, each the same run of the same container (a blip of the VPN's health restarts
  no engine: the run's engines must come back as they were, or the round fails).

Run: `.venv/bin/python bench/vpn_recovery.py [--rounds 5]`. Writes bench/results/vpn_recovery.json.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import EventWatch, bench_daemon, machine, stop_daemon, summary, write_result
from testkit.harness import (
    Daemon,
    docker,
    engine_info,
    run_gluetun,
    set_vpn_health,
    wait_for,
    wait_vpn_health,
)

ENGINES = 3
ROUND_TIMEOUT_S = 60.0


def all_back(daemon: Daemon, not_ids: set[str] | None = None) -> bool:
    listed = daemon.engines()
    if len(listed) != ENGINES or {e["container_id"] for e in listed} & (not_ids or set()):
        return False
    return all(
        (engine_info(e["host"], e["port"]) or {}).get("CONTAINER_ID") == e["container_id"] for e in listed
    )


async def timed(watch: EventWatch, suffix: str, trigger: Any, done: Any) -> float:
    event = asyncio.create_task(watch.next(suffix))
    await asyncio.to_thread(trigger)
    # the condition is outside this process (HTTP + Docker), so polling is the measurement
    deadline = time.monotonic() + ROUND_TIMEOUT_S
    while not await asyncio.to_thread(done):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not back {ROUND_TIMEOUT_S:g} s after the trigger")
        await asyncio.sleep(0.005)
    finished = time.time_ns()
    return (finished - await event) / 1e6


async def run(daemon: Daemon, vpn: str, rounds: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"restart_ms": [], "recreate_ms": [], "reconnect_ms": []}
    for _ in range(rounds):
        watch = EventWatch(vpn, "start")
        out["restart_ms"].append(
            await timed(watch, "", lambda: docker("restart", "-t", "1", vpn), lambda: all_back(daemon))
        )
        watch.close()
    for _ in range(rounds):
        old = {e["container_id"] for e in daemon.engines()}
        watch = EventWatch(vpn, "start")

        def recreate() -> None:
            docker("rm", "-f", vpn)
            run_gluetun(vpn)

        out["recreate_ms"].append(await timed(watch, "", recreate, lambda old=old: all_back(daemon, old)))
        watch.close()
    for _ in range(rounds):
        before = {e["container_id"]: e["started_at"] for e in daemon.engines()}
        set_vpn_health(vpn, False)
        wait_for("hidden", lambda: daemon.engines() == [])
        watch = EventWatch(vpn, "health_status")
        out["reconnect_ms"].append(
            await timed(
                watch,
                "healthy",
                lambda: set_vpn_health(vpn, True),
                lambda: all_back(daemon),
            )
        )
        watch.close()
        after = {e["container_id"]: e["started_at"] for e in daemon.engines()}
        assert after == before, f"a health blip restarted engines: {before} -> {after}"
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    vpn = f"bench-gluetun-{uuid.uuid4().hex[:6]}"
    daemon = bench_daemon(
        "vpn",
        {"min_replicas": ENGINES, "min_free": 0},
        {"mode": "single", "containers": [vpn], "unhealthy_restart_timeout_s": 600},
    )
    try:
        run_gluetun(vpn)
        wait_vpn_health(vpn, "healthy")
        daemon.write_config()
        daemon.start()
        daemon.wait_engines(ENGINES, timeout=60)
        result = asyncio.run(run(daemon, vpn, args.rounds))
    finally:
        docker("rm", "-f", vpn, check=False)
        stop_daemon(daemon)
    write_result(
        "vpn_recovery",
        {
            "what": f"single VPN, {ENGINES} engines; event timeNano -> all engines listed and answering",
            "after_docker_restart_ms": summary(result["restart_ms"]),
            "after_recreate_ms": summary(result["recreate_ms"]),
            "healthy_event_to_engines_listed_ms": summary(result["reconnect_ms"]),
            "raw": result,
            "machine": machine(),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
