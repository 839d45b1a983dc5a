"""The reconcile loop plans again on its own at least every `replan_s`, whatever happened: a
verdict that expires with time alone and names no wake-up is never stale for longer."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import structlog.testing

import reconcilers
from orchestrator.config import parse_config
from orchestrator.state.store import StateStore
from orchestrator.workers import reconcile_loop
from orchestrator.workers.executor import Executor
from orchestrator.workers.reconcile_loop import ReconcileLoop
from testkit.fake_docker import FakeDocker
from tests.workers.conftest import NO_VPN

QUIET = NO_VPN.replace("min_replicas: 2", "min_replicas: 0")  # nothing to do: no action, no change


async def passes_in(seconds: float, replan_s: float) -> int:
    desired = parse_config(QUIET, source="test.yaml", env={}).desired
    store = StateStore()
    store.telemetry.set_docker(connected=True)
    loop = ReconcileLoop(
        store, Executor(FakeDocker(), store, lambda: desired), lambda: desired, replan_s=replan_s
    )
    task = asyncio.create_task(loop.run())
    try:
        await asyncio.sleep(seconds)
    finally:
        task.cancel()
    return store.telemetry.reconcile_passes


async def test_a_quiet_store_is_planned_again_every_replan_interval() -> None:
    assert await passes_in(0.5, replan_s=0.1) >= 3  # the first pass, then one every 0.1 s


async def test_without_a_change_the_loop_waits_for_its_interval() -> None:
    assert await passes_in(0.5, replan_s=60) == 1  # the first pass only


async def test_a_planner_failure_is_logged_retried_in_5_s_and_does_not_stop_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    desired = parse_config(QUIET, source="test.yaml", env={}).desired
    store = StateStore()
    store.telemetry.set_docker(connected=True)
    loop = ReconcileLoop(
        store, Executor(FakeDocker(), store, lambda: desired), lambda: desired, replan_s=0.05
    )
    working_plan = reconcilers.plan

    def broken_plan(*args: Any) -> Any:
        raise RuntimeError("a planner bug")

    monkeypatch.setattr(reconcile_loop, "plan", broken_plan)
    before = time.time()
    with structlog.testing.capture_logs() as logs:
        retry_at = loop.run_once()
    assert retry_at is not None and 4.0 <= retry_at - before <= 6.0
    assert [entry["event"] for entry in logs] == ["plan_failed"]
    assert store.telemetry.reconcile_passes == 0

    task = asyncio.create_task(loop.run())  # failing at every pass, the loop keeps going
    await asyncio.sleep(0.15)
    assert not task.done()
    monkeypatch.setattr(reconcile_loop, "plan", working_plan)
    store.changed()  # the planner works again: the next pass plans
    await asyncio.sleep(0.15)
    task.cancel()
    assert store.telemetry.reconcile_passes >= 1
