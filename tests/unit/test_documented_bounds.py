"""The bounds the docs promise, held to the code: each row names the words of a page and the
constant that keeps them. Changing a constant fails here until the page says the same (and a
page that stops saying it fails too), so no promised bound drifts away from what runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator.docker import gateway
from orchestrator.state import journal, liveness
from orchestrator.state.history import HISTORY_KINDS
from orchestrator.workers import event_source, readiness, watchdog
from reconcilers import pool

DOCS = Path(__file__).resolve().parents[2] / "docs"

ROWS = [
    # (page, the words it promises, the value in the code, the value the words say)
    ("reliability.md", "10 s for an inspect or a listing", gateway.READ_TIMEOUT_S, 10.0),
    ("reliability.md", "30 s for a create, start or remove", gateway.WRITE_TIMEOUT_S, 30.0),
    ("reliability.md", "a restart its stop timeout plus 30 s", gateway.RESTART_SLACK_S, 30.0),
    ("reliability.md", "an image pull 10 min", gateway.PULL_TIMEOUT_S, 600.0),
    ("reliability.md", "A resync has a 60 s deadline", event_source.RESYNC_DEADLINE_S, 60.0),
    ("reliability.md", "at most 16 inspects in flight", event_source.RESYNC_CONCURRENCY, 16),
    ("reliability.md", "A timed resync (every 45 ± 15 s)", event_source.RESYNC_INTERVAL_S, 45.0),
    ("reliability.md", "A timed resync (every 45 ± 15 s)", event_source.RESYNC_JITTER_S, 15.0),
    ("reliability.md", "every eighth timed resync", event_source.FULL_SWEEP_EVERY, 8),
    ("reliability.md", "Docker out of reach for 60 s", liveness.DOCKER_DOWN_S, 60.0),
    ("reliability.md", "resync finished) for 150 s", liveness.PROGRESS_STALE_S, 150.0),
    ("reliability.md", "loop that has not turned for 60 s", watchdog.LOOP_STALL_S, 60.0),
    ("reliability.md", "an event source stuck for 10 min", watchdog.PROGRESS_EXIT_S, 600.0),
    ("reliability.md", "ends the process with status 70", watchdog.EXIT_STUCK, 70),
    ("operations.md", "recheck every 10 s", readiness.RECHECK_S, 10.0),
    ("stream-safety.md", "is removed 5 s later (`pool.RETIRE_GRACE_S`)", pool.RETIRE_GRACE_S, 5.0),
    ("operations.md", "three missed checks in a row", readiness.LIVENESS_FAILURES, 3),
    (
        "state-journal.md",
        "(1, 2, 5, 10, 30, then every 60 s)",
        journal.RETRY_S,
        (1.0, 2.0, 5.0, 10.0, 30.0, 60.0),
    ),
]


@pytest.mark.parametrize(("page", "words", "value", "promised"), ROWS, ids=[f"{r[0]}:{r[1]}" for r in ROWS])
def test_a_documented_bound_is_the_one_in_force(
    page: str, words: str, value: object, promised: object
) -> None:
    text = re.sub(r"\s+", " ", (DOCS / page).read_text())
    assert words in text, f"{page} no longer says {words!r}: update this row with the page"
    assert value == promised, f"{page} promises {words!r}, the code has {value!r}"


def test_the_history_kinds_the_page_lists_are_the_kinds_recorded() -> None:
    text = (DOCS / "status-page.md").read_text()
    (row,) = [line for line in text.splitlines() if line.startswith("| `kind` |")]
    listed = set(re.findall(r"`([a-z_]+)`", row.split("|")[2]))
    assert listed == set(HISTORY_KINDS)
