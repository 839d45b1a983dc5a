"""Which listed containers a resync inspects again (reconcilers/listing.py): Docker's uptime
text read as a range, and the cases where the listing vouches for the inspect held."""

from __future__ import annotations

import pytest

from reconcilers.listing import YOUNG_S, Inspected, Listed, health_text, must_inspect, uptime_bounds

MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0


@pytest.mark.parametrize(
    ("status", "bounds"),
    [
        ("Up Less than a second", (0.0, 1.0)),
        ("Up 1 second", (1.0, 2.0)),
        ("Up 42 seconds (health: starting)", (42.0, 43.0)),
        ("Up About a minute", (60.0, 120.0)),
        ("Up 5 minutes (healthy)", (300.0, 360.0)),
        ("Up About an hour", (0.5 * HOUR, 2.5 * HOUR)),
        ("Up 3 hours", (2 * HOUR, 4 * HOUR)),
        ("Up 2 days", (2 * DAY - HOUR, 3 * DAY + HOUR)),
        ("Up 3 weeks", (21 * DAY - HOUR, 28 * DAY + HOUR)),
        ("Up 4 months", (120 * DAY - HOUR, 150 * DAY + HOUR)),
        ("Up 2 years", (730 * DAY, 1095 * DAY + DAY)),
        ("Up 5 minutes (Paused)", (300.0, 360.0)),
    ],
)
def test_uptime_text_read_as_a_range(status: str, bounds: tuple[float, float]) -> None:
    assert uptime_bounds(status) == bounds


@pytest.mark.parametrize(
    "status",
    [
        "Exited (0) 3 minutes ago",
        "Restarting (1) 2 seconds ago",
        "Created",
        "Up 5 fortnights",
        "up 5 minutes",
        "",
    ],
)
def test_other_texts_are_not_uptimes(status: str) -> None:
    assert uptime_bounds(status) is None


@pytest.mark.parametrize(
    ("status", "health"),
    [
        ("Up 5 minutes (healthy)", "(healthy)"),
        ("Up 2 hours (health: starting)", "(health: starting)"),
        ("Up 2 hours", ""),
    ],
)
def test_health_suffix(status: str, health: str) -> None:
    assert health_text(status) == health


NOW = 1_000_000.0
STARTED = NOW - 3 * HOUR  # the start the daemon's inspect saw, 3 hours ago
KNOWN = Inspected(state="running", health_text="(healthy)", digest="d1", started_at=STARTED)


def listed(status: str = "Up 3 hours (healthy)", state: str = "running", digest: str = "d1") -> Listed:
    return Listed(id="c1", state=state, status=status, digest=digest)


@pytest.mark.parametrize(
    ("entry", "known", "inspect"),
    [
        (listed(), KNOWN, False),
        (listed("Up 2 hours (healthy)"), KNOWN, False),  # Docker rounds hours: within its range
        (listed(), None, True),  # never inspected
        (listed(digest="d2"), KNOWN, True),  # labels, image, networks or addresses changed
        (listed("Up 3 hours (unhealthy)"), KNOWN, True),  # its health changed
        (listed("Up 3 hours"), KNOWN, True),  # its health check went away
        (listed("Up 45 seconds (healthy)"), KNOWN, True),  # restarted since: young
        (listed("Up 50 minutes (healthy)"), KNOWN, True),  # restarted long ago, the event missed
        (listed("Up 2 days (healthy)"), KNOWN, True),  # older than the start known: not the same run
        (listed("Exited (1) 2 minutes ago", state="exited"), KNOWN, True),
        (listed("Restarting (1) 2 seconds ago", state="restarting"), KNOWN, True),
        (listed(), Inspected(state="exited", health_text="", digest="d1", started_at=None), True),
        (listed(), Inspected(state="running", health_text="(healthy)", digest="d1", started_at=None), True),
        (listed("Up 5 fortnights (healthy)"), KNOWN, True),  # a text this code cannot read
    ],
    ids=[
        "unchanged",
        "hours_rounded_down",
        "unknown",
        "entry_changed",
        "health_changed",
        "health_gone",
        "restarted_young",
        "restarted_long_ago",
        "older_than_known",
        "exited",
        "restarting",
        "was_not_running",
        "start_unknown",
        "unreadable",
    ],
)
def test_must_inspect(entry: Listed, known: Inspected | None, inspect: bool) -> None:
    assert must_inspect(entry, known, NOW) is inspect


@pytest.mark.parametrize("age", [1.0, 30.0, 59.0, 75.0, 119.0, YOUNG_S - 61])
def test_a_restart_since_the_last_resync_is_always_inspected(age: float) -> None:
    """Whatever uptime text a run that started `age` seconds ago shows, the old inspect is not
    trusted: a resync comes at most 60 s after the last, plus its deadline."""
    started = NOW - age
    known = Inspected(state="running", health_text="", digest="d1", started_at=started)
    for text in ("Up Less than a second", f"Up {int(age)} seconds", "Up About a minute"):
        bounds = uptime_bounds(text)
        assert bounds is not None
        if bounds[0] <= age < bounds[1]:
            assert must_inspect(Listed(id="c1", state="running", status=text, digest="d1"), known, NOW)
