"""The state store's own rules: resync vs newer facts, adoption, reservations. (The VPN rules
are the pure state machine's: tests/unit/test_vpn.py.)"""

from __future__ import annotations

import dataclasses
import time

from structlog.testing import capture_logs

from orchestrator.docker.containers import ContainerInfo, vpn_container
from orchestrator.state.ledger import Outcome
from orchestrator.state.store import StateStore
from orchestrator.state.streams import Stream
from reconcilers.model import PendingCreate, StallOnset
from reconcilers.stalls import StatSample
from reconcilers.vpn import ContainerSeen, ControlRead, HealthReported
from testkit.logs import logged
from testkit.sightings import engine_info


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
    token = store.ledger.begin_create(PendingCreate(vpn=None, slot=0, forwarded=False), "engine-mine")
    store.replace_engines([engine_info("mine", name="engine-mine")], store.generation)
    store.ledger.settle(Outcome(ok=True, at=time.time(), create_token=token))
    (seen,) = store.observed().engines
    assert seen.last_stream_usage is None  # no adoption clock: it may be scaled down at once


def test_an_engine_handed_out_by_provisioning_counts_as_busy_until_its_hold_ends() -> None:
    store = StateStore()
    store.upsert_engine(engine_info("e"))
    now = time.time()
    store.demand.hand_out("e", now)
    assert store.observed(now).engines[0].streams == 1
    assert store.demand.next_hold_expiry(now) is not None
    assert store.observed(now + 60).engines[0].streams == 0


def test_the_same_control_reading_again_notifies_nobody() -> None:
    store = StateStore()
    vpn = ContainerInfo(
        id="g1", name="g1", status="running", health="healthy", started_at=1000.0, created_at=999.0
    )
    store.apply_vpn("g1", ContainerSeen(container=vpn_container(vpn)), 1001.0)
    read = ControlRead(forwarded_port=40000, public_ip="1.2.3.4", status="running")
    store.apply_vpn("g1", read, 1002.0)
    version = store.version
    assert store.apply_vpn("g1", read, 1007.0)  # applied, but it changes nothing
    assert store.version == version
    store.apply_vpn("g1", ControlRead(forwarded_port=40001, public_ip="1.2.3.4", status="running"), 1012.0)
    assert store.version > version and store.vpns["g1"].forwarded_port == 40001


def test_engines_of_a_vpn_healthy_again_are_listed_only_once_they_answer_again() -> None:
    store = StateStore()
    for name in ("g1", "g2"):
        vpn = ContainerInfo(
            id=name, name=name, status="running", health="healthy", started_at=900.0, created_at=899.0
        )
        store.apply_vpn(name, ContainerSeen(container=vpn_container(vpn)), 901.0)
    store.upsert_engine(engine_info("a", vpn="g1", vpn_id="g1"))
    store.upsert_engine(engine_info("b", slot=1, vpn="g2", vpn_id="g2"))
    store.mark_ready("a", 1000.0)
    store.mark_ready("b", 1000.0)
    assert {e.container_id for e in store.visible} == {"a", "b"}

    store.apply_vpn("g1", HealthReported(container_id="g1", health="unhealthy"), 1100.0)
    assert {e.container_id for e in store.visible} == {"b"}
    before = time.time()
    with capture_logs() as logs:
        store.apply_vpn("g1", HealthReported(container_id="g1", health="healthy"), 1104.0)
    (recheck,) = logged(logs, "engines_recheck")
    assert (recheck["vpn"], recheck["engines"]) == ("g1", 1)
    # healthy again, but its engine has not answered since: still hidden, and unready from now
    assert {e.container_id for e in store.visible} == {"b"}
    (a,) = (e for e in store.observed().engines if e.container_id == "a")
    assert not a.ready and a.unready_since is not None and a.unready_since >= before
    assert a.started_at == 1000.0  # the same run: nothing was restarted
    store.mark_ready("a", 1000.0)
    assert {e.container_id for e in store.visible} == {"a", "b"}


def test_a_resync_that_finds_nothing_new_wakes_nobody_but_moves_last_seen() -> None:
    store = StateStore()
    store.replace_engines([engine_info("e")], store.generation)
    store.replace_probes([], store.generation)
    first_seen = store.facts["e"].last_seen
    watcher = store.watch()
    watcher.clear()
    version = store.version
    store.replace_engines([engine_info("e")], store.generation)
    store.replace_probes([], store.generation)
    assert not watcher.is_set()
    assert store.version > version and store.facts["e"].last_seen >= first_seen  # /engines shows it


