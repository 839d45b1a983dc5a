"""The soak's judgement of a cut viewer (bench/cuts.py): explained only by the test killing the
viewer's engine or restarting its VPN while the viewer watched; anything else, blips and daemon
SIGKILLs included, is unexplained. One row per branch."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from bench.cuts import (
    BLIP,
    DAEMON_KILLED,
    DOCKERD_RESTARTED,
    ENGINE_KILLED,
    HEALTH_FLIP,
    NAMESPACE_DIED,
    UNEXPLAINED,
    VPN_RESTARTED,
    Act,
    Watch,
    around,
    cause,
    same_container,
)

E1 = "e1" * 32  # a full 64-character container ID
E2 = "e2" * 32
WATCH = Watch(viewer="v1", engine=E1, began=100.0, cut_at=160.0)


@dataclass(frozen=True, kw_only=True)
class CutCase:
    id: str
    acts: list[Act]
    expected: str
    watch: Watch = WATCH


CASES = [
    CutCase(id="nothing_done_unexplained", acts=[], expected=UNEXPLAINED),
    CutCase(
        id="its_engine_killed", acts=[Act(kind=ENGINE_KILLED, at=150.0, target=E1)], expected=ENGINE_KILLED
    ),
    CutCase(
        id="its_engine_killed_short_id",
        acts=[Act(kind=ENGINE_KILLED, at=150.0, target=E1[:12])],
        expected=ENGINE_KILLED,
    ),
    CutCase(
        id="another_engine_killed", acts=[Act(kind=ENGINE_KILLED, at=150.0, target=E2)], expected=UNEXPLAINED
    ),
    CutCase(
        id="its_engine_killed_before_it_asked",
        acts=[Act(kind=ENGINE_KILLED, at=90.0, target=E1)],
        expected=UNEXPLAINED,
    ),
    CutCase(
        id="its_engine_killed_after_the_cut",
        acts=[Act(kind=ENGINE_KILLED, at=170.0, target=E1)],
        expected=UNEXPLAINED,
    ),
    CutCase(
        id="its_vpn_restarted",
        acts=[Act(kind=VPN_RESTARTED, at=155.0, target="g1", engines=frozenset({E1, E2}))],
        expected=NAMESPACE_DIED,
    ),
    CutCase(
        id="another_vpn_restarted",
        acts=[Act(kind=VPN_RESTARTED, at=155.0, target="g2", engines=frozenset({E2}))],
        expected=UNEXPLAINED,
    ),
    CutCase(
        id="cut_during_a_blip",
        acts=[Act(kind=BLIP, at=150.0, target="g1", until=165.0)],
        expected=UNEXPLAINED,
    ),
    CutCase(
        id="cut_after_a_daemon_sigkill",
        acts=[Act(kind=DAEMON_KILLED, at=150.0, until=152.0)],
        expected=UNEXPLAINED,
    ),
    CutCase(
        id="cut_during_a_health_flip",
        acts=[Act(kind=HEALTH_FLIP, at=150.0, target="g1", until=155.0)],
        expected=UNEXPLAINED,
    ),
    CutCase(
        id="dockerd_went_down_just_before_its_process_was_seen_gone",
        acts=[Act(kind=DOCKERD_RESTARTED, at=170.0, until=181.0)],
        expected=DOCKERD_RESTARTED,
    ),
    CutCase(
        id="dockerd_restarted_long_after_the_cut",
        acts=[Act(kind=DOCKERD_RESTARTED, at=300.0, until=311.0)],
        expected=UNEXPLAINED,
    ),
    CutCase(
        id="dockerd_restarted_long_before_the_viewer_asked",
        acts=[Act(kind=DOCKERD_RESTARTED, at=20.0, until=31.0)],
        expected=UNEXPLAINED,
    ),
    CutCase(
        id="engine_unknown_unexplained",
        acts=[Act(kind=ENGINE_KILLED, at=150.0, target=E1)],
        watch=Watch(viewer="v2", engine="", began=100.0, cut_at=160.0),
        expected=UNEXPLAINED,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_cause(case: CutCase) -> None:
    assert cause(case.watch, case.acts) == case.expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (E1, E1, True),
        (E1[:12], E1, True),
        (E1, E1[:12], True),
        (E1[:6], E1, False),
        ("", "", False),
        (E1, E2, False),
    ],
)
def test_same_container(a: str, b: str, expected: bool) -> None:
    assert same_container(a, b) is expected


def test_around_keeps_acts_near_the_cut_and_long_ones_still_going() -> None:
    near = Act(kind=ENGINE_KILLED, at=150.0, target=E2)
    far = Act(kind=ENGINE_KILLED, at=10.0, target=E2)
    long_blip = Act(kind=BLIP, at=50.0, target="g1", until=140.0)
    later = Act(kind=DAEMON_KILLED, at=300.0, until=302.0)
    assert around(160.0, [near, far, long_blip, later]) == [near, long_blip]
