"""The soak: the fault suite's long run, with its figures in bench/results/stream_safety_soak.json
(bench/results/soak.json keeps the figures of the runs before the blips and viewers' accounting
were added).

Two parts on one bed (two stand-in VPNs forwarding a port each, each joined to a local web
server that the daemon's tunnel probe dials, a redundant-mode daemon):

1. kill rounds (testkit/rounds.py): a fault under way, the daemon SIGKILLed in the middle,
   started again, the invariants checked once it settles; `--rounds` of them.
2. churn: for `--minutes`, faults one at a time (bench/soak.py's FAULT_WEIGHTS): real blips of
   1-20 s (a Gluetun disconnected from the probe's web server, so the probe's dials fail, then
   connected again; a quarter of them with a daemon SIGKILL and restart inside), Docker health
   flips of 1-20 s, Gluetun `docker restart`s, engine kills (`docker rm -f` or `kill`) and
   daemon SIGKILLs with a restart, while SOAK_VIEWERS viewers (6) keep watching through the
   proxy (testkit/proxy_front.py, or the real acexy when ACEXY_BIN names a build): each asks for
   its own content, reads bytes continuously for 20-240 s and leaves; another takes its place.
   Streams are also reported straight through the stream-event API. Every viewer whose stream
   ended before it chose to leave is a cut, attributed from the test's own log of what it did
   (bench/cuts.py): its engine killed by the test, or its namespace dead with a Gluetun the test
   restarted, or neither: UNEXPLAINED, a breach of docs/stream-safety.md's rule, listed with
   the acts around it and the daemon's log lines about its engine. Every `--check-every` seconds
   the faults pause and the invariants are checked once the daemon settles. At the end: the
   daemon's RSS, the streams the daemon itself ended (by reason), and what leaked (containers,
   ports listening in a VPN's namespace with no engine owning them, streams left active).

Run: `.venv/bin/python bench/soak.py [--rounds 50 --minutes 15 --seed N]` (or SOAK_ROUNDS,
SOAK_MINUTES, SOAK_VIEWERS); `make soak` runs it through tests/faults/test_soak.py, which fails on
any unexplained cut.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import bench_daemon, machine, stop_daemon, write_result
from bench.cuts import (
    BLIP,
    DAEMON_KILLED,
    DOCKERD_LEAD_S,
    DOCKERD_RESTARTED,
    ENGINE_KILLED,
    HEALTH_FLIP,
    NAMESPACE_DIED,
    UNEXPLAINED,
    VPN_RESTARTED,
    Act,
    Watch,
    around,
    cause,
    same_container,
)
from reconcilers.model import PortRange
from testkit.compose import free_range
from testkit.harness import (
    TEST_LABEL,
    Daemon,
    containers,
    docker,
    free_port,
    inspect,
    set_vpn_health,
    stream_ended,
    stream_started,
    wait_for,
)
from testkit.internet import Internet, internet
from testkit.invariants import engine_ports, namespace, observe, settled_violations
from testkit.proxy_front import ENGINE_HEADER, FrontSettings, real_acexy, running_front
from testkit.rounds import Bed, kill_round, new_bed, schedule

RESULT = "stream_safety_soak"  # bench/results/<RESULT>.json
PORT_RANGE_SIZE = 64  # vpn.port_range: 8 slots a VPN, room for every engine on one VPN
VIEWERS = int(os.environ.get("SOAK_VIEWERS") or 6)  # viewers watching through the proxy at once
STAY_S = (20.0, 240.0)  # how long a viewer chooses to watch
WATCH_READ = 8192  # bytes a viewer reads at a time (the stand-in engine sends ~80 KB/s)
EVENT_STREAMS = 3  # streams reported straight through the stream-event API, kept open
RECENT = 300  # streams checked at each checkpoint (the daemon keeps the last 1000 ended)
# the churn's faults, one at a time: kind -> weight, and the pause between two
FAULT_WEIGHTS = {"blip": 4, "health_flip": 1, "vpn_restart": 1, "engine_kill": 2, "daemon_kill": 2}
FAULT_GAP_S = (5.0, 20.0)
BLIP_S = (1.0, 20.0)  # how long a blip or a health flip lasts
DAEMON_KILL_IN_BLIP = 0.25  # the share of blips with a daemon SIGKILL and restart inside
DAEMON_REASONS = {"engine_gone", "engine_restarted", "evicted_over_cap", "unconfirmed", "stat_url_gone"}


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
    names a build (opt-in), else testkit/proxy_front.py (acexy's calls in acexy's order)."""
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


