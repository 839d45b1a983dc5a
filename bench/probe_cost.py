"""What one VPN's tunnel probe costs the machine: today's Docker health check against the dial
loop, measured side by side in one run, counting every process involved.

One stand-in Gluetun and a target ("the internet") on a network of their own. Then, in rounds,
each of three conditions for `--window` seconds: no probe (the baseline), the probe as it was
(a sleeping container whose Docker HEALTHCHECK dials every 2 s: one exec through dockerd,
containerd, the shim and runc per dial), and the probe as it is (`probe_body`: the dial loop,
one `nc` per second, its log followed through Docker's logs API by this process, as the daemon
does). CPU is read from the kernel: the probe container's cgroup (everything run inside it,
execs included), its containerd shim (with the runc children it reaped), dockerd and
containerd (shared with everything else on the machine, so their figure is the difference to
the no-probe windows of the same round), and this process while it follows the log. Run:
`.venv/bin/python bench/probe_cost.py --rounds 3 --window 40`. Writes bench/results/probe_cost.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shlex
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, write_result
from orchestrator.docker.gateway import DockerGateway
from orchestrator.docker.probes import probe_body
from reconcilers.model import CreateProbe, EngineSpec, TunnelProbe
from testkit.harness import (
    docker,
    inspect,
    label_args,
    remove_network,
    remove_test_containers,
    run_gluetun,
    session_labels,
    wait_vpn_health,
)

BUSYBOX = "acestream-orchestrator-test/busybox:latest"
TICK = os.sysconf("SC_CLK_TCK")

# today's probe (main before this change): an idle shell and a Docker health check dialling the
# target every 2 s, written for both netcat families (the same dial as the loop's)
OLD_IDLE = "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $! || exit 127; done"
OLD_DIAL = (
    'd() { o=$("$@" 2>&1); r=$?; [ $r = 0 ] && return 0; [ $r = 126 ] || [ $r = 127 ] && return $r; '
    "case $o in *'nvalid option'*|*'llegal option'*|*'nrecognized option'*|*'sage:'*) return 126;; "
    "esac; return 1; }; "
)

DEFAULT_INTERVAL_S = TunnelProbe(host="", port=0).interval_s  # the config's default


def old_body(image: str, vpn_id: str, host: str, port: int) -> dict[str, Any]:
    h = shlex.quote(host)
    dial = (
        f"{OLD_DIAL}d nc -z -w 2 {h} {port}; r=$?; [ $r = 126 ] || exit $r; "
        f"d nc -w 2 {h} {port} -e true; r=$?; [ $r = 126 ] || exit $r; exit 126"
    )
    return {
        "Image": image,
        "Entrypoint": ["/bin/sh", "-c", OLD_IDLE],
        "Cmd": [],
        "User": "0",
        "Labels": session_labels(),
        "Healthcheck": {
            "Test": ["CMD-SHELL", dial],
            "Interval": 2_000_000_000,
            "Timeout": 5_000_000_000,
            "Retries": 2,
            "StartPeriod": 0,
        },
        "HostConfig": {"NetworkMode": f"container:{vpn_id}", "RestartPolicy": {"Name": "no"}},
    }


def new_body(image: str, vpn_id: str, host: str, port: int, interval_s: float = 1.0) -> dict[str, Any]:
    create = CreateProbe(vpn="bench", vpn_id=vpn_id, image=image, spec_hash="bench", reason="bench")
    probe = TunnelProbe(host=host, port=port, interval_s=interval_s)
    body = probe_body(create, probe, EngineSpec(image="none", pool="bench"))
    body["Labels"] = {**body["Labels"], **session_labels()}
    return body


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "median": round(statistics.median(ordered), 3),
        "best": round(ordered[0], 3),
        "worst": round(ordered[-1], 3),
    }


def proc_ticks(pid: int) -> int:
    """utime + stime + the reaped children's (runc, for a shim), in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15])


def pid_of(name: str) -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    return int(entry.name)
            except OSError:
                continue
    raise RuntimeError(f"no {name} process")


def shim_of(container_id: str) -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"-id" in cmd and container_id.encode() in cmd and b"containerd-shim" in cmd[0]:
                return int(entry.name)
    raise RuntimeError(f"no shim for {container_id[:12]}")


def cgroup_ns(container_id: str) -> int:
    for path in (
        f"/sys/fs/cgroup/cpuacct/docker/{container_id}/cpuacct.usage",
        f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/cpu.stat",
        f"/sys/fs/cgroup/docker/{container_id}/cpu.stat",
    ):
        p = Path(path)
        if p.exists():
            text = p.read_text()
            if path.endswith("cpuacct.usage"):
                return int(text)
            usage = next(line for line in text.splitlines() if line.startswith("usage_usec"))
            return int(usage.split()[1]) * 1000
    raise RuntimeError(f"no cgroup for {container_id[:12]}")


