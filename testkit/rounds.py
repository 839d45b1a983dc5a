"""Kill rounds: a fault under way, the daemon SIGKILLed in the middle of it, started again, and
the invariants checked once it settles. Shared by the fast subset (tests/faults/test_kill_rounds.py)
and the soak (bench/soak.py), which differ only in how many rounds they run.

The bed is two stand-in VPNs (each forwarding a port) and a redundant-mode daemon; a client
reports streams on its engines through the stream-event API as acexy does, and every stream it
ever reported must stay known to the daemon across every restart (the durable journal).
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from reconcilers.model import PortRange
from reconcilers.ports import slots_in_share, vpn_share
from testkit.harness import (
    Daemon,
    docker,
    run_gluetun,
    set_vpn_health,
    stream_started,
    wait_vpn_health,
)
from testkit.internet import FAST_PROBE, Internet
from testkit.invariants import Desired, Observed, settle

FORWARDED_BASE = 40001
OPEN_STREAMS = 2  # streams kept open on the engines, topped up after every round
SURGE = 3  # max_replicas beyond min_replicas
KILL_WITHIN_S = 3.0  # the SIGKILL lands this long after the action began, at most


def http_band(port_range: PortRange, index: int, count: int) -> str:
    """The HTTP ports of the `index`-th VPN's share, as `docker run -p` publishes them on the
    host's loopback."""
    share = vpn_share(port_range, index, count)
    band = f"{share.start}-{share.start + slots_in_share(share) - 1}"
    return f"127.0.0.1:{band}:{band}"


def start_vpns(names: tuple[str, ...], published: PortRange | None = None) -> dict[str, int]:
    """The stand-in Gluetuns, healthy, each forwarding a port of its own (and publishing its
    engines' HTTP ports from `published`, the daemon's vpn.port_range); returns the ports."""
    ports = {name: FORWARDED_BASE + i for i, name in enumerate(names)}
    for index, (name, port) in enumerate(ports.items()):
        publish = http_band(published, index, len(names)) if published else None
        run_gluetun(name, forwarded_port=port, publish=publish)
    for name in names:
        wait_vpn_health(name, "healthy")
    return ports


def bed_config(
    vpns: tuple[str, ...],
    replicas: int,
    port_range: PortRange | None = None,
    probe_target: str | None = None,
) -> dict[str, dict[str, object]]:
    """The daemon's YAML sections for the bed (a quick reconnect, idle surplus gone fast; with
    `probe_target`, the tunnel probe on, dialling it every half second)."""
    ports: dict[str, object] = {"port_range": str(port_range)} if port_range else {}
    if probe_target:
        ports["tunnel_probe"] = {"target": probe_target, **FAST_PROBE}
    return {
        "engines": {
            "min_replicas": replicas,
            "min_free": 0,
            "max_replicas": replicas + SURGE,
            "idle_ttl_s": 2,
        },
        "vpn": {
            "mode": "redundant",
            "containers": list(vpns),
            "health_check_interval_s": 0.5,
            "unhealthy_restart_timeout_s": 300,
            **ports,
        },
    }


@dataclass
class Bed:
    daemon: Daemon
    vpns: tuple[str, ...]
    forwarded: dict[str, int]
    replicas: int
    rng: random.Random
    reported: list[str] = field(default_factory=list)  # every stream the client ever reported
    rounds: int = 0

    def desired(self) -> Desired:
        return Desired(
            replicas=self.replicas,
            vpns=self.vpns,
            forwarded_ports=self.forwarded,
            healthy=frozenset(self.vpns),
            max_replicas=self.replicas + SURGE,
        )

    def settle(self, timeout: float = 90) -> Observed:
        return settle(self.daemon, self.desired(), self.reported, timeout=timeout)

    def top_up_streams(self, observed: Observed) -> None:
        """Report streams on idle listed engines until OPEN_STREAMS are open."""
        open_now = sum(1 for s in observed.streams if s["status"] == "started")
        idle = [e for e in self.daemon.engines() if not e["streams"]]
        for engine in self.rng.sample(idle, min(len(idle), max(0, OPEN_STREAMS - open_now))):
            key = f"round{self.rounds}-{len(self.reported)}"
            status, body = stream_started(self.daemon, engine["host"], engine["port"], key)
            assert status == 200, body
            self.reported.append(body["id"])

    def random_vpn(self) -> str:
        return self.rng.choice(self.vpns)


