"""A VPN's state from every signal: Docker, its events, Gluetun's control server, the tunnel probe.

`advance(previous, name, sighting, at)` is the whole state machine: it returns the VPN's new
observation and the transitions worth telling the operator about (the store logs them). Each
signal is a *sighting*: what `docker inspect` shows, a health or stop event Docker sent, what the
control server answered (or that it did not), what the tunnel probe found. The rules, each a
row of `tests/unit/test_vpn.py`:

- Docker's view (`docker_state`): running and healthy (or without a HEALTHCHECK) is `healthy`;
  `unhealthy`/`starting` as Docker says; restarting is `starting`; an exit with an error nobody
  asked for, witnessed by this daemon, is a crash and counts as `unhealthy` (so it is restarted);
  any other stop is `stopped` (left alone); no container is `missing`.
- A stop or kill event marks the next exit as on purpose, until the container runs again; a stop
  event from before the container's current run (a replay) changes nothing.
- While its container runs, the tunnel probe's verdict replaces Docker's health: Docker learns
  of a dead tunnel from Gluetun minutes late, or never (a crashed tunnel keeps it `healthy`),
  and some releases leave it `unhealthy` after Gluetun healed itself. Without a verdict (no probe,
  or none yet), Docker's health decides.
- The control server saying the tunnel is anything but `running` (`stopped`, `crashed`,
  `starting`, `stopping`) makes the VPN `unhealthy`, whatever the health says. A failed poll keeps
  the last status it gave, for `CONTROL_STALE_S`; after that its word no longer counts (and its
  falling silent is not a reconnect: no engine restarts for it).
- A reconnect (`reconnected_at`) needs evidence that the tunnel is a new one inside the same
  container run: a new public IP or a new forwarded port. An empty public IP (`""`:
  reconnecting) is unknown, not a value: the last known one stays, so A -> "" -> B is a
  reconnect; so is N -> 0 -> M for the forwarded port. `unhealthy -> healthy` on the same run
  alone is a blip the tunnel survived (a probe that missed two dials, a slow health check): the
  engines come back as they were, and nothing is restarted for it.
- A new container or a new run forgets what the old one's control server and probe said (and
  its public IP), and that its control server answered (`control_answered`: without an answer
  in this run its silence is no sign Gluetun is stuck); the
  first healthy verdict of a run waits for the forwarded port to be read (`port_known`).
- A forced restart is counted until the VPN is healthy again (the planner backs off with it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from reconcilers.model import ControlProblem, VpnObs, VpnState

CLEAN_EXIT_CODES = (0, 143)  # exited by itself, or on SIGTERM (docker stop)
CONTROL_STALE_S = 30.0  # a control server silent this long: its last status no longer counts
StopAction = Literal["die", "stop", "kill", "pause"]
TransitionKind = Literal[
    "recovered",
    "became_unhealthy",
    "state_changed",
    "tunnel_status",
    "reconnected",
    "forwarded_port",
    "probe",
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
    image: str | None = None


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
    """The control server answered. `public_ip` None: unknown (empty while reconnecting);
    `port_read` False: neither port route could be read, the forwarded port stays as it was."""

    forwarded_port: int | None
    public_ip: str | None
    status: str | None
    port_read: bool = True
    port_static: bool = False  # the operator's vpn.forwarded_ports, not Gluetun's word
    problem: ControlProblem | None = None  # a route the daemon needs is not readable (401)


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlFailed:
    """The control server could not be read (`unreachable`: not even a connection)."""

    error: str
    unreachable: bool = False
    problem: ControlProblem | None = None  # the credentials, diagnosed per release line


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeReported:
    """The tunnel probe's verdict (`up` None: it has none, e.g. it is gone), from a probe created
    against container `vpn_id` and started at `started_at`; `error`: it cannot run at all."""

    vpn_id: str
    started_at: float | None
    up: bool | None
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ForcedRestart:
    """The daemon restarted the VPN container itself."""


Sighting = (
    ContainerSeen
    | HealthReported
    | StopReported
    | ControlRead
    | ControlFailed
    | ProbeReported
    | ForcedRestart
)


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
    probe_up: bool | None = None


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


def tunnel_works(status: str | None) -> bool | None:
    """What a `/v1/vpn/status` answer says of the tunnel; None: nothing (unreadable)."""
    return None if status is None else status == "running"


def advance(previous: VpnObs | None, name: str, sighting: Sighting, at: float) -> VpnUpdate | None:
    """The VPN after `sighting`, or None when the sighting does not apply to it (an event about
    another container, a control reading for a VPN never seen)."""
    match sighting:
        case ContainerSeen(container=container):
            return _seen(previous, name, container, at)
        case HealthReported(container_id=cid, health=health):
            if previous is None or previous.container_id != cid:
                return None
            return _verdict(previous, name, health, at, None, running=True)
        case StopReported(container_id=cid, action=action):
            return _stopped(previous, name, cid, action, at)
        case ControlRead():
            return None if previous is None else _control(previous, name, sighting, at)
        case ControlFailed():
            return None if previous is None else _control_failed(previous, name, sighting, at)
        case ProbeReported():
            return None if previous is None else _probe(previous, name, sighting, at)
        case ForcedRestart():
            if previous is None:
                return None
            return VpnUpdate(
                obs=dataclasses.replace(
                    previous, last_forced_restart=at, forced_restarts=previous.forced_restarts + 1
                )
            )


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
    running = container is not None and container.status == "running"
    return _verdict(obs, name, docker_state(container, on_purpose=on_purpose), at, container, running=running)


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
    return _verdict(obs, name, "unhealthy" if crashed else "stopped", at, None, running=False)


def _combined(docker: VpnState, obs: VpnObs | None, running: bool) -> VpnState:
    """The verdict from Docker's view, the probe's and the control server's."""
    if not running or docker not in ("healthy", "unhealthy", "starting") or obs is None:
        return docker
    state = docker
    if obs.probe_up is not None:
        state = "healthy" if obs.probe_up else "unhealthy"
    if obs.tunnel_down and state == "healthy":
        state = "unhealthy"
    return state