class Watcher(threading.Thread):
    """One viewer watching through the proxy: GET /ace/getstream?id=<its own content>, then reading
    bytes continuously until it chooses to leave (after `stay_s`, or when told), or the stream
    ends or breaks first: a cut. Which engine serves it comes from the front's ENGINE_HEADER."""

    def __init__(self, number: int, proxy_port: int, stay_s: float) -> None:
        super().__init__(daemon=True, name=f"viewer-{number}")
        self.viewer = f"v{number}"
        self.content_id = uuid.uuid4().hex + uuid.uuid4().hex[:8]
        self.url = f"http://127.0.0.1:{proxy_port}/ace/getstream?id={self.content_id}"
        self.stay_s = stay_s
        self.leave = threading.Event()
        self.began = time.monotonic()
        self.began_wall = time.time()
        self.first_byte: float | None = None
        self.ended: float | None = None
        self.engine = ""
        self.received = 0
        self.outcome = "watching"  # then: left, cut or start_failed
        self.error: str | None = None

    def run(self) -> None:
        try:
            with urllib.request.urlopen(self.url, timeout=60) as resp:  # noqa: S310 (loopback http)
                self.engine = resp.headers.get(ENGINE_HEADER, "")
                while True:
                    if self.leave.is_set() or (
                        self.first_byte is not None and time.monotonic() - self.first_byte >= self.stay_s
                    ):
                        self.outcome = "left"
                        return
                    chunk = resp.read(WATCH_READ)
                    if not chunk:
                        self.error = "the stream ended (EOF)"
                        break
                    if self.first_byte is None:
                        self.first_byte = time.monotonic()
                    self.received += len(chunk)
        except urllib.error.HTTPError as exc:
            self.error = f"HTTP {exc.code}: {exc.read().decode(errors='replace')[:200]}"
        except (OSError, http.client.HTTPException) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.ended = time.monotonic()
            if self.outcome == "watching":
                self.outcome = "cut" if self.received else "start_failed"

    def watch(self) -> Watch:
        assert self.ended is not None
        return Watch(viewer=self.viewer, engine=self.engine, began=self.began, cut_at=self.ended)

    def summary(self, t0: float) -> dict[str, Any]:
        return {
            "viewer": self.viewer,
            "content_id": self.content_id,
            "engine": self.engine[:12],
            "asked_at_s": round(self.began - t0, 1),
            "asked_at_utc": time.strftime("%H:%M:%S", time.gmtime(self.began_wall)),
            "first_byte_s": None if self.first_byte is None else round(self.first_byte - t0, 1),
            "ended_at_s": None if self.ended is None else round(self.ended - t0, 1),
            "bytes": self.received,
            "error": self.error,
        }


