"""What the stream journal costs and what it buys.

- Cost: one stream reported and ended through the store, with the SQLite write-through and
  without it (memory only), in process: microseconds per change.
- What it buys: a daemon SIGKILLed with streams on its engines, started again: the time from the
  new process's start to `GET /streams?status=started` listing every one of them (the proxy's
  view of which engines are busy), on the stand-in engines.

Run: `.venv/bin/python bench/state_journal.py [--streams 200 --rounds 5]`. Writes
bench/results/state_journal.json.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import bench_daemon, machine, stop_daemon, summary, write_result
from orchestrator.state.journal import StreamJournal
from orchestrator.state.store import StateStore
from orchestrator.state.streams import Stream
from tests.integration.harness import (
    REPO,
    Daemon,
    http_json,
    remove_test_containers,
)
from tests.unit.test_state_store import engine_info


def per_change_us(directory: Path | None, changes: int) -> float:
    """Median microseconds of one start + end pair, in batches of 100."""
    store = StateStore(journal=StreamJournal(directory))
    store.restore_streams()
    store.replace_engines([engine_info("e", started_at=time.time() - 60)], 0)
    batches = []
    for batch in range(changes // 100):
        began = time.perf_counter()
        for i in range(100):
            sid = f"s{batch}-{i}"
            store.start_stream(
                Stream(id=sid, container_id="e", key_type="content_id", key=sid, started_at=time.time())
            )
            store.end_stream(sid, "completed", time.time())
        batches.append((time.perf_counter() - began) / 200 * 1e6)
    return round(statistics.median(batches), 1)


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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as state:
        durable = per_change_us(Path(state), args.changes)
    memory = per_change_us(None, args.changes)
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
            "stream_change_us": {"journal": durable, "memory_only": memory, "changes": args.changes},
            "sigkill_restart_to_all_streams_listed_s": {**summary(recall), "streams": args.streams},
            "machine": machine(),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
