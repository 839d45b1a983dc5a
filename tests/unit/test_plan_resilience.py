"""Planner rules that keep a long-running pool healthy: broken engines, failed actions, ports
held by someone else, port-layout changes and the forwarded engine's streams. Tables, no mocks."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from reconcilers import plan
from reconcilers.model import EngineObs, EnginePorts, Observed, Plan, VpnObs
from tests.unit.factories import (
    NOW,
    action_summary,
    desired,
    engine,
    observed,
    problem_codes,
    vpn,
)

NONE = desired(min_replicas=2, min_free=0)
SINGLE = desired("single", min_replicas=2, min_free=0)


@dataclass(frozen=True)
class Case:
    id: str
    world: Observed
    actions: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    wake_at: float | None = None
    desired_state: object = NONE


def world(d: object = NONE, engines: tuple[EngineObs, ...] = (), vpns: tuple[VpnObs, ...] = (),
          **extra: object) -> Observed:
    base = observed(d, engines, vpns)  # type: ignore[arg-type]
    return dataclasses.replace(base, **extra)  # type: ignore[arg-type]


CASES = [
    Case(id="paused_engine_is_replaced",
         world=world(engines=(engine("a", 0, status="paused"), engine("b", 1))),
         actions=("remove a", "create host#2")),
    Case(id="never_ready_engine_waits_for_ready_timeout",
         world=world(engines=(engine("a", 0, ready=False, started_at=NOW - 30), engine("b", 1))),
         wake_at=NOW - 30 + 120),
    Case(id="never_ready_engine_is_restarted_after_ready_timeout",
         world=world(engines=(engine("a", 0, ready=False, started_at=NOW - 121), engine("b", 1))),
         actions=("restart a",), problems=("engines_not_answering",)),
    Case(id="engine_that_just_stopped_answering_gets_the_full_ready_timeout",
         world=world(engines=(engine("a", 0, ready=False, started_at=NOW - 5000,
                                     unready_since=NOW - 10), engine("b", 1))),
         wake_at=NOW - 10 + 120),
    Case(id="unready_engine_behind_an_unhealthy_vpn_is_left_alone",
         desired_state=SINGLE,
         world=world(SINGLE, engines=(engine("a", 0, "g1", ready=False, started_at=NOW - 500),
                                      engine("b", 1, "g1")),
                     vpns=(vpn("g1", "unhealthy", state_since=NOW - 5),)),
         problems=("vpn_disconnected", "vpn_unhealthy@g1"), wake_at=NOW - 5 + 30),
    Case(id="engine_cooling_down_after_a_failed_action_is_left_alone_until_then",
         world=world(engines=(engine("a", 0, status="exited"), engine("b", 1), engine("c", 2)),
                     cooldowns={"a": NOW + 8}),
         wake_at=NOW + 8),
    Case(id="expired_cooldown_no_longer_protects",
         world=world(engines=(engine("a", 0, status="exited"), engine("b", 1), engine("c", 2)),
                     cooldowns={"a": NOW - 1}),
         actions=("remove a",)),
    Case(id="blocked_slot_is_skipped",
         world=world(blocked_slots=frozenset({(None, 0), (None, 2)})),
         actions=("create host#1", "create host#3")),
    Case(id="slot_whose_ports_an_old_layout_engine_holds_is_skipped",
         desired_state=SINGLE,
         # engine "a" was created under a layout where it got ports 19000-19002: slots 1 and 2
         # of today's layout have HTTP ports 19001 and 19002, so they must not be handed out
         world=world(SINGLE, engines=(engine("a", 0, "g1"),), vpns=(vpn("g1"),)),
         actions=("create g1#3",)),
    Case(id="forwarded_engine_with_a_stream_keeps_its_old_port_until_idle",
         desired_state=SINGLE,
         world=world(SINGLE, engines=(engine("a", 0, "g1", forwarded=True, p2p=40000, streams=1),
                                      engine("b", 1, "g1")),
                     vpns=(vpn("g1", forwarded_port=40001),))),
    Case(id="forwarded_port_not_read_since_the_vpn_returned_changes_nothing",
         desired_state=SINGLE,
         world=world(SINGLE, engines=(engine("a", 0, "g1"), engine("b", 1, "g1")),
                     vpns=(vpn("g1", forwarded_port=40001, port_known=False),))),
]


def _with_old_layout(case: Case) -> Case:
    if case.id != "slot_whose_ports_an_old_layout_engine_holds_is_skipped":
        return case
    (a,) = case.world.engines
    old = dataclasses.replace(a, ports=EnginePorts(http=19000, api=19001, p2p=19002))
    return dataclasses.replace(case, world=dataclasses.replace(case.world, engines=(old,)))


@pytest.mark.parametrize("case", [_with_old_layout(c) for c in CASES], ids=lambda c: c.id)
def test_resilience(case: Case) -> None:
    result: Plan = plan(case.desired_state, case.world, NOW)  # type: ignore[arg-type]
    assert action_summary(result) == sorted(case.actions)
    assert problem_codes(result) == sorted(case.problems)
    assert result.wake_at == case.wake_at
    assert plan(case.desired_state, case.world, NOW) == result  # type: ignore[arg-type]


def test_recreate_of_an_engine_whose_slot_left_the_layout_removes_it() -> None:
    """The port range shrank: the engine's spec hash is stale and its slot no longer exists."""
    d = desired(min_replicas=1, min_free=0, host_port_range="19000-19001")
    lost = dataclasses.replace(engine("a", 5, spec_hash="old"),
                               ports=EnginePorts(http=6878, api=62062, p2p=8621, host_http=19005))
    result = plan(d, observed(d, (lost,)), NOW)
    assert action_summary(result) == ["remove a"]