@dataclass
class Churn:
    """The churn's client side, its faults, and their tallies and log."""

    bed: Bed
    acexy_port: int
    net: Internet
    began: float = field(default_factory=time.monotonic)
    stop: threading.Event = field(default_factory=threading.Event)
    paused: threading.Event = field(default_factory=threading.Event)
    acting: threading.Lock = field(default_factory=threading.Lock)  # held for each fault
    tally: Counter[str] = field(default_factory=Counter)
    open_streams: set[str] = field(default_factory=set)
    recent: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    acts: list[Act] = field(default_factory=list)  # what the test did, in order
    watchers: list[Watcher] = field(default_factory=list)  # every viewer started
    fault_errors: list[str] = field(default_factory=list)  # a fault that could not be done
    blips_hidden: int = 0  # blips during which /engines stopped listing the VPN's engines

    @property
    def rng(self) -> random.Random:
        return self.bed.rng

    def running(self) -> bool:
        """False once told to stop; waits while a checkpoint runs."""
        while self.paused.is_set() and not self.stop.is_set():
            time.sleep(0.2)
        return not self.stop.is_set()

    def _act(self, act: Act) -> None:
        with self.lock:
            self.acts.append(act)
        print(f"[{act.at - self.began:7.1f}s] {act.kind} {act.target[:12]}", flush=True)

    # -- the faults ------------------------------------------------------------------------
    def faults(self) -> None:
        """One fault at a time, a random pause between two: real blips (the probe's target cut
        off from a Gluetun for 1-20 s, the daemon sometimes SIGKILLed in the middle), Docker
        health flips of 1-20 s, Gluetun `docker restart`s, engine kills, daemon SIGKILLs."""
        rng = random.Random(self.rng.random())
        kinds, weights = zip(*FAULT_WEIGHTS.items(), strict=True)
        while self.running():
            with self.acting:
                kind = rng.choices(kinds, weights)[0]
                try:
                    getattr(self, f"_{kind}")(rng)
                except (AssertionError, OSError, subprocess.SubprocessError) as exc:
                    self.fault_errors.append(f"{kind} at {time.monotonic() - self.began:.0f}s: {exc}"[:500])
                    self._daemon_up()
            self.stop.wait(rng.uniform(*FAULT_GAP_S))

    def _blip(self, rng: random.Random) -> None:
        vpn = rng.choice(self.bed.vpns)
        length = rng.uniform(*BLIP_S)
        at = time.monotonic()
        self.net.cut(vpn)
        hidden = False
        try:
            if rng.random() < DAEMON_KILL_IN_BLIP:
                hidden = self._hidden_within(vpn, rng.uniform(0, length), at)
                self._daemon_kill(rng)
            hidden = self._hidden_within(vpn, length, at) or hidden
        finally:
            self.net.mend(vpn)
        self.blips_hidden += hidden
        self._act(Act(kind=BLIP, at=at, target=vpn, until=time.monotonic()))

    def _hidden_within(self, vpn: str, length: float, since: float) -> bool:
        """Wait until `length` seconds after `since`, polling /engines: whether the daemon hid the
        VPN's engines meanwhile (the blip was real to it: the probe's dials failed)."""
        hidden = False
        while time.monotonic() - since < length:
            with contextlib.suppress(OSError, AssertionError):  # the daemon SIGKILLed, or starting
                hidden = hidden or not any(e.get("vpn_container") == vpn for e in self.bed.daemon.engines())
            time.sleep(0.5)
        return hidden

    def _health_flip(self, rng: random.Random) -> None:
        vpn = rng.choice(self.bed.vpns)
        at = time.monotonic()
        set_vpn_health(vpn, False)
        try:
            time.sleep(rng.uniform(*BLIP_S))
        finally:
            set_vpn_health(vpn, True)
        self._act(Act(kind=HEALTH_FLIP, at=at, target=vpn, until=time.monotonic()))

    def _vpn_restart(self, rng: random.Random) -> None:
        vpn = rng.choice(self.bed.vpns)
        in_namespace = frozenset(engines_of(self.bed, vpn))
        at = time.monotonic()
        docker("restart", "-t", "1", vpn)
        self._act(Act(kind=VPN_RESTARTED, at=at, target=vpn, engines=in_namespace))

    def _engine_kill(self, rng: random.Random) -> None:
        running = engines_of(self.bed, running_only=True)
        if not running:
            return
        victim = rng.choice(running)
        how = rng.choice((("rm", "-f"), ("kill",)))
        self._act(Act(kind=ENGINE_KILLED, at=time.monotonic(), target=victim))
        docker(*how, victim, check=False)

    def _daemon_kill(self, rng: random.Random) -> None:
        at = time.monotonic()
        self.bed.daemon.stop(signal.SIGKILL)
        try:
            time.sleep(rng.uniform(0.0, 3.0))
            self._daemon_up()
        finally:
            self._act(Act(kind=DAEMON_KILLED, at=at, until=time.monotonic()))

    def _daemon_up(self) -> None:
        """The daemon running and answering /health: started again if it is not running, waited
        for longer than Daemon.start does on a loaded machine."""
        daemon = self.bed.daemon
        if daemon.process is None or daemon.process.poll() is not None:
            try:
                daemon.start()
                return
            except AssertionError as exc:
                if daemon.process is None or daemon.process.poll() is not None:
                    raise
                self.fault_errors.append(f"slow daemon start: {exc}"[:300])
        wait_for("the daemon's /health", lambda: _answers_health(daemon), timeout=120)

    # -- Docker itself, shared with other sessions ---------------------------------------------
    def dockerd_watch(self) -> None:
        """Notice dockerd restarting under the run (Docker is shared: someone else may restart
        it; every container stops then): log it as an act, and once Docker answers again start
        the bed's own containers it stopped (the probe's web server, the Gluetuns), as a host's
        restart policy would."""
        known = dockerd_identity()
        while not self.stop.wait(0.5):
            now = dockerd_identity()
            if now == known or not known:
                known = now or known
                continue
            gone_at = time.monotonic()
            wait_for("dockerd answering", _dockerd_answers, timeout=600, interval=1)
            known = dockerd_identity()
            with self.acting:
                for name in (self.net.network, *self.bed.vpns):
                    docker("start", name, check=False)
                for vpn in self.bed.vpns:
                    docker("network", "connect", self.net.network, vpn, check=False)  # if it was cut
            self._act(Act(kind=DOCKERD_RESTARTED, at=gone_at, until=time.monotonic()))

    # -- the clients -----------------------------------------------------------------------
    def event_streams(self) -> None:
        """Streams reported and ended through the stream-event API, as a proxy does (a call
        the daemon, SIGKILLed, cannot answer is counted and skipped)."""
        rng = random.Random(self.rng.random())
        while self.running():
            try:
                self._event_stream_step(rng)
            except (OSError, AssertionError):
                self.tally["event_streams_daemon_unreachable"] += 1
            time.sleep(rng.uniform(0.1, 0.5))

    def _event_stream_step(self, rng: random.Random) -> None:
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
        """VIEWERS viewers watching at all times, each for a random while (new ones wait while a
        checkpoint runs; those watching go on watching)."""
        rng = random.Random(self.rng.random())
        live: list[Watcher] = []
        while self.running():
            live = [w for w in live if w.is_alive()]
            if len(live) < VIEWERS:
                watcher = Watcher(len(self.watchers) + 1, self.acexy_port, rng.uniform(*STAY_S))
                self.watchers.append(watcher)
                live.append(watcher)
                watcher.start()
            time.sleep(0.5)
        for watcher in live:
            watcher.leave.set()
        for watcher in live:
            watcher.join(timeout=30)

    def checkpoint(self) -> tuple[list[str], int | None]:
        """Faults and new streams paused, the daemon settled: the invariants broken (none, when
        all hold) and the daemon's RSS. Streams already open stay open, viewers go on watching.
        A checkpoint that cannot be made (Docker gone meanwhile) is one violation saying why."""
        self.paused.set()
        try:
            with self.acting:  # the fault under way finishes first
                time.sleep(2)
                with self.lock:
                    watched = set(self.recent) & self.open_streams
                try:
                    broken = settled_violations(self.bed.daemon, self.bed.desired(), watched, timeout=120)
                    return broken, daemon_rss(self.bed.daemon)
                except (AssertionError, OSError, subprocess.SubprocessError) as exc:
                    return [f"checkpoint failed: {exc}"[:500]], None
        finally:
            self.paused.clear()

    # -- the accounting --------------------------------------------------------------------
    def viewer_report(self) -> dict[str, Any]:
        """Every viewer's fate; each cut attributed from the acts (bench/cuts.py), an
        unexplained one with its context and the daemon's log lines about its engine."""
        outcomes: Counter[str] = Counter(w.outcome for w in self.watchers)
        causes: Counter[str] = Counter()
        unexplained = []
        for watcher in self.watchers:
            if watcher.outcome != "cut":
                continue
            why = cause(watcher.watch(), self.acts)
            causes[why] += 1
            if why == UNEXPLAINED:
                assert watcher.ended is not None
                unexplained.append(
                    {
                        **watcher.summary(self.began),
                        "acts_around": [self._act_view(a) for a in around(watcher.ended, self.acts)],
                        "daemon_log": daemon_lines_about(self.bed.daemon, watcher.engine),
                    }
                )
        return {
            "watching_at_once": VIEWERS,
            "stay_s": list(STAY_S),
            "started": len(self.watchers),
            "served": sum(1 for w in self.watchers if w.received),
            "start_failed": outcomes["start_failed"],
            "left_by_choice": outcomes["left"],
            "cut": {
                "engine_killed_by_the_test": causes[ENGINE_KILLED],
                "namespace_died": causes[NAMESPACE_DIED],
                "dockerd_restarted_outside_the_test": causes[DOCKERD_RESTARTED],
                "unexplained": causes[UNEXPLAINED],
            },
            "bytes": sum(w.received for w in self.watchers),
            "watched_s": round(sum((w.ended or 0) - w.first_byte for w in self.watchers if w.first_byte)),
            "start_failures_sample": [
                w.summary(self.began) for w in self.watchers if w.outcome == "start_failed"
            ][:10],
            "unexplained_cuts": unexplained,
        }

    def _act_view(self, act: Act) -> dict[str, Any]:
        return {
            "kind": act.kind,
            "at_s": round(act.at - self.began, 1),
            "until_s": None if act.until is None else round(act.until - self.began, 1),
            "target": act.target[:12],
            **({"engines": sorted(e[:12] for e in act.engines)} if act.engines else {}),
        }

    def fault_report(self) -> dict[str, Any]:
        def spans(kind: str) -> dict[str, Any]:
            lengths = [a.until - a.at for a in self.acts if a.kind == kind and a.until is not None]
            return {
                "count": len(lengths),
                "seconds": {
                    "min": round(min(lengths), 1) if lengths else None,
                    "mean": round(sum(lengths) / len(lengths), 1) if lengths else None,
                    "max": round(max(lengths), 1) if lengths else None,
                    "total": round(sum(lengths)),
                },
            }

        blips = [a for a in self.acts if a.kind == BLIP]
        return {
            "blips": {
                **spans(BLIP),
                "that_hid_the_vpns_engines": self.blips_hidden,
                "with_a_daemon_sigkill_inside": sum(1 for b in blips if self._killed_in(b)),
            },
            "health_flips": spans(HEALTH_FLIP),
            "gluetun_restarts": sum(1 for a in self.acts if a.kind == VPN_RESTARTED),
            "engine_kills": sum(1 for a in self.acts if a.kind == ENGINE_KILLED),
            "daemon_sigkills": sum(1 for a in self.acts if a.kind == DAEMON_KILLED),
            "dockerd_restarts_outside_the_test": [
                self._act_view(a) for a in self.acts if a.kind == DOCKERD_RESTARTED
            ],
            "errors": self.fault_errors,
        }

    def _dockerd_down_around(self, stamp: Any, since_wall: float) -> bool:
        """A daemon's stream end within DOCKERD_LEAD_S before a dockerd restart and 3 minutes
        after (the resync that follows it)."""
        wall = _wall(stamp)
        if wall is None:
            return False
        for act in self.acts:
            if act.kind == DOCKERD_RESTARTED:
                at = since_wall + (act.at - self.began)
                until = since_wall + ((act.until or act.at) - self.began)
                if at - DOCKERD_LEAD_S <= wall <= until + 180:
                    return True
        return False

    def _killed_in(self, blip: Act) -> bool:
        assert blip.until is not None
        return any(a.kind == DAEMON_KILLED and blip.at <= a.at <= blip.until for a in self.acts)

    def daemon_ends(self, since_wall: float) -> dict[str, Any]:
        """Streams the daemon itself ended during the churn, by reason; those it ended as
        engine_gone/engine_restarted on an engine the test never touched are listed."""
        status, streams = self.bed.daemon.get("/streams?status=ended")
        assert status == 200, streams
        touched = [a.target for a in self.acts if a.kind == ENGINE_KILLED] + [
            e for a in self.acts if a.kind == VPN_RESTARTED for e in a.engines
        ]
        by_reason: Counter[str] = Counter()
        odd = []
        for stream in streams:
            reason = str(stream.get("end_reason") or "")
            if reason not in DAEMON_REASONS or not _after(stream.get("ended_at"), since_wall):
                continue
            by_reason[reason] += 1
            engine = str(stream.get("container_id") or "")
            if self._dockerd_down_around(stream.get("ended_at"), since_wall):
                continue  # every container stopped with dockerd
            if reason in ("engine_gone", "engine_restarted") and not any(
                same_container(engine, t) for t in touched
            ):
                odd.append({"stream": stream.get("id"), "engine": engine[:12], "reason": reason})
        return {"by_reason": dict(by_reason), "on_engines_the_test_never_touched": odd}


