"""The fault suite's invariant checker detects each violation it is meant to (a checker that
cannot fail would pass every fault run): one healthy two-VPN world, then one breakage each."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest

from testkit.invariants import Desired, Observed, violations

A, B = "gluetun-a", "gluetun-b"
VPN_IDS = {A: "a" * 64, B: "b" * 64}
FORWARDED = {A: 40001, B: 40002}
DESIRED = Desired(replicas=4, vpns=(A, B), forwarded_ports=FORWARDED, healthy=frozenset({A, B}))


def engine(vpn: str, slot: int, *, forwarded: bool = False) -> dict[str, Any]:
    base = 19000 if vpn == A else 19500
    ports = [
        base + slot,
        base + 125 + slot,
        base + 250 + slot,
        FORWARDED[vpn] if forwarded else base + 375 + slot,
    ]
    return {
        "Id": f"{vpn}-{slot}".ljust(64, "0"),
        "Name": f"/acestream-{vpn}-{slot}",
        "State": {"Running": True, "Status": "running"},
        "HostConfig": {"NetworkMode": f"container:{VPN_IDS[vpn]}"},
        "Config": {
            "Labels": {
                "orchestrator.managed": "acestream",
                "orchestrator.vpn": vpn,
                "orchestrator.vpn_id": VPN_IDS[vpn],
                "orchestrator.slot": str(slot),
                "orchestrator.forwarded": "true" if forwarded else "false",
                "orchestrator.http_port": str(ports[0]),
                "orchestrator.https_port": str(ports[1]),
                "orchestrator.api_port": str(ports[2]),
                "orchestrator.p2p_port": str(ports[3]),
            },
            "Entrypoint": ["/app/start-engine"],
            "Cmd": [
                "--client-console",
                "--http-port",
                str(ports[0]),
                "--https-port",
                str(ports[1]),
                "--api-port",
                str(ports[2]),
                f"--port={ports[3]}",
            ],
        },
    }


def healthy_world() -> Observed:
    containers = [engine(A, 0, forwarded=True), engine(A, 1), engine(B, 0, forwarded=True), engine(B, 1)]
    return Observed(
        containers=containers,
        vpn_ids=VPN_IDS,
        engines=[{"container_id": c["Id"]} for c in containers],
        streams=[
            {"id": "live", "status": "started", "container_id": containers[1]["Id"], "end_reason": None},
            {
                "id": "gone",
                "status": "ended",
                "container_id": containers[3]["Id"],
                "end_reason": "engine_gone",
            },
        ],
        open_streams=["live", "gone"],
    )


def labels(world: Observed, index: int) -> dict[str, str]:
    return dict(world.containers[index]["Config"]["Labels"])


def test_a_healthy_world_breaks_nothing() -> None:
    assert violations(DESIRED, healthy_world()) == []


def _extra_engine(world: Observed) -> None:
    world.containers.append(engine(B, 2))
    world.engines.append({"container_id": world.containers[-1]["Id"]})


def _stopped_engine(world: Observed) -> None:
    world.containers[1]["State"] = {"Running": False, "Status": "exited"}


def _engine_of_an_unknown_vpn(world: Observed) -> None:
    world.containers[3]["Config"]["Labels"]["orchestrator.vpn"] = "gluetun-old"


def _engine_in_a_dead_namespace(world: Observed) -> None:
    world.containers[3]["HostConfig"]["NetworkMode"] = "container:" + "d" * 64


def _slot_twice(world: Observed) -> None:
    world.containers[3]["Config"]["Labels"]["orchestrator.slot"] = "0"


def _name_twice(world: Observed) -> None:
    world.containers[3]["Name"] = world.containers[2]["Name"]


def _port_twice_in_one_namespace(world: Observed) -> None:
    world.containers[1]["Config"]["Cmd"][2] = "19000"  # A's slot 0 HTTP port, in A's namespace


def _host_port_twice(world: Observed) -> None:
    for container in world.containers[2:]:
        container["Config"]["Labels"]["orchestrator.host_http_port"] = "19999"


def _no_forwarded_engine(world: Observed) -> None:
    world.containers[0]["Config"]["Labels"]["orchestrator.forwarded"] = "false"


def _two_forwarded_engines(world: Observed) -> None:
    world.containers[1]["Config"]["Labels"]["orchestrator.forwarded"] = "true"


def _forwarded_engine_without_the_port(world: Observed) -> None:
    world.containers[0]["Config"]["Cmd"][-1] = "--port=19375"


def _unbalanced(world: Observed) -> None:
    moved = engine(B, 2)
    world.containers[1] = moved
    world.engines[1] = {"container_id": moved["Id"]}
    world.streams[0]["container_id"] = moved["Id"]


def _ghost_listed(world: Observed) -> None:
    world.engines.append({"container_id": "f" * 64})


def _running_but_hidden(world: Observed) -> None:
    world.engines.pop()


def _stream_forgotten(world: Observed) -> None:
    world.streams.pop(0)


def _stream_ended_without_reason(world: Observed) -> None:
    world.streams[1]["end_reason"] = None


def _stream_on_a_gone_engine(world: Observed) -> None:
    world.streams.append({"id": "x", "status": "started", "container_id": "e" * 64, "end_reason": None})


BREAKAGES = {
    "managed engines, 4 desired": _extra_engine,
    "not running": _stopped_engine,
    "orphan: acestream-gluetun-b-1 is on VPN 'gluetun-old'": _engine_of_an_unknown_vpn,
    "orphan: acestream-gluetun-b-1 runs in namespace": _engine_in_a_dead_namespace,
    "duplicate: 2 engines hold slot 0": _slot_twice,
    "duplicate: 2 engines named": _name_twice,
    "port clash: 19000 in namespace container:": _port_twice_in_one_namespace,
    "port clash: 19999 in namespace host": _host_port_twice,
    "forwarding: no forwarded engine on gluetun-a": _no_forwarded_engine,
    "forwarding: 2 forwarded engines on gluetun-a": _two_forwarded_engines,
    "does not carry forwarded port 40001": _forwarded_engine_without_the_port,
    "unbalanced": _unbalanced,
    "which is not a managed container": _ghost_listed,
    "runs but /engines does not list it": _running_but_hidden,
    "stream live unknown": _stream_forgotten,
    "stream gone ended with no reason": _stream_ended_without_reason,
    "stream x active on eeeeeeeeeeee, which does not run": _stream_on_a_gone_engine,
}


@pytest.mark.parametrize("expected", BREAKAGES, ids=[f.__name__.strip("_") for f in BREAKAGES.values()])
def test_each_breakage_is_reported(expected: str) -> None:
    world = copy.deepcopy(healthy_world())
    BREAKAGES[expected](world)
    found = violations(DESIRED, world)
    assert any(expected in line for line in found), found


def test_a_vpn_that_is_down_owes_no_forwarded_engine_and_no_balance() -> None:
    world = copy.deepcopy(healthy_world())
    _no_forwarded_engine(world)
    _unbalanced(world)
    _running_but_hidden(world)
    down = Desired(replicas=4, vpns=(A, B), forwarded_ports=FORWARDED, healthy=frozenset({B}))
    assert violations(down, world) == []


def test_busy_engines_beyond_min_replicas_are_desired_within_max_replicas() -> None:
    world = copy.deepcopy(healthy_world())
    _extra_engine(world)  # a fifth engine, on B: fine once every engine carries a stream
    world.streams[:] = [
        {"id": f"s{i}", "status": "started", "container_id": c["Id"], "end_reason": None}
        for i, c in enumerate(world.containers)
    ]
    world = dataclasses.replace(world, open_streams=[])
    assert violations(DESIRED, world) == []
    capped = Desired(
        replicas=4, vpns=(A, B), forwarded_ports=FORWARDED, healthy=DESIRED.healthy, max_replicas=4
    )
    assert any("5 managed engines, 4 desired" in line for line in violations(capped, world))


def test_a_vpn_whose_engines_all_carry_streams_is_excused_a_forwarded_engine() -> None:
    world = copy.deepcopy(healthy_world())
    _no_forwarded_engine(world)
    world.streams.append({"id": "a0", "status": "started", "container_id": world.containers[0]["Id"]})
    assert violations(DESIRED, world) == []  # A-1 carries "live", A-0 this one: none idle


def test_every_breakage_is_listed_at_once() -> None:
    world = copy.deepcopy(healthy_world())
    _stream_forgotten(world)
    _slot_twice(world)
    assert len(violations(DESIRED, world)) >= 2


def test_an_uneven_split_is_excused_only_while_the_fuller_vpn_has_nothing_to_move() -> None:
    world = copy.deepcopy(healthy_world())
    _unbalanced(world)  # A 1, B 3: B's forwarded engine, one busy, one idle
    assert any("unbalanced" in line for line in violations(DESIRED, world))
    world.streams.append(
        {"id": "second", "status": "started", "container_id": world.containers[3]["Id"], "end_reason": None}
    )
    world = dataclasses.replace(world, open_streams=[*world.open_streams, "second"])
    assert not [line for line in violations(DESIRED, world) if "unbalanced" in line]
