"""Which listed containers a resync inspects again: one listing is one call, an inspect per
container is one call each, every 45 s, for as long as the daemon runs.

A resync lists the pool's containers; a container whose listing entry says nothing new since the
inspect the daemon holds keeps that inspect. "Nothing new" is judged on what an inspect would
change in the store: its state, its health (the status text's suffix), everything else of its
entry (labels, image, networks, addresses: `digest`), and whether it restarted. The listing has
no start time, only Docker's rounded uptime text ("Up 5 minutes", go-units' `HumanDuration`), so
a restart is caught two ways: a container up for less than `YOUNG_S` is always inspected (a
restart since the last resync is that young), and an uptime shorter than the time since the
start the daemon knows means it restarted in between. Anything not running, or any text this
module cannot read, is inspected. The event source adds a full sweep every few resyncs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

YOUNG_S = 180.0  # longer than a resync interval (45 +/- 15 s) and its deadline together
SLACK_S = 60.0  # the uptime text's rounding, beyond its own bounds, and clock skew

_UPTIME = re.compile(
    r"^Up (?P<amount>Less than a second|About a minute|About an hour|(?P<n>\d+) (?P<unit>\w+?)s?)\b"
)
_UNIT_S = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400, "month": 30 * 86400}
_HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class Listed:
    """A container as the listing shows it."""

    id: str
    state: str  # running, exited, restarting, paused, created, dead
    status: str  # Docker's text: "Up 5 minutes (healthy)", "Exited (1) 2 minutes ago"
    digest: str  # the rest of the entry (labels, image, networks, ports): any change shows here


@dataclass(frozen=True, slots=True)
class Inspected:
    """What the daemon last inspected of a container, with its listing entry at that resync."""

    state: str
    health_text: str
    digest: str
    started_at: float | None  # the inspect's start time (None: not running)


def uptime_bounds(status: str) -> tuple[float, float] | None:
    """The uptimes, in seconds, that Docker's "Up …" text can stand for (None: not such a text).

    Generous on both sides: Docker's versions round hours differently, and a wider range only
    costs an inspect more, never one less, where it matters (`must_inspect`)."""
    found = _UPTIME.match(status)
    if found is None:
        return None
    amount = found["amount"]
    if amount == "Less than a second":
        return 0.0, 1.0
    if amount == "About a minute":
        return 60.0, 120.0
    if amount == "About an hour":
        return 0.5 * _HOUR, 2.5 * _HOUR
    n, unit = int(found["n"]), found["unit"]
    if unit == "year":
        return n * 365 * 86400.0, (n + 1) * 365 * 86400.0 + 86400.0
    if unit not in _UNIT_S:
        return None
    size = _UNIT_S[unit]
    if unit == "hour":
        return (n - 1) * _HOUR, (n + 1) * _HOUR
    if size > _HOUR:  # counted in hours, which some versions round: half an hour either way
        return n * size - _HOUR, (n + 1) * size + _HOUR
    return float(n * size), float((n + 1) * size)


def health_text(status: str) -> str:
    """The status text's parenthesised suffix: "(healthy)", "(health: starting)", or ""."""
    _, paren, tail = status.partition(" (")
    return paren.strip() + tail if paren else ""


def must_inspect(listed: Listed, known: Inspected | None, now: float) -> bool:
    """True when the listing does not vouch for the inspect the daemon holds (`known`)."""
    if known is None or listed.state != "running" or known.state != "running":
        return True
    if listed.digest != known.digest or health_text(listed.status) != known.health_text:
        return True
    bounds = uptime_bounds(listed.status)
    if bounds is None or known.started_at is None:
        return True
    low, high = bounds
    expected = now - known.started_at
    if high < YOUNG_S:
        return True
    # up for less time than since the start we know: it restarted since (or the clocks disagree)
    return high + SLACK_S < expected or low - SLACK_S > expected