def _verdict(
    previous: VpnObs | None,
    name: str,
    docker: VpnState,
    at: float,
    container: VpnContainer | None,
    *,
    running: bool,
) -> VpnUpdate:
    """Apply Docker's verdict, combined with what the probe and the control server say."""
    prev = previous
    if (
        prev is not None
        and container is not None
        and (container.id != prev.container_id or container.started_at != prev.started_at)
    ):
        # a new container or a new run: what its control server and probe said no longer holds
        prev = dataclasses.replace(
            prev,
            tunnel_down=False,
            public_ip=None,
            last_port=None,
            probe_up=None,
            probe_error=None,
            control_failed_since=None,
            control_unreachable_since=None,
            control_answered=False,
        )
    if prev is not None and not running:
        prev = dataclasses.replace(prev, probe_up=None)  # its probe shares the dead namespace
    state = _combined(docker, prev, running)
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
        image=container.image if container is not None and container.image else base.image,
        running=running,
        docker_state=docker,
        forced_restarts=0 if state == "healthy" else base.forced_restarts,
    )
    return VpnUpdate(obs=obs, transitions=tuple(transitions))


def _reverdict(obs: VpnObs, name: str, at: float, transitions: list[Transition]) -> VpnUpdate:
    """Re-combine after the control server's or the probe's word changed."""
    verdict = _verdict(obs, name, obs.docker_state or obs.state, at, None, running=obs.running)
    return VpnUpdate(obs=verdict.obs, transitions=(*transitions, *verdict.transitions))


