"""What a Docker event means (`reconcilers.events.classify`) as a table: the store's knowledge,
one event as Docker sends it, and the exact signal the event source must apply. A second table
follows a VPN's stop events through `reconcilers.vpn.advance`: a crash and a stop on purpose
reach it as different signals, a replayed stop changes nothing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from reconcilers.events import (
    SKIPPED_ACTION,
    EngineChanged,
    EngineGone,
    Ignore,
    Known,
    Noted,
    ProbeChanged,
    ProbeGone,
    ProbeHealth,
    Resync,
    Signal,
    VpnChanged,
    VpnHealth,
    VpnStopped,
    classify,
)
from reconcilers.model import MANAGED, MANAGED_VALUE, POOL, PROBE_ROLE, ROLE, VpnObs, VpnState
from reconcilers.vpn import StopAction, advance
from testkit.factories import engine, vpn

NANO = 1_000_000_000
OURS = "main"
FLOOR = 1000 * NANO  # the last resync listed at t=1000 s
T = 1010 * NANO  # an event after it
ENGINE_LABELS = {MANAGED: MANAGED_VALUE, POOL: OURS, ROLE: "engine"}
PROBE_LABELS = {MANAGED: MANAGED_VALUE, POOL: OURS, ROLE: PROBE_ROLE}
GLUETUN = vpn("gluetun", container_id="g1", started_at=900.0)
KNOWN = Known(
    followed=("gluetun",),
    vpns={"gluetun": GLUETUN},
    engines={"e1": engine("e1", started_at=900.0)},
    probes={"p1"},
)


def event(
    action: str,
    cid: str,
    name: str = "",
    labels: Mapping[str, str] | None = None,
    *,
    t: int = T,
    kind: str = "container",
) -> dict[str, Any]:
    """An event as Docker's stream sends it: labels are flattened into the attributes."""
    return {
        "Type": kind,
        "Action": action,
        "timeNano": t,
        "Actor": {"ID": cid, "Attributes": {**(labels or {}), "name": name}},
    }


@dataclass(frozen=True, kw_only=True)
class Case:
    id: str
    event: dict[str, Any]
    signal: Signal
    known: Known = KNOWN


def said(action: str, who: str, t: int = T) -> dict[str, Any]:
    """The fields every signal of a followed container carries: the history's trigger and time."""
    return {"text": f"Docker `{action}` of {who}", "time_nano": t}


