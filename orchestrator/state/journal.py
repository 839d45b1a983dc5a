"""What the daemon learns only from the proxy and from time, kept on disk so a restart loses none.

The engines themselves need no journal: their labels are the daemon's memory and a restarted
daemon adopts them. But the streams the proxy reported, and when each engine last carried one,
exist nowhere else: without them a restarted daemon sees busy engines as idle, scales them down
under their viewers, and the proxy packs new streams onto them. So every change of the stream
registry is written through to SQLite (the standard library's; one small file in the state
directory, WAL mode) and read back at start-up.

- Each change is one real transaction (`BEGIN IMMEDIATE` ... `COMMIT`, rolled back on any
  error): an eviction and the start that caused it, or a stream's end and its engine's last use,
  are both on disk or neither is.
- No SQLite call runs on the event loop: the loop only queues the change (microseconds); one
  writer thread owns the connection and writes what is queued, several queued changes in one
  transaction. The cost: a daemon killed within the moment between a change and its commit
  (well under a millisecond when the disk keeps up) loses that change.
- Confirmations (the engine says a session is alive, every liveness round for every stream)
  go to a small table of their own, one row per active stream, and are written at most once
  per `confirm_every(ttl)` (a tenth of `engines.stream_ttl_s`, at most 5 minutes): all pending
  ones in one transaction. What is on disk is only read by a restarted daemon, to end streams
  with no sign of life for the TTL; a confirmation up to a tenth of the TTL older than the last
  one cannot end a live stream, and a live one is confirmed again within a round.
- The history of what the daemon did (`history.py`) is one more table, `history`, one row an
  entry, written in the same batches and pruned to the newest `HISTORY_KEPT` rows as it goes.
- One daemon a state directory: the journal holds an exclusive lock (`flock`) on `LOCK_FILE` in
  it for as long as it is open. SQLite alone would let a second daemon open and write the same
  file (WAL mode allows it), each overwriting the other's streams; a journal that finds the
  lock held does not open the database: it runs on memory, as for any failure below, and takes
  the lock (and the file) with the same back-off once the other process has gone.
- Failures never stop the daemon: a directory that cannot be created or written, a database
  that cannot be opened, or a write that fails (a full disk) means running on memory, with the
  reason on `/status` and in the log (`state_unavailable`, `state_write_failed`); the writer
  keeps a copy of the registry and reopens the file with back-off, writing that copy back in
  one transaction (`state_recovered`): durability comes back by itself. A corrupt database
  found at start-up is moved aside (`streams.db.corrupt-<time>`) and a fresh one started, with
  a warning (`state_corrupt`). Never a crash loop.
- What `/engines` last served (one row, replaced when the listing changes): a daemon restarted
  while Docker does not answer serves those of them that still answer their own HTTP API
  (`orchestrator.workers.last_known`), rather than an empty list.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from orchestrator.state.history import HISTORY_KEPT, HistoryEntry
from orchestrator.state.streams import Stream

log = structlog.get_logger()

FILE = "streams.db"
LOCK_FILE = "streams.db.lock"  # flock'd by the daemon using the directory; never removed
# how long a daemon starting waits for the lock before it runs on memory: the one it replaces
# (a restart, a rolling update) stops within a second of its SIGTERM
START_LOCK_WAIT_S = 15.0
LOCK_POLL_S = 0.1
# flock failing with these: the file system has no such locks (some network or FUSE mounts)
NO_LOCKS = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL})
ENDED_KEPT = 1000
PRUNE_EVERY = 100  # ended streams written between two prunings of the history
CONFIRM_EVERY_MAX_S = 300.0
RETRY_S = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)  # reopen after a failure; the last one repeats
SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    id TEXT PRIMARY KEY, container_id TEXT NOT NULL, key_type TEXT NOT NULL, key TEXT NOT NULL,
    playback_session_id TEXT NOT NULL, stat_url TEXT NOT NULL, command_url TEXT NOT NULL,
    is_live INTEGER NOT NULL, started_at REAL NOT NULL, confirmed_at REAL,
    status TEXT NOT NULL, ended_at REAL, end_reason TEXT
);
CREATE INDEX IF NOT EXISTS streams_by_status ON streams (status, ended_at);
CREATE TABLE IF NOT EXISTS last_usage (container_id TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS confirmed (id TEXT PRIMARY KEY, at REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS served (
    id INTEGER PRIMARY KEY CHECK (id = 1), at REAL NOT NULL, body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY, at REAL NOT NULL, kind TEXT NOT NULL, target TEXT NOT NULL,
    reason TEXT NOT NULL, trigger TEXT, outcome TEXT NOT NULL, engine TEXT, vpn TEXT
);
"""
INSERT_HISTORY = "INSERT OR REPLACE INTO history VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
PRUNE_HISTORY = "DELETE FROM history WHERE seq <= ?"
INSERT_STREAM = (
    "INSERT OR REPLACE INTO streams (id, container_id, key_type, key, playback_session_id, stat_url, "
    "command_url, is_live, started_at, confirmed_at, status, ended_at, end_reason) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
PRUNE = (
    "DELETE FROM streams WHERE status = 'ended' AND ended_at < (SELECT ended_at FROM "
    "streams WHERE status = 'ended' ORDER BY ended_at DESC LIMIT 1 OFFSET ?)"
)
VERSION = 1  # `confirmed`, `served` and `history` are additions a version-1 reader may ignore
CORRUPT = ("SQLITE_NOTADB", "SQLITE_CORRUPT")


def confirm_every(ttl_s: float) -> float:
    """How stale a confirmation on disk may be: a tenth of the TTL, at most 5 minutes."""
    return min(CONFIRM_EVERY_MAX_S, ttl_s / 10)


class _Unreadable(Exception):
    """The file opened but its content is not a journal this daemon can read."""


class _Held(OSError):
    """Another process (another daemon) holds the state directory's lock."""


def _corrupt(exc: BaseException) -> bool:
    if isinstance(exc, _Unreadable):
        return True
    name = getattr(exc, "sqlite_errorname", "") or ""
    return isinstance(exc, sqlite3.DatabaseError) and name.startswith(CORRUPT)


@dataclass(slots=True, kw_only=True)
class Loaded:
    active: list[Stream] = field(default_factory=list)
    ended: list[Stream] = field(default_factory=list)
    last_usage: dict[str, float] = field(default_factory=dict)
    served: list[dict[str, Any]] = field(default_factory=list)  # what /engines last served
    served_at: float | None = None
    history: list[HistoryEntry] = field(default_factory=list)


# -- what the loop queues for the writer -----------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class _Put:
    streams: tuple[Stream, ...]
    usage: tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Forget:
    container_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class _Confirm:
    stream_ids: tuple[str, ...]
    at: float
    every_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class _Served:
    body: str  # the JSON list /engines served
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class _Flush:
    done: threading.Event
    confirmations: bool = False  # also write the confirmations not yet due


@dataclass(frozen=True, slots=True, kw_only=True)
class _Record:
    entry: HistoryEntry


_Change = _Put | _Forget | _Confirm | _Served | _Record
_Op = _Change | _Flush | None  # None: stop


def _row(stream: Stream) -> tuple[object, ...]:
    return (
        stream.id,
        stream.container_id,
        stream.key_type,
        stream.key,
        stream.playback_session_id,
        stream.stat_url,
        stream.command_url,
        int(stream.is_live),
        stream.started_at,
        stream.confirmed_at,
        stream.status,
        stream.ended_at,
        stream.end_reason,
    )


def _stream(row: sqlite3.Row, confirmed: dict[str, float]) -> Stream:
    at = confirmed.get(row["id"])
    return Stream(
        id=row["id"],
        container_id=row["container_id"],
        key_type=row["key_type"],
        key=row["key"],
        playback_session_id=row["playback_session_id"],
        stat_url=row["stat_url"],
        command_url=row["command_url"],
        is_live=bool(row["is_live"]),
        started_at=row["started_at"],
        confirmed_at=max(row["confirmed_at"] or 0.0, at) if at is not None else row["confirmed_at"],
        status=row["status"],
        ended_at=row["ended_at"],
        end_reason=row["end_reason"],
    )


def _listing(body: str) -> list[dict[str, Any]]:
    """The served listing, or none: an unreadable one costs that fallback only, not the streams."""
    try:
        listing = json.loads(body)
    except ValueError:
        return []
    if not isinstance(listing, list) or not all(isinstance(e, dict) for e in listing):
        return []
    return listing


def _history_row(e: HistoryEntry) -> tuple[object, ...]:
    return (e.seq, e.at, e.kind, e.target, e.reason, e.trigger, e.outcome, e.engine, e.vpn)


def _read(db: sqlite3.Connection) -> Loaded:
    confirmed = {r["id"]: float(r["at"]) for r in db.execute("SELECT * FROM confirmed")}
    ended = db.execute(
        "SELECT * FROM streams WHERE status = 'ended' ORDER BY ended_at DESC LIMIT ?", (ENDED_KEPT,)
    )
    active = db.execute("SELECT * FROM streams WHERE status = 'started'")
    served = db.execute("SELECT at, body FROM served WHERE id = 1").fetchone()
    listing = _listing(served["body"]) if served is not None else []
    return Loaded(
        active=[_stream(r, confirmed) for r in active],
        ended=[_stream(r, {}) for r in ended][::-1],
        last_usage={r["container_id"]: float(r["at"]) for r in db.execute("SELECT * FROM last_usage")},
        served=listing,
        served_at=float(served["at"]) if served is not None else None,
        history=[
            HistoryEntry(
                seq=int(r["seq"]),
                at=float(r["at"]),
                kind=str(r["kind"]),
                target=str(r["target"]),
                reason=str(r["reason"]),
                trigger=r["trigger"],
                outcome=str(r["outcome"]),
                engine=r["engine"],
                vpn=r["vpn"],
            )
            for r in db.execute("SELECT * FROM history ORDER BY seq DESC LIMIT ?", (HISTORY_KEPT,))
        ][::-1],
    )


def _connect(path: Path) -> sqlite3.Connection:
    """Open, with the schema in place; raises _Unreadable for content this daemon cannot read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: the module opens no transaction of its own; ours are explicit
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
    db.row_factory = sqlite3.Row
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # in WAL: survives a crash of the daemon
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, VERSION):
            raise _Unreadable(f"journal version {version}, this daemon reads {VERSION}")
        try:
            db.executescript(SCHEMA)
            db.execute(f"PRAGMA user_version={VERSION}")
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorname", "") != "SQLITE_ERROR":
                raise  # read-only, locked, cannot open: not the content's fault
            raise _Unreadable(f"unexpected shape: {exc}") from exc
    except BaseException:
        db.close()
        raise
    return db


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class _Copy:
    """The writer's own copy of the registry: what is written back after a failure."""

    def __init__(self, loaded: Loaded) -> None:
        self.active = {s.id: s for s in loaded.active}
        self.ended: deque[Stream] = deque(loaded.ended, maxlen=ENDED_KEPT)
        self.last_usage = dict(loaded.last_usage)
        self.pending: dict[str, float] = {}  # confirmations not on disk yet
        self.confirms_written_at = float("-inf")
        self.served: _Served | None = (
            _Served(body=json.dumps(loaded.served), at=loaded.served_at) if loaded.served_at else None
        )
        self.history: deque[HistoryEntry] = deque(loaded.history, maxlen=HISTORY_KEPT)

    def apply(self, op: _Change) -> None:
        if isinstance(op, _Served):
            self.served = op
        elif isinstance(op, _Record):
            self.history.append(op.entry)
        elif isinstance(op, _Put):
            for s in op.streams:
                self.pending.pop(s.id, None)
                if s.status == "started":
                    self.active[s.id] = s
                else:
                    self.active.pop(s.id, None)
                    self.ended.append(s)
            self.last_usage.update(op.usage)
        elif isinstance(op, _Forget):
            self.last_usage.pop(op.container_id, None)
        else:
            for sid in op.stream_ids:
                stream = self.active.get(sid)
                if stream is not None:
                    self.active[sid] = dataclasses.replace(stream, confirmed_at=op.at)
                    self.pending[sid] = op.at


class StreamJournal:
    """The registry's write-through copy. `error` says why it is not on disk right now (the
    daemon runs on memory meanwhile, and the writer keeps trying to get back)."""

    def __init__(
        self,
        directory: Path | None,
        *,
        retry_s: Sequence[float] = RETRY_S,
        start_lock_wait_s: float = START_LOCK_WAIT_S,
    ) -> None:
        self.path = directory / FILE if directory is not None else None
        self.error: str | None = None if directory is not None else "no state directory configured"
        self._retry_s = tuple(retry_s)
        self._db: sqlite3.Connection | None = None
        self._ended_rows = 0
        self._queue: queue.SimpleQueue[_Op] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._copy = _Copy(Loaded())
        self._failures = 0
        self._retry_at = 0.0
        self._lock_fd: int | None = None  # open, and flock'd, while this journal owns the directory
        self._lock_wait_s = 0.0  # while opening at start-up: `start_lock_wait_s`
        self._start_lock_wait_s = start_lock_wait_s
        self._no_locks = False  # the file system cannot lock: said once, then done without

    # -- the event loop's side: read once at start-up, then only queue -------------------------
    def open(self) -> Loaded:
        """Open (creating what is missing) and read back what was kept; never raises. Blocks:
        called once before the API serves. Starts the writer."""
        if self.path is None:
            return Loaded()
        self._lock_wait_s = self._start_lock_wait_s
        try:
            loaded = self._load(self.path)
        finally:
            self._lock_wait_s = 0.0
        self._copy = _Copy(loaded)
        if self._db is None:
            self._failed_now()
        self._thread = threading.Thread(target=self._write_loop, name="state-journal", daemon=True)
        self._thread.start()
        return loaded

    def put(self, streams: Iterable[Stream], usage: dict[str, float]) -> None:
        """Write these streams (started or ended) and engines' last use, in one transaction."""
        self._send(_Put(streams=tuple(streams), usage=tuple(usage.items())))

    def confirm(self, stream_ids: Iterable[str], at: float, ttl_s: float) -> None:
        """The engines said these streams are alive at `at` (on disk within confirm_every)."""
        self._send(_Confirm(stream_ids=tuple(stream_ids), at=at, every_s=confirm_every(ttl_s)))

    def forget_engine(self, container_id: str) -> None:
        self._send(_Forget(container_id=container_id))

    def remember_served(self, body: str, at: float) -> None:
        """What `/engines` serves now (a JSON list), in place of what it served before."""
        self._send(_Served(body=body, at=at))

    def record(self, entry: HistoryEntry) -> None:
        """Keep an entry of the history (the oldest beyond HISTORY_KEPT are dropped)."""
        self._send(_Record(entry=entry))

    def flush(self, timeout: float = 10.0, *, confirmations: bool = False) -> bool:
        """Wait until everything queued so far was handled (written, or failed); tests, bench."""
        if self._thread is None:
            return True
        done = threading.Event()
        self._queue.put(_Flush(done=done, confirmations=confirmations))
        return done.wait(timeout)

    def close(self) -> None:
        """Write what is queued (and pending confirmations), then stop the writer."""
        if self._thread is not None:
            self.flush(confirmations=True)
            self._queue.put(None)
            self._thread.join(timeout=10)
            if self._thread.is_alive():
                return  # still writing: its connection (and the lock) are its own until it ends
            self._thread = None
        self._close_db()
        self._release_lock()

    def _send(self, op: _Op) -> None:
        if self._thread is not None:
            self._queue.put(op)

    # -- opening --------------------------------------------------------------------------------
    def _load(self, path: Path) -> Loaded:
        try:
            return self._open(path)
        except (sqlite3.Error, OSError, _Unreadable) as exc:
            if not _corrupt(exc):
                # unwritable, missing permissions, held by another: running on memory, with what
                # the file holds when it can still be read (else the write-back at the reopen
                # would replace the streams on disk with none)
                nothing = self._unavailable(exc)
                return nothing if isinstance(exc, _Held) else self._read_only(path) or nothing
            aside = path.with_name(f"{FILE}.corrupt-{int(time.time())}")
            log.warning(
                "state_corrupt",
                file=str(path),
                moved_to=str(aside),
                error=str(exc),
                hint="starting with no streams; engines are still adopted from their labels",
            )
            try:
                path.rename(aside)
                for leftover in (path.with_name(FILE + "-wal"), path.with_name(FILE + "-shm")):
                    leftover.unlink(missing_ok=True)
                return self._open(path)
            except (sqlite3.Error, OSError, _Unreadable) as again:
                return self._unavailable(again)

    def _lock(self, path: Path) -> None:
        """Take the state directory's lock, or raise `_Held` (another process has it) or
        OSError; a no-op once held. The lock is on the open file description: released by
        `close()`, or by the kernel when the process ends, however it ends."""
        if self._lock_fd is not None or self._no_locks:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = path.with_name(LOCK_FILE)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline = time.monotonic() + self._lock_wait_s
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise _Held(
                            f"another process holds {lock_path}: is a second daemon using this state_dir?"
                        ) from None
                    time.sleep(LOCK_POLL_S)  # the daemon it replaces is still stopping
        except OSError as exc:
            os.close(fd)
            if isinstance(exc, _Held) or exc.errno not in NO_LOCKS:
                raise
            self._no_locks = True
            log.warning(
                "state_lock_unsupported",
                file=str(lock_path),
                error=str(exc),
                hint="this file system cannot lock files: make sure one daemon only uses this state_dir",
            )
            return
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the only descriptor of it releases the flock
            self._lock_fd = None

    def _error(self, exc: BaseException) -> str:
        return str(exc) if isinstance(exc, _Held) else f"{self.path}: {exc}"

    def _open(self, path: Path) -> Loaded:
        self._lock(path)  # before reading, and before moving a corrupt file aside
        db = _connect(path)
        try:
            try:
                loaded = _read(db)
            except (IndexError, KeyError, TypeError, ValueError) as exc:
                raise _Unreadable(f"unexpected content: {exc!r}") from exc
            with _transaction(db):
                pass  # proves the file is writable now, not at the first stream
        except BaseException:
            db.close()
            raise
        self._db, self.error = db, None
        self._ended_rows = db.execute("SELECT COUNT(*) FROM streams WHERE status = 'ended'").fetchone()[0]
        log.info("state_loaded", file=str(path), streams=len(loaded.active), ended=len(loaded.ended))
        return loaded

    def _read_only(self, path: Path) -> Loaded | None:
        """What a journal this daemon cannot write holds (a full disk, a file locked for
        writing): read through a read-only connection, or None when that fails too. A full
        disk refuses even the shared-memory file a WAL reader needs: with no write-ahead log
        left (the last daemon stopped cleanly) the file alone is the whole journal, read as
        immutable; with one, nothing is read rather than half."""
        try:  # a directory this daemon may not enter: PermissionError, not False
            if not path.exists():
                return None
            wal = path.with_name(FILE + "-wal")
            modes = ["mode=ro"] + ([] if wal.exists() and wal.stat().st_size else ["mode=ro&immutable=1"])
        except OSError:
            return None
        for mode in modes:
            try:
                db = sqlite3.connect(f"{path.absolute().as_uri()}?{mode}", uri=True, timeout=1.0)
            except sqlite3.Error:
                continue
            db.row_factory = sqlite3.Row
            try:
                loaded = _read(db)
            except (sqlite3.Error, IndexError, KeyError, TypeError, ValueError):
                continue
            finally:
                db.close()
            log.warning(
                "state_loaded_read_only",
                file=str(path),
                streams=len(loaded.active),
                hint="read back though it cannot be written now; written back once it can",
            )
            return loaded
        return None

    def _unavailable(self, exc: BaseException) -> Loaded:
        self.error = self._error(exc)
        check = (
            "stop the other daemon, or give each daemon a state_dir (--state-dir) of its own"
            if isinstance(exc, _Held)
            else "check the state directory (state_dir) exists and is writable by the daemon"
        )
        log.error(
            "state_unavailable",
            error=self.error,
            hint=f"running on memory: streams are lost if the daemon restarts now; retrying with "
            f"back-off; {check}",
        )
        return Loaded()

    # -- the writer thread ------------------------------------------------------------------------
    def _write_loop(self) -> None:
        while True:
            wait = None if self._db is not None else max(0.0, self._retry_at - time.monotonic())
            try:
                batch = [self._queue.get(timeout=wait)]
            except queue.Empty:
                batch = []
            while True:  # everything queued meanwhile goes in the same transaction
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            changes = [op for op in batch if isinstance(op, _Put | _Forget | _Confirm | _Served | _Record)]
            flushes = [op for op in batch if isinstance(op, _Flush)]
            for op in changes:
                self._copy.apply(op)
            if self._db is None:
                if self.path is not None and time.monotonic() >= self._retry_at:
                    self._reopen(self.path)
            elif changes or any(f.confirmations for f in flushes):
                try:
                    self._write(self._db, changes, all_confirmations=any(f.confirmations for f in flushes))
                except Exception as exc:  # a bug must not end the writer silently
                    log.exception("state_writer_failed")
                    self._write_failed(sqlite3.Error(f"{type(exc).__name__}: {exc}"))
            for f in flushes:
                f.done.set()
            if None in batch:
                return

    def _write(self, db: sqlite3.Connection, changes: list[_Change], *, all_confirmations: bool) -> None:
        copy = self._copy
        due = [c for c in changes if isinstance(c, _Confirm) and c.at - copy.confirms_written_at >= c.every_s]
        confirming = bool((due or all_confirmations) and copy.pending)
        if not confirming and all(isinstance(c, _Confirm) for c in changes):
            return  # confirmations not due yet: nothing to write this round
        try:
            with _transaction(db):
                for op in changes:
                    if isinstance(op, _Put):
                        db.executemany("DELETE FROM confirmed WHERE id = ?", [(s.id,) for s in op.streams])
                        db.executemany(INSERT_STREAM, [_row(s) for s in op.streams])
                        db.executemany("INSERT OR REPLACE INTO last_usage VALUES (?, ?)", op.usage)
                        self._ended_rows += sum(1 for s in op.streams if s.status == "ended")
                    elif isinstance(op, _Forget):
                        db.execute("DELETE FROM last_usage WHERE container_id = ?", (op.container_id,))
                    elif isinstance(op, _Served):
                        db.execute("INSERT OR REPLACE INTO served VALUES (1, ?, ?)", (op.at, op.body))
                    elif isinstance(op, _Record):
                        db.execute(INSERT_HISTORY, _history_row(op.entry))
                        db.execute(PRUNE_HISTORY, (op.entry.seq - HISTORY_KEPT,))
                if confirming:
                    db.executemany("INSERT OR REPLACE INTO confirmed VALUES (?, ?)", copy.pending.items())
                if self._ended_rows > ENDED_KEPT + PRUNE_EVERY:  # now and then, not on every change
                    self._prune(db)
        except sqlite3.Error as exc:
            self._write_failed(exc)
            return
        if confirming:
            copy.pending.clear()
            copy.confirms_written_at = max((c.at for c in due), default=copy.confirms_written_at)

    def _prune(self, db: sqlite3.Connection) -> None:
        db.execute(PRUNE, (ENDED_KEPT - 1,))
        self._ended_rows = db.execute("SELECT COUNT(*) FROM streams WHERE status = 'ended'").fetchone()[0]

    def _write_failed(self, exc: sqlite3.Error) -> None:
        self.error = f"{self.path}: {exc}"
        log.error(
            "state_write_failed",
            error=self.error,
            hint="running on memory meanwhile; the journal is reopened with back-off and "
            "the streams written back (state_recovered)",
        )
        self._close_db()
        self._failed_now()

    def _failed_now(self) -> None:
        delay = self._retry_s[min(self._failures, len(self._retry_s) - 1)]
        self._failures += 1
        self._retry_at = time.monotonic() + delay

    def _reopen(self, path: Path) -> None:
        """Reopen and write the whole copy back, in one transaction."""
        copy = self._copy
        try:
            self._lock(path)  # a daemon that found another one at start-up takes over once it went
            db = _connect(path)
        except (sqlite3.Error, OSError, _Unreadable) as exc:
            self.error = self._error(exc)
            self._failed_now()
            return
        try:
            with _transaction(db):
                db.execute("DELETE FROM confirmed")
                db.execute("DELETE FROM last_usage")
                db.execute("DELETE FROM streams WHERE status = 'started'")
                db.executemany(INSERT_STREAM, [_row(s) for s in (*copy.ended, *copy.active.values())])
                db.executemany("INSERT INTO last_usage VALUES (?, ?)", copy.last_usage.items())
                if copy.served is not None:
                    served = (copy.served.at, copy.served.body)
                    db.execute("INSERT OR REPLACE INTO served VALUES (1, ?, ?)", served)
                db.executemany(INSERT_HISTORY, [_history_row(e) for e in copy.history])
                self._prune(db)
        except sqlite3.Error as exc:
            db.close()
            self.error = f"{self.path}: {exc}"
            self._failed_now()
            return
        copy.pending.clear()
        self._db, self.error, self._failures = db, None, 0
        log.warning("state_recovered", file=str(self.path), streams=len(copy.active))

    def _close_db(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