def _control(previous: VpnObs, name: str, read: ControlRead, at: float) -> VpnUpdate:
    obs = dataclasses.replace(
        previous,
        public_ip=read.public_ip or previous.public_ip,
        control_status=read.status,
        control_error=None,
        control_problem=read.problem,
        control_failed_since=None,
        control_unreachable_since=None,
        control_answered=True,
    )
    transitions: list[Transition] = []
    works = tunnel_works(read.status)
    down = obs.tunnel_down if works is None else not works
    if down != obs.tunnel_down:
        obs = dataclasses.replace(obs, tunnel_down=down)
        transitions.append(Transition(kind="tunnel_status", state=obs.state, status=read.status))
    update = _reverdict(obs, name, at, transitions)
    obs, transitions = dataclasses.replace(update.obs, port_known=True), list(update.transitions)
    new_ip = bool(previous.public_ip and read.public_ip and read.public_ip != previous.public_ip)
    # a static port (vpn.forwarded_ports) changes with the YAML, never with the tunnel
    port = read.forwarded_port if read.port_read and not read.port_static else None
    new_port = bool(previous.last_port and port and port != previous.last_port)
    if new_ip or new_port:
        # the tunnel reconnected inside Gluetun (perhaps through an empty IP or port 0), whether
        # or not the VPN was seen unhealthy meanwhile: a new tunnel, with the same namespace
        transitions.append(
            Transition(
                kind="reconnected",
                state=obs.state,
                public_ip=read.public_ip if new_ip else None,
                previous_ip=previous.public_ip if new_ip else None,
                port=port if new_port else None,
                previous_port=previous.last_port if new_port else None,
            )
        )
        obs = dataclasses.replace(obs, reconnected_at=at)
    if port:
        obs = dataclasses.replace(obs, last_port=port)
    if read.port_read and obs.forwarded_port != read.forwarded_port:
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


def _control_failed(previous: VpnObs, name: str, failed: ControlFailed, at: float) -> VpnUpdate:
    since = previous.control_failed_since if previous.control_failed_since is not None else at
    unreachable_since = (previous.control_unreachable_since or at) if failed.unreachable else None
    obs = dataclasses.replace(
        previous,
        control_error=failed.error,
        control_problem=failed.problem,
        control_failed_since=since,
        control_unreachable_since=unreachable_since,
        # an HTTP error (a 401) is an answer too: the server is there
        control_answered=previous.control_answered or not failed.unreachable,
    )
    update = VpnUpdate(obs=obs)
    if obs.tunnel_down and at - since >= CONTROL_STALE_S:
        # its last "not running" is too old to hide the engines on: the others decide. Not
        # knowing any more is no sign the tunnel reconnected: no engine restarts for it.
        transitions = [Transition(kind="tunnel_status", state=obs.state, status=None)]
        update = _reverdict(dataclasses.replace(obs, tunnel_down=False), name, at, transitions)
        update = VpnUpdate(
            obs=dataclasses.replace(update.obs, reconnected_at=obs.reconnected_at),
            transitions=tuple(
                dataclasses.replace(t, kind="state_changed") if t.kind == "recovered" else t
                for t in update.transitions
            ),
        )
    # nothing to wait for: placement goes ahead without a forwarded port
    return dataclasses.replace(update, obs=dataclasses.replace(update.obs, port_known=True))


def _probe(previous: VpnObs, name: str, probe: ProbeReported, at: float) -> VpnUpdate | None:
    if previous.container_id != probe.vpn_id:
        return None  # a probe of a container this VPN no longer is
    if (
        probe.started_at is not None
        and previous.started_at is not None
        and probe.started_at <= previous.started_at
    ):
        return None  # started before the VPN's current run: its namespace is the dead one
    # an error stays until the probe gives a verdict (a probe gone says nothing of its error)
    error = probe.error if probe.error is not None or probe.up is not None else previous.probe_error
    if (previous.probe_up, previous.probe_error) == (probe.up, error):
        return VpnUpdate(obs=previous)
    obs = dataclasses.replace(previous, probe_up=probe.up, probe_error=error)
    transitions = [Transition(kind="probe", state=previous.state, probe_up=probe.up, status=probe.error)]
    return _reverdict(obs, name, at, transitions)
