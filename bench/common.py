"""Shared pieces of the benchmarks: a daemon on the stand-ins, Docker event timestamps,
summaries, result files."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from testkit.harness import (
    ENGINE_IMAGE,
    ENGINE_LAUNCH,
    NO_PROBE,
    Daemon,
    docker,
    remove_test_containers,
    session_labels,
)

RESULTS = Path(__file__).resolve().parent / "results"
BENCH_HOST_PORTS = "28000-28999"


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system) a process has used so far: the scheduler's own count of each
    live thread's time on a CPU (/proc/<pid>/task/*/schedstat, in nanoseconds), where the kernel
    keeps it; else /proc/<pid>/stat, whose user and system times come in 10 ms ticks (an idle
    daemon's minute is a few ticks: too coarse to compare two of them)."""
    total, found = 0, False
    for task in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(task.read_text().split()[0])
            found = True
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9 if found and total else cpu_seconds_in_ticks(pid)


def cpu_seconds_in_ticks(pid: int) -> float:
    """The same from /proc/<pid>/stat (threads that ended included), in 10 ms ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_daemon(
    prefix: str, engines: dict[str, Any], vpn: dict[str, Any] | None = None, log_level: str = "INFO"
) -> Daemon:
    """A daemon (not started) on the stand-in engines, in a pool and a workdir of its own, its
    engines labelled for clean-up, the tunnel probe off (it would dial a public address)."""
    # a benchmark stopped with SIGTERM (timeout, kill) runs its clean-up as on Ctrl-C; Python's
    # default would end it at once, leaving its daemon and engines running
    signal.signal(signal.SIGTERM, _exit_on_term)
    run_id = uuid.uuid4().hex[:8]
    return Daemon(
        workdir=Path(tempfile.mkdtemp(prefix=f"bench-{prefix}-")),
        run_id=run_id,
        config={
            "engines": {
                "image": ENGINE_IMAGE,
                "launch": ENGINE_LAUNCH,
                "pool": f"bench-{run_id}",
                "address": "ip",
                "labels": session_labels(run_id),
                # a band of its own: the suites, run beside it, publish 19000 and up
                "host_port_range": BENCH_HOST_PORTS,
                **engines,
            },
            "vpn": {**(vpn or {}), "tunnel_probe": NO_PROBE},
            "log_level": log_level,
        },
    )


def _exit_on_term(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def stop_pool(daemon: Daemon) -> None:
    """Stop the daemon (if it runs) and remove its pool's containers, leaving the rest (the
    stand-in VPNs a benchmark reuses)."""
    if daemon.process is not None and daemon.process.poll() is None:
        daemon.process.terminate()
        daemon.process.wait(timeout=15)
    pool = daemon.config["engines"]["pool"]
    left = docker("ps", "-aq", "--filter", f"label=orchestrator.pool={pool}").split()
    if left:
        docker("rm", "-f", *left, check=False)


def stop_daemon(daemon: Daemon) -> None:
    """Stop the daemon (if it runs) and remove every container this session made."""
    if daemon.process is not None and daemon.process.poll() is None:
        daemon.process.terminate()
        daemon.process.wait(timeout=10)
    remove_test_containers()


class EventWatch:
    """`docker events` for one container and one event type; yields each event's timeNano."""

    def __init__(self, container: str, event: str) -> None:
        self.proc = subprocess.Popen(
            [
                "docker",
                "events",
                "--format",
                "{{json .}}",
                "--filter",
                f"container={container}",
                "--filter",
                f"event={event}",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )

    async def next(self, status_suffix: str = "") -> int:
        assert self.proc.stdout is not None
        while True:
            line = await asyncio.to_thread(self.proc.stdout.readline)
            event = json.loads(line)
            if str(event.get("status", event.get("Action", ""))).endswith(status_suffix):
                return int(event["timeNano"])

    def close(self) -> None:
        self.proc.terminate()


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "median": round(statistics.median(ordered), 2),
        "best": round(ordered[0], 2),
        "worst": round(ordered[-1], 2),
    }


def machine() -> str:
    """Cores, date and load average: on a shared machine the load says how far to trust a figure."""
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    return f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}, load average {load}"


def write_result(name: str, report: dict[str, Any]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "raw"}, indent=2))
