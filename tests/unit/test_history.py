"""The history of what the daemon did (orchestrator/state/history.py): its bound, its filters,
and that it survives a restart through the journal (a real SQLite file, a real writer thread)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.docker.containers import ContainerInfo
from orchestrator.docker.engines import engine_labels, engine_sighting
from orchestrator.state.history import HISTORY_KEPT, History
from orchestrator.state.journal import FILE, StreamJournal
from orchestrator.state.store import StateStore
from reconcilers.model import CreateEngine, EnginePorts, EngineSpec
from reconcilers.vpn import ContainerSeen, HealthReported, VpnContainer

SPEC = EngineSpec(image="engine:1")


OPENED: list[StreamJournal] = []


@pytest.fixture(autouse=True)
def _close_journals() -> Iterator[None]:
    yield
    while OPENED:
        OPENED.pop().close()


def store_on(directory: Path) -> StateStore:
    """The next daemon on `directory`: one still open there is as if killed (its lock released)."""
    for earlier in OPENED:
        if earlier.path == directory / FILE:
            earlier._release_lock()
    journal = StreamJournal(directory)
    OPENED.append(journal)
    store = StateStore(journal=journal)
    store.restore_streams()
    return store


def settle(store: StateStore) -> None:
    """Wait for the writer thread to write what the store queued."""
    assert store._journal.flush()


def on_disk(directory: Path, query: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(directory / FILE)
    try:
        return [tuple(r) for r in db.execute(query)]
    finally:
        db.close()


def test_the_history_keeps_the_newest_entries_up_to_its_bound() -> None:
    history = History(kept=3)
    for n in range(5):
        history.add("created", f"e{n}", "pool below target", at=float(n))
    kept = history.select()
    assert [e.target for e in kept] == ["e2", "e3", "e4"]
    assert [e.seq for e in kept] == [3, 4, 5] and history.bound == 3


def test_filters_by_engine_vpn_kind_and_time() -> None:
    history = History()
    history.add("created", "e1", "r", at=10.0, engine="e1", vpn="g1")
    history.add("hidden", "e2", "r", at=20.0, engine="e2", vpn="g2")
    history.add("vpn_unhealthy", "g1", "r", at=30.0, vpn="g1")
    assert [e.target for e in history.select(vpn="g1")] == ["e1", "g1"]
    assert [e.target for e in history.select(engine="e2")] == ["e2"]
    assert [e.target for e in history.select(kinds=frozenset({"hidden", "created"}))] == ["e1", "e2"]
    assert [e.target for e in history.select(since=20.0)] == ["e2", "g1"]
    assert [e.target for e in history.select(limit=1)] == ["g1"]
    assert [e.target for e in history.select(after_seq=2)] == ["g1"]


def _healthy_vpn_with_engine(store: StateStore) -> str:
    now = time.time()
    seen = VpnContainer(id="g1-id", status="running", health="healthy", started_at=now - 60, ip="10.0.0.2")
    store.apply_vpn("g1", ContainerSeen(container=seen), now - 60)
    ports = EnginePorts(http=19000, https=19001, api=19002, p2p=19003)
    create = CreateEngine(
        vpn="g1", vpn_id="g1-id", slot=0, forwarded=False, spec_hash="h", reason="test", ports=ports
    )
    info = engine_sighting(
        ContainerInfo(
            id="e1",
            name="engine-e1",
            status="running",
            health=None,
            started_at=now - 30,
            created_at=now - 31,
            labels=engine_labels(create, SPEC),
        )
    )
    store.upsert_engine(info)
    store.mark_ready(info.obs.container_id, info.obs.started_at)
    return info.obs.name


def test_a_vpn_turning_unhealthy_records_its_engines_hidden_with_reason_and_trigger(tmp_path: Path) -> None:
    store = store_on(tmp_path)
    name = _healthy_vpn_with_engine(store)
    assert [e.kind for e in store.history.select()] == ["shown"]

    store.apply_vpn("g1", HealthReported(container_id="g1-id", health="unhealthy"), 1_000_000_000.118)

    kinds = {e.kind: e for e in store.history.select()}
    assert kinds["vpn_unhealthy"].vpn == "g1"
    hidden = kinds["hidden"]
    assert hidden.engine == name and hidden.reason == "VPN g1 unhealthy"
    assert hidden.trigger is not None and "Docker `health_status: unhealthy` of g1 at" in hidden.trigger
    assert hidden.trigger.endswith(".118")


def test_the_history_survives_a_restart_and_numbering_continues(tmp_path: Path) -> None:
    store = store_on(tmp_path)
    _healthy_vpn_with_engine(store)
    store.record("restarted", "e1", "not answering its API for 60s", outcome="done")
    settle(store)
    before = store.history.select()

    again = store_on(tmp_path)

    assert again.history.select() == before
    assert again.record("removed", "e1", "pool above target").seq == before[-1].seq + 1
    settle(again)
    assert on_disk(tmp_path, "SELECT kind FROM history ORDER BY seq")[-1] == ("removed",)
    assert (tmp_path / FILE).exists()


def test_the_history_on_disk_is_bounded_to_the_newest_entries(tmp_path: Path) -> None:
    store = store_on(tmp_path)
    total = HISTORY_KEPT + 100
    for n in range(total):
        store.record("created", f"e{n}", "pool below target", trigger="test")
    settle(store)

    kept = on_disk(tmp_path, "SELECT target FROM history ORDER BY seq")
    assert len(kept) == HISTORY_KEPT == 500
    assert kept[0] == (f"e{total - HISTORY_KEPT}",) and kept[-1] == (f"e{total - 1}",)
    assert [e.target for e in store_on(tmp_path).history.select()] == [t for (t,) in kept]
