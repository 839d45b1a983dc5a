"""Where a new engine goes: which VPN, which slot, which ports, and whether it is the forwarded one.

Engines are spread least-loaded first over the VPNs that are healthy right now (ties go to the
VPN listed first), so redundant mode fills both VPNs evenly and a VPN that is down receives
nothing. Exactly one engine per VPN carries the VPN's forwarded port: the first engine placed on
a VPN that has none gets it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from reconcilers.model import CreateEngine, Desired, EnginePorts, PortRange, VpnObs
from reconcilers.ports import (
    host_slot_ports,
    slot_takes_a_default,
    slots_in_share,
    vpn_share,
    vpn_slot_ports,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Occupant:
    """Something that holds a slot: an engine container or a creation under way."""

    vpn: str | None
    slot: int
    forwarded: bool
    ports: EnginePorts | None = None


def _ports_used(ports: EnginePorts | None, vpn: str | None) -> set[int]:
    """The ports an engine holds in its namespace: every one behind a VPN (shared namespace),
    only the published host port without one (each engine has a namespace of its own)."""
    if ports is None:
        return set()
    if vpn is None:
        return {ports.host_http} if ports.host_http is not None else set()
    return set(ports.listening())


def ports_clash(vpn: str | None, ports: EnginePorts, held: Iterable[Occupant]) -> bool:
    """Whether `ports` collide with a port some occupant holds in the same namespace."""
    return bool(_ports_used(ports, vpn) & ports_held(vpn, held))


def ports_held(vpn: str | None, held: Iterable[Occupant]) -> set[int]:
    """Every port the occupants hold in `vpn`'s namespace."""
    return set().union(*(_ports_used(o.ports, vpn) for o in held if o.vpn == vpn))


def free_slot(
    desired: Desired,
    vpn: str | None,
    held: Iterable[Occupant],
    blocked: frozenset[tuple[str | None, int]] = frozenset(),
    reserved: int | None = None,
) -> int | None:
    """The lowest slot that is not held, not blocked, and whose ports no occupant uses (an
    engine created under an earlier port layout keeps the ports on its labels) and none of
    which is `reserved` (the VPN's forwarded port, which only its forwarded engine may bind)."""
    mine = [o for o in held if o.vpn == vpn]
    used_slots = {o.slot for o in mine}
    share = _share(desired, vpn)
    for slot in range(slot_capacity(desired, vpn)):
        if slot in used_slots or (vpn, slot) in blocked:
            continue
        if share is not None and slot_takes_a_default(share, slot):
            continue
        ports = ports_for(desired, vpn, slot, None)
        if reserved is not None and reserved in ports.listening():
            continue
        if not ports_clash(vpn, ports, mine):
            return slot
    return None


def _share(desired: Desired, vpn: str | None) -> PortRange | None:
    if vpn is None:
        return None
    count = len(desired.vpn.containers)
    return vpn_share(desired.vpn.port_range, desired.vpn.containers.index(vpn), count)


def slot_capacity(desired: Desired, vpn: str | None) -> int:
    share = _share(desired, vpn)
    return desired.engines.host_port_range.size if share is None else slots_in_share(share)


def ports_for(desired: Desired, vpn: str | None, slot: int, forwarded_port: int | None) -> EnginePorts:
    share = _share(desired, vpn)
    if share is None:
        return host_slot_ports(desired.engines.host_port_range, slot)
    return vpn_slot_ports(share, slot, forwarded_port)


def healthy_vpns(desired: Desired, vpns: Mapping[str, VpnObs]) -> tuple[VpnObs, ...]:
    return tuple(
        vpns[name]
        for name in desired.vpn.containers
        if name in vpns and vpns[name].state == "healthy" and vpns[name].container_id
    )


def place_new_engines(
    desired: Desired,
    vpns: Mapping[str, VpnObs],
    occupants: Iterable[Occupant],
    *,
    count: int,
    spec_hash: str,
    reason: str,
    blocked: frozenset[tuple[str | None, int]] = frozenset(),
) -> tuple[CreateEngine, ...]:
    """Up to `count` creations, fewer when the healthy VPNs (or the host range) run out of slots."""
    held = list(occupants)
    creates: list[CreateEngine] = []
    targets: tuple[VpnObs | None, ...] = (
        (None,)
        if desired.vpn.mode == "none"
        else tuple(v for v in healthy_vpns(desired, vpns) if v.port_known)
    )
    for _ in range(count):
        load = Counter(o.vpn for o in held)
        candidates = []
        for vpn in targets:
            name = vpn.name if vpn else None
            slot = free_slot(desired, name, held, blocked, vpn.forwarded_port or None if vpn else None)
            if slot is not None:
                candidates.append((load[name], vpn, slot))
        if not candidates:
            break
        _, vpn, slot = min(candidates, key=lambda c: c[0])
        name = vpn.name if vpn else None
        fwd_port = vpn.forwarded_port if vpn else None
        # never a port another engine of the namespace binds (Gluetun may forward any port)
        forwarded = (
            bool(fwd_port)
            and fwd_port not in ports_held(name, held)
            and not any(o.forwarded for o in held if o.vpn == name)
        )
        ports = ports_for(desired, name, slot, fwd_port if forwarded else None)
        creates.append(
            CreateEngine(
                vpn=name,
                vpn_id=vpn.container_id if vpn else None,
                slot=slot,
                ports=ports,
                forwarded=forwarded,
                spec_hash=spec_hash,
                reason=reason,
            )
        )
        held.append(Occupant(vpn=name, slot=slot, forwarded=forwarded, ports=ports))
    return tuple(creates)
