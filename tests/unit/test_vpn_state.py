"""How a Gluetun container's Docker state maps to the VPN state the planner sees."""

from __future__ import annotations

import pytest

from orchestrator.docker_gateway import ContainerInfo
from orchestrator.state import vpn_state_of


def gluetun(status: str, health: str | None = None, exit_code: int | None = None) -> ContainerInfo:
    return ContainerInfo(id="g", name="gluetun", status=status, health=health, started_at=None,
                         created_at=0.0, exit_code=exit_code)


@pytest.mark.parametrize(
    ("info", "stop_requested", "state"),
    [
        (None, False, "missing"),
        (gluetun("running", "healthy"), False, "healthy"),
        (gluetun("running", None), False, "healthy"),  # no HEALTHCHECK at all
        (gluetun("running", "unhealthy"), False, "unhealthy"),
        (gluetun("running", "starting"), False, "starting"),
        (gluetun("restarting"), False, "starting"),
        (gluetun("exited", exit_code=0), False, "stopped"),
        (gluetun("exited", exit_code=143), False, "stopped"),  # SIGTERM: docker stop
        (gluetun("exited", exit_code=1), False, "unhealthy"),  # crashed: restartable
        (gluetun("exited", exit_code=137), False, "unhealthy"),
        (gluetun("exited", exit_code=137), True, "stopped"),  # docker kill: on purpose
        (gluetun("paused"), False, "stopped"),
        (gluetun("created"), False, "stopped"),
    ],
    ids=["missing", "healthy", "no_healthcheck", "unhealthy", "starting", "restarting",
         "exit_0", "exit_sigterm", "crash_exit_1", "crash_killed_unasked", "killed_on_purpose",
         "paused", "created"],
)
def test_vpn_state_of(info: ContainerInfo | None, stop_requested: bool, state: str) -> None:
    assert vpn_state_of(info, stop_requested) == state
