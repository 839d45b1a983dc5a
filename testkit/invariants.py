"""What must hold once the daemon has settled, whatever fault came before.

One checker for the kill rounds and the soak: `violations(desired, observed)` is a pure function
over plain data (Docker's inspect answers of the run's managed containers, the daemon's
`/engines` and `/streams` answers, the streams the client believes open) and returns every
broken rule as a line of text, so a failure names them all. `observe` gathers that data from
Docker and the daemon; `settle` waits until nothing is broken and fails with the last list.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.docker.engines import (
    API_PORT,
    FORWARDED,
    HOST_HTTP_PORT,
    HTTP_PORT,
    HTTPS_PORT,
    P2P_PORT,
    SLOT,
    VPN,
    VPN_ID,
)
from reconcilers.model import PROBE_ROLE, ROLE
from testkit.harness import Daemon, inspect, wait_for

PORT_LABELS = (HTTP_PORT, HTTPS_PORT, API_PORT, P2P_PORT)
# `--http-port 19000`, `--http-port=19000`, `--port=19003`: the port flags of every launch preset
PORT_FLAG = re.compile(r"^--(?:[a-z]+-)?port(?:=(\d+))?$")


@dataclass(frozen=True)
class Desired:
    """What the configuration asks for, and which VPNs are up right now."""

    replicas: int  # engines.min_replicas
    vpns: tuple[str, ...] = ()
    forwarded_ports: Mapping[str, int] = field(default_factory=dict)  # VPN -> the port it forwards
    healthy: frozenset[str] = frozenset()
    max_replicas: int | None = None
    min_free: int = 0


@dataclass(frozen=True)
class Observed:
    containers: list[dict[str, Any]]  # `docker inspect` of every managed container of the run
    vpn_ids: Mapping[str, str]  # VPN name -> its container's current ID
    engines: list[dict[str, Any]]  # GET /engines
    streams: list[dict[str, Any]]  # GET /streams (both statuses)
    open_streams: Collection[str] = ()  # streams the client started and did not end itself

    @property
    def busy(self) -> set[str]:
        """The containers a started stream is on."""
        return {s["container_id"] for s in self.streams if s["status"] == "started"}


def violations(desired: Desired, observed: Observed) -> list[str]:
    return [
        *_count(expected_engines(desired, observed), observed.containers),
        *_membership(desired, observed),
        *_duplicates(observed.containers),
        *_ports(observed.containers),
        *_forwarding(desired, observed),
        *_balance(desired, observed),
        *_listing(desired, observed),
        *_streams(observed),
    ]


def _labels(container: Mapping[str, Any]) -> Mapping[str, str]:
    return container.get("Config", {}).get("Labels") or {}


def _name(container: Mapping[str, Any]) -> str:
    return str(container.get("Name", "")).lstrip("/") or str(container.get("Id", ""))[:12]


def _running(container: Mapping[str, Any]) -> bool:
    return bool(container.get("State", {}).get("Running"))


def expected_engines(desired: Desired, observed: Observed) -> int:
    """The pool's size once settled: min_replicas, or every busy engine plus min_free free ones,
    within max_replicas (as the planner sizes it)."""
    existing = {c["Id"] for c in observed.containers}
    busy = observed.busy & existing
    wanted = max(desired.replicas, len(busy) + desired.min_free)
    return wanted if desired.max_replicas is None else min(desired.max_replicas, wanted)


def _count(expected: int, containers: list[dict[str, Any]]) -> Iterable[str]:
    if len(containers) != expected:
        names = sorted(map(_name, containers))
        yield f"{len(containers)} managed engines, {expected} desired: {names}"
    for container in containers:
        if not _running(container):
            yield f"engine {_name(container)} is {container.get('State', {}).get('Status')}, not running"


def _membership(desired: Desired, observed: Observed) -> Iterable[str]:
    """Every engine belongs to a configured VPN's current container (or to none without VPNs)."""
    for container in observed.containers:
        labels, name = _labels(container), _name(container)
        vpn = labels.get(VPN)
        if not desired.vpns:
            if vpn:
                yield f"orphan: {name} is on VPN {vpn!r} though none is configured"
            continue
        if vpn not in desired.vpns:
            yield f"orphan: {name} is on VPN {vpn!r}, not one of {list(desired.vpns)}"
            continue
        current = observed.vpn_ids.get(vpn)
        mode = container.get("HostConfig", {}).get("NetworkMode", "")
        if current is None or labels.get(VPN_ID) != current or mode != f"container:{current}":
            yield f"orphan: {name} runs in namespace {mode!r}, not {vpn}'s current container {current!r}"


