"""The daemon against the real-Gluetun bed: its YAML, and what the tests and bench/real_gluetun.py ask
of its engines.

`bed_daemon(bed, workdir)` is one `python -m orchestrator` (testkit/harness.py `Daemon`)
in single-VPN mode on the bed's Gluetun, reading its control server with the bed's key, with
`engines.address: ip` (the daemon runs on the host and reaches Gluetun's bridge address; Gluetun's
firewall lets its own subnet in, and the host's bridge address is in it) and the tunnel probe
dialling the bed's target, which only the tunnel leads to (never a public address).

The probe settings used here (`PROBE`): a dial every 1 s with a 1 s timeout, 2 failures in a row
make the tunnel dead. Against a dead tunnel a check lasts its timeout (this image's OpenBSD
`nc -z` waits it out; the busybox fallback `nc ... -e true` is refused at once), so Docker calls
the probe unhealthy 2 x (interval + timeout) = 3-4 s after the WireGuard server stops, and the
engines leave `/engines` then; with the defaults (2 s, 2 s, 2) 6-8 s (bench/real_gluetun.py
measures it); Docker's own `unhealthy` of Gluetun comes after about 15 s.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from testkit.harness import (
    ENGINE_IMAGE,
    ENGINE_LAUNCH,
    SESSION,
    SESSION_LABEL,
    Daemon,
    containers,
    docker,
    engine_info,
    inspect,
    session_labels,
    wait_for,
)
from testkit.realvpn.bed import RealVpnBed

PROBE = {"interval_s": 1, "timeout_s": 1, "retries": 2}
# The bed's containers carry this session's label too: a concurrent suite's clean-up
# (harness.remove_test_containers) then leaves this live bed alone.
BED_LABEL = f"{SESSION_LABEL}={SESSION}"


def bed_daemon(
    bed: RealVpnBed,
    workdir: Path,
    *,
    engines: int = 2,
    max_replicas: int = 8,
    port_range: str = "19400-19431",
    api_key: str | None = None,
    probe: dict[str, Any] | None = None,
    log_level: str = "DEBUG",
    **vpn: Any,
) -> Daemon:
    """A daemon (not started) whose engines sit behind the bed's Gluetun (single mode), or behind
    all of its Gluetuns (redundant mode); `vpn` adds keys to `vpn:`."""
    run_id = uuid.uuid4().hex[:8]
    workdir.mkdir(parents=True, exist_ok=True)
    probe_keys = {"target": bed.target_address, **PROBE} if probe is None else probe
    config: dict[str, Any] = {
        "engines": {
            "image": ENGINE_IMAGE,
            "launch": ENGINE_LAUNCH,
            "pool": f"realvpn-{run_id}",
            "min_replicas": engines,
            "max_replicas": max_replicas,
            "min_free": 0,
            "address": "ip",
            "labels": session_labels(run_id),
        },
        "vpn": {
            # a bed with two Gluetuns (real_vpn_pair): redundant mode over both
            "mode": "single" if len(bed.gluetun_names) == 1 else "redundant",
            "containers": bed.gluetun_names,
            "api_key": bed.api_key if api_key is None else api_key,
            "port_range": port_range,
            "health_check_interval_s": 1,
            "wait_healthy_s": 60,
            "tunnel_probe": probe_keys,
            **vpn,
        },
        "log_level": log_level,
    }
    daemon = Daemon(workdir=workdir, config=config, run_id=run_id)
    daemon.write_config()
    return daemon


def stop_daemon(daemon: Daemon) -> None:
    """Stop the process and remove everything it made (engines and probe carry its run label)."""
    if daemon.process is not None and daemon.process.poll() is None:
        daemon.process.kill()
        daemon.process.wait(timeout=10)
    made = containers(
        f"label={SESSION_LABEL}={SESSION}", f"label=acestream-orchestrator-test.run={daemon.run_id}"
    )
    if made:
        docker("rm", "-f", *made, check=False, timeout=120)


def vpn_view(daemon: Daemon) -> dict[str, Any]:
    """The one VPN on `/vpn/status`; empty until the daemon's first resync has looked it up
    (a daemon answers `/health` before that)."""
    status, body = daemon.get("/vpn/status")
    assert status == 200, body
    vpns = body["vpns"]
    assert len(vpns) <= 1, vpns
    return dict(vpns[0]) if vpns else {}


def probe_up(daemon: Daemon) -> bool | None:
    return (vpn_view(daemon).get("tunnel_probe") or {}).get("tunnel_up")


def wait_ready(daemon: Daemon, count: int, timeout: float = 60) -> list[dict[str, Any]]:
    """`count` engines listed, each answering as itself, and the probe's verdict "up"."""

    def ready() -> list[dict[str, Any]] | None:
        listed = daemon.engines()
        if len(listed) != count or probe_up(daemon) is not True:
            return None
        ok = all(
            (engine_info(e["host"], e["port"]) or {}).get("CONTAINER_ID") == e["container_id"] for e in listed
        )
        return listed if ok else None

    return wait_for(f"{count} engines listed and answering, probe up", ready, timeout=timeout, interval=0.2)


def whoami(engine_id: str, target: str, timeout: float = 3) -> str | None:
    """What the target says of an engine's traffic (`wget` inside the engine), None: unreachable."""
    # busybox `timeout`: the image's static busybox wget crashes on its own -T option
    done = docker(
        "exec",
        engine_id,
        "timeout",
        str(int(timeout)),
        "wget",
        "-qO-",
        f"http://{target}/cgi-bin/whoami",
        check=False,
        timeout=timeout + 20,
    )
    return done or None


def stream_bytes(
    engine: dict[str, Any], want: int = 8192, timeout: float = 10
) -> tuple[dict[str, Any], bytes]:
    """Open a stream on the engine (getstream) and read `want` bytes of its playback."""
    base = f"http://{engine['host']}:{engine['port']}"
    with urllib.request.urlopen(
        f"{base}/ace/getstream?format=json&id={uuid.uuid4().hex}{uuid.uuid4().hex[:8]}", timeout=timeout
    ) as resp:
        session = json.loads(resp.read())["response"]
    data = b""
    with urllib.request.urlopen(session["playback_url"], timeout=timeout) as resp:
        while len(data) < want:
            chunk = resp.read(want - len(data))
            if not chunk:
                break
            data += chunk
    return session, data


def started_at_raw(ref: str) -> str:
    info = inspect(ref)
    assert info is not None, ref
    return str(info["State"]["StartedAt"])


def probes(daemon: Daemon) -> list[dict[str, Any]]:
    pool = daemon.config["engines"]["pool"]
    found = [
        inspect(c) for c in containers("label=orchestrator.role=probe", f"label=orchestrator.pool={pool}")
    ]
    return [p for p in found if p is not None]
