"""How a tunnel probe is written onto Docker and read back (see `reconcilers.probes` for why).

The probe runs the VPN container's own image (Gluetun's: Alpine, with `sh` and busybox `nc`) in
the VPN's network namespace, with its entrypoint replaced by a shell loop of our own (`LOOP`):
one TCP dial of the target every `interval_s`, and a line on its standard output only when the
verdict changes (`tunnel up`, `tunnel down`, `probe broken: why`). The daemon follows that log
(Docker's logs API, one long-lived stream per probe) and reads its last line at every resync,
so it polls nothing and the verdict stays level-triggered. Nothing is `exec`ed into the
container: a Docker health check would cost a trip through dockerd, containerd, a shim and runc
per dial (about 85 ms of CPU), the loop costs one `nc` per dial.

`retries` failed dials in a row, each at least `timeout_s` apart, make "tunnel down": a blip
shorter than `(retries - 1) * timeout_s` (1 s with the defaults) cannot fail them all and hides
nothing. The dial is written for both netcat families: `nc -z` (OpenBSD, busybox with the 1.10
options) and, where `-z` is missing (Debian's busybox), `nc HOST PORT -e true`, which connects
and exits 0 through `true`. An `nc` that knows neither option cannot judge the tunnel: its usage
error is not a failed dial, so the probe says `probe broken`, never "tunnel down". The wait
between dials is the shell's `read -t` on a FIFO the shell holds open (no process at all) where
the shell has it, `sleep` elsewhere; an image with neither exits 127 at once and is reported as
a probe that cannot run. Labels are its memory, as for engines.
"""

from __future__ import annotations

import secrets
import shlex
from typing import Any

from orchestrator.docker.containers import ContainerInfo
from orchestrator.docker.engines import KNOWN_STATUSES, SPEC_HASH, VPN, VPN_ID
from reconcilers.model import (
    MANAGED,
    MANAGED_VALUE,
    POOL,
    PROBE_ROLE,
    ROLE,
    CreateProbe,
    EngineSpec,
    ProbeObs,
    TunnelProbe,
)

NANO = 1_000_000_000
UP, DOWN, BROKEN = "tunnel up", "tunnel down", "probe broken: "
# the probe's own log: a line per change of verdict, so a few kB for ever
LOG_CONFIG = {"Type": "json-file", "Config": {"max-size": "256k", "max-file": "2"}}


CANNOT_DIAL = "this nc knows neither -z nor -e: the tunnel probe cannot dial with it"
NO_NC = "this image has no nc: the tunnel probe cannot dial with it"
# d CMD...: 0 connected, 126 this nc does not take the option (a usage error, not a failed dial),
# 127 no such command, anything else: the dial failed
_DIAL = (
    'd() { o=$("$@" 2>&1 </dev/null); r=$?; [ $r = 0 ] && return 0; '
    "[ $r = 126 ] || [ $r = 127 ] && return $r; "
    "case $o in *'nvalid option'*|*'llegal option'*|*'nrecognized option'*|*'sage:'*) return 126;; "
    "esac; return 1; }; "
)


def loop_command(probe: TunnelProbe) -> str:
    """The probe container's whole program: dial, say the verdict when it changes, wait."""
    host, port = shlex.quote(probe.host), str(probe.port)
    wait = str(max(1, round(probe.timeout_s)))
    pause = f"{probe.interval_s:g}"
    nc_z = f"nc -z -w {wait} {host} {port}"
    nc_e = f"nc -w {wait} {host} {port} -e true"
    return (
        "trap 'exit 0' TERM INT; "
        + _DIAL
        # k: the nc form found to work (z or e), so that later dials run nc alone, no subshell
        + "k=; dial() { case $k in "
        f"z) {nc_z} >/dev/null 2>&1 </dev/null; return $(( $? != 0 ));; "
        f"e) {nc_e} >/dev/null 2>&1 </dev/null; return $(( $? != 0 ));; esac; "
        f"d {nc_z}; r=$?; [ $r = 126 ] || {{ [ $r = 127 ] || k=z; return $r; }}; "
        f"d {nc_e}; r=$?; [ $r = 126 ] || {{ [ $r = 127 ] || k=e; return $r; }}; return 126; }}; "
        # w SECONDS: wait without a process where the shell can (read -t on our own FIFO)
        "f=/tmp/.acestream-probe.$$; "
        "if mkfifo $f 2>/dev/null && exec 3<>$f; then rm -f $f; "
        "read -t 0 x <&3 2>/dev/null; [ $? -le 1 ] && t=1; fi; "
        'w() { if [ -n "$t" ]; then read -t "$1" x <&3; else sleep "$1" & wait $! || exit 127; fi; }; '
        'v=; say() { [ "$1" = "$v" ] || { v=$1; echo "$1"; }; }; '
        # c: ct = the kernel's uptime in hundredths of a second, read without a process ("" if not)
        "c() { ct=; read u x </proc/uptime 2>/dev/null && ct=$(( ${u%.*} * 100 + 1${u#*.} - 100 )); }; "
        "n=0; while :; do "
        "c; a=$ct; dial; r=$?; "
        "case $r in "
        f"0) n=0; say {shlex.quote(UP)};; "
        f"126) n=0; say {shlex.quote(BROKEN + CANNOT_DIAL)};; "
        f"127) n=0; say {shlex.quote(BROKEN + NO_NC)};; "
        f"*) n=$((n + 1)); [ $n -ge {probe.retries} ] && say {shlex.quote(DOWN)};; esac; "
        # after a failed dial the next starts at least `wait` s after it did: one that failed at
        # once (refused, unreachable) is waited for, one that took its whole timeout is not
        f'if [ $n -gt 0 ]; then c; b=$ct; [ -n "$a" ] && [ -n "$b" ] && [ $((b - a)) -ge {int(wait) * 100} ] '
        f"|| w {wait}; continue; fi; "
        f"w {pause}; done"
    )


def log_since(info: ContainerInfo) -> float | None:
    """Where the probe's current run begins in its log: after its previous run ended (None: its
    first run, the whole log). Not `StartedAt`: the loop writes its first line before Docker
    records that."""
    if info.finished_at is None or (info.started_at is not None and info.finished_at > info.started_at):
        return None
    return info.finished_at + 1e-6  # FinishedAt is read to the microsecond


def parse_verdict(line: str) -> tuple[bool | None, str | None] | None:
    """A probe's log line as (up, why it cannot run); None for a line that is no verdict."""
    text = line.strip()
    if text == UP:
        return True, None
    if text == DOWN:
        return False, None
    if text.startswith(BROKEN):
        return None, text.removeprefix(BROKEN)
    return None


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
        "Entrypoint": ["/bin/sh", "-c", loop_command(probe)],
        "Cmd": [],
        "User": "0",
        "Labels": labels,
        "Healthcheck": {"Test": ["NONE"]},  # the image's own (Gluetun's) would exec every few s
        "HostConfig": {
            "NetworkMode": f"container:{create.vpn_id}",
            "RestartPolicy": {"Name": "no"},
            "LogConfig": LOG_CONFIG,
        },
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


def cooldown_key(vpn: str) -> str:
    """The key under which a VPN's probe creation cools down after a probe that could not run."""
    return f"probe:{vpn}"