def _duplicates(containers: list[dict[str, Any]]) -> Iterable[str]:
    slots = Counter((_labels(c).get(VPN), _labels(c).get(SLOT)) for c in containers)
    for (vpn, slot), n in sorted(slots.items(), key=str):
        if n > 1:
            yield f"duplicate: {n} engines hold slot {slot} of VPN {vpn!r}"
    for name, n in Counter(map(_name, containers)).items():
        if n > 1:
            yield f"duplicate: {n} engines named {name}"


def namespace(container: Mapping[str, Any]) -> str:
    """The network namespace a container lives in: its VPN's container, or its own."""
    mode = str(container.get("HostConfig", {}).get("NetworkMode", ""))
    return mode if mode.startswith("container:") else f"own:{container.get('Id', '')}"


def flag_ports(container: Mapping[str, Any]) -> set[int]:
    """The ports an engine's launch flags name (entrypoint and command)."""
    config = container.get("Config", {})
    args = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
    found = set()
    for arg, after in zip(args, [*args[1:], ""], strict=True):
        match = PORT_FLAG.match(arg)
        if match:
            value = match.group(1) or after
            if value.isdigit():
                found.add(int(value))
    return found


def engine_ports(container: Mapping[str, Any]) -> set[int]:
    labels = _labels(container)
    return {int(labels[k]) for k in PORT_LABELS if labels.get(k, "").isdigit()} | flag_ports(container)


def host_ports(container: Mapping[str, Any]) -> set[int]:
    labelled = _labels(container).get(HOST_HTTP_PORT, "")
    bindings = container.get("HostConfig", {}).get("PortBindings") or {}
    bound = {int(b["HostPort"]) for binds in bindings.values() for b in binds or [] if b.get("HostPort")}
    return bound | ({int(labelled)} if labelled.isdigit() else set())


def _ports(containers: list[dict[str, Any]]) -> Iterable[str]:
    """No port taken twice in one namespace, and no host port published twice."""
    owners: dict[tuple[str, int], list[str]] = defaultdict(list)
    for container in containers:
        for port in engine_ports(container):
            owners[(namespace(container), port)].append(_name(container))
        for port in host_ports(container):
            owners[("host", port)].append(_name(container))
    for (where, port), names in sorted(owners.items()):
        if len(names) > 1:
            yield f"port clash: {port} in namespace {where} used by {sorted(names)}"


def _forwarding(desired: Desired, observed: Observed) -> Iterable[str]:
    """One engine per healthy VPN carries its forwarded port. A VPN none of whose engines is
    forwarded or idle is excused: only cutting a viewer's stream could make one (the daemon
    recreates an engine as the forwarded one once it is idle)."""
    busy = observed.busy
    for vpn in desired.vpns:
        mine = [c for c in observed.containers if _labels(c).get(VPN) == vpn]
        forwarded = [c for c in mine if _labels(c).get(FORWARDED) == "true"]
        port = desired.forwarded_ports.get(vpn)
        if len(forwarded) > 1:
            yield f"forwarding: {len(forwarded)} forwarded engines on {vpn}: {sorted(map(_name, forwarded))}"
        if not port or vpn not in desired.healthy:
            continue
        if not forwarded and any(c["Id"] not in busy for c in mine):
            yield f"forwarding: no forwarded engine on {vpn} (forwarded port {port}), though one is idle"
        for container in forwarded:
            if _labels(container).get(P2P_PORT) != str(port) or port not in flag_ports(container):
                yield f"forwarding: {_name(container)} on {vpn} does not carry forwarded port {port}"


