"""The watchdog ends a daemon stuck inside (so Docker's restart policy starts a fresh one), and
leaves a working one alone."""

from __future__ import annotations

import asyncio
import threading
import time

from structlog.testing import capture_logs

from orchestrator.state.store import StateStore
from orchestrator.workers.watchdog import EXIT_STUCK, Watchdog
from testkit.logs import logged


async def test_a_blocked_event_loop_is_ended_from_its_thread() -> None:
    exited: list[int] = []
    done = threading.Event()

    def exit_(code: int) -> None:
        exited.append(code)
        done.set()

    dog = Watchdog(StateStore(), loop_stall_s=0.8, exit=exit_)
    with capture_logs() as logs:
        task = asyncio.create_task(dog.run())
        await asyncio.sleep(0.1)
        done.wait(timeout=10)  # blocks the loop, as a stuck synchronous call would
        task.cancel()
    assert exited == [EXIT_STUCK]
    (stuck,) = logged(logs, "daemon_stuck")
    assert stuck["log_level"] == "critical"
    assert (stuck["what"], stuck["exit_code"]) == ("event loop", EXIT_STUCK)
    assert isinstance(stuck["for_s"], int) and stuck["for_s"] >= 1  # 0.8 s and more, rounded


async def test_an_event_source_stuck_while_docker_answers_is_ended() -> None:
    store = StateStore()
    store.telemetry.set_docker(connected=True)
    store.telemetry.note_resync(at=time.time() - 100)
    exited: list[int] = []
    dog = Watchdog(store, progress_exit_s=50, exit=exited.append)
    with capture_logs() as logs:
        await asyncio.wait_for(dog.run(), timeout=5)
    assert exited == [EXIT_STUCK]
    (stuck,) = logged(logs, "daemon_stuck")
    assert stuck["log_level"] == "critical"
    assert (stuck["what"], stuck["exit_code"]) == ("event source", EXIT_STUCK)
    assert stuck["for_s"] == 100


async def test_a_working_daemon_and_one_waiting_for_docker_are_left_alone() -> None:
    store = StateStore()
    store.telemetry.set_docker(connected=False, error="refused")
    store.telemetry.note_resync(at=time.time() - 100)  # no progress, but Docker is the one down: no exit
    exited: list[int] = []
    # both look every 0.5 s: the 1.3 s below holds two looks of each, with the loop turning
    with capture_logs() as logs:
        task = asyncio.create_task(
            Watchdog(store, loop_stall_s=2, progress_exit_s=50, exit=exited.append).run()
        )
        await asyncio.sleep(1.3)
        task.cancel()
    assert exited == []
    assert not logged(logs, "daemon_stuck")
