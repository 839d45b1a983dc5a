"""The VPN state machine (`reconcilers.vpn.advance`) as a table: previous state, one sighting,
the resulting state, the fields that matter, and the transitions the store will log."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from reconcilers.model import VpnObs, VpnState
from reconcilers.vpn import (
    ContainerSeen,
    ControlFailed,
    ControlRead,
    ForcedRestart,
    HealthReported,
    ProbeReported,
    Sighting,
    StopReported,
    VpnContainer,
    advance,
)

AT = 600.0
STARTED = 500.0


def container(
    status: str = "running",
    health: str | None = "healthy",
    *,
    cid: str = "g1",
    started_at: float | None = STARTED,
    exit_code: int | None = None,
) -> VpnContainer:
    return VpnContainer(
        id=cid,
        status=status,
        health=health,
        started_at=started_at if status == "running" else None,
        exit_code=exit_code,
        ip="172.20.0.2",
    )


def seen(*args: Any, **kwargs: Any) -> ContainerSeen:
    return ContainerSeen(container=container(*args, **kwargs))


def vpn(state: VpnState = "healthy", **fields: Any) -> VpnObs:
    """A VPN seen before, running container g1 since STARTED."""
    base = VpnObs(
        name="gluetun",
        container_id="g1",
        state=state,
        state_since=STARTED,
        started_at=STARTED,
        docker_state=state,
        ip="172.20.0.2",
        running=True,
    )
    return dataclasses.replace(base, **fields)


@dataclass(frozen=True, kw_only=True)
class Case:
    id: str
    sighting: Sighting
    before: VpnObs | None = None
    state: VpnState | None = None  # None: the sighting does not apply
    transitions: tuple[str, ...] = ()
    fields: Mapping[str, Any] = field(default_factory=dict)


CASES = [
    # Docker's view of a container met for the first time (start-up)
    Case(
        id="no_container_is_missing",
        sighting=ContainerSeen(container=None),
        state="missing",
        fields={"container_id": None},
    ),
    Case(
        id="healthy_waits_for_its_port",
        sighting=seen(),
        state="healthy",
        fields={"port_known": False, "container_id": "g1", "ip": "172.20.0.2"},
    ),
    Case(id="no_healthcheck_is_healthy", sighting=seen(health=None), state="healthy"),
    Case(id="unhealthy", sighting=seen(health="unhealthy"), state="unhealthy", fields={"port_known": True}),
    Case(id="health_starting", sighting=seen(health="starting"), state="starting"),
    Case(id="restarting_is_starting", sighting=seen("restarting", None), state="starting"),
    Case(id="exit_0_is_stopped", sighting=seen("exited", None, exit_code=0), state="stopped"),
    Case(id="sigterm_is_stopped", sighting=seen("exited", None, exit_code=143), state="stopped"),
    Case(
        id="error_exit_found_at_start_up_may_be_on_purpose",
        sighting=seen("exited", None, exit_code=1),
        state="stopped",
    ),
    Case(id="paused_is_stopped", sighting=seen("paused", None), state="stopped"),
    Case(id="created_is_stopped", sighting=seen("created", None), state="stopped"),
    # exits witnessed by this daemon
    Case(
        id="error_exit_after_running_is_a_crash",
        before=vpn(),
        sighting=seen("exited", None, exit_code=1),
        state="unhealthy",
        transitions=("became_unhealthy",),
        fields={"state_since": AT},
    ),
    Case(
        id="killed_unasked_is_a_crash",
        before=vpn(),
        sighting=seen("exited", None, exit_code=137),
        state="unhealthy",
        transitions=("became_unhealthy",),
    ),
    Case(
        id="killed_on_purpose_is_stopped",
        before=vpn(stop_requested_at=AT - 5),
        sighting=seen("exited", None, exit_code=137),
        state="stopped",
        transitions=("state_changed",),
    ),
    Case(
        id="running_again_clears_the_stop_request",
        before=vpn("stopped", stop_requested_at=550.0),
        sighting=seen(started_at=590.0),
        state="healthy",
        transitions=("state_changed",),
        fields={"stop_requested_at": None, "started_at": 590.0},
    ),
    # events
    Case(
        id="unhealthy_event_hides_at_once",
        before=vpn(),
        state="unhealthy",
        sighting=HealthReported(container_id="g1", health="unhealthy"),
        transitions=("became_unhealthy",),
        fields={"state_since": AT},
    ),
    Case(
        id="event_of_another_container_is_ignored",
        before=vpn(),
        sighting=HealthReported(container_id="old", health="unhealthy"),
    ),
    Case(
        id="event_before_any_sighting_is_ignored",
        sighting=HealthReported(container_id="g1", health="unhealthy"),
    ),
    Case(
        id="recovery_on_the_same_run_is_a_blip_not_a_reconnect",
        before=vpn("unhealthy"),
        sighting=HealthReported(container_id="g1", health="healthy"),
        state="healthy",
        transitions=("recovered",),
        fields={"reconnected_at": None, "port_known": False},
    ),
    Case(
        id="same_verdict_again_keeps_its_since",
        before=vpn(),
        sighting=HealthReported(container_id="g1", health="healthy"),
        state="healthy",
        fields={"state_since": STARTED, "port_known": True},
    ),
    Case(
        id="die_unasked_is_a_crash",
        before=vpn(),
        state="unhealthy",
        sighting=StopReported(container_id="g1", action="die"),
        transitions=("became_unhealthy",),
    ),
    Case(
        id="stop_is_on_purpose",
        before=vpn(),
        state="stopped",
        sighting=StopReported(container_id="g1", action="stop"),
        transitions=("state_changed",),
        fields={"stop_requested_at": AT},
    ),
    Case(
        id="kill_only_marks_the_intent",
        before=vpn(),
        state="healthy",
        sighting=StopReported(container_id="g1", action="kill"),
        fields={"stop_requested_at": AT},
    ),
    Case(
        id="die_after_kill_is_on_purpose",
        before=vpn(stop_requested_at=AT - 1),
        state="stopped",
        sighting=StopReported(container_id="g1", action="die"),
        transitions=("state_changed",),
    ),
    Case(
        id="replayed_stop_from_before_this_run_changes_nothing",
        before=vpn(started_at=AT + 10),
        sighting=StopReported(container_id="g1", action="die"),
        state="healthy",
    ),
    Case(
        id="stop_of_another_container_is_ignored",
        before=vpn(),
        sighting=StopReported(container_id="old", action="stop"),
    ),
    # the control server
    Case(
        id="tunnel_stopped_overrules_a_healthy_docker",
        before=vpn(),
        state="unhealthy",
        sighting=ControlRead(forwarded_port=None, public_ip="1.1.1.1", status="stopped"),
        transitions=("tunnel_status", "became_unhealthy"),
        fields={"tunnel_down": True, "docker_state": "healthy", "public_ip": "1.1.1.1"},
    ),
    Case(
        id="docker_still_healthy_while_the_tunnel_is_down",
        before=vpn("unhealthy", tunnel_down=True, docker_state="healthy"),
        sighting=seen(),
        state="unhealthy",
        fields={"tunnel_down": True},
    ),
    Case(
        id="tunnel_running_again_with_the_same_ip_is_no_reconnect",
        before=vpn("unhealthy", tunnel_down=True, docker_state="healthy", public_ip="1.1.1.1"),
        sighting=ControlRead(forwarded_port=None, public_ip="1.1.1.1", status="running"),
        state="healthy",
        transitions=("tunnel_status", "recovered"),
        fields={"tunnel_down": False, "reconnected_at": None},
    ),
    Case(
        id="tunnel_running_again_with_a_new_ip_is_a_reconnect",
        before=vpn("unhealthy", tunnel_down=True, docker_state="healthy", public_ip="1.1.1.1"),
        sighting=ControlRead(forwarded_port=None, public_ip="3.3.3.3", status="running"),
        state="healthy",
        transitions=("tunnel_status", "recovered", "reconnected"),
        fields={"tunnel_down": False, "reconnected_at": AT, "public_ip": "3.3.3.3"},
    ),
    Case(
        id="a_new_ip_read_while_still_unhealthy_is_a_reconnect_too",
        before=vpn("unhealthy", probe_up=False, public_ip="1.1.1.1"),
        sighting=ControlRead(forwarded_port=None, public_ip="3.3.3.3", status="running"),
        state="unhealthy",
        transitions=("reconnected",),
        fields={"reconnected_at": AT, "public_ip": "3.3.3.3"},
    ),
    Case(
        id="a_new_forwarded_port_is_a_reconnect",
        before=vpn(forwarded_port=40000, last_port=40000, public_ip="1.1.1.1"),
        sighting=ControlRead(forwarded_port=41000, public_ip="1.1.1.1", status="running"),
        state="healthy",
        transitions=("reconnected", "forwarded_port"),
        fields={"reconnected_at": AT, "forwarded_port": 41000, "last_port": 41000},
    ),
    Case(
        id="port_n_then_0_then_m_is_a_reconnect",
        before=vpn(forwarded_port=0, last_port=40000, public_ip="1.1.1.1"),
        sighting=ControlRead(forwarded_port=41000, public_ip="1.1.1.1", status="running"),
        state="healthy",
        transitions=("reconnected", "forwarded_port"),
        fields={"reconnected_at": AT, "last_port": 41000},
    ),
    Case(
        id="the_first_forwarded_port_of_a_run_is_no_reconnect",
        before=vpn(forwarded_port=0, public_ip="1.1.1.1"),
        sighting=ControlRead(forwarded_port=40000, public_ip="1.1.1.1", status="running"),
        state="healthy",
        transitions=("forwarded_port",),
        fields={"reconnected_at": None, "last_port": 40000},
    ),
    Case(
        id="an_edited_static_forwarded_port_is_no_reconnect",
        before=vpn(forwarded_port=40000, last_port=40000, public_ip="1.1.1.1"),
        sighting=ControlRead(forwarded_port=41000, public_ip="1.1.1.1", status="running", port_static=True),
        state="healthy",
        transitions=("forwarded_port",),
        fields={"reconnected_at": None, "last_port": 40000, "forwarded_port": 41000},
    ),
    Case(
        id="port_0_read_keeps_the_last_port",
        before=vpn(forwarded_port=40000, last_port=40000, public_ip="1.1.1.1"),
        sighting=ControlRead(forwarded_port=0, public_ip="1.1.1.1", status="running"),
        state="healthy",
        transitions=("forwarded_port",),
        fields={"reconnected_at": None, "last_port": 40000, "forwarded_port": 0},
    ),
    Case(
        id="a_failed_poll_keeps_the_last_status",
        before=vpn("unhealthy", tunnel_down=True, docker_state="healthy"),
        sighting=ControlFailed(error="/v1/vpn/status: timeout"),
        state="unhealthy",
        fields={
            "control_error": "/v1/vpn/status: timeout",
            "control_failed_since": AT,
            "reconnected_at": None,
        },
    ),
    Case(
        id="a_control_server_silent_too_long_no_longer_counts",
        before=vpn("unhealthy", tunnel_down=True, docker_state="healthy", control_failed_since=AT - 31),
        sighting=ControlFailed(error="timeout"),
        state="healthy",
        transitions=("tunnel_status", "state_changed"),  # not "recovered": no sign of a reconnect
        fields={"control_failed_since": AT - 31, "reconnected_at": None},
    ),
    Case(
        id="a_recreated_gluetun_forgets_what_the_old_one_said",
        before=vpn("unhealthy", tunnel_down=True, docker_state="healthy", public_ip="1.1.1.1"),
        sighting=seen(cid="g2", started_at=AT),
        state="healthy",
        transitions=("state_changed",),
        fields={"tunnel_down": False, "public_ip": None, "container_id": "g2"},
    ),
    Case(
        id="a_new_public_ip_is_a_reconnect",
        before=vpn(public_ip="1.1.1.1"),
        state="healthy",
        sighting=ControlRead(forwarded_port=None, public_ip="2.2.2.2", status="running"),
        transitions=("reconnected",),
        fields={"reconnected_at": AT, "public_ip": "2.2.2.2"},
    ),
    Case(
        id="the_first_public_ip_is_no_reconnect",
        before=vpn(),
        state="healthy",
        sighting=ControlRead(forwarded_port=None, public_ip="1.1.1.1", status="running"),
        fields={"reconnected_at": None},
    ),
    Case(
        id="forwarded_port_read",
        before=vpn(port_known=False),
        state="healthy",
        sighting=ControlRead(forwarded_port=40000, public_ip=None, status="running"),
        transitions=("forwarded_port",),
        fields={"forwarded_port": 40000, "port_known": True},
    ),
    Case(
        id="control_reading_of_a_vpn_never_seen_is_ignored",
        sighting=ControlRead(forwarded_port=40000, public_ip=None, status="running"),
    ),
    *[
        Case(
            id=f"status_{status}_is_down",
            before=vpn(),
            state="unhealthy",
            sighting=ControlRead(forwarded_port=None, public_ip=None, status=status),
            transitions=("tunnel_status", "became_unhealthy"),
            fields={"tunnel_down": True},
        )
        for status in ("crashed", "starting", "stopping", "stopped")
    ],
    Case(
        id="an_unreadable_status_keeps_the_last_one",
        before=vpn("unhealthy", tunnel_down=True, docker_state="healthy"),
        sighting=ControlRead(forwarded_port=None, public_ip=None, status=None),
        state="unhealthy",
        fields={"tunnel_down": True},
    ),
    Case(
        id="an_empty_public_ip_is_unknown_not_a_value",
        before=vpn(public_ip="1.1.1.1"),
        sighting=ControlRead(forwarded_port=None, public_ip=None, status="running"),
        state="healthy",
        fields={"public_ip": "1.1.1.1", "reconnected_at": None},
    ),
    Case(
        id="a_to_unknown_to_b_is_a_reconnect",
        before=vpn(public_ip="1.1.1.1"),  # kept while unknown
        sighting=ControlRead(forwarded_port=None, public_ip="2.2.2.2", status="running"),
        state="healthy",
        transitions=("reconnected",),
        fields={"reconnected_at": AT},
    ),
    Case(
        id="an_unreadable_port_keeps_the_forwarded_port",
        before=vpn(forwarded_port=40000),
        sighting=ControlRead(forwarded_port=None, public_ip=None, status="running", port_read=False),
        state="healthy",
        fields={"forwarded_port": 40000},
    ),
    Case(
        id="an_unreachable_control_server_is_timed_from_its_first_failure",
        before=vpn(control_failed_since=AT - 10, control_unreachable_since=AT - 10),
        sighting=ControlFailed(error="connection refused", unreachable=True),
        state="healthy",
        fields={"control_unreachable_since": AT - 10, "control_failed_since": AT - 10},
    ),
    Case(
        id="a_401_is_no_unreachable_server",
        before=vpn(control_unreachable_since=AT - 10),
        sighting=ControlFailed(error="401"),
        state="healthy",
        fields={"control_unreachable_since": None},
    ),
    # that the control server answered in this run: the planner's evidence that its silence
    # means Gluetun is stuck (reconcilers.pool.restart_due)
    Case(
        id="a_reading_is_an_answer",
        before=vpn(),
        sighting=ControlRead(forwarded_port=None, public_ip=None, status="running"),
        state="healthy",
        fields={"control_answered": True},
    ),
    Case(
        id="a_401_is_an_answer",
        before=vpn(),
        sighting=ControlFailed(error="401"),
        state="healthy",
        fields={"control_answered": True},
    ),
    Case(
        id="a_control_server_never_reached_has_not_answered",
        sighting=seen(health="unhealthy"),
        state="unhealthy",
        fields={"control_answered": False},
    ),
    Case(
        id="an_unreachable_control_server_keeps_that_it_answered_before",
        before=vpn(control_answered=True),
        sighting=ControlFailed(error="connection refused", unreachable=True),
        state="healthy",
        fields={"control_answered": True, "control_unreachable_since": AT},
    ),
    Case(
        id="an_unreachable_control_server_never_answering_has_not_answered",
        before=vpn(),
        sighting=ControlFailed(error="connection refused", unreachable=True),
        state="healthy",
        fields={"control_answered": False, "control_unreachable_since": AT},
    ),
    Case(
        id="a_new_run_forgets_that_its_control_server_answered_and_its_silence",
        before=vpn("unhealthy", control_answered=True, control_unreachable_since=AT - 100, forced_restarts=1),
        sighting=seen(health="starting", started_at=AT),
        state="starting",
        transitions=("state_changed",),
        fields={"control_answered": False, "control_unreachable_since": None, "forced_restarts": 1},
    ),
    # the tunnel probe
    Case(
        id="probe_down_hides_a_vpn_docker_calls_healthy",
        before=vpn(),
        sighting=ProbeReported(vpn_id="g1", started_at=STARTED + 1, up=False),
        state="unhealthy",
        transitions=("probe", "became_unhealthy"),
        fields={"probe_up": False, "docker_state": "healthy"},
    ),
    Case(
        id="probe_up_overrules_a_stuck_unhealthy_docker",
        before=vpn("unhealthy", probe_up=False),
        sighting=ProbeReported(vpn_id="g1", started_at=STARTED + 1, up=True),
        state="healthy",
        transitions=("probe", "recovered"),
        fields={"reconnected_at": None},  # a probe blip restarts nothing
    ),
    Case(
        id="probe_up_does_not_overrule_a_tunnel_not_running",
        before=vpn("unhealthy", tunnel_down=True, docker_state="healthy", probe_up=False),
        sighting=ProbeReported(vpn_id="g1", started_at=STARTED + 1, up=True),
        state="unhealthy",
        transitions=("probe",),
    ),
    Case(
        id="probe_of_the_old_run_is_ignored",
        before=vpn(),
        sighting=ProbeReported(vpn_id="g1", started_at=STARTED - 5, up=False),
    ),
    Case(
        id="probe_of_another_container_is_ignored",
        before=vpn(),
        sighting=ProbeReported(vpn_id="old", started_at=STARTED + 1, up=False),
    ),
    Case(
        id="probe_gone_gives_the_verdict_back_to_docker",
        before=vpn("unhealthy", probe_up=False, docker_state="healthy"),
        sighting=ProbeReported(vpn_id="g1", started_at=STARTED + 1, up=None),
        state="healthy",
        transitions=("probe", "recovered"),
    ),
    Case(
        id="probe_that_cannot_run_says_why",
        before=vpn(),
        sighting=ProbeReported(vpn_id="g1", started_at=STARTED + 1, up=None, error="nc: not found"),
        state="healthy",
        transitions=("probe",),
        fields={"probe_error": "nc: not found"},
    ),
    Case(
        id="a_probe_gone_keeps_its_error",
        before=vpn(probe_error="nc: not found"),
        sighting=ProbeReported(vpn_id="g1", started_at=None, up=None),
        state="healthy",
        fields={"probe_error": "nc: not found"},
    ),
    Case(
        id="a_verdict_clears_the_error",
        before=vpn(probe_error="nc: not found"),
        sighting=ProbeReported(vpn_id="g1", started_at=STARTED + 1, up=True),
        state="healthy",
        transitions=("probe",),
        fields={"probe_error": None, "probe_up": True},
    ),
    Case(
        id="a_crash_forgets_the_probe",
        before=vpn(probe_up=True),
        state="unhealthy",
        sighting=StopReported(container_id="g1", action="die"),
        transitions=("became_unhealthy",),
        fields={"probe_up": None, "running": False},
    ),
    Case(
        id="a_new_run_forgets_the_probe",
        before=vpn("stopped", probe_up=False, running=False),
        sighting=seen(started_at=AT),
        state="healthy",
        transitions=("state_changed",),
        fields={"probe_up": None},
    ),
    Case(
        id="forced_restarts_are_counted",
        before=vpn("unhealthy", forced_restarts=2),
        sighting=ForcedRestart(),
        state="unhealthy",
        fields={"forced_restarts": 3},
    ),
    Case(
        id="healthy_again_resets_the_count",
        before=vpn("unhealthy", forced_restarts=3),
        sighting=HealthReported(container_id="g1", health="healthy"),
        state="healthy",
        transitions=("recovered",),
        fields={"forced_restarts": 0},
    ),
    Case(
        id="forced_restart_is_remembered",
        before=vpn("unhealthy"),
        sighting=ForcedRestart(),
        state="unhealthy",
        fields={"last_forced_restart": AT},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_advance(case: Case) -> None:
    update = advance(case.before, "gluetun", case.sighting, AT)
    if case.state is None:
        assert update is None
        return
    assert update is not None
    assert update.obs.state == case.state
    assert tuple(t.kind for t in update.transitions) == case.transitions
    for name, expected in case.fields.items():
        assert getattr(update.obs, name) == expected, name
    assert advance(case.before, "gluetun", case.sighting, AT) == update  # pure and deterministic
