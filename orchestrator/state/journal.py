"""What the daemon learns only from the proxy and from time, kept on disk so a restart loses none.

The engines themselves need no journal: their labels are the daemon's memory and a restarted
daemon adopts them. But the streams the proxy reported, and when each engine last carried one,
exist nowhere else: without them a restarted daemon sees busy engines as idle, scales them down
under their viewers, and the proxy packs new streams onto them. So every change of the stream
registry is written through to SQLite (the standard library's; one small file in the state
directory, WAL mode, one transaction per change) and read back at start-up.

Failures never stop the daemon: a directory that cannot be created or written, or a database
that cannot be opened, means running on memory alone, with the reason on `/status` and in the
log (`state_unavailable`); a corrupt database is moved aside (`streams.db.corrupt-<time>`) and a
fresh one started, with a warning (`state_corrupt`). Never a crash loop.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from orchestrator.state.streams import Stream

log = structlog.get_logger()

FILE = "streams.db"
ENDED_KEPT = 1000
PRUNE_EVERY = 100  # ended streams written between two prunings of the history
SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    id TEXT PRIMARY KEY, container_id TEXT NOT NULL, key_type TEXT NOT NULL, key TEXT NOT NULL,
    playback_session_id TEXT NOT NULL, stat_url TEXT NOT NULL, command_url TEXT NOT NULL,
    is_live INTEGER NOT NULL, started_at REAL NOT NULL, confirmed_at REAL,
    status TEXT NOT NULL, ended_at REAL, end_reason TEXT
);
CREATE INDEX IF NOT EXISTS streams_by_status ON streams (status, ended_at);
CREATE TABLE IF NOT EXISTS last_usage (container_id TEXT PRIMARY KEY, at REAL NOT NULL);
"""
INSERT_STREAM = (
    "INSERT OR REPLACE INTO streams (id, container_id, key_type, key, playback_session_id, stat_url, "
    "command_url, is_live, started_at, confirmed_at, status, ended_at, end_reason) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
VERSION = 1
CORRUPT = ("SQLITE_NOTADB", "SQLITE_CORRUPT")


class _Unreadable(Exception):
    """The file opened but its content is not a journal this daemon can read."""


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


def _stream(row: sqlite3.Row) -> Stream:
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
        confirmed_at=row["confirmed_at"],
        status=row["status"],
        ended_at=row["ended_at"],
        end_reason=row["end_reason"],
    )


def _read(db: sqlite3.Connection) -> Loaded:
    ended = db.execute(
        "SELECT * FROM streams WHERE status = 'ended' ORDER BY ended_at DESC LIMIT ?", (ENDED_KEPT,)
    )
    return Loaded(
        active=[_stream(r) for r in db.execute("SELECT * FROM streams WHERE status = 'started'")],
        ended=[_stream(r) for r in ended][::-1],
        last_usage={r["container_id"]: float(r["at"]) for r in db.execute("SELECT * FROM last_usage")},
    )


class StreamJournal:
    """The registry's write-through copy. `error` says why it is not in use (then every write is a
    no-op and the daemon runs on memory)."""

    def __init__(self, directory: Path | None) -> None:
        self.path = directory / FILE if directory is not None else None
        self.error: str | None = None if directory is not None else "no state directory configured"
        self._db: sqlite3.Connection | None = None
        self._ended_rows = 0

    def open(self) -> Loaded:
        """Open (creating what is missing) and read back what was kept; never raises."""
        if self.path is None:
            return Loaded()
        path = self.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return self._open(path)
        except (sqlite3.Error, OSError, _Unreadable) as exc:
            if not _corrupt(exc):
                return self._unavailable(exc)  # unwritable, missing permissions, held by another
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

    def _open(self, path: Path) -> Loaded:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
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
                loaded = _read(db)
            except sqlite3.OperationalError as exc:
                if getattr(exc, "sqlite_errorname", "") != "SQLITE_ERROR":
                    raise  # read-only, locked, cannot open: not the content's fault
                raise _Unreadable(f"unexpected shape: {exc}") from exc
            except (IndexError, KeyError, TypeError, ValueError) as exc:
                raise _Unreadable(f"unexpected content: {exc!r}") from exc
            db.execute("BEGIN IMMEDIATE")  # proves the file is writable now, not at the first stream
            db.execute("COMMIT")
        except BaseException:
            db.close()
            raise
        self._db, self.error = db, None
        self._ended_rows = db.execute("SELECT COUNT(*) FROM streams WHERE status = 'ended'").fetchone()[0]
        log.info("state_loaded", file=str(path), streams=len(loaded.active), ended=len(loaded.ended))
        return loaded

    def _unavailable(self, exc: BaseException) -> Loaded:
        self.error = f"{self.path}: {exc}"
        log.error(
            "state_unavailable",
            error=self.error,
            hint="running on memory: streams are lost when the daemon restarts; check the state "
            "directory (state_dir) exists and is writable by the daemon's user",
        )
        return Loaded()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection | None]:
        if self._db is None:
            yield None
            return
        try:
            with self._db:  # one transaction
                yield self._db
        except sqlite3.Error as exc:
            self.error = f"{self.path}: {exc}"
            log.error("state_write_failed", error=self.error, hint="running on memory from now on")
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    def put(self, streams: Iterable[Stream], usage: dict[str, float]) -> None:
        """Write these streams (started or ended) and engines' last use, in one transaction."""
        with self._writing() as db:
            if db is None:
                return
            rows = [_row(s) for s in streams]
            db.executemany(INSERT_STREAM, rows)
            db.executemany("INSERT OR REPLACE INTO last_usage VALUES (?, ?)", usage.items())
            self._ended_rows += sum(1 for s in streams if s.status == "ended")
            if self._ended_rows > ENDED_KEPT + PRUNE_EVERY:  # now and then, not on every change
                db.execute(
                    "DELETE FROM streams WHERE status = 'ended' AND ended_at < (SELECT ended_at FROM "
                    "streams WHERE status = 'ended' ORDER BY ended_at DESC LIMIT 1 OFFSET ?)",
                    (ENDED_KEPT - 1,),
                )
                self._ended_rows = db.execute(
                    "SELECT COUNT(*) FROM streams WHERE status = 'ended'"
                ).fetchone()[0]

    def forget_engine(self, container_id: str) -> None:
        with self._writing() as db:
            if db is not None:
                db.execute("DELETE FROM last_usage WHERE container_id = ?", (container_id,))

    def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
