"""The stall rules (`reconcilers.stalls`) and the planner's use of them, as tables.

Progress: one `stat_url` answer after another moves a stream's progress; a stream with no
progress for `stall_after_s` is stalled. An engine is stalled only when every stream it carries
is; the planner hides it (it no longer counts for the pool, so its replacement starts first),
removes it once its streams are over, and never touches an engine with one progressing stream.
The same tables cover the image a tag resolved to (`engines.pull`) and `engines.max_age_s`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import pytest

from reconcilers.model import Desired, EngineObs, StallOnset, VpnObs
from reconcilers.pool import plan
from reconcilers.stalls import (
    REPEATED_STALLS,
    STALL_WINDOW_S,
    Progress,
    StatSample,
    StreamStall,
    VpnStalls,
    advance,
    engine_verdict,
    exit_stalling,
    is_stalled,
    streams_to_end,
    tunnel_restart_due,
)
from testkit.factories import NOW, describe, desired, engine, observed, problem_codes, vpn

START = 500.0
MOVING = StatSample(peers=3, speed_down=81, downloaded=1000)


def sample(peers: int | None = 3, speed: float | None = 81, down: int | None = 1000) -> StatSample:
    return StatSample(peers=peers, speed_down=speed, downloaded=down)


def seen(
    at: float, s: StatSample, *, progress_at: float, progressing: bool, baseline: bool = False
) -> Progress:
    return Progress(
        sample=s, sampled_at=at, progress_at=progress_at, progressing=progressing, baseline=baseline
    )


def first(at: float, s: StatSample) -> Progress:
    """The first answer this process got for a stream: the baseline."""
    return seen(at, s, progress_at=at, progressing=s.moving, baseline=True)


@dataclass(frozen=True, kw_only=True)
class ProgressCase:
    id: str
    before: Progress | None
    answer: StatSample
    at: float
    progressing: bool
    progress_at: float
    stalled_after_60: bool  # is_stalled at `at` with stall_after_s=60


PROGRESS_CASES = [
    ProgressCase(
        id="first_answer_with_peers_is_progress",
        before=None,
        answer=sample(),
        at=530,
        progressing=True,
        progress_at=530,
        stalled_after_60=False,
    ),
    # The first answer a process gets is a baseline, never a stall by itself: the stream's start
    # is not counted from (after a daemon restart, a stream read back from the journal started
    # long before; it used to be judged stalled on that one answer, hidden and replaced at once).
    ProgressCase(
        id="first_answer_without_peers_or_speed_is_a_baseline_not_a_stall",
        before=None,
        answer=sample(0, 0, 0),
        at=560,  # 60 s after the stream's start
        progressing=False,
        progress_at=560,
        stalled_after_60=False,
    ),
    ProgressCase(
        id="first_answer_of_a_stream_started_an_hour_ago_is_a_baseline_not_a_stall",
        before=None,
        answer=sample(0, 0, 5_000_000),
        at=START + 3600,
        progressing=False,
        progress_at=START + 3600,
        stalled_after_60=False,
    ),
    ProgressCase(
        id="second_answer_without_progress_30s_after_the_baseline_is_no_stall_yet",
        before=first(530, sample(0, 0, 0)),
        answer=sample(0, 0, 0),
        at=560,
        progressing=False,
        progress_at=530,
        stalled_after_60=False,
    ),
    ProgressCase(
        id="answers_without_progress_for_60s_after_the_baseline_are_a_stall",
        before=seen(560, sample(0, 0, 0), progress_at=530, progressing=False),
        answer=sample(0, 0, 0),
        at=590,
        progressing=False,
        progress_at=530,
        stalled_after_60=True,
    ),
    ProgressCase(
        id="an_answer_60s_after_a_baseline_without_progress_is_a_stall",
        before=first(530, sample(0, 0, 0)),
        answer=sample(0, 0, 0),
        at=590,
        progressing=False,
        progress_at=530,
        stalled_after_60=True,
    ),
    ProgressCase(
        id="after_a_baseline_with_peers_more_downloaded_is_progress",
        before=first(530, sample(down=1000)),
        answer=sample(down=2000),
        at=560,
        progressing=True,
        progress_at=560,
        stalled_after_60=False,
    ),
    ProgressCase(
        id="more_downloaded_with_peers_is_progress",
        before=seen(530, sample(down=1000), progress_at=530, progressing=True),
        answer=sample(down=9000),
        at=560,
        progressing=True,
        progress_at=560,
        stalled_after_60=False,
    ),
    ProgressCase(
        id="peers_but_nothing_more_downloaded_is_no_progress",
        before=seen(530, sample(down=1000), progress_at=530, progressing=True),
        answer=sample(down=1000),
        at=560,
        progressing=False,
        progress_at=530,
        stalled_after_60=False,
    ),
    ProgressCase(
        id="nothing_downloaded_for_60s_is_a_stall",
        before=seen(560, sample(down=1000), progress_at=530, progressing=False),
        answer=sample(down=1000),
        at=590,
        progressing=False,
        progress_at=530,
        stalled_after_60=True,
    ),
    ProgressCase(
        id="no_peers_no_speed_is_no_progress_even_if_bytes_grew",
        before=seen(530, sample(down=1000), progress_at=530, progressing=True),
        answer=sample(0, 0, 2000),
        at=600,
        progressing=False,
        progress_at=530,
        stalled_after_60=True,
    ),
    ProgressCase(
        id="progress_again_clears_the_stall",
        before=seen(600, sample(0, 0, 1000), progress_at=500, progressing=False),
        answer=sample(down=5000),
        at=630,
        progressing=True,
        progress_at=630,
        stalled_after_60=False,
    ),
    ProgressCase(
        id="an_engine_reporting_no_bytes_is_judged_by_peers_and_speed",
        before=seen(530, sample(down=None), progress_at=530, progressing=True),
        answer=sample(peers=2, speed=10, down=None),
        at=560,
        progressing=True,
        progress_at=560,
        stalled_after_60=False,
    ),
]


@pytest.mark.parametrize("case", PROGRESS_CASES, ids=lambda c: c.id)
def test_progress(case: ProgressCase) -> None:
    after = advance(case.before, case.answer, case.at)
    assert (after.progressing, after.progress_at, after.sampled_at, after.baseline) == (
        case.progressing,
        case.progress_at,
        case.at,
        case.before is None,
    )
    assert is_stalled(after, case.at, 60.0) is case.stalled_after_60


def test_no_answer_yet_is_not_a_stall() -> None:
    assert is_stalled(None, NOW, 60.0) is False


@pytest.mark.parametrize("later", [0, 60, 3600])
def test_the_baseline_alone_is_never_a_stall_however_long_no_answer_follows(later: float) -> None:
    # no further answer (the stat_url stopped answering): no verdict on the one answer seen
    baseline = advance(None, sample(0, 0, 0), START + 3600)
    assert is_stalled(baseline, START + 3600 + later, 60.0) is False


@pytest.mark.parametrize(
    ("streams", "verdict"),
    [
        ((), "idle"),
        ((True,), "stalled"),
        ((True, True), "stalled"),
        ((True, False), "progressing"),  # one progressing stream: never touched
        ((False,), "progressing"),
        ((True, None), "unknown"),  # a stream with no answer yet: not judged
        ((None,), "unknown"),
    ],
)
def test_engine_verdict(streams: tuple[bool | None, ...], verdict: str) -> None:
    assert engine_verdict(streams) == verdict


def test_streams_of_an_engine_stalled_past_the_grace_end() -> None:
    frozen = seen(NOW - 10, sample(0, 0, 1000), progress_at=NOW - 300, progressing=False)
    streams = [
        StreamStall(stream_id="s1", container_id="a", progress=frozen),
        StreamStall(stream_id="s2", container_id="b", progress=frozen),
        StreamStall(stream_id="s3", container_id="c", progress=frozen),
        StreamStall(stream_id="s4", container_id="a", progress=None),  # reported since: not judged
        StreamStall(stream_id="s5", container_id="a", progress=frozen, is_live=False),  # VOD: never stalls
    ]
    # a stalled for 130 s (past the 120 s grace), b for 60 s; c is not stalled
    assert streams_to_end(streams, {"a": NOW - 130, "b": NOW - 60}, NOW, 60.0, 120.0) == ["s1"]
    assert not is_stalled(frozen, NOW, 60.0, is_live=False) and is_stalled(frozen, NOW, 60.0)


def onsets(*stalls: tuple[str, float] | tuple[str, float, str]) -> tuple[StallOnset, ...]:
    """(container ID, seconds before NOW[, content]) for each time an engine turned stalled;
    without a content, each engine's own (`content-<ID>`): distinct engines, distinct swarms."""
    return tuple(
        StallOnset(
            container_id=s[0], at=NOW - s[1], contents=frozenset({s[2] if len(s) == 3 else f"content-{s[0]}"})
        )
        for s in stalls
    )


