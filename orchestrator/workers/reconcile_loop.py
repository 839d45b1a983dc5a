"""The reconcile loop: whenever the observed or desired state changes, plan and act.

Changes arriving close together are coalesced for a few tens of milliseconds (actions may be;
visibility never is, the store recomputes that itself). The planner also names the next time
it wants to look again (an idle TTL, a VPN restart timeout, a back-off), and the loop wakes then
even when nothing happened; and it plans at least every `REPLAN_S` (60 s) whatever happened, so
a verdict that expires with time alone and names no wake-up of its own (a stall window ending, a
port block lifting, a demand ageing out) is never stale for longer than that. One summary log
line per pass that did something; the actions a pass started log with its `reconcile_pass`
number bound.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from orchestrator.state.store import StateStore
from orchestrator.workers.executor import Executor
from reconcilers import plan
from reconcilers.model import Desired, Plan

log = structlog.get_logger()

COALESCE_S = 0.02
PLAN_RETRY_S = 5.0
REPLAN_S = 60.0


class ReconcileLoop:
    def __init__(
        self,
        store: StateStore,
        executor: Executor,
        desired: Callable[[], Desired],
        *,
        replan_s: float = REPLAN_S,
    ) -> None:
        self._store = store
        self._executor = executor
        self._desired = desired
        self._replan_s = replan_s

    async def run(self) -> None:
        wake = self._store.watch()
        wake_at: float | None = None
        while True:
            timeout = (
                self._replan_s if wake_at is None else min(self._replan_s, max(0.0, wake_at - time.time()))
            )
            try:
                async with asyncio.timeout(timeout):
                    await wake.wait()
            except TimeoutError:
                pass
            await asyncio.sleep(COALESCE_S)
            wake.clear()
            wake_at = self.run_once()

    def run_once(self) -> float | None:
        if not self._store.telemetry.docker_connected:
            return None
        desired = self._desired()
        started = time.perf_counter()
        now = time.time()
        try:
            result = plan(desired, self._store.observed(now), now)
        except Exception:  # a planner bug must not stop the daemon; retry later, loudly
            log.exception("plan_failed", retry_in_s=PLAN_RETRY_S)
            return now + PLAN_RETRY_S
        previous = self._store.telemetry.last_plan
        self._store.telemetry.record_plan(result, now, time.perf_counter() - started)
        with structlog.contextvars.bound_contextvars(reconcile_pass=self._store.telemetry.reconcile_passes):
            self._log_pass(result, previous)
            self._executor.submit(result.actions)
        # a provisioned engine stops counting as busy when its hold expires: look again then
        wakes = [w for w in (result.wake_at, self._store.demand.next_hold_expiry(now)) if w]
        return min(wakes) if wakes else None

    def _log_pass(self, result: Plan, previous: Plan | None) -> None:
        problems = sorted(p.code for p in result.problems)
        before = {p.code for p in previous.problems} if previous else set()
        for problem in result.problems:
            if problem.code not in before:  # each problem in the log once, when it appears
                before.add(problem.code)
                log.warning(problem.code, message=problem.message, vpn=problem.vpn)
        changed = previous is None or problems != sorted(p.code for p in previous.problems)
        if not result.actions and not changed:
            return
        counts: dict[str, int] = {}
        for action in result.actions:
            counts[type(action).__name__] = counts.get(type(action).__name__, 0) + 1
        log.info(
            "reconcile_pass",
            target=result.target,
            engines=len(self._store.engines),
            visible=len(self._store.visible),
            actions=counts,
            problems=problems,
            pending=self._store.ledger.pending_count,
            busy=self._store.ledger.busy_count,
        )
