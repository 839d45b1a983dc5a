"""The stream journal on a real SQLite file: what one store wrote, the next one reads back; a
missing, unwritable or corrupt state directory is a warning and a fresh start, never a crash;
each change is one transaction; a failed write is followed by a reopen that writes it all back;
a second journal (a second daemon) on the same directory is kept off the file by its lock.
Failures are real SQLite conditions (a trigger raising, a table dropped, a full file system),
never a mock of the journal."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from orchestrator.state.journal import (
    ENDED_KEPT,
    FILE,
    LOCK_FILE,
    PRUNE_EVERY,
    StreamJournal,
    confirm_every,
)
from orchestrator.state.served import LastServed
from orchestrator.state.store import StateStore
from orchestrator.state.streams import Stream
from reconcilers.stalls import StatSample
from testkit.harness import REPO
from testkit.logs import logged
from testkit.sightings import engine_info

T0 = 1_000_000.0
TTL = 21600.0
FAST_RETRY = (0.05,)
OPENED: list[StreamJournal] = []


@pytest.fixture(autouse=True)
def _close_journals() -> Iterator[None]:
    yield
    while OPENED:
        OPENED.pop().close()


def stream(sid: str, container_id: str, at: float = T0 + 100, **kw: object) -> Stream:
    return Stream(id=sid, container_id=container_id, key_type="content_id", key=sid, started_at=at, **kw)  # type: ignore[arg-type]


def store_on(directory: Path | None) -> StateStore:
    """The next daemon on `directory`: a journal still open there is as if its process were
    killed (nothing more written by it, its lock released by the kernel)."""
    for earlier in OPENED:
        if directory is not None and earlier.path == directory / FILE:
            killed(earlier)
    return second_daemon(directory)


def second_daemon(directory: Path | None) -> StateStore:
    """A store on `directory`, whatever else has it open."""
    store = StateStore(journal=journal_on(directory))
    store.restore_streams()
    return store


def killed(journal: StreamJournal) -> None:
    """What SIGKILL does to the lock: the kernel closes the process's descriptors (a journal
    in this test process is not killed: its writer may still run, as a dying process's might)."""
    journal._release_lock()


def journal_on(directory: Path | None, start_lock_wait_s: float = 0.0) -> StreamJournal:
    journal = StreamJournal(directory, retry_s=FAST_RETRY, start_lock_wait_s=start_lock_wait_s)
    OPENED.append(journal)
    return journal


def settle(store: StateStore, *, confirmations: bool = False) -> None:
    """Wait for the writer thread to handle what the store queued (a test's only sync point)."""
    assert store._journal.flush(confirmations=confirmations)


def on_disk(directory: Path, query: str) -> list[tuple[object, ...]]:
    """Read the file through a connection of its own, as the next daemon would."""
    db = sqlite3.connect(directory / FILE)
    try:
        return [tuple(r) for r in db.execute(query)]
    finally:
        db.close()