CASES = [
    Case(id="skipped_event_resyncs", event={"Action": SKIPPED_ACTION}, signal=Resync()),
    Case(
        id="network_event_named_like_the_vpn",
        event=event("connect", "n1", "gluetun", kind="network"),
        signal=Ignore(reason="not a container event"),
    ),
    Case(
        id="unknown_container",
        event=event("die", "x1", "nginx"),
        signal=Ignore(reason="not a container of ours"),
    ),
    Case(
        id="engine_of_another_pool",
        event=event("start", "e9", "engine-9", {**ENGINE_LABELS, POOL: "other"}),
        signal=Ignore(reason="not a container of ours"),
    ),
    Case(
        id="unmanaged_container_with_a_pool_label",
        event=event("start", "e9", "engine-9", {POOL: OURS}),
        signal=Ignore(reason="not a container of ours"),
    ),
    Case(
        id="probe_of_another_pool",
        event=event("start", "p9", "probe-9", {**PROBE_LABELS, POOL: "other"}),
        signal=Ignore(reason="not a container of ours"),
    ),
    # a VPN, by name or by its current container
    Case(
        id="vpn_start",
        event=event("start", "g1", "gluetun"),
        signal=VpnChanged(**said("start", "gluetun"), vpn="gluetun"),
    ),
    Case(
        id="vpn_recreated_under_its_name_has_a_new_id",
        event=event("start", "g2", "gluetun"),
        signal=VpnChanged(**said("start", "gluetun"), vpn="gluetun"),
    ),
    Case(
        id="vpn_renamed_away_is_found_by_its_id",
        event=event("rename", "g1", "gluetun-old"),
        signal=VpnChanged(**said("rename", "gluetun-old"), vpn="gluetun"),
    ),
    Case(
        id="vpn_no_longer_followed_is_found_by_its_id",
        event=event("die", "g1", "gluetun"),
        known=Known(followed=(), vpns={"gluetun": GLUETUN}, engines={}, probes=()),
        signal=VpnStopped(**said("die", "gluetun"), vpn="gluetun", container_id="g1", action="die"),
    ),
    Case(
        id="vpn_name_wins_over_engine_labels",
        event=event("start", "g1", "gluetun", ENGINE_LABELS),
        signal=VpnChanged(**said("start", "gluetun"), vpn="gluetun"),
    ),
    Case(
        id="vpn_health_healthy",
        event=event("health_status: healthy", "g1", "gluetun"),
        signal=VpnHealth(
            **said("health_status: healthy", "gluetun"), vpn="gluetun", container_id="g1", health="healthy"
        ),
    ),
    Case(
        id="vpn_health_unhealthy",
        event=event("health_status: unhealthy", "g1", "gluetun"),
        signal=VpnHealth(
            **said("health_status: unhealthy", "gluetun"),
            vpn="gluetun",
            container_id="g1",
            health="unhealthy",
        ),
    ),
    Case(
        id="vpn_health_starting",
        event=event("health_status: starting", "g1", "gluetun"),
        signal=VpnHealth(
            **said("health_status: starting", "gluetun"), vpn="gluetun", container_id="g1", health="starting"
        ),
    ),
    Case(
        id="vpn_health_unknown_word",
        event=event("health_status: sleepy", "g1", "gluetun"),
        signal=Noted(**said("health_status: sleepy", "gluetun"), reason="a health status we do not know"),
    ),
    Case(
        id="vpn_health_replayed_from_before_the_resync",
        event=event("health_status: unhealthy", "g1", "gluetun", t=FLOOR - NANO),
        signal=Noted(
            **said("health_status: unhealthy", "gluetun", FLOOR - NANO),
            reason="older than the last resync's listing",
        ),
    ),
    Case(
        id="vpn_health_one_nano_before_the_resync_floor",
        event=event("health_status: unhealthy", "g1", "gluetun", t=FLOOR - 1),
        signal=Noted(
            **said("health_status: unhealthy", "gluetun", FLOOR - 1),
            reason="older than the last resync's listing",
        ),
    ),
    Case(
        id="vpn_health_at_the_resync_floor_counts",
        event=event("health_status: unhealthy", "g1", "gluetun", t=FLOOR),
        signal=VpnHealth(
            **said("health_status: unhealthy", "gluetun", FLOOR),
            vpn="gluetun",
            container_id="g1",
            health="unhealthy",
        ),
    ),
    Case(
        id="vpn_die",
        event=event("die", "g1", "gluetun", {"exitCode": "1"}),
        signal=VpnStopped(**said("die", "gluetun"), vpn="gluetun", container_id="g1", action="die"),
    ),
    Case(
        id="vpn_stop",
        event=event("stop", "g1", "gluetun"),
        signal=VpnStopped(**said("stop", "gluetun"), vpn="gluetun", container_id="g1", action="stop"),
    ),
    Case(
        id="vpn_kill",
        event=event("kill", "g1", "gluetun", {"signal": "9"}),
        signal=VpnStopped(**said("kill", "gluetun"), vpn="gluetun", container_id="g1", action="kill"),
    ),
    Case(
        id="vpn_pause",
        event=event("pause", "g1", "gluetun"),
        signal=VpnStopped(**said("pause", "gluetun"), vpn="gluetun", container_id="g1", action="pause"),
    ),
    Case(
        id="vpn_unpause",
        event=event("unpause", "g1", "gluetun"),
        signal=VpnChanged(**said("unpause", "gluetun"), vpn="gluetun"),
    ),
    Case(
        id="vpn_stop_replayed_from_before_the_resync_is_still_reported",  # `advance` drops it
        event=event("stop", "g1", "gluetun", t=FLOOR - 200 * NANO),
        signal=VpnStopped(
            **said("stop", "gluetun", FLOOR - 200 * NANO), vpn="gluetun", container_id="g1", action="stop"
        ),
    ),
    Case(
        id="vpn_destroy_of_its_current_container",
        event=event("destroy", "g1", "gluetun"),
        signal=VpnChanged(**said("destroy", "gluetun"), vpn="gluetun"),
    ),
    Case(
        id="vpn_destroy_of_an_old_container_of_its_name",
        event=event("destroy", "g0", "gluetun"),
        signal=Noted(**said("destroy", "gluetun"), reason="an old container of that name went"),
    ),
    Case(
        id="vpn_destroy_never_seen",
        event=event("destroy", "g0", "gluetun"),
        known=Known(followed=("gluetun",), vpns={}, engines={}, probes=()),
        signal=Noted(**said("destroy", "gluetun"), reason="an old container of that name went"),
    ),
    # engines: labelled as of this pool, or known to the store
    Case(
        id="engine_of_our_pool_starts",
        event=event("start", "e9abcdef012345", "", ENGINE_LABELS),
        signal=EngineChanged(**said("start", "e9abcdef0123"), container_id="e9abcdef012345"),
    ),
    Case(
        id="engine_without_a_role_label_is_an_engine",
        event=event("create", "e9", "engine-9", {MANAGED: MANAGED_VALUE, POOL: OURS}),
        signal=EngineChanged(**said("create", "engine-9"), container_id="e9"),
    ),
    Case(
        id="engine_known_to_the_store_without_labels",
        event=event("restart", "e1", "engine-e1"),
        signal=EngineChanged(**said("restart", "engine-e1"), container_id="e1"),
    ),
    Case(
        id="engine_die_of_its_current_run",
        event=event("die", "e1", "engine-e1", ENGINE_LABELS),
        signal=EngineChanged(**said("die", "engine-e1"), container_id="e1", status="exited"),
    ),
    Case(
        id="engine_stop",
        event=event("stop", "e1", "engine-e1", ENGINE_LABELS),
        signal=EngineChanged(**said("stop", "engine-e1"), container_id="e1", status="exited"),
    ),
    Case(
        id="engine_pause",
        event=event("pause", "e1", "engine-e1", ENGINE_LABELS),
        signal=EngineChanged(**said("pause", "engine-e1"), container_id="e1", status="paused"),
    ),
    Case(
        id="engine_unpause",
        event=event("unpause", "e1", "engine-e1", ENGINE_LABELS),
        signal=EngineChanged(**said("unpause", "engine-e1"), container_id="e1"),
    ),
    Case(
        id="engine_kill_is_not_yet_a_stop",
        event=event("kill", "e1", "engine-e1", ENGINE_LABELS),
        signal=EngineChanged(**said("kill", "engine-e1"), container_id="e1"),
    ),
    Case(
        id="engine_die_replayed_from_before_its_run",
        event=event("die", "e1", "engine-e1", ENGINE_LABELS, t=899 * NANO),
        signal=EngineChanged(**said("die", "engine-e1", 899 * NANO), container_id="e1"),
    ),
    Case(
        id="engine_die_at_the_start_of_its_run_counts",
        event=event("die", "e1", "engine-e1", ENGINE_LABELS, t=900 * NANO),
        signal=EngineChanged(**said("die", "engine-e1", 900 * NANO), container_id="e1", status="exited"),
    ),
    Case(
        id="engine_die_the_store_never_saw",
        event=event("die", "e9", "engine-9", ENGINE_LABELS),
        signal=EngineChanged(**said("die", "engine-9"), container_id="e9"),
    ),
    Case(
        id="engine_destroy",
        event=event("destroy", "e1", "engine-e1", ENGINE_LABELS),
        signal=EngineGone(**said("destroy", "engine-e1"), container_id="e1"),
    ),
    # tunnel probes
    Case(
        id="probe_start",
        event=event("start", "p9", "probe-9", PROBE_LABELS),
        signal=ProbeChanged(**said("start", "probe-9"), container_id="p9"),
    ),
    Case(
        id="probe_die",
        event=event("die", "p1", "probe-1", PROBE_LABELS),
        signal=ProbeChanged(**said("die", "probe-1"), container_id="p1"),
    ),
    Case(
        id="probe_known_to_the_store_without_labels",
        event=event("stop", "p1", "probe-1"),
        signal=ProbeChanged(**said("stop", "probe-1"), container_id="p1"),
    ),
    Case(
        id="probe_destroy",
        event=event("destroy", "p1", "probe-1", PROBE_LABELS),
        signal=ProbeGone(**said("destroy", "probe-1"), container_id="p1"),
    ),
    Case(
        id="probe_health_status",
        event=event("health_status: healthy", "p1", "probe-1", PROBE_LABELS),
        signal=ProbeHealth(**said("health_status: healthy", "probe-1"), container_id="p1"),
    ),
    Case(
        id="event_with_seconds_only",
        event={"status": "start", "time": 1010, "Actor": {"ID": "e1", "Attributes": {"name": "engine-e1"}}},
        signal=EngineChanged(**said("start", "engine-e1"), container_id="e1"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_classify(case: Case) -> None:
    assert classify(case.event, case.known, OURS, FLOOR) == case.signal


@dataclass(frozen=True, kw_only=True)
class StopRow:
    id: str
    events: list[dict[str, Any]]
    signals: list[Signal]
    state: VpnState
    before: VpnObs = field(default_factory=lambda: GLUETUN)


def stopped(action: StopAction, t: int) -> VpnStopped:
    return VpnStopped(**said(action, "gluetun", t), vpn="gluetun", container_id="g1", action=action)


STOPS = [
    StopRow(
        id="crash_die_unasked",
        events=[event("die", "g1", "gluetun", {"exitCode": "1"})],
        signals=[stopped("die", T)],
        state="unhealthy",
    ),
    StopRow(
        id="stop_then_die_is_on_purpose",
        events=[event("stop", "g1", "gluetun"), event("die", "g1", "gluetun", {"exitCode": "0"}, t=T + 1)],
        signals=[stopped("stop", T), stopped("die", T + 1)],
        state="stopped",
    ),
    StopRow(
        id="kill_then_die_is_on_purpose",
        events=[event("kill", "g1", "gluetun"), event("die", "g1", "gluetun", {"exitCode": "137"}, t=T + 1)],
        signals=[stopped("kill", T), stopped("die", T + 1)],
        state="stopped",
    ),
    StopRow(
        id="replayed_stop_from_an_earlier_run_changes_nothing",
        events=[event("stop", "g1", "gluetun", t=800 * NANO)],
        signals=[stopped("stop", 800 * NANO)],
        state="healthy",
    ),
    StopRow(
        id="die_of_another_container_of_that_name",
        events=[event("die", "g0", "gluetun")],
        signals=[VpnStopped(**said("die", "gluetun"), vpn="gluetun", container_id="g0", action="die")],
        state="healthy",
    ),
]


@pytest.mark.parametrize("row", STOPS, ids=[r.id for r in STOPS])
def test_stop_events_reach_the_vpn_as_crash_or_stop(row: StopRow) -> None:
    signals = [classify(e, KNOWN, OURS, FLOOR) for e in row.events]
    assert signals == row.signals
    obs = row.before
    for signal in signals:
        assert isinstance(signal, VpnStopped)
        update = advance(obs, signal.vpn, signal.sighting, signal.at)
        obs = update.obs if update is not None else obs
    assert obs.state == row.state