def _wall(stamp: Any) -> float | None:
    if isinstance(stamp, str):
        try:
            return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return float(stamp) if isinstance(stamp, int | float) else None


def _after(stamp: Any, since_wall: float) -> bool:
    """An API timestamp (epoch seconds or ISO 8601) at or after `since_wall`; unknown: True."""
    if isinstance(stamp, int | float):
        return float(stamp) >= since_wall
    if isinstance(stamp, str):
        try:
            return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() >= since_wall
        except ValueError:
            return True
    return True


def dockerd_identity() -> str:
    """dockerd's PID and start time ("" when none runs or it cannot be seen): a change is a
    restart."""
    found = subprocess.run(["pgrep", "-xo", "dockerd"], capture_output=True, text=True, check=False)
    pid = found.stdout.strip()
    if not pid:
        return ""
    try:
        return f"{pid}:{Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[19]}"
    except (OSError, IndexError):
        return ""


def _dockerd_answers() -> bool:
    return subprocess.run(["docker", "version"], capture_output=True, check=False).returncode == 0


def _answers_health(daemon: Daemon) -> bool:
    try:
        return daemon.get("/health")[0] == 200
    except OSError:
        return False


def engines_of(bed: Bed, vpn: str | None = None, running_only: bool = False) -> list[str]:
    """The run's engine containers (not the tunnel probes), of one VPN's namespace or all."""
    filters = ["label=orchestrator.managed=acestream", f"label={TEST_LABEL}.run={bed.daemon.run_id}"]
    if vpn is not None:
        filters.append(f"label=orchestrator.vpn={vpn}")
    return [
        cid
        for cid in containers(*filters, all_states=not running_only)
        if (info := inspect(cid)) is not None
        and (info["Config"].get("Labels") or {}).get("orchestrator.role") != "probe"
    ]


