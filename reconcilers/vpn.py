"""A VPN's state from every signal: Docker's inspect and events, and Gluetun's control server.

`advance(previous, name, sighting, at)` is the whole state machine: it returns the VPN's new
observation and the transitions worth telling the operator about (the store logs them). Each
signal is a *sighting*: what `docker inspect` shows, a health or stop event Docker sent, what the
control server answered (or that it did not). The rules, each a row of `tests/unit/test_vpn.py`:

- Docker's view (`docker_state`): running and healthy (or without a HEALTHCHECK) is `healthy`;
  `unhealthy`/`starting` as Docker says; restarting is `starting`; an exit with an error nobody
  asked for, witnessed by this daemon, is a crash and counts as `unhealthy` (so it is restarted
  after the timeout); any other stop is `stopped` (left alone); no container is `missing`.
- A stop or kill event marks the next exit as on purpose, until the container runs again; a stop
  event from before the container's current run (a replay) changes nothing.
- The control server saying the tunnel is stopped overrules a healthy Docker (`tunnel_down`); a
  new container or a new run forgets what the old one's control server said.
- `unhealthy -> healthy` on the same container is a reconnect (`reconnected_at`); so is a new
  public IP while healthy. The first healthy verdict of a run waits for the forwarded port to be
  read (`port_known`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from reconcilers.model import VpnObs, VpnState

CLEAN_EXIT_CODES = (0, 143)  # exited by itself, or on SIGTERM (docker stop)
StopAction = Literal["die", "stop", "kill", "pause"]
TransitionKind = Literal[
    "recovered",
    "became_unhealthy",
    "state_changed",
    "tunnel_status",
    "reconnected",
    "forwarded_port",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class VpnContainer:
    """A Gluetun container as `docker inspect` shows it (converted at the Docker edge)."""

    id: str
    status: str
    health: str | None
    started_at: float | None
    exit_code: int | None = None
    ip: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerSeen:
    """`docker inspect` of the VPN's name; None when no such container exists."""

    container: VpnContainer | None


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthReported:
    """A `health_status` event: Docker's verdict changed."""

    container_id: str
    health: VpnState


@dataclass(frozen=True, slots=True, kw_only=True)
class StopReported:
    """A die, stop, kill or pause event."""

    container_id: str
    action: StopAction


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlRead:
    """The control server answered."""

    forwarded_port: int | None
    public_ip: str | None
    status: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlFailed:
    """The control server could not be read (timeout, 401, garbage)."""

    error: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ForcedRestart:
    """The daemon restarted the VPN container itself."""


Sighting = ContainerSeen | HealthReported | StopReported | ControlRead | ControlFailed | ForcedRestart


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    """Something the operator should read in the log."""

    kind: TransitionKind
    state: VpnState
    previous: VpnState | None = None
    status: str | None = None
    public_ip: str | None = None
    previous_ip: str | None = None
    port: int | None = None
    previous_port: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class VpnUpdate:
    obs: VpnObs
    transitions: tuple[Transition, ...] = ()


def docker_state(container: VpnContainer | None, *, on_purpose: bool) -> VpnState:
    """Docker's view of a VPN container (see the module docstring)."""
    if container is None:
        return "missing"
    if container.status == "restarting":
        return "starting"
    if container.status != "running":
        crashed = container.exit_code not in (None, *CLEAN_EXIT_CODES) and not on_purpose
        return "unhealthy" if crashed and container.status == "exited" else "stopped"
    if container.health == "unhealthy":
        return "unhealthy"
    if container.health == "starting":
        return "starting"
    return "healthy"  # "healthy", or no HEALTHCHECK at all


def advance(previous: VpnObs | None, name: str, sighting: Sighting, at: float) -> VpnUpdate | None:
    """The VPN after `sighting`, or None when the sighting does not apply to it (an event about
    another container, a control reading for a VPN never seen)."""
    match sighting:
        case ContainerSeen(container=container):
            return _seen(previous, name, container, at)
        case HealthReported(container_id=cid, health=health):
            if previous is None or previous.container_id != cid:
                return None
            return _verdict(previous, name, health, at, None)
        case StopReported(container_id=cid, action=action):
            return _stopped(previous, name, cid, action, at)
        case ControlRead():
            return None if previous is None else _control(previous, name, sighting, at)
        case ControlFailed(error=error):
            if previous is None:
                return None
            # an unreadable control server says nothing about the tunnel: Docker decides
            read = ControlRead(
                forwarded_port=previous.forwarded_port, public_ip=previous.public_ip, status=None
            )
            update = _control(previous, name, read, at)
            return dataclasses.replace(update, obs=dataclasses.replace(update.obs, control_error=error))
        case ForcedRestart():
            if previous is None:
                return None
            return VpnUpdate(obs=dataclasses.replace(previous, last_forced_restart=at))