def test_a_resync_that_finds_a_change_wakes_the_watchers() -> None:
    restarted = engine_info("e", started_at=2000.0)
    for change in (
        [engine_info("e"), engine_info("f", slot=1)],  # a new engine
        [],  # an engine gone
        [restarted],  # restarted since
    ):
        store = StateStore()
        store.replace_engines([engine_info("e")], store.generation)
        watcher = store.watch()
        watcher.clear()
        store.replace_engines(change, store.generation)
        assert watcher.is_set(), change


def test_an_engine_turning_stalled_again_and_again_is_one_engine_in_its_vpns_evidence() -> None:
    # the VPN exit rule counts distinct engines turned stalled (reconcilers.stalls.exit_stalling):
    # the store keeps, per VPN, the latest onset of each engine (it kept bare timestamps, so one
    # engine flapping three times looked like three engines)
    store = StateStore()
    g1 = "v" * 64
    engines = [engine_info("a", vpn="g1", vpn_id=g1), engine_info("b", slot=1, vpn="g1", vpn_id=g1)]
    store.replace_engines(engines, store.generation)
    t = 10_000.0
    for cid in "ab":
        store.demand.start_stream(
            Stream(id=f"s-{cid}", container_id=cid, key_type="content_id", key=cid, started_at=t)
        )

    def moving(at: float) -> StatSample:  # more downloaded at each answer
        return StatSample(peers=3, speed_down=80, downloaded=int(at))

    frozen = StatSample(peers=0, speed_down=0, downloaded=0)
    store.record_progress({"s-a": moving(t), "s-b": moving(t)}, t, 60.0, 600.0)
    for cycle in range(3):  # a: stalled, then progressing again, three times; b progresses
        at = t + 120 * cycle + 60
        store.record_progress({"s-a": frozen, "s-b": moving(at)}, at, 60.0, 600.0)
        assert store.stalled_engines == {"a": at}
        store.record_progress({"s-a": moving(at + 30), "s-b": moving(at + 30)}, at + 30, 60.0, 600.0)
        assert not store.stalled_engines
    assert store.observed(t + 400).recent_stalls == {
        "g1": (StallOnset(container_id="a", at=t + 300, contents=frozenset({"content_id:a"})),)
    }


def _two_engine_store(t: float, *, is_live: bool = True) -> StateStore:
    store = StateStore()
    g1 = "v" * 64
    engines = [engine_info("a", vpn="g1", vpn_id=g1), engine_info("b", slot=1, vpn="g1", vpn_id=g1)]
    store.replace_engines(engines, store.generation)
    for cid in "ab":
        store.demand.start_stream(
            Stream(
                id=f"s-{cid}", container_id=cid, key_type="content_id", key=cid, started_at=t, is_live=is_live
            )
        )
    return store


def test_a_vod_stream_that_downloads_nothing_more_never_stalls_its_engine() -> None:
    # a VOD file all downloaded (or filling the engine's cache) is played from the cache: the
    # engine keeps its peers, its bytes stop growing, the viewer watches on
    t = 10_000.0
    store = _two_engine_store(t, is_live=False)
    done = StatSample(peers=7, speed_down=0, downloaded=5_000_000)
    for at in range(0, 600, 30):
        assert store.record_progress({"s-a": done, "s-b": done}, t + at, 60.0, 120.0) == []
    assert not store.stalled_engines
    assert {s.id for s in store.demand.streams.active.values()} == {"s-a", "s-b"}
    assert not store.demand.stream_stalled("s-a", t + 600, 60.0)  # /streams, /engines/{id}, /metrics
    # the same answers for live streams: stalled after 60 s, ended after the grace
    live = _two_engine_store(t)
    ended = [
        s.id
        for at in range(0, 600, 30)
        for s in live.record_progress({"s-a": done, "s-b": done}, t + at, 60.0, 120.0)
    ]
    assert set(live.stalled_engines) == {"a", "b"} and sorted(ended) == ["s-a", "s-b"]


