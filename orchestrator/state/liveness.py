"""Whether the daemon works inside, for `/health` and the watchdog.

Answering HTTP is not enough: a daemon whose event source hangs (an `inspect` or a resync that
never returns) still answers, while VPN failures go unseen. So `/health` also asks that the
event source made progress lately (an event applied or a resync finished: the periodic resync
finishes every 30-60 s even on a quiet host) and that Docker has not been out of reach for long.
"""

from __future__ import annotations

from orchestrator.state.telemetry import Telemetry

PROGRESS_STALE_S = 150.0  # two resync intervals and a resync's deadline
DOCKER_DOWN_S = 60.0


def unhealthy_reasons(telemetry: Telemetry, now: float) -> list[str]:
    """Why the daemon is not doing its job right now (empty: it is)."""
    reasons = []
    down = telemetry.docker_down_since
    if down is not None and now - down >= DOCKER_DOWN_S:
        why = f": {telemetry.docker_error}" if telemetry.docker_error else ""
        reasons.append(f"Docker out of reach for {now - down:.0f}s{why}")
    elif down is None and (quiet := now - telemetry.progress_at) >= PROGRESS_STALE_S:
        why = f"; Docker: {telemetry.docker_error}" if telemetry.docker_error else ""
        reasons.append(f"the event source made no progress for {quiet:.0f}s (no event, no resync){why}")
    return reasons
