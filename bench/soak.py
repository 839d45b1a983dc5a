"""The soak: the fault suite's long run, with its figures in bench/results/soak.json.

Two parts on one bed (two stand-in VPNs forwarding a port each, a redundant-mode daemon):

1. kill rounds (tests/faults/rounds.py): a fault under way, the daemon SIGKILLed in the middle,
   started again, the invariants checked once it settles; `--rounds` of them.
2. churn: for `--minutes`, one daemon process takes VPN flaps and engine deaths back to back
   while a proxy-like client streams: viewers through the proxy (GET /ace/getstream, some
   bytes, close: the proxy reports the streams; tests/proxy_front.py, or the real acexy when
   ACEXY_BIN names a build) and streams reported straight through the
   stream-event API. Every `--check-every` seconds the faults pause and the invariants are checked
   once the daemon settles. At the end: the daemon's RSS at the start and the end of the churn,
   and what leaked (containers, ports listening in a VPN's namespace with no engine owning them,
   streams left active on engines that are gone or after every viewer left).

Run: `.venv/bin/python bench/soak.py [--rounds 50 --minutes 15 --seed N]` (or SOAK_ROUNDS,
SOAK_MINUTES); `make soak` runs it through tests/faults/test_soak.py.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import bench_daemon, machine, stop_daemon, write_result
from reconcilers.model import PortRange
from tests.faults.invariants import engine_ports, namespace, observe, settled_violations
from tests.faults.rounds import Bed, kill_round, new_bed, schedule
from tests.integration.harness import (
    TEST_LABEL,
    Daemon,
    containers,
    docker,
    free_port,
    set_vpn_health,
    stream_ended,
    stream_started,
    wait_for,
)
from tests.proxy_front import FrontSettings, real_acexy, running_front
from tests.sidecar.test_acexy_stacks import Viewer, free_range

PORT_RANGE_SIZE = 64  # vpn.port_range: 8 slots a VPN, room for every engine on one VPN
VIEWERS = 3  # viewers through acexy at once
EVENT_STREAMS = 3  # streams reported straight through the stream-event API, kept open
RECENT = 300  # streams checked at each checkpoint (the daemon keeps the last 1000 ended)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def daemon_rss(daemon: Daemon) -> int:
    assert daemon.process is not None
    return rss_kb(daemon.process.pid)


@contextmanager
def acexy(daemon: Daemon) -> Iterator[int]:
    """The proxy on the host, against the daemon; yields its port: the real acexy when ACEXY_BIN
    names a build (opt-in), else tests/proxy_front.py (acexy's calls in acexy's order)."""
    port = free_port()
    real = real_acexy()
    if real is None:
        settings = FrontSettings(
            orch_url=daemon.url, max_streams_per_engine=4, no_response_timeout_s=5, empty_timeout_s=5
        )
        with running_front(settings, port):
            wait_for("the proxy front listening", lambda: _answers(port), timeout=20)
            yield port
        return
    where = Path(tempfile.mkdtemp(prefix="soak-acexy-"))
    binary = where / "acexy"
    shutil.copy(real, binary)
    binary.chmod(0o755)
    env = {
        **os.environ,
        "ACEXY_ADDR": f"127.0.0.1:{port}",
        "ACEXY_ORCH_URL": daemon.url,
        "ACEXY_MAX_STREAMS_PER_ENGINE": "4",
        "ACEXY_NO_RESPONSE_TIMEOUT": "5s",
        "ACEXY_EMPTY_TIMEOUT": "5s",
    }
    with (where / "acexy.log").open("wb") as log:
        proc = subprocess.Popen([str(binary)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for("acexy listening", lambda: _answers(port), timeout=20)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@dataclass
class Churn:
    """The churn's client side and its tallies."""

    bed: Bed
    acexy_port: int
    stop: threading.Event = field(default_factory=threading.Event)
    paused: threading.Event = field(default_factory=threading.Event)
    tally: Counter[str] = field(default_factory=Counter)
    open_streams: set[str] = field(default_factory=set)
    recent: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def rng(self) -> random.Random:
        return self.bed.rng

    def running(self) -> bool:
        """False once told to stop; waits while a checkpoint runs."""
        while self.paused.is_set() and not self.stop.is_set():
            time.sleep(0.2)
        return not self.stop.is_set()

    def faults(self) -> None:
        """VPN flaps and engine deaths back to back."""
        rng = random.Random(self.rng.random())
        while self.running():
            if rng.random() < 0.5:
                vpn = rng.choice(self.bed.vpns)
                set_vpn_health(vpn, False)
                time.sleep(rng.uniform(0.1, 0.5))
                set_vpn_health(vpn, True)
                self.tally["flaps"] += 1
            else:
                running = self.bed.daemon.managed(running_only=True)
                if running:
                    how = rng.choice((("rm", "-f"), ("kill",)))
                    docker(*how, rng.choice(running), check=False)
                    self.tally["deaths"] += 1
                time.sleep(rng.uniform(0.0, 0.1))

    def event_streams(self) -> None:
        """Streams reported and ended through the stream-event API, as a proxy does."""
        rng = random.Random(self.rng.random())
        while self.running():
            with self.lock:
                open_now = list(self.open_streams)
            if open_now and (len(open_now) >= EVENT_STREAMS or rng.random() < 0.3):
                stream_id = rng.choice(open_now)
                status, _ = stream_ended(self.bed.daemon, stream_id)
                self.tally[f"event_streams_ended_{status}"] += 1
                with self.lock:
                    self.open_streams.discard(stream_id)
            else:
                self._report_one(rng)
            time.sleep(rng.uniform(0.1, 0.5))

    def _report_one(self, rng: random.Random) -> None:
        engines = self.bed.daemon.engines()
        if not engines:
            return
        engine = rng.choice(engines)
        status, body = stream_started(self.bed.daemon, engine["host"], engine["port"], uuid.uuid4().hex)
        self.tally[f"event_streams_started_{status}"] += 1
        if status == 200:
            with self.lock:
                self.open_streams.add(body["id"])
                self.recent = [*self.recent[-RECENT:], body["id"]]

    def viewers(self) -> None:
        """Viewers of random content through the proxy: a few KB each, held a moment, then closed."""
        rng = random.Random(self.rng.random())
        while self.running():
            batch = [Viewer(self.acexy_port, uuid.uuid4().hex + uuid.uuid4().hex[:8]) for _ in range(VIEWERS)]
            for viewer in batch:
                viewer.start()
            for viewer in batch:
                viewer.received.wait(45)
                time.sleep(rng.uniform(0.0, 2.0))
                viewer.leave.set()
                viewer.join(timeout=10)
                self.tally["viewers_total"] += 1
                self.tally["viewers_served" if viewer.data and not viewer.error else "viewers_failed"] += 1

    def checkpoint(self) -> list[str]:
        """Faults and new streams paused, the daemon settled: the invariants broken (none, when
        all hold). Streams already open stay open."""
        self.paused.set()
        try:
            time.sleep(2)  # a flap in progress finishes
            with self.lock:
                watched = set(self.recent) & self.open_streams
            return settled_violations(self.bed.daemon, self.bed.desired(), watched, timeout=120)
        finally:
            self.paused.clear()


