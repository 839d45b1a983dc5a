"""The state's parts (ledger, demand, telemetry): each notifies through its one callback, once
per change and never for a write the planner cannot see, and the store's version counts them."""

from __future__ import annotations

from orchestrator.state.demand import Demand
from orchestrator.state.journal import StreamJournal
from orchestrator.state.ledger import Ledger, Outcome
from orchestrator.state.records import ActionError
from orchestrator.state.store import StateStore
from orchestrator.state.streams import Stream
from orchestrator.state.telemetry import Telemetry
from reconcilers.model import PendingCreate, Plan, SpecFailure

T0 = 1000.0


class Calls:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def test_a_failed_action_is_settled_as_one_change() -> None:
    calls = Calls()
    ledger = Ledger(calls)
    token = ledger.begin_create(PendingCreate(vpn=None, slot=0, forwarded=False), "engine-new")
    ledger.mark_busy("old", removing=True)
    assert calls.count == 2 and ledger.creating == {"engine-new"} and ledger.removing == {"old"}

    error = ActionError(
        at=T0, action="RecreateEngine", target="old", message="no such image", transient=False
    )
    ledger.settle(
        Outcome(
            ok=False,
            at=T0,
            container_id="old",
            create_token=token,
            error=error,
            cooldowns={"old": T0 + 2},
            blocked_slot=(None, 0, T0 + 300),
            create=False,
            spec_failure=SpecFailure(spec_hash="h", reason="no such image", at=T0),
        )
    )

    assert calls.count == 3  # one notification for all of it
    assert ledger.pending_count == 0 and not ledger.creating
    assert not ledger.busy and not ledger.removing
    assert ledger.action_errors == (error,) and ledger.repeats("no such image")
    assert ledger.cooldowns(T0) == {"old": T0 + 2}
    assert ledger.blocked_slots(T0) == {(None, 0)}
    assert ledger.create_failures == 1 and ledger.create_blocked_until is not None
    assert ledger.spec_failure is not None and ledger.spec_failure.spec_hash == "h"
    assert ledger.actions_completed == 0


def test_a_success_lifts_the_cool_down_and_closes_the_breaker() -> None:
    calls = Calls()
    ledger = Ledger(calls)
    ledger.mark_busy("c")
    ledger.settle(Outcome(ok=False, at=T0, container_id="c", cooldowns={"c": T0 + 60}, create=False))
    ledger.mark_busy("c")
    ledger.settle(Outcome(ok=True, at=T0 + 1, container_id="c", create=True))
    assert calls.count == 4
    assert ledger.cooldowns(T0) == {} and ledger.create_failures == 0 and ledger.actions_completed == 1


def test_an_engine_exiting_at_once_counts_once_and_never_while_we_act_on_it() -> None:
    calls = Calls()
    ledger = Ledger(calls)
    failure = SpecFailure(spec_hash="h", reason="exited", at=T0)
    ledger.exited_early("e", T0, failure)
    ledger.exited_early("e", T0 + 1, failure)  # the same engine seen again
    ledger.mark_busy("ours")
    ledger.exited_early("ours", T0, failure)  # stopped by our own hand
    assert ledger.create_failures == 1 and calls.count == 2


def test_demand_wakes_for_what_the_planner_sees_only() -> None:
    calls = Calls()
    demand = Demand(StreamJournal(None), calls)
    demand.start_stream(Stream(id="s", container_id="e", key_type="content_id", key="k", started_at=T0))
    assert calls.count == 1 and demand.streams.count("e") == 1
    version = demand.version
    demand.confirm_streams(["s"], T0 + 10, 60.0)  # moves the TTL only
    assert calls.count == 1 and demand.version > version
    assert demand.end_stream("unknown", "completed", T0) is None
    assert calls.count == 1
    demand.end_stream("s", "completed", T0 + 20)
    assert calls.count == 2 and not demand.streams.active


def test_telemetry_wakes_only_when_dockers_link_changes() -> None:
    calls = Calls()
    telemetry = Telemetry(calls)
    telemetry.record_plan(Plan(target=1), T0, 0.01)
    telemetry.note_resync(T0)
    telemetry.note_docker_error("hung")
    telemetry.note_event()
    assert calls.count == 0 and telemetry.reconcile_passes == 1 and telemetry.resyncs == 1
    telemetry.set_docker(connected=True)
    assert calls.count == 1 and telemetry.docker_connected and telemetry.docker_down_since is None
    telemetry.set_docker(connected=True)  # every resync says so again
    assert calls.count == 1
    telemetry.set_docker(connected=False, error="refused")
    assert calls.count == 2 and telemetry.docker_error == "refused"


def test_the_store_version_counts_every_parts_writes() -> None:
    store = StateStore()
    seen = store.version
    store.telemetry.note_resync(T0)  # wakes nobody, but readers that cache must see it
    assert store.version > seen
    seen = store.version
    watcher = store.watch()
    watcher.clear()
    store.ledger.mark_busy("c", removing=True)  # through the store's `changed`
    assert store.version > seen and watcher.is_set()