def test_an_engine_delivered_when_one_of_its_streams_last_showed_progress() -> None:
    # the planner's evidence that an engine serves (reconcilers.stalls.delivers): the last answer
    # that showed progress, kept through the quiet answers after it; none before any did
    t = 10_000.0
    store = _two_engine_store(t)
    frozen = StatSample(peers=0, speed_down=0, downloaded=0)
    store.record_progress(
        {"s-a": StatSample(peers=3, speed_down=80, downloaded=1), "s-b": frozen}, t, 60.0, 600.0
    )
    store.record_progress(
        {"s-a": StatSample(peers=3, speed_down=80, downloaded=9), "s-b": frozen}, t + 30, 60.0, 600.0
    )
    store.record_progress(
        {"s-a": StatSample(peers=3, speed_down=80, downloaded=9), "s-b": frozen}, t + 60, 60.0, 600.0
    )
    seen = {e.container_id: e.delivered_at for e in store.observed(t + 60).engines}
    assert seen == {"a": t + 30, "b": None}


def _visible_engines(store: StateStore, *cids: str) -> None:
    store.replace_engines([engine_info(c, slot=i) for i, c in enumerate(cids)], store.generation)
    for cid in cids:
        store.mark_ready(cid, 1000.0)
    assert {e.container_id for e in store.visible} == set(cids)


def test_an_engine_gone_from_a_resyncs_listing_has_a_hidden_entry_with_the_reason() -> None:
    """Removed while Docker's event stream was down: the resync forgets it, and /engines stops
    listing it; the history says so (it used to say nothing: the engine was no longer there to
    ask why it was hidden)."""
    store = StateStore()
    _visible_engines(store, "a", "b")

    store.replace_engines([engine_info("a")], store.generation)  # b is not in the listing

    assert [e.container_id for e in store.visible] == ["a"]
    (entry,) = store.history.select(kinds=frozenset({"hidden"}))
    assert (entry.target, entry.engine) == ("engine-b", "engine-b")
    assert entry.reason == "gone: not in Docker's listing"
    assert entry.trigger is not None
    assert entry.trigger.startswith("a resync: Docker's listing without engine-b at ")


def test_an_engine_destroyed_by_hand_has_a_hidden_entry_with_the_reason() -> None:
    store = StateStore()
    _visible_engines(store, "a")

    store.drop_engine("a", "gone: Docker reported its destroy")  # the event source, on `destroy`

    (entry,) = store.history.select(kinds=frozenset({"hidden"}))
    assert (entry.engine, entry.reason) == ("engine-a", "gone: Docker reported its destroy")


def test_an_engine_the_daemon_removes_is_hidden_once_as_being_removed() -> None:
    store = StateStore()
    _visible_engines(store, "a")

    store.ledger.mark_busy("a", removing=True)  # the executor, before removing it
    store.drop_engine("a")

    hidden = store.history.select(kinds=frozenset({"hidden"}))
    assert [(e.engine, e.reason) for e in hidden] == [("engine-a", "being removed")]


def test_only_a_stream_showing_progress_clears_a_stalled_engine() -> None:
    store = StateStore()
    store.replace_engines([engine_info("a")], store.generation)
    t = 10_000.0
    store.demand.start_stream(
        Stream(id="old", container_id="a", key_type="content_id", key="k", started_at=t)
    )
    frozen = StatSample(peers=0, speed_down=0, downloaded=0)
    for at in (t, t + 30, t + 60):
        store.record_progress({"old": frozen}, at, 60.0, 600.0)
    assert set(store.stalled_engines) == {"a"}

    store.demand.start_stream(
        Stream(id="new", container_id="a", key_type="content_id", key="n", started_at=t + 70)
    )
    moving = StatSample(peers=3, speed_down=80, downloaded=500)
    store.record_progress({"old": frozen, "new": moving}, t + 90, 60.0, 600.0)
    assert set(store.stalled_engines) == {"a"}  # its first answer is no verdict yet
    quiet = StatSample(peers=0, speed_down=0, downloaded=500)
    store.record_progress({"old": frozen, "new": quiet}, t + 120, 60.0, 600.0)
    assert set(store.stalled_engines) == {"a"}  # quiet, not stalled yet: no sign of progress either
    store.record_progress(
        {"old": frozen, "new": dataclasses.replace(moving, downloaded=900)}, t + 150, 60.0, 600.0
    )
    assert not store.stalled_engines  # it progressed: one progressing stream clears the engine