@dataclass(frozen=True, kw_only=True)
class ExitCase:
    id: str
    vpns: tuple[VpnStalls, ...]
    reported: tuple[str, ...]


EXIT_CASES = [
    ExitCase(
        id="one_vpn_stalls_while_the_other_progresses",
        vpns=(
            VpnStalls(vpn="g1", stalled_engines=("engine-a",)),
            VpnStalls(vpn="g2", progressing_engines=("engine-b",)),
        ),
        reported=("g1",),
    ),
    ExitCase(
        id="both_stall_says_nothing_of_one_exit",
        vpns=(
            VpnStalls(vpn="g1", stalled_engines=("engine-a",)),
            VpnStalls(vpn="g2", stalled_engines=("engine-b",)),
        ),
        reported=(),
    ),
    ExitCase(
        id="a_stall_beside_progress_on_the_same_vpn_is_the_swarm_not_the_exit",
        vpns=(
            VpnStalls(vpn="g1", stalled_engines=("engine-a",), progressing_engines=("engine-c",)),
            VpnStalls(vpn="g2", progressing_engines=("engine-b",)),
        ),
        reported=(),
    ),
    ExitCase(
        id="repeated_stalls_on_one_vpn",
        vpns=(VpnStalls(vpn="g1", recent_stalls=onsets(("a", 0), ("b", 60), ("c", 120))),),
        reported=("g1",),
    ),
    ExitCase(
        id="old_stalls_are_forgotten",
        vpns=(VpnStalls(vpn="g1", recent_stalls=onsets(("a", 4000), ("b", 4001), ("c", 4002))),),
        reported=(),
    ),
    # "three engines behind it turned stalled within 30 minutes": distinct engines, not onsets.
    # Literal numbers (3 engines, 1800 s) on purpose: a changed constant fails here.
    ExitCase(
        id="one_engine_stalling_three_times_is_one_swarm_not_the_exit",
        vpns=(VpnStalls(vpn="g1", recent_stalls=onsets(("a", 0), ("a", 300), ("a", 600))),),
        reported=(),
    ),
    ExitCase(
        id="two_engines_stalling_again_and_again_are_not_three",
        vpns=(VpnStalls(vpn="g1", recent_stalls=onsets(("a", 0), ("b", 60), ("a", 300), ("b", 400))),),
        reported=(),
    ),
    ExitCase(
        id="three_engines_the_oldest_just_within_the_window",
        vpns=(VpnStalls(vpn="g1", recent_stalls=onsets(("a", 1800 - 1), ("b", 60), ("c", 0))),),
        reported=("g1",),
    ),
    ExitCase(
        id="three_engines_the_oldest_just_past_the_window",
        vpns=(VpnStalls(vpn="g1", recent_stalls=onsets(("a", 1800 + 1), ("b", 60), ("c", 0))),),
        reported=(),
    ),
    # one dead content the proxy tried on engine after engine is one swarm, not the exit
    ExitCase(
        id="one_content_stalling_on_three_engines_is_one_swarm_not_the_exit",
        vpns=(VpnStalls(vpn="g1", recent_stalls=onsets(("a", 0, "x"), ("b", 60, "x"), ("c", 120, "x"))),),
        reported=(),
    ),
    ExitCase(
        id="three_engines_on_two_contents_are_not_three_swarms",
        vpns=(VpnStalls(vpn="g1", recent_stalls=onsets(("a", 0, "x"), ("b", 60, "x"), ("c", 120, "y"))),),
        reported=(),
    ),
    ExitCase(
        id="three_engines_on_three_contents",
        vpns=(VpnStalls(vpn="g1", recent_stalls=onsets(("a", 0, "x"), ("b", 60, "y"), ("c", 120, "z"))),),
        reported=("g1",),
    ),
    ExitCase(
        id="an_engine_stalled_again_counts_by_its_latest_stall",
        vpns=(VpnStalls(vpn="g1", recent_stalls=onsets(("a", 1800 + 1), ("b", 60), ("c", 0), ("a", 10))),),
        reported=("g1",),
    ),
]


