"""The idle daemon: wake-ups a second and CPU, today's code against the code before this round,
side by side in one run.

For each size (engines behind two Gluetun stand-ins, the pool settled) each daemon runs on the
same stand-ins in turn: the code of `--before` (a `git archive` of that commit, run from a
temporary folder with this venv) and the working tree. After the pool is ready and a settling
pause, the daemon's process is read from /proc over `--seconds`: its context switches summed
over its threads (voluntary ones are the wake-ups: each is a thread going back to sleep) and its
CPU time (the scheduler's nanosecond count, with the 10 ms ticks of /proc/<pid>/stat beside it).
The tunnel probe is off (its own cost is bench/probe_cost.py's). Run:
`.venv/bin/python bench/idle.py --seconds 60 --sizes 10 50` (add `--settle 15` to see the first
minutes, while the engines are new). Writes bench/results/idle.json (`--name`: another file).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import bench_daemon, cpu_seconds, cpu_seconds_in_ticks, machine, stop_pool, write_result
from testkit.harness import REPO, Daemon, remove_test_containers, run_gluetun, wait_for


def switches(pid: int) -> tuple[int, int]:
    voluntary = involuntary = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches"):
                    voluntary += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches"):
                    involuntary += int(line.split()[1])
        except OSError:
            continue
    return voluntary, involuntary


def docker_events(daemon: Daemon) -> int:
    """Docker events the daemon received so far (its /metrics): on a shared machine most are
    other sessions' containers, each a wake-up this daemon cannot avoid."""
    with urllib.request.urlopen(daemon.url + "/metrics", timeout=10) as resp:  # noqa: S310 (http on loopback)
        text = resp.read().decode()
    line = next(x for x in text.splitlines() if x.startswith("acestream_orchestrator_docker_events"))
    return int(float(line.split()[-1]))


def source_of(commit: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="bench-idle-src-"))
    archive = subprocess.run(["git", "archive", commit], cwd=REPO, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def start_from(daemon: Daemon, source: Path | None) -> None:
    if source is None:
        daemon.start()
        return
    daemon.write_config()
    log = daemon.log_path.open("ab")
    daemon.process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "--config", str(daemon.config_path)],
        cwd=source,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(source)},
    )

    def healthy() -> bool:
        assert daemon.process is not None
        if daemon.process.poll() is not None:
            raise AssertionError(f"daemon exited with {daemon.process.returncode}:\n{daemon.log()}")
        try:
            return daemon.get("/health")[0] == 200
        except OSError:
            return False

    wait_for("daemon /health", healthy, timeout=30)


def measure(
    engines: int, vpns: list[str], source: Path | None, seconds: float, settle: float
) -> dict[str, Any]:
    daemon = bench_daemon(
        "idle",
        {"min_replicas": engines, "min_free": 0, "max_replicas": engines},
        vpn={"mode": "redundant", "containers": vpns, "port_range": "19000-19499"},
    )
    try:
        start_from(daemon, source)
        daemon.wait_engines(engines, timeout=180)
        time.sleep(settle)  # the creations' aftermath settled, the engines no longer new
        assert daemon.process is not None
        pid = daemon.process.pid
        e0 = docker_events(daemon)
        (v0, n0), c0, t0 = switches(pid), cpu_seconds(pid), cpu_seconds_in_ticks(pid)
        time.sleep(seconds)
        (v1, n1), c1, t1 = switches(pid), cpu_seconds(pid), cpu_seconds_in_ticks(pid)
        events = docker_events(daemon) - e0
        return {
            "wakeups_per_s": round((v1 - v0) / seconds, 2),
            "docker_events_per_s": round(events / seconds, 2),
            "wakeups_per_s_without_events": round((v1 - v0 - events) / seconds, 2),
            "involuntary_switches_per_s": round((n1 - n0) / seconds, 2),
            "cpu_percent_of_one_core": round(100 * (c1 - c0) / seconds, 4),
            "cpu_percent_in_ticks": round(100 * (t1 - t0) / seconds, 3),
        }
    finally:
        stop_pool(daemon)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument(
        "--settle",
        type=float,
        default=200,
        help="seconds between the pool ready and the window: a resync inspects every engine up "
        "for less than 3 minutes (reconcilers/listing.py), so a shorter pause measures that",
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--before", default="0dfd87a")
    parser.add_argument("--name", default="idle", help="the result's file: bench/results/NAME.json")
    args = parser.parse_args()
    old = source_of(args.before)
    vpns = ["bench-idle-g1", "bench-idle-g2"]
    report: dict[str, Any] = {}
    try:
        for name in vpns:
            run_gluetun(name, patient=True)  # a slow exec on a loaded machine must not flip it
        for size in args.sizes:
            report[f"{size}_engines_2_vpns"] = {
                "before": measure(size, vpns, old, args.seconds, args.settle),
                "now": measure(size, vpns, None, args.seconds, args.settle),
            }
            print(size, report[f"{size}_engines_2_vpns"], flush=True)
    finally:
        remove_test_containers()
    write_result(
        args.name,
        {
            "what": "the idle daemon's process: voluntary context switches a second (wake-ups) and "
            "CPU, engines behind 2 Gluetun stand-ins, tunnel probe off, measured from "
            f"{args.settle:g} s after the pool was ready; before = the code of "
            f"{args.before}, now = this tree, in the same run",
            "command": f".venv/bin/python bench/idle.py --seconds {args.seconds:g} --sizes "
            + " ".join(map(str, args.sizes))
            + f" --before {args.before} --settle {args.settle:g} --name {args.name}",
            "machine": machine(),
            **report,
        },
    )


if __name__ == "__main__":
    main()
