"""What one Docker container event means to the daemon, decided without touching Docker.

`classify(event, known, pool, resync_floor_nano)` names the container an event is about (a VPN
the daemon follows, an engine of its pool, a tunnel probe of its pool, or nothing of ours) and
what the event asks of the daemon, as a `Signal`. The event source applies each signal to the
store and queues the follow-up inspects; the rules live here, each a row of
`tests/unit/test_event_classify.py`:

- A stand-in for an event the stream had to skip (`SKIPPED_ACTION`) asks for a full resync.
- A VPN is one followed by name, or the one whose current container the event names (an event
  of a container renamed away from the VPN's name still belongs to it).
- A VPN's `health_status` is applied at once, unless the last resync's listing is newer than it
  (it is already reflected there) or Docker's word is not one we know.
- A VPN's die, stop, kill or pause is reported at once (`reconcilers.vpn` tells a crash from a
  stop on purpose); any other event of it, and any stop too, asks for an inspect. The destroy of
  an old container of the VPN's name leaves the current one alone.
- An engine is one labelled as of this pool, or one the store already holds. Its destroy drops
  it; a die, stop or pause from its current run sets its status at once; then it is inspected.
- A probe likewise: its destroy drops it, its other events ask for an inspect, except
  `health_status` (a probe has no health check to report).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, get_args

from reconcilers.model import (
    MANAGED,
    MANAGED_VALUE,
    POOL,
    PROBE_ROLE,
    ROLE,
    EngineObs,
    EngineStatus,
    VpnObs,
    VpnState,
)
from reconcilers.vpn import HealthReported, StopAction, StopReported

# The Action of the stand-in event the Docker gateway yields where it had to skip a line it could
# not take (over its size limit): the event it was is lost.
SKIPPED_ACTION = "orchestrator.skipped"
HEALTH_STATES: dict[str, VpnState] = {"healthy": "healthy", "unhealthy": "unhealthy", "starting": "starting"}
STOP_ACTIONS: dict[str, StopAction] = {action: action for action in get_args(StopAction)}
ENGINE_STOPPED: dict[str, EngineStatus] = {"die": "exited", "stop": "exited", "pause": "paused"}


def is_engine(labels: Mapping[str, str], pool: str) -> bool:
    """One of this daemon's engines: managed, and in this daemon's pool (engines of another
    pool on the same Docker host belong to another daemon and are left alone)."""
    return (
        labels.get(MANAGED) == MANAGED_VALUE
        and labels.get(ROLE, "engine") == "engine"
        and labels.get(POOL) == pool
    )


def is_probe(labels: Mapping[str, str], pool: str) -> bool:
    return (
        labels.get(MANAGED) == MANAGED_VALUE and labels.get(ROLE) == PROBE_ROLE and labels.get(POOL) == pool
    )


def event_time_nano(event: Mapping[str, Any]) -> int:
    """Docker's time of the event, in nanoseconds (`timeNano`, else the seconds of `time`)."""
    return int(event.get("timeNano") or int(event.get("time", 0)) * 1_000_000_000)


@dataclass(frozen=True, slots=True, kw_only=True)
class Known:
    """What the store knows now, as views (not copies: one is built per event)."""

    followed: Collection[str]  # the VPN containers followed by name
    vpns: Mapping[str, VpnObs]
    engines: Mapping[str, EngineObs]
    probes: Collection[str]  # the probes' container IDs


@dataclass(frozen=True, slots=True, kw_only=True)
class Resync:
    """An event was lost: look at everything again."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Ignore:
    """Not an event of a container of ours."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Seen:
    """An event of a container the daemon follows; `text` is the history's trigger of what it
    causes, at Docker's time of the event."""

    text: str
    time_nano: int

    @property
    def at(self) -> float:
        return self.time_nano / 1e9


@dataclass(frozen=True, slots=True, kw_only=True)
class Noted(Seen):
    """Ours, but it changes nothing (a replayed health status, an old container's destroy)."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class VpnHealth(Seen):
    """Docker's health verdict of the VPN's container changed: apply it at once, no inspect."""

    vpn: str
    container_id: str
    health: VpnState

    @property
    def sighting(self) -> HealthReported:
        return HealthReported(container_id=self.container_id, health=self.health)


@dataclass(frozen=True, slots=True, kw_only=True)
class VpnStopped(Seen):
    """The VPN's container died, was stopped, killed or paused: report it, then inspect it."""

    vpn: str
    container_id: str
    action: StopAction

    @property
    def sighting(self) -> StopReported:
        return StopReported(container_id=self.container_id, action=self.action)