def listening_ports(vpn: str) -> set[int]:
    """TCP ports listening inside a VPN container's network namespace (its /proc/net/tcp)."""
    text = docker("exec", vpn, "cat", "/proc/net/tcp", "/proc/net/tcp6", check=False)
    found = set()
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A" and ":" in fields[1]:
            found.add(int(fields[1].rsplit(":", 1)[1], 16))
    return found


def leaked_ports(bed: Bed, port_range: PortRange) -> list[str]:
    """Ports listening in a VPN's namespace, in the engines' range or a forwarded port, that no
    live engine there owns."""
    observed = observe(bed.daemon, bed.vpns)
    out = []
    for vpn in bed.vpns:
        ns = f"container:{observed.vpn_ids.get(vpn)}"
        owned = {p for c in observed.containers if namespace(c) == ns for p in engine_ports(c)}
        engine_like = {
            p
            for p in listening_ports(vpn)
            if port_range.start <= p <= port_range.end or p == bed.forwarded[vpn]
        }
        out += [f"{vpn}:{port}" for port in sorted(engine_like - owned)]
    return out


def leaked_containers(bed: Bed) -> list[str]:
    """Containers of the run (every label of the run, managed or not) that are not one of the
    desired running engines."""
    running = set(bed.daemon.managed(running_only=True))
    out = [
        f"{cid[:12]} is not a running engine"
        for cid in containers(f"label={TEST_LABEL}.run={bed.daemon.run_id}")
        if cid not in running
    ]
    if len(running) > bed.replicas:
        out.append(f"{len(running)} running engines, {bed.replicas} desired")
    return out


def leaked_streams(bed: Bed) -> list[str]:
    """Streams still active once every client has left: none should be."""
    status, active = bed.daemon.get("/streams?status=started")
    assert status == 200, active
    return [f"{s['id']} on {s['container_id'][:12]}" for s in active]


