"""The state store's own rules: resync vs newer facts, adoption, reservations, and what the
Gluetun control server adds to Docker's view of a VPN."""

from __future__ import annotations

import time

from orchestrator.docker_gateway import ContainerInfo
from orchestrator.engine_containers import engine_labels
from orchestrator.state import StateStore
from reconcilers.model import CreateEngine, EnginePorts, EngineSpec, PendingCreate

SPEC = EngineSpec(image="engine:1")


def engine_info(cid: str, slot: int = 0, started_at: float = 1000.0, name: str = "") -> ContainerInfo:
    create = CreateEngine(vpn=None, vpn_id=None, slot=slot, forwarded=False, spec_hash="h",
                          reason="test", ports=EnginePorts(http=6878, api=1, p2p=2, host_http=19000 + slot))
    return ContainerInfo(id=cid, name=name or f"engine-{cid}", status="running", health=None,
                         started_at=started_at, created_at=started_at - 1,
                         labels=engine_labels(create, SPEC))


def gluetun(cid: str = "g1", health: str = "healthy", started_at: float = 500.0) -> ContainerInfo:
    return ContainerInfo(id=cid, name="gluetun", status="running", health=health,
                         started_at=started_at, created_at=started_at - 1, ip="172.17.0.2")


def test_resync_does_not_undo_what_an_event_wrote_while_it_listed() -> None:
    store = StateStore()
    store.replace_engines([engine_info("old")], store.generation)
    snapshot = store.generation  # the resync starts listing here
    store.upsert_engine(engine_info("new", slot=1))  # an event (or our own creation) lands
    store.drop_engine("old")  # and an engine is removed
    store.replace_engines([engine_info("old")], snapshot)  # the listing, older than both
    assert set(store.engines) == {"new"}


def test_engines_found_by_a_resync_are_adopted_with_a_fresh_idle_clock() -> None:
    store = StateStore()
    before = time.time()
    store.replace_engines([engine_info("adopted")], store.generation)
    (seen,) = store.observed().engines
    assert seen.last_stream_usage is not None and seen.last_stream_usage >= before
    assert seen.unready_since is not None and seen.unready_since >= before
    store.mark_ready("adopted", 1000.0)
    (seen,) = store.observed().engines
    assert seen.ready and seen.unready_since is None


def test_an_engine_of_our_own_creation_is_not_adopted() -> None:
    store = StateStore()
    token = store.begin_create(PendingCreate(vpn=None, slot=0, forwarded=False), "engine-mine")
    store.replace_engines([engine_info("mine", name="engine-mine")], store.generation)
    store.end_create(token)
    assert "mine" not in store.adopted_at


def test_an_engine_handed_out_by_provisioning_counts_as_busy_until_its_hold_ends() -> None:
    store = StateStore()
    store.upsert_engine(engine_info("e"))
    now = time.time()
    store.reservations.hold("e", now)
    assert store.observed(now).engines[0].streams == 1
    assert store.reservations.next_expiry() is not None
    assert store.observed(now + 60).engines[0].streams == 0


def test_tunnel_stopped_inside_gluetun_hides_until_it_runs_again() -> None:
    store = StateStore()
    store.set_vpn("gluetun", gluetun(), 600.0)
    assert store.vpns["gluetun"].obs.state == "healthy"
    store.set_vpn_control("gluetun", forwarded_port=None, public_ip="1.1.1.1", status="stopped",
                          error=None)
    assert store.vpns["gluetun"].obs.state == "unhealthy"
    store.set_vpn("gluetun", gluetun(), 610.0)  # Docker still says healthy: the tunnel wins
    assert store.vpns["gluetun"].obs.state == "unhealthy"
    store.set_vpn_control("gluetun", forwarded_port=None, public_ip="1.1.1.1", status="running",
                          error=None)
    obs = store.vpns["gluetun"].obs
    assert obs.state == "healthy" and obs.reconnected_at is not None


def test_an_unreadable_control_server_leaves_the_verdict_to_docker() -> None:
    store = StateStore()
    store.set_vpn("gluetun", gluetun(), 600.0)
    store.set_vpn_control("gluetun", forwarded_port=None, public_ip=None, status="stopped", error=None)
    store.set_vpn_control("gluetun", forwarded_port=None, public_ip=None, status=None,
                          error="/v1/vpn/status: 401 Unauthorized")
    assert store.vpns["gluetun"].obs.state == "healthy"


def test_a_recreated_gluetun_forgets_what_the_old_one_said() -> None:
    store = StateStore()
    store.set_vpn("gluetun", gluetun(), 600.0)
    store.set_vpn_control("gluetun", forwarded_port=None, public_ip="1.1.1.1", status="stopped",
                          error=None)
    store.set_vpn("gluetun", gluetun("g2", started_at=700.0), 700.0)
    record = store.vpns["gluetun"]
    assert record.obs.state == "healthy" and record.public_ip is None and not record.control_down


def test_a_new_public_ip_is_a_reconnect() -> None:
    store = StateStore()
    store.set_vpn("gluetun", gluetun(), 600.0)
    store.set_vpn_control("gluetun", forwarded_port=None, public_ip="1.1.1.1", status="running",
                          error=None)
    assert store.vpns["gluetun"].obs.reconnected_at is None
    store.set_vpn_control("gluetun", forwarded_port=None, public_ip="2.2.2.2", status="running",
                          error=None)
    assert store.vpns["gluetun"].obs.reconnected_at is not None


def test_only_a_witnessed_unrequested_exit_is_a_crash() -> None:
    exited = ContainerInfo(id="g1", name="gluetun", status="exited", health=None, started_at=None,
                           created_at=1.0, exit_code=137)
    store = StateStore()
    store.set_vpn("gluetun", exited, 600.0)  # found exited at start-up: maybe on purpose
    assert store.vpns["gluetun"].obs.state == "stopped"

    store = StateStore()
    store.set_vpn("gluetun", gluetun(), 600.0)
    store.set_vpn("gluetun", exited, 610.0)  # seen running, then died unasked: a crash
    assert store.vpns["gluetun"].obs.state == "unhealthy"

    store = StateStore()
    store.set_vpn("gluetun", gluetun(), 600.0)
    store.note_vpn_stop_requested("gluetun", 605.0)  # docker kill
    store.set_vpn("gluetun", exited, 610.0)
    assert store.vpns["gluetun"].obs.state == "stopped"
    store.set_vpn("gluetun", gluetun(started_at=620.0), 620.0)  # started again: intent cleared
    assert store.vpns["gluetun"].stop_requested_at is None
