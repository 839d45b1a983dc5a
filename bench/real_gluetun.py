"""The daemon on the real-tunnel lane (testkit/realvpn/bed.py): the Gluetun stand-in with a real
userspace WireGuard tunnel built from Debian's packages, or a real Gluetun image named by
REALVPN_GLUETUN_IMAGE. How fast a dead tunnel hides the engines, that a healthy one never does,
how fast they come back. The result says which Gluetun ran (`lane`).

One bed (one Gluetun, its WireGuard server, a target reachable only through the tunnel), one
daemon with N engine stand-ins in Gluetun's namespace (`engines.address: ip`, the bed's control
key, every other key at its default unless an option says otherwise), the tunnel probe dialling
the bed's target (never a public address):

- detection: K times, kill the tunnel (`kill_tunnel`: the WireGuard server stopped) after a random
  0 to interval+timeout s pause (so the kill falls anywhere in the probe's cycle); from just
  before the kill to the first `GET /engines` (polled every 50 ms) without the VPN's engines;
  then restore it and time until the N engines are listed again;
- false hides: a healthy tunnel for M minutes, `GET /engines` every 100 ms: every answer with
  fewer than N engines counts (a "moment" is a run of such answers); the daemon's CPU seconds
  (/proc/<pid>/stat; it also serves those polls) and the probe container's (its cgroup: the
  health checks Docker runs in it), and the probe's health_status events in that time;
- recovery, R times each: `docker restart` of Gluetun, a recreation (rm -f + create + start, new
  ID), a tunnel loss long enough for Docker to call Gluetun unhealthy (kill, wait for Docker's
  `unhealthy`, restore): from the command (the restore) to N engines listed again;
- the probe off (`vpn.tunnel_probe.target: ""`), D kills: Docker's health alone decides.

Other sessions on this machine restart the Docker engine now and then, which stops every
container (the bed's too): a measurement during which dockerd restarted is thrown away and taken
again on a new bed and daemon (`docker_engine_restarts_by_others` in the result lists them).

`unhealthy_restart_timeout_s` is 600 here, so no outage of the run is long enough for a forced
restart (each round checks that Gluetun's StartedAt did not change).

Run: `.venv/bin/python bench/real_gluetun.py [--engines 3] [--kills 10] [--false-hide-minutes 10]
[--rounds 3] [--docker-only-kills 3]` (about 20 min with the defaults; `--quick` for a smoke
run). Needs the lane's images (testbed/realvpn/build-images.sh) and the engine stand-in.
Writes bench/results/real_tunnel.json (bench/results/real_gluetun.json holds the figures once
taken on the real Gluetun v3.39.1).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import cpu_seconds, machine, summary, write_result
from orchestrator.docker.containers import parse_docker_time
from reconcilers.model import TunnelProbe
from testkit.harness import Daemon, docker, engine_info, inspect, started_at, wait_for
from testkit.realvpn.bed import (
    GLUETUN_IMAGE,
    STANDIN_HEALTH,
    RealVpnBed,
    broken_prerequisites,
    health_events,
    is_standin,
    missing_prerequisites,
)
from testkit.realvpn.daemon import BED_LABEL, bed_daemon, probe_up, probes, stop_daemon

RESULT = "real_tunnel"

PROBE = TunnelProbe(host="", port=0)  # the config's defaults


def container_cpu_seconds(container_id: str) -> float | None:
    """CPU time of everything that ran in the container's cgroup (health-check execs included)."""
    for path, scale in (
        (f"/sys/fs/cgroup/cpuacct/docker/{container_id}/cpuacct.usage", 1e9),
        (f"/sys/fs/cgroup/cpu,cpuacct/docker/{container_id}/cpuacct.usage", 1e9),
        (f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/cpu.stat", 1e6),
        (f"/sys/fs/cgroup/docker/{container_id}/cpu.stat", 1e6),
    ):
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        if path.endswith("cpu.stat"):
            usage = dict(line.split() for line in text.splitlines() if line.strip())
            return int(usage["usage_usec"]) / scale
        return int(text) / scale
    return None


def dockerd_identity() -> list[tuple[int, str]]:
    """(pid, start time) of every dockerd: changes when something restarts the Docker engine,
    which stops every container, the bed's included (other sessions on this machine do that)."""
    out = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "comm").read_text().strip() == "dockerd":
                out.append((int(proc.name), (proc / "stat").read_text().rsplit(")", 1)[1].split()[19]))
        except (OSError, IndexError):
            continue
    return sorted(out)


