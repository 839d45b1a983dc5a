"""Port allocation, derived from the slots recorded on containers' labels.

Each engine holds a *slot* in its network namespace. Behind a VPN all engines share the VPN's
namespace, so the VPN's share of `vpn.port_range` is cut into four equal bands (HTTP, HTTPS,
API, P2P) and slot `s` takes the `s`-th port of each band: HTTP ports run from the start of the
share upwards, and no two engines of one VPN ever get the same port. A slot whose ports include
one an engine takes by default (6878, 8621, 62062) is never used behind a VPN. Without a VPN
every engine has its own namespace and keeps the engine's default ports (and a distinct HTTPS
port of ours); only the host port published for its HTTP port comes from
`engines.host_port_range`. Because slots live on labels, the allocation is rebuilt from the
containers after a restart and a slot is free again once its engine is gone.
"""

from __future__ import annotations

from reconcilers.model import (
    DEFAULT_API_PORT,
    DEFAULT_HTTP_PORT,
    DEFAULT_HTTPS_PORT,
    DEFAULT_P2P_PORT,
    ENGINE_DEFAULT_PORTS,
    EnginePorts,
    PortRange,
)

BANDS = 4  # HTTP, HTTPS, API, P2P


def vpn_share(port_range: PortRange, index: int, count: int) -> PortRange:
    """The part of `port_range` owned by the `index`-th of `count` VPNs (even split)."""
    width = port_range.size // count
    start = port_range.start + index * width
    return PortRange(start=start, end=start + width - 1)


def slots_in_share(share: PortRange) -> int:
    """How many engines fit in one VPN's share of ports."""
    return share.size // BANDS


def vpn_slot_ports(share: PortRange, slot: int, forwarded_port: int | None = None) -> EnginePorts:
    band = slots_in_share(share)
    if not 0 <= slot < band:
        raise ValueError(f"slot {slot} outside 0..{band - 1} of share {share}")
    return EnginePorts(
        http=share.start + slot,
        https=share.start + band + slot,
        api=share.start + 2 * band + slot,
        p2p=forwarded_port if forwarded_port else share.start + 3 * band + slot,
    )


def slot_takes_a_default(share: PortRange, slot: int) -> bool:
    """Whether slot `slot` of the share would hand out a port an engine takes by default."""
    return bool(vpn_slot_ports(share, slot).listening() & ENGINE_DEFAULT_PORTS)


def usable_slots(share: PortRange) -> int:
    """How many engines one VPN's share really holds (slots on a default port left out)."""
    return sum(1 for slot in range(slots_in_share(share)) if not slot_takes_a_default(share, slot))


def host_slot_ports(host_range: PortRange, slot: int) -> EnginePorts:
    if not 0 <= slot < host_range.size:
        raise ValueError(f"slot {slot} outside host port range {host_range}")
    return EnginePorts(
        http=DEFAULT_HTTP_PORT,
        https=DEFAULT_HTTPS_PORT,
        api=DEFAULT_API_PORT,
        p2p=DEFAULT_P2P_PORT,
        host_http=host_range.start + slot,
    )
