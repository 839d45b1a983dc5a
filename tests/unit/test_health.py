"""Staleness and visibility (reconcilers/health.py): one row per branch of each function.

Defaults (see factories): the engine started at 100, the VPN container `g1-id` at 50.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from reconcilers.health import Staleness, hidden_reason, is_visible, staleness, visible_engines
from reconcilers.model import EngineObs, VpnObs
from testkit.factories import engine, vpn


@dataclass(frozen=True, kw_only=True)
class StaleCase:
    id: str
    engine: EngineObs
    vpn: VpnObs | None
    expected: Staleness
    reconnect: bool = True


STALENESS_CASES = [
    StaleCase(
        id="no_vpn_engine_is_fresh", engine=engine("a"), vpn=vpn("g1", started_at=500.0), expected="fresh"
    ),
    StaleCase(id="vpn_gone_orphaned", engine=engine("a", vpn="g1"), vpn=None, expected="orphaned"),
    StaleCase(
        id="vpn_without_container_orphaned",
        engine=engine("a", vpn="g1"),
        vpn=vpn("g1", "missing"),
        expected="orphaned",
    ),
    StaleCase(
        id="vpn_recreated_new_id",
        engine=engine("a", vpn="g1", vpn_id="old-id"),
        vpn=vpn("g1"),
        expected="recreate",
    ),
    StaleCase(
        id="vpn_recreated_even_if_engine_exited",
        engine=engine("a", vpn="g1", vpn_id="old-id", status="exited"),
        vpn=vpn("g1"),
        expected="recreate",
    ),
    StaleCase(
        id="engine_not_running_is_fresh",
        engine=engine("a", vpn="g1", status="exited"),
        vpn=vpn("g1", started_at=500.0),
        expected="fresh",
    ),
    StaleCase(
        id="engine_never_started_is_fresh",
        engine=engine("a", vpn="g1", started_at=None),
        vpn=vpn("g1", started_at=500.0),
        expected="fresh",
    ),
    StaleCase(
        id="vpn_restarted_after_engine",
        engine=engine("a", vpn="g1"),
        vpn=vpn("g1", started_at=150.0),
        expected="restart",
    ),
    StaleCase(
        id="vpn_started_same_instant_not_after",
        engine=engine("a", vpn="g1"),
        vpn=vpn("g1", started_at=100.0),
        expected="restart",
    ),
    StaleCase(
        id="vpn_restart_counts_without_reconnect_flag",
        engine=engine("a", vpn="g1"),
        vpn=vpn("g1", started_at=150.0),
        reconnect=False,
        expected="restart",
    ),
    StaleCase(
        id="engine_started_after_vpn",
        engine=engine("a", vpn="g1"),
        vpn=vpn("g1", started_at=99.0),
        expected="fresh",
    ),
    StaleCase(
        id="vpn_start_unknown", engine=engine("a", vpn="g1"), vpn=vpn("g1", started_at=None), expected="fresh"
    ),
    StaleCase(
        id="reconnected_after_engine",
        engine=engine("a", vpn="g1"),
        vpn=vpn("g1", reconnected_at=150.0),
        expected="reconnect",
    ),
    StaleCase(
        id="reconnected_same_instant",
        engine=engine("a", vpn="g1"),
        vpn=vpn("g1", reconnected_at=100.0),
        expected="reconnect",
    ),
    StaleCase(
        id="reconnected_after_engine_flag_off",
        engine=engine("a", vpn="g1"),
        vpn=vpn("g1", reconnected_at=150.0),
        reconnect=False,
        expected="fresh",
    ),
    StaleCase(
        id="reconnected_before_engine",
        engine=engine("a", vpn="g1"),
        vpn=vpn("g1", reconnected_at=99.0),
        expected="fresh",
    ),
    StaleCase(
        id="health_is_not_staleness",
        engine=engine("a", vpn="g1"),
        vpn=vpn("g1", "unhealthy"),
        expected="fresh",
    ),
]


@pytest.mark.parametrize("case", STALENESS_CASES, ids=lambda c: c.id)
def test_staleness(case: StaleCase) -> None:
    assert staleness(case.engine, case.vpn, restart_on_reconnect=case.reconnect) == case.expected


@dataclass(frozen=True, kw_only=True)
class VisCase:
    id: str
    engine: EngineObs
    vpns: tuple[VpnObs, ...]
    expected: bool
    reconnect: bool = True


VISIBILITY_CASES = [
    VisCase(id="running_ready_no_vpn", engine=engine("a"), vpns=(), expected=True),
    VisCase(id="not_ready", engine=engine("a", ready=False), vpns=(), expected=False),
    VisCase(id="exited_though_marked_ready", engine=engine("a", status="exited"), vpns=(), expected=False),
    VisCase(id="restarting", engine=engine("a", status="restarting"), vpns=(), expected=False),
    VisCase(id="behind_healthy_vpn", engine=engine("a", vpn="g1"), vpns=(vpn("g1"),), expected=True),
    VisCase(
        id="behind_healthy_vpn_not_ready",
        engine=engine("a", vpn="g1", ready=False),
        vpns=(vpn("g1"),),
        expected=False,
    ),
    *[
        VisCase(id=f"vpn_{state}", engine=engine("a", vpn="g1"), vpns=(vpn("g1", state),), expected=False)
        for state in ("unhealthy", "starting", "stopped", "missing")
    ],
    VisCase(id="vpn_not_observed", engine=engine("a", vpn="g1"), vpns=(vpn("g2"),), expected=False),
    VisCase(
        id="vpn_recreated", engine=engine("a", vpn="g1", vpn_id="old-id"), vpns=(vpn("g1"),), expected=False
    ),
    VisCase(
        id="vpn_restarted_after_engine",
        engine=engine("a", vpn="g1"),
        vpns=(vpn("g1", started_at=150.0),),
        expected=False,
    ),
    VisCase(
        id="vpn_reconnected_after_engine",
        engine=engine("a", vpn="g1"),
        vpns=(vpn("g1", reconnected_at=150.0),),
        expected=False,
    ),
    VisCase(
        id="vpn_reconnected_flag_off",
        engine=engine("a", vpn="g1"),
        vpns=(vpn("g1", reconnected_at=150.0),),
        reconnect=False,
        expected=True,
    ),
]


@pytest.mark.parametrize("case", VISIBILITY_CASES, ids=lambda c: c.id)
def test_is_visible(case: VisCase) -> None:
    vpns = {v.name: v for v in case.vpns}
    assert is_visible(case.engine, vpns, restart_on_reconnect=case.reconnect) is case.expected


def test_visible_engines_filters_and_keeps_order() -> None:
    engines = (
        engine("a", vpn="g2"),
        engine("b", vpn="g1"),
        engine("c", vpn="g2", ready=False),
        engine("d", vpn="g2", vpn_id="old-id"),
        engine("e", vpn="g2"),
    )
    vpns = {"g1": vpn("g1", "unhealthy"), "g2": vpn("g2")}
    shown = visible_engines(engines, vpns, restart_on_reconnect=True)
    assert [e.container_id for e in shown] == ["a", "e"]


@pytest.mark.parametrize("case", VISIBILITY_CASES, ids=lambda c: c.id)
def test_hidden_reason_is_given_exactly_when_not_visible(case: VisCase) -> None:
    vpns = {v.name: v for v in case.vpns}
    why = hidden_reason(case.engine, vpns, restart_on_reconnect=case.reconnect)
    assert (why is None) is case.expected


REASON_CASES = [
    ("not_ready", engine("a", ready=False), (), "not answering its API yet"),
    ("exited", engine("a", status="exited"), (), "container exited"),
    ("vpn_unhealthy", engine("a", vpn="g1"), (vpn("g1", "unhealthy"),), "VPN g1 unhealthy"),
    ("vpn_not_seen", engine("a", vpn="g1"), (), "VPN g1 not seen"),
    ("vpn_recreated", engine("a", vpn="g1", vpn_id="old-id"), (vpn("g1"),), "VPN container was replaced"),
    ("vpn_restarted", engine("a", vpn="g1"), (vpn("g1", started_at=150.0),), "restarted after it started"),
]


@pytest.mark.parametrize(
    ("engine_obs", "vpns", "words"), [c[1:] for c in REASON_CASES], ids=[c[0] for c in REASON_CASES]
)
def test_hidden_reason_words(engine_obs: EngineObs, vpns: tuple[VpnObs, ...], words: str) -> None:
    why = hidden_reason(engine_obs, {v.name: v for v in vpns}, restart_on_reconnect=True)
    assert why is not None and words in why