async def window(
    kind: str, seconds: float, gateway: DockerGateway, vpn: str, target: str
) -> dict[str, float]:
    seen = inspect(vpn) or {}
    image, vpn_id = str(seen["Image"]), str(seen["Id"])
    probe_id = None
    follower = None
    lines: list[str] = []
    if kind != "none":
        if kind == "old":
            body = old_body(image, vpn_id, target, 80)
        else:
            interval = 2.0 if kind == "new_2s" else DEFAULT_INTERVAL_S
            body = new_body(image, vpn_id, target, 80, interval_s=interval)
        info = await gateway.create_and_start(f"bench-probe-{uuid.uuid4().hex[:6]}", body)
        probe_id = info.id
        if kind != "old":

            async def follow() -> None:
                async with gateway.follow_log(info.id) as stream:
                    async for line in stream:
                        lines.append(line.text)

            follower = asyncio.create_task(follow())
        await asyncio.sleep(4)  # settled: the first checks or dials done
    dockerd, containerd = pid_of("dockerd"), pid_of("containerd")
    shim = shim_of(probe_id) if probe_id else None
    before = {
        "dockerd": proc_ticks(dockerd),
        "containerd": proc_ticks(containerd),
        "shim": proc_ticks(shim) if shim else 0,
        "cgroup_ns": cgroup_ns(probe_id) if probe_id else 0,
        "self": resource.getrusage(resource.RUSAGE_SELF),
    }
    start = time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - start
    me = resource.getrusage(resource.RUSAGE_SELF)
    pct = 100.0 / elapsed
    out = {
        "dockerd_pct": (proc_ticks(dockerd) - before["dockerd"]) / TICK * pct,
        "containerd_pct": (proc_ticks(containerd) - before["containerd"]) / TICK * pct,
        "shim_pct": ((proc_ticks(shim) - before["shim"]) / TICK * pct) if shim else 0.0,
        "container_pct": ((cgroup_ns(probe_id) - before["cgroup_ns"]) / 1e9 * pct) if probe_id else 0.0,
        "follower_pct": (
            (me.ru_utime + me.ru_stime - before["self"].ru_utime - before["self"].ru_stime) * pct
            if kind.startswith("new")
            else 0.0
        ),
    }
    if follower is not None:
        follower.cancel()
    if probe_id:
        if kind != "old":
            assert lines and lines[-1] == "tunnel up", lines
        else:
            health = ((inspect(probe_id) or {}).get("State") or {}).get("Health") or {}
            assert health.get("Status") == "healthy", health
        await gateway.remove(probe_id)
    return out


def remove_probes() -> None:
    for cid in docker("ps", "-aq", "--filter", "name=bench-probe-").split():
        docker("rm", "-f", cid, check=False)


async def run(rounds: int, seconds: float) -> dict[str, Any]:
    net = f"bench-inet-{uuid.uuid4().hex[:8]}"
    vpn = f"bench-pc-{uuid.uuid4().hex[:6]}"
    gateway = DockerGateway()
    results: dict[str, list[dict[str, float]]] = {"none": [], "old": [], "new": [], "new_2s": []}
    try:
        docker("network", "create", *label_args(), net)
        httpd = [BUSYBOX, "httpd", "-f", "-p", "80"]
        docker("run", "-d", "--name", net, "--network", net, *label_args(), *httpd)
        target = str((inspect(net) or {})["NetworkSettings"]["Networks"][net]["IPAddress"])
        run_gluetun(vpn)
        docker("network", "connect", net, vpn)
        wait_vpn_health(vpn, "healthy")
        for r in range(rounds):
            order = ("none", "old", "new", "new_2s") if r % 2 == 0 else ("new_2s", "new", "old", "none")
            for kind in order:
                for attempt in range(3):
                    try:
                        results[kind].append(await window(kind, seconds, gateway, vpn, target))
                        break
                    except (FileNotFoundError, RuntimeError) as exc:
                        # dockerd or containerd restarted under the window (another session's
                        # fault tests share this machine): measure that window again
                        print(kind, "window lost:", exc, "attempt", attempt, flush=True)
                        remove_probes()
                        wait_vpn_health(vpn, "healthy", timeout=120)
                print(kind, {k: round(v, 3) for k, v in results[kind][-1].items()}, flush=True)
    finally:
        await gateway.close()
        remove_test_containers()
        remove_network(net)
    report: dict[str, Any] = {}
    base_shared = [w["dockerd_pct"] + w["containerd_pct"] for w in results["none"]]
    for kind in ("old", "new", "new_2s"):
        per_round = []
        for i, w in enumerate(results[kind]):
            shared = w["dockerd_pct"] + w["containerd_pct"] - base_shared[i]
            per_round.append(
                {
                    **{k: round(v, 4) for k, v in w.items()},
                    "dockerd_containerd_over_baseline_pct": round(shared, 4),
                    "total_pct": round(
                        w["container_pct"] + w["shim_pct"] + w["follower_pct"] + max(0.0, shared), 4
                    ),
                    "own_processes_pct": round(w["container_pct"] + w["shim_pct"] + w["follower_pct"], 4),
                }
            )
        report[kind] = {
            "total_pct": summary([p["total_pct"] for p in per_round]),
            "own_processes_pct": summary([p["own_processes_pct"] for p in per_round]),
            "rounds": per_round,
        }
    report["baseline_dockerd_containerd_pct"] = [round(b, 4) for b in base_shared]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=float, default=40.0)
    args = parser.parse_args()
    report = asyncio.run(run(args.rounds, args.window))
    write_result(
        "probe_cost",
        {
            "what": "CPU of one VPN's tunnel probe, % of one core, every process counted "
            "(probe container cgroup, its shim with reaped runc, dockerd + containerd over the "
            "no-probe window of the same round, the log follower); old = Docker HEALTHCHECK every "
            f"2 s, new = dial loop every {DEFAULT_INTERVAL_S:g} s (the default) with its log followed, "
            "new_2s = the same every 2 s",
            "command": f".venv/bin/python bench/probe_cost.py --rounds {args.rounds} "
            f"--window {args.window:g}",
            "machine": machine(),
            **report,
        },
    )


if __name__ == "__main__":
    main()
