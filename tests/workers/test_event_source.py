"""Event orderings the event source must get right, as a table on the in-memory Docker: each row
stages what Docker does (and in which order the daemon hears of it) and names the VPN state or
engine set that must result."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from structlog.testing import capture_logs

from orchestrator.errors import DockerUnavailable
from orchestrator.state.streams import Stream
from orchestrator.workers.event_source import BACKOFF_FIRST_S
from reconcilers.model import VpnState
from testkit.fake_docker import FakeContainer, FakeDocker
from testkit.logs import logged
from tests.workers.conftest import NO_VPN, ONE_VPN, POOL, World, world

ENGINE_LABELS = {
    "orchestrator.managed": "acestream",
    "orchestrator.pool": POOL,
    "orchestrator.slot": "0",
    "orchestrator.http_port": "6878",
}


async def crash(w: World) -> None:
    w.docker.crash("gluetun", exit_code=1)


async def docker_stop(w: World) -> None:
    w.docker.stop("gluetun")


async def docker_kill(w: World) -> None:
    w.docker.stop("gluetun", action="kill", exit_code=137)


async def replayed_die_from_an_earlier_run(w: World) -> None:
    gluetun = w.docker.by_name("gluetun")
    before_restart = w.docker.now_nano()
    w.docker.restart_in_place("gluetun")
    await w.until("the restart seen", lambda: w.store.vpns["gluetun"].started_at == gluetun.started_at)
    w.docker.emit(gluetun, "die", at_nano=before_restart, exitCode="1")  # Docker's `since` replay


async def health_event_older_than_the_resync(w: World) -> None:
    gluetun = w.docker.by_name("gluetun")
    stale = w.docker.now_nano()
    gluetun.health = "unhealthy"
    await w.events.resync()  # sees unhealthy
    w.docker.emit(gluetun, "health_status: healthy", at_nano=stale)  # heard late


async def health_flip(w: World) -> None:
    w.docker.set_health("gluetun", "unhealthy")


async def recovery(w: World) -> None:
    w.docker.set_health("gluetun", "unhealthy")
    await w.until("unhealthy", lambda: w.store.vpns["gluetun"].state == "unhealthy")
    w.docker.set_health("gluetun", "healthy")


async def recreated_under_the_same_name(w: World) -> None:
    w.docker.recreate("gluetun")


async def old_container_destroyed_after_the_new_one_runs(w: World) -> None:
    old = w.docker.by_name("gluetun")
    w.docker.containers.pop(old.id)
    new = w.docker.run("gluetun")
    await w.until("the new container", lambda: w.store.vpns["gluetun"].container_id == new.id)
    w.docker.emit(old, "destroy")


@dataclass(frozen=True, kw_only=True)
class VpnRow:
    id: str
    stage: Callable[[World], Awaitable[None]]
    state: VpnState
    new_container: bool = False
    reconnect: bool = False  # a reconnect restarts engines: only a real one (new IP, port) counts


VPN_ROWS = [
    VpnRow(id="crash_is_unhealthy_and_restartable", stage=crash, state="unhealthy"),
    VpnRow(id="docker_stop_is_left_alone", stage=docker_stop, state="stopped"),
    VpnRow(id="docker_kill_is_left_alone", stage=docker_kill, state="stopped"),
    VpnRow(
        id="replayed_stop_does_not_stop_the_current_run",
        stage=replayed_die_from_an_earlier_run,
        state="healthy",
    ),
    VpnRow(
        id="resync_floor_drops_an_older_health_event",
        stage=health_event_older_than_the_resync,
        state="unhealthy",
    ),
    VpnRow(id="health_event_applies_at_once", stage=health_flip, state="unhealthy"),
    VpnRow(id="recovery_of_the_same_run_is_a_blip_not_a_reconnect", stage=recovery, state="healthy"),
    VpnRow(
        id="recreate_is_followed_to_the_new_id",
        stage=recreated_under_the_same_name,
        state="healthy",
        new_container=True,
    ),
    VpnRow(
        id="destroy_of_the_old_container_leaves_the_new_one",
        stage=old_container_destroyed_after_the_new_one_runs,
        state="healthy",
        new_container=True,
    ),
]


@pytest.mark.parametrize("row", VPN_ROWS, ids=lambda r: r.id)
async def test_vpn_event_ordering(row: VpnRow) -> None:
    docker = FakeDocker()
    first = docker.run("gluetun")
    async with world(ONE_VPN, docker) as w:
        await w.until("gluetun seen healthy", lambda: w.store.vpns["gluetun"].state == "healthy")
        await row.stage(w)
        current = docker.by_name("gluetun").id
        await w.until(
            f"gluetun {row.state} on {current[:8]}",
            lambda: (
                w.store.vpns["gluetun"].state == row.state and w.store.vpns["gluetun"].container_id == current
            ),
        )
        await asyncio.sleep(0.05)  # anything still in flight would land now
        vpn = w.store.vpns["gluetun"]
        assert (vpn.state, vpn.container_id) == (row.state, current)
        assert (current != first.id) == row.new_container
        assert (vpn.reconnected_at is not None) == row.reconnect


HUNG = "inspect: Docker did not answer within 10s"


def hang_inspects_of(docker: FakeDocker, container: FakeContainer) -> None:
    """Docker answers nothing about `container` (a stuck containerd shim): every inspect of it
    fails as a timeout would; the rest answer."""
    docker.failures["inspect"] = lambda ref: DockerUnavailable(HUNG) if ref == container.id else None


async def test_resync_racing_a_destroy_does_not_bring_the_engine_back() -> None:
    docker = FakeDocker()
    docker.run("gluetun")
    engine = docker.run("acestream-engine-0", health=None, labels=ENGINE_LABELS)
    async with world(ONE_VPN, docker) as w:
        await w.until("engine adopted", lambda: engine.id in w.store.engines)
        docker.holds["inspect:gluetun"] = hold = asyncio.Event()
        # the resync has inspected the engine and now waits on the VPN's inspect
        resync = asyncio.create_task(w.events.resync())
        await asyncio.sleep(0.05)
        docker.containers.pop(engine.id)
        docker.emit(engine, "destroy")  # applied without an inspect
        await w.until("engine dropped", lambda: engine.id not in w.store.engines)
        hold.set()
        await resync
        assert engine.id not in w.store.engines


async def test_resync_racing_a_new_engine_keeps_it() -> None:
    docker = FakeDocker()
    async with world(ONE_VPN, docker) as w:
        docker.holds["list"] = hold = asyncio.Event()
        resync = asyncio.create_task(w.events.resync())  # blocks before listing anything
        await asyncio.sleep(0.05)
        engine = docker.run("acestream-engine-0", health=None, labels=ENGINE_LABELS)
        await w.until("engine seen by its events", lambda: engine.id in w.store.engines)
        docker.containers.pop(engine.id)  # the listing resync will get no longer has it...
        hold.set()
        await resync
        # ...but it was seen after the resync began: the listing is older and must not undo it
        assert engine.id in w.store.engines


async def test_lost_stream_reconnects_and_resyncs_what_it_missed() -> None:
    docker = FakeDocker()
    engine = docker.run("acestream-engine-0", health=None, labels=ENGINE_LABELS)
    async with world(ONE_VPN, docker) as w:
        await w.until("engine adopted", lambda: engine.id in w.store.engines)
        docker.failures["events"] = lambda _: DockerUnavailable("connection refused")
        docker.end_stream()
        await w.until("disconnect noticed", lambda: not w.store.telemetry.docker_connected)
        assert w.store.telemetry.docker_error is None  # the stream just ended
        await w.until("the failed reconnect", lambda: w.store.telemetry.docker_error is not None)
        docker.containers.pop(engine.id)  # removed while nobody listened: no event arrives
        del docker.failures["events"]
        await w.until("reconnected", lambda: w.store.telemetry.docker_connected, within=5)
        assert engine.id not in w.store.engines
        assert docker.calls["events"] >= 3 and w.store.telemetry.resyncs >= 2


async def test_an_inspect_that_never_returns_stops_no_other_event() -> None:
    docker = FakeDocker()
    docker.run("gluetun")
    engine = docker.run("acestream-engine-0", health=None, labels=ENGINE_LABELS)
    async with world(ONE_VPN, docker) as w:
        await w.until("engine adopted", lambda: engine.id in w.store.engines)
        docker.holds[f"inspect:{engine.id}"] = asyncio.Event()  # never set: containerd is stuck
        docker.emit(engine, "start")  # its follow-up inspect hangs
        await asyncio.sleep(0.05)
        docker.set_health("gluetun", "unhealthy")
        await w.until("the VPN's failure applied", lambda: w.store.vpns["gluetun"].state == "unhealthy")


async def test_an_inspect_answer_overtaken_by_an_event_is_not_applied() -> None:
    docker = FakeDocker()
    docker.run("gluetun")
    engine = docker.run("acestream-engine-0", health=None, labels=ENGINE_LABELS)
    async with world(ONE_VPN, docker) as w:
        await w.until("engine adopted", lambda: engine.id in w.store.engines)
        docker.holds[f"answer:{engine.id}"] = late = asyncio.Event()
        docker.emit(engine, "start")  # inspected now (running), answered late
        await asyncio.sleep(0.05)
        docker.containers.pop(engine.id)
        docker.emit(engine, "destroy")
        await w.until("engine dropped", lambda: engine.id not in w.store.engines)
        late.set()  # the old answer arrives: "running"
        await asyncio.sleep(0.05)
        assert engine.id not in w.store.engines


async def test_a_resync_that_hangs_ends_at_its_deadline_and_frees_the_next() -> None:
    docker = FakeDocker()
    async with world(ONE_VPN, docker, resync_deadline_s=0.2) as w:
        docker.holds["list"] = hold = asyncio.Event()
        with pytest.raises(DockerUnavailable, match="resync took longer"):
            await w.events.resync()
        hold.set()
        await w.events.resync()  # the lock was released
        assert w.store.telemetry.resyncs >= 2


async def test_a_failed_resync_is_shown_until_one_succeeds() -> None:
    docker = FakeDocker()
    async with world(ONE_VPN, docker, resync_deadline_s=0.2) as w:
        docker.holds["list"] = hold = asyncio.Event()  # the event stream stays up: dockerd hangs
        await w.events.resync_quietly()
        assert w.store.telemetry.docker_connected
        assert "resync took longer" in (w.store.telemetry.docker_error or "")
        hold.set()
        await w.events.resync()
        assert w.store.telemetry.docker_error is None


async def test_a_container_docker_does_not_answer_for_is_kept_and_the_rest_resynced() -> None:
    docker = FakeDocker()
    docker.run("gluetun")
    stuck = docker.run("acestream-engine-0", health=None, labels=ENGINE_LABELS)
    gone = docker.run("acestream-engine-1", health=None, labels={**ENGINE_LABELS, "orchestrator.slot": "1"})
    async with world(ONE_VPN, docker) as w:
        await w.until("both adopted", lambda: {stuck.id, gone.id} <= set(w.store.engines))
        hang_inspects_of(docker, stuck)
        docker.containers.pop(gone.id)  # went while no event was heard: only a resync sees it
        await w.events.resync()
        assert stuck.id in w.store.engines and gone.id not in w.store.engines
        docker.failures["inspect"] = lambda ref: DockerUnavailable("inspect: Docker did not answer")
        with pytest.raises(DockerUnavailable):  # nothing answers: Docker is down, not one container
            await w.events.resync()


async def test_a_timed_resync_whose_only_inspect_is_the_stuck_container_succeeds() -> None:
    """The others are vouched for by the listing: Docker answered, the resync counts."""
    docker = FakeDocker()
    stuck = docker.run("acestream-engine-0", health=None, labels=ENGINE_LABELS)
    other = docker.run("acestream-engine-1", health=None, labels={**ENGINE_LABELS, "orchestrator.slot": "1"})
    async with world(NO_VPN, docker) as w:
        await w.until("both adopted", lambda: {stuck.id, other.id} <= set(w.store.engines))
        age(stuck, 3 * 3600)
        age(other, 3 * 3600)
        await w.events.resync()
        hang_inspects_of(docker, stuck)
        await w.events.resync(full=True)  # its inspect fails: it must be asked again next time
        before = w.store.telemetry.resyncs
        await w.events.resync(full=False)  # the stuck one is the only container to inspect
        assert w.store.telemetry.resyncs == before + 1
        assert w.store.telemetry.docker_error is None
        assert {stuck.id, other.id} <= set(w.store.engines)


async def test_a_restored_stream_on_a_container_docker_does_not_answer_for_is_kept() -> None:
    """Listed, but its inspect hangs: the engine is not gone, nor are the streams the journal
    restored on it (they were ended `engine_gone`, the engine then looking idle)."""
    docker = FakeDocker()
    stuck = docker.run("acestream-engine-0", health=None, labels=ENGINE_LABELS)
    async with world(NO_VPN, docker) as w:
        await w.until("adopted", lambda: stuck.id in w.store.engines)
        w.store.drop_engine(stuck.id)  # as a daemon that starts knows nothing yet of the engine
        w.store.demand.start_stream(
            Stream(id="s1", container_id=stuck.id, key_type="content_id", key="k", started_at=time.time())
        )
        hang_inspects_of(docker, stuck)
        await w.events.resync()
        assert "s1" in w.store.demand.streams.active


async def test_other_containers_events_are_filtered_out_by_docker() -> None:
    docker = FakeDocker()
    docker.run("gluetun")
    async with world(ONE_VPN, docker) as w:
        before = w.store.telemetry.events_received
        docker.run("someone-elses-app")
        docker.stop("someone-elses-app")
        docker.run("other-pool-engine", health=None, labels={**ENGINE_LABELS, "orchestrator.pool": "other"})
        docker.set_health("gluetun", "unhealthy")
        await w.until("the VPN's event applied", lambda: w.store.vpns["gluetun"].state == "unhealthy")
        await asyncio.sleep(0.05)  # anything still in flight would land now
        assert w.store.telemetry.events_received - before == 1


async def test_a_vpn_named_by_a_reload_is_followed_by_name() -> None:
    docker = FakeDocker()
    docker.run("gluetun")
    docker.run("wg-second")
    async with world(ONE_VPN, docker) as w:
        w.reconfigure(
            ONE_VPN.replace(
                "mode: single, containers: [gluetun]", "mode: redundant, containers: [gluetun, wg-second]"
            )
        )
        w.events.request_resync()  # what the daemon does when the list changes
        await w.until("wg-second resynced", lambda: "wg-second" in w.store.vpns)
        assert docker.subscriptions[-1] == ((), ("gluetun", "wg-second"))
        docker.set_health("wg-second", "unhealthy")
        await w.until("its health event applied", lambda: w.store.vpns["wg-second"].state == "unhealthy")


def age(container: object, seconds: float) -> None:
    """Make a fake container look started `seconds` ago (its listing's uptime text with it)."""
    container.started_at = time.time() - seconds  # type: ignore[attr-defined]


@asynccontextmanager
async def held_engines(count: int) -> AsyncIterator[tuple[World, list[FakeContainer]]]:
    """`count` engines up for 3 hours, after a full resync: their inspects are held."""
    docker = FakeDocker()
    docker.run("gluetun")
    engines = [
        docker.run(
            f"acestream-engine-{i}", health=None, labels={**ENGINE_LABELS, "orchestrator.slot": f"{i}"}
        )
        for i in range(count)
    ]
    async with world(ONE_VPN, docker) as w:
        for engine in engines:
            age(engine, 3 * 3600)
        await w.events.resync()
        yield w, engines


async def test_a_timed_resync_reuses_the_inspects_the_listing_vouches_for() -> None:
    async with held_engines(3) as (w, engines):
        before = w.docker.calls.get("inspect", 0)
        await w.events.resync(full=False)
        # only the followed VPN, which is looked up by name at every resync
        assert w.docker.calls.get("inspect", 0) - before == 1
        assert {e.id for e in engines} <= set(w.store.engines)


async def test_a_timed_resync_sees_a_restart_whose_events_were_missed() -> None:
    async with held_engines(1) as (w, [engine]):
        assert w.store.engines[engine.id].started_at == engine.started_at
        age(engine, 20)  # restarted 20 s ago; no event reached the daemon
        await w.events.resync(full=False)
        assert w.store.engines[engine.id].started_at == engine.started_at
        age(engine, 50 * 60)  # and a run that began 50 minutes ago, its events missed too
        await w.events.resync(full=False)
        assert w.store.engines[engine.id].started_at == engine.started_at


async def test_a_timed_resync_sees_what_the_listing_shows_changed() -> None:
    async with held_engines(2) as (w, [engine, gone]):
        engine.ip = "172.18.0.99"  # a new address (its network reconnected), unheard
        w.docker.containers.pop(gone.id)  # removed, unheard
        await w.events.resync(full=False)
        assert w.store.facts[engine.id].ip == "172.18.0.99"
        assert gone.id not in w.store.engines
        engine.status = "exited"  # died, unheard
        await w.events.resync(full=False)
        assert w.store.engines[engine.id].status == "exited"


async def test_an_event_makes_the_next_timed_resync_inspect_its_container() -> None:
    async with held_engines(1) as (w, [engine]):
        w.docker.emit(engine, "update")  # anything heard of it: what is held of it is dropped
        await asyncio.sleep(0.05)
        before = w.docker.calls.get("inspect", 0)
        await w.events.resync(full=False)
        assert w.docker.calls.get("inspect", 0) - before == 2  # the engine and the VPN


# -- the log events operators grep for (docs/operations.md: the Docker connection) ------------


async def test_an_event_stream_docker_ends_logs_docker_event_stream_ended_and_reconnects() -> None:
    docker = FakeDocker()
    async with world(ONE_VPN, docker) as w:
        subscribed = docker.calls["events"]
        with capture_logs() as logs:
            docker.end_stream()
            await w.until("disconnect noticed", lambda: not w.store.telemetry.docker_connected)
            await w.until("reconnected", lambda: w.store.telemetry.docker_connected, within=5)
        (ended,) = logged(logs, "docker_event_stream_ended")
        assert ended["log_level"] == "warning" and ended["reconnect_in_s"] == BACKOFF_FIRST_S
        assert not logged(logs, "docker_unreachable")  # the stream ended: Docker did not refuse
        assert docker.calls["events"] > subscribed


async def test_a_failed_resync_logs_resync_failed_with_the_error() -> None:
    docker = FakeDocker()
    async with world(ONE_VPN, docker, resync_deadline_s=0.2) as w:
        docker.holds["list"] = hold = asyncio.Event()
        with capture_logs() as logs:
            await w.events.resync_quietly()
        hold.set()
    (failed,) = logged(logs, "resync_failed")
    assert failed["log_level"] == "warning"
    assert failed["error"] == "a resync took longer than 0.2s"


async def test_a_follow_up_inspect_that_fails_logs_inspect_failed_and_the_next_resync_retries() -> None:
    docker = FakeDocker()
    docker.run("gluetun")
    engine = docker.run("acestream-engine-0", health=None, labels=ENGINE_LABELS)
    async with world(ONE_VPN, docker) as w:
        await w.until("engine adopted", lambda: engine.id in w.store.engines)
        asked = asyncio.Event()

        def fails(ref: str) -> DockerUnavailable | None:
            if ref != engine.id:
                return None
            asked.set()  # the inspect task logs as it raises, before this wakes anyone
            return DockerUnavailable(HUNG)

        docker.failures["inspect"] = fails
        tried = docker.calls["inspect"]
        with capture_logs() as logs:
            docker.emit(engine, "start")  # its follow-up inspect fails
            await asyncio.wait_for(asked.wait(), timeout=3)
            await asyncio.sleep(0.05)  # a retry at once would land now
        assert docker.calls["inspect"] == tried + 1  # not retried at once: the next resync does
        del docker.failures["inspect"]
        await w.events.resync()
        assert engine.id in w.store.engines
    (failed,) = logged(logs, "inspect_failed")
    assert failed["log_level"] == "warning"
    assert failed["container"] == engine.id[:24]
    assert failed["error"] == HUNG
    assert failed["hint"] == "the next resync retries"


async def test_a_resyncs_inspect_that_fails_logs_inspect_failed_and_keeps_the_container() -> None:
    docker = FakeDocker()
    docker.run("gluetun")
    stuck = docker.run("acestream-engine-0", health=None, labels=ENGINE_LABELS)
    async with world(ONE_VPN, docker) as w:
        await w.until("engine adopted", lambda: stuck.id in w.store.engines)
        hang_inspects_of(docker, stuck)
        with capture_logs() as logs:
            await w.events.resync()
        assert stuck.id in w.store.engines
    (failed,) = logged(logs, "inspect_failed")
    assert failed["log_level"] == "warning"
    assert (failed["container"], failed["hint"]) == (stuck.id[:24], "kept as it was known")
    assert failed["error"] == HUNG
