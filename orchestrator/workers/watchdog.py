"""The last resort: a daemon stuck inside exits, so Docker's restart policy brings it back.

`/health` turning 503 marks the container unhealthy, but plain Docker (compose included) does
not restart an unhealthy container. So the daemon watches itself: a thread checks that the event
loop still turns (a blocking call would freeze every task, the HTTP API included), and a task
checks that the event source still makes progress while Docker is reachable. Either stuck past
its limit ends the process with `EXIT_STUCK`; `restart: unless-stopped` starts a fresh daemon,
which adopts the engines from their labels and the streams from the state directory.

Both look every quarter of the loop's limit (15 s), not every second: a stall is caught within
1.25 times its limit, and an idle daemon is not woken for it (two wake-ups per 15 s).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable

import structlog

from orchestrator.state.liveness import PROGRESS_STALE_S
from orchestrator.state.store import StateStore

log = structlog.get_logger()

EXIT_STUCK = 70  # EX_SOFTWARE
LOOP_STALL_S = 60.0
PROGRESS_EXIT_S = 4 * PROGRESS_STALE_S  # /health has said 503 for a while by then
BEAT_S = LOOP_STALL_S / 4


class Watchdog:
    def __init__(
        self,
        store: StateStore,
        *,
        loop_stall_s: float = LOOP_STALL_S,
        progress_exit_s: float = PROGRESS_EXIT_S,
        exit: Callable[[int], None] = os._exit,
    ) -> None:
        self._store = store
        self._loop_stall_s = loop_stall_s
        self._progress_exit_s = progress_exit_s
        self._exit = exit
        self._beat = time.monotonic()
        self._stop = threading.Event()
        self._every_s = min(BEAT_S, loop_stall_s / 4, progress_exit_s / 4)

    async def run(self) -> None:
        thread = threading.Thread(target=self._watch_loop, name="watchdog", daemon=True)
        thread.start()
        try:
            while True:
                self._beat = time.monotonic()
                stuck = time.time() - self._store.telemetry.progress_at
                if self._store.telemetry.docker_connected and stuck >= self._progress_exit_s:
                    log.critical(
                        "daemon_stuck", what="event source", for_s=round(stuck), exit_code=EXIT_STUCK
                    )
                    self._exit(EXIT_STUCK)
                    return
                await asyncio.sleep(self._every_s)
        finally:
            self._stop.set()

    def _watch_loop(self) -> None:
        while not self._stop.wait(self._every_s):
            stalled = time.monotonic() - self._beat
            if stalled >= self._loop_stall_s:
                log.critical("daemon_stuck", what="event loop", for_s=round(stalled), exit_code=EXIT_STUCK)
                self._exit(EXIT_STUCK)
                return