@pytest.mark.parametrize("case", EXIT_CASES, ids=lambda c: c.id)
def test_exit_stalling(case: ExitCase) -> None:
    assert tuple(v.vpn for v in exit_stalling(case.vpns, NOW)) == case.reported


def test_the_exit_rule_is_three_engines_within_30_minutes() -> None:
    # what docs/stalls-and-freshness.md says; the tables above use these literal numbers
    assert (REPEATED_STALLS, STALL_WINDOW_S) == (3, 1800)
    (verdict,) = exit_stalling([VpnStalls(vpn="g1", recent_stalls=onsets(("a", 0), ("b", 1), ("c", 2)))], NOW)
    assert verdict.message.startswith(
        "3 engines behind VPN 'g1' stalled within 1800s, on 3 different contents"
    )


@pytest.mark.parametrize(
    ("stalling", "progressing", "last_restart", "due"),
    [
        (True, False, None, True),  # first time: ask Gluetun for another exit
        (False, False, None, False),  # not reported stalling
        (True, True, None, False),  # an engine behind it still progresses: keep the exit
        (True, False, NOW - 600, False),  # within the interval (3600 s)
        (True, False, NOW - 3600, True),  # the interval is over
    ],
)
def test_tunnel_restart_due(stalling: bool, progressing: bool, last_restart: float | None, due: bool) -> None:
    got = tunnel_restart_due(
        stalling=stalling, progressing=progressing, last_restart=last_restart, now=NOW, interval_s=3600.0
    )
    assert got is due


