"""orchestrator/state/waiters.py as a table: deferrals (at times) and met requests in, the number
of free engines wanted out. acexy retries one request no sooner than 1 s after its last
deferral; requests deferred together are distinct viewers."""

from __future__ import annotations

import pytest

from orchestrator.state.waiters import RETRY_GAP_S, Waiters

UNTIL = 60.0  # how long a deferral keeps its waiter (DEMAND_S)

CASES = [
    # (id, steps: ("defer", t) | ("meet", t), now, wanted)
    ("nobody", [], 0.0, 0),
    ("one_request", [("defer", 0.0)], 0.1, 1),
    ("one_request_retrying_stays_one", [("defer", 0.0), ("defer", 1.0), ("defer", 3.0)], 3.1, 1),
    ("two_at_once_want_two", [("defer", 0.0), ("defer", 0.05)], 0.1, 2),
    (
        "two_at_once_retrying_stay_two",
        [("defer", 0.0), ("defer", 0.05), ("defer", 1.0), ("defer", 1.05), ("defer", 3.0), ("defer", 3.05)],
        3.1,
        2,
    ),
    ("a_burst_of_three", [("defer", 0.0), ("defer", 0.01), ("defer", 0.02)], 0.1, 3),
    ("a_retry_gap_later_is_the_same_request", [("defer", 0.0), ("defer", RETRY_GAP_S)], RETRY_GAP_S, 1),
    ("a_new_request_during_a_retry_wave", [("defer", 0.0), ("defer", 1.0), ("defer", 1.2)], 1.3, 2),
    ("met_once", [("defer", 0.0), ("defer", 0.05), ("meet", 2.0)], 2.1, 1),
    ("met_twice", [("defer", 0.0), ("defer", 0.05), ("meet", 2.0), ("meet", 2.5)], 2.6, 0),
    ("meeting_nobody_is_harmless", [("meet", 1.0), ("defer", 2.0)], 2.1, 1),
    ("forgotten_at_until", [("defer", 0.0)], UNTIL, 0),
    ("each_deferral_pushes_until_on", [("defer", 0.0), ("defer", 30.0)], UNTIL + 1, 1),
]


@pytest.mark.parametrize(("steps", "now", "wanted"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_free_engines_wanted(steps: list[tuple[str, float]], now: float, wanted: int) -> None:
    waiters = Waiters()
    for what, at in steps:
        if what == "defer":
            waiters.defer(at, at + UNTIL)
        else:
            waiters.meet(at)
    assert waiters.count(now) == wanted


def test_until_is_the_last_waiters_end_and_none_once_all_are_met() -> None:
    waiters = Waiters()
    assert waiters.until() is None
    waiters.defer(0.0, UNTIL)
    waiters.defer(0.05, 0.05 + UNTIL)
    assert waiters.until() == 0.05 + UNTIL
    waiters.meet(1.0)
    waiters.meet(1.0)
    assert waiters.until() is None