def churn(bed: Bed, port_range: PortRange, minutes: float, check_every: float) -> dict[str, Any]:
    with acexy(bed.daemon) as acexy_port:
        client = Churn(bed=bed, acexy_port=acexy_port)
        rss_start = daemon_rss(bed.daemon)
        workers = [
            threading.Thread(target=client.faults),
            threading.Thread(target=client.event_streams),
            threading.Thread(target=client.viewers),
        ]
        for worker in workers:
            worker.start()
        began = time.monotonic()
        checkpoints: list[dict[str, Any]] = []
        while time.monotonic() - began < minutes * 60:
            time.sleep(min(check_every, max(0.0, minutes * 60 - (time.monotonic() - began))))
            at = round(time.monotonic() - began)
            checkpoints.append(
                {"at_s": at, "rss_kb": daemon_rss(bed.daemon), "violations": client.checkpoint()}
            )
        client.stop.set()
        for worker in workers:
            worker.join(timeout=120)
        for stream_id in list(client.open_streams):
            status, _ = stream_ended(bed.daemon, stream_id)
            client.tally[f"event_streams_ended_{status}"] += 1
        client.open_streams.clear()
        final = client.checkpoint()
        rss_end = daemon_rss(bed.daemon)
        time.sleep(3)  # acexy's last stream_ended calls are fire and forget
    return {
        "minutes": minutes,
        "flaps": client.tally["flaps"],
        "engine_deaths": client.tally["deaths"],
        "viewers": {k.removeprefix("viewers_"): v for k, v in client.tally.items() if "viewers" in k},
        "event_streams": {
            k.removeprefix("event_streams_"): v for k, v in client.tally.items() if "event_" in k
        },
        "proxy": "acexy" if real_acexy() else "tests/proxy_front.py",
        "daemon_rss_kb": {
            "start": rss_start,
            "end": rss_end,
            "at_checkpoints": {str(c["at_s"]): c["rss_kb"] for c in checkpoints},
        },
        "checkpoints": len(checkpoints) + 1,
        "checkpoint_violations": [c for c in checkpoints if c["violations"]]
        + ([{"at_s": "end", "violations": final}] if final else []),
        "leaks": {
            "containers": leaked_containers(bed),
            "ports": leaked_ports(bed, port_range),
            "streams": leaked_streams(bed),
        },
    }


def kill_rounds(bed: Bed, rounds: int) -> dict[str, Any]:
    done: Counter[str] = Counter()
    failures = []
    for index, action in enumerate(schedule(bed.rng, rounds), start=1):
        try:
            kill_round(bed, action)
        except AssertionError as exc:
            failures.append({"round": index, "action": action, "violations": str(exc)})
        done[action] += 1
        failed = bool(failures) and failures[-1]["round"] == index
        print(f"round {index}/{rounds}: {action}: {'FAILED' if failed else 'ok'}")
    return {
        "rounds": rounds,
        "by_action": dict(done),
        "failures": failures,
        "streams_reported": len(bed.reported),
    }


def run_soak(daemon: Daemon, vpns: tuple[str, ...], rounds: int, minutes: float, seed: int) -> dict[str, Any]:
    """Both parts on one bed; the report (figures, failures, leaks) for bench/results/soak.json."""
    began = time.monotonic()
    port_range = free_range(PORT_RANGE_SIZE)  # published on the host: acexy dials localhost
    bed = new_bed(daemon, vpns, seed, published=port_range)
    report: dict[str, Any] = {"seed": seed, "kill_rounds": kill_rounds(bed, rounds)}
    bed.settle()
    report["churn"] = churn(bed, port_range, minutes, check_every=120)
    report["wall_s"] = round(time.monotonic() - began)
    report["machine"] = machine()
    return report


def clean(report: dict[str, Any]) -> bool:
    """Nothing broken, nothing leaked."""
    churned = report["churn"]
    return not (
        report["kill_rounds"]["failures"]
        or churned["checkpoint_violations"]
        or any(churned["leaks"].values())
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("SOAK_ROUNDS") or 50))
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES") or 15))
    parser.add_argument("--seed", type=int, default=random.randrange(1 << 32))
    args = parser.parse_args()
    suffix = uuid.uuid4().hex[:6]
    vpns = (f"gluetun-a-{suffix}", f"gluetun-b-{suffix}")
    daemon = bench_daemon("soak", {}, log_level="INFO")
    try:
        report = run_soak(daemon, vpns, args.rounds, args.minutes, args.seed)
    finally:
        stop_daemon(daemon)
    report["command"] = " ".join(["python bench/soak.py", *sys.argv[1:]])
    write_result("soak", report)
    return 0 if clean(report) else 1


if __name__ == "__main__":
    sys.exit(main())