@dataclass(frozen=True, slots=True, kw_only=True)
class VpnChanged(Seen):
    """Something else happened to the VPN's container: inspect it by name."""

    vpn: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineGone(Seen):
    container_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineChanged(Seen):
    """Inspect the engine; `status`: what it is known to be until then (it stopped)."""

    container_id: str
    status: EngineStatus | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeGone(Seen):
    container_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeChanged(Seen):
    """Inspect the probe (its run, and so the log to follow, may have changed)."""

    container_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeHealth(Seen):
    """A health status of a probe, whose image's health check is turned off: nothing to
    inspect, but it is news of the probe (an inspect in flight may be older than it)."""

    container_id: str


Signal = (
    Resync
    | Ignore
    | Noted
    | VpnHealth
    | VpnStopped
    | VpnChanged
    | EngineGone
    | EngineChanged
    | ProbeGone
    | ProbeChanged
    | ProbeHealth
)


def classify(event: Mapping[str, Any], known: Known, pool: str, resync_floor_nano: int) -> Signal:
    """What `event` (Docker's event JSON) means; `resync_floor_nano`: when the last resync listed."""
    action = str(event.get("Action") or event.get("status") or "")
    if action == SKIPPED_ACTION:
        return Resync()
    if event.get("Type", "container") != "container":
        return Ignore(reason="not a container event")
    time_nano = event_time_nano(event)
    actor = event.get("Actor") or {}
    container_id = str(actor.get("ID", ""))
    attributes = actor.get("Attributes") or {}
    name = str(attributes.get("name", ""))
    text = f"Docker `{action}` of {name or container_id[:12]}"
    vpn = name if name in known.followed else _vpn_of(known.vpns, container_id)
    if vpn is not None:
        current = known.vpns.get(vpn)
        return _vpn(
            action, vpn, container_id, current, text=text, time_nano=time_nano, floor=resync_floor_nano
        )
    if is_engine(attributes, pool) or container_id in known.engines:
        return _engine(container_id, action, known.engines.get(container_id), text, time_nano)
    if is_probe(attributes, pool) or container_id in known.probes:
        if action == "destroy":
            return ProbeGone(text=text, time_nano=time_nano, container_id=container_id)
        if action.startswith("health_status"):
            return ProbeHealth(text=text, time_nano=time_nano, container_id=container_id)
        return ProbeChanged(text=text, time_nano=time_nano, container_id=container_id)
    return Ignore(reason="not a container of ours")


def _vpn_of(vpns: Mapping[str, VpnObs], container_id: str) -> str | None:
    return next((n for n, v in vpns.items() if v.container_id == container_id), None)


def _vpn(
    action: str, vpn: str, container_id: str, current: VpnObs | None, *, text: str, time_nano: int, floor: int
) -> Signal:
    if action.startswith("health_status"):
        health = HEALTH_STATES.get(action.partition(":")[2].strip())
        if health is None:
            return Noted(text=text, time_nano=time_nano, reason="a health status we do not know")
        if time_nano < floor:
            return Noted(text=text, time_nano=time_nano, reason="older than the last resync's listing")
        return VpnHealth(text=text, time_nano=time_nano, vpn=vpn, container_id=container_id, health=health)
    stop = STOP_ACTIONS.get(action)
    if stop is not None:
        return VpnStopped(text=text, time_nano=time_nano, vpn=vpn, container_id=container_id, action=stop)
    if action == "destroy" and (current is None or current.container_id != container_id):
        return Noted(text=text, time_nano=time_nano, reason="an old container of that name went")
    return VpnChanged(text=text, time_nano=time_nano, vpn=vpn)


def _engine(container_id: str, action: str, engine: EngineObs | None, text: str, time_nano: int) -> Signal:
    if action == "destroy":
        return EngineGone(text=text, time_nano=time_nano, container_id=container_id)
    stopped = ENGINE_STOPPED.get(action)
    if stopped is not None and engine is not None and time_nano / 1e9 >= (engine.started_at or 0.0):
        return EngineChanged(text=text, time_nano=time_nano, container_id=container_id, status=stopped)
    return EngineChanged(text=text, time_nano=time_nano, container_id=container_id)
