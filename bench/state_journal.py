"""What the stream journal costs and what it buys.

- Cost: one stream reported and ended through the store, with the SQLite write-through and
  without it (memory only), in process: microseconds per change on the event loop's side (the
  writes themselves are the writer thread's), and the writer's throughput.
- Disk: a whole simulated day at 20 active streams and the default liveness round (30 s, every
  stream confirmed every round, `engines.stream_ttl_s` 6 h), on the real journal in a temporary
  directory: bytes the process passed to write(2) (`/proc/self/io` wchar: the WAL, its
  checkpoints into the database, nothing else writes meanwhile), with no churn and with every
  stream replaced after an hour. Goal: at most 50 MB a day.
- Event loop: the worst time one store call that reaches the journal (start, end, confirm,
  forget) took on the calling thread, over that day and a burst of 5000 changes back to back
  (the writer busy meanwhile). Goal: about 1 ms.
- What it buys: a daemon SIGKILLed with streams on its engines, started again: the time from the
  new process's start to `GET /streams?status=started` listing every one of them (the proxy's
  view of which engines are busy), on the stand-in engines.

Run: `.venv/bin/python bench/state_journal.py [--streams 200 --rounds 5] [--no-daemon]`. Writes
bench/results/state_journal.json (`--no-daemon`: the in-process figures only, not written).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import bench_daemon, machine, stop_daemon, summary, write_result
from orchestrator.state.journal import StreamJournal
from orchestrator.state.store import StateStore
from orchestrator.state.streams import Stream
from testkit.harness import (
    REPO,
    Daemon,
    http_json,
    remove_test_containers,
)
from testkit.sightings import engine_info


class Timed:
    """Each call's wall time on the calling thread (the event loop's, in the daemon)."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    def __call__(self, call: Callable[[], object]) -> None:
        began = time.perf_counter()
        call()
        self.samples.append(time.perf_counter() - began)

    def figures(self) -> dict[str, float]:
        ordered = sorted(self.samples)
        return {
            "calls": len(ordered),
            "p50_us": round(ordered[len(ordered) // 2] * 1e6, 1),
            "p99_us": round(ordered[int(len(ordered) * 0.99)] * 1e6, 1),
            "worst_us": round(ordered[-1] * 1e6, 1),
            "over_1ms": sum(1 for x in ordered if x > 1e-3),
        }


class TimedJournal(StreamJournal):
    """The journal, each of its calls from the store timed on the caller's thread."""

    def __init__(self, directory: Path | None, timed: Timed) -> None:
        super().__init__(directory)
        self._timed = timed

    def put(self, streams: Iterable[Stream], usage: dict[str, float]) -> None:
        self._timed(lambda: super(TimedJournal, self).put(streams, usage))

    def confirm(self, stream_ids: Iterable[str], at: float, ttl_s: float) -> None:
        self._timed(lambda: super(TimedJournal, self).confirm(stream_ids, at, ttl_s))

    def forget_engine(self, container_id: str) -> None:
        self._timed(lambda: super(TimedJournal, self).forget_engine(container_id))


def per_change_us(directory: Path | None, changes: int, timed: Timed | None = None) -> dict[str, float]:
    """Median microseconds of one start + end pair on the caller's side, in batches of 100; and
    the writer's throughput (changes a second, until all are on disk)."""
    journal = StreamJournal(directory)
    store = StateStore(journal=journal)
    store.restore_streams()
    store.replace_engines([engine_info("e", started_at=time.time() - 60)], 0)
    batches = []
    timed = timed or Timed()
    whole = time.perf_counter()
    for batch in range(changes // 100):
        began = time.perf_counter()
        for i in range(100):
            sid = f"s{batch}-{i}"
            new = Stream(id=sid, container_id="e", key_type="content_id", key=sid, started_at=time.time())
            timed(lambda new=new: store.demand.start_stream(new))  # type: ignore[misc]
            timed(lambda sid=sid: store.demand.end_stream(sid, "completed", time.time()))  # type: ignore[misc]
        batches.append((time.perf_counter() - began) / 200 * 1e6)
    journal.close()
    took = time.perf_counter() - whole
    return {"caller_us": round(statistics.median(batches), 1), "written_per_s": round(2 * changes / took)}


def wchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise RuntimeError("no wchar in /proc/self/io")


def one_day(
    *,
    streams: int,
    round_s: float,
    ttl_s: float,
    lifetime_s: float | None,
    timed: Timed,
    journal_calls: Timed,
    durable: bool = True,
) -> dict[str, float]:
    """A day of liveness rounds at `streams` active streams, each replaced after `lifetime_s`
    (None: the same streams all day); bytes written and the size of the files at the end.
    `timed`: the store's calls; `journal_calls`: the journal's own, inside them."""
    with tempfile.TemporaryDirectory() as state:
        journal = TimedJournal(Path(state) if durable else None, journal_calls)
        store = StateStore(journal=journal)
        store.restore_streams()
        t0 = 1_800_000_000.0
        store.replace_engines([engine_info(c, slot=i, started_at=t0 - 60) for i, c in enumerate("ab")], 0)
        born: dict[str, float] = {}
        serial = 0

        def start(at: float) -> None:
            nonlocal serial
            serial += 1
            sid = f"s{serial}"
            new = Stream(
                id=sid,
                container_id="ab"[serial % 2],
                key_type="content_id",
                key=f"{serial:040x}",
                playback_session_id=f"{serial:032x}",
                stat_url=f"http://engine:6878/ace/stat/{serial:040x}/{serial:032x}",
                command_url=f"http://engine:6878/ace/cmd/{serial:040x}/{serial:032x}",
                started_at=at,
            )
            timed(lambda: store.demand.start_stream(new))
            born[sid] = at

        for _ in range(streams):
            start(t0)
        journal.flush()
        before = wchar()
        rounds = int(86400 / round_s)
        for n in range(1, rounds + 1):
            now = t0 + n * round_s
            if lifetime_s is not None:
                for sid in [s for s, at in born.items() if now - at >= lifetime_s]:
                    timed(lambda sid=sid, now=now: store.demand.end_stream(sid, "completed", now))  # type: ignore[misc]
                    del born[sid]
                    start(now)
            ids = list(store.demand.streams.active)
            timed(lambda ids=ids, now=now: store.demand.confirm_streams(ids, now, ttl_s))  # type: ignore[misc]
            journal.flush()  # rounds are 30 s apart: each is a batch of its own, as in the daemon
            time.sleep(0.001)  # and the writer is back waiting when the next round comes
        written = wchar() - before
        journal.close()
        size = sum(f.stat().st_size for f in Path(state).iterdir())
    return {"mb_per_day": round(written / 1e6, 2), "rounds": rounds, "files_kb_at_end": round(size / 1e3)}


def new_daemon() -> Daemon:
    return bench_daemon(
        "journal",
        {"min_replicas": 2, "min_free": 0, "max_replicas": 4, "max_streams_per_engine": 1000},
        log_level="WARNING",
    )


def report_streams(daemon: Daemon, count: int) -> set[str]:
    engines = daemon.wait_engines(2, timeout=60)
    ids = set()
    for i in range(count):
        engine = engines[i % len(engines)]
        status, body = http_json(
            daemon.url + "/events/stream_started",
            "POST",
            {
                "engine": {"host": engine["host"], "port": engine["port"]},
                "stream": {"key_type": "content_id", "key": f"k{i}"},
                "session": {"playback_session_id": f"p{i}", "stat_url": "", "command_url": "", "is_live": 1},
            },
        )
        assert status == 200, body
        ids.add(body["id"])
    return ids


def restart_to_known(daemon: Daemon, ids: set[str]) -> float:
    """SIGKILL, start again; seconds from the new process's start to every stream listed."""
    daemon.stop(signal.SIGKILL)
    assert daemon.process is not None
    with daemon.log_path.open("ab") as log:
        began = time.monotonic()
        daemon.process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "--config", str(daemon.config_path)],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    while time.monotonic() - began < 30:
        try:
            status, body = http_json(daemon.url + "/streams?status=started", timeout=1)
        except OSError:
            time.sleep(0.01)
            continue
        if status == 200 and {s["id"] for s in body} == ids:
            return time.monotonic() - began
        time.sleep(0.01)
    raise AssertionError("the restarted daemon did not list the streams within 30 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--changes", type=int, default=5000)
    parser.add_argument("--no-daemon", action="store_true")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    day_calls, journal_calls, burst_calls, memory_calls = Timed(), Timed(), Timed(), Timed()
    day = {"streams": 20, "round_s": 30.0, "ttl_s": 21600.0}
    steady = one_day(**day, lifetime_s=None, timed=day_calls, journal_calls=journal_calls)  # type: ignore[arg-type]
    churn = one_day(**day, lifetime_s=3600.0, timed=day_calls, journal_calls=journal_calls)  # type: ignore[arg-type]
    one_day(**day, lifetime_s=3600.0, timed=memory_calls, journal_calls=Timed(), durable=False)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as state:
        durable = per_change_us(Path(state), args.changes, burst_calls)
    memory = per_change_us(None, args.changes)
    disk = {
        "streams": 20,
        "liveness_round_s": 30,
        "no_churn": steady,
        "each_stream_replaced_after_1h": churn,
        "goal_mb_per_day": 50,
    }
    loop = {
        "journal_calls_one_day": journal_calls.figures(),
        "store_calls_one_day": day_calls.figures(),
        "store_calls_one_day_memory_only": memory_calls.figures(),
        "store_calls_burst_of_changes": burst_calls.figures(),
        "switch_interval_ms": sys.getswitchinterval() * 1e3,
    }
    print(json.dumps({"bytes_written_per_day": disk, "event_loop_block": loop}, indent=2))
    if args.no_daemon:
        return 0
    remove_test_containers()
    daemon = new_daemon()
    daemon.write_config()
    try:
        daemon.start()
        ids = report_streams(daemon, args.streams)
        recall = [restart_to_known(daemon, ids) for _ in range(args.rounds)]
    finally:
        stop_daemon(daemon)
    write_result(
        "state_journal",
        {
            "stream_change_us": {
                "journal": durable["caller_us"],
                "memory_only": memory["caller_us"],
                "changes": args.changes,
                "writer_changes_per_s": durable["written_per_s"],
            },
            "bytes_written_per_day": disk,
            "event_loop_block_of_a_journal_call": loop,
            "sigkill_restart_to_all_streams_listed_s": {**summary(recall), "streams": args.streams},
            "machine": machine(),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