def daemon_lines_about(daemon: Daemon, engine: str) -> list[dict[str, Any]]:
    """The daemon's log events naming an engine (by its 12-character ID), last 40."""
    if not engine:
        return []
    short = engine[:12]
    return [ev for ev in daemon.log_events() if short in json.dumps(ev)][-40:]


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
    """Containers of the run (every label of the run, managed or not) that are neither one of the
    desired running engines nor the one running tunnel probe of each VPN."""
    running = set(engines_of(bed, running_only=True))
    probes: Counter[str] = Counter()
    out = []
    for cid in containers(f"label={TEST_LABEL}.run={bed.daemon.run_id}"):
        if cid in running:
            continue
        labels = ((inspect(cid) or {}).get("Config") or {}).get("Labels") or {}
        state = ((inspect(cid) or {}).get("State") or {}).get("Running")
        if labels.get("orchestrator.role") == "probe" and state:
            probes[labels.get("orchestrator.vpn", "")] += 1
            if probes[labels.get("orchestrator.vpn", "")] == 1:
                continue
        out.append(f"{cid[:12]} is not a running engine nor a VPN's one probe")
    if len(running) > bed.replicas:
        out.append(f"{len(running)} running engines, {bed.replicas} desired")
    return out


def leaked_streams(bed: Bed) -> list[str]:
    """Streams still active once every client has left: none should be."""
    status, active = bed.daemon.get("/streams?status=started")
    assert status == 200, active
    return [f"{s['id']} on {s['container_id'][:12]}" for s in active]