Action = Callable[[Bed], None]


def scale(bed: Bed) -> None:
    """A YAML edit of min_replicas, between the base and one more."""
    bed.replicas = 5 if bed.replicas == 4 else 4
    bed.daemon.write_config(engines={"min_replicas": bed.replicas})


def restart_vpn(bed: Bed) -> None:
    """`docker restart` of a Gluetun: its engines are left in a dead network namespace."""
    docker("restart", "-t", "1", bed.random_vpn())


def remove_engine(bed: Bed) -> None:
    running = bed.daemon.managed(running_only=True)
    if running:
        docker("rm", "-f", bed.rng.choice(running), check=False)


def roll_out(bed: Bed) -> None:
    """A spec change: every engine is replaced (create before remove)."""
    bed.daemon.write_config(engines={"env": {"FAULT_ROUND": str(bed.rounds)}})


def flap_vpn(bed: Bed) -> None:
    """A VPN unhealthy for a moment, then healthy again."""
    vpn = bed.random_vpn()
    set_vpn_health(vpn, False)
    time.sleep(bed.rng.uniform(0.5, 3.0))
    set_vpn_health(vpn, True)


ACTIONS: dict[str, Action] = {
    "scale": scale,
    "restart_vpn": restart_vpn,
    "remove_engine": remove_engine,
    "roll_out": roll_out,
    "flap_vpn": flap_vpn,
}


def kill_round(bed: Bed, action: str) -> Observed:
    """One round: `action` under way, SIGKILL at a random moment, restart, settle, check."""
    bed.rounds += 1
    worker = threading.Thread(target=ACTIONS[action], args=(bed,), name=action)
    worker.start()
    time.sleep(bed.rng.uniform(0, KILL_WITHIN_S))
    bed.daemon.stop(signal.SIGKILL)
    finish_first = bed.rng.random() < 0.5  # the action ends while the daemon is down, or after
    if finish_first:
        worker.join(timeout=60)
    bed.daemon.start()
    worker.join(timeout=60)
    observed = bed.settle()
    bed.top_up_streams(observed)
    return observed


def schedule(rng: random.Random, rounds: int) -> list[str]:
    """`rounds` actions, each kind in turn in a shuffled order (every kind appears early)."""
    kinds = list(ACTIONS)
    out: list[str] = []
    while len(out) < rounds:
        rng.shuffle(kinds)
        out += kinds
    return out[:rounds]


def new_bed(
    daemon: Daemon,
    vpns: tuple[str, ...],
    seed: int,
    replicas: int = 4,
    published: PortRange | None = None,
    *,
    internet: Internet | None = None,
) -> Bed:
    """Start the VPNs and the daemon (written but not started), settle, open the first streams.
    With `published` (a free host range), that is the daemon's vpn.port_range and each VPN
    publishes its engines' HTTP ports on the host. With `internet`, every VPN joins it and the
    daemon's tunnel probe dials it."""
    forwarded = start_vpns(vpns, published)
    if internet is not None:
        for vpn in vpns:
            internet.mend(vpn)
    target = f"{internet.ip}:80" if internet is not None else None
    daemon.write_config(**bed_config(vpns, replicas, published, target))
    daemon.start()
    bed = Bed(daemon=daemon, vpns=vpns, forwarded=forwarded, replicas=replicas, rng=random.Random(seed))
    bed.top_up_streams(bed.settle())
    return bed
