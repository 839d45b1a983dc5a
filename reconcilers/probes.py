"""The tunnel probes: exactly one per running VPN, in that VPN's current network namespace.

A probe is a small container started from the VPN's own image (or `vpn.tunnel_probe.image`)
with `network_mode: container:<vpn>`; its Docker health check dials `vpn.tunnel_probe.target`.
From inside the VPN's namespace only the tunnel leads out, so its `health_status` events say
whether the tunnel carries traffic, within a few `interval_s`. The planner keeps one fresh probe
per VPN like it keeps engines: a probe of a replaced VPN container is removed (a new one is
created against the new ID), one left in a restarted VPN's dead namespace is restarted, one of
old settings is replaced, and none is kept while the probe is off or for a VPN no longer listed.
Its cost is one container per VPN, whatever the number of engines.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from reconcilers.model import (
    Action,
    CreateProbe,
    Desired,
    Observed,
    ProbeObs,
    Problem,
    RemoveProbe,
    RestartProbe,
)

DEAD = ("exited", "dead", "created", "paused")


def probe_spec_hash(desired: Desired) -> str:
    probe = desired.vpn.probe
    doc = (
        None
        if probe is None
        else [probe.host, probe.port, probe.interval_s, probe.timeout_s, probe.retries, probe.image]
    )
    return hashlib.sha256(json.dumps(doc).encode()).hexdigest()[:16]


@dataclass(slots=True, kw_only=True)
class ProbePlan:
    actions: list[Action] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def _stale(desired: Desired, observed: Observed, probe: ProbeObs, want_hash: str) -> str | None:
    """Why the probe must go, or None when it may stay."""
    configured = desired.vpn.containers if desired.vpn.mode != "none" else ()
    vpn = observed.vpns.get(probe.vpn)
    if desired.vpn.probe is None:
        return "tunnel probe turned off"
    if probe.vpn not in configured:
        return f"VPN '{probe.vpn}' is no longer configured"
    if vpn is None or vpn.container_id is None:
        return f"VPN '{probe.vpn}' is gone"
    if probe.vpn_id != vpn.container_id:
        return "VPN container was recreated"
    if probe.spec_hash != want_hash:
        return "tunnel probe settings changed"
    if probe.status in DEAD:
        return f"probe {probe.status}"
    return None


def plan_probes(desired: Desired, observed: Observed, free: Callable[[str], bool]) -> ProbePlan:
    """The probe actions of one planning pass; `free(container_id)` says whether a container may
    be acted on now (not busy, not cooling down after a failed action)."""
    out = ProbePlan()
    want_hash = probe_spec_hash(desired)
    kept: dict[str, list[ProbeObs]] = {}
    for probe in observed.probes:
        if not free(probe.container_id) or probe.vpn in observed.pending_probes:
            kept.setdefault(probe.vpn, []).append(probe)  # an action on it is under way
            continue
        why = _stale(desired, observed, probe, want_hash)
        if why is not None:
            out.actions.append(RemoveProbe(container_id=probe.container_id, reason=why))
            continue
        vpn = observed.vpns[probe.vpn]
        if len(kept.get(probe.vpn, ())) >= 1:
            out.actions.append(RemoveProbe(container_id=probe.container_id, reason="a second probe"))
            continue
        kept.setdefault(probe.vpn, []).append(probe)
        if (
            vpn.running
            and probe.status == "running"
            and probe.started_at is not None
            and vpn.started_at is not None
            and probe.started_at <= vpn.started_at
        ):
            out.actions.append(
                RestartProbe(container_id=probe.container_id, reason="VPN restarted after the probe started")
            )
    spec = desired.vpn.probe
    if spec is None or desired.vpn.mode == "none":
        return out
    for name in desired.vpn.containers:
        seen = observed.vpns.get(name)
        if seen is None or seen.container_id is None:
            continue
        if seen.probe_error:
            out.problems.append(
                Problem(
                    code="probe_broken",
                    vpn=name,
                    message=f"the tunnel probe of '{name}' cannot run ({seen.probe_error}); set "
                    "vpn.tunnel_probe.image to an image with sh and nc, or turn the probe off with "
                    "vpn.tunnel_probe.target: ''",
                )
            )
        image = spec.image or seen.image
        blocked = (
            bool(kept.get(name))
            or name in observed.pending_probes
            or not seen.running
            or seen.container_id in observed.busy_containers
            or not free(f"probe:{name}")  # its last probe could not run: cooling down
        )
        if blocked or image is None:
            continue
        out.actions.append(
            CreateProbe(
                vpn=name,
                vpn_id=seen.container_id,
                image=image,
                spec_hash=want_hash,
                reason="VPN has no tunnel probe",
            )
        )
    return out
