"""The executor and reconcile loop together on the in-memory Docker: what the pool becomes after
each thing the world does, asserted on the containers the fake holds (not on calls), plus the
one property that is about calls: a failing create does not hot-loop."""

from __future__ import annotations

import asyncio
import time

import pytest
from structlog.testing import capture_logs

from orchestrator.errors import DockerError, DockerUnavailable, ImageNotFound, PortInUse
from orchestrator.state.streams import Stream
from orchestrator.workers.executor import SLOT_BLOCK_S
from testkit.fake_docker import FakeDocker
from testkit.logs import logged
from tests.workers.conftest import NO_VPN, ONE_VPN, World, world


def network_modes(w: World) -> set[str]:
    return {w.docker.containers[c].network_mode for c in w.engines()}


async def filled(w: World, count: int = 2) -> list[str]:
    await w.until(
        f"{count} engines",
        lambda: (
            len(w.engines()) == count
            and all(c in w.store.engines for c in w.engines())
            and not w.store.ledger.pending_count
        ),
    )
    return sorted(w.engines())


async def test_pool_fills_to_min_replicas_with_distinct_host_ports() -> None:
    async with world(NO_VPN, act=True) as w:
        engines = await filled(w)
        ports = {w.docker.containers[c].labels["orchestrator.host_http_port"] for c in engines}
        assert len(ports) == 2


async def test_an_engine_removed_behind_the_daemons_back_is_replaced() -> None:
    async with world(NO_VPN, act=True) as w:
        first = await filled(w)
        w.docker.destroy(first[0])
        now = await filled(w)
        assert first[0] not in now and first[1] in now


async def test_a_recreated_vpn_gets_its_engines_recreated_on_the_new_container() -> None:
    docker = FakeDocker()
    docker.run("gluetun")
    async with world(ONE_VPN, docker, act=True) as w:
        first = await filled(w)
        new = docker.recreate("gluetun")
        await w.until(
            "engines on the new VPN container",
            lambda: network_modes(w) == {f"container:{new.id}"} and len(w.engines()) == 2,
        )
        assert not set(first) & set(w.engines())


async def test_a_vpn_restarted_in_place_gets_its_engines_restarted() -> None:
    docker = FakeDocker()
    docker.run("gluetun")
    async with world(ONE_VPN, docker, act=True) as w:
        first = await filled(w)
        started = {c: docker.containers[c].started_at or 0.0 for c in first}
        docker.restart_in_place("gluetun")
        vpn_started = docker.by_name("gluetun").started_at or 0.0
        await w.until(
            "engines restarted after the VPN",
            lambda: all((docker.containers[c].started_at or 0.0) > vpn_started for c in first),
        )
        assert sorted(w.engines()) == first  # the same containers, restarted
        assert all((docker.containers[c].started_at or 0.0) > started[c] for c in first)


async def test_failing_creates_open_the_breaker_instead_of_hot_looping() -> None:
    docker = FakeDocker()
    docker.failures["create"] = lambda name: ImageNotFound(f"create {name}: no such image")
    async with world(NO_VPN, docker, act=True) as w:
        await w.until("the breaker open", lambda: w.store.ledger.create_failures >= 3, within=10)
        tried = docker.calls["create"]
        await asyncio.sleep(1.0)
        assert docker.calls["create"] - tried <= 2  # backing off, not retrying every pass
        assert w.store.ledger.breaker_state(time.time()) == "open"
        assert not w.engines()


async def test_a_recreate_whose_remove_fails_cools_down_and_leaves_the_breaker_closed() -> None:
    full = NO_VPN.replace("min_free: 0", "min_free: 0, max_replicas: 2")  # no room: recreate in place
    docker = FakeDocker()
    async with world(full, docker, act=True) as w:
        first = await filled(w)
        docker.failures["remove"] = lambda ref: DockerError(f"remove {ref}: device or resource busy")
        w.reconfigure(full.replace("min_free: 0", "min_free: 0, env: {NEW: '1'}"))
        await w.until(
            "a failed recreate",
            lambda: any(e.action == "RecreateEngine" for e in w.store.ledger.action_errors),
        )
        tried = docker.calls["remove"]
        await asyncio.sleep(1.5)
        assert docker.calls["remove"] - tried <= 1  # cooling down, not retrying every pass
        assert w.store.ledger.create_failures == 0, "a remove that failed is no failed create"
        assert w.store.ledger.breaker_state(time.time()) == "closed"
        assert sorted(w.engines()) == first


async def test_every_action_is_in_the_history_with_its_reason_and_outcome() -> None:
    async with world(NO_VPN, act=True) as w:
        engines = await filled(w)
        w.docker.destroy(engines[0])
        await filled(w)
        created = w.store.history.select(kinds=frozenset({"created"}))
        assert len(created) == 3 and {e.reason for e in created} == {"pool below target"}
        assert all(e.outcome == "done" and e.engine is None for e in created)
        replaced = created[-1]
        assert replaced.target in {w.docker.containers[c].name for c in w.engines()}
        assert replaced.trigger is not None and "`destroy`" in replaced.trigger


async def test_a_failed_action_is_in_the_history_with_the_error() -> None:
    docker = FakeDocker()
    docker.failures["create"] = lambda name: ImageNotFound(f"create {name}: no such image")
    async with world(NO_VPN, docker, act=True) as w:
        await w.until("a failed create in the history", lambda: bool(w.store.history.select()))
        entry = w.store.history.select()[0]
        assert entry.kind == "created" and entry.outcome.startswith("failed: create")
        assert "no such image" in entry.outcome


