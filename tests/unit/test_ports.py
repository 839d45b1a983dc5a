"""Port allocation (reconcilers/ports.py): VPN shares, slot ports, host ports, free slots."""

from __future__ import annotations

import pytest

from reconcilers.model import (
    DEFAULT_API_PORT,
    DEFAULT_HTTP_PORT,
    DEFAULT_HTTPS_PORT,
    DEFAULT_P2P_PORT,
    ENGINE_DEFAULT_PORTS,
    EnginePorts,
    PortRange,
)
from reconcilers.placement import Occupant, free_slot
from reconcilers.ports import (
    host_slot_ports,
    slot_takes_a_default,
    slots_in_share,
    usable_slots,
    vpn_share,
    vpn_slot_ports,
)
from testkit.factories import desired, port_range


@pytest.mark.parametrize(
    ("whole", "index", "count", "share"),
    [
        ("19000-19999", 0, 1, "19000-19999"),
        ("19000-19999", 0, 2, "19000-19499"),
        ("19000-19999", 1, 2, "19500-19999"),
        ("19000-19999", 2, 3, "19666-19998"),
        ("19000-19009", 1, 2, "19005-19009"),
        ("19000-19010", 1, 2, "19005-19009"),  # the odd port left over belongs to nobody
    ],
    ids=[
        "one_vpn_whole_range",
        "halves_first",
        "halves_second",
        "thirds_last",
        "small_second",
        "odd_size_remainder_unused",
    ],
)
def test_vpn_share(whole: str, index: int, count: int, share: str) -> None:
    assert vpn_share(port_range(whole), index, count) == port_range(share)


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7])
def test_vpn_shares_are_disjoint_and_inside_the_range(count: int) -> None:
    whole = port_range("19000-19999")
    shares = [vpn_share(whole, i, count) for i in range(count)]
    ports = [p for s in shares for p in range(s.start, s.end + 1)]
    assert len(ports) == len(set(ports))
    assert all(whole.start <= p <= whole.end for p in ports)
    assert len(ports) == whole.size - whole.size % count


@pytest.mark.parametrize(
    ("share", "slots"),
    [("19000-19999", 250), ("19000-19499", 125), ("19000-19007", 2), ("19000-19005", 1), ("19000-19002", 0)],
)
def test_slots_in_share(share: str, slots: int) -> None:
    assert slots_in_share(port_range(share)) == slots


@pytest.mark.parametrize(
    ("share", "slot", "forwarded", "ports"),
    [
        ("19000-19499", 0, None, EnginePorts(http=19000, https=19125, api=19250, p2p=19375)),
        ("19000-19499", 124, None, EnginePorts(http=19124, https=19249, api=19374, p2p=19499)),
        ("19500-19999", 0, None, EnginePorts(http=19500, https=19625, api=19750, p2p=19875)),
        ("19000-19499", 3, 40000, EnginePorts(http=19003, https=19128, api=19253, p2p=40000)),
    ],
    ids=["first_slot", "last_slot", "second_share", "forwarded_port_replaces_p2p"],
)
def test_vpn_slot_ports(share: str, slot: int, forwarded: int | None, ports: EnginePorts) -> None:
    assert vpn_slot_ports(port_range(share), slot, forwarded) == ports


@pytest.mark.parametrize("share", ["19000-19999", "19000-19499", "19500-19999", "30000-30008", "19666-19998"])
def test_every_slot_of_a_share_gets_distinct_ports_inside_it(share: str) -> None:
    rng = port_range(share)
    slots = slots_in_share(rng)
    ports = [vpn_slot_ports(rng, s) for s in range(slots)]
    flat = [p for e in ports for p in (e.http, e.https, e.api, e.p2p)]
    assert len(flat) == 4 * slots
    assert len(set(flat)) == len(flat), "a port is handed out twice within one namespace"
    assert all(rng.start <= p <= rng.end for p in flat)
    assert [e.http for e in ports] == list(range(rng.start, rng.start + slots))
    assert all(e.host_http is None for e in ports)


@pytest.mark.parametrize("slot", [-1, 125, 1000])
def test_vpn_slot_outside_share_is_refused(slot: int) -> None:
    with pytest.raises(ValueError, match=f"slot {slot} outside"):
        vpn_slot_ports(port_range("19000-19499"), slot)


@pytest.mark.parametrize(
    ("host_range", "slot", "host_http"),
    [("19000-19999", 0, 19000), ("19000-19999", 999, 19999), ("25000-25004", 2, 25002)],
    ids=["first", "last", "custom_range"],
)
def test_host_slot_ports(host_range: str, slot: int, host_http: int) -> None:
    assert host_slot_ports(port_range(host_range), slot) == EnginePorts(
        http=DEFAULT_HTTP_PORT,
        https=DEFAULT_HTTPS_PORT,
        api=DEFAULT_API_PORT,
        p2p=DEFAULT_P2P_PORT,
        host_http=host_http,
    )


def test_an_engine_without_a_vpn_binds_four_distinct_ports() -> None:
    ports = host_slot_ports(port_range("19000-19999"), 0)
    assert len(ports.listening()) == 4


@pytest.mark.parametrize("slot", [-1, 5])
def test_host_slot_outside_range_is_refused(slot: int) -> None:
    with pytest.raises(ValueError, match="outside host port range 25000-25004"):
        host_slot_ports(PortRange(start=25000, end=25004), slot)


@pytest.mark.parametrize(
    ("used", "capacity", "slot"),
    [
        ((), 3, 0),
        ((0, 1), 3, 2),
        ((1, 2), 3, 0),
        ((0, 2), 3, 1),
        ((0, 0, 1), 3, 2),
        ((5, 7), 3, 0),
        ((0, 1, 2), 3, None),
    ],
    ids=[
        "empty",
        "next_after_used",
        "reuses_freed_zero",
        "fills_gap",
        "duplicates",
        "ignores_out_of_range",
        "full",
    ],
)
def test_free_slot(used: tuple[int, ...], capacity: int, slot: int | None) -> None:
    d = desired(host_port_range=f"19000-{19000 + capacity - 1}")
    held = [Occupant(vpn=None, slot=s, forwarded=False) for s in used]
    assert free_slot(d, None, held) == slot


@pytest.mark.parametrize(
    ("share", "unusable"),
    [("19000-19999", ()), ("8600-8639", (1,)), ("6870-6909", (8,)), ("62040-62079", (2,))],
    ids=["no_default_inside", "p2p_default_8621", "http_default_6878", "api_default_62062"],
)
def test_slots_that_would_hand_out_an_engine_default_are_never_used(
    share: str, unusable: tuple[int, ...]
) -> None:
    rng = port_range(share)
    bad = tuple(s for s in range(slots_in_share(rng)) if slot_takes_a_default(rng, s))
    assert bad == unusable
    assert usable_slots(rng) == slots_in_share(rng) - len(unusable)
    for slot in unusable:
        assert vpn_slot_ports(rng, slot).listening() & ENGINE_DEFAULT_PORTS


def test_free_slot_behind_a_vpn_skips_a_slot_on_a_default_port() -> None:
    d = desired("single", vpn_port_range="8600-8639")
    held = [Occupant(vpn="g1", slot=0, forwarded=False)]
    assert free_slot(d, "g1", held) == 2  # slot 1 would take the P2P default 8621