def _balance(desired: Desired, observed: Observed) -> Iterable[str]:
    """The VPNs' shares within one engine of each other, unless the fuller VPN has no engine the
    planner may move: it never cuts a stream and never gives up a forwarded engine to balance
    (the split evens out as those streams end)."""
    if len(desired.vpns) < 2 or not set(desired.vpns) <= desired.healthy:
        return
    split = Counter(_labels(c).get(VPN) for c in observed.containers)
    counts = {vpn: split.get(vpn, 0) for vpn in desired.vpns}
    if max(counts.values()) - min(counts.values()) <= 1:
        return
    busy = observed.busy
    fullest = max(counts, key=lambda vpn: counts[vpn])
    movable = [
        c
        for c in observed.containers
        if _labels(c).get(VPN) == fullest and c["Id"] not in busy and _labels(c).get(FORWARDED) != "true"
    ]
    if movable:
        yield f"unbalanced: engines per VPN {counts}, though {_name(movable[0])} on {fullest} is idle"


def _listing(desired: Desired, observed: Observed) -> Iterable[str]:
    """`/engines` lists only engines that exist, and all of them once every VPN is up."""
    existing = {c["Id"] for c in observed.containers}
    listed = {e["container_id"] for e in observed.engines}
    for ghost in sorted(listed - existing):
        yield f"listing: /engines lists {ghost[:12]}, which is not a managed container"
    if set(desired.vpns) <= desired.healthy:
        running = {c["Id"] for c in observed.containers if _running(c)}
        for hidden in sorted(running - listed):
            yield f"listing: engine {hidden[:12]} runs but /engines does not list it"


def _streams(observed: Observed) -> Iterable[str]:
    """Each stream the client holds open is active on an engine that exists, or ended with a
    reason; and no stream is active on an engine that is gone."""
    running = {c["Id"] for c in observed.containers if _running(c)}
    by_id = {s["id"]: s for s in observed.streams}
    for stream_id in sorted(observed.open_streams):
        stream = by_id.get(stream_id)
        if stream is None:
            yield f"stream {stream_id} unknown to the daemon"
        elif stream["status"] == "ended" and not stream.get("end_reason"):
            yield f"stream {stream_id} ended with no reason"
    for stream in observed.streams:
        if stream["status"] == "started" and stream["container_id"] not in running:
            yield f"stream {stream['id']} active on {str(stream['container_id'])[:12]}, which does not run"


def observe(daemon: Daemon, vpns: Iterable[str], open_streams: Collection[str] = ()) -> Observed:
    """The data `violations` reads, from Docker and the daemon, now."""
    containers = [
        info
        for cid in daemon.managed()
        if (info := inspect(cid)) is not None and _labels(info).get(ROLE) != PROBE_ROLE
    ]  # the tunnel probes are the daemon's too, but not engines
    vpn_ids = {vpn: info["Id"] for vpn in vpns if (info := inspect(vpn)) is not None}
    status, streams = daemon.get("/streams")
    assert status == 200, streams
    return Observed(
        containers=containers,
        vpn_ids=vpn_ids,
        engines=daemon.engines(),
        streams=list(streams),
        open_streams=open_streams,
    )


def settled_violations(
    daemon: Daemon, desired: Desired, open_streams: Collection[str] = (), timeout: float = 90
) -> list[str]:
    """Wait until no invariant is broken (an empty list), or return those still broken then."""
    last: list[str] = []

    def holds() -> bool:
        nonlocal last
        last = violations(desired, observe(daemon, desired.vpns, open_streams))
        return not last

    try:
        wait_for("the invariants to hold", holds, timeout=timeout, interval=0.5)
    except AssertionError:
        return last
    return []


def settle(
    daemon: Daemon, desired: Desired, open_streams: Collection[str] = (), timeout: float = 90
) -> Observed:
    """Wait until no invariant is broken; fail listing every violation still standing."""
    broken = settled_violations(daemon, desired, open_streams, timeout)
    assert not broken, "invariants broken after settling:\n  " + "\n  ".join(broken)
    return observe(daemon, desired.vpns, open_streams)
