"""The stream journal on a real SQLite file: what one store wrote, the next one reads back; a
missing, unwritable or corrupt state directory is a warning and a fresh start, never a crash."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from orchestrator.state.journal import ENDED_KEPT, FILE, PRUNE_EVERY, StreamJournal
from orchestrator.state.store import StateStore
from orchestrator.state.streams import Stream
from tests.unit.test_state_store import engine_info

T0 = 1_000_000.0


def stream(sid: str, container_id: str, at: float = T0 + 100, **kw: object) -> Stream:
    return Stream(id=sid, container_id=container_id, key_type="content_id", key=sid, started_at=at, **kw)  # type: ignore[arg-type]


def store_on(directory: Path | None) -> StateStore:
    store = StateStore(journal=StreamJournal(directory))
    store.restore_streams()
    return store


def test_a_restarted_store_reads_back_every_stream_and_last_use(tmp_path: Path) -> None:
    first = store_on(tmp_path / "state")
    first.replace_engines([engine_info("a", started_at=T0), engine_info("b", slot=1, started_at=T0)], 0)
    first.start_stream(stream("s1", "a", playback_session_id="p1", stat_url="http://x/ace/stat/1"))
    first.start_stream(stream("s2", "a"))
    first.start_stream(stream("s3", "b"))
    first.end_stream("s3", "completed", T0 + 200)
    first.confirm_streams(["s1"], T0 + 300)
    # no close(): as after a SIGKILL

    second = store_on(tmp_path / "state")

    assert second.state_error is None
    assert set(second.streams.active) == {"s1", "s2"}
    assert second.streams.active["s1"] == stream(
        "s1", "a", playback_session_id="p1", stat_url="http://x/ace/stat/1", confirmed_at=T0 + 300
    )
    assert [(s.id, s.end_reason) for s in second.streams.ended] == [("s3", "completed")]
    assert second.streams.last_usage == {"a": T0 + 100, "b": T0 + 200}
    assert second.streams.count("a") == 2  # busy before Docker is even asked


def test_streams_whose_engine_went_or_restarted_while_no_daemon_watched_are_ended(tmp_path: Path) -> None:
    first = store_on(tmp_path)
    engines = [engine_info(c, slot=i, started_at=T0) for i, c in enumerate("abc")]
    first.replace_engines(engines, 0)
    for cid in "abc":
        first.start_stream(stream(f"on-{cid}", cid))

    second = store_on(tmp_path)
    # the first resync: a unchanged, b restarted after its stream began, c gone
    second.replace_engines(
        [engine_info("a", started_at=T0), engine_info("b", slot=1, started_at=T0 + 150)], 0
    )

    assert set(second.streams.active) == {"on-a"}
    assert {(s.id, s.end_reason) for s in second.streams.ended} == {
        ("on-b", "engine_restarted"),
        ("on-c", "engine_gone"),
    }
    assert "c" not in second.streams.last_usage
    third = store_on(tmp_path)  # and the endings were written through too
    assert set(third.streams.active) == {"on-a"}


def test_a_corrupt_journal_is_moved_aside_and_a_fresh_one_started(tmp_path: Path) -> None:
    (tmp_path / FILE).write_bytes(b"this is not a database, it is an editor's swap file" * 100)

    store = store_on(tmp_path)

    assert store.state_error is None and not store.streams.active
    (aside,) = tmp_path.glob(f"{FILE}.corrupt-*")
    assert aside.read_bytes().startswith(b"this is not a database")
    store.replace_engines([engine_info("a", started_at=T0)], 0)
    store.start_stream(stream("s1", "a"))
    assert set(store_on(tmp_path).streams.active) == {"s1"}


def test_a_journal_of_unexpected_shape_is_moved_aside(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / FILE)
    db.execute("CREATE TABLE streams (id TEXT PRIMARY KEY, status TEXT)")
    db.execute("INSERT INTO streams VALUES ('x', 'started')")
    db.commit()
    db.close()

    store = store_on(tmp_path)

    assert store.state_error is None and not store.streams.active
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
    store.start_stream(stream("s1", "a"))  # works, in memory
    assert set(store.streams.active) == {"s1"}


def test_no_state_directory_is_memory_only_and_says_so() -> None:
    store = store_on(None)
    assert store.state_error == "no state directory configured"


def test_a_write_that_fails_later_turns_to_memory_only_without_raising(tmp_path: Path) -> None:
    journal = StreamJournal(tmp_path)
    store = StateStore(journal=journal)
    store.restore_streams()
    store.replace_engines([engine_info("a", started_at=T0)], 0)
    assert journal._db is not None
    journal._db.execute("DROP TABLE streams")  # the file changed under us

    store.start_stream(stream("s1", "a"))

    assert set(store.streams.active) == {"s1"}
    assert store.state_error is not None and "streams" in store.state_error


def test_ended_history_on_disk_is_bounded(tmp_path: Path) -> None:
    store = store_on(tmp_path)
    store.replace_engines([engine_info("a", started_at=T0)], 0)
    total = 3 * ENDED_KEPT
    for i in range(total):
        store.start_stream(stream(f"s{i}", "a", at=T0 + i))
        store.end_stream(f"s{i}", "completed", T0 + i + 0.5)
    db = sqlite3.connect(tmp_path / FILE)
    kept = db.execute("SELECT COUNT(*) FROM streams").fetchone()[0]
    db.close()
    assert ENDED_KEPT <= kept <= ENDED_KEPT + PRUNE_EVERY
    reread = store_on(tmp_path)
    assert len(reread.streams.ended) == ENDED_KEPT
    assert [s.id for s in reread.streams.ended][-2:] == [f"s{total - 2}", f"s{total - 1}"]