def churn(
    bed: Bed, net: Internet, port_range: PortRange, minutes: float, check_every: float
) -> dict[str, Any]:
    with acexy(bed.daemon) as acexy_port:
        client = Churn(bed=bed, acexy_port=acexy_port, net=net)
        since_wall = time.time()
        rss_start = daemon_rss(bed.daemon)
        workers = [
            threading.Thread(target=client.faults, name="faults"),
            threading.Thread(target=client.event_streams, name="event-streams"),
            threading.Thread(target=client.viewers, name="viewers"),
            threading.Thread(target=client.dockerd_watch, name="dockerd-watch"),
        ]
        for worker in workers:
            worker.start()
        checkpoints: list[dict[str, Any]] = []
        while time.monotonic() - client.began < minutes * 60:
            time.sleep(min(check_every, max(0.0, minutes * 60 - (time.monotonic() - client.began))))
            at = round(time.monotonic() - client.began)
            violations, rss = client.checkpoint()
            checkpoints.append({"at_s": at, "rss_kb": rss, "violations": violations})
            print(
                f"checkpoint at {at}s: {len(violations)} violations, {len(client.watchers)} viewers",
                flush=True,
            )
        client.stop.set()
        for worker in workers:
            worker.join(timeout=180)
        for stream_id in list(client.open_streams):
            status, _ = stream_ended(bed.daemon, stream_id)
            client.tally[f"event_streams_ended_{status}"] += 1
        client.open_streams.clear()
        for stream_id in bed.reported:  # the kill rounds' client leaves too
            stream_ended(bed.daemon, stream_id)
        time.sleep(3)  # the proxy's last stream_ended calls are fire and forget
        final, rss_end = client.checkpoint()
    return {
        "minutes": minutes,
        "faults": client.fault_report(),
        "viewers": client.viewer_report(),
        "daemon_ended_streams": client.daemon_ends(since_wall),
        "event_streams": {
            k.removeprefix("event_streams_"): v for k, v in client.tally.items() if "event_" in k
        },
        "proxy": "acexy" if real_acexy() else "testkit/proxy_front.py",
        "daemon_rss_kb": {
            "start": rss_start,
            "end": rss_end,
            "at_checkpoints": {str(c["at_s"]): c["rss_kb"] for c in checkpoints},
            "note": "the daemon is SIGKILLed and started again during the churn: each figure is "
            "the process running at that moment",
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
    """Both parts on one bed; the report (figures, failures, leaks) for bench/results/RESULT.json."""
    began = time.monotonic()
    port_range = free_range(PORT_RANGE_SIZE)  # published on the host: acexy dials localhost
    with internet() as net:
        bed = new_bed(daemon, vpns, seed, published=port_range, internet=net)
        report: dict[str, Any] = {"seed": seed, "kill_rounds": kill_rounds(bed, rounds)}
        bed.settle()
        report["churn"] = churn(bed, net, port_range, minutes, check_every=120)
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
        or churned["viewers"]["cut"]["unexplained"]
        or churned["daemon_ended_streams"]["on_engines_the_test_never_touched"]
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
    write_result(RESULT, report)
    return 0 if clean(report) else 1


if __name__ == "__main__":
    sys.exit(main())