def wait_durable(store: StateStore, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while store.state_error is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.state_error is None, store.state_error
    settle(store)


def test_a_restarted_store_reads_back_every_stream_and_last_use(tmp_path: Path) -> None:
    first = store_on(tmp_path / "state")
    first.replace_engines([engine_info("a", started_at=T0), engine_info("b", slot=1, started_at=T0)], 0)
    first.demand.start_stream(stream("s1", "a", playback_session_id="p1", stat_url="http://x/ace/stat/1"))
    first.demand.start_stream(stream("s2", "a"))
    first.demand.start_stream(stream("s3", "b"))
    first.demand.end_stream("s3", "completed", T0 + 200)
    first.demand.confirm_streams(["s1"], T0 + 300, TTL)
    settle(first)  # written (the writer thread is done), but no close(): as after a SIGKILL

    second = store_on(tmp_path / "state")

    assert second.state_error is None
    assert set(second.demand.streams.active) == {"s1", "s2"}
    assert second.demand.streams.active["s1"] == stream(
        "s1", "a", playback_session_id="p1", stat_url="http://x/ace/stat/1", confirmed_at=T0 + 300
    )
    assert [(s.id, s.end_reason) for s in second.demand.streams.ended] == [("s3", "completed")]
    assert second.demand.streams.last_usage == {"a": T0 + 100, "b": T0 + 200}
    assert second.demand.streams.count("a") == 2  # busy before Docker is even asked


def test_streams_whose_engine_went_or_restarted_while_no_daemon_watched_are_ended(tmp_path: Path) -> None:
    first = store_on(tmp_path)
    engines = [engine_info(c, slot=i, started_at=T0) for i, c in enumerate("abc")]
    first.replace_engines(engines, 0)
    for cid in "abc":
        first.demand.start_stream(stream(f"on-{cid}", cid))
    settle(first)

    second = store_on(tmp_path)
    # the first resync: a unchanged, b restarted after its stream began, c gone
    second.replace_engines(
        [engine_info("a", started_at=T0), engine_info("b", slot=1, started_at=T0 + 150)], 0
    )

    assert set(second.demand.streams.active) == {"on-a"}
    assert {(s.id, s.end_reason) for s in second.demand.streams.ended} == {
        ("on-b", "engine_restarted"),
        ("on-c", "engine_gone"),
    }
    assert "c" not in second.demand.streams.last_usage
    settle(second)
    third = store_on(tmp_path)  # and the endings were written through too
    assert set(third.demand.streams.active) == {"on-a"}


def test_a_stream_read_back_after_a_restart_is_judged_from_the_next_answers(tmp_path: Path) -> None:
    # "a restarted daemon judges again from the next answers" (docs/stalls-and-freshness.md). The
    # stream started an hour before the restart; the first answer the new daemon gets shows no
    # peers. It used to be counted from the stream's start, so that one answer marked the engine
    # stalled (hidden and replaced at once); it is the baseline now.
    first = store_on(tmp_path)
    first.replace_engines([engine_info("a", started_at=T0)], 0)
    first.demand.start_stream(stream("s1", "a", stat_url="http://x/ace/stat/1"))  # at T0 + 100
    settle(first)

    second = store_on(tmp_path)
    second.replace_engines([engine_info("a", started_at=T0)], 0)
    assert second.demand.streams.active["s1"].started_at == T0 + 100
    frozen = StatSample(peers=0, speed_down=0, downloaded=5_000_000)
    restart = T0 + 3700
    second.record_progress({"s1": frozen}, restart, 60.0, 120.0)
    assert not second.stalled_engines and not second.demand.stream_stalled("s1", restart, 60.0)
    for later in (30, 60, 90):  # its stat_url does not answer again: no verdict on one answer
        second.record_progress({}, restart + later, 60.0, 120.0)
    assert not second.stalled_engines and not second.demand.stream_stalled("s1", restart + 90, 60.0)
    second.record_progress({"s1": frozen}, restart + 120, 60.0, 120.0)  # a second, still nothing
    assert second.stalled_engines == {"a": restart + 120}


def test_a_corrupt_journal_is_moved_aside_and_a_fresh_one_started(tmp_path: Path) -> None:
    (tmp_path / FILE).write_bytes(b"this is not a database, it is an editor's swap file" * 100)

    store = store_on(tmp_path)

    assert store.state_error is None and not store.demand.streams.active
    (aside,) = tmp_path.glob(f"{FILE}.corrupt-*")
    assert aside.read_bytes().startswith(b"this is not a database")
    store.replace_engines([engine_info("a", started_at=T0)], 0)
    store.demand.start_stream(stream("s1", "a"))
    settle(store)
    assert set(store_on(tmp_path).demand.streams.active) == {"s1"}


def test_a_journal_of_unexpected_shape_is_moved_aside(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / FILE)
    db.execute("CREATE TABLE streams (id TEXT PRIMARY KEY, status TEXT)")
    db.execute("INSERT INTO streams VALUES ('x', 'started')")
    db.commit()
    db.close()

    store = store_on(tmp_path)

    assert store.state_error is None and not store.demand.streams.active
    assert len(list(tmp_path.glob(f"{FILE}.corrupt-*"))) == 1


def test_a_journal_from_a_newer_daemon_is_moved_aside_not_misread(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / FILE)
    db.execute("PRAGMA user_version=99")
    db.close()
    assert store_on(tmp_path).state_error is None
    assert len(list(tmp_path.glob(f"{FILE}.corrupt-*"))) == 1


def test_a_state_directory_that_cannot_be_made_means_memory_only_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")

    store = store_on(tmp_path / "a-file" / "state")

    assert store.state_error is not None and "a-file" in store.state_error
    store.replace_engines([engine_info("a", started_at=T0)], 0)
    store.demand.start_stream(stream("s1", "a"))  # works, in memory
    assert set(store.demand.streams.active) == {"s1"}


def test_a_state_directory_the_daemon_may_not_enter_means_memory_only(tmp_path: Path) -> None:
    # its parent closed to the daemon's user: the start-up's read-only fallback asked whether the
    # file exists, which raises PermissionError, out of open() (documented never to raise)
    system_python = Path("/usr/bin/python3")
    if os.geteuid() != 0 or not system_python.exists():
        pytest.skip("needs root, to run the journal as another user, and the system's python3")
    locked = tmp_path / "locked"
    (locked / "state").mkdir(parents=True)
    locked.chmod(0o700)  # root's: nobody may enter
    code = (
        "import sys; from pathlib import Path; from orchestrator.state.journal import StreamJournal\n"
        "j = StreamJournal(Path(sys.argv[1]), start_lock_wait_s=0)\n"
        "print('streams', len(j.open().active)); print(j.error)"
    )
    # the code it runs, where nobody may read it (a clone in a private temporary folder is not)
    readable = Path(tempfile.mkdtemp(prefix="journal-as-nobody-"))
    try:
        readable.chmod(0o755)
        site = next((REPO / ".venv" / "lib").glob("python3*/site-packages"))
        for package in (REPO / "orchestrator", REPO / "reconcilers", site / "structlog"):
            shutil.copytree(package, readable / package.name, ignore=shutil.ignore_patterns("__pycache__"))
        done = subprocess.run(
            [str(system_python), "-c", code, str(locked / "state")],
            user=65534,
            cwd="/",
            env={"PYTHONPATH": str(readable), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        shutil.rmtree(readable, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "streams 0" in done.stdout.splitlines() and "Permission denied" in done.stdout


def test_no_state_directory_is_memory_only_and_says_so() -> None:
    store = store_on(None)
    assert store.state_error == "no state directory configured"


def test_a_second_journal_on_the_same_directory_runs_on_memory_until_the_first_closes(tmp_path: Path) -> None:
    """SQLite alone lets two processes write one WAL file: two daemons would overwrite each
    other's streams. The lock is per open file, so two journals of one process conflict too."""
    first = store_on(tmp_path)
    first.replace_engines([engine_info("a", started_at=T0)], 0)
    first.demand.start_stream(stream("s1", "a"))
    settle(first)

    second = second_daemon(tmp_path)  # a second daemon started on the same state_dir

    assert first.state_error is None
    error = second.state_error
    assert error is not None and f"another process holds {tmp_path / LOCK_FILE}" in error
    assert "second daemon" in error
    second.replace_engines([engine_info("b", started_at=T0)], 0)
    second.demand.start_stream(stream("s2", "b"))  # works, in memory
    settle(second)
    time.sleep(0.2)  # its reopens (every 50 ms here) keep finding the lock held
    assert second.state_error == error
    assert on_disk(tmp_path, "SELECT id FROM streams") == [("s1",)]  # nothing of the second's

    first._journal.close()  # the first daemon stops
    wait_durable(second)  # the lock and the file are the second's now, its memory written back
    assert on_disk(tmp_path, "SELECT id FROM streams WHERE status = 'started'") == [("s2",)]


def test_a_daemon_started_while_the_one_it_replaces_still_stops_waits_for_the_directory(
    tmp_path: Path,
) -> None:
    """A restart or a rolling update: the old daemon releases the lock a moment after the new one
    starts. The new one waits (`START_LOCK_WAIT_S`, here 5 s) and reads the file: it does not run
    on memory and later write its empty registry over the old one's streams."""
    first = store_on(tmp_path)
    first.replace_engines([engine_info("a", started_at=T0)], 0)
    first.demand.start_stream(stream("s1", "a"))
    settle(first)
    threading.Timer(0.3, first._journal.close).start()  # the old daemon ends its stop

    second = StateStore(journal=journal_on(tmp_path, start_lock_wait_s=5.0))
    second.restore_streams()

    assert second.state_error is None
    assert set(second.demand.streams.active) == {"s1"}


def test_a_file_system_that_cannot_lock_is_used_without_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with capture_logs() as logs:
        store = store_on(tmp_path)
        store.replace_engines([engine_info("a", started_at=T0)], 0)
        store.demand.start_stream(stream("s1", "a"))
        settle(store)
    assert store.state_error is None
    assert on_disk(tmp_path, "SELECT id FROM streams") == [("s1",)]
    (warning,) = logged(logs, "state_lock_unsupported")
    assert warning["log_level"] == "warning" and "one daemon only" in str(warning["hint"])


HOLDER = """
import sys
from pathlib import Path
from orchestrator.state.journal import StreamJournal
journal = StreamJournal(Path(sys.argv[1]))
journal.open()
print("durable" if journal.error is None else journal.error, file=sys.stderr, flush=True)
sys.stdin.read()  # holds the journal until killed
"""


def test_a_journal_held_by_another_process_is_taken_once_that_process_is_killed(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    ) as holder:
        try:
            assert holder.stderr is not None
            assert holder.stderr.readline().strip() == "durable"

            store = second_daemon(tmp_path)
            assert store.state_error is not None and "another process holds" in store.state_error
        finally:
            holder.kill()  # SIGKILL: no close(); the kernel releases the lock, the file stays
            holder.wait(timeout=10)
    assert (tmp_path / LOCK_FILE).exists()
    wait_durable(store)


def test_a_write_that_fails_is_memory_only_then_durable_again_with_everything_written_back(
    tmp_path: Path,
) -> None:
    store = store_on(tmp_path)
    store.replace_engines([engine_info("a", started_at=T0)], 0)
    store.demand.start_stream(stream("s0", "a"))
    settle(store)
    on_disk(tmp_path, "DROP TABLE streams")  # the file changed under the daemon

    store.demand.start_stream(stream("s1", "a"))
    settle(store)

    assert set(store.demand.streams.active) == {"s0", "s1"}  # in memory all along
    assert store.state_error is not None and "streams" in store.state_error
    wait_durable(store)  # reopened (the schema made again) and the copy written back
    store.demand.start_stream(stream("s2", "a", at=T0 + 150))
    settle(store)
    assert set(store_on(tmp_path).demand.streams.active) == {"s0", "s1", "s2"}


def test_a_change_is_one_transaction_a_failure_between_its_statements_leaves_neither_half(
    tmp_path: Path,
) -> None:
    store = store_on(tmp_path)
    store.replace_engines([engine_info("a", started_at=T0), engine_info("b", slot=1, started_at=T0)], 0)
    store.demand.start_stream(stream("s1", "a"))
    settle(store)
    # the stream's row is written first, the engine's last use second: make the second fail
    on_disk(
        tmp_path,
        "CREATE TRIGGER no_usage BEFORE INSERT ON last_usage BEGIN SELECT RAISE(ABORT, 'injected'); END",
    )

    store.demand.end_stream("s1", "completed", T0 + 200)
    store.demand.start_stream(stream("s2", "b", at=T0 + 210))
    settle(store)

    assert store.state_error is not None and "injected" in store.state_error
    assert on_disk(tmp_path, "SELECT id, status FROM streams") == [("s1", "started")]
    assert on_disk(tmp_path, "SELECT container_id, at FROM last_usage") == [("a", T0 + 100)]
    time.sleep(0.2)  # reopens keep failing on the same trigger: still nothing half-written
    assert on_disk(tmp_path, "SELECT id, status FROM streams") == [("s1", "started")]

    on_disk(tmp_path, "DROP TRIGGER no_usage")
    wait_durable(store)
    assert sorted(on_disk(tmp_path, "SELECT id, status FROM streams")) == [
        ("s1", "ended"),
        ("s2", "started"),
    ]
    assert sorted(on_disk(tmp_path, "SELECT container_id, at FROM last_usage")) == [
        ("a", T0 + 200),
        ("b", T0 + 210),
    ]


def test_confirmations_are_written_coarsely_and_the_last_ones_at_close(tmp_path: Path) -> None:
    every = confirm_every(TTL)
    assert every == 300  # default TTL of 6 h: at most every 5 minutes
    assert confirm_every(60) == 6  # the smallest TTL: a tenth of it
    journal = journal_on(tmp_path)
    store = StateStore(journal=journal)
    store.restore_streams()
    store.replace_engines([engine_info("a", started_at=T0)], 0)
    store.demand.start_stream(stream("s1", "a"))
    confirmed = "SELECT id, at FROM confirmed"

    store.demand.confirm_streams(["s1"], T0 + 130, TTL)  # the first: written at once
    settle(store)
    assert on_disk(tmp_path, confirmed) == [("s1", T0 + 130)]
    for at in range(160, 130 + int(every), 30):  # every round of 30 s in the next 5 minutes
        store.demand.confirm_streams(["s1"], T0 + at, TTL)
    settle(store)
    assert on_disk(tmp_path, confirmed) == [("s1", T0 + 130)]  # not rewritten each round
    store.demand.confirm_streams(["s1"], T0 + 130 + every, TTL)
    settle(store)
    assert on_disk(tmp_path, confirmed) == [("s1", T0 + 130 + every)]
    store.demand.confirm_streams(["s1"], T0 + 160 + every, TTL)
    journal.close()
    assert on_disk(tmp_path, confirmed) == [("s1", T0 + 160 + every)]
    assert store_on(tmp_path).demand.streams.active["s1"].confirmed_at == T0 + 160 + every


@contextlib.contextmanager
def tiny_filesystem(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=False)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def streaming_on(directory: Path, stream_id: str) -> StateStore:
    """A daemon on `directory` with one engine, `a`, carrying one stream, written."""
    store = store_on(directory)
    store.replace_engines([engine_info("a", started_at=T0)], 0)
    store.demand.start_stream(stream(stream_id, "a"))
    settle(store)
    return store


def fill(directory: Path) -> Path:
    """Fill the file system of `directory` with one file; returns it (unlink it for room)."""
    filler = directory / "filler"
    with contextlib.suppress(OSError), filler.open("wb") as f:
        while True:
            f.write(b"x" * 4096)
            f.flush()
    return filler


def test_a_full_disk_turns_to_memory_and_back_to_durable_when_space_returns(tmp_path: Path) -> None:
    with tiny_filesystem(tmp_path) as state:
        store = streaming_on(state, "s0")
        filler = fill(state)
        started = ["s0"]
        for i in range(1, 200):  # until a write needs a page the file system has not got
            started.append(f"s{i}")
            store.demand.start_stream(stream(f"s{i}", "a", stat_url="http://e/" + "p" * 2000))
            settle(store)
            if store.state_error is not None:
                break
        assert store.state_error is not None, "the disk never filled"
        assert "full" in store.state_error

        filler.unlink()
        wait_durable(store)
        assert set(store_on(state).demand.streams.active) == set(started)


def test_a_daemon_started_on_a_full_disk_reads_the_streams_back_and_loses_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the file can be read but not written at start-up: read back read-only, so the write-back
    # once space returns keeps the streams on disk (it wrote back an empty registry over them);
    # a state_dir given as a relative path, as a config may
    with tiny_filesystem(tmp_path) as mounted:
        monkeypatch.chdir(tmp_path)
        state = Path(mounted.name)
        store = streaming_on(state, "s1")
        store._journal.close()  # the daemon stops
        filler = fill(state)

        with capture_logs() as logs:
            restarted = store_on(state)
        assert restarted.state_error is not None  # "disk I/O error" or "database or disk is full"
        assert set(restarted.demand.streams.active) == {"s1"}
        assert [e["streams"] for e in logged(logs, "state_loaded_read_only")] == [1]

        filler.unlink()
        wait_durable(restarted)
        assert on_disk(state, "SELECT id FROM streams WHERE status = 'started'") == [("s1",)]
        assert set(store_on(state).demand.streams.active) == {"s1"}


def test_ended_history_on_disk_is_bounded(tmp_path: Path) -> None:
    store = store_on(tmp_path)
    store.replace_engines([engine_info("a", started_at=T0)], 0)
    total = 3 * ENDED_KEPT
    for i in range(total):
        store.demand.start_stream(stream(f"s{i}", "a", at=T0 + i))
        store.demand.end_stream(f"s{i}", "completed", T0 + i + 0.5)
    settle(store)
    db = sqlite3.connect(tmp_path / FILE)
    kept = db.execute("SELECT COUNT(*) FROM streams").fetchone()[0]
    db.close()
    assert ENDED_KEPT <= kept <= ENDED_KEPT + PRUNE_EVERY
    reread = store_on(tmp_path)
    assert len(reread.demand.streams.ended) == ENDED_KEPT
    assert [s.id for s in reread.demand.streams.ended][-2:] == [f"s{total - 2}", f"s{total - 1}"]


def test_what_engines_last_served_is_read_back_and_a_bad_one_costs_only_itself(tmp_path: Path) -> None:
    listing = [{"container_id": "a" * 64, "host": "10.0.0.2", "port": 19000, "streams": []}]
    journal = StreamJournal(tmp_path)
    journal.open()
    journal.remember_served(json.dumps(listing), 1000.0)
    journal.remember_served(json.dumps(listing * 2), 1001.0)  # the latest listing replaces it
    journal.close()
    again = StreamJournal(tmp_path)
    loaded = again.open()
    assert (loaded.served, loaded.served_at) == (listing * 2, 1001.0)
    again.close()

    with contextlib.closing(sqlite3.connect(tmp_path / FILE)) as db, db:
        db.execute("UPDATE served SET body = '{not json'")
    third = StreamJournal(tmp_path)
    assert third.open().served == [] and third.error is None  # the file is not "corrupt" for it
    third.close()
    assert not list(tmp_path.glob(f"{FILE}.corrupt-*"))


def test_served_is_rewritten_only_when_engines_change_not_on_every_health_check(tmp_path: Path) -> None:
    """`last_health_check` moves on every liveness round: kept, it would rewrite the row at
    every `/engines` answer (tens of MB a day)."""
    journal = StreamJournal(tmp_path)
    journal.open()
    served = LastServed(journal, changed=lambda: None)
    engine = {"container_id": "c" * 64, "host": "10.0.0.2", "port": 19000, "last_health_check": "t1"}

    def written() -> tuple[float, str]:
        journal.flush()
        with contextlib.closing(sqlite3.connect(tmp_path / FILE)) as db:
            at, body = db.execute("SELECT at, body FROM served").fetchone()
        return float(at), str(body)

    served.remember([engine])
    first = written()
    served.remember([{**engine, "last_health_check": "t2", "streams": ["s1"], "stream_count": 1}])
    assert written() == first
    served.remember([{**engine, "port": 19001}])
    assert json.loads(written()[1]) == [{"container_id": "c" * 64, "host": "10.0.0.2", "port": 19001}]
    assert LastServed.as_served(json.loads(written()[1])[0])["streams"] == []
    journal.close()


# -- the log events operators grep for (docs/operations.md, docs/state-journal.md) ------------


def test_reading_the_journal_back_logs_state_loaded_with_the_file_and_counts(tmp_path: Path) -> None:
    first = store_on(tmp_path)
    first.replace_engines([engine_info("a", started_at=T0)], 0)
    first.demand.start_stream(stream("s1", "a"))
    first.demand.start_stream(stream("s2", "a"))
    first.demand.start_stream(stream("s3", "a"))
    first.demand.end_stream("s3", "completed", T0 + 200)
    settle(first)

    with capture_logs() as logs:
        store_on(tmp_path)

    (loaded,) = logged(logs, "state_loaded")
    assert loaded["log_level"] == "info"
    assert (loaded["file"], loaded["streams"], loaded["ended"]) == (str(tmp_path / FILE), 2, 1)


def test_a_corrupt_journal_logs_state_corrupt_naming_where_it_was_moved(tmp_path: Path) -> None:
    (tmp_path / FILE).write_bytes(b"this is not a database, it is an editor's swap file" * 100)

    with capture_logs() as logs:
        store_on(tmp_path)

    (corrupt,) = logged(logs, "state_corrupt")
    (aside,) = tmp_path.glob(f"{FILE}.corrupt-*")
    assert corrupt["log_level"] == "warning"
    assert (corrupt["file"], corrupt["moved_to"]) == (str(tmp_path / FILE), str(aside))
    assert corrupt["error"] and "no streams" in str(corrupt["hint"])
    (fresh,) = logged(logs, "state_loaded")  # and the fresh one started
    assert (fresh["streams"], fresh["ended"]) == (0, 0)
    assert not logged(logs, "state_unavailable")


def test_a_state_directory_that_cannot_be_made_logs_state_unavailable_with_the_reason(
    tmp_path: Path,
) -> None:
    (tmp_path / "a-file").write_text("")

    with capture_logs() as logs:
        store = store_on(tmp_path / "a-file" / "state")

    (unavailable,) = logged(logs, "state_unavailable")
    assert unavailable["log_level"] == "error"
    assert unavailable["error"] == store.state_error and "a-file" in str(unavailable["error"])
    assert "running on memory" in str(unavailable["hint"]) and "state_dir" in str(unavailable["hint"])
    assert not logged(logs, "state_loaded")


def test_a_second_daemon_logs_state_unavailable_then_state_recovered_once_the_first_stops(
    tmp_path: Path,
) -> None:
    first = store_on(tmp_path)
    with capture_logs() as logs:
        second = second_daemon(tmp_path)
        second.replace_engines([engine_info("b", started_at=T0)], 0)
        second.demand.start_stream(stream("s2", "b"))
        settle(second)
        time.sleep(0.2)  # its reopens keep finding the lock held: logged once, not at every try
        assert [entry["event"] for entry in logs if str(entry["event"]).startswith("state_")] == [
            "state_unavailable"
        ]
        first._journal.close()
        wait_durable(second)

    (unavailable,) = logged(logs, "state_unavailable")
    assert f"another process holds {tmp_path / LOCK_FILE}" in str(unavailable["error"])
    assert "second daemon" in str(unavailable["error"])
    assert "stop the other daemon" in str(unavailable["hint"])
    (recovered,) = logged(logs, "state_recovered")
    assert recovered["log_level"] == "warning"
    assert (recovered["file"], recovered["streams"]) == (str(tmp_path / FILE), 1)


def test_a_failed_write_logs_state_write_failed_then_state_recovered(tmp_path: Path) -> None:
    store = store_on(tmp_path)
    store.replace_engines([engine_info("a", started_at=T0)], 0)
    store.demand.start_stream(stream("s0", "a"))
    settle(store)
    on_disk(tmp_path, "DROP TABLE streams")  # the file changed under the daemon

    with capture_logs() as logs:
        store.demand.start_stream(stream("s1", "a"))
        settle(store)
        wait_durable(store)

    (failed,) = logged(logs, "state_write_failed")
    assert failed["log_level"] == "error"
    assert str(failed["error"]).startswith(f"{tmp_path / FILE}: ") and "streams" in str(failed["error"])
    assert "state_recovered" in str(failed["hint"])
    (recovered,) = logged(logs, "state_recovered")
    assert recovered["log_level"] == "warning"
    assert (recovered["file"], recovered["streams"]) == (str(tmp_path / FILE), 2)
    events = [entry["event"] for entry in logs]
    assert events.index("state_write_failed") < events.index("state_recovered")