class DockerRestarted(RuntimeError):
    """The Docker engine restarted during a measurement: its figures mean nothing."""


class Engines:
    """GET /engines over one keep-alive connection (reopened after an error)."""

    def __init__(self, daemon: Daemon) -> None:
        self.port = daemon.port
        self.conn: http.client.HTTPConnection | None = None

    def count(self) -> int | None:
        """How many engines are listed; None when the daemon did not answer."""
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            self.conn.request("GET", "/engines")
            resp = self.conn.getresponse()
            body = resp.read()
            return len(json.loads(body)) if resp.status == 200 else None
        except (OSError, ValueError, http.client.HTTPException):
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            return None

    def wait(self, done: Callable[[int | None], bool], timeout: float, every: float) -> float:
        """time.time() of the first answer (polled every `every` s) that is `done`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            began = time.monotonic()
            if done(self.count()):
                return time.time()
            time.sleep(max(0.0, every - (time.monotonic() - began)))
        raise AssertionError(f"GET /engines not as wanted within {timeout}s (last: {self.count()})")


def in_background(action: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=action, daemon=True)
    thread.start()
    return thread


def steady(bed: RealVpnBed, daemon: Daemon, engines: int, probe: bool, timeout: float = 90) -> None:
    """Docker calls Gluetun healthy, the probe (when on) says up, N engines listed and answering."""

    def ok() -> bool:
        if bed.docker_health(bed.gluetun) != "healthy" or (probe and probe_up(daemon) is not True):
            return False
        got = daemon.engines()
        return len(got) == engines and all(
            (engine_info(e["host"], e["port"]) or {}).get("CONTAINER_ID") == e["container_id"] for e in got
        )

    wait_for("steady state", ok, timeout=timeout, interval=0.25)


def gluetun_started(bed: RealVpnBed) -> str:
    return str((inspect(bed.gluetun) or {})["State"]["StartedAt"])


def detection(
    bed: RealVpnBed,
    daemon: Daemon,
    *,
    engines: int,
    kills: int,
    phase_s: float,
    probe: bool,
    rng: random.Random,
) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {
        "kill_to_hidden_s": [],
        "restore_to_listed_s": [],
        "pause_s": [],
        "docker_health_when_hidden": [],
        "kill_command_s": [],
        "signal_to_hidden_s": [],
        "signal_to_probe_down_s": [],
    }
    poll = Engines(daemon)
    for i in range(kills):
        steady(bed, daemon, engines, probe)
        before = gluetun_started(bed)
        pause = rng.uniform(0, phase_s)
        time.sleep(pause)
        killed = time.time()
        killer = in_background(lambda: bed.kill_tunnel(bed.gluetun))
        hidden = poll.wait(lambda n: n == 0, timeout=120, every=0.05)
        out["docker_health_when_hidden"].append(bed.docker_health(bed.gluetun))
        killer.join()
        killed_by = time.time()
        signal_at = kill_signal_at(bed.spec(bed.gluetun).tunnel.server, killed, killed_by)
        said_down = probe_line_at(daemon, "tunnel down", killed)
        out["kill_command_s"].append(round(killed_by - killed, 3))
        out["signal_to_hidden_s"].append(None if signal_at is None else round(hidden - signal_at, 3))
        out["signal_to_probe_down_s"].append(
            None if signal_at is None or said_down is None else round(said_down - signal_at, 3)
        )
        restored = time.time()
        restorer = in_background(lambda: bed.restore_tunnel(bed.gluetun))
        back = poll.wait(lambda n: n == engines, timeout=120, every=0.05)
        restorer.join()
        assert gluetun_started(bed) == before, "Gluetun was restarted"
        out["kill_to_hidden_s"].append(round(hidden - killed, 3))
        out["restore_to_listed_s"].append(round(back - restored, 3))
        out["pause_s"].append(round(pause, 3))
        print(
            f"kill {i + 1}/{kills}: hidden after {hidden - killed:.2f}s "
            f"({out['signal_to_hidden_s'][-1]}s after the signal), back {back - restored:.2f}s "
            f"after the restore",
            flush=True,
        )
    return out


def kill_signal_at(server: str, since: float, until: float) -> float | None:
    """When Docker signalled the WireGuard server (its `kill` event): the tunnel's death, without
    the time `docker stop` took to get there (dockerd's own latency on a loaded machine)."""
    out = docker(
        "events",
        "--since",
        f"{since:.9f}",
        "--until",
        f"{until + 1:.9f}",
        "--filter",
        f"container={server}",
        "--filter",
        "event=kill",
        "--format",
        "{{.TimeNano}}",
        check=False,
        timeout=30,
    )
    stamps = [int(line) for line in out.split() if line.strip().isdigit()]
    return min(stamps) / 1e9 if stamps else None


def probe_line_at(daemon: Daemon, text: str, since: float) -> float | None:
    """When the tunnel probe wrote `text` to its log (Docker's own timestamp), after `since`."""
    found = probes(daemon)
    if len(found) != 1:
        return None  # the probe off
    out = docker("logs", "-t", "--since", f"{since:.9f}", found[0]["Id"], check=False, timeout=30)
    for line in out.splitlines():
        stamp, _, said = line.partition(" ")
        if said.strip() == text:
            return parse_docker_time(stamp)
    return None


def false_hides(bed: RealVpnBed, daemon: Daemon, engines: int, minutes: float) -> dict[str, Any]:
    steady(bed, daemon, engines, probe=True)
    assert daemon.process is not None
    (probe,) = probes(daemon)
    pid = daemon.process.pid
    cpu0, probe0, began = cpu_seconds(pid), container_cpu_seconds(probe["Id"]), time.time()
    poll = Engines(daemon)
    polls = short = moments = errors = 0
    previous_short = False
    worst = engines
    end = time.monotonic() + minutes * 60
    while time.monotonic() < end:
        t = time.monotonic()
        count = poll.count()
        polls += 1
        if count is None:
            errors += 1
        is_short = count is not None and count < engines
        if count is not None and is_short:
            short += 1
            moments += 0 if previous_short else 1
            worst = min(worst, count)
        previous_short = is_short
        time.sleep(max(0.0, 0.1 - (time.monotonic() - t)))
    seconds = time.time() - began
    cpu, probe1 = cpu_seconds(pid) - cpu0, container_cpu_seconds(probe["Id"])
    probe_cpu = None if probe0 is None or probe1 is None else round(probe1 - probe0, 3)
    return {
        "minutes": round(seconds / 60, 2),
        "polls": polls,
        "answers_with_fewer_engines": short,
        "moments_with_fewer_engines": moments,
        "fewest_engines_seen": worst,
        "poll_errors": errors,
        "probe_health_events": [status for _, status in health_events(probe["Id"], began, time.time())],
        "daemon_cpu_s": round(cpu, 3),
        "daemon_cpu_percent_of_one_core": round(100 * cpu / seconds, 3),
        "probe_container_cpu_s": probe_cpu,
        "probe_cpu_percent_of_one_core": None if probe_cpu is None else round(100 * probe_cpu / seconds, 3),
    }


def recovery(bed: RealVpnBed, daemon: Daemon, engines: int, rounds: int) -> dict[str, list[float]]:
    g = bed.gluetun
    out: dict[str, list[float]] = {"docker_restart_s": [], "recreate_s": [], "tunnel_loss_s": []}
    poll = Engines(daemon)
    for i in range(rounds):
        steady(bed, daemon, engines, probe=True)
        ids = {e["container_id"] for e in daemon.engines()}
        began = time.time()
        bed.restart_gluetun(g, stop_timeout=10)
        vpn_start = started_at(g)
        back = poll.wait(lambda n: n == engines, timeout=120, every=0.05)
        got = daemon.engines()
        assert {e["container_id"] for e in got} == ids, "restart: other engines"
        assert all(started_at(e["container_id"]) > vpn_start for e in got), "restart: engines not restarted"
        out["docker_restart_s"].append(round(back - began, 3))
        print(f"docker restart {i + 1}/{rounds}: engines listed again after {back - began:.2f}s", flush=True)
    for i in range(rounds):
        steady(bed, daemon, engines, probe=True)
        old = {e["container_id"] for e in daemon.engines()}
        began = time.time()
        bed.recreate_gluetun(g)

        def fresh(n: int | None, old: set[str] = old) -> bool:
            return n == engines and not ({e["container_id"] for e in daemon.engines()} & old)

        back = poll.wait(fresh, timeout=120, every=0.05)
        out["recreate_s"].append(round(back - began, 3))
        print(f"recreate {i + 1}/{rounds}: engines listed again after {back - began:.2f}s", flush=True)
    for i in range(rounds):
        steady(bed, daemon, engines, probe=True)
        before = gluetun_started(bed)
        killed = time.time()
        bed.kill_tunnel(g)
        bed.wait_health(g, "unhealthy", timeout=90, since=killed)
        assert poll.count() == 0
        began = time.time()
        restorer = in_background(lambda: bed.restore_tunnel(g))
        back = poll.wait(lambda n: n == engines, timeout=120, every=0.05)
        restorer.join()
        assert gluetun_started(bed) == before, "Gluetun was restarted"
        out["tunnel_loss_s"].append(round(back - began, 3))
        print(
            f"tunnel loss {i + 1}/{rounds}: down {began - killed:.1f}s, engines listed again "
            f"{back - began:.2f}s after the restore",
            flush=True,
        )
    return out


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engines", type=int, default=3)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--false-hide-minutes", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--docker-only-kills", type=int, default=3)
    parser.add_argument(
        "--probe-interval", type=float, default=PROBE.interval_s, help="vpn.tunnel_probe.interval_s"
    )
    parser.add_argument(
        "--probe-timeout",
        type=int,
        default=int(PROBE.timeout_s),
        help="vpn.tunnel_probe.timeout_s (whole seconds)",
    )
    parser.add_argument("--probe-retries", type=int, default=PROBE.retries, help="vpn.tunnel_probe.retries")
    parser.add_argument("--seed", type=int, default=1, help="of the random pause before each kill")
    parser.add_argument("--quick", action="store_true", help="2 kills, 12 s of false hides, 1 round, 1 kill")
    parser.add_argument("--out", default=RESULT, help="result name under bench/results/")
    args = parser.parse_args()
    if args.quick:
        args.kills, args.false_hide_minutes, args.rounds, args.docker_only_kills = 2, 0.2, 1, 1
    return args


class Lab:
    """A bed and one daemon on it, rebuilt from scratch when the Docker engine restarts."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args, self.workdir = args, workdir
        self.bed: RealVpnBed | None = None
        self.daemon: Daemon | None = None
        self.probe_keys: dict[str, Any] = {}
        self.interruptions: list[dict[str, Any]] = []
        self.builds = 0

    def up(self, probe: dict[str, Any] | None) -> tuple[RealVpnBed, Daemon]:
        """A fresh bed and daemon (`probe` None: the probe off)."""
        self.down()
        wait_for("the Docker engine", lambda: docker("info", "-f", "{{.ID}}", check=False), timeout=180)
        self.bed = RealVpnBed(1, label=BED_LABEL, control_server_log=False)
        self.bed.up()
        self.builds += 1
        keys = {"target": ""} if probe is None else {"target": self.bed.target_address, **probe}
        self.daemon = bed_daemon(
            self.bed,
            self.workdir / f"daemon{self.builds}",
            engines=self.args.engines,
            probe=keys,
            log_level="INFO",
            health_check_interval_s=5,
            unhealthy_restart_timeout_s=600,
        )
        self.daemon.start()
        steady(self.bed, self.daemon, self.args.engines, probe=probe is not None)
        print(f"bed {self.bed.prefix} up, target {self.bed.target_address}", flush=True)
        return self.bed, self.daemon

    def down(self) -> None:
        if self.daemon is not None:
            stop_daemon(self.daemon)
        if self.bed is not None:
            self.bed.down()
        self.bed = self.daemon = None

    def measure(
        self,
        phase: str,
        probe: dict[str, Any] | None,
        fn: Callable[[RealVpnBed, Daemon], Any],
        tries: int = 4,
    ) -> Any:
        """`fn(bed, daemon)`, again on a new bed when the Docker engine restarted meanwhile."""
        for attempt in range(tries):
            before = dockerd_identity()
            try:
                if self.bed is None or self.daemon is None:
                    self.up(probe)
                assert self.bed is not None and self.daemon is not None
                result = fn(self.bed, self.daemon)
            except Exception as exc:
                if dockerd_identity() == before:
                    raise
                why = f"{type(exc).__name__}: {str(exc)[:200]}"
            else:
                if dockerd_identity() == before:
                    return result
                why = "the figures were taken across the restart"
            self.interruptions.append({"phase": phase, "attempt": attempt + 1, "at": time.time(), "why": why})
            print(f"{phase}: the Docker engine restarted (not us): {why}; again on a new bed", flush=True)
            self.down()
        raise DockerRestarted(f"{phase}: the Docker engine restarted during {tries} attempts")


def run(args: argparse.Namespace, lab: Lab, report: dict[str, Any]) -> dict[str, Any]:
    """Every measurement, in order; fills `report`, returns the raw figures."""
    rng = random.Random(args.seed)
    probe = report["tunnel_probe"]
    raw: dict[str, Any] = {}
    phase_s = args.probe_interval + args.probe_timeout
    raw["detection"] = lab.measure(
        "detection",
        probe,
        lambda bed, daemon: detection(
            bed, daemon, engines=args.engines, kills=args.kills, phase_s=phase_s, probe=True, rng=rng
        ),
    )
    report["detection_kill_to_hidden_s"] = summary(raw["detection"]["kill_to_hidden_s"])
    report["detection_restore_to_listed_s"] = summary(raw["detection"]["restore_to_listed_s"])
    for key in ("kill_command_s", "signal_to_hidden_s", "signal_to_probe_down_s"):
        known = [x for x in raw["detection"][key] if x is not None]
        report[f"detection_{key}"] = summary(known) if known else None

    report["false_hides"] = lab.measure(
        "false hides",
        probe,
        lambda bed, daemon: false_hides(bed, daemon, args.engines, args.false_hide_minutes),
    )
    print(f"false hides: {json.dumps(report['false_hides'])}", flush=True)

    def recover(bed: RealVpnBed, daemon: Daemon) -> dict[str, Any]:
        out: dict[str, Any] = dict(recovery(bed, daemon, args.engines, args.rounds))
        out["forced_restarts_logged"] = sum(
            1 for ev in daemon.log_events() if ev.get("event") == "vpn_force_restart"
        )
        return out

    raw["recovery"] = lab.measure("recovery", probe, recover)
    report["forced_restarts_logged"] = raw["recovery"].pop("forced_restarts_logged")
    report["recovery_s"] = {k: summary(v) for k, v in raw["recovery"].items()}

    lab.down()  # the probe off: a new bed and daemon
    raw["probe_off"] = lab.measure(
        "probe off",
        None,
        lambda bed, daemon: detection(
            bed, daemon, engines=args.engines, kills=args.docker_only_kills, phase_s=5.0, probe=False, rng=rng
        ),
    )
    report["probe_off_kill_to_hidden_s"] = summary(raw["probe_off"]["kill_to_hidden_s"])
    report["probe_off_restore_to_listed_s"] = summary(raw["probe_off"]["restore_to_listed_s"])
    return raw


def main() -> int:
    args = arguments()
    why = missing_prerequisites() or broken_prerequisites()
    if why:
        print(f"real_gluetun: cannot run: {why}", file=sys.stderr)
        return 2
    lane = (
        f"the real-tunnel lane: Gluetun stand-in {GLUETUN_IMAGE} (real wireguard-go tunnel, kill "
        f"switch, Gluetun's health timing with the small check scaled down: {STANDIN_HEALTH})"
        if is_standin()
        else f"a real Gluetun image, {GLUETUN_IMAGE} (REALVPN_GLUETUN_IMAGE)"
    )
    report: dict[str, Any] = {
        "lane": lane,
        "what": (
            f"{lane}, userspace WireGuard to a local server, "
            f"single VPN, {args.engines} engine stand-ins in its namespace; GET /engines polled "
            "every 50 ms (false hides: 100 ms); seconds"
        ),
        "command": " ".join([".venv/bin/python bench/real_gluetun.py", *sys.argv[1:]]),
        "engines": args.engines,
        "tunnel_probe": {
            "interval_s": args.probe_interval,
            "timeout_s": args.probe_timeout,
            "retries": args.probe_retries,
        },
        "daemon": {"vpn.health_check_interval_s": 5, "vpn.unhealthy_restart_timeout_s": 600},
    }
    lab = Lab(args, Path(tempfile.mkdtemp(prefix="bench-real-gluetun-")))
    try:
        raw = run(args, lab, report)
    finally:
        lab.down()
    report["docker_engine_restarts_by_others"] = lab.interruptions
    report["raw"] = raw
    report["machine"] = f"{machine()}, load average {os.getloadavg()[0]:.2f} at the end"
    report["docker"] = subprocess.run(
        ["docker", "version", "-f", "{{.Server.Version}}"], capture_output=True, text=True, check=False
    ).stdout.strip()
    write_result(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
