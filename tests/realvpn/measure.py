"""Measure the lane's Gluetun (stand-in or REALVPN_GLUETUN_IMAGE) as Docker reports its health.

    .venv/bin/python -m tests.realvpn.measure [--runs 3] [--json out.json]

Each figure is seconds from just before the command to Docker's `health_status` event (taken
from `docker events`, so polling does not blur it). One bed, one Gluetun; torn down at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import urllib.error
import urllib.request

from testkit.harness import docker
from testkit.realvpn.bed import RealVpnBed, broken_prerequisites, missing_prerequisites

STEPS = (
    ("start", "docker start -> healthy"),
    ("control", "docker start -> control server answers"),
    ("kill", "kill_tunnel (server stopped) -> unhealthy"),
    ("restore", "restore_tunnel (server started) -> healthy"),
    ("restart", "docker restart -> healthy"),
    ("restart_cmd", "docker restart command itself"),
    ("recreate", "rm -f + create + start -> healthy"),
)


def _first_answer(url: str, since: float, out: dict[str, float], timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=0.5):
                pass
        except urllib.error.HTTPError:
            pass  # any HTTP answer counts
        except OSError:
            time.sleep(0.05)
            continue
        out["control"] = time.time() - since
        return


def one_run(bed: RealVpnBed) -> dict[str, float]:
    g = bed.gluetun
    got: dict[str, float] = {}

    bed.stop_gluetun(g)
    t0 = time.time()
    poller = threading.Thread(target=_first_answer, args=(bed.control_url(g) + "/v1/version", t0, got))
    poller.start()
    bed.start_gluetun(g)
    got["start"] = bed.wait_healthy(g, 90, since=t0)
    poller.join()

    t0 = time.time()
    bed.kill_tunnel(g)
    got["kill"] = bed.wait_health(g, "unhealthy", 90, since=t0)

    t0 = time.time()
    bed.restore_tunnel(g)
    got["restore"] = bed.wait_healthy(g, 90, since=t0)

    t0 = time.time()
    bed.restart_gluetun(g)
    got["restart_cmd"] = time.time() - t0
    got["restart"] = bed.wait_healthy(g, 90, since=t0)

    t0 = time.time()
    bed.recreate_gluetun(g)
    got["recreate"] = bed.wait_healthy(g, 90, since=t0)
    return got


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.realvpn.measure")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", help="also write every figure here")
    parser.add_argument(
        "--retries", type=int, default=5, help="new beds after one was removed by someone else"
    )
    ns = parser.parse_args()
    reason = missing_prerequisites() or broken_prerequisites()
    if reason:
        print(f"cannot measure: {reason}")
        return 1
    runs: list[dict[str, float]] = []
    attempts = 0
    while len(runs) < ns.runs:
        # a concurrent test clean-up may remove the bed (see BedVanished): start over, a few times
        with RealVpnBed(1, control_server_log=False) as bed:
            print(
                f"bed {bed.prefix}: {bed.block}, Gluetun {bed.gluetun_ip(bed.gluetun)}, "
                f"docker {docker('version', '-f', '{{.Server.Version}}')}",
                flush=True,
            )
            try:
                while len(runs) < ns.runs:
                    runs.append(one_run(bed))
                    print(
                        f"run {len(runs)}: " + ", ".join(f"{k} {v:.2f}s" for k, v in runs[-1].items()),
                        flush=True,
                    )
            except AssertionError as exc:
                attempts += 1
                if not bed.missing() or attempts >= ns.retries:
                    raise
                print(f"interrupted ({exc}); a new bed", flush=True)
    print()
    print(f"| step | runs ({ns.runs}) | median |")
    print("|---|---|---|")
    for key, what in STEPS:
        vals = [r[key] for r in runs if key in r]
        if vals:
            print(f"| {what} | {', '.join(f'{v:.2f}' for v in vals)} s | {statistics.median(vals):.2f} s |")
    if ns.json:
        with open(ns.json, "w") as f:
            json.dump(runs, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