def _seen(previous: VpnObs | None, name: str, container: VpnContainer | None, at: float) -> VpnUpdate:
    obs = previous
    if (
        obs is not None
        and obs.stop_requested_at is not None
        and container is not None
        and container.status == "running"
        and (container.started_at or 0.0) > obs.stop_requested_at
    ):
        obs = dataclasses.replace(obs, stop_requested_at=None)  # it runs again since
    # an exit counts as a crash only when this daemon saw it running and nobody stopped it;
    # one found exited at start-up may have been stopped on purpose: leave it alone
    witnessed = obs is not None and obs.state not in ("missing", "stopped")
    on_purpose = obs is None or obs.stop_requested_at is not None or not witnessed
    return _verdict(obs, name, docker_state(container, on_purpose=on_purpose), at, container)


def _stopped(
    previous: VpnObs | None, name: str, container_id: str, action: StopAction, at: float
) -> VpnUpdate | None:
    if previous is None or previous.container_id != container_id:
        return None
    obs = previous
    if action in ("stop", "kill"):
        obs = dataclasses.replace(obs, stop_requested_at=at)
    # a replayed stop from before the container's current run must not stop it again
    if action == "kill" or at < (obs.started_at or 0.0):
        return VpnUpdate(obs=obs)
    crashed = action == "die" and obs.stop_requested_at is None
    return _verdict(obs, name, "unhealthy" if crashed else "stopped", at, None)


def _verdict(
    previous: VpnObs | None, name: str, docker: VpnState, at: float, container: VpnContainer | None
) -> VpnUpdate:
    """Apply Docker's verdict, overruled by the control server while it says the tunnel is down."""
    prev = previous
    if (
        prev is not None
        and container is not None
        and (container.id != prev.container_id or container.started_at != prev.started_at)
    ):
        # a new container or a new run: what its control server said before no longer holds
        prev = dataclasses.replace(prev, tunnel_down=False, public_ip=None)
    state: VpnState = "unhealthy" if docker == "healthy" and prev is not None and prev.tunnel_down else docker
    if container is not None:
        container_id: str | None = container.id
    else:
        container_id = prev.container_id if prev is not None and state != "missing" else None
    started_at = container.started_at if container else (prev.started_at if prev else None)
    same = prev is not None and prev.state == state and prev.container_id == container_id
    reconnected_at = prev.reconnected_at if prev else None
    transitions: list[Transition] = []
    if prev is not None and not same:
        if prev.state == "unhealthy" and state == "healthy" and prev.container_id == container_id:
            reconnected_at = at
            transitions.append(Transition(kind="recovered", state=state, previous=prev.state))
        elif state == "unhealthy":
            transitions.append(Transition(kind="became_unhealthy", state=state, previous=prev.state))
        else:
            transitions.append(Transition(kind="state_changed", state=state, previous=prev.state))
    base = prev if prev is not None else VpnObs(name=name, container_id=None, state=state, state_since=at)
    obs = dataclasses.replace(
        base,
        container_id=container_id,
        state=state,
        state_since=prev.state_since if same and prev is not None else at,
        started_at=started_at,
        reconnected_at=reconnected_at,
        port_known=prev.port_known if same and prev is not None else state != "healthy",
        ip=container.ip if container is not None else base.ip,
        docker_state=docker,
    )
    return VpnUpdate(obs=obs, transitions=tuple(transitions))


def _control(previous: VpnObs, name: str, read: ControlRead, at: float) -> VpnUpdate:
    obs = dataclasses.replace(
        previous, public_ip=read.public_ip, control_status=read.status, control_error=None
    )
    transitions: list[Transition] = []
    down = read.status == "stopped"
    if down != obs.tunnel_down:
        obs = dataclasses.replace(obs, tunnel_down=down)
        transitions.append(Transition(kind="tunnel_status", state=obs.state, status=read.status))
        verdict = _verdict(obs, name, obs.docker_state or obs.state, at, None)
        obs, transitions = verdict.obs, [*transitions, *verdict.transitions]
    if (
        previous.public_ip
        and read.public_ip
        and read.public_ip != previous.public_ip
        and obs.state == "healthy"
    ):
        # the tunnel reconnected inside Gluetun without any Docker health change
        transitions.append(
            Transition(
                kind="reconnected", state=obs.state, public_ip=read.public_ip, previous_ip=previous.public_ip
            )
        )
        obs = dataclasses.replace(obs, reconnected_at=at)
    if not obs.port_known:
        obs = dataclasses.replace(obs, port_known=True)
    if obs.forwarded_port != read.forwarded_port:
        transitions.append(
            Transition(
                kind="forwarded_port",
                state=obs.state,
                port=read.forwarded_port,
                previous_port=obs.forwarded_port,
            )
        )
        obs = dataclasses.replace(obs, forwarded_port=read.forwarded_port)
    return VpnUpdate(obs=obs, transitions=tuple(transitions))
