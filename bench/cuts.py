"""Why a soak viewer's stream was cut, judged only from the soak's own log of what it did.

The rule (docs/stream-safety.md) allows a stream to end against the viewer's will only when its
engine could not serve: the engine was killed, or its network namespace died with its VPN
container. In the soak the test is the only one killing engines and restarting Gluetuns, so a
cut viewer is explained only by an act of the test on that viewer's engine while it watched;
any other cut (during a blip, after a daemon SIGKILL, or with nothing going on) is unexplained:
a violation of the rule. Pure functions over plain records, so the judgement is tested as a
table of cases (tests/unit/test_soak_cuts.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

ENGINE_KILLED = "engine_killed"  # `docker rm -f` / `docker kill` of an engine by the test
VPN_RESTARTED = "vpn_restarted"  # `docker restart` of a Gluetun by the test: its namespace died
BLIP = "blip"  # the tunnel probe's target cut off from a Gluetun for a while (not evidence)
HEALTH_FLIP = "health_flip"  # a Gluetun's Docker health turned unhealthy for a while (not evidence)
DAEMON_KILLED = "daemon_killed"  # the daemon SIGKILLed and started again (not evidence)
# dockerd itself restarted (by someone else: Docker is shared): every container was stopped, so
# every engine and its namespace died. Seen only once the old dockerd is gone, after it stopped
# the containers: `at` is when its process went, `until` when a new one answered.
DOCKERD_RESTARTED = "dockerd_restarted"
DOCKERD_LEAD_S = 30.0  # a dockerd stops every container this long before its process is gone, at most

NAMESPACE_DIED = "namespace_died"
UNEXPLAINED = "unexplained"
SLACK_S = 1.0  # the test's clock readings around an act and a viewer's own are this far apart at most


@dataclass(frozen=True, slots=True, kw_only=True)
class Act:
    """One thing the test did, on its monotonic clock."""

    kind: str
    at: float
    target: str = ""  # the engine's container ID (ENGINE_KILLED) or the VPN's name
    engines: frozenset[str] = frozenset()  # VPN_RESTARTED: every engine in its namespace then
    until: float | None = None  # when a blip, health flip or daemon outage ended


@dataclass(frozen=True, slots=True, kw_only=True)
class Watch:
    """One viewer's stream: asked for at `began`, cut at `cut_at` (it had not chosen to leave)."""

    viewer: str
    engine: str  # the engine's container ID as the proxy reported it ("" unknown)
    began: float
    cut_at: float


def same_container(a: str, b: str) -> bool:
    """Container IDs compared as Docker does, a 12-character prefix matching the full ID."""
    if not a or not b:
        return False
    short, full = sorted((a, b), key=len)
    return len(short) >= 12 and full.startswith(short)


def cause(watch: Watch, acts: Iterable[Act]) -> str:
    """ENGINE_KILLED or NAMESPACE_DIED when the test did that to the viewer's engine between the
    viewer's request and its cut; DOCKERD_RESTARTED when dockerd went down around the cut (every
    container stopped: not the daemon's doing, reported apart); else UNEXPLAINED."""
    acts = list(acts)
    during = [a for a in acts if watch.began - SLACK_S <= a.at <= watch.cut_at + SLACK_S]
    if any(a.kind == ENGINE_KILLED and same_container(a.target, watch.engine) for a in during):
        return ENGINE_KILLED
    if any(
        a.kind == VPN_RESTARTED and any(same_container(e, watch.engine) for e in a.engines) for a in during
    ):
        return NAMESPACE_DIED
    if any(
        a.kind == DOCKERD_RESTARTED
        and a.at - DOCKERD_LEAD_S <= watch.cut_at <= (a.until or a.at) + SLACK_S
        and watch.began <= (a.until or a.at)
        for a in acts
    ):
        return DOCKERD_RESTARTED
    return UNEXPLAINED


def around(at: float, acts: Sequence[Act], before_s: float = 60.0, after_s: float = 5.0) -> list[Act]:
    """The acts going on or done shortly before `at` (an unexplained cut's context)."""
    return [
        a
        for a in acts
        if at - before_s <= a.at <= at + after_s or (a.at <= at and (a.until or a.at) >= at - before_s)
    ]
