"""How a tunnel probe is written onto Docker and read back (see `reconcilers.probes` for why).

The probe runs the VPN container's own image (Gluetun's: Alpine, with `sh` and busybox `nc`) in
the VPN's network namespace, with its entrypoint replaced by a shell that only sleeps, and a
Docker health check of our own: one TCP dial of the target, every `interval_s`. The dial is
written for both netcat families: `nc -z` (OpenBSD, busybox with the 1.10 options) and, where
`-z` is missing (Debian's busybox), `nc HOST PORT -e true`, which connects and exits 0 through
`true`. An `nc` that knows neither option cannot judge the tunnel: its usage error is not a
failed dial, so the check exits 126 and the probe is `probe_broken`, never "tunnel down". Docker
runs the check and reports a change of verdict as a `health_status` event, so the daemon polls
nothing; the verdict itself is read from the probe's current health (`verdict`) at every
resync and after every event, so an answer that arrives late cannot leave a stale one standing.
Labels are its memory, as for engines.
"""

from __future__ import annotations

import secrets
import shlex
from collections.abc import Mapping
from typing import Any

from orchestrator.docker.containers import ContainerInfo
from orchestrator.docker.engines import (
    KNOWN_STATUSES,
    MANAGED,
    MANAGED_VALUE,
    POOL,
    ROLE,
    SPEC_HASH,
    VPN,
    VPN_ID,
)
from reconcilers.model import CreateProbe, EngineSpec, ProbeObs, TunnelProbe

PROBE_ROLE = "probe"
# `sleep` in the background and `wait`, so that SIGTERM (docker stop) ends it at once; an image
# without `sleep` exits (127) instead of spinning, and is reported as a probe that cannot run
IDLE = "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $! || exit 127; done"
NANO = 1_000_000_000
NOT_RUNNABLE = (-1, 126, 127)  # Docker could not exec it / cannot run / no such command


def is_probe(labels: Mapping[str, str], pool: str) -> bool:
    return (
        labels.get(MANAGED) == MANAGED_VALUE and labels.get(ROLE) == PROBE_ROLE and labels.get(POOL) == pool
    )


CANNOT_DIAL = "this nc knows neither -z nor -e: the tunnel probe cannot dial with it"
# d CMD...: 0 connected, 126 this nc does not take the option (a usage error, not a failed dial),
# 126/127 cannot run at all, anything else: the dial failed
_DIAL = (
    'd() { o=$("$@" 2>&1); r=$?; [ $r = 0 ] && return 0; [ $r = 126 ] || [ $r = 127 ] && return $r; '
    "case $o in *'nvalid option'*|*'llegal option'*|*'nrecognized option'*|*'sage:'*) return 126;; "
    "esac; return 1; }; "
)


def dial_command(probe: TunnelProbe) -> str:
    host, port = shlex.quote(probe.host), str(probe.port)
    wait = str(max(1, round(probe.timeout_s)))
    return (
        f"{_DIAL}d nc -z -w {wait} {host} {port}; r=$?; [ $r = 126 ] || exit $r; "
        f"d nc -w {wait} {host} {port} -e true; r=$?; [ $r = 126 ] || exit $r; "
        f"echo {shlex.quote(CANNOT_DIAL)}; exit 126"
    )


def probe_name(create: CreateProbe) -> str:
    return f"acestream-probe-{create.vpn}-{secrets.token_hex(3)}"


def probe_body(create: CreateProbe, probe: TunnelProbe, engines: EngineSpec) -> dict[str, Any]:
    """The Docker create request for the probe of one VPN (`engines.labels` apply to it too)."""
    labels = {
        **engines.labels,
        MANAGED: MANAGED_VALUE,
        POOL: engines.pool,
        ROLE: PROBE_ROLE,
        VPN: create.vpn,
        VPN_ID: create.vpn_id,
        SPEC_HASH: create.spec_hash,
    }
    return {
        "Image": create.image,
        "Entrypoint": ["/bin/sh", "-c", IDLE],
        "Cmd": [],
        "User": "0",
        "Labels": labels,
        "Healthcheck": {
            "Test": ["CMD-SHELL", dial_command(probe)],
            "Interval": int(probe.interval_s * NANO),
            "Timeout": int((probe.timeout_s * 2 + 1) * NANO),  # both dials may run
            "Retries": probe.retries,
            "StartPeriod": 0,
        },
        "HostConfig": {"NetworkMode": f"container:{create.vpn_id}", "RestartPolicy": {"Name": "no"}},
    }


def probe_observation(info: ContainerInfo) -> ProbeObs:
    status = info.status if info.status in KNOWN_STATUSES else "dead"
    return ProbeObs(
        container_id=info.id,
        vpn=info.labels.get(VPN, ""),
        vpn_id=info.labels.get(VPN_ID, ""),
        status=status,  # type: ignore[arg-type]
        started_at=info.started_at,
        spec_hash=info.labels.get(SPEC_HASH, ""),
    )


def verdict(info: ContainerInfo | None) -> tuple[bool | None, str | None]:
    """What the probe says of the tunnel right now: (up, why it cannot run). `up` is None while
    it has no verdict (not running, its first check still pending, or it cannot run)."""
    if info is None or info.status != "running":
        return None, None
    why = cannot_run(info)
    if why is not None:
        return None, why
    return {"healthy": True, "unhealthy": False}.get(info.health or ""), None


def cannot_run(info: ContainerInfo) -> str | None:
    """Why the probe's check cannot run at all (its image lacks sh or nc), or None."""
    if info.health_exit_code in NOT_RUNNABLE:
        return info.health_output or f"health check exit code {info.health_exit_code}"
    return None


def cooldown_key(vpn: str) -> str:
    """The key under which a VPN's probe creation cools down after a probe that could not run."""
    return f"probe:{vpn}"
