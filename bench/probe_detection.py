"""A cut tunnel to its engines out of `/engines`, today's probe against the one before this
round, in one run on the stand-ins; and false hides over a healthy stretch.

One Gluetun stand-in joined to a network of its own holding the target (busybox httpd): its
"tunnel". Two engines behind it, the tunnel probe on with its defaults. Each cut disconnects the
stand-in from that network (`docker network disconnect`, as tests/integration/test_tunnel_probe.py
does: the dial then fails at once, "network unreachable", rather than timing out as on a real
tunnel whose packets are dropped), and times from just before the command to the first
`GET /engines` that lists none of them; the mend waits for both back, then a random pause puts
the next cut anywhere in the probe's dial cycle. `--healthy-s` then watches `/engines` every
100 ms on a healthy tunnel and counts the answers missing an engine (false hides). Both the code
of `--before` (a `git archive`, its probe a Docker health check) and this tree are measured.
Run: `.venv/bin/python bench/probe_detection.py --cuts 10 --healthy-s 600`. Writes
bench/results/probe_detection.json.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import bench_daemon, machine, stop_pool, summary, write_result
from bench.idle import source_of, start_from
from testkit.harness import (
    docker,
    inspect,
    label_args,
    remove_network,
    remove_test_containers,
    run_gluetun,
    wait_for,
    wait_vpn_health,
)

BUSYBOX = "acestream-orchestrator-test/busybox:latest"


def measure(
    source: Path | None,
    cuts: int,
    healthy_s: float,
    net: str,
    target: str,
    *,
    interval_s: float | None = None,
) -> dict[str, Any]:
    vpn = f"bench-pd-{uuid.uuid4().hex[:6]}"
    run_gluetun(vpn)
    docker("network", "connect", net, vpn)
    wait_vpn_health(vpn, "healthy")
    daemon = bench_daemon(
        "detect",
        {"min_replicas": 2, "min_free": 0, "max_replicas": 2},
        vpn={"mode": "single", "containers": [vpn], "port_range": "19500-19599"},
    )
    daemon.config["vpn"]["tunnel_probe"] = {"target": f"{target}:80"}
    if interval_s is not None:
        daemon.config["vpn"]["tunnel_probe"]["interval_s"] = interval_s
    hide_s: list[float] = []
    command_s: list[float] = []
    false_hides = 0
    polls = 0
    try:
        start_from(daemon, source)
        daemon.wait_engines(2, timeout=120)
        wait_for(
            "the probe's first verdict",
            lambda: (
                (daemon.get("/vpn/status")[1]["vpns"][0].get("tunnel_probe") or {}).get("tunnel_up") is True
            ),
            timeout=60,
        )
        for _ in range(cuts):
            time.sleep(random.uniform(2.0, 4.0))  # anywhere in the dial cycle
            began = time.monotonic()
            docker("network", "disconnect", net, vpn)
            command_s.append(time.monotonic() - began)
            wait_for("engines hidden", lambda: daemon.engines() == [], timeout=30, interval=0.02)
            hide_s.append(time.monotonic() - began)
            docker("network", "connect", net, vpn)
            daemon.wait_engines(2, timeout=60)
        ended = time.monotonic() + healthy_s
        while time.monotonic() < ended:
            polls += 1
            if len(daemon.engines()) < 2:
                false_hides += 1
            time.sleep(0.1)
    finally:
        stop_pool(daemon)
        docker("rm", "-f", vpn, check=False)
    return {
        "hide_s": summary(hide_s),
        "raw_hide_s": [round(h, 3) for h in hide_s],
        # how long `docker network disconnect` itself took: the cut lands somewhere inside it
        "cut_command_s": summary(command_s),
        "healthy_s": healthy_s,
        "healthy_polls": polls,
        "false_hides": false_hides,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cuts", type=int, default=10)
    parser.add_argument("--healthy-s", type=float, default=600)
    parser.add_argument("--before", default="0dfd87a")
    parser.add_argument("--skip-before", action="store_true")
    parser.add_argument("--interval", type=float, default=None, help="vpn.tunnel_probe.interval_s")
    parser.add_argument("--name", default="probe_detection", help="the results file's name")
    args = parser.parse_args()
    net = f"bench-pd-inet-{uuid.uuid4().hex[:8]}"
    report: dict[str, Any] = {}
    try:
        docker("network", "create", *label_args(), net)
        docker(
            "run", "-d", "--name", net, "--network", net, *label_args(), BUSYBOX, "httpd", "-f", "-p", "80"
        )
        target = str((inspect(net) or {})["NetworkSettings"]["Networks"][net]["IPAddress"])
        if not args.skip_before:
            report["before"] = measure(source_of(args.before), args.cuts, 0, net, target)
            print("before", report["before"], flush=True)
        report["now"] = measure(None, args.cuts, args.healthy_s, net, target, interval_s=args.interval)
        print("now", report["now"], flush=True)
    finally:
        remove_test_containers()
        remove_network(net)
    write_result(
        args.name,
        {
            "what": "seconds from cutting a stand-in Gluetun's tunnel (network disconnect) to its "
            "engines out of GET /engines; false hides over a healthy stretch; before = the code of "
            f"{args.before} (Docker health check, 2 s x 2), now = this tree (dial loop, 1 s, 1 s x 2)",
            "command": f".venv/bin/python bench/probe_detection.py --cuts {args.cuts} "
            f"--healthy-s {args.healthy_s:g}"
            + (" --skip-before" if args.skip_before else "")
            + (f" --interval {args.interval:g} --name {args.name}" if args.interval else ""),
            "machine": machine(),
            **report,
        },
    )


if __name__ == "__main__":
    main()