async def test_the_container_a_create_makes_bears_the_name_its_pending_creation_holds() -> None:
    """Until the create is settled, Docker's events about that name count as the creation,
    not as an engine of its own (which the planner would remove as one too many)."""
    docker = FakeDocker()
    docker.holds["create"] = asyncio.Event()
    async with world(NO_VPN.replace("min_replicas: 2", "min_replicas: 1"), docker, act=True) as w:
        await w.until("a creation under way", lambda: w.store.ledger.pending_count == 1)
        held = w.store.ledger.creating
        docker.holds["create"].set()
        await filled(w, 1)
        assert {docker.containers[c].name for c in w.engines()} <= held


# -- the log events operators grep for (docs/operations.md) -----------------------------------


@pytest.mark.parametrize(
    ("error", "transient"),
    [(ImageNotFound("no such image: engine:1"), False), (DockerUnavailable("connection refused"), True)],
    ids=["refused_for_good", "transient"],
)
async def test_a_refused_create_logs_action_failed_with_error_and_transient_once_per_message(
    error: DockerError, transient: bool
) -> None:
    """`action_failed` names the error and whether it is transient; the same message again is
    kept (on /status, in the history) but not logged again at error level."""
    docker = FakeDocker()
    docker.failures["create"] = lambda name: error
    with capture_logs() as logs:
        async with world(NO_VPN, docker, act=True) as w:
            await w.until("two failed creates", lambda: len(w.store.ledger.action_errors) >= 2, within=10)
    first, *again = logged(logs, "action_failed")
    assert first["log_level"] == "error"
    assert (first["action"], first["error"], first["transient"]) == ("CreateEngine", str(error), transient)
    assert first["target"] and first["create_failures"] == 1
    assert again and all(entry["log_level"] == "debug" for entry in again)


async def test_a_port_held_by_something_else_logs_slot_blocked_and_skips_the_slot() -> None:
    docker = FakeDocker()
    refused: list[str] = []

    def port_taken_once(name: str) -> DockerError | None:
        if refused:
            return None
        refused.append(name)
        return PortInUse(f"create {name}: Bind for 0.0.0.0:19000 failed: port is already allocated")

    docker.failures["create"] = port_taken_once
    with capture_logs() as logs:
        async with world(NO_VPN, docker, act=True) as w:
            engines = await filled(w)
            now = time.time()
            blocked = w.store.ledger.blocked_slots(now)
            assert w.store.ledger.blocked_slots(now + SLOT_BLOCK_S) == frozenset()  # 5 minutes
    (slot_blocked,) = logged(logs, "slot_blocked")
    assert slot_blocked["log_level"] == "warning"
    assert slot_blocked["vpn"] is None and "in use by something else" in str(slot_blocked["hint"])
    slot = slot_blocked["slot"]
    assert blocked == {(None, slot)}
    assert refused[0].startswith("acestream-") and f"-{slot}-" in refused[0]
    assert str(slot) not in {docker.containers[c].labels["orchestrator.slot"] for c in engines}
    (failed,) = logged(logs, "action_failed")
    assert "port is already allocated" in str(failed["error"]) and failed["transient"] is True


async def test_an_idle_engine_leaving_the_pool_is_hidden_first_and_kept_if_a_stream_lands_on_it() -> None:
    # acexy picks from a listing up to 2 s old and reports the stream after the engine answered:
    # an idle engine the pool no longer needs leaves /engines at once and goes only after
    # RETIRE_GRACE_S (5 s); a stream reported on it meanwhile keeps it
    async with world(NO_VPN.replace("min_replicas: 2", "min_replicas: 3"), act=True) as w:
        engines = await filled(w, 3)
        for cid in engines:
            w.store.mark_ready(cid, w.store.engines[cid].started_at)
        began = time.monotonic()
        w.reconfigure(NO_VPN)  # min_replicas 2: one of the three goes
        await w.until("one engine hidden", lambda: len(w.store.visible) == 2)
        (leaving,) = set(engines) - {e.container_id for e in w.store.visible}
        assert leaving in w.engines()  # hidden, not removed yet
        w.store.demand.start_stream(
            Stream(id="late", container_id=leaving, key_type="content_id", key="k", started_at=time.time())
        )
        await w.until("the engine listed again", lambda: len(w.store.visible) == 3, within=10)
        assert time.monotonic() - began >= 4.5  # after the grace, not before
        assert sorted(w.engines()) == engines  # nothing removed
        (entry,) = [e for e in w.store.history.select(kinds=frozenset({"removed"}))]
        assert entry.outcome.startswith("cancelled: a stream was reported on it")


async def test_an_idle_engine_recreated_for_a_new_spec_is_hidden_first_and_kept_if_a_stream_lands() -> None:
    # the same grace for a recreate in place (no room to grow: max_replicas reached)
    full = NO_VPN.replace("min_free: 0", "min_free: 0, max_replicas: 2")
    async with world(full, act=True) as w:
        engines = await filled(w)
        for cid in engines:
            w.store.mark_ready(cid, w.store.engines[cid].started_at)
        w.reconfigure(full.replace("min_free: 0", "min_free: 0, env: {NEW: '1'}"))
        await w.until("one engine hidden", lambda: len(w.store.visible) == 1)
        (leaving,) = set(engines) - {e.container_id for e in w.store.visible}
        w.store.demand.start_stream(
            Stream(id="late", container_id=leaving, key_type="content_id", key="k", started_at=time.time())
        )
        await w.until(
            "the recreate called off",
            lambda: any(e.outcome.startswith("cancelled") for e in w.store.history.select()),
            within=10,
        )
        assert leaving in w.engines()  # kept, with its stream, on the old spec until idle
