"""What the store keeps about an engine beyond the planner's view, and how the Docker edge hands
an engine over: converted once, as a sighting, so the store never sees Docker's JSON."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from reconcilers.model import EngineObs


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineSighting:
    """One engine container as Docker reports it: the planner's view (never `ready`: only the
    readiness prober knows that) plus what `/engines` shows."""

    obs: EngineObs
    ip: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    ran_s: float | None = None  # exited: how long its last run lasted
    exit_code: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineFacts:
    """What /engines shows beyond the planner's view."""

    ip: str | None
    labels: Mapping[str, str]
    first_seen: float
    last_seen: float
    last_health_check: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionError:
    """A Docker action that failed, as `/status` lists it."""

    at: float
    action: str
    target: str
    message: str
    transient: bool
