"""The ledger of work in flight: what the executor has under way and how its last actions ended.

Split from the observed world (`store.py`) so that the executor writes one small part of the
state, and writes the end of an action as one change: an `Outcome` given to `settle()`, which
lifts the busy mark, releases the pending creation or probe, keeps the error, cools the
container down, blocks a port slot and feeds the create circuit breaker together, then notifies
once. The planner reads all of it (through `StateStore.observed()`) so it never plans the same
work twice, nor retries a failing action in a hot loop.

Every write calls `on_change` (given at construction: the store's `changed`, which recomputes
the visible set, since a container being removed leaves it, and wakes the watchers), except
the few documented as part of a change the store announces itself.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import structlog

from orchestrator.state.breaker import BreakerState, CreateBreaker
from orchestrator.state.records import ActionError
from reconcilers.model import PendingCreate, SpecFailure

log = structlog.get_logger()

RECENT_ERRORS = 20


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """How one action ended, everything the ledger keeps of it.

    `container_id`: the container the action was on (None: a plain creation); `create_token`,
    `probe`: the pending creation (`begin_create`) or VPN probe (`begin_probe`) it held;
    `cooldowns`: key -> until, to leave alone; `blocked_slot`: (vpn, slot, until);
    `create`: the create it made succeeded or failed (None: it made none, or no verdict);
    `spec_failure`: a failed create's reason that is the spec's own (stops a rollout to it).
    """

    ok: bool
    at: float
    container_id: str | None = None
    create_token: int | None = None
    probe: str | None = None
    error: ActionError | None = None
    cooldowns: Mapping[str, float] = field(default_factory=dict)
    blocked_slot: tuple[str | None, int, float] | None = None
    create: bool | None = None  # True: succeeded, False: failed
    spec_failure: SpecFailure | None = None


class Ledger:
    def __init__(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self._pending_creates: dict[int, PendingCreate] = {}
        self._pending_names: dict[int, str] = {}
        self._pending_seq = 0
        self._pending_probes: set[str] = set()  # VPN names
        self._busy: set[str] = set()
        self._removing: set[str] = set()
        self._cooldowns: dict[str, float] = {}
        self._blocked_slots: dict[tuple[str | None, int], float] = {}
        self._breaker = CreateBreaker()
        self._spec_failure: SpecFailure | None = None
        self._early_exits: set[str] = set()  # engines already counted as failed creates
        self._errors: deque[ActionError] = deque(maxlen=RECENT_ERRORS)
        self._completed = 0
        self.version = 0  # bumped on every write, notified or not

    def _changed(self) -> None:
        self.version += 1
        self._on_change()

    # -- read-only views -----------------------------------------------------------------------
    @property
    def pending_count(self) -> int:
        return len(self._pending_creates)

    @property
    def pending_creates(self) -> tuple[PendingCreate, ...]:
        return tuple(self._pending_creates.values())

    @property
    def creating(self) -> frozenset[str]:
        """The names of the engines being created: a container of that name is not an engine yet."""
        return frozenset(self._pending_names.values())

    @property
    def pending_probes(self) -> frozenset[str]:
        return frozenset(self._pending_probes)

    @property
    def busy(self) -> frozenset[str]:
        return frozenset(self._busy)

    @property
    def busy_count(self) -> int:
        return len(self._busy)

    @property
    def removing(self) -> frozenset[str]:
        return frozenset(self._removing)

    def is_removing(self, container_id: str) -> bool:
        return container_id in self._removing

    def cooldowns(self, now: float) -> dict[str, float]:
        return {c: t for c, t in self._cooldowns.items() if t > now}

    def blocked_slots(self, now: float) -> frozenset[tuple[str | None, int]]:
        return frozenset(k for k, t in self._blocked_slots.items() if t > now)

    @property
    def spec_failure(self) -> SpecFailure | None:
        return self._spec_failure

    @property
    def action_errors(self) -> tuple[ActionError, ...]:
        return tuple(self._errors)

    @property
    def actions_completed(self) -> int:
        return self._completed

    @property
    def create_failures(self) -> int:
        return self._breaker.failures

    @property
    def create_blocked_until(self) -> float | None:
        return self._breaker.blocked_until

    @property
    def last_create_failure(self) -> float | None:
        return self._breaker.last_failure

    def breaker_state(self, now: float) -> BreakerState:
        return self._breaker.state(now)

    # -- work starting -------------------------------------------------------------------------
    def begin_create(self, pending: PendingCreate, name: str) -> int:
        """Hold a slot for a creation under way. Until it is settled, a container of that name
        seen through an event counts as this creation, not as an engine of its own."""
        self._pending_seq += 1
        self._pending_creates[self._pending_seq] = pending
        self._pending_names[self._pending_seq] = name
        self._changed()
        return self._pending_seq

    def mark_busy(self, container_id: str, *, removing: bool = False) -> None:
        """An action on the container is under way; `removing`: it leaves /engines now."""
        self._busy.add(container_id)
        if removing:
            self._removing.add(container_id)
        self._changed()

    def begin_probe(self, vpn: str) -> None:
        self._pending_probes.add(vpn)
        self._changed()

    # -- work ending ---------------------------------------------------------------------------
    def settle(self, outcome: Outcome) -> None:
        """An action ended: everything it leaves behind, applied as one change. A success lifts
        the container's cool-down."""
        if outcome.create_token is not None:
            self._pending_creates.pop(outcome.create_token, None)
            self._pending_names.pop(outcome.create_token, None)
        if outcome.probe is not None:
            self._pending_probes.discard(outcome.probe)
        if outcome.error is not None:
            self._errors.append(outcome.error)
        self._cooldowns.update(outcome.cooldowns)
        if outcome.blocked_slot is not None:
            vpn, slot, until = outcome.blocked_slot
            self._blocked_slots[(vpn, slot)] = until
            log.warning("slot_blocked", vpn=vpn, slot=slot, hint="its ports are in use by something else")
        if outcome.create is False:
            self._create_failed(outcome.at, outcome.spec_failure)
        elif outcome.create:
            self._breaker.succeeded()
        if outcome.ok:
            self._completed += 1
        if outcome.container_id is not None:
            self._busy.discard(outcome.container_id)
            self._removing.discard(outcome.container_id)
            if outcome.ok:
                self._cooldowns.pop(outcome.container_id, None)
        self._changed()

    def repeats(self, message: str) -> bool:
        """The previous action error said the same (logged once, kept every time)."""
        return bool(self._errors) and self._errors[-1].message == message

    def _create_failed(self, now: float, failure: SpecFailure | None) -> None:
        self._breaker.failed(now)
        if failure is not None:
            self._spec_failure = failure

    # -- what the observed world tells (called by the store) -----------------------------------
    def exited_early(self, container_id: str, now: float, failure: SpecFailure | None) -> None:
        """An engine exited soon after it started, never having answered, and not by our hand:
        a failed create (the breaker backs off the create/exit loop a crashing image would be)
        whose spec cannot run. Counted once per engine; an engine under an action is ours."""
        if container_id in self._busy or container_id in self._early_exits:
            return
        self._early_exits.add(container_id)
        self._create_failed(now, failure)
        self._changed()

    def spec_works(self, spec_hash: str | None) -> None:
        """An engine of that spec answered: it is no failed spec after all. No notification of
        its own: part of the store's change (an engine turning ready)."""
        if self._spec_failure is not None and self._spec_failure.spec_hash == spec_hash:
            self._spec_failure = None
            self.version += 1

    def forget(self, container_id: str) -> None:
        """The container is gone (no notification: part of the store's change)."""
        self._early_exits.discard(container_id)
