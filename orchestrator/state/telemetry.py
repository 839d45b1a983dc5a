"""What the daemon reports about itself: reconcile passes, the last plan, events and resyncs
received, whether Docker is in reach. `/status`, `/metrics`, `/health` and the watchdog read it.

Split from the observed world (`store.py`) because almost none of it is anything to plan: the
counters only bump `version` (what readers cache by). Only Docker's connection changing calls
`on_change` (given at construction: the store's `changed`), since the planner acts only while
Docker's event stream is up.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from reconcilers.model import Plan


class Telemetry:
    def __init__(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self.last_plan: Plan | None = None
        self.last_reconcile_at: float | None = None
        self.reconcile_passes = 0
        self.last_pass_duration_s = 0.0
        self.events_received = 0
        self.resyncs = 0
        self.docker_connected = False
        self.docker_error: str | None = None
        self.docker_down_since: float | None = time.time()  # None: connected
        # the last sign the event source works: an event applied or a resync finished
        self.progress_at = time.time()
        self.last_event_at: float | None = None  # the last Docker event applied
        self.version = 0  # bumped on every write but `note_event`'s (a reader caches nothing by it)

    def record_plan(self, plan: Plan, at: float, duration_s: float) -> None:
        self.last_plan, self.last_reconcile_at, self.last_pass_duration_s = plan, at, duration_s
        self.reconcile_passes += 1
        self.version += 1

    def note_event(self) -> None:
        self.events_received += 1
        self.progress_at = self.last_event_at = time.time()

    def note_resync(self, at: float | None = None) -> None:
        """A resync finished (`at`: when, for tests of a daemon stuck since then)."""
        self.resyncs += 1
        self.progress_at = time.time() if at is None else at
        self.version += 1

    def set_docker(self, *, connected: bool, error: str | None = None, at: float | None = None) -> None:
        """Whether the event stream is up (the planner acts only while it is); `at`: since when
        it is not (default: now, or the start of the outage under way). Only a change of any of
        these wakes the store's watchers: every resync says "connected" again."""
        before = (self.docker_connected, self.docker_error, self.docker_down_since)
        self.docker_connected = connected
        if error is not None or connected:
            self.docker_error = error
        if connected:
            self.docker_down_since = None
        elif self.docker_down_since is None or at is not None:
            self.docker_down_since = time.time() if at is None else at
        if (self.docker_connected, self.docker_error, self.docker_down_since) != before:
            self.version += 1
            self._on_change()

    def note_docker_error(self, error: str) -> None:
        """A call failed while the event stream stays up (a resync Docker did not answer, a
        hung dockerd): `/status` says so until the next resync succeeds."""
        self.docker_error = error
        self.version += 1