# -- the planner ----------------------------------------------------------------------------------


def stalled(e: EngineObs, since: float = NOW - 10, streams: tuple[str, ...] = ("s1",)) -> EngineObs:
    return dataclasses.replace(e, stalled_since=since, stalled_streams=streams if e.streams else ())


def progressing(e: EngineObs) -> EngineObs:
    return dataclasses.replace(e, progressing=True)


def with_image(e: EngineObs, image_id: str) -> EngineObs:
    return dataclasses.replace(e, image_id=image_id)


SINGLE = desired("single")
REDUNDANT = desired("redundant", min_replicas=2, min_free=1)
WATCHED = dataclasses.replace(SINGLE, engines=dataclasses.replace(SINGLE.engines, image_id="sha256:new"))
OLD_AFTER_1H = dataclasses.replace(SINGLE, engines=dataclasses.replace(SINGLE.engines, max_age_s=3600.0))


@dataclass(frozen=True, kw_only=True)
class PlanCase:
    id: str
    desired: Desired
    engines: tuple[EngineObs, ...]
    vpns: tuple[VpnObs, ...] = (vpn("g1"),)
    fields: dict[str, Any] = dataclasses.field(default_factory=dict)  # of Observed
    actions: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


PLAN_CASES = [
    PlanCase(
        id="a_stalled_engine_is_replaced_before_it_goes",
        desired=SINGLE,
        engines=(stalled(engine("a", 0, "g1", streams=1)), engine("b", 1, "g1"), engine("c", 2, "g1")),
        actions=("create g1#3",),  # a no longer counts; it stays while its stream lasts
        problems=("engine_stalled@g1",),
    ),
    PlanCase(
        id="a_stalled_engine_goes_once_its_streams_ended",
        desired=SINGLE,
        engines=(
            stalled(engine("a", 0, "g1")),
            engine("b", 1, "g1"),
            engine("c", 2, "g1"),
            engine("d", 3, "g1"),
        ),
        actions=("remove a",),
    ),
    PlanCase(
        id="an_engine_with_a_progressing_stream_is_never_touched",
        desired=SINGLE,
        engines=(
            progressing(engine("a", 0, "g1", streams=2)),
            engine("b", 1, "g1"),
            engine("c", 2, "g1"),
        ),
        actions=(),
    ),
    PlanCase(
        id="a_reconnect_stale_engine_restarts_once_stalled",
        desired=SINGLE,
        vpns=(vpn("g1", reconnected_at=NOW - 20),),
        engines=(
            stalled(engine("a", 0, "g1", streams=1)),
            engine("b", 1, "g1", started_at=NOW - 5),
            engine("c", 2, "g1", started_at=NOW - 5),
            engine("d", 3, "g1", started_at=NOW - 5),
        ),
        actions=("restart a",),
        problems=("engine_stalled@g1",),
    ),
    PlanCase(
        id="a_reconnect_stale_busy_engine_that_progresses_is_left_alone",
        desired=SINGLE,
        vpns=(vpn("g1", reconnected_at=NOW - 20),),
        engines=(
            progressing(engine("a", 0, "g1", streams=1)),
            engine("b", 1, "g1", started_at=NOW - 5),
            engine("c", 2, "g1", started_at=NOW - 5),
        ),
        actions=(),
    ),
    PlanCase(
        id="one_vpn_stalling_while_the_other_progresses_is_reported",
        desired=REDUNDANT,
        vpns=(vpn("g1"), vpn("g2")),
        engines=(
            stalled(engine("a", 0, "g1", streams=1)),
            progressing(engine("b", 0, "g2", streams=1)),
            engine("c", 1, "g1"),
            engine("d", 1, "g2"),
        ),
        problems=("engine_stalled@g1", "vpn_exit_stalling@g1"),
    ),
    PlanCase(
        id="a_new_digest_under_the_tag_rolls_one_idle_engine_create_first",
        desired=WATCHED,
        engines=(
            with_image(engine("a", 0, "g1"), "sha256:old"),
            with_image(engine("b", 1, "g1"), "sha256:old"),
            with_image(engine("c", 2, "g1"), "sha256:old"),
        ),
        actions=("create g1#3",),
    ),
    PlanCase(
        id="the_rollout_to_a_new_digest_removes_an_old_engine_once_the_new_one_answers",
        desired=WATCHED,
        engines=(
            with_image(engine("a", 0, "g1"), "sha256:old"),
            with_image(engine("b", 1, "g1"), "sha256:old"),
            with_image(engine("c", 2, "g1"), "sha256:old"),
            with_image(engine("d", 3, "g1", created_at=900.0), "sha256:new"),
        ),
        actions=("remove a",),  # an engine of the old image; the new one stays
    ),
    PlanCase(
        id="a_rollout_step_waits_while_the_image_is_being_pulled",
        desired=WATCHED,
        engines=(
            with_image(engine("a", 0, "g1"), "sha256:old"),
            with_image(engine("b", 1, "g1"), "sha256:old"),
            with_image(engine("c", 2, "g1"), "sha256:old"),
        ),
        fields={"image_pulling": True},
    ),
    PlanCase(
        id="a_new_digest_never_touches_an_engine_with_a_stream",
        desired=dataclasses.replace(WATCHED, engines=dataclasses.replace(WATCHED.engines, min_replicas=1)),
        engines=(
            with_image(engine("a", 0, "g1", streams=1), "sha256:old"),
            with_image(engine("b", 1, "g1"), "sha256:new"),
        ),
        actions=(),
    ),
    PlanCase(
        id="a_registry_out_of_reach_is_a_problem_and_nothing_else",
        desired=SINGLE,
        engines=(engine("a", 0, "g1"), engine("b", 1, "g1"), engine("c", 2, "g1")),
        fields={"image_error": "connection refused"},
        problems=("image_pull_failed",),
    ),
    PlanCase(
        id="max_age_replaces_an_old_idle_engine_one_at_a_time",
        desired=OLD_AFTER_1H,
        engines=(
            engine("a", 0, "g1", created_at=NOW - 4000),
            engine("b", 1, "g1", created_at=NOW - 3900),
            engine("c", 2, "g1", created_at=NOW - 10),
        ),
        actions=("create g1#3",),
    ),
    PlanCase(
        id="max_age_never_touches_an_engine_with_a_stream",
        desired=OLD_AFTER_1H,
        engines=(
            engine("a", 0, "g1", created_at=NOW - 4000, streams=1),
            engine("b", 1, "g1", created_at=NOW - 10),
            engine("c", 2, "g1", created_at=NOW - 10),
        ),
        actions=(),
    ),
]


@pytest.mark.parametrize("case", PLAN_CASES, ids=lambda c: c.id)
def test_plan_with_stalls_images_and_age(case: PlanCase) -> None:
    world = dataclasses.replace(observed(case.desired, case.engines, case.vpns), **case.fields)
    result = plan(case.desired, world, NOW)
    assert sorted(describe(a) for a in result.actions) == sorted(case.actions)
    assert problem_codes(result) == sorted(case.problems)


def test_the_stalled_problem_names_the_engine_and_its_streams() -> None:
    world = observed(SINGLE, (stalled(engine("a", 0, "g1", streams=1), streams=("s1",)),), (vpn("g1"),))
    found = [p for p in plan(SINGLE, world, NOW).problems if p.code == "engine_stalled"]
    assert [(p.engine, p.streams) for p in found] == [("engine-a", ("s1",))]
