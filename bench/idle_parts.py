"""Where an idle daemon's CPU goes at 50 engines: its total, then each of its periodic jobs alone.

One run: 50 stand-in engines behind two Gluetun stand-ins, started by a daemon at its defaults
(tunnel probe off). After the pool is ready and a settling pause, the daemon's CPU is read over
`--seconds` (as bench/idle.py does). Then the daemon is stopped, its engines left running, and
this process does each periodic job itself, many times over, with the daemon's own code, reading
its own CPU time around them:

- the liveness round: `version_round.versions_answered` on the 50 engines' addresses;
- a timed resync's listing of the pool (`DockerGateway.list_containers`);
- a full sweep's inspect of each of the 50 containers (`DockerGateway.inspect`);
- one read of a Gluetun control server (`GluetunControl.read`: its three routes at once).

Each is then counted at the cadence the defaults give it (a minute, 45 s, 8 resyncs, a minute
per VPN) as a share of one core, beside the daemon's measured total; what the four leave is the
rest of the daemon (its wake-ups, the reconcile pass, the watchdog). Run:
`.venv/bin/python bench/idle_parts.py` (about 8 minutes). Writes bench/results/idle_parts.json.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp

from bench.common import bench_daemon, cpu_seconds, machine, stop_pool, write_result
from orchestrator.docker.engines import pool_filters
from orchestrator.docker.gateway import DockerGateway
from orchestrator.vpn.control import Credentials, GluetunControl
from orchestrator.workers.event_source import FULL_SWEEP_EVERY, RESYNC_INTERVAL_S
from orchestrator.workers.readiness import REQUEST_TIMEOUT_S
from orchestrator.workers.version_round import versions_answered
from testkit.harness import remove_test_containers, run_gluetun, vpn_ip

ENGINES = 50
VPNS = ["bench-parts-g1", "bench-parts-g2"]
CONTROL_PORT = 8000
LIVENESS_EVERY_S = 60.0  # engines.health_check_interval_s's default
CONTROL_EVERY_S = 60.0  # vpn.health_check_interval_s's default


async def cpu_ms_each(job: Callable[[], Awaitable[object]], times: int) -> float:
    """This process's CPU time for one run of `job`, in ms (the mean of `times` runs)."""
    await job()  # the first run opens connections the later ones reuse, as the daemon's do
    start = time.process_time_ns()
    for _ in range(times):
        await job()
    return (time.process_time_ns() - start) / times / 1e6


async def parts(pool: str, endpoints: list[tuple[str, int]], controls: list[str]) -> dict[str, float]:
    gateway = DockerGateway()
    async with aiohttp.ClientSession() as session:
        control = GluetunControl(session, credentials=Credentials)
        listed = await gateway.list_containers(pool_filters(pool))
        ids = [entry.id for entry in listed]

        async def liveness_round() -> None:
            answered = await versions_answered(endpoints, REQUEST_TIMEOUT_S)
            assert all(answered), "an engine did not answer: the round would cost more than idle"

        async def sweep() -> None:
            for container_id in ids:
                await gateway.inspect(container_id)

        try:
            return {
                "liveness_round": await cpu_ms_each(liveness_round, 30),
                "listing": await cpu_ms_each(lambda: gateway.list_containers(pool_filters(pool)), 30),
                "full_sweep": await cpu_ms_each(sweep, 5),
                "control_read": await cpu_ms_each(lambda: control.read(controls[0]), 30),
            }
        finally:
            await gateway.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--settle", type=float, default=200)
    args = parser.parse_args()
    daemon = bench_daemon(
        "parts",
        {"min_replicas": ENGINES, "min_free": 0, "max_replicas": ENGINES},
        vpn={"mode": "redundant", "containers": VPNS, "port_range": "19000-19499"},
    )
    try:
        for name in VPNS:
            run_gluetun(name)
        daemon.start()
        endpoints = [(e["host"], e["port"]) for e in daemon.wait_engines(ENGINES, timeout=240)]
        time.sleep(args.settle)
        assert daemon.process is not None
        pid = daemon.process.pid
        before = cpu_seconds(pid)
        time.sleep(args.seconds)
        total_percent = 100 * (cpu_seconds(pid) - before) / args.seconds
        daemon.process.terminate()
        daemon.process.wait(timeout=15)
        controls = [f"http://{vpn_ip(name)}:{CONTROL_PORT}" for name in VPNS]
        each_ms = asyncio.run(parts(daemon.config["engines"]["pool"], endpoints, controls))
    finally:
        stop_pool(daemon)
        remove_test_containers()
    per_minute = {
        "liveness_round": 60 / LIVENESS_EVERY_S,
        "listing": 60 / RESYNC_INTERVAL_S,
        "full_sweep": 60 / (RESYNC_INTERVAL_S * FULL_SWEEP_EVERY),
        "control_read": len(VPNS) * 60 / CONTROL_EVERY_S,
    }
    shares = {job: round(each_ms[job] * per_minute[job] / 60_000 * 100, 4) for job in each_ms}
    write_result(
        "idle_parts",
        {
            "what": f"an idle daemon at {ENGINES} engines behind {len(VPNS)} Gluetun stand-ins, tunnel "
            f"probe off: its CPU measured from {args.settle:g} s after the pool was ready, over "
            f"{args.seconds:g} s; then each periodic job run alone by this process (the daemon "
            "stopped, its engines still up), its CPU per run, and that run's share of one core "
            "at the cadence of the defaults",
            "command": ".venv/bin/python bench/idle_parts.py "
            f"--seconds {args.seconds:g} --settle {args.settle:g}",
            "machine": machine(),
            "daemon_cpu_percent_of_one_core": round(total_percent, 4),
            "cpu_ms_per_run": {job: round(ms, 3) for job, ms in each_ms.items()},
            "runs_per_minute": {job: round(n, 3) for job, n in per_minute.items()},
            "percent_of_one_core": shares,
            "rest_percent_of_one_core": round(total_percent - sum(shares.values()), 4),
        },
    )


if __name__ == "__main__":
    main()
